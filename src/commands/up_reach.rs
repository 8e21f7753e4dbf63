//! How `vslack up` reaches Vast.ai: a public URL (checked), or a tunnel (installed), which
//! keeps one URL across runs when it can (a named cloudflared tunnel, a reserved ngrok domain).

use anyhow::Result;

use super::Ctx;
use crate::cli::UpArgs;
use crate::tunnel::TunnelSpec;

/// How Vast.ai reaches the relay.
pub(super) enum Reach {
    Tunnel(TunnelSpec),
    Public(String),
}

/// How Vast.ai will reach the relay, checked before anything starts: the public URL's shape,
/// or that the tunnel program is installed.
pub(super) fn reach(ctx: &Ctx, args: &UpArgs, config: &crate::config::Config) -> Result<Reach> {
    let how = reach_unchecked(args, config)?;
    match &how {
        Reach::Public(url) => {
            let given = if args.reach.public_url.is_some() {
                "--public-url"
            } else {
                "the public URL saved by `vslack setup`"
            };
            if let Some(w) = super::webhook::check_webhook_url(given, url)? {
                ctx.note(format!("warning: {w}"));
            }
        }
        Reach::Tunnel(spec) => spec.check_installed()?,
    }
    Ok(how)
}

fn reach_unchecked(args: &UpArgs, config: &crate::config::Config) -> Result<Reach> {
    if let Some(url) = &args.reach.public_url {
        return Ok(Reach::Public(url.clone()));
    }
    if let Some(cmd) = &args.reach.tunnel_cmd {
        return Ok(Reach::Tunnel(TunnelSpec::custom(cmd)?));
    }
    // A tunnel that keeps its URL: `--domain` (with `up`, the tunnel's hostname) and a named
    // cloudflared tunnel, from the flags or the config.
    let name = args
        .reach
        .tunnel_name
        .as_deref()
        .or(config.relay.tunnel_name.as_deref());
    let domain = args
        .serve
        .domain
        .as_deref()
        .or(config.relay.tunnel_domain.as_deref());
    if let Some(t) = &args.reach.tunnel {
        return Ok(Reach::Tunnel(TunnelSpec::named(t)?.stable(name, domain)?));
    }
    match (&config.relay.tunnel, &config.relay.public_url) {
        (Some(t), _) => Ok(Reach::Tunnel(TunnelSpec::from_config(t)?.stable(name, domain)?)),
        (None, Some(u)) => Ok(Reach::Public(u.clone())),
        (None, None) => Err(crate::exit::usage(
            "how should Vast.ai reach this relay? Pass --tunnel tmole|cloudflared|ngrok, --tunnel-cmd '<command with {port}>', or --public-url URL (or run `vslack setup` once)",
        )),
    }
}
