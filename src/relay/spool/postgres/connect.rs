//! Reaching the server: the URL (a secret) parsed by tokio-postgres, TLS by rustls when the
//! URL asks for it (`sslmode=require`, verified against the public roots, or against
//! `sslrootcert=FILE` for a private CA such as a managed database's), bounded connect time.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What may be shown of a store URL: scheme, host, port and database; never the user or
/// password, nor query parameters.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("postgres://{host}{port}{}", u.path())
        }
        Err(_) => "postgres://(unparsable URL)".into(),
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether the URL carries a password (and so must not be given on a command line).
pub fn has_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.password().is_some()) || url.contains("password=")
}

/// The parsed configuration and a TLS connector for it.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub tls_required: bool,
}

/// Parse the URL. `sslrootcert` is taken out (tokio-postgres does not know it) and its
/// certificates trusted beside the public roots.
pub fn target(url: &str) -> Result<Target> {
    if !is_postgres_url(url) {
        bail!(
            "the store URL {} is not a PostgreSQL URL: use postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            shown(url)
        );
    }
    let mut parsed = url::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("the store URL {} cannot be parsed: {e}", shown(url)))?;
    let mut root_file = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, v)| {
            if k == "sslrootcert" {
                root_file = Some(v.to_string());
                false
            } else {
                true
            }
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let mut config = tokio_postgres::Config::from_str(parsed.as_str())
        .map_err(|e| anyhow::anyhow!("the store URL {} is not valid: {e}", shown(url)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("vslack");
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &root_file {
        let pem = std::fs::read(file)
            .with_context(|| format!("cannot read sslrootcert {file} named by the store URL"))?;
        let mut n = 0;
        for cert in rustls_pki_types_pem(&pem)? {
            roots
                .add(cert)
                .context("sslrootcert holds a certificate rustls refuses")?;
            n += 1;
        }
        if n == 0 {
            bail!("sslrootcert {file} holds no PEM certificate");
        }
    }
    let client = rustls::ClientConfig::builder_with_provider(crate::relay::tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls_required = config.get_ssl_mode() == SslMode::Require;
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(client),
        tls_required,
    })
}

fn rustls_pki_types_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("sslrootcert is not PEM")
}

/// A person-readable reason for a failed connection or query, with what to check.
pub fn explain(e: &tokio_postgres::Error, url: &str) -> String {
    let what = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    };
    format!("PostgreSQL at {}: {what}", shown(url))
}
