//! `vslack serve`: resolve the relay's settings (flags, then the walkthrough's environment
//! variables, then the config file), start it, and run until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{now_secs, Ctx};
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::relay::forward::ForwardOptions;
use crate::relay::server::Limits;
use crate::relay::spool::SpoolOptions;
use crate::relay::verify::{Key, Verifier};
use crate::relay::watchdog::AlertOptions;
use crate::relay::{Relay, RelayOptions, RelayStartError};
use crate::secret::Secret;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Where to listen: --listen, else the walkthrough's PORT, else the config, else 8787.
pub fn listen_addr(flag: Option<&str>, config: &Config) -> Result<SocketAddr> {
    let (text, from) = match (flag, std::env::var("PORT").ok().filter(|p| !p.is_empty())) {
        (Some(l), _) => (l.to_owned(), "--listen"),
        (None, Some(port)) => (format!("127.0.0.1:{port}"), "PORT"),
        (None, None) => match &config.relay.listen {
            Some(l) => (l.clone(), "relay.listen in the config"),
            None => (DEFAULT_LISTEN.into(), "the default"),
        },
    };
    crate::listen::parse(&text).ok_or_else(|| {
        crate::exit::usage(format!(
            "cannot listen on {text:?} (from {from}): expected HOST:PORT like 127.0.0.1:8787 or localhost:8787"
        ))
    })
}

/// Where a client on this machine reaches the relay `vslack serve` would run: its listen
/// address, with a wildcard (0.0.0.0 or ::) replaced by the loopback address of its family.
pub fn local_addr(config: &Config) -> Result<SocketAddr> {
    let mut addr = listen_addr(None, config)?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

/// A relay using this machine's store, described for a person ("on 127.0.0.1:8787", "(vslack,
/// pid 4242)"): one answering `/health` where `vslack serve` would listen, or any process that
/// holds the event store open (whatever address it was started with).
pub async fn running_relay(ctx: &Ctx, config: &Config) -> Option<String> {
    if let Some(addr) = answering_relay(config).await {
        return Some(format!("on {addr}"));
    }
    let store = std::fs::canonicalize(ctx.paths.spool_file()).ok()?;
    crate::listen::holder(&store.to_string_lossy())
        .map(|(pid, name)| format!("({name}, pid {pid})"))
}

/// The address of a vslack relay answering `/health` where `vslack serve` would listen, if any.
pub async fn answering_relay(config: &Config) -> Option<SocketAddr> {
    let addr = local_addr(config).ok()?;
    crate::listen::relay_health(addr).await.map(|_| addr)
}

/// Every signing secret the relay accepts: stored webhooks (current, and previous within the
/// grace period) plus VAST_WEBHOOK_SECRET.
pub fn keys(config: &Config, grace: Duration) -> Vec<Key> {
    let now = now_secs();
    let mut keys = Vec::new();
    for (id, w) in &config.webhooks {
        keys.push(Key::new(format!("webhook {id}"), &w.secret, None).with_events(&w.events));
        if let (Some(prev), Some(at)) = (&w.previous_secret, w.rotated_at) {
            let until = at + grace.as_secs() as i64;
            if until > now {
                keys.push(
                    Key::new(format!("webhook {id} (previous)"), prev, Some(until))
                        .with_events(&w.events),
                );
            }
        }
    }
    if let Some(s) = std::env::var("VAST_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    {
        keys.push(Key::new("VAST_WEBHOOK_SECRET", &Secret::new(s), None));
    }
    keys
}

/// The Slack URL: --slack-url-file, else SLACK_WEBHOOK_URL, else `vslack slack set`.
pub fn slack_url(flag_file: Option<&Path>, config: &Config) -> Result<Option<Secret>> {
    if let Some(path) = flag_file {
        return crate::secret::read_secret_file(path, "--slack-url-file").map(Some);
    }
    if let Some(url) = std::env::var("SLACK_WEBHOOK_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Ok(Some(Secret::new(url.trim())));
    }
    Ok(config.slack.url.clone())
}

pub use super::destinations::{destinations, kind_of};

pub fn grace(args: &ServeArgs, config: &Config) -> Duration {
    args.secret_grace.unwrap_or_else(|| config.secret_grace())
}

/// What tells one set of keys from another (labels, expiry, contexts and the secrets' MACs),
/// without keeping any secret in the clear.
pub fn fingerprint(keys: &[Key]) -> Vec<String> {
    keys.iter().map(Key::fingerprint).collect()
}

/// The signature check for these settings: every held secret, within the configured window.
pub fn verifier(args: &ServeArgs, config: &Config) -> Verifier {
    Verifier::new(keys(config, grace(args, config)), args.signature_window)
}

/// What to do when the relay has no webhook signing secret (`serve` refuses to start, `doctor`
/// fails its check).
pub const SECRET_FIX: &str = "create a webhook with `vslack setup` or `vslack webhook create` \
     (it stores the secret), run `vslack webhook rotate-secret ID` for an existing one, or set \
     VAST_WEBHOOK_SECRET";

/// Build everything the relay needs, or say exactly what is missing.
pub fn relay_options(ctx: &Ctx, args: &ServeArgs, config: &Config) -> Result<RelayOptions> {
    build_options(ctx, args, config, true)
}

/// Everything but a signing secret, which `up` gets only when it creates its webhook: it
/// checks its settings with these before it changes anything at Vast.ai, then sets
/// `verifier` (see `verifier`).
pub fn relay_options_before_secrets(
    ctx: &Ctx,
    args: &ServeArgs,
    config: &Config,
) -> Result<RelayOptions> {
    build_options(ctx, args, config, false)
}

fn build_options(
    ctx: &Ctx,
    args: &ServeArgs,
    config: &Config,
    need_secret: bool,
) -> Result<RelayOptions> {
    let verifier = verifier(args, config);
    let url = if args.dry_run {
        None
    } else {
        slack_url(args.slack_url_file.as_deref(), config)?
    };
    // Say everything that is missing at once, not one thing per attempt.
    let mut missing = Vec::new();
    if need_secret && verifier.keys().is_empty() {
        missing.push(format!("no webhook signing secret: {SECRET_FIX}"));
    }
    if url.is_none() && !args.dry_run {
        missing.push(
            "no Slack URL (the default destination, which takes what no route takes; \
             destinations added with `vslack dest add` are in addition to it): run `vslack slack set`, \
             set SLACK_WEBHOOK_URL, or pass --slack-url-file PATH (or --dry-run to print messages instead)"
                .into(),
        );
    }
    if !missing.is_empty() {
        return Err(RelayStartError(missing.join("\n       ")).into());
    }
    let destinations = destinations(args, config, url, true)?;
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| config.relay_path().to_owned());
    if !path.starts_with('/') || path == "/health" || path == "/metrics" {
        return Err(crate::exit::usage(format!(
            "--path {path:?} must start with / and cannot be /health or /metrics"
        )));
    }
    let (max_connections, max_parked) = crate::listen::fit_open_files(args.max_connections.max(1));
    Ok(RelayOptions {
        path,
        limits: Limits {
            body_bytes: args.max_body,
            max_connections,
            max_parked,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout.max(std::time::Duration::from_millis(100)),
            request_timeout: args.request_timeout,
            ..Limits::default()
        },
        verifier,
        destinations,
        forward: ForwardOptions {
            pace: args.pace.unwrap_or(Duration::from_secs(1)),
            retry_initial: args.retry_initial,
            retry_max: args.retry_max,
            max_age: args.max_age,
            retention: args.retention,
            keep_bodies: args.keep_bodies,
            list_within: args.list_within,
            console: std::env::var("VAST_CONSOLE")
                .ok()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "https://cloud.vast.ai".into()),
            ..ForwardOptions::default()
        },
        // A dry run must not mark real events delivered: it gets a store of its own.
        spool_path: if args.dry_run {
            ctx.paths.dry_run_spool_file()
        } else {
            ctx.paths.spool_file()
        },
        store_url: if args.dry_run {
            None
        } else {
            super::store_pg::url(config, args.store.as_deref())?
        },
        spool: SpoolOptions {
            max_bytes: args.max_store_mb.map(|mb| mb * 1024 * 1024),
            retention: args.retention,
            owner: true,
            ..Default::default()
        },
        log_payloads: ctx.global.verbose >= 2,
        alerts: AlertOptions {
            refused: args.alert_refused,
            window: args.alert_window,
            failing_for: args.alert_failing_for,
            backlog_age: args.alert_backlog_age,
            rotate_hint: rotate_hint(config),
        },
        tls: super::serve_tls::source(ctx, args, config)?,
    })
}

/// How to replace a wrong secret: rotate the default webhook's (else the only one's), or,
/// when the relay holds only VAST_WEBHOOK_SECRET, set that and restart.
fn rotate_hint(config: &Config) -> String {
    if config.webhooks.is_empty() {
        return "set VAST_WEBHOOK_SECRET to the webhook's current secret and restart the relay (or run `vslack webhook rotate-secret ID` here, which stores a new one the relay picks up at once)".into();
    }
    let id = config.default_webhook.map(|i| i.to_string()).or_else(|| {
        (config.webhooks.len() == 1)
            .then(|| config.webhooks.keys().next().cloned())
            .flatten()
    });
    format!(
        "run `vslack webhook rotate-secret {}` on this machine; the relay picks the new secret up at once",
        id.unwrap_or_else(|| "ID".into())
    )
}

/// The heartbeat's interval and timeout: the flags, else the config (`relay.heartbeat`,
/// `relay.heartbeat_timeout`); `None` when it is off.
pub fn heartbeat(args: &ServeArgs, config: &Config) -> Result<Option<(Duration, Duration)>> {
    use crate::cli::{parse_heartbeat, Heartbeat};
    let every = match (args.heartbeat, config.relay.heartbeat.as_deref()) {
        (Some(h), _) => h,
        (None, Some(text)) => parse_heartbeat(text).map_err(|e| {
            crate::exit::usage(format!("relay.heartbeat = {text:?} in the config: {e}"))
        })?,
        (None, None) => Heartbeat::Off,
    };
    let Heartbeat::Every(every) = every else {
        return Ok(None);
    };
    let timeout = match (
        args.heartbeat_timeout,
        config.relay.heartbeat_timeout.as_deref(),
    ) {
        (Some(t), _) => t,
        (None, Some(text)) => humantime::parse_duration(text).map_err(|e| {
            crate::exit::usage(format!(
                "relay.heartbeat_timeout = {text:?} in the config: {e}"
            ))
        })?,
        (None, None) => Duration::from_secs(120),
    };
    Ok(Some((every, timeout)))
}

pub async fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    let mut shutdown = super::Shutdown::install()?;
    let config = ctx.config()?;
    // A dry run is not what Vast.ai's webhook points at: no heartbeat unless asked for.
    let beat = match args.dry_run && args.heartbeat.is_none() {
        true => None,
        false => heartbeat(&args, &config)?,
    };
    // A mistyped address is named before what else is missing.
    let addr = listen_addr(args.listen.as_deref(), &config)?;
    let opts = relay_options(ctx, &args, &config)?;
    if matches!(&opts.tls, Some(crate::relay::tls::TlsSource::Acme(a)) if a.http01.is_none())
        && (addr.ip().is_loopback() || addr.port() != 443)
    {
        tracing::warn!(listen = %addr, "the ACME server validates on port 443 of the domain (TLS-ALPN-01): listen on 0.0.0.0:443, or forward 443 here, or no certificate can be issued");
    }
    let listener = crate::listen::bind_for(addr, opts.tls.is_some()).await?;
    let path = opts.path.clone();
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let keys: Vec<String> = opts
        .verifier
        .keys()
        .iter()
        .map(|k| k.label.clone())
        .collect();
    let dests: Vec<String> = opts.destinations.iter().map(|d| d.name.clone()).collect();
    let relay = Relay::start(listener, opts).await?;
    let stats = relay.spool.stats().await?;
    tracing::info!(
        secrets = %keys.join(", "),
        destinations = %dests.join(", "),
        queued = stats.pending,
        dead_letters = stats.dead,
        "relay ready"
    );
    ctx.note(format!("listening on {scheme}://{}{path}", relay.addr));
    super::pace_log();
    if ctx.global.json {
        crate::output::json(
            &serde_json::json!({"listening": format!("{scheme}://{}{path}", relay.addr)}),
        )?;
    }
    let watching = super::reload::watch(ctx, &args, &relay);
    let beating = super::heartbeat::run(ctx, beat, &relay);
    tokio::select! {
        _ = shutdown.recv() => {}
        _ = watching => {}
        _ = beating => {}
    }
    tracing::info!("shutting down: finishing requests in flight; queued events stay stored");
    relay.shutdown().await;
    Ok(())
}
