//! Slack: three shapes for its two kinds of URL.
//!
//! * `blocks` (incoming webhooks, `hooks.slack.com/services/…`): Block Kit plus a `text`
//!   fallback (used for notifications and by clients that cannot show blocks).
//! * `text`: only `text`, in the format of Vast.ai's own Python adapter (`subject`,
//!   `message`, console link, `type=… event_id=…`).
//! * `workflow` (Workflow Builder triggers, `…/triggers/…`, legacy `…/workflows/…`): a flat
//!   object of string variables (`vast_notification_message`, `vast_action_url`).
//!
//! Limits (Slack's docs): 50 blocks per message, 3,000 characters per section, 150 per
//! header, `text` kept under 3,900 (Slack truncates past 40,000). A digest carries as many
//! events as fit; every carried event's `event_id` is in the blocks and in the fallback text.
//! Rate: about one message per second per webhook, short bursts allowed; beyond it 429 with
//! `Retry-After` seconds. Answers: 200 `ok`; 400 `invalid_payload`/`invalid_blocks` (this
//! payload), 403/404/410 (`channel_is_archived`, a revoked URL: permanent); a workflow trigger
//! may answer 200 `{"ok":false,"error":…}`. Text is escaped (`&<>`, and a word joiner after
//! `@`) and sent `verbatim`, so nothing from Vast.ai can mention anyone or add a link.

use serde_json::{json, Value};

use super::model::{compose_as, fit_as, join_fitting, one_line, raw, units, Parts, Topic};
use super::{Format, Kind, Rendered, Summary};

/// Slack's practical limit for `text` (it truncates past 40,000; about 4,000 is sensible).
pub const TEXT_LIMIT: usize = 3_900;
/// Slack's limit on a section's text.
pub const SECTION_LIMIT: usize = 3_000;
/// Slack's limit on a header's text.
const HEADER_LIMIT: usize = 150;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// A digest shows at most this much of each event's message, so one long event cannot crowd
/// the others out of the message.
const DIGEST_MESSAGE_LIMIT: usize = 500;
/// A digest's fallback text shows at most this much of each subject.
const DIGEST_SUBJECT_LIMIT: usize = 100;

pub struct Blocks;
pub struct Text;
pub struct Workflow;

impl Kind for Blocks {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let (v, n) = render_blocks(parts);
        (Rendered::json(v), n)
    }
    fn summary(&self, s: &Summary) -> Option<Rendered> {
        Some(super::slack_summary::render(s, Format::Blocks))
    }
    fn max_events(&self) -> usize {
        MAX_BLOCKS - 1
    }
}

impl Kind for Text {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let (text, n) = join_fitting(parts, "\n\n", TEXT_LIMIT, |p| {
            p.walkthrough_text(TEXT_LIMIT)
        });
        (Rendered::json(json!({ "text": text })), n)
    }
    fn summary(&self, s: &Summary) -> Option<Rendered> {
        Some(super::slack_summary::render(s, Format::Text))
    }
    fn max_events(&self) -> usize {
        MAX_BLOCKS - 1
    }
}

impl Kind for Workflow {
    fn render(&self, parts: &[Parts]) -> (Rendered, usize) {
        let (text, n) = join_fitting(parts, "\n\n", TEXT_LIMIT, |p| p.workflow_text(TEXT_LIMIT));
        let v = json!({
            "vast_notification_message": text,
            "vast_action_url": parts[0].url,
        });
        (Rendered::json(v), n)
    }
    fn summary(&self, s: &Summary) -> Option<Rendered> {
        Some(super::slack_summary::render(s, Format::Workflow))
    }
    fn max_events(&self) -> usize {
        MAX_BLOCKS - 1
    }
}

/// Emoji shortcode per type (":warning:" low credit, ":x:" billing_failed, ":receipt:"
/// payment, ":rocket:" created/started, ":octagonal_sign:" stopped, ":red_circle:" offline,
/// ":large_green_circle:" online, ":moneybag:" outbid, ":calendar:" downtime, ":wrench:"
/// host, ":white_check_mark:" webhook_test, ":bell:" default).
pub fn emoji(p: &Parts) -> &'static str {
    use super::model::{slug, topic};
    let slug = slug(&p.event.notif_type);
    let e = match slug.as_str() {
        "low_credit" => ":warning:",
        "billing_failed" => ":x:",
        "payment_receipt" => ":receipt:",
        "instance_created" | "instance_started" => ":rocket:",
        "instance_stopped" => ":octagonal_sign:",
        "instance_offline" => ":red_circle:",
        "instance_online" => ":large_green_circle:",
        "outbid" => ":moneybag:",
        "upcoming_downtime" => ":calendar:",
        "webhook_test" | "vslack_recovered" => ":white_check_mark:",
        "vslack_alert" => ":rotating_light:",
        s => match topic(s) {
            Topic::Billing if s.contains("fail") => ":x:",
            Topic::Billing if s.contains("payment") || s.contains("invoice") => ":receipt:",
            Topic::Billing => ":warning:",
            Topic::Host => ":wrench:",
            Topic::Instance | Topic::Other => ":bell:",
        },
    };
    match (p.topic, e) {
        (Topic::Host, ":bell:") => ":wrench:",
        (_, e) => e,
    }
}

impl Parts<'_> {
    /// Vast.ai's adapter format, escaped for Slack `text`:
    /// `subject\nmessage\naction_url\ntype=… event_id=…`, at most `limit` long.
    /// The message gives way first, then the subject, so the link and the id survive.
    pub fn walkthrough_text(&self, limit: usize) -> String {
        let tail = format!("{}\n{}", self.url, escape(&self.details()));
        compose_as(self.subject, self.message, &tail, escape_char, limit)
    }

    /// `subject\nmessage\n(type=… event_id=…)`, unescaped (workflow variables are plain text).
    fn workflow_text(&self, limit: usize) -> String {
        let tail = format!("({})", self.details());
        compose_as(self.subject, self.message, &tail, raw, limit)
    }

    /// One line of a digest's fallback text: `subject (type=… event_id=…)`.
    fn digest_line(&self) -> String {
        format!(
            "• {} ({})",
            fit(&one_line(self.subject), true, DIGEST_SUBJECT_LIMIT),
            escape(&self.details())
        )
    }

    fn context(&self) -> String {
        let text = format!(
            "type={} · event_id={} · {}",
            escape(&self.type_key()),
            escape(&self.event.event_id),
            self.time()
        );
        fit(&text, false, SECTION_LIMIT)
    }

    /// A digest's section for this event.
    pub(super) fn digest_section(&self) -> Value {
        let head = format!(
            "{} *{}*\n",
            emoji(self),
            fit(&one_line(self.subject), true, HEADER_LIMIT)
        );
        let foot = format!("\n<{}|Open> · {}", self.url, self.context());
        let room = SECTION_LIMIT.saturating_sub(units(&head) + units(&foot));
        let body = fit(self.message, true, room.min(DIGEST_MESSAGE_LIMIT));
        let text = fit(&format!("{head}{body}{foot}"), false, SECTION_LIMIT);
        mrkdwn_section(text)
    }
}

fn render_blocks(parts: &[Parts]) -> (Value, usize) {
    // Header + one section per event; the fallback text lists one line per event.
    const FALLBACK_HEAD_ROOM: usize = 40;
    let mut lines: Vec<String> = Vec::new();
    let mut used = FALLBACK_HEAD_ROOM;
    for p in parts.iter().take(MAX_BLOCKS - 1) {
        let line = p.digest_line();
        let cost = units(&line) + 1;
        if !lines.is_empty() && used + cost > TEXT_LIMIT {
            break;
        }
        used += cost;
        lines.push(line);
    }
    let n = lines.len();
    if n == 1 {
        return (single_blocks(&parts[0]), 1);
    }
    let title = format!("{n} Vast.ai notifications");
    let text = fit(&format!("{title}\n{}", lines.join("\n")), false, TEXT_LIMIT);
    let mut blocks = Vec::with_capacity(n + 1);
    blocks.push(header(&format!(":bell: {title}")));
    blocks.extend(parts[..n].iter().map(Parts::digest_section));
    (json!({ "text": text, "blocks": blocks }), n)
}

fn single_blocks(p: &Parts) -> Value {
    json!({
        "text": p.walkthrough_text(TEXT_LIMIT),
        "blocks": [
            header(&format!("{} {}", emoji(p), one_line(p.subject))),
            mrkdwn_section(fit(p.message, true, SECTION_LIMIT)),
            // A link, not a URL button: on an incoming webhook (no interactivity configured)
            // Slack marks a button with an "app not configured" warning when it is clicked.
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": fit(&format!("<{}|{}> · {}", p.url, p.topic.button(), p.context()), false, SECTION_LIMIT),
                    "verbatim": true,
                }],
            },
        ],
    })
}

/// A section of mrkdwn, `verbatim` so Slack does not turn names or bare words into links or
/// mentions (the text is escaped as well; see [`escape`]).
pub(super) fn mrkdwn_section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text, "verbatim": true } })
}

/// A header: plain text (never parsed for mentions), with the same word joiner after `@`
/// as [`escape`] puts there, so a client that does parse it cannot notify anyone either.
pub(super) fn header(text: &str) -> Value {
    let text = text.replace('@', "@\u{2060}");
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": fit(&text, false, HEADER_LIMIT), "emoji": true },
    })
}

/// Escape Slack's mrkdwn control characters, and put a word joiner (U+2060, invisible) after
/// every `@` so that text like `@channel` or `@here` from Vast.ai can never notify anyone.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        escape_char(c, &mut out);
    }
    out
}

/// One character as Slack mrkdwn writes it.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '@' => out.push_str("@\u{2060}"),
        c => out.push(c),
    }
}

/// `s` (escaped for mrkdwn when `escaped`) cut to at most `limit` units, ending in `…` when
/// cut. Cuts only between characters, never inside an escape.
pub(super) fn fit(s: &str, escaped: bool, limit: usize) -> String {
    fit_as(s, if escaped { escape_char } else { raw }, limit)
}

#[cfg(test)]
#[path = "slack_digest_tests.rs"]
mod digest_tests;
#[cfg(test)]
#[path = "slack_tests.rs"]
mod tests;
