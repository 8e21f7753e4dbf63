//! HTTPS for the listener, with rustls (TLS 1.2 and 1.3, HTTP/1.1 by ALPN). The certificate
//! comes from PEM files (`--tls-cert`/`--tls-key`, re-read when they change on disk, so a
//! certbot renewal needs no restart and drops no connection) or from ACME (`--domain`, see
//! `acme`). The handshake runs under the listener's limits: it counts as a connection (and
//! as an idle one, so it gives way at the cap) and must finish within `--header-timeout`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    Acme(super::acme::AcmeOptions),
}

/// The acceptor: the server config, and with ACME the one answering TLS-ALPN-01 challenges.
pub struct Tls {
    config: Arc<ServerConfig>,
    challenge: Option<Arc<ServerConfig>>,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2+ and HTTP/1.1 only, with `resolver` choosing the certificate.
pub(super) fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

impl Tls {
    /// Start serving `source`'s certificate (spawns the task that keeps it current).
    pub async fn start(source: &TlsSource) -> anyhow::Result<Tls> {
        match source {
            TlsSource::Files { cert, key } => {
                let files = Arc::new(FileCert::load(cert, key)?);
                tokio::spawn(files.clone().watch());
                Ok(Tls {
                    config: Arc::new(server_config(files)?),
                    challenge: None,
                })
            }
            TlsSource::Acme(opts) => {
                let (config, challenge) = super::acme::start(opts).await?;
                Ok(Tls {
                    config,
                    challenge: Some(challenge),
                })
            }
        }
    }

    /// Complete the handshake; `None` for an ACME validation connection (answered here).
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Option<TlsStream<TcpStream>>> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        if let Some(challenge) = &self.challenge {
            if rustls_acme::is_tls_alpn_challenge(&start.client_hello()) {
                tracing::info!("answering an ACME TLS-ALPN-01 validation");
                let mut tls = start.into_stream(challenge.clone()).await?;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return Ok(None);
            }
        }
        start.into_stream(self.config.clone()).await.map(Some)
    }
}

/// A certificate and key from PEM files, re-read when either changes.
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<(Option<String>, Option<String>)>,
    /// The last version that could not be used (warned about once).
    failed: Mutex<Option<(Option<String>, Option<String>)>>,
}

impl std::fmt::Debug for FileCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCert")
            .field("cert", &self.cert)
            .finish()
    }
}

/// Identifies a file's version (a renewal writes a new file or rewrites it).
fn version(path: &Path) -> Option<String> {
    crate::paths::file_version(path)
}

/// Read a certificate chain and its key, or say what is wrong with them (the key file's mode
/// is checked by `check_pair`).
pub fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let fail = |what: String| crate::exit::SetupError(what);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            fail(format!(
                "cannot read the certificate --tls-cert {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(fail(format!(
            "--tls-cert {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        ))
        .into());
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let encrypted = std::fs::read_to_string(key).is_ok_and(|t| t.contains("ENCRYPTED"));
        fail(match encrypted {
            true => format!(
                "the private key --tls-key {} is encrypted: the relay cannot ask for its passphrase; write it decrypted (mode 0600) with `openssl pkey -in {} -out key.pem`",
                key.display(),
                key.display()
            ),
            false => format!(
                "cannot read the private key --tls-key {}: {e} (expected a PEM private key)",
                key.display()
            ),
        })
    })?;
    let signing = provider().key_provider.load_private_key(der).map_err(|e| {
        fail(format!(
            "the private key --tls-key {} is not usable: {e}",
            key.display()
        ))
    })?;
    let pair = CertifiedKey::new(certs, signing);
    pair.keys_match().map_err(|e| {
        fail(format!(
            "--tls-key {} is not the key of --tls-cert {} ({e})",
            key.display(),
            cert.display()
        ))
    })?;
    Ok(Arc::new(pair))
}

/// `read_pair` at start: also the key file's mode, and what the certificate says (names,
/// expiry), with a warning when it has expired or is about to.
pub fn check_pair(cert: &Path, key: &Path) -> anyhow::Result<()> {
    crate::secret::warn_if_loose(key);
    let pair = read_pair(cert, key)?;
    describe(&pair, cert);
    Ok(())
}

/// The DNS names a certificate holds (its subject alternative names).
pub fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Log the leaf's names and expiry; warn when it has expired or has under 14 days left.
fn describe(pair: &CertifiedKey, path: &Path) {
    let Some(Ok((_, leaf))) = pair
        .cert
        .first()
        .map(|c| x509_parser::parse_x509_certificate(c.as_ref()))
    else {
        return;
    };
    let names = dns_names(&leaf);
    let until = leaf.validity().not_after.timestamp();
    let days = (until - super::now_secs()) / 86_400;
    let (names, expires) = (names.join(", "), crate::output::unix_time(until));
    if days < 14 {
        tracing::warn!(cert = %path.display(), names = %names, expires = %expires, "the TLS certificate has expired or expires within 14 days: renew it");
    } else {
        tracing::info!(cert = %path.display(), names = %names, expires = %expires, "TLS certificate");
    }
}

impl FileCert {
    fn load(cert: &Path, key: &Path) -> anyhow::Result<FileCert> {
        let seen = (version(cert), version(key));
        Ok(FileCert {
            current: RwLock::new(read_pair(cert, key)?),
            cert: cert.to_owned(),
            key: key.to_owned(),
            seen: Mutex::new(seen),
            failed: Mutex::new(None),
        })
    }

    /// Every 2 s: when a file changed, load the pair again; a broken pair is logged and the
    /// current one kept (a renewal may write the two files one after the other).
    async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = (version(&self.cert), version(&self.key));
            if *self.seen.lock().expect("tls lock") == now
                || *self.failed.lock().expect("tls lock") == Some(now.clone())
            {
                continue;
            }
            let this = self.clone();
            let loaded =
                tokio::task::spawn_blocking(move || read_pair(&this.cert, &this.key)).await;
            match loaded {
                Ok(Ok(pair)) => {
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                    describe(&pair, &self.cert);
                    *self.current.write().expect("tls lock") = pair;
                    *self.seen.lock().expect("tls lock") = now;
                    *self.failed.lock().expect("tls lock") = None;
                }
                Ok(Err(e)) => {
                    // Once per version of the files, not every 2 s.
                    tracing::warn!(error = %format!("{e:#}"), "the TLS files changed but cannot be used (yet); keeping the current certificate");
                    *self.failed.lock().expect("tls lock") = Some(now);
                }
                Err(_) => {}
            }
        }
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("tls lock").clone())
    }
}
