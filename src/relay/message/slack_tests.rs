use super::*;
use crate::relay::event::Event;
use crate::relay::message::model::{
    action_url, format_utc, slug, topic as kind, ELLIPSIS, NO_MESSAGE,
};

/// The payload as JSON, and how many events it carries.
pub(super) fn render_batch(events: &[Event], format: Format, console: &str) -> (Value, usize) {
    let (r, n) = crate::relay::message::render_batch(events, format, console);
    (r.value().clone(), n)
}

pub(super) fn emoji(notif_type: &str) -> &'static str {
    let e = event("x", notif_type, "s", "m");
    super::emoji(&Parts::new(&e, CONSOLE))
}

pub(super) const CONSOLE: &str = "https://cloud.vast.ai";

pub(super) fn event(id: &str, notif_type: &str, subject: &str, message: &str) -> Event {
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
        legs: Default::default(),
    }
}

pub(super) fn low_credit() -> Event {
    event(
        "0123456789abcdef0123456789abcdef",
        "low_credit",
        "Low credit",
        "Your balance is $4.20",
    )
}

pub(super) fn blocks(v: &Value) -> &Vec<Value> {
    v["blocks"].as_array().expect("blocks array")
}

pub(super) fn section_text(b: &Value) -> &str {
    b["text"]["text"].as_str().unwrap()
}

#[test]
fn format_for_url() {
    assert_eq!(
        Format::for_url("https://hooks.slack.com/triggers/T0/123/abc"),
        Some(Format::Workflow)
    );
    assert_eq!(
        Format::for_url("https://hooks.slack.com/services/T0/B0/xyz"),
        Some(Format::Blocks)
    );
    assert_eq!(
        Format::for_url("https://hooks.slack.com/services/x?next=/triggers/y"),
        Some(Format::Blocks)
    );
    assert_eq!(Format::for_url("not a url"), None);
}

#[test]
fn format_serde_and_clap_names() {
    use clap::ValueEnum;
    assert_eq!(
        serde_json::to_string(&Format::Workflow).unwrap(),
        "\"workflow\""
    );
    assert_eq!(Format::from_str("text", true).unwrap(), Format::Text);
    assert_eq!(
        serde_json::to_string(&Format::GoogleChat).unwrap(),
        "\"google-chat\""
    );
    assert_eq!(Format::GoogleChat.name(), "google-chat");
    for f in Format::ALL {
        assert_eq!(Format::from_str(f.name(), false).unwrap(), f);
    }
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

pub(super) fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}
