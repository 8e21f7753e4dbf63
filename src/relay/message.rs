//! Turn stored [`Event`]s into Slack payloads.
//!
//! Three shapes, chosen per destination ([`Format::for_url`]):
//!
//! * [`Format::Blocks`] for incoming webhooks: Block Kit plus a `text` fallback (used for
//!   notifications and by clients that cannot show blocks).
//! * [`Format::Text`]: only `text`, in the format of Vast.ai's own Python adapter
//!   (`subject`, `message`, console link, `type=… event_id=…`).
//! * [`Format::Workflow`] for Workflow Builder triggers: a flat object of string variables
//!   (`vast_notification_message`, `vast_action_url`).
//!
//! [`render_batch`] renders one event as a single message, or several as one digest carrying as
//! many events as Slack's limits allow (50 blocks, 3,000 characters per section, and a `text`
//! kept under 3,900 characters); it returns how many it carried so the caller can deliver the
//! rest later. Every carried event's `event_id` appears in the payload (in the blocks and in the
//! fallback text), so a delivered message can always be traced back to the store.
//!
//! Lengths are measured in UTF-16 code units, which is never less than the number of
//! characters, so the limits hold whichever way Slack counts; truncation only ever cuts
//! between characters (and never inside an escape such as `&amp;`).

use serde_json::{json, Value};

use super::event::Event;

mod summary;
pub use summary::{render_summary, thousands};

/// The shape of a Slack payload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Block Kit message with a plain-text fallback (incoming webhooks).
    Blocks,
    /// Plain `text` only (incoming webhooks).
    Text,
    /// Flat string variables for a Workflow Builder webhook trigger.
    Workflow,
}

impl Format {
    /// Shape chosen from a Slack URL: a path containing `/triggers/` -> Workflow, anything else -> Blocks.
    pub fn for_url(url: &str) -> Format {
        match reqwest::Url::parse(url) {
            Ok(u) if u.path().contains("/triggers/") || u.path().starts_with("/workflows/") => {
                Format::Workflow
            }
            _ => Format::Blocks,
        }
    }
}

/// Slack's practical limit for `text` (it truncates past 40,000; about 4,000 is sensible).
const TEXT_LIMIT: usize = 3_900;
/// Slack's limit on a section's text.
const SECTION_LIMIT: usize = 3_000;
/// Slack's limit on a header's text.
const HEADER_LIMIT: usize = 150;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// A digest shows at most this much of each event's message, so one long event cannot crowd
/// the others out of the message.
const DIGEST_MESSAGE_LIMIT: usize = 500;
/// A digest's fallback text shows at most this much of each subject.
const DIGEST_SUBJECT_LIMIT: usize = 100;
/// Subject used when an event has none.
const DEFAULT_SUBJECT: &str = "Vast.ai notification";
/// Message used when an event has none (Blocks sections must not be empty).
const NO_MESSAGE: &str = "(no message)";
const ELLIPSIS: char = '…';

/// The console page groups events link to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Billing,
    Instance,
    Host,
    Other,
}

/// The slug proper: tolerant of a stray `client:`/`host:` prefix and of case.
fn slug(notif_type: &str) -> String {
    notif_type
        .rsplit(':')
        .next()
        .unwrap_or(notif_type)
        .trim()
        .to_ascii_lowercase()
}

/// The kind of an event, from its context when the relay knows it (the webhook that verified
/// it subscribes to `host:slug`, say), else from its slug.
fn kind_in(slug: &str, context: Option<&str>) -> Kind {
    match (kind(slug), context) {
        (Kind::Billing, _) => Kind::Billing,
        (_, Some("host")) => Kind::Host,
        (Kind::Host, Some("client")) => Kind::Instance,
        (k, _) => k,
    }
}

fn kind(slug: &str) -> Kind {
    const BILLING_WORDS: [&str; 4] = ["credit", "billing", "payment", "invoice"];
    if BILLING_WORDS.iter().any(|w| slug.contains(w)) {
        Kind::Billing
    } else if slug.starts_with("instance_") || slug == "outbid" || slug == "upcoming_downtime" {
        Kind::Instance
    } else if ["machine_", "maintenance_", "host_"]
        .iter()
        .any(|p| slug.starts_with(p))
    {
        Kind::Host
    } else {
        Kind::Other
    }
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Billing => "/billing/",
            Kind::Instance => "/instances/",
            Kind::Host => "/host/machines/",
            Kind::Other => "/",
        }
    }

    fn button(self) -> &'static str {
        match self {
            Kind::Billing => "Open billing",
            Kind::Instance => "Open instances",
            Kind::Host => "Open host machines",
            Kind::Other => "Open console",
        }
    }
}

/// Console page for a kind of event. `console` is the console base like "https://cloud.vast.ai" (no trailing slash needed; handle one).
/// billing kinds (low_credit, billing_failed, payment_receipt, and any slug containing credit/billing/payment/invoice) -> {console}/billing/
/// instance kinds (instance_*, outbid, upcoming_downtime) -> {console}/instances/
/// host kinds (machine_*, maintenance_*, host_*) -> {console}/host/machines/
/// webhook_test and everything else -> console root "{console}/"
fn action_url(console: &str, kind: Kind) -> String {
    let base = console.trim().trim_end_matches('/');
    format!("{base}{}", kind.path())
}

/// Emoji shortcode per kind (e.g. ":warning:" low credit, ":x:" billing_failed, ":receipt:" payment, ":rocket:" created/started, ":octagonal_sign:" stopped, ":red_circle:" offline, ":large_green_circle:" online, ":moneybag:" outbid, ":calendar:" downtime, ":wrench:" host, ":white_check_mark:" webhook_test, ":bell:" default).
fn emoji(notif_type: &str) -> &'static str {
    let slug = slug(notif_type);
    match slug.as_str() {
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
        s => match kind(s) {
            Kind::Billing if s.contains("fail") => ":x:",
            Kind::Billing if s.contains("payment") || s.contains("invoice") => ":receipt:",
            Kind::Billing => ":warning:",
            Kind::Host => ":wrench:",
            Kind::Instance | Kind::Other => ":bell:",
        },
    }
}

/// Render the first events of `events` (must be non-empty) as ONE Slack payload and return it
/// with how many events it carries (>= 1). One event -> a single message; more -> a digest.
///
/// # Panics
///
/// If `events` is empty.
pub fn render_batch(events: &[Event], format: Format, console: &str) -> (Value, usize) {
    assert!(!events.is_empty(), "render_batch needs at least one event");
    let parts: Vec<Parts> = events
        .iter()
        .take(MAX_BLOCKS)
        .map(|e| Parts::new(e, console))
        .collect();
    match format {
        Format::Blocks => render_blocks(&parts),
        Format::Text => {
            let (text, n) = join_fitting(&parts, |p| p.walkthrough_text(TEXT_LIMIT));
            (json!({ "text": text }), n)
        }
        Format::Workflow => {
            let (text, n) = join_fitting(&parts, |p| p.workflow_text(TEXT_LIMIT));
            (
                json!({
                    "vast_notification_message": text,
                    "vast_action_url": parts[0].url,
                }),
                n,
            )
        }
    }
}

/// What every shape needs of one event, computed once.
struct Parts<'a> {
    event: &'a Event,
    kind: Kind,
    emoji: &'static str,
    subject: &'a str,
    message: &'a str,
    url: String,
}

impl<'a> Parts<'a> {
    fn new(event: &'a Event, console: &str) -> Parts<'a> {
        let non_empty = |s: &'a Option<String>| s.as_deref().filter(|s| !s.trim().is_empty());
        let slug = slug(&event.notif_type);
        let kind = kind_in(&slug, event.context.as_deref());
        Parts {
            event,
            kind,
            emoji: match (kind, emoji(&event.notif_type)) {
                (Kind::Host, ":bell:") => ":wrench:",
                (_, e) => e,
            },
            subject: non_empty(&event.subject).unwrap_or(DEFAULT_SUBJECT),
            message: non_empty(&event.message).unwrap_or(NO_MESSAGE),
            url: action_url(console, kind),
        }
    }

    /// `type=… event_id=…`, raw (for plain strings).
    fn details(&self) -> String {
        format!("type={} event_id={}", self.type_key(), self.event.event_id)
    }

    /// The event time (or, without one, the time it was received) as UTC.
    fn time(&self) -> String {
        let secs = self
            .event
            .timestamp
            .filter(|t| t.is_finite())
            .map_or(self.event.received_at, |t| t.floor() as i64);
        format_utc(secs)
    }

    /// Vast.ai's adapter format, escaped for Slack `text`:
    /// `subject\nmessage\naction_url\ntype=… event_id=…`, at most `limit` long.
    /// The message gives way first, then the subject, so the link and the id survive.
    fn walkthrough_text(&self, limit: usize) -> String {
        let tail = format!("{}\n{}", self.url, escape(&self.details()));
        compose(self.subject, self.message, &tail, true, limit)
    }

    /// `subject\nmessage\n(type=… event_id=…)`, unescaped (workflow variables are plain text).
    fn workflow_text(&self, limit: usize) -> String {
        let tail = format!("({})", self.details());
        compose(self.subject, self.message, &tail, false, limit)
    }

    /// One line of a digest's fallback text: `subject (type=… event_id=…)`.
    fn digest_line(&self) -> String {
        format!(
            "• {} ({})",
            fit(&one_line(self.subject), true, DIGEST_SUBJECT_LIMIT),
            escape(&self.details())
        )
    }

    /// `type`, as the full key (`host:machine_offline`) when the context is known.
    fn type_key(&self) -> String {
        match &self.event.context {
            Some(c) => format!("{c}:{}", self.event.notif_type),
            None => self.event.notif_type.clone(),
        }
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
    fn digest_section(&self) -> Value {
        let head = format!(
            "{} *{}*\n",
            self.emoji,
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
            header(&format!("{} {}", p.emoji, one_line(p.subject))),
            mrkdwn_section(fit(p.message, true, SECTION_LIMIT)),
            // A link, not a URL button: on an incoming webhook (no interactivity configured)
            // Slack marks a button with an "app not configured" warning when it is clicked.
            {
                "type": "context",
                "elements": [{
                    "type": "mrkdwn",
                    "text": fit(&format!("<{}|{}> · {}", p.url, p.kind.button(), p.context()), false, SECTION_LIMIT),
                    "verbatim": true,
                }],
            },
        ],
    })
}

/// A section of mrkdwn, `verbatim` so Slack does not turn names or bare words into links or
/// mentions (the text is escaped as well; see [`escape`]).
fn mrkdwn_section(text: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text, "verbatim": true } })
}

/// A header: plain text (never parsed for mentions), with the same word joiner after `@`
/// as [`escape`] puts there, so a client that does parse it cannot notify anyone either.
fn header(text: &str) -> Value {
    let text = text.replace('@', "@\u{2060}");
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": fit(&text, false, HEADER_LIMIT), "emoji": true },
    })
}

/// Join the rendering of as many leading events as fit in [`TEXT_LIMIT`], separated by a
/// blank line. The first is always taken (truncated to fit).
fn join_fitting(parts: &[Parts], render: impl Fn(&Parts) -> String) -> (String, usize) {
    let mut out = render(&parts[0]);
    let mut used = units(&out);
    let mut n = 1;
    for p in &parts[1..] {
        let piece = render(p);
        let cost = units(&piece) + 2;
        if used + cost > TEXT_LIMIT {
            break;
        }
        out.push_str("\n\n");
        out.push_str(&piece);
        used += cost;
        n += 1;
    }
    (out, n)
}

/// `subject\nmessage\ntail` within `limit`. The tail is kept whole; the message gives way
/// first, but the subject never takes more than it needs or, when both are long, more than a
/// quarter of the room. Only when the tail alone does not fit is the whole cut.
fn compose(subject: &str, message: &str, tail: &str, escaped: bool, limit: usize) -> String {
    let room = limit.saturating_sub(units(tail) + 2);
    let message_len: usize = message.chars().map(|c| escaped_units(c, escaped)).sum();
    let subject_room = room.saturating_sub(message_len).max(room / 4).max(1);
    let subject = fit(subject, escaped, subject_room);
    let message = fit(
        message,
        escaped,
        room.saturating_sub(units(&subject)).max(1),
    );
    fit(&format!("{subject}\n{message}\n{tail}"), false, limit)
}

/// Length as Slack may count it: UTF-16 code units (never less than characters).
fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Escape Slack's mrkdwn control characters, and put a word joiner (U+2060, invisible) after
/// every `@` so that text like `@channel` or `@here` from Vast.ai can never notify anyone.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, true);
    }
    out
}

fn push_escaped(out: &mut String, c: char, escaped: bool) {
    match c {
        '&' if escaped => out.push_str("&amp;"),
        '<' if escaped => out.push_str("&lt;"),
        '>' if escaped => out.push_str("&gt;"),
        '@' if escaped => out.push_str("@\u{2060}"),
        c => out.push(c),
    }
}

fn escaped_units(c: char, escaped: bool) -> usize {
    match c {
        '&' if escaped => 5,
        '<' | '>' if escaped => 4,
        '@' if escaped => 2,
        c => c.len_utf16(),
    }
}

/// `s` (escaped when `escaped`) cut to at most `limit` units, ending in `…` when cut.
/// Cuts only between characters, never inside an escape.
fn fit(s: &str, escaped: bool, limit: usize) -> String {
    let total: usize = s.chars().map(|c| escaped_units(c, escaped)).sum();
    let mut out = String::with_capacity(s.len().min(limit.saturating_mul(4)));
    if total <= limit {
        s.chars().for_each(|c| push_escaped(&mut out, c, escaped));
        return out;
    }
    if limit == 0 {
        return out;
    }
    let budget = limit - 1; // room for the ellipsis
    let mut used = 0;
    for c in s.chars() {
        let u = escaped_units(c, escaped);
        if used + u > budget {
            break;
        }
        used += u;
        push_escaped(&mut out, c, escaped);
    }
    out.push(ELLIPSIS);
    out
}

/// Newlines (and other line breaks) to spaces, for headers and one-line summaries.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian; any `i64` works).
fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "https://cloud.vast.ai";

    fn event(id: &str, notif_type: &str, subject: &str, message: &str) -> Event {
        Event {
            event_id: id.to_owned(),
            notif_type: notif_type.to_owned(),
            subject: Some(subject.to_owned()),
            message: Some(message.to_owned()),
            user_id: Some(1),
            timestamp: Some(1_772_490_000.9),
            received_at: 1_772_490_100,
            context: None,
            alert: None,
            heartbeat: false,
        }
    }

    fn low_credit() -> Event {
        event(
            "0123456789abcdef0123456789abcdef",
            "low_credit",
            "Low credit",
            "Your balance is $4.20",
        )
    }

    fn blocks(v: &Value) -> &Vec<Value> {
        v["blocks"].as_array().expect("blocks array")
    }

    fn section_text(b: &Value) -> &str {
        b["text"]["text"].as_str().unwrap()
    }

    #[test]
    fn format_for_url() {
        assert_eq!(
            Format::for_url("https://hooks.slack.com/triggers/T0/123/abc"),
            Format::Workflow
        );
        assert_eq!(
            Format::for_url("https://hooks.slack.com/services/T0/B0/xyz"),
            Format::Blocks
        );
        assert_eq!(
            Format::for_url("https://hooks.slack.com/services/x?next=/triggers/y"),
            Format::Blocks
        );
        assert_eq!(Format::for_url("not a url"), Format::Blocks);
    }

    #[test]
    fn format_serde_and_clap_names() {
        use clap::ValueEnum;
        assert_eq!(
            serde_json::to_string(&Format::Workflow).unwrap(),
            "\"workflow\""
        );
        assert_eq!(Format::from_str("text", true).unwrap(), Format::Text);
    }

    #[test]
    fn action_url_groups() {
        for t in [
            "low_credit",
            "billing_failed",
            "payment_receipt",
            "credit_added",
            "invoice_ready",
        ] {
            assert_eq!(
                action_url(CONSOLE, kind(&slug(t))),
                "https://cloud.vast.ai/billing/",
                "{t}"
            );
        }
        for t in [
            "instance_created",
            "instance_started",
            "instance_stopped",
            "instance_offline",
            "instance_online",
            "outbid",
            "upcoming_downtime",
        ] {
            assert_eq!(
                action_url(CONSOLE, kind(&slug(t))),
                "https://cloud.vast.ai/instances/",
                "{t}"
            );
        }
        for t in [
            "machine_offline",
            "machine_error",
            "maintenance_scheduled",
            "host_anything",
        ] {
            assert_eq!(
                action_url(CONSOLE, kind(&slug(t))),
                "https://cloud.vast.ai/host/machines/",
                "{t}"
            );
        }
        for t in ["webhook_test", "notification", "something_new", ""] {
            assert_eq!(
                action_url(CONSOLE, kind(&slug(t))),
                "https://cloud.vast.ai/",
                "{t}"
            );
        }
        // Trailing slash on the base, and a stray key prefix.
        assert_eq!(
            action_url("https://cloud.vast.ai/", kind(&slug("low_credit"))),
            "https://cloud.vast.ai/billing/"
        );
        assert_eq!(
            action_url(CONSOLE, kind(&slug("host:machine_offline"))),
            "https://cloud.vast.ai/host/machines/"
        );
    }

    #[test]
    fn emoji_per_kind() {
        assert_eq!(emoji("low_credit"), ":warning:");
        assert_eq!(emoji("billing_failed"), ":x:");
        assert_eq!(emoji("payment_receipt"), ":receipt:");
        assert_eq!(emoji("instance_created"), ":rocket:");
        assert_eq!(emoji("instance_stopped"), ":octagonal_sign:");
        assert_eq!(emoji("instance_offline"), ":red_circle:");
        assert_eq!(emoji("instance_online"), ":large_green_circle:");
        assert_eq!(emoji("outbid"), ":moneybag:");
        assert_eq!(emoji("upcoming_downtime"), ":calendar:");
        assert_eq!(emoji("machine_error"), ":wrench:");
        assert_eq!(emoji("webhook_test"), ":white_check_mark:");
        assert_eq!(emoji("whatever"), ":bell:");
    }

    #[test]
    fn single_blocks_shape() {
        let (v, n) = render_batch(&[low_credit()], Format::Blocks, CONSOLE);
        assert_eq!(n, 1);
        let b = blocks(&v);
        let types: Vec<&str> = b.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["header", "section", "context"]);
        assert_eq!(b[0]["text"]["type"], "plain_text");
        assert_eq!(b[0]["text"]["text"], ":warning: Low credit");
        assert_eq!(b[1]["text"]["type"], "mrkdwn");
        assert_eq!(b[1]["text"]["verbatim"], true);
        assert_eq!(section_text(&b[1]), "Your balance is $4.20");
        assert!(!v.to_string().contains("\"button\""), "no URL button: {v}");
        assert_eq!(
            b[2]["elements"][0]["text"],
            "<https://cloud.vast.ai/billing/|Open billing> · type=low_credit · event_id=0123456789abcdef0123456789abcdef · 2026-03-02 22:20:00 UTC"
        );
        assert_eq!(
            v["text"],
            "Low credit\nYour balance is $4.20\nhttps://cloud.vast.ai/billing/\n\
             type=low_credit event_id=0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn missing_fields_use_defaults_and_received_at() {
        let mut e = low_credit();
        e.subject = None;
        e.message = Some(String::new());
        e.timestamp = None;
        e.received_at = 0;
        e.notif_type = "webhook_test".into();
        let (v, _) = render_batch(&[e], Format::Blocks, CONSOLE);
        let b = blocks(&v);
        assert_eq!(
            b[0]["text"]["text"],
            ":white_check_mark: Vast.ai notification"
        );
        assert_eq!(section_text(&b[1]), NO_MESSAGE);
        assert!(b[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("<https://cloud.vast.ai/|Open console> · "));
        assert!(b[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("1970-01-01 00:00:00 UTC"));
    }

    #[test]
    fn mentions_in_vast_text_cannot_notify_anyone() {
        let e = event(
            "id-m",
            "outbid",
            "@here outbid",
            "@channel @everyone <!here> mail a@b.c",
        );
        for format in [Format::Blocks, Format::Text] {
            let (v, _) = render_batch(std::slice::from_ref(&e), format, CONSOLE);
            let all = v.to_string();
            for m in ["@channel", "@everyone", "@here", "<!here>"] {
                assert!(!all.contains(m), "{format:?} carries {m}: {all}");
            }
        }
        let (d, _) = render_batch(&[e.clone(), e], Format::Blocks, CONSOLE);
        assert!(!d.to_string().contains("@channel"));
        assert!(blocks(&d)[1]["text"]["verbatim"] == true);
    }

    #[test]
    fn the_context_of_the_verifying_webhook_picks_the_console_page() {
        let mut e = event("id-h", "payout_sent", "Payout", "sent");
        let (v, _) = render_batch(std::slice::from_ref(&e), Format::Blocks, CONSOLE);
        assert!(v
            .to_string()
            .contains("https://cloud.vast.ai/|Open console"));
        e.context = Some("host".into());
        let (v, _) = render_batch(&[e], Format::Blocks, CONSOLE);
        let ctx = blocks(&v)[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            ctx.starts_with("<https://cloud.vast.ai/host/machines/|Open host machines>"),
            "{ctx}"
        );
        assert!(ctx.contains("type=host:payout_sent"), "{ctx}");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_772_490_000), "2026-03-02 22:20:00 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        // Extremes must not panic.
        let _ = format_utc(i64::MAX);
        let _ = format_utc(i64::MIN);
    }

    #[test]
    fn escapes_mrkdwn_in_user_text() {
        let e = event("id-1", "outbid", "A & B <c>", "x<y & z>w <!channel>");
        let (v, _) = render_batch(std::slice::from_ref(&e), Format::Blocks, CONSOLE);
        let b = blocks(&v);
        assert_eq!(section_text(&b[1]), "x&lt;y &amp; z&gt;w &lt;!channel&gt;");
        // plain_text headers are shown verbatim: no escaping there.
        assert_eq!(b[0]["text"]["text"], ":moneybag: A & B <c>");
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("A &amp; B &lt;c&gt;\nx&lt;y &amp; z&gt;w &lt;!channel&gt;\n"));
        assert!(!text.contains("<!channel>"));

        let (t, _) = render_batch(std::slice::from_ref(&e), Format::Text, CONSOLE);
        assert!(!t["text"].as_str().unwrap().contains('<'));

        let two = [e.clone(), event("id-2", "outbid", "<b>", "&")];
        let (d, n) = render_batch(&two, Format::Blocks, CONSOLE);
        assert_eq!(n, 2);
        let s = section_text(&blocks(&d)[2]);
        assert!(s.contains("*&lt;b&gt;*") && s.contains("\n&amp;\n"), "{s}");
        assert!(!d["text"].as_str().unwrap().contains("<b>"));

        // Workflow variables are plain strings: left as they are.
        let (w, _) = render_batch(&[e], Format::Workflow, CONSOLE);
        assert!(w["vast_notification_message"]
            .as_str()
            .unwrap()
            .starts_with("A & B <c>\nx<y & z>w"));
    }

    #[test]
    fn truncation_respects_limits_and_char_boundaries() {
        // Multi-byte (2, 3 and 4 bytes, the last 2 UTF-16 units) plus characters that expand.
        let big: String = "é€😀&".repeat(2_500);
        assert_eq!(big.chars().count(), 10_000);
        let e = event("big-id", "low_credit", &big, &big);

        let (v, n) = render_batch(std::slice::from_ref(&e), Format::Blocks, CONSOLE);
        assert_eq!(n, 1);
        let b = blocks(&v);
        let header = b[0]["text"]["text"].as_str().unwrap();
        assert!(units(header) <= HEADER_LIMIT && header.ends_with(ELLIPSIS));
        let section = section_text(&b[1]);
        assert!(units(section) <= SECTION_LIMIT && units(section) > SECTION_LIMIT - 10);
        assert!(section.ends_with(ELLIPSIS));
        // Cut between characters of the escaped text, never inside an escape.
        let before = section.strip_suffix(ELLIPSIS).unwrap();
        assert!(escape(&big).starts_with(before));
        assert_eq!(count(before, "&"), count(before, "&amp;"));
        let text = v["text"].as_str().unwrap();
        assert!(units(text) <= TEXT_LIMIT);
        assert!(text.ends_with("type=low_credit event_id=big-id"));

        let (t, _) = render_batch(std::slice::from_ref(&e), Format::Text, CONSOLE);
        let t = t["text"].as_str().unwrap();
        assert!(units(t) <= TEXT_LIMIT && t.contains("event_id=big-id"));

        let (w, _) = render_batch(&[e], Format::Workflow, CONSOLE);
        let w = w["vast_notification_message"].as_str().unwrap();
        assert!(units(w) <= TEXT_LIMIT && w.ends_with("(type=low_credit event_id=big-id)"));

        // Tiny limits never panic.
        for limit in 0..8 {
            assert!(units(&fit(&big, true, limit)) <= limit);
        }
    }

    fn many(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                event(
                    &format!("evt-{i:04}-{:024x}", i * 7919),
                    ["low_credit", "instance_stopped", "machine_error"][i % 3],
                    &format!("Subject number {i}"),
                    &"A fairly long message body. ".repeat(40),
                )
            })
            .collect()
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn digest_of_200_fits_slack_limits() {
        let events = many(200);
        let (v, n) = render_batch(&events, Format::Blocks, CONSOLE);
        assert!(n > 1 && n < 200, "n = {n}");
        let b = blocks(&v);
        assert!(b.len() <= MAX_BLOCKS);
        assert_eq!(b.len(), n + 1);
        assert_eq!(
            b[0]["text"]["text"],
            format!(":bell: {n} Vast.ai notifications")
        );
        for s in &b[1..] {
            assert_eq!(s["type"], "section");
            assert!(units(section_text(s)) <= SECTION_LIMIT);
        }
        let text = v["text"].as_str().unwrap();
        assert!(units(text) <= TEXT_LIMIT);
        let blocks_json = serde_json::to_string(b).unwrap();
        for (i, e) in events.iter().enumerate() {
            let want = usize::from(i < n);
            assert_eq!(count(&blocks_json, &e.event_id), want, "blocks, event {i}");
            assert_eq!(count(text, &e.event_id), want, "text, event {i}");
        }
        // Sections keep per-event links.
        assert!(section_text(&b[1]).contains("<https://cloud.vast.ai/billing/|Open>"));
        assert!(section_text(&b[3]).contains("<https://cloud.vast.ai/host/machines/|Open>"));
    }

    #[test]
    fn digest_never_exceeds_block_limit_with_short_events() {
        let events: Vec<Event> = (0..120)
            .map(|i| Event {
                event_id: format!("e{i:03}"),
                notif_type: "outbid".into(),
                subject: None,
                message: None,
                user_id: None,
                timestamp: None,
                received_at: 0,
                context: None,
                alert: None,
                heartbeat: false,
            })
            .collect();
        let (v, n) = render_batch(&events, Format::Blocks, CONSOLE);
        assert_eq!(n, MAX_BLOCKS - 1);
        assert_eq!(blocks(&v).len(), MAX_BLOCKS);
    }

    #[test]
    fn digest_fallback_text_budget_limits_count() {
        // Long ids make the fallback text, not the block count, the binding limit.
        let mut events = many(60);
        for (i, e) in events.iter_mut().enumerate() {
            e.event_id = format!("{i:03}-{}", "x".repeat(300));
        }
        let (v, n) = render_batch(&events, Format::Blocks, CONSOLE);
        assert!(n > 1 && n < MAX_BLOCKS - 1, "n = {n}");
        let text = v["text"].as_str().unwrap();
        assert!(units(text) <= TEXT_LIMIT);
        assert_eq!(blocks(&v).len(), n + 1);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(count(text, &e.event_id), usize::from(i < n), "event {i}");
        }
    }

    #[test]
    fn text_digest_joins_with_blank_line() {
        let events = many(200);
        let (v, n) = render_batch(&events, Format::Text, CONSOLE);
        assert_eq!(v.as_object().unwrap().len(), 1);
        let text = v["text"].as_str().unwrap();
        assert!(units(text) <= TEXT_LIMIT);
        assert!((2..200).contains(&n), "n = {n}");
        assert_eq!(text.split("\n\n").count(), n);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(count(text, &e.event_id), usize::from(i < n), "event {i}");
        }

        let (one, n) = render_batch(&events[..1], Format::Text, CONSOLE);
        assert_eq!(n, 1);
        assert!(one["text"]
            .as_str()
            .unwrap()
            .starts_with("Subject number 0\nA fairly long"));
    }

    #[test]
    fn workflow_values_are_strings() {
        let (v, n) = render_batch(&[low_credit()], Format::Workflow, CONSOLE);
        assert_eq!(n, 1);
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert!(obj.values().all(Value::is_string));
        assert_eq!(
            v["vast_notification_message"],
            "Low credit\nYour balance is $4.20\n\
             (type=low_credit event_id=0123456789abcdef0123456789abcdef)"
        );
        assert_eq!(v["vast_action_url"], "https://cloud.vast.ai/billing/");

        let events = many(200);
        let (v, n) = render_batch(&events, Format::Workflow, CONSOLE);
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert!(obj.values().all(Value::is_string));
        let msg = v["vast_notification_message"].as_str().unwrap();
        assert!((2..200).contains(&n) && units(msg) <= TEXT_LIMIT);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(count(msg, &e.event_id), usize::from(i < n), "event {i}");
        }
        assert_eq!(v["vast_action_url"], "https://cloud.vast.ai/billing/");
    }

    #[test]
    fn oversized_first_event_is_carried_alone() {
        let mut events = many(3);
        events[0].message = Some("x".repeat(10_000));
        for format in [Format::Text, Format::Workflow] {
            let (v, n) = render_batch(&events, format, CONSOLE);
            assert_eq!(n, 1, "{format:?}");
            let key = match format {
                Format::Text => "text",
                _ => "vast_notification_message",
            };
            let s = v[key].as_str().unwrap();
            assert!(units(s) <= TEXT_LIMIT);
        }
        // Blocks digests truncate each message instead, so all three fit.
        let (_, n) = render_batch(&events, Format::Blocks, CONSOLE);
        assert_eq!(n, 3);
    }

    #[test]
    #[should_panic(expected = "at least one event")]
    fn empty_batch_panics() {
        render_batch(&[], Format::Text, CONSOLE);
    }
}
