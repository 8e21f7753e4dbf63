//! PagerDuty Events API v2 (`https://events.pagerduty.com/v2/enqueue?routing_key=KEY`, or
//! `pagerduty://KEY`; the key is an Events API v2 integration key, moved into the body).
//!
//! One alert per event, never a digest or a summary. `trigger` with `payload.summary`
//! (≤ 1,024 characters: subject and type), `source`, `severity` from the event type
//! (`*_offline` critical, failures and errors error, low credit/outbid/downtime warning, the
//! rest info), `timestamp`, `class` (the type), `custom_details` (message, type, event id,
//! console page) and a link to the console page. `dedup_key` is the event id, except that
//! an offline event naming its machine or instance ("Machine 12345 …") uses
//! `vast:machine:12345`, so that the matching `*_online` event `resolve`s that alert (with the
//! same payload, as Alertmanager sends it, so the resolve names its event too). An
//! online event whose pairing is unknown is sent as an `info` trigger.
//! Rate: 120 events a minute per integration key, so the pace is 0.5 s. Answers: 202
//! `{"status":"success","dedup_key":…}`; 400 invalid event (permanent); 429 back off (no
//! `Retry-After`: 5 s, then backoff); 5xx transient.

use std::time::Duration;

use serde_json::json;

use super::answer::{http_rules, Answer, Outcome, Verdict};
use super::model::{fit_as, one_line, raw, rfc3339, slug, Parts, Severity};
use super::{Kind, Rendered, Summary};

const SUMMARY_LIMIT: usize = 1_024;
const MESSAGE_LIMIT: usize = 10_000;

pub struct PagerDuty;

/// What an offline/online pair is about: `machine`/`instance` and the first number after
/// that word in the subject or message.
pub fn pairing(p: &Parts) -> Option<String> {
    let s = slug(&p.event.notif_type);
    let family = s
        .strip_suffix("_offline")
        .or_else(|| s.strip_suffix("_online"))?;
    let text = format!("{} {}", p.subject, p.message).to_ascii_lowercase();
    text.match_indices(family).find_map(|(at, _)| {
        let digits: String = text[at + family.len()..]
            .trim_start_matches([' ', '#', ':', '_', '-'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (!digits.is_empty()).then(|| format!("vast:{family}:{digits}"))
    })
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info | Severity::Resolved => "info",
    }
}

impl Kind for PagerDuty {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let p = &parts[0];
        let pair = pairing(p);
        // A recovery resolves its alert; like Alertmanager, the payload goes along, so the
        // resolve names its event too.
        let action = match (p.severity, &pair) {
            (Severity::Resolved, Some(_)) => "resolve",
            _ => "trigger",
        };
        let summary = format!("{} ({})", one_line(p.subject), p.type_key());
        let source = match p.event.user_id {
            Some(u) => format!("vast.ai user {u}"),
            None => "vast.ai".into(),
        };
        let v = json!({
            "event_action": action,
            "dedup_key": pair.unwrap_or_else(|| p.event.event_id.clone()),
            "payload": {
                "summary": fit_as(&summary, raw, SUMMARY_LIMIT),
                "source": source,
                "severity": severity(p.severity),
                "timestamp": rfc3339(p.unix_time()),
                "class": p.type_key(),
                "custom_details": {
                    "message": fit_as(p.message, raw, MESSAGE_LIMIT),
                    "type": p.type_key(),
                    "event_id": p.event.event_id,
                    "console": p.url,
                },
            },
            "links": [{ "href": p.url, "text": p.topic.button() }],
            "client": "vslack",
            "client_url": p.url,
        });
        (Rendered::json(v), 1)
    }

    fn summary(&self, _: &Summary) -> Option<Rendered> {
        None
    }

    fn classify(&self, a: &Answer) -> Verdict {
        match a.status {
            400 => Outcome::Permanent(a.described()).into(),
            429 => Outcome::RateLimited(a.retry_after(Duration::from_secs(5))).into(),
            _ => http_rules(a, Duration::from_secs(5)).into(),
        }
    }

    fn pace(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn max_events(&self) -> usize {
        1
    }
}
