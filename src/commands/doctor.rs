//! `vslack doctor` names the broken link; `vslack status` shows the state at a glance.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::output;
use crate::relay::spool;
use crate::vast::{VastError, Webhook};

use super::doctor_report::{Level, Report};

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

/// What to do about a Vast.ai error met while reading the webhook.
fn vast_fix(e: &VastError) -> String {
    match e {
        VastError::Unauthorized { fix, .. } => (*fix).to_owned(),
        VastError::Network { .. } | VastError::Server { .. } | VastError::RateLimited { .. } => {
            "check the network and VAST_URL; Vast.ai's status is at https://status.vast.ai".into()
        }
        _ => "`vslack webhook list` shows the webhooks that exist".into(),
    }
}

pub async fn doctor(ctx: &Ctx, send: bool) -> Result<u8> {
    let mut r = Report::default();
    let mut config_broken = false;
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
            config_broken = true;
            crate::config::Config::default()
        }
    };
    let mut relay_checked = false;
    let http = crate::http::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut webhook: Option<Webhook> = None;
    match ctx.client(&config) {
        Err(e) => r.fail(
            "api key",
            if config_broken {
                "no API key found outside the config file, which could not be read".to_owned()
            } else {
                format!("{e:#}")
            },
            if config_broken {
                "fix the config file first (see the config check): the saved key is in it"
            } else if e.downcast_ref::<crate::secret::InsecureFile>().is_some() {
                "fix the file's mode as the message says"
            } else {
                "run `vslack login` or set VAST_API_KEY"
            },
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
                Err(e @ VastError::Unauthorized { .. }) => {
                    let fix = vast_fix(&e);
                    r.fail(
                        "api key",
                        format!(
                            "Vast.ai rejected the key from {} (HTTP 401)",
                            client.key_source()
                        ),
                        fix,
                    )
                }
                Err(e) => r.fail(
                    "vast.ai",
                    e.to_string(),
                    "check the network; see https://status.vast.ai",
                ),
            }
            match config.default_webhook {
                None if config.relay.tunnel.is_some() => r.warn(
                    "webhook",
                    "none yet: in tunnel mode `vslack up` creates it once the tunnel's URL is known",
                    "run `vslack up`",
                ),
                None => r.fail("webhook", "no default webhook", "create one with `vslack setup` or `vslack webhook create`, or pick one with `vslack webhook default ID`"),
                Some(id) => match client.get_webhook(id).await {
                    Ok(w) => {
                        r.ok("webhook", format!("{id} exists -> {}", crate::urls::shown(&w.webhook_url)));
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
                    Err(e) => {
                        let fix = vast_fix(&e);
                        r.fail("webhook", e.to_string(), fix)
                    }
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
                        if send {
                            test_secret(&mut r, &client, &http, &o, w.id).await;
                        }
                    }
                    _ => r.fail(
                        "relay",
                        format!("the webhook URL {} does not reach a vslack relay (no /health)", crate::urls::shown(&w.webhook_url)),
                        "start `vslack up` (re-points the webhook at a new tunnel), or fix the URL with `vslack webhook update --url`",
                    ),
                }
            }
        }
    }
    if !r.0.iter().any(|c| c.name == "secret") {
        super::doctor_report::secret_held(&mut r, &config);
    }
    if !relay_checked {
        // No webhook to follow: at least look for a relay on this machine.
        if let Ok(addr) = super::serve::local_addr(&config) {
            match crate::listen::relay_health(addr).await {
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
    super::doctor_tls::checks(
        &mut r,
        &config,
        webhook.as_ref().map(|w| w.webhook_url.as_str()),
    )
    .await;
    match super::serve::slack_url(None, &config) {
        Ok(Some(url)) => {
            r.ok(
                "slack url",
                format!("set ({})", crate::relay::deliver::host_of(url.expose())),
            );
            if send {
                let hello = async {
                    let kind = super::serve::kind_of(&url, config.slack.kind)?;
                    crate::relay::deliver::post_hello(kind, &url).await
                };
                match hello.await {
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
        Err(e) => r.fail(
            "slack url",
            format!("{e:#}"),
            "`vslack slack set` with the URL Slack gave you",
        ),
    }
    super::doctor_report::destinations(&mut r, &config, send).await;
    let location = super::store_pg::location(ctx, &config, None);
    if let Ok(spool::Location::Postgres(url)) = &location {
        super::doctor_report::shared_store(&mut r, url).await;
    }
    let store = async {
        match spool::open_for_command(&location?, &ctx.paths.spool_file()).await? {
            Some(sp) => {
                let head = sp.list(spool::PENDING, 1).await?.into_iter().next();
                let dead = sp.list(spool::DEAD, 1).await?.into_iter().next();
                Ok::<_, anyhow::Error>(Some((sp.stats().await?, head, dead)))
            }
            None => Ok(None),
        }
    };
    match store.await {
        Ok(Some((s, head, dead))) => {
            if s.dead > 0 {
                let answer = dead
                    .and_then(|q| q.last_error)
                    .map(|e| format!(": the destination answered {e}"))
                    .unwrap_or_default();
                r.fail(
                    "queue",
                    format!("{} dead-lettered {}{answer}", s.dead, if s.dead == 1 { "event" } else { "events" }),
                    "fix the destination (e.g. `vslack slack set` with a working URL), then `vslack queue retry --all`; `vslack queue` lists them",
                );
            }
            let age = s
                .oldest_pending_at
                .map(|t| (super::now_secs() - t).max(0))
                .unwrap_or(0);
            // The head of the queue holds up everything behind it: if its last try failed,
            // delivery is failing now, however young the queue is.
            let failing = head.filter(|q| q.attempts > 0).and_then(|q| {
                q.last_error
                    .map(|e| format!("{e} (after {} tries)", q.attempts))
            });
            if s.dead > 0 {
                // Reported above, as a failure.
            } else if let Some(error) = failing {
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
    super::doctor_report::incidents(
        &mut r,
        &crate::relay::incidents::Record::load(&crate::relay::incidents::record_path(
            &ctx.paths.spool_file(),
        )),
        config.relay.heartbeat.as_deref(),
    );
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
