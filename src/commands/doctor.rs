//! `vslack doctor` names the broken link; `vslack status` shows the state at a glance.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::output;
use crate::relay::spool;
use crate::vast::{VastError, Webhook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    /// `null` when there is nothing to fix.
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(
        &mut self,
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Check {
            name,
            level,
            detail: detail.into(),
            fix,
        });
    }
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Level::Ok, detail, None);
    }
    fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Warn, detail, Some(fix.into()));
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Fail, detail, Some(fix.into()));
    }
}

/// Origin of a URL (`https://host:port`), where the relay answers `/health` and `/metrics`.
fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

/// A counter from the relay's /metrics.
async fn metric(http: &reqwest::Client, origin: &str, line_prefix: &str) -> Option<u64> {
    let text = http
        .get(format!("{origin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

pub async fn doctor(ctx: &Ctx, send: bool, no_test: bool) -> Result<u8> {
    let mut r = Report::default();
    let config = match ctx.config() {
        Ok(c) => {
            let path = ctx.paths.config_file();
            if path.exists() {
                r.ok("config", format!("{} readable, private", path.display()));
            } else {
                r.ok(
                    "config",
                    format!(
                        "{} not created yet (`vslack setup` writes it)",
                        path.display()
                    ),
                );
            }
            c
        }
        Err(e) => {
            r.fail(
                "config",
                format!("{e:#}"),
                "fix the file as the message says; the checks below ignore it",
            );
            crate::config::Config::default()
        }
    };
    let mut relay_checked = false;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut webhook: Option<Webhook> = None;
    match ctx.client(&config) {
        Err(e) => r.fail(
            "api key",
            format!("{e:#}"),
            "run `vslack login` or set VAST_API_KEY",
        ),
        Ok(client) => {
            match client.server_time().await {
                Ok(date) => {
                    r.ok("api key", format!("accepted ({})", client.key_source()));
                    if let Some(server) = date {
                        let skew = match SystemTime::now().duration_since(server) {
                            Ok(d) => d.as_secs() as i64,
                            Err(e) => -(e.duration().as_secs() as i64),
                        };
                        let how = format!(
                            "this machine's clock is {} s {} Vast.ai's",
                            skew.abs(),
                            if skew < 0 { "behind" } else { "ahead of" }
                        );
                        if skew.abs() > 240 {
                            r.fail("clock", how, "fix the clock (e.g. enable NTP): signatures older than 300 s are refused");
                        } else if skew.abs() > 30 {
                            r.warn(
                                "clock",
                                how,
                                "enable NTP before the skew reaches the 300 s signature window",
                            );
                        } else {
                            r.ok("clock", format!("{skew:+} s from Vast.ai's clock"));
                        }
                    }
                }
                Err(e @ VastError::Unauthorized { .. }) => r.fail(
                    "api key",
                    e.to_string(),
                    "run `vslack login` with a current key",
                ),
                Err(e) => r.fail(
                    "vast.ai",
                    e.to_string(),
                    "check the network; see https://status.vast.ai",
                ),
            }
            match config.default_webhook {
                None => r.fail("webhook", "no default webhook", "create one with `vslack setup` or `vslack webhook create`, or pick one with `vslack webhook default ID`"),
                Some(id) => match client.get_webhook(id).await {
                    Ok(w) => {
                        r.ok("webhook", format!("{id} exists -> {}", w.webhook_url));
                        if w.event_types.is_empty() {
                            r.warn("events", "subscribed to no events", format!("`vslack webhook update {id} --add-event KEY`"));
                        } else {
                            r.ok("events", w.event_types.join(", "));
                        }
                        webhook = Some(w);
                    }
                    Err(VastError::WebhookNotFound { .. }) => r.fail(
                        "webhook",
                        format!("the default webhook {id} does not exist at Vast.ai"),
                        "run `vslack up` (creates one) or `vslack webhook create`; `vslack webhook list` shows what exists",
                    ),
                    Err(e) => r.fail("webhook", e.to_string(), "see the error"),
                },
            }
            if let Some(w) = &webhook {
                if config.webhook(w.id).is_none() {
                    r.fail(
                        "secret",
                        format!("this machine holds no signing secret for webhook {}", w.id),
                        format!(
                            "`vslack webhook rotate-secret {}` (then restart the relay)",
                            w.id
                        ),
                    );
                } else {
                    r.ok("secret", "held locally (mode 0600)");
                }
                let relay = origin(&w.webhook_url);
                let health = match &relay {
                    Some(o) => http
                        .get(format!("{o}/health"))
                        .send()
                        .await
                        .ok()
                        .filter(|r| r.status().is_success()),
                    None => None,
                };
                relay_checked = true;
                match (health, relay) {
                    (Some(h), Some(o)) => {
                        let body: serde_json::Value = h.json().await.unwrap_or_default();
                        r.ok("relay", format!("{o}/health answers ({})", body["status"].as_str().unwrap_or("?")));
                        if !no_test {
                            test_secret(&mut r, &client, &http, &o, w.id).await;
                        }
                    }
                    _ => r.fail(
                        "relay",
                        format!("the webhook URL {} does not reach a vslack relay (no /health)", w.webhook_url),
                        "start `vslack up` (re-points the webhook at a new tunnel), or fix the URL with `vslack webhook update --url`",
                    ),
                }
            }
        }
    }
    if !relay_checked {
        // No webhook to follow: at least look for a relay on this machine.
        if let Ok(addr) = super::serve::local_addr(&config) {
            match local_health(addr).await {
                Some(h) => r.ok(
                    "relay",
                    format!(
                        "a relay answers on {addr} ({})",
                        h["status"].as_str().unwrap_or("?")
                    ),
                ),
                None => r.warn(
                    "relay",
                    format!("no relay answers on {addr}"),
                    "start one with `vslack serve` or `vslack up`",
                ),
            }
        }
    }
    match super::serve::slack_url(None, &config) {
        Ok(Some(url)) => {
            r.ok(
                "slack url",
                format!("set ({})", crate::relay::slack::host_of(url.expose())),
            );
            if send {
                match crate::relay::slack::post_hello(&url).await {
                    Ok(()) => r.ok("slack", "accepted a test message"),
                    Err(e) => r.fail(
                        "slack",
                        format!("{e:#}"),
                        "`vslack slack set` with a working incoming-webhook URL",
                    ),
                }
            }
        }
        Ok(None) => r.fail(
            "slack url",
            "none configured",
            "`vslack slack set` or SLACK_WEBHOOK_URL",
        ),
        Err(e) => r.fail("slack url", format!("{e:#}"), "fix --slack-url-file"),
    }
    let store = async {
        match spool::open_existing(&ctx.paths.spool_file())? {
            Some(sp) => {
                let head = sp.list(spool::PENDING, 1).await?.into_iter().next();
                Ok::<_, anyhow::Error>(Some((sp.stats().await?, head)))
            }
            None => Ok(None),
        }
    };
    match store.await {
        Ok(Some((s, head))) => {
            if s.dead > 0 {
                r.warn(
                    "queue",
                    format!("{} dead letter(s)", s.dead),
                    "`vslack queue` shows why; `vslack queue retry --all` after fixing",
                );
            }
            let age = s
                .oldest_pending_at
                .map(|t| super::now_secs() - t)
                .unwrap_or(0);
            // The head of the queue holds up everything behind it: if its last try failed,
            // delivery is failing now, however young the queue is.
            let failing = head.filter(|q| q.attempts > 0).and_then(|q| {
                q.last_error
                    .map(|e| format!("{e} (after {} tries)", q.attempts))
            });
            if let Some(error) = failing {
                r.warn(
                    "queue",
                    format!("{} pending; the last delivery failed: {error}", s.pending),
                    "check the Slack URL with `vslack slack test`; the relay keeps retrying on its own",
                );
            } else if age > 300 {
                r.warn(
                    "queue",
                    format!("{} pending, oldest {age} s old", s.pending),
                    "Slack may be failing: see the relay's log",
                );
            } else {
                r.ok(
                    "queue",
                    format!("{} pending, {} delivered", s.pending, s.delivered),
                );
            }
        }
        Ok(None) => {}
        Err(e) => r.fail(
            "queue",
            format!("cannot read the event store: {e:#}"),
            format!("check {}", ctx.paths.data_dir.display()),
        ),
    }
    let failed = r.0.iter().any(|c| c.level == Level::Fail);
    if ctx.global.json {
        output::json(&json!({"ok": !failed, "checks": r.0}))?;
    } else {
        for c in &r.0 {
            let tag = match c.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {:<10} {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("      {:<10} fix: {f}", "");
            }
        }
    }
    Ok(if failed {
        crate::exit::FAILURE
    } else {
        crate::exit::OK
    })
}

/// Fire Vast.ai's test event and see whether the relay verified it.
async fn test_secret(
    r: &mut Report,
    client: &crate::vast::VastClient,
    http: &reqwest::Client,
    origin: &str,
    id: i64,
) {
    const STORED: &str = "vslack_received_total{outcome=\"stored\"} ";
    const BAD: &str = "vslack_received_total{outcome=\"bad_signature\"} ";
    let before = (
        metric(http, origin, STORED).await,
        metric(http, origin, BAD).await,
    );
    let fired = client.test_webhook(id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = (
        metric(http, origin, STORED).await,
        metric(http, origin, BAD).await,
    );
    let bad_grew = matches!((before.1, after.1), (Some(a), Some(b)) if b > a);
    let stored_grew = matches!((before.0, after.0), (Some(a), Some(b)) if b > a);
    match fired {
        _ if bad_grew => r.fail(
            "signature",
            "the relay refused Vast.ai's test delivery: bad_signature (the relay's secret does not match the webhook's)",
            format!("`vslack webhook rotate-secret {id}` on the relay's machine, then restart the relay"),
        ),
        Ok(_) if stored_grew => r.ok("signature", "Vast.ai's test event was verified and stored by the relay"),
        Ok(msg) => r.warn("signature", format!("Vast.ai says {msg:?}, but the relay's counters did not move"), "is another relay behind that URL?"),
        Err(e) => r.fail("signature", format!("test delivery failed: {e}"), "see `vslack up` / the relay log"),
    }
}

/// The local relay's /health, if one answers at `addr` (see `serve::local_addr`).
async fn local_health(addr: std::net::SocketAddr) -> Option<serde_json::Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .ok()?;
    let url = format!("http://{addr}/health");
    http.get(url).send().await.ok()?.json().await.ok()
}

pub async fn status(ctx: &Ctx) -> Result<()> {
    let config = ctx.config()?;
    let stats = match spool::open_existing(&ctx.paths.spool_file())? {
        Some(sp) => Some(sp.stats().await?),
        None => None,
    };
    // What `vslack serve` would use: flags aside, the environment and the config file.
    let secrets: Vec<String> = super::serve::keys(&config, config.secret_grace())
        .into_iter()
        .map(|k| k.label)
        .collect();
    let slack =
        super::serve::slack_url(None, &config)?.map(|u| crate::relay::slack::host_of(u.expose()));
    let listen = super::serve::local_addr(&config)?;
    let health = local_health(listen).await;
    let v = json!({
        "queue_depth": stats.as_ref().map(|s| s.pending),
        "dead_letters": stats.as_ref().map(|s| s.dead),
        "delivered": stats.as_ref().map(|s| s.delivered),
        "last_delivery_at": stats.as_ref().and_then(|s| s.last_delivered_at),
        "default_webhook": config.default_webhook,
        "secrets": secrets,
        "slack_host": slack,
        "routes": config.slack.routes.iter().map(|r| r.events.clone()).collect::<Vec<_>>(),
        "listen": listen.to_string(),
        "relay_running": health.is_some(),
        "relay_status": health.as_ref().and_then(|h| h["status"].as_str().map(str::to_owned)),
        "tunnel": config.relay.tunnel.as_deref().map(crate::config::shown_safely),
        "public_url": config.relay.public_url.as_deref().map(crate::config::shown_safely),
        "store": ctx.paths.spool_file(),
    });
    if ctx.global.json {
        return output::json(&v);
    }
    match &stats {
        Some(s) => {
            println!(
                "queue         {} pending, {} dead-lettered, {} delivered",
                s.pending, s.dead, s.delivered
            );
            let last = s.last_delivered_at.map(output::unix_time);
            println!("last delivery {}", last.unwrap_or_else(|| "never".into()));
        }
        None if ctx.paths.dry_run_dir().exists() => println!(
            "queue         no event store yet (only `serve --dry-run` has run; it keeps its own store in {})",
            ctx.paths.dry_run_dir().display()
        ),
        None => println!("queue         no event store yet (the relay has not run)"),
    }
    let default = config.default_webhook.map(|d| format!("{d} (default)"));
    println!(
        "webhook       {}",
        default.unwrap_or_else(|| "none: `vslack setup`".into())
    );
    println!(
        "secrets       {}",
        if secrets.is_empty() {
            "none: `vslack webhook create` or VAST_WEBHOOK_SECRET".to_owned()
        } else {
            secrets.join(", ")
        }
    );
    println!(
        "slack         {}",
        slack.unwrap_or_else(|| "not set: `vslack slack set` or SLACK_WEBHOOK_URL".into())
    );
    let running = match health.as_ref().and_then(|h| h["status"].as_str()) {
        Some(st) => format!("running ({st})"),
        None => "not running".into(),
    };
    println!("relay         {listen}: {running}");
    if let Some(t) = &config.relay.tunnel {
        println!("tunnel        {}", crate::config::shown_safely(t));
    }
    if let Some(u) = &config.relay.public_url {
        println!("public url    {}", crate::config::shown_safely(u));
    }
    Ok(())
}
