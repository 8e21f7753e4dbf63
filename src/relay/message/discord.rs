//! Discord webhooks (`https://discord.com/api/webhooks/ID/TOKEN`): one embed per event.
//!
//! Limits (Discord's docs, "Embed Limits"): title 256, description 4,096, 25 fields (name
//! 256, value 1,024), footer 2,048, at most 10 embeds and 6,000 characters across all embeds
//! of one message. A digest carries as many events as fit both.
//! Shape: `title` (the subject, linked to the console page), `description` (the message),
//! a field with the console link, `footer` `type=… · event_id=…`, `timestamp`, `color` by
//! severity, and `allowed_mentions: {"parse": []}` so no text can ping `@everyone`, a user or
//! a role. Markdown in Vast.ai text is backslash-escaped, and a word joiner after `:` and `@`
//! keeps a URL or a mention from being recognised.
//! Rate (Discord's "Rate Limits"): a webhook allows about 5 requests per 2 s and a channel
//! about 30 messages a minute, so the pace is 2 s. A 429 carries `retry_after` (seconds, a
//! float) in its JSON body and `Retry-After`; a success with `X-RateLimit-Remaining: 0` means
//! wait `X-RateLimit-Reset-After`. 404 (code 10015, Unknown Webhook) means the webhook was
//! deleted: permanent, like 401/403. 400 (code 50035, Invalid Form Body) refuses the payload.

use std::time::Duration;

use serde_json::{json, Value};

use super::answer::{http_rules, Answer, Outcome, Verdict};
use super::model::{fit_as, one_line, raw, rfc3339, units, Parts, Severity};
use super::{Kind, Rendered, Summary};

const TITLE_LIMIT: usize = 256;
const DESCRIPTION_LIMIT: usize = 4_096;
const FIELD_VALUE_LIMIT: usize = 1_024;
const FOOTER_LIMIT: usize = 2_048;
const EMBEDS_MOST: usize = 10;
const TOTAL_LIMIT: usize = 6_000;
/// A digest shows at most this much of each message.
const DIGEST_DESCRIPTION: usize = 400;

pub struct Discord;

/// Discord markdown written literally; no mention or link can form.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '-' | '[' | ']' | '(' | ')' | '<' => {
            out.push('\\');
            out.push(c);
        }
        '@' | ':' => {
            out.push(c);
            out.push('\u{2060}');
        }
        c => out.push(c),
    }
}

pub fn color(s: Severity) -> u32 {
    match s {
        Severity::Critical => 0xD0_3A_2F,
        Severity::Error => 0xE0_6C_00,
        Severity::Warning => 0xE8_B0_0C,
        Severity::Info => 0x3B_82_F6,
        Severity::Resolved => 0x2E_A0_43,
    }
}

/// One event as an embed whose description is at most `description` long.
fn embed(p: &Parts, description: usize) -> Value {
    json!({
        "title": fit_as(&one_line(p.subject), escape_char, TITLE_LIMIT),
        "url": p.url,
        "description": fit_as(p.message, escape_char, description),
        "color": color(p.severity),
        "fields": [{
            "name": "Console",
            "value": fit_as(&format!("[{}]({})", p.topic.button(), p.url), raw, FIELD_VALUE_LIMIT),
            "inline": true,
        }],
        "footer": { "text": fit_as(&format!("type={} · event_id={}", p.type_key(), p.event.event_id), raw, FOOTER_LIMIT) },
        "timestamp": rfc3339(p.unix_time()),
    })
}

/// The characters Discord counts towards the 6,000 of a message.
fn cost(e: &Value) -> usize {
    let s = |v: &Value| v.as_str().map_or(0, units);
    s(&e["title"])
        + s(&e["description"])
        + s(&e["footer"]["text"])
        + e["fields"].as_array().map_or(0, |f| {
            f.iter().map(|f| s(&f["name"]) + s(&f["value"])).sum()
        })
}

fn message(embeds: Vec<Value>) -> Value {
    json!({ "embeds": embeds, "allowed_mentions": { "parse": [] } })
}

impl Kind for Discord {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        if parts.len() == 1 {
            // The footer and fields take at most ~1,300 of the 6,000; the description the rest.
            let first = embed(&parts[0], DESCRIPTION_LIMIT);
            let room = DESCRIPTION_LIMIT.min(
                TOTAL_LIMIT - (cost(&first) - units(first["description"].as_str().unwrap_or(""))),
            );
            return (Rendered::json(message(vec![embed(&parts[0], room)])), 1);
        }
        let mut embeds = Vec::new();
        let mut used = 0;
        for p in parts.iter().take(EMBEDS_MOST) {
            let e = embed(p, DIGEST_DESCRIPTION);
            let c = cost(&e);
            if !embeds.is_empty() && used + c > TOTAL_LIMIT {
                break;
            }
            used += c;
            embeds.push(e);
        }
        let n = embeds.len();
        (Rendered::json(message(embeds)), n)
    }

    fn summary(&self, s: &Summary) -> Option<Rendered> {
        let text = s.text(escape_char, DESCRIPTION_LIMIT);
        Some(Rendered::json(message(vec![json!({
            "title": fit_as(&s.title, raw, TITLE_LIMIT),
            "url": s.url(),
            "description": text,
            "color": color(Severity::Warning),
        })])))
    }

    fn classify(&self, a: &Answer) -> Verdict {
        match a.status {
            200..=299 => Verdict {
                outcome: Outcome::Delivered,
                hold: (a.header("x-ratelimit-remaining") == Some("0"))
                    .then(|| a.seconds("x-ratelimit-reset-after"))
                    .flatten(),
            },
            429 => {
                let body = a
                    .json()
                    .and_then(|v| v.get("retry_after").and_then(Value::as_f64))
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(3600.0)));
                let wait = body
                    .or_else(|| a.seconds("retry-after"))
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_secs(1));
                Outcome::RateLimited(wait).into()
            }
            404 => Outcome::Permanent(format!(
                "{} (the Discord webhook was deleted)",
                a.described()
            ))
            .into(),
            _ => http_rules(a, Duration::from_secs(1)).into(),
        }
    }

    fn pace(&self) -> Duration {
        Duration::from_secs(2)
    }

    fn max_events(&self) -> usize {
        EMBEDS_MOST
    }
}
