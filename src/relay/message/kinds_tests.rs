//! Every kind, from the same events: native shape, documented limits, escaping of hostile
//! text, every event named by type and id, and each service's answers.

use serde_json::Value;

use super::model::units;
use super::{kind, render_batch, render_summary, Body, Format, Rendered};
use crate::relay::event::Event;

const CONSOLE: &str = "https://cloud.vast.ai";
const NEW_KINDS: [Format; 6] = [
    Format::GoogleChat,
    Format::Discord,
    Format::Teams,
    Format::Telegram,
    Format::Ntfy,
    Format::Pagerduty,
];

fn event(i: usize, notif_type: &str, subject: &str, message: &str) -> Event {
    Event {
        event_id: format!("evt{i:03}0123456789abcdef"),
        notif_type: notif_type.into(),
        subject: Some(subject.into()),
        message: Some(message.into()),
        user_id: Some(7),
        timestamp: Some(1_772_490_000.0),
        received_at: 1_772_490_000,
        context: Some("host".into()),
        alert: None,
        heartbeat: false,
        legs: Default::default(),
    }
}

const HOSTILE: &str = "@everyone @here <@123> <users/all> <!channel> *bold* _it_ ~s~ `c` \
    [click](https://evil.example) https://evil.example/x <b>x</b> <a href=\"https://e.x\">y</a> \
    # head\n> quote /start @somebody evil.example";

/// The parts of a message a service shows, as one string, per kind.
fn shown(r: &Rendered) -> String {
    match &r.body {
        Body::Json(v) => v.to_string(),
        Body::Text(t) => t.clone(),
    }
}

#[test]
fn every_kind_names_the_type_and_id_and_links_the_console() {
    let e = event(
        1,
        "machine_offline",
        "Machine 4242 went offline",
        "It stopped answering",
    );
    for f in Format::ALL {
        let (r, n) = render_batch(std::slice::from_ref(&e), f, CONSOLE);
        assert_eq!(n, 1);
        let all = r.shown();
        assert!(all.contains("evt0010123456789abcdef"), "{f:?}: {all}");
        assert!(all.contains("machine_offline"), "{f:?}: {all}");
        assert!(
            all.contains("https://cloud.vast.ai/host/machines/"),
            "{f:?}: {all}"
        );
    }
}

#[test]
fn native_shapes() {
    let e = event(
        1,
        "machine_offline",
        "Machine 4242 went offline",
        "It stopped answering",
    );
    let one = |f| render_batch(std::slice::from_ref(&e), f, CONSOLE).0;
    let d = one(Format::Discord);
    let v = d.value();
    assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(v["embeds"][0]["color"], 0xD0_3A_2F);
    assert!(v["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap()
        .contains("event_id="));
    let t = one(Format::Teams);
    let v = t.value();
    assert_eq!(v["type"], "message");
    let card = &v["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["actions"][0]["type"], "Action.OpenUrl");
    let g = one(Format::GoogleChat);
    let v = g.value();
    assert!(v["text"].as_str().is_some());
    let button = &v["cardsV2"][0]["card"]["sections"][0]["widgets"][1]["buttonList"]["buttons"][0];
    assert_eq!(
        button["onClick"]["openLink"]["url"],
        "https://cloud.vast.ai/host/machines/"
    );
    let tg = one(Format::Telegram);
    let v = tg.value();
    assert_eq!(v["parse_mode"], "HTML");
    assert!(v["text"].as_str().unwrap().starts_with("<b>Machine 4242"));
    assert_eq!(
        v["reply_markup"]["inline_keyboard"][0][0]["url"],
        "https://cloud.vast.ai/host/machines/"
    );
    let n = one(Format::Ntfy);
    let h = |k: &str| {
        n.headers
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h("Title").as_deref(), Some("Machine 4242 went offline"));
    assert_eq!(h("Priority").as_deref(), Some("5"));
    assert_eq!(
        h("Click").as_deref(),
        Some("https://cloud.vast.ai/host/machines/")
    );
    assert!(matches!(&n.body, Body::Text(t) if t.starts_with("It stopped answering")));
    let p = one(Format::Pagerduty);
    let v = p.value();
    assert_eq!(v["event_action"], "trigger");
    assert_eq!(v["dedup_key"], "vast:machine:4242");
    assert_eq!(v["payload"]["severity"], "critical");
    assert_eq!(
        v["payload"]["custom_details"]["event_id"],
        "evt0010123456789abcdef"
    );
}

#[test]
fn pagerduty_resolves_the_matching_alert_and_keys_the_rest_by_event_id() {
    let on = event(2, "machine_online", "Machine 4242 is back online", "ok");
    let (r, _) = render_batch(&[on], Format::Pagerduty, CONSOLE);
    assert_eq!(r.value()["event_action"], "resolve");
    assert_eq!(r.value()["dedup_key"], "vast:machine:4242");
    // No machine named: no pairing, so no resolve of the wrong alert.
    let on = event(3, "instance_online", "Back", "ok");
    let (r, _) = render_batch(&[on], Format::Pagerduty, CONSOLE);
    assert_eq!(r.value()["event_action"], "trigger");
    assert_eq!(r.value()["payload"]["severity"], "info");
    let low = event(4, "low_credit", "Low credit", "$1");
    let (r, n) = render_batch(&[low.clone(), low], Format::Pagerduty, CONSOLE);
    assert_eq!(n, 1, "one alert per event, never a digest");
    assert_eq!(r.value()["dedup_key"], "evt0040123456789abcdef");
    assert_eq!(r.value()["payload"]["severity"], "warning");
}

#[test]
fn hostile_text_cannot_mention_link_or_format() {
    let e = event(1, "outbid", HOSTILE, HOSTILE);
    for f in NEW_KINDS {
        let (r, _) = render_batch(std::slice::from_ref(&e), f, CONSOLE);
        let all = shown(&r) + &r.headers.iter().map(|h| h.1.clone()).collect::<String>();
        let forbidden: &[&str] = match f {
            // Mentions are off by `allowed_mentions`; markdown is backslash-escaped.
            Format::Discord => &["@everyone", "<@123>", "[click](", "https://evil", "*bold*"],
            Format::Telegram => &[
                "<b>x</b>",
                "<a href",
                "@somebody",
                "https://evil",
                "/start",
                "evil.example",
            ],
            // Card text is HTML (escaped); only `text` is Chat markup.
            Format::GoogleChat => &["<users/all>", "<b>x", "<a href"],
            // TextRuns are never markdown; ntfy's body is plain text; PagerDuty is text.
            Format::Teams | Format::Ntfy | Format::Pagerduty => &["<at>"],
            _ => unreachable!(),
        };
        for bad in forbidden {
            assert!(!all.contains(bad), "{f:?} carries {bad:?}: {all}");
        }
        if f == Format::GoogleChat {
            let text = r.value()["text"].as_str().unwrap();
            for bad in [
                "*bold*",
                "_it_",
                "~s~",
                "`c`",
                "https://evil",
                "<users/all>",
            ] {
                assert!(
                    !text.contains(bad),
                    "Google Chat text carries {bad:?}: {text}"
                );
            }
        }
        if f == Format::Discord {
            assert_eq!(
                r.value()["allowed_mentions"]["parse"],
                serde_json::json!([])
            );
        }
        if f == Format::Ntfy {
            for (_, v) in &r.headers {
                assert!(v.is_ascii() && !v.contains('\n'), "header {v:?}");
            }
        }
    }
}

#[test]
fn long_messages_and_digests_keep_each_services_limits() {
    let long: String = "é€😀&<".repeat(2_000);
    let big: Vec<Event> = (0..60)
        .map(|i| {
            event(
                i,
                ["low_credit", "machine_offline", "outbid"][i % 3],
                &long,
                &long,
            )
        })
        .collect();
    for f in NEW_KINDS {
        for events in [&big[..1], &big[..]] {
            let (r, n) = render_batch(events, f, CONSOLE);
            assert!(n >= 1 && n <= kind(f).max_events(), "{f:?}: {n}");
            let all = r.shown();
            for (i, e) in events.iter().enumerate() {
                assert_eq!(all.contains(&e.event_id), i < n, "{f:?}: event {i} of {n}");
            }
            check_limits(f, &r);
        }
    }
}

fn check_limits(f: Format, r: &Rendered) {
    let s = |v: &Value| v.as_str().map_or(0, units);
    let v = r.value();
    match f {
        Format::Discord => {
            let embeds = v["embeds"].as_array().unwrap();
            assert!(embeds.len() <= 10);
            let mut total = 0;
            for e in embeds {
                assert!(s(&e["title"]) <= 256 && s(&e["description"]) <= 4096);
                assert!(s(&e["footer"]["text"]) <= 2048);
                total += s(&e["title"]) + s(&e["description"]) + s(&e["footer"]["text"]);
                for fl in e["fields"].as_array().into_iter().flatten() {
                    assert!(s(&fl["value"]) <= 1024);
                    total += s(&fl["name"]) + s(&fl["value"]);
                }
            }
            assert!(total <= 6000, "{total}");
        }
        Format::Telegram => assert!(s(&v["text"]) <= 4096),
        Format::GoogleChat => {
            assert!(s(&v["text"]) <= 4000);
            assert!(v.to_string().len() <= 32_000, "{}", v.to_string().len());
        }
        Format::Teams => assert!(v.to_string().len() <= 28_000, "{}", v.to_string().len()),
        Format::Ntfy => {
            let Body::Text(t) = &r.body else { panic!() };
            assert!(t.len() <= 4_000, "{}", t.len());
        }
        Format::Pagerduty => {
            assert!(s(&v["payload"]["summary"]) <= 1024);
            assert!(v.to_string().len() <= 512 * 1024);
        }
        _ => {}
    }
}

#[test]
fn summaries_fit_and_a_pager_never_summarises() {
    let events: Vec<Event> = (0..5_000)
        .map(|i| event(i, "outbid", "<@here>", "m"))
        .collect();
    for f in NEW_KINDS {
        let r = render_summary(&events.iter().collect::<Vec<_>>(), (1, 5_000), f, CONSOLE);
        if f == Format::Pagerduty {
            assert!(r.is_none());
            continue;
        }
        let r = r.unwrap();
        assert!(r.shown().contains("5,000"), "{f:?}");
        assert!(
            r.shown().contains("vslack queue list --range 1-5000"),
            "{f:?}"
        );
        check_limits(f, &r);
    }
}
