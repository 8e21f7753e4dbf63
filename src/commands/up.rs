//! `vslack up`: the walkthrough's three terminals in one. Relay, tunnel, webhook re-pointed at
//! the tunnel, Vast.ai's test event verified and delivered, then a line per event until Ctrl-C.

use std::time::Duration;

use anyhow::{bail, Result};

use super::up_reach::{reach, Reach};
use super::up_report::{say, Lines, JSON_LINES};
use super::up_webhook::{left_behind, point, undo, Pointed};
use super::Ctx;
use crate::cli::UpArgs;
use crate::relay::metrics::Received;
use crate::relay::{Activity, Relay};
use crate::tunnel::{Tunnel, TunnelEvent};
use crate::vast::types::WebhookChange;
use crate::vast::{VastClient, VastError};

pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<u8> {
    JSON_LINES.store(ctx.global.json, std::sync::atomic::Ordering::Relaxed);
    let mut shutdown = super::Shutdown::install()?;
    let config = ctx.config()?;
    let how = reach(ctx, &args, &config)?;
    let client = ctx.client(&config)?;
    // Check every relay setting now, before anything changes at Vast.ai (the secrets are
    // known only once the webhook exists).
    // Behind a tunnel, `--domain` is the tunnel's hostname, and the tunnel speaks plain HTTP
    // to the relay: no certificate of the relay's own.
    let tunnel = matches!(how, Reach::Tunnel(_));
    let mut serve_args = args.serve.clone();
    if tunnel {
        serve_args.domain = None;
    }
    let mut opts = super::serve::relay_options_before_secrets(ctx, &serve_args, &config)?;
    if tunnel {
        opts.tls = None;
    }
    let addr = super::serve::listen_addr(args.serve.listen.as_deref(), &config)?;
    // Bind first: tunnels such as tmole only start once something listens.
    let listener = crate::listen::bind(addr).await?;

    let mut s = Session {
        tunnel: None,
        pointed: None,
        relay: None,
        ready: false,
    };
    let mut outcome = s
        .run(ctx, &args, &client, &how, (listener, opts), &mut shutdown)
        .await;

    // Whatever happened: stop the tunnel (SIGTERM, then SIGKILL after 3 s) and the relay (it
    // finishes the requests and the Slack post under way, each bounded by its timeout, so
    // nothing is posted twice), then undo what --cleanup asks, or, when start-up never got
    // as far as "ready", what `up` changed: a webhook is never left pointing at a URL that
    // was not shown to reach this relay. That talks to Vast.ai and may hang on it: another
    // Ctrl-C skips it and says what is left to undo.
    let started = s.tunnel.is_some() || s.relay.is_some();
    if let Some(t) = s.tunnel.take() {
        t.stop().await;
    }
    if let Some(r) = s.relay.take() {
        r.shutdown().await;
    }
    let undo_wanted = args.cleanup || !s.ready;
    if let Some(p) = s.pointed.as_ref().filter(|_| undo_wanted) {
        tokio::select! {
            undone = undo(ctx, &client, p) => {
                if let Err(e) = undone {
                    eprintln!("error: cleanup failed: {e:#}");
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
            }
            _ = shutdown.recv() => {
                eprintln!("error: interrupted: quitting without finishing the cleanup");
                if let Some(hint) = left_behind(p) {
                    eprintln!("{hint}");
                }
                return Ok(crate::exit::INTERRUPTED);
            }
        }
    }
    if let Some(p) = s.pointed.as_ref().filter(|_| !undo_wanted) {
        eprintln!(
            "note: webhook {} still points at {}, which nothing serves now that `up` has stopped; Vast.ai's deliveries fail (and are retried for a while) until `vslack up` runs again (it re-points the webhook) or you change it with `vslack webhook update {} --url URL`. `vslack up --cleanup` undoes this on exit.",
            p.id,
            crate::config::shown_safely(&p.url),
            p.id
        );
    }
    if started {
        say("stopped");
    }
    outcome
}

/// What `up` has started or changed, so that it can be stopped and undone on every path.
struct Session {
    tunnel: Option<Tunnel>,
    pointed: Option<Pointed>,
    relay: Option<Relay>,
    /// The webhook was shown to reach this relay (or --no-test): from here on a failure
    /// leaves it pointing here, unless --cleanup.
    ready: bool,
}

impl Session {
    async fn run(
        &mut self,
        ctx: &Ctx,
        args: &UpArgs,
        client: &VastClient,
        how: &Reach,
        // The bound listener and the relay's checked settings; it starts once the webhook
        // points here.
        (listener, mut opts): (tokio::net::TcpListener, crate::relay::RelayOptions),
        shutdown: &mut super::Shutdown,
    ) -> Result<u8> {
        let port = listener.local_addr()?.port();
        let path = opts.path.clone();
        let join = |base: &str| super::webhook::join_url(base, &path);
        let public = match how {
            Reach::Public(u) => u.clone(),
            Reach::Tunnel(spec) => {
                let spinner = spinner(ctx, &format!("starting {} on port {port}…", spec.program()));
                let t = self.tunnel.insert(Tunnel::start(spec, port)?);
                let first = tokio::select! {
                    r = t.first_url(args.tunnel_timeout) => r,
                    _ = shutdown.recv() => Err(anyhow::anyhow!("interrupted while waiting for the tunnel")),
                };
                spinner.finish_and_clear();
                let url = first?;
                if url.starts_with("http://") {
                    ctx.note(format!("warning: the tunnel printed a plain http URL ({url}); Vast.ai only delivers to public https URLs, so this works only with a local stand-in"));
                }
                say(format!("tunnel    {url} -> 127.0.0.1:{port}"));
                url
            }
        };
        let webhook_url = join(&public);
        let pointed = self
            .pointed
            .insert(point(ctx, client, args, &webhook_url).await?);
        let id = pointed.id;
        say(format!("webhook   {id} -> {webhook_url}"));

        // The webhook's secret is held now.
        opts.verifier = super::serve::verifier(&args.serve, &ctx.config()?);
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let relay = self.relay.insert(Relay::start(listener, opts).await?);
        let mut activity = relay.subscribe();
        say(format!(
            "relay     listening on {scheme}://127.0.0.1:{port}{path}"
        ));

        let beat = super::serve::heartbeat(&args.serve, &ctx.config()?)?;
        if !args.no_test {
            tokio::select! {
                r = test_round_trip(client, id, &mut activity) => {
                    r?;
                    say("test      Vast.ai's test event was verified, stored and accepted by Slack: all links work");
                    // That was a heartbeat too: the next is due an interval from now.
                    if let Some((every, _)) = beat {
                        relay.control().incidents().heartbeat(true, Some(every)).await;
                    }
                }
                _ = shutdown.recv() => return Ok(crate::exit::OK),
            }
        }
        self.ready = true;
        say("ready     waiting for events (Ctrl-C to stop)");
        let reload = super::reload::watch(ctx, &args.serve, relay);
        let beating = super::heartbeat::run(ctx, beat, relay);
        tokio::select! {
            o = watch(client, &mut self.tunnel, how, port, &join, id, &mut activity, shutdown) => o,
            _ = reload => Ok(crate::exit::OK),
            _ = beating => Ok(crate::exit::OK),
        }
    }
}

async fn test_round_trip(
    client: &VastClient,
    id: i64,
    activity: &mut tokio::sync::broadcast::Receiver<Activity>,
) -> Result<()> {
    let fire = client.test_webhook(id);
    let msg = match fire.await {
        Ok(m) => m,
        Err(VastError::BadRequest { msg }) => bail!(
            "Vast.ai could not deliver its test event ({msg}). If the relay logged `refused`, the secret does not match; otherwise the tunnel does not reach the relay"
        ),
        Err(e) => return Err(e.into()),
    };
    say(format!("test      Vast.ai: {msg}"));
    // The forwarder can report the delivery before the request handler reports the receipt
    // (they are different tasks, both woken by the same commit), so outcomes seen before the
    // test event's id is known are kept and checked once it is.
    let wait = async {
        let mut test_id: Option<String> = None;
        let mut outcomes: Vec<(Vec<String>, Option<String>)> = Vec::new();
        loop {
            match activity.recv().await {
                Ok(Activity::Received {
                    event_id,
                    notif_type,
                    outcome,
                }) if notif_type.as_deref() == Some("webhook_test") => {
                    if outcome == Received::Duplicate {
                        say("test      (Vast.ai's test event was already stored: a redelivery)");
                        return Ok(());
                    }
                    test_id = event_id;
                }
                Ok(Activity::Delivered { event_ids }) => outcomes.push((event_ids, None)),
                Ok(Activity::DeadLettered { event_ids, error }) => {
                    outcomes.push((event_ids, Some(error)))
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => bail!("relay stopped: {e}"),
            }
            let Some(id) = &test_id else { continue };
            match outcomes.iter().find(|(ids, _)| ids.contains(id)) {
                Some((_, None)) => return Ok(()),
                Some((_, Some(error))) => bail!("Slack refused the test message ({error}); check the Slack URL (`vslack slack set`)"),
                None => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the test event did not reach Slack within 30 s; see the log lines above"
            )
        })?
}

/// Restarts of a dying tunnel before `up` gives up (the count starts afresh after it has run
/// for 5 minutes).
const MAX_RESTARTS: u32 = 3;

#[allow(clippy::too_many_arguments)]
async fn watch(
    client: &VastClient,
    tunnel: &mut Option<Tunnel>,
    how: &Reach,
    port: u16,
    join: &dyn Fn(&str) -> String,
    id: i64,
    activity: &mut tokio::sync::broadcast::Receiver<Activity>,
    shutdown: &mut super::Shutdown,
) -> Result<u8> {
    let mut restarts = 0;
    let mut since = std::time::Instant::now();
    let mut lines = Lines::default();
    loop {
        let (exited, new_url) = match tunnel.as_mut() {
            Some(t) => tokio::select! {
                _ = shutdown.recv() => return Ok(crate::exit::OK),
                a = activity.recv() => { if let Ok(a) = a { lines.say(&a); } continue; }
                e = t.next_event() => match e {
                    TunnelEvent::Exited(status) => (Some(status), None),
                    TunnelEvent::NewUrl(url) => (None, Some(url)),
                },
            },
            None => tokio::select! {
                _ = shutdown.recv() => return Ok(crate::exit::OK),
                a = activity.recv() => { if let Ok(a) = a { lines.say(&a); } continue; }
            },
        };
        let url = match (exited, new_url) {
            (Some(status), _) => {
                let Reach::Tunnel(spec) = how else {
                    unreachable!("no tunnel, no exit")
                };
                // Whatever the dead tunnel left in its process group goes too.
                let last = match tunnel.take() {
                    Some(mut old) => {
                        let last = old.last_lines().await;
                        old.stop().await;
                        last
                    }
                    None => String::new(),
                };
                // A tunnel that ran for a while before dying starts a fresh count.
                if since.elapsed() > Duration::from_secs(300) {
                    restarts = 0;
                }
                if restarts == MAX_RESTARTS {
                    bail!("the tunnel keeps exiting ({status}, {MAX_RESTARTS} restarts); Vast.ai cannot reach this relay. Check `{}` on its own{last}", spec.program());
                }
                restarts += 1;
                say(format!(
                    "tunnel    {} exited ({status}){last}",
                    spec.program()
                ));
                say(format!("tunnel    restarting ({restarts}/{MAX_RESTARTS})"));
                let t = tunnel.insert(Tunnel::start(spec, port)?);
                since = std::time::Instant::now();
                tokio::select! {
                    r = t.first_url(Duration::from_secs(30)) => r.map_err(|e| anyhow::anyhow!("the tunnel could not be restarted: {e:#}. Vast.ai cannot reach this relay"))?,
                    _ = shutdown.recv() => return Ok(crate::exit::OK),
                }
            }
            (None, Some(u)) => u,
            (None, None) => continue,
        };
        let webhook_url = join(&url);
        repoint(client, id, &webhook_url, shutdown).await?;
    }
}

/// Point the webhook at a new URL, retrying a few times: Vast.ai being briefly unreachable
/// must not end `up`.
async fn repoint(
    client: &VastClient,
    id: i64,
    url: &str,
    shutdown: &mut super::Shutdown,
) -> Result<()> {
    let change = WebhookChange {
        webhook_url: Some(url.to_owned()),
        ..Default::default()
    };
    for attempt in 1..=5 {
        match client.update_webhook(id, &change).await {
            Ok(_) => {
                say(format!("webhook   {id} re-pointed -> {url}"));
                return Ok(());
            }
            Err(e @ (VastError::Unauthorized { .. } | VastError::WebhookNotFound { .. })) => {
                return Err(e.into())
            }
            Err(e) if attempt < 5 => {
                say(format!(
                    "webhook   re-pointing failed ({e}); retrying in 5 s"
                ));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.recv() => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn spinner(ctx: &Ctx, msg: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if ctx.global.quiet || ctx.global.json || !std::io::stderr().is_terminal() {
        ctx.note(msg);
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}
