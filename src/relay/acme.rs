//! Automatic certificates (`serve --domain relay.example.com`): rustls-acme orders a
//! certificate from Let's Encrypt (or `--acme-directory`) with the TLS-ALPN-01 challenge,
//! answered on the HTTPS port itself (or HTTP-01 on port 80, see `acme_http`), and renews it
//! ahead of expiry; until then, and while a
//! renewal retries, the current certificate keeps being served. The account key and the
//! certificate are cached in the data directory (`acme/`, 0600 files in a 0700 directory), so a
//! restart reuses them and never places a new order (Let's Encrypt limits orders per week).
//!
//! rustls-acme was chosen over instant-acme because it is built for exactly this: a rustls
//! resolver that serves the challenge and the certificate on the same listener, with renewal
//! folded into one stream to poll; instant-acme would leave the challenge server, the resolver
//! and the renewal schedule to write by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use rustls::ServerConfig;
use rustls_acme::{AcmeConfig, EventOk};

/// Let's Encrypt's production directory (the default).
pub const LETS_ENCRYPT: &str = rustls_acme::acme::LETS_ENCRYPT_PRODUCTION_DIRECTORY;

#[derive(Debug, Clone)]
pub struct AcmeOptions {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    /// Trust this CA for the ACME server's own HTTPS (a staging or private CA, Pebble).
    pub ca_file: Option<PathBuf>,
    pub cache_dir: PathBuf,
    /// Answer http-01 on this address instead of tls-alpn-01 on the HTTPS port.
    pub http01: Option<std::net::SocketAddr>,
}

/// Start ordering (or load the cached certificate); returns the server config and the one
/// for TLS-ALPN-01 validation connections.
pub async fn start(opts: &AcmeOptions) -> anyhow::Result<(Arc<ServerConfig>, Arc<ServerConfig>)> {
    crate::secret::ensure_private_dir(&opts.cache_dir)?;
    let mut config = AcmeConfig::new(opts.domains.clone())
        .directory(&opts.directory)
        .cache(PrivateCache(opts.cache_dir.clone()));
    if let Some(email) = &opts.email {
        config = config.contact_push(format!("mailto:{email}"));
    }
    if let Some(ca) = &opts.ca_file {
        config = config.client_tls_config(client_config(ca)?);
    }
    let http01 = match opts.http01 {
        Some(addr) => {
            config = config.challenge_type(rustls_acme::UseChallenge::Http01);
            let l = crate::listen::bind_for(addr, true).await.map_err(|e| {
                anyhow::anyhow!(
                    "{e:#} (this is --acme-http-listen, where ACME's http-01 is answered)"
                )
            })?;
            tracing::info!(listen = %addr, "answering ACME http-01 validations here");
            Some(l)
        }
        None => None,
    };
    let mut state = config.state();
    let resolver = state.resolver();
    if let Some(listener) = http01 {
        tokio::spawn(super::acme_http::serve(listener, resolver.clone()));
    }
    let challenge = state.challenge_rustls_config_with_provider(super::tls::provider());
    let domains = opts.domains.join(", ");
    let directory = opts.directory.clone();
    tokio::spawn(async move {
        while let Some(event) = state.next().await {
            match event {
                Ok(EventOk::DeployedCachedCert) => {
                    tracing::info!(domains = %domains, "serving the cached certificate (no new order)")
                }
                Ok(EventOk::DeployedNewCert) => {
                    tracing::info!(domains = %domains, "obtained a new certificate from the ACME server")
                }
                Ok(EventOk::CertCacheStore | EventOk::AccountCacheStore) => {}
                Err(e) => {
                    let text = e.to_string();
                    tracing::error!(domains = %domains, directory = %directory, error = %text, hint = hint(&text), "cannot get a certificate yet; retrying (any current certificate is still served)")
                }
            }
        }
    });
    Ok((Arc::new(super::tls::server_config(resolver)?), challenge))
}

/// What to check for an ACME failure: the ACME server's own verdict (its problem document),
/// or the relay not reaching the ACME server at all.
fn hint(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let verdict = e.contains("acme:error");
    if !verdict
        && (e.contains("connect")
            || e.contains("tcp")
            || e.contains("lookup")
            || e.contains("timed out"))
    {
        "this relay cannot reach the ACME directory: check this machine's outbound network and DNS, and --acme-directory"
    } else if e.contains("ratelimit") || e.contains("rate limit") || e.contains("too many") {
        "the ACME server's rate limit: wait (Let's Encrypt: https://letsencrypt.org/docs/rate-limits/)"
    } else if e.contains("dns") || e.contains("nxdomain") {
        "the domain's DNS must point at this machine"
    } else if e.contains("connection") || e.contains("timeout") || e.contains("unauthorized") {
        "the ACME server must reach this relay on port 443 (tls-alpn-01) or 80 (http-01), and DNS must point here"
    } else {
        "check --domain, that DNS points here and port 443 (or 80 with http-01) is reachable, and --acme-directory"
    }
}

/// A client config trusting the CA certificates in `ca` (PEM).
fn client_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| {
        crate::exit::SetupError(format!("cannot read --acme-ca-file {}: {e}", ca.display()))
    })? {
        roots.add(cert.map_err(|e| {
            crate::exit::SetupError(format!("--acme-ca-file {}: {e}", ca.display()))
        })?)?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The account key and certificates, as 0600 files (`write_private`) named by a digest of
/// what they are for.
struct PrivateCache(PathBuf);

impl PrivateCache {
    fn file(&self, kind: &str, names: &[String], directory: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for n in names {
            h.update(n.as_bytes());
            h.update([0]);
        }
        h.update(directory.as_bytes());
        self.0
            .join(format!("{kind}-{}.pem", &hex::encode(h.finalize())[..16]))
    }

    async fn load(path: PathBuf) -> Result<Option<Vec<u8>>, std::io::Error> {
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store(path: PathBuf, bytes: Vec<u8>) -> Result<(), std::io::Error> {
        tokio::task::spawn_blocking(move || crate::secret::write_private(&path, &bytes))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}

#[async_trait::async_trait]
impl rustls_acme::CertCache for PrivateCache {
    type EC = std::io::Error;
    async fn load_cert(
        &self,
        domains: &[String],
        directory: &str,
    ) -> Result<Option<Vec<u8>>, Self::EC> {
        Self::load(self.file("cert", domains, directory)).await
    }
    async fn store_cert(
        &self,
        domains: &[String],
        directory: &str,
        cert: &[u8],
    ) -> Result<(), Self::EC> {
        Self::store(self.file("cert", domains, directory), cert.to_vec()).await
    }
}

#[async_trait::async_trait]
impl rustls_acme::AccountCache for PrivateCache {
    type EA = std::io::Error;
    async fn load_account(
        &self,
        contact: &[String],
        directory: &str,
    ) -> Result<Option<Vec<u8>>, Self::EA> {
        Self::load(self.file("account", contact, directory)).await
    }
    async fn store_account(
        &self,
        contact: &[String],
        directory: &str,
        account: &[u8],
    ) -> Result<(), Self::EA> {
        Self::store(self.file("account", contact, directory), account.to_vec()).await
    }
}
