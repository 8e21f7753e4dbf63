//! What the chat stand-ins (see `fake_chat`) accept: each service's documented request shape
//! and limits, Telegram's HTML parse mode included.

use serde_json::{json, Value};

use super::fake_chat::*;
use super::Recorded;

/// Length as the services count it (UTF-16 code units).
fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The service's documented request shape and limits.
pub(super) fn validate(service: Service, req: &Recorded) -> Result<(), String> {
    if req.method != "POST" {
        return Err("method must be POST".into());
    }
    let v = req.json();
    let s = |v: &Value| v.as_str().map_or(0, units);
    let need = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_owned()) };
    match service {
        Service::Discord => {
            need(
                v["allowed_mentions"]["parse"] == json!([]),
                "allowed_mentions.parse must be []",
            )?;
            let embeds = v["embeds"].as_array().ok_or("embeds missing")?;
            need(!embeds.is_empty() && embeds.len() <= 10, "1 to 10 embeds")?;
            let mut total = 0;
            for e in embeds {
                need(s(&e["title"]) <= 256, "title over 256")?;
                need(s(&e["description"]) <= 4096, "description over 4096")?;
                need(s(&e["footer"]["text"]) <= 2048, "footer over 2048")?;
                let fields = e["fields"].as_array().cloned().unwrap_or_default();
                need(fields.len() <= 25, "more than 25 fields")?;
                total += s(&e["title"]) + s(&e["description"]) + s(&e["footer"]["text"]);
                for f in fields {
                    need(
                        s(&f["name"]) <= 256 && s(&f["value"]) <= 1024,
                        "field too long",
                    )?;
                    total += s(&f["name"]) + s(&f["value"]);
                }
            }
            need(total <= 6000, "embeds over 6000 characters in all")
        }
        Service::Telegram => {
            need(
                !req.path.contains("chat_id"),
                "chat_id must not be in the URL",
            )?;
            need(v["chat_id"] == TELEGRAM_CHAT, "wrong or missing chat_id")?;
            need(v["parse_mode"] == "HTML", "parse_mode must be HTML")?;
            let text = v["text"].as_str().ok_or("message text is empty")?;
            let visible = telegram_visible(text)?;
            need(!visible.is_empty(), "message text is empty")?;
            need(units(&visible) <= 4096, "message is too long")
        }
        Service::GoogleChat => {
            need(req.body.len() <= 32_000, "message over 32,000 bytes")?;
            need(
                v["text"].is_string() || v["cardsV2"].is_array(),
                "no text and no cards",
            )?;
            for c in v["cardsV2"].as_array().into_iter().flatten() {
                need(
                    c["cardId"].is_string() && c["card"].is_object(),
                    "cardsV2 needs cardId and card",
                )?;
            }
            Ok(())
        }
        Service::Teams => {
            need(req.body.len() <= 28_000, "message over 28 KB")?;
            need(v["type"] == "message", "type must be message")?;
            let a = &v["attachments"][0];
            need(
                a["contentType"] == "application/vnd.microsoft.card.adaptive",
                "not an Adaptive Card",
            )?;
            need(
                a["content"]["type"] == "AdaptiveCard",
                "content is not an AdaptiveCard",
            )?;
            need(a["content"]["body"].is_array(), "card has no body")
        }
        Service::Ntfy => {
            need(req.body.len() <= 4_096, "message over 4,096 bytes")?;
            need(!req.body.is_empty(), "empty message")?;
            for (k, val) in &req.headers {
                need(val.is_ascii(), &format!("header {k} is not ASCII"))?;
            }
            need(req.header("title").is_some(), "no Title")?;
            need(
                matches!(req.header("priority"), Some("1" | "2" | "3" | "4" | "5")),
                "Priority must be 1-5",
            )
        }
        Service::PagerDuty => {
            need(
                !req.path.contains("routing_key"),
                "routing_key must not be in the URL",
            )?;
            need(v["routing_key"] == PAGERDUTY_KEY, "Invalid routing key")?;
            let dedup = v["dedup_key"].as_str().ok_or("dedup_key missing")?;
            need(
                !dedup.is_empty() && dedup.len() <= 255,
                "dedup_key must be 1-255 characters",
            )?;
            match v["event_action"].as_str() {
                Some("resolve") => Ok(()),
                Some("trigger") => {
                    let p = &v["payload"];
                    need(
                        s(&p["summary"]) > 0 && s(&p["summary"]) <= 1024,
                        "summary must be 1-1024 characters",
                    )?;
                    need(p["source"].is_string(), "source missing")?;
                    need(
                        matches!(
                            p["severity"].as_str(),
                            Some("critical" | "error" | "warning" | "info")
                        ),
                        "severity invalid",
                    )
                }
                _ => Err("event_action must be trigger, acknowledge or resolve".into()),
            }
        }
    }
}

/// Telegram's HTML parse mode: only known tags, balanced, entities known; the visible text.
fn telegram_visible(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let end = rest.find('>').ok_or("can't parse entities: unclosed tag")?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop().as_deref() != Some(name) {
                    return Err(format!("can't parse entities: unexpected end tag {name}"));
                }
            } else if ["b", "code", "i"].contains(&tag) {
                open.push(tag.to_owned());
            } else {
                return Err(format!(
                    "can't parse entities: unsupported start tag \"{tag}\""
                ));
            }
            rest = &rest[end + 1..];
        } else if c == '&' {
            let end = rest.find(';').ok_or("can't parse entities: bare &")?;
            out.push(match &rest[1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                e => return Err(format!("can't parse entities: unknown entity {e}")),
            });
            rest = &rest[end + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !open.is_empty() {
        return Err("can't parse entities: unclosed tag".into());
    }
    Ok(out)
}
