//! Microsoft Teams Workflows webhooks (`https://….logic.azure.com/…` or
//! `https://….powerplatform.com/…`, from the Workflows app's "Post to a channel when a webhook
//! request is received"; Office 365 connectors are retired and refused at `set`).
//!
//! Shape: `{"type":"message","attachments":[{"contentType":
//! "application/vnd.microsoft.card.adaptive","content":{AdaptiveCard 1.4}}]}`. The card has
//! a header per event, its message, `type=… event_id=…` and an `Action.OpenUrl` button to
//! the console page. Vast.ai text goes in `RichTextBlock` `TextRun`s, which Teams never reads
//! as markdown, so nothing in it can format, link or mention (`<at>` needs an entity).
//! Limits: a message is at most about 28 KB; a digest carries up to 10 events of 600
//! characters each, a single event up to 5,000 (3 bytes a character at worst).
//! Rate: Workflows answer 202 Accepted; 429 with `Retry-After` when throttled; 400 refuses
//! the payload; 401/403/404 (a deleted or disabled flow) are permanent.

use serde_json::{json, Value};

use super::model::{fit_as, one_line, raw, Parts, Severity};
use super::{Kind, Rendered, Summary};

const SINGLE_TEXT: usize = 5_000;
const DIGEST_TEXT: usize = 600;
const EVENTS_MOST: usize = 10;

pub struct Teams;

fn run(text: String, extra: Value) -> Value {
    let mut v = json!({ "type": "TextRun", "text": text });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

fn rich(runs: Vec<Value>) -> Value {
    json!({ "type": "RichTextBlock", "inlines": runs })
}

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::Error => "Attention",
        Severity::Warning => "Warning",
        Severity::Resolved => "Good",
        Severity::Info => "Default",
    }
}

fn blocks(p: &Parts, text: usize) -> Vec<Value> {
    vec![
        rich(vec![run(
            fit_as(&one_line(p.subject), raw, 300),
            json!({ "weight": "Bolder", "size": "Medium", "color": color(p.severity) }),
        )]),
        rich(vec![run(fit_as(p.message, raw, text), json!({}))]),
        rich(vec![run(
            fit_as(&format!("{} · {}", p.details(), p.time()), raw, 500),
            json!({ "isSubtle": true, "size": "Small" }),
        )]),
    ]
}

fn card(body: Vec<Value>, url: &str, label: &str) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": { "width": "Full" },
                "body": body,
                "actions": [{ "type": "Action.OpenUrl", "title": label, "url": url }],
            },
        }],
    })
}

impl Kind for Teams {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let p = &parts[0];
        if parts.len() == 1 {
            return (
                Rendered::json(card(blocks(p, SINGLE_TEXT), &p.url, p.topic.button())),
                1,
            );
        }
        let n = parts.len().min(EVENTS_MOST);
        let mut body = vec![rich(vec![run(
            format!("{n} Vast.ai notifications"),
            json!({ "weight": "Bolder", "size": "Large" }),
        )])];
        for p in &parts[..n] {
            body.push(
                json!({ "type": "Container", "separator": true, "items": blocks(p, DIGEST_TEXT) }),
            );
        }
        (Rendered::json(card(body, &p.url, p.topic.button())), n)
    }

    fn summary(&self, s: &Summary) -> Option<Rendered> {
        let body = vec![
            rich(vec![run(
                s.title.clone(),
                json!({ "weight": "Bolder", "size": "Large" }),
            )]),
            rich(vec![run(s.text(raw, 20_000), json!({}))]),
        ];
        Some(Rendered::json(card(body, s.url(), "Open console")))
    }

    fn max_events(&self) -> usize {
        EVENTS_MOST
    }
}
