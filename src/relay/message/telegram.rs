//! Telegram bots (`https://api.telegram.org/botTOKEN/sendMessage?chat_id=CHAT`, or
//! `telegram://TOKEN@CHAT`): `sendMessage` to one chat.
//!
//! Shape (Bot API, sendMessage): `chat_id` (taken out of the URL), `text` with `parse_mode`
//! `HTML`: the subject in bold, the message, `type=… event_id=…` in `<code>`; link previews
//! off; a button to the console page in an `inline_keyboard`. Vast.ai text is HTML-escaped
//! (`&`, `<`, `>`), and a word joiner after `@`, `:`, `.` and `/` keeps Telegram from finding
//! a mention, a URL, a domain or a bot command in it.
//! Limits: `text` at most 4,096 characters after entities are parsed (counted here before,
//! which is longer); a digest joins events with a blank line within that.
//! Rate (Bot FAQ): about one message a second to one chat and 20 a minute to a group, so the
//! pace is 3 s. Answers: 200 `{"ok":true,…}`; 429 `{"ok":false,"error_code":429,
//! "parameters":{"retry_after":N}}`; 400 (a bad request: this payload, unless the chat is
//! not found) and 401/403/404 (a revoked token, a bot removed from the chat) are permanent.

use std::time::Duration;

use serde_json::{json, Value};

use super::answer::{http_rules, Answer, Outcome, Verdict};
use super::model::{compose_as, fit_as, join_fitting, one_line, Parts};
use super::{Kind, Rendered, Summary};

const TEXT_LIMIT: usize = 4_096;
const DIGEST_EACH: usize = 900;

pub struct Telegram;

/// HTML as Telegram's parser reads it, and nothing it can turn into an entity.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '@' | ':' | '.' | '/' => {
            out.push(c);
            out.push('\u{2060}');
        }
        c => out.push(c),
    }
}

/// One event within `limit`: `<b>subject</b>\nmessage\n<code>type=… event_id=…</code>`.
fn text(p: &Parts, limit: usize) -> String {
    let tail = format!("<code>{}</code>", fit_as(&p.details(), escape_char, 300));
    // The tags are markup: the subject is escaped, then wrapped, so cutting never splits one.
    let room = limit.saturating_sub(7);
    let composed = compose_as(&one_line(p.subject), p.message, &tail, escape_char, room);
    match composed.split_once('\n') {
        Some((subject, rest)) => format!("<b>{subject}</b>\n{rest}"),
        None => composed,
    }
}

fn message(text: String, url: &str, label: &str) -> Value {
    json!({
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": { "is_disabled": true },
        "reply_markup": { "inline_keyboard": [[{ "text": label, "url": url }]] },
    })
}

impl Kind for Telegram {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let p = &parts[0];
        if parts.len() == 1 {
            let t = text(p, TEXT_LIMIT);
            return (Rendered::json(message(t, &p.url, p.topic.button())), 1);
        }
        let (t, n) = join_fitting(parts, "\n\n", TEXT_LIMIT, |p| text(p, DIGEST_EACH));
        (Rendered::json(message(t, &p.url, p.topic.button())), n)
    }

    fn summary(&self, s: &Summary) -> Option<Rendered> {
        let t = s.text(escape_char, TEXT_LIMIT);
        Some(Rendered::json(message(t, s.url(), "Open console")))
    }

    fn classify(&self, a: &Answer) -> Verdict {
        let body = a.json();
        let described = || {
            body.as_ref()
                .and_then(|v| v.get("description").and_then(Value::as_str))
                .map_or_else(|| a.described(), |d| format!("HTTP {} {d}", a.status))
        };
        match a.status {
            200..=299 if body.as_ref().and_then(|v| v.get("ok")) == Some(&json!(false)) => {
                Outcome::Permanent(described()).into()
            }
            429 => {
                let wait = body
                    .as_ref()
                    .and_then(|v| v["parameters"]["retry_after"].as_u64())
                    .map(Duration::from_secs)
                    .unwrap_or_else(|| a.retry_after(Duration::from_secs(3)));
                Outcome::RateLimited(wait.clamp(Duration::from_secs(1), Duration::from_secs(3600)))
                    .into()
            }
            400 => {
                let d = described();
                if d.contains("chat not found") || d.contains("upgraded to a supergroup") {
                    Outcome::Permanent(d).into()
                } else {
                    Outcome::Rejected(d).into()
                }
            }
            401 | 403 | 404 => Outcome::Permanent(described()).into(),
            _ => http_rules(a, Duration::from_secs(3)).into(),
        }
    }

    fn pace(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn max_events(&self) -> usize {
        20
    }
}
