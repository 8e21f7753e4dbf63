//! `vslack send`: sign sample events like Vast.ai and POST them to a relay, reporting each
//! answer. For testing a relay (local or deployed) without a Vast.ai account.

use anyhow::Result;

use super::{now_secs, Ctx};
use crate::cli::SendArgs;
use crate::config::Config;
use crate::output;
use crate::sample::{self, Delivery};
use crate::secret::Secret;

/// The signing secret: --secret-file, VAST_WEBHOOK_SECRET, the default webhook's, any stored.
fn secret(args: &SendArgs, config: &Config) -> Result<Secret> {
    if let Some(path) = &args.secret_file {
        return crate::secret::read_secret_file(path, "--secret-file");
    }
    if let Some(s) = std::env::var("VAST_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Ok(Secret::new(s));
    }
    let held = config
        .default_webhook
        .and_then(|id| config.webhook(id))
        .or_else(|| config.webhooks.values().next());
    held.map(|w| w.secret.clone()).ok_or_else(|| {
        crate::exit::SetupError("no signing secret to sign with: pass --secret-file PATH, set VAST_WEBHOOK_SECRET, or create a webhook with `vslack webhook create`".into()).into()
    })
}

/// The relay `vslack serve` would run here.
fn default_target(config: &Config) -> Result<String> {
    let addr = super::serve::local_addr(config)?;
    Ok(format!("http://{addr}{}", config.relay_path()))
}

#[derive(serde::Serialize)]
struct Sent {
    event_id: String,
    notif_type: String,
    attempt: u32,
    status: u16,
    reason: String,
    /// `stored` or `duplicate` on a 204 from a vslack relay, else null.
    outcome: Option<String>,
    expected: bool,
}

/// `--to` must be an http(s) URL with a host: checked before anything is signed or sent.
fn check_target(url: &str) -> Result<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(crate::exit::usage(format!(
            "--to must be an http:// or https:// URL of a relay, like http://127.0.0.1:8787/ (got {url:?})"
        ))),
    }
}

pub async fn run(ctx: &Ctx, args: SendArgs) -> Result<u8> {
    if let Some(u) = &args.to {
        check_target(u)?;
    }
    let config = ctx.config()?;
    let mut key = secret(&args, &config)?;
    if args.bad_signature {
        key = Secret::new(format!("{}-wrong", key.expose()));
    }
    let url = match args.to.clone() {
        Some(u) => u,
        None => default_target(&config)?,
    };
    let types: Vec<String> = if args.all_types {
        sample::SAMPLES
            .iter()
            .map(|(t, _, _)| t.to_string())
            .collect()
    } else {
        vec![args.notif_type.clone()]
    };
    for t in &types {
        if !sample::SAMPLES.iter().any(|(k, _, _)| k == t) {
            let known: Vec<&str> = sample::SAMPLES.iter().map(|(k, _, _)| *k).collect();
            ctx.note(format!(
                "note: {t:?} is not a type vslack has a sample for, so a generic one is sent; known types: {}",
                known.join(", ")
            ));
        }
    }
    let ts = now_secs() - if args.stale { 600 } else { 0 };
    let expected_status = if args.bad_signature || args.stale {
        401
    } else {
        204
    };
    let http = crate::http::builder().build()?;
    let mut sent = Vec::new();
    for t in &types {
        for _ in 0..args.count.max(1) {
            let d: Delivery = sample::delivery(t, &key, ts);
            let attempts = if args.duplicate { 2 } else { 1 };
            for attempt in 1..=attempts {
                let answer = sample::post(&http, &url, &d, attempt).await.map_err(|e| {
                    anyhow::anyhow!(
                        "{e}; is a relay running there? (`vslack serve`, or pass --to URL)"
                    )
                })?;
                // A redelivery should be recognised, when the relay says (vslack's does).
                let expected = answer.status == expected_status
                    && (attempt == 1
                        || expected_status != 204
                        || answer.outcome.as_deref().is_none_or(|o| o == "duplicate"));
                if !ctx.global.json {
                    println!(
                        "{:<22} {}  -> {}{}",
                        if attempt > 1 {
                            format!("{t} (again)")
                        } else {
                            t.clone()
                        },
                        d.event_id,
                        answer.describe(),
                        if expected { "" } else { "  (unexpected)" }
                    );
                }
                sent.push(Sent {
                    event_id: d.event_id.clone(),
                    notif_type: t.clone(),
                    attempt,
                    status: answer.status,
                    reason: answer.reason,
                    outcome: answer.outcome,
                    expected,
                });
            }
        }
    }
    // Where the relay sends each type, as this machine's config says (a relay elsewhere may
    // have its own).
    let dests = super::destinations::configured(&config).unwrap_or_default();
    let goes: serde_json::Map<String, serde_json::Value> = types
        .iter()
        .map(|t| {
            let d = sample::delivery(t, &key, ts);
            let event =
                crate::relay::event::Event::parse(&d.body, None, ts).expect("a sample parses");
            let names: Vec<String> = crate::relay::forward::legs_of(&dests, &event, "pending")
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            (t.clone(), serde_json::json!(names))
        })
        .collect();
    if ctx.global.json {
        output::json(&serde_json::json!({"to": url, "sent": sent, "destinations": goes}))?;
    } else if !dests.is_empty() && args.to.is_none() {
        let lines: Vec<String> = goes
            .iter()
            .map(|(t, n)| {
                let names: Vec<&str> = n
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect();
                format!("{t} -> {}", names.join(", "))
            })
            .collect();
        ctx.note(format!(
            "The relay sends them to (per the config): {}",
            lines.join("; ")
        ));
    }
    let bad = sent.iter().filter(|s| !s.expected).count();
    if bad > 0 {
        ctx.note(format!(
            "{bad} of {} answers were not the expected {expected_status}",
            sent.len()
        ));
        return Ok(crate::exit::FAILURE);
    }
    Ok(crate::exit::OK)
}
