//! `doctor`'s certificate check: the certificate a client is actually served at the relay's
//! HTTPS URL (the webhook's, else the configured domain on this machine): who issued it, how
//! many days it has left, and whether it names the host Vast.ai connects to.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::doctor_report::Report;

/// Accepts any certificate: the chain is inspected, not trusted (the relay check trusts it
/// or not, with the public roots).
#[derive(Debug)]
struct Inspect(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Inspect {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf certificate served at `addr` for `host` (SNI): inspected whatever it is, or (with
/// `trusted`) only when it verifies against the public roots, as Vast.ai checks it.
async fn served(host: &str, addr: &str, trusted: bool) -> Result<CertificateDer<'static>, String> {
    let provider = crate::relay::tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match trusted {
        true => builder
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth(),
        false => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Inspect(provider)))
            .with_no_client_auth(),
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr} did not answer within 5 s"))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::Other
                if e.to_string().contains("lookup") =>
            {
                format!("{host} does not resolve: point its DNS at this server")
            }
            _ => format!("cannot connect to {addr}: {e}"),
        })?;
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| "the TLS handshake did not finish within 5 s".to_owned())?
    .map_err(|e| format!("TLS handshake failed: {e}"))?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no certificate was served".into())
}

/// Check the certificate served for `host` at `addr` (`host:port`).
pub async fn check(r: &mut Report, host: &str, addr: &str) {
    let der =
        match served(host, addr, false).await {
            Ok(d) => d,
            Err(e) => return r.fail(
                "certificate",
                format!("{host}: {e}"),
                "is the relay serving HTTPS there (--tls-cert/--tls-key or --domain)? see its log",
            ),
        };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return r.fail(
            "certificate",
            format!("{host}: the served certificate cannot be parsed"),
            "replace the certificate",
        );
    };
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.issuer().to_string());
    let left = (cert.validity().not_after.timestamp() - crate::relay::now_secs()) / 86_400;
    let names = crate::relay::tls::dns_names(&cert);
    let matches = names.iter().any(|n| {
        n.eq_ignore_ascii_case(host)
            || n.strip_prefix("*.").is_some_and(|base| {
                host.split_once('.')
                    .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(base))
            })
    });
    let detail = format!(
        "{host}: issued by {issuer}, {left} days left, names {}",
        if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        }
    );
    let trusted = served(host, addr, true).await;
    if !matches {
        r.fail("certificate", detail, format!("the certificate does not name {host}: Vast.ai will refuse it; get one for {host} (`vslack serve --domain {host}` does)"));
    } else if let (Err(e), true) = (&trusted, left >= 0) {
        r.fail("certificate", detail, format!("it is not trusted by the public roots ({e}): Vast.ai will refuse it; use a certificate from a public CA (`vslack serve --domain {host}` gets one from Let's Encrypt)"));
    } else if left < 0 {
        r.fail("certificate", detail, "the certificate has expired: renew it (with --domain the relay renews by itself: see its log for why it could not)");
    } else if left < 14 {
        r.warn("certificate", detail, "renew it soon (with --domain the relay renews when a third of its lifetime is left, 30 days for Let's Encrypt: see its log for why it has not)");
    } else {
        r.ok("certificate", detail);
    }
}

/// The certificate checks that apply: at the webhook's https URL (what Vast.ai is served),
/// else, when this machine's relay serves HTTPS itself, at its listen address.
pub async fn checks(r: &mut Report, config: &crate::config::Config, webhook_url: Option<&str>) {
    if let Some(url) = webhook_url.and_then(|u| reqwest::Url::parse(u).ok()) {
        if url.scheme() == "https" {
            if let Some(host) = url.host_str() {
                let port = url.port_or_known_default().unwrap_or(443);
                return check(r, host, &format!("{host}:{port}")).await;
            }
        }
    }
    let rc = &config.relay;
    if rc.domain.is_none() && rc.tls_cert.is_none() {
        return;
    }
    let host = rc.domain.clone().or_else(|| {
        rc.public_url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
    });
    let (Some(host), Ok(addr)) = (host, super::serve::local_addr(config)) else {
        return;
    };
    check(r, &host, &addr.to_string()).await;
}
