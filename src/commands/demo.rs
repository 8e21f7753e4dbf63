//! `vslack demo`: the README's first command. A relay, a Slack stand-in and a set of signed
//! sample events, all on loopback in a temporary directory; reports each outcome and exits 0
//! only if the pipeline behaved (every valid event delivered once, the duplicate dropped, the
//! forgery and the stale delivery refused).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::{now_secs, Ctx};
use crate::output;
use crate::relay::forward::{Destination, ForwardOptions};
use crate::relay::message::Format;
use crate::relay::metrics::Received;
use crate::relay::server::Limits;
use crate::relay::spool::SpoolOptions;
use crate::relay::verify::{Key, Verifier};
use crate::relay::{Relay, RelayOptions};
use crate::sample::{self, SAMPLES};
use crate::secret::Secret;
use crate::slack_sink::{preview, SlackSink};

struct Case {
    label: String,
    expect: (u16, &'static str),
    got: Option<sample::Answer>,
}

pub async fn run(ctx: &Ctx) -> Result<u8> {
    let human = !ctx.global.json;
    let dir = tempfile::Builder::new().prefix("vslack-demo-").tempdir()?;
    let secret = Secret::new(hex::encode(rand::random::<[u8; 32]>()));
    let sink = SlackSink::start().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay = Relay::start(
        listener,
        RelayOptions {
            path: "/".into(),
            limits: Limits::default(),
            verifier: Verifier::new(vec![Key::new("demo secret", &secret, None)], 300),
            // Host machines page someone (PagerDuty); everything else goes to Slack.
            destinations: vec![
                Destination::new(
                    "machine_*",
                    Some(glob::Pattern::new("machine_*").expect("a valid glob")),
                    Some(Secret::new(sink.pagerduty_url())),
                    Format::Pagerduty,
                ),
                Destination::new(
                    "default",
                    None,
                    Some(Secret::new(sink.url())),
                    Format::Blocks,
                ),
            ],
            forward: ForwardOptions::default(),
            spool_path: dir.path().join("spool.sqlite3"),
            store_url: None,
            spool: SpoolOptions::default(),
            log_payloads: false,
            alerts: Default::default(),
            tls: None,
        },
    )
    .await?;
    let url = format!("http://{}/", relay.addr);
    if human {
        println!(
            "{}",
            output::bold(
                "vslack demo: the whole pipeline on this machine, no Vast.ai account, no Slack"
            )
        );
        println!(
            "  relay           {url}  (fresh signing secret, store in {})",
            dir.path().display()
        );
        println!("  Slack stand-in  http://{}/services/...", sink.addr);
        println!(
            "  PagerDuty stand-in http://{}/v2/enqueue (machine_* events page someone)",
            sink.addr
        );
        println!("\nSending {} signed sample events, then a redelivery, a forged signature and a stale timestamp:", SAMPLES.len());
    }
    let http = crate::http::client();
    let now = now_secs();
    let mut cases = Vec::new();
    let mut valid_ids = Vec::new();
    let mut first = None;
    for (t, _, _) in SAMPLES {
        let d = sample::delivery(t, &secret, now);
        valid_ids.push(d.event_id.clone());
        let got = sample::post(&http, &url, &d, 1)
            .await
            .map_err(anyhow::Error::msg)?;
        cases.push(Case {
            label: format!("{t} {}", &d.event_id[..8]),
            expect: (204, "stored"),
            got: Some(got),
        });
        first.get_or_insert(d);
    }
    let first = first.expect("samples exist");
    let again = sample::post(&http, &url, &first, 2)
        .await
        .map_err(anyhow::Error::msg)?;
    cases.push(Case {
        label: format!(
            "{} {} again (Vast.ai retry)",
            first.notif_type,
            &first.event_id[..8]
        ),
        expect: (204, "duplicate"),
        got: Some(again),
    });
    let forged = sample::delivery("billing_failed", &Secret::new("not-the-secret"), now);
    cases.push(Case {
        label: "forged signature".into(),
        expect: (401, "bad_signature"),
        got: Some(
            sample::post(&http, &url, &forged, 1)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
    });
    let stale = sample::delivery("low_credit", &secret, now - 600);
    cases.push(Case {
        label: "timestamp 10 minutes old".into(),
        expect: (401, "stale_timestamp"),
        got: Some(
            sample::post(&http, &url, &stale, 1)
                .await
                .map_err(anyhow::Error::msg)?,
        ),
    });

    // Wait for the forwarder: paced at one message a second, the backlog goes out as digests.
    let started = Instant::now();
    while relay
        .metrics
        .delivered_events
        .load(std::sync::atomic::Ordering::Relaxed)
        < valid_ids.len() as u64
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = sink.received();
    let pages = sink.pages();
    let duplicates = relay.metrics.received_count(Received::Duplicate);
    relay.shutdown().await;

    // Which message carried each valid event id?
    let mut carried: BTreeMap<&str, Vec<usize>> = valid_ids
        .iter()
        .map(|id| (id.as_str(), Vec::new()))
        .collect();
    for (i, m) in messages.iter().chain(&pages).enumerate() {
        let text = m.to_string();
        for (id, v) in carried.iter_mut() {
            if text.contains(id) {
                v.push(i + 1);
            }
        }
    }
    let mut ok = true;
    let mut report = Vec::new();
    for c in &cases {
        let got = c.got.as_ref().expect("answered");
        // On a 401 the reason must match; on a 204, whether it was stored or a duplicate.
        let detail = match got.status {
            204 => got.outcome.as_deref().unwrap_or_default(),
            _ => got.reason.as_str(),
        };
        let good = got.status == c.expect.0 && detail == c.expect.1;
        ok &= good;
        let what = got.describe();
        report.push(json!({"case": c.label, "status": got.status, "reason": got.reason, "outcome": got.outcome, "as_expected": good}));
        if human {
            println!(
                "  {:<5} {:<44} -> {}",
                if good { "ok" } else { "WRONG" },
                c.label,
                what
            );
        }
    }
    let once = carried.values().all(|v| v.len() == 1);
    ok &= once && duplicates == 1;
    if human {
        println!(
            "\nWhat Slack received ({} message(s): what waits out the pace goes as one digest):",
            messages.len()
        );
        for (i, m) in messages.iter().enumerate() {
            println!("  -- message {} --", i + 1);
            for line in preview(m).lines() {
                println!("  | {line}");
            }
        }
        println!(
            "\nWhat PagerDuty received ({} event(s), one alert each):",
            pages.len()
        );
        for p in &pages {
            println!(
                "  | {} {} {} (dedup_key {})",
                p["event_action"].as_str().unwrap_or(""),
                p["payload"]["severity"].as_str().unwrap_or(""),
                p["payload"]["summary"].as_str().unwrap_or(""),
                p["dedup_key"].as_str().unwrap_or("")
            );
        }
        println!();
        for (id, v) in &carried {
            if v.len() != 1 {
                println!(
                    "  event {id} was delivered {} times (expected once)",
                    v.len()
                );
            }
        }
        if ok {
            println!(
                "{}",
                output::bold(&format!(
                    "All good: {} events delivered exactly once in {} Slack message(s) and {} PagerDuty event(s); the redelivery was deduplicated; the forgery and the stale delivery were refused.",
                    valid_ids.len(),
                    messages.len(),
                    pages.len()
                ))
            );
            println!("Next: `vslack setup`, then `vslack up --tunnel tmole` with a real account.");
        } else {
            println!(
                "{}",
                output::bold("The pipeline did not behave as expected (see WRONG above).")
            );
        }
    } else {
        output::json(&json!({
            "ok": ok,
            "cases": report,
            "slack_messages": messages.len(),
            "pagerduty_events": pages.len(),
            "events_delivered_once": once,
            "duplicates_dropped": duplicates,
        }))?;
    }
    Ok(if ok {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}
