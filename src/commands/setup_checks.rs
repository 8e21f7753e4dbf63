//! `setup`'s choices that need no Vast.ai: the heartbeat, and what `--domain` goes with.

use anyhow::Result;

use super::Ctx;
use crate::cli::SetupArgs;
use crate::config::Config;
use crate::exit::usage;

/// The heartbeat `serve` runs (`relay.heartbeat`): the flag, else asked (yes: 6h), else 6h.
pub(super) fn heartbeat_choice(ctx: &Ctx, args: &SetupArgs, config: &Config) -> Result<String> {
    use crate::cli::{parse_heartbeat, Heartbeat};
    let current = config
        .relay
        .heartbeat
        .as_deref()
        .and_then(|h| parse_heartbeat(h).ok());
    let every = match (args.heartbeat, current) {
        (Some(h), _) => h,
        (None, current) if ctx.interactive() => {
            let every = match current {
                Some(Heartbeat::Every(d)) => d,
                _ => std::time::Duration::from_secs(6 * 3600),
            };
            let text = humantime::format_duration(every).to_string();
            let yes = crate::prompt::confirm(
                &format!("Check the whole path every {text} (Vast.ai's test event, not posted) and alert in Slack when it breaks?"),
                current != Some(Heartbeat::Off),
            )?;
            if yes {
                Heartbeat::Every(every)
            } else {
                Heartbeat::Off
            }
        }
        (None, Some(current)) => current,
        (None, None) => Heartbeat::Every(std::time::Duration::from_secs(6 * 3600)),
    };
    Ok(match every {
        Heartbeat::Every(d) => humantime::format_duration(d).to_string(),
        Heartbeat::Off => "off".into(),
    })
}

/// `--domain` with what it goes with, checked before anything is asked of Vast.ai or saved:
/// the public URL's host (at its root: the relay serves its own path), or a tunnel that can
/// keep a hostname.
pub(super) fn check_domain(args: &SetupArgs) -> Result<()> {
    let Some(d) = &args.domain else {
        return Ok(());
    };
    if d.parse::<std::net::IpAddr>().is_ok() || !d.contains('.') {
        return Err(usage(format!(
            "--domain {d:?} is not a public DNS name, like relay.example.com"
        )));
    }
    if let Some(u) = &args.reach.public_url {
        let url = reqwest::Url::parse(u).ok();
        if url.as_ref().and_then(|u| u.host_str()) != Some(d.as_str()) {
            return Err(usage(format!(
                "--domain {d} is not the host of --public-url {u}: the certificate must name the host Vast.ai connects to"
            )));
        }
        if url.is_some_and(|u| !u.path().trim_end_matches('/').is_empty()) {
            return Err(usage(format!(
                "with --domain the relay serves HTTPS itself at the URL's root: use --public-url https://{d}/"
            )));
        }
    }
    if let Some(t) = args.reach.tunnel.as_deref() {
        crate::tunnel::TunnelSpec::named(t)?.stable(args.reach.tunnel_name.as_deref(), Some(d))?;
    }
    Ok(())
}
