//! `serve`'s HTTPS settings: certificate files (`--tls-cert`/`--tls-key`, else `relay.tls_cert`
//! and `relay.tls_key`) or ACME (`--domain`, else `relay.domain`), checked before the relay
//! starts.

use anyhow::Result;

use super::Ctx;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::relay::acme::{AcmeOptions, LETS_ENCRYPT};
use crate::relay::tls::TlsSource;

/// Where the certificate comes from, or `None` for plain HTTP.
pub fn source(ctx: &Ctx, args: &ServeArgs, config: &Config) -> Result<Option<TlsSource>> {
    let r = &config.relay;
    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ if args.domain.is_some() => None,
        _ => match (&r.tls_cert, &r.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(crate::exit::usage(
                    "the config sets only one of relay.tls_cert and relay.tls_key: set both, or neither",
                ))
            }
        },
    };
    let domain = args.domain.clone().or_else(|| r.domain.clone());
    if domain.is_none()
        && (args.acme_email.is_some()
            || args.acme_directory.is_some()
            || args.acme_ca_file.is_some()
            || args.acme_challenge.is_some())
    {
        return Err(crate::exit::usage(
            "--acme-email, --acme-directory, --acme-ca-file and --acme-challenge go with --domain (automatic certificates)",
        ));
    }
    match (files, domain) {
        (Some(_), Some(_)) if args.domain.is_none() && args.tls_cert.is_none() => Err(crate::exit::usage(
            "the config sets both relay.domain and relay.tls_cert: choose automatic certificates or certificate files",
        )),
        (Some((cert, key)), _) => {
            // Checked now, so a bad pair is named before anything listens.
            crate::relay::tls::check_pair(&cert, &key)?;
            Ok(Some(TlsSource::Files { cert, key }))
        }
        (None, Some(domain)) => {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let ok = !domain.is_empty()
                && domain.parse::<std::net::IpAddr>().is_err()
                && domain.contains('.')
                && !domain.ends_with(".localhost")
                && domain.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(crate::exit::usage(format!(
                    "--domain {domain:?} is not a public DNS name: give the host name the relay is reached at, like relay.example.com"
                )));
            }
            let directory = args
                .acme_directory
                .clone()
                .or_else(|| r.acme_directory.clone())
                .unwrap_or_else(|| LETS_ENCRYPT.into());
            if !reqwest::Url::parse(&directory).is_ok_and(|u| u.scheme() == "https" && u.host().is_some()) {
                return Err(crate::exit::usage(format!(
                    "--acme-directory {directory:?} is not an https URL (Let's Encrypt's is {LETS_ENCRYPT})"
                )));
            }
            Ok(Some(TlsSource::Acme(AcmeOptions {
                domains: vec![domain],
                email: args.acme_email.clone().or_else(|| r.acme_email.clone()),
                directory,
                ca_file: args.acme_ca_file.clone().or_else(|| r.acme_ca_file.clone()),
                cache_dir: ctx.paths.data_dir.join("acme"),
                http01: match args.acme_challenge.as_deref() {
                    Some("http-01") => Some(crate::listen::parse(&args.acme_http_listen).ok_or_else(|| {
                        crate::exit::usage(format!(
                            "--acme-http-listen {:?} is not HOST:PORT (like 0.0.0.0:80)",
                            args.acme_http_listen
                        ))
                    })?),
                    _ => None,
                },
            })))
        }
        (None, None) => Ok(None),
    }
}
