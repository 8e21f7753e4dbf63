//! Slack digests: as many events as Slack's limits allow, every carried id named.

use super::tests::{blocks, count, event, low_credit, render_batch, section_text, CONSOLE};
use super::*;
use crate::relay::event::Event;

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
            legs: Default::default(),
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
