//! The heartbeat (`serve --heartbeat 6h`): every interval, ask Vast.ai to send each stored
//! webhook's test event and check that it arrives here, through the real path (Vast.ai, the
//! public URL, this relay's signature check). The test events are recorded, not posted (see
//! `relay::gate`). When one does not arrive, the diagnosis opens ONE incident (see
//! `relay::incidents`): the API key refused, the webhook deleted, its URL not this relay's, a
//! signature no stored secret matches, this clock off, or plainly not arriving. A later
//! heartbeat that gets through clears it. The config is read again for every heartbeat, so a
//! new key (`vslack login`) or secret is used at once.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::config::Config;
use crate::relay::{Control, Relay};
use crate::vast::{VastClient, VastError};

/// While failing, heartbeats come this often (or at the interval, if shorter).
const RETRY_FAILING: Duration = Duration::from_secs(600);
/// Vast.ai unreachable this many heartbeats in a row opens an incident.
const UNREACHABLE_BEATS: u32 = 3;

/// What one test found wrong: an incident (key, title, detail), a passing trouble, or
/// nothing to test at all.
enum Failure {
    Incident(&'static str, String, String),
    Transient(String),
    NothingToTest,
}

/// Run the heartbeat until the process stops (forever when it is off).
pub async fn run(ctx: &Ctx, settings: Option<(Duration, Duration)>, relay: &Relay) {
    let control = relay.control();
    let incidents = control.incidents();
    let Some((every, timeout)) = settings else {
        // Off: what an earlier run left open cannot clear by itself.
        incidents.heartbeat(false, None).await;
        incidents
            .resolve("heartbeat", "The heartbeat was turned off")
            .await;
        return std::future::pending().await;
    };
    let record = incidents.record();
    // A restart does not ask Vast.ai again before the interval is up, unless something is
    // wrong (an incident open) or it never succeeded.
    let since = record
        .heartbeat_last_success
        .map(|t| (crate::relay::now_secs() - t).max(0) as u64);
    let first = match since {
        Some(s) if record.current().next().is_none() && s < every.as_secs() => {
            Duration::from_secs(every.as_secs() - s)
        }
        _ => Duration::from_secs(2),
    };
    tracing::info!(every = %humantime::format_duration(every), first_in = %humantime::format_duration(first), "heartbeat on");
    let mut next = Instant::now() + first;
    let mut unreachable = 0;
    let mut said_nothing = false;
    loop {
        tokio::time::sleep_until(next.into()).await;
        if !control.forwarding() {
            // A standby on a shared store: the forwarding relay runs the heartbeat (and
            // recognises its test event whichever relay receives it). Checked again soon, so
            // a relay that takes over beats within seconds.
            next = Instant::now() + every.min(Duration::from_secs(5));
            continue;
        }
        let result = beat(ctx, &control, timeout).await;
        if !matches!(result, Err(Failure::NothingToTest)) {
            incidents.heartbeat(false, Some(every)).await;
        }
        let wait = match result {
            Err(Failure::NothingToTest) => {
                if !said_nothing {
                    tracing::warn!("heartbeat: no webhook is stored on this machine (only VAST_WEBHOOK_SECRET?), so there is nothing to test; `vslack webhook create` stores one");
                    said_nothing = true;
                }
                incidents
                    .heartbeat_idle(
                        "nothing to test: no webhook is stored on this machine (`vslack webhook create` stores one)",
                        every,
                    )
                    .await;
                every
            }
            Ok(()) => {
                unreachable = 0;
                said_nothing = false;
                incidents.heartbeat(true, Some(every)).await;
                incidents
                    .resolve(
                        "heartbeat",
                        "The heartbeat's test event arrives through Vast.ai again",
                    )
                    .await;
                every
            }
            Err(Failure::Incident(key, title, detail)) => {
                let avoid = control.failing_destinations();
                incidents.open(key, &title, &detail, avoid).await;
                every.min(RETRY_FAILING)
            }
            Err(Failure::Transient(why)) => {
                unreachable += 1;
                let again = every.min(Duration::from_secs(60));
                tracing::warn!(error = %why, retry_in = %humantime::format_duration(again), "heartbeat: cannot ask Vast.ai for a test event");
                if unreachable >= UNREACHABLE_BEATS {
                    let detail = format!("{unreachable} heartbeats in a row could not ask Vast.ai for a test event: {why}. Nothing says the pipeline works until one gets through");
                    let avoid = control.failing_destinations();
                    incidents
                        .open(
                            "heartbeat",
                            "the heartbeat cannot reach Vast.ai",
                            &detail,
                            avoid,
                        )
                        .await;
                }
                every.min(Duration::from_secs(60))
            }
        };
        next = Instant::now() + wait;
    }
}

/// One heartbeat: test every webhook this machine holds a secret for.
async fn beat(ctx: &Ctx, control: &Control, timeout: Duration) -> Result<(), Failure> {
    let config = ctx
        .config()
        .map_err(|e| Failure::Transient(format!("cannot read the config: {e:#}")))?;
    let ids: Vec<i64> = config
        .webhooks
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect();
    if ids.is_empty() {
        return Err(Failure::NothingToTest);
    }
    // The lookup's own message names local paths: not for a chat channel.
    let client = ctx.client(&config).map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "heartbeat: no usable Vast.ai API key");
        Failure::Incident(
            "heartbeat",
            "the heartbeat has no Vast.ai API key".into(),
            "No usable Vast.ai API key on this machine, so the heartbeat cannot ask for its test event. Save one with `vslack login` (the relay's log says where it looked)".into(),
        )
    })?;
    for id in ids {
        test_one(&client, control, &config, id, timeout).await?;
    }
    Ok(())
}

async fn test_one(
    client: &VastClient,
    control: &Control,
    config: &Config,
    id: i64,
    timeout: Duration,
) -> Result<(), Failure> {
    let before = control.counts();
    let until = crate::relay::now_secs() * 1000 + 2 * timeout.as_millis() as i64 + 10_000;
    let mut arrivals = control.expect_heartbeat(until, &format!("webhook {id}"));
    let answer = client.test_webhook(id).await;
    let refused = match answer {
        Ok(_) => None,
        Err(VastError::Unauthorized { .. }) => {
            control.close_heartbeat();
            return Err(Failure::Incident(
                "heartbeat",
                "Vast.ai refuses the API key".into(),
                "Vast.ai answered 401 to the heartbeat: the API key was revoked or replaced. Save a new one with `vslack login`; the next heartbeat uses it".into(),
            ));
        }
        Err(VastError::WebhookNotFound { .. } | VastError::NotFound { .. }) => {
            control.close_heartbeat();
            return Err(deleted(id, config));
        }
        Err(VastError::BadRequest { msg }) => Some(msg),
        Err(e) => {
            control.close_heartbeat();
            return Err(Failure::Transient(e.to_string()));
        }
    };
    // Only this webhook's test event counts (verified with its secret, current or previous).
    // The window stays open past the wait, so a late one is still recorded, not posted.
    let key = format!("webhook {id}");
    let arrived = async {
        while arrivals.changed().await.is_ok() {
            let k = control.heartbeat_key();
            if k == key || k.starts_with(&format!("{key} ")) {
                return true;
            }
        }
        false
    };
    let arrived = match refused {
        None => tokio::time::timeout(timeout, arrived)
            .await
            .unwrap_or(false),
        // Vast.ai says the delivery failed: it has given up on it (test events are not
        // retried).
        Some(_) => false,
    };
    if arrived {
        tracing::info!(webhook = id, "heartbeat: the test event arrived");
        return Ok(());
    }
    Err(diagnose(client, control, config, id, before, refused, timeout).await)
}

/// Why a test event did not arrive: what this relay refused since the test was asked for,
/// else what Vast.ai knows of the webhook.
async fn diagnose(
    client: &VastClient,
    control: &Control,
    config: &Config,
    id: i64,
    before: (u64, u64, u64, i64),
    refused: Option<String>,
    timeout: Duration,
) -> Failure {
    let after = control.counts();
    if after.2 > before.2 {
        return Failure::Incident(
            "stale_timestamp",
            "deliveries are refused: this machine's clock is off".into(),
            crate::relay::watchdog::clock_detail(after.3),
        );
    }
    if after.1 > before.1 {
        return Failure::Incident(
            "bad_signature",
            "deliveries are refused: the secret doesn't match".into(),
            format!("Vast.ai's test event for webhook {id} arrived with a signature no stored secret matches (its secret was rotated elsewhere, or this machine holds an old one). Run `vslack webhook rotate-secret {id}` on this machine; the relay picks the new secret up at once"),
        );
    }
    let hooks = match client.list_webhooks().await {
        Ok(h) => h,
        Err(VastError::Unauthorized { .. }) => {
            return Failure::Incident(
                "heartbeat",
                "Vast.ai refuses the API key".into(),
                "Vast.ai answered 401 to the heartbeat: the API key was revoked or replaced. Save a new one with `vslack login`".into(),
            )
        }
        Err(e) => return Failure::Transient(e.to_string()),
    };
    let Some(hook) = hooks.iter().find(|h| h.id == id) else {
        return deleted(id, config);
    };
    // A URL may carry credentials: shown without them, like everywhere else.
    let url = crate::config::shown_safely(&crate::output::printable(&hook.webhook_url));
    let why = refused
        .map(|m| format!(": Vast.ai says {}", crate::output::printable(&m)))
        .unwrap_or_else(|| {
            format!(
                ", but it did not arrive here within {}",
                humantime::format_duration(timeout)
            )
        });
    if let Some(public_raw) = config.relay.public_url.as_deref() {
        let public = crate::config::shown_safely(public_raw);
        if !same_url(&hook.webhook_url, public_raw) {
            return Failure::Incident(
                "heartbeat",
                format!("Vast.ai webhook {id} points elsewhere"),
                format!("Vast.ai webhook {id} points at {url} but this relay is reached at {public}, so its events go there{why}. Run `vslack webhook update {id} --url {public}`"),
            );
        }
    }
    Failure::Incident(
        "heartbeat",
        format!("the heartbeat's test event for webhook {id} does not arrive"),
        format!("Vast.ai sent the test event for webhook {id} to {url}{why}. Check that this URL reaches this relay (the tunnel or proxy in front of it, DNS, the firewall)"),
    )
}

fn deleted(id: i64, config: &Config) -> Failure {
    let url = config
        .relay
        .public_url
        .as_deref()
        .map(crate::config::shown_safely)
        .unwrap_or_else(|| "https://YOUR-RELAY/".into());
    Failure::Incident(
        "heartbeat",
        format!("Vast.ai webhook {id} no longer exists"),
        format!("Vast.ai webhook {id} no longer exists at Vast.ai (deleted in the console or from another machine), so no event reaches this relay. Create a new one with `vslack webhook create --url {url}`, or run `vslack setup`"),
    )
}

/// Two URLs name the same endpoint (case of the host, a trailing slash).
fn same_url(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        }
        _ => a.trim_end_matches('/') == b.trim_end_matches('/'),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_url_ignores_case_and_trailing_slash() {
        assert!(super::same_url(
            "https://Relay.example.com/",
            "https://relay.example.com"
        ));
        assert!(super::same_url(
            "https://relay.example.com:443/hook/",
            "https://relay.example.com/hook"
        ));
        assert!(!super::same_url(
            "https://old-tunnel.example.com/",
            "https://relay.example.com/"
        ));
    }
}
