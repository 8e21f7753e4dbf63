//! Every destination kind through the real relay (store, forwarder, retries) against a
//! stand-in that checks the service's documented request shape and limits and answers like
//! it: hostile and 10,000-character text, the service's own 429 honoured, and a permanent
//! error dead-lettered for that destination only.

use std::time::{Duration, Instant};

use serde_json::json;
use vslack::relay::forward::Destination;
use vslack::relay::message::Format;
use vslack::secret::Secret;

use crate::relay::{deliver, now, post, signature, start, wait_stats, SECRET};
use crate::support::fake_chat::{FakeChat, Script, Service, ALL, PAGERDUTY_KEY, TELEGRAM_CHAT};
use crate::support::fake_slack::FakeSlack;

fn format(s: Service) -> Format {
    match s {
        Service::GoogleChat => Format::GoogleChat,
        Service::Discord => Format::Discord,
        Service::Teams => Format::Teams,
        Service::Telegram => Format::Telegram,
        Service::Ntfy => Format::Ntfy,
        Service::PagerDuty => Format::Pagerduty,
    }
}

async fn relay_to(chat: &FakeChat) -> crate::relay::Harness {
    let url = chat.url();
    let f = format(chat.service);
    start(&url, |o| {
        o.destinations = vec![Destination::new(
            "default",
            None,
            Some(Secret::new(&url)),
            f,
        )];
    })
    .await
}

async fn send(url: &str, body: serde_json::Value) -> u16 {
    let body = body.to_string().into_bytes();
    let ts = now();
    post(url, &body, Some(ts), Some(signature(SECRET, ts, &body)))
        .await
        .0
}

const HOSTILE: &str = "@everyone <@123> <users/all> <!channel> *bold* [x](https://evil.example) \
    <b>x</b> <a href=\"https://evil.example\">y</a> /start @somebody";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_delivers_hostile_and_huge_events_in_its_own_shape() {
    for service in ALL {
        let chat = FakeChat::start(service);
        let h = relay_to(&chat).await;
        let huge: String = "é€😀&<>".repeat(1_700);
        let events = [
            json!({"event_id": "evt-hostile", "user_id": 7, "notif_type": "machine_offline",
                   "subject": format!("Machine 4242 {HOSTILE}"), "message": HOSTILE, "timestamp": now()}),
            json!({"event_id": "evt-huge", "user_id": 7, "notif_type": "low_credit",
                   "subject": huge, "message": huge, "timestamp": now()}),
            json!({"event_id": "evt-plain", "user_id": 7, "notif_type": "machine_online",
                   "subject": "Machine 4242 is back online", "message": "ok", "timestamp": now()}),
        ];
        for e in events {
            assert_eq!(send(&h.url, e).await, 204, "{service:?}");
        }
        let stats = wait_stats(&h.relay, |s| s.delivered == 3).await;
        assert_eq!(stats.delivered, 3, "{service:?}: {stats:?}");
        assert!(
            chat.invalid().is_empty(),
            "{service:?} refused: {:?}",
            chat.invalid()
        );
        let accepted = chat.accepted();
        let all: String = accepted
            .iter()
            .map(|r| format!("{}\n{:?}", r.body_str(), r.headers))
            .collect();
        for id in ["evt-hostile", "evt-huge", "evt-plain"] {
            assert!(all.contains(id), "{service:?} never carried {id}");
        }
        // Secrets stay out of the request line.
        for r in &accepted {
            assert!(!r.path.contains(TELEGRAM_CHAT) && !r.path.contains(PAGERDUTY_KEY));
        }
        match service {
            Service::Discord => {
                for r in &accepted {
                    assert_eq!(r.json()["allowed_mentions"], json!({"parse": []}));
                }
                assert!(!all.contains("<@123>") && !all.contains("[x](https"));
            }
            Service::Telegram => assert!(!all.contains("<b>x</b>") && !all.contains("<a href")),
            Service::GoogleChat => assert!(!all.contains("<users/all>")),
            Service::PagerDuty => {
                let actions: Vec<String> = accepted
                    .iter()
                    .map(|r| format!("{} {}", r.json()["event_action"], r.json()["dedup_key"]))
                    .collect();
                assert_eq!(
                    actions,
                    [
                        r#""trigger" "vast:machine:4242""#,
                        r#""trigger" "evt-huge""#,
                        r#""resolve" "vast:machine:4242""#
                    ],
                    "one alert per event, the recovery resolves the offline alert"
                );
            }
            Service::Teams | Service::Ntfy => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_services_own_429_is_waited_out() {
    for service in ALL {
        let chat = FakeChat::start(service);
        chat.script(vec![Script::RateLimited(2)]);
        let h = relay_to(&chat).await;
        assert_eq!(deliver(&h.url, "evt-429", "low_credit").await, 204);
        let stats = wait_stats(&h.relay, |s| s.delivered == 1).await;
        assert_eq!(stats.delivered, 1, "{service:?}: {stats:?}");
        let seen = chat.seen();
        assert_eq!(seen.len(), 2, "{service:?}: one 429, then the message");
        assert_eq!((seen[0].status, seen[1].status / 100), (429, 2));
        let waited = seen[1].at - seen[0].at;
        assert!(
            waited >= Duration::from_millis(1_900),
            "{service:?} was asked again after {waited:?}, not the 2 s it said"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_dead_letters_for_that_destination_only() {
    for service in ALL {
        let chat = FakeChat::start(service);
        chat.script(vec![Script::Gone]);
        let slack = FakeSlack::start();
        let (chat_url, slack_url) = (chat.url(), slack.url());
        let f = format(service);
        let h = start(&slack_url, |o| {
            o.destinations = vec![
                Destination::new(
                    "machine_*",
                    Some(glob::Pattern::new("machine_*").unwrap()),
                    Some(Secret::new(&chat_url)),
                    f,
                ),
                Destination::new(
                    "default",
                    None,
                    Some(Secret::new(&slack_url)),
                    Format::Blocks,
                ),
            ];
        })
        .await;
        assert_eq!(deliver(&h.url, "evt-gone", "machine_offline").await, 204);
        let stats = wait_stats(&h.relay, |s| s.dead == 1).await;
        assert_eq!(stats.dead, 1, "{service:?}: {stats:?}");
        for i in 0..3 {
            assert_eq!(
                deliver(&h.url, &format!("evt-slack-{i}"), "low_credit").await,
                204
            );
        }
        let stats = wait_stats(&h.relay, |s| s.delivered == 3).await;
        assert_eq!(
            (stats.delivered, stats.dead, stats.pending),
            (3, 1, 0),
            "{service:?}"
        );
        let dead = h
            .relay
            .spool
            .list(vslack::relay::spool::DEAD, 10)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event.event_id, "evt-gone");
        let err = dead[0].last_error.clone().unwrap_or_default();
        assert!(
            err.contains(&chat.seen()[0].status.to_string()),
            "{service:?}: {err}"
        );
        assert!(
            !err.contains(PAGERDUTY_KEY) && !err.contains("tok"),
            "{err}"
        );
        // The dead destination was asked once; Slack carried every other event.
        assert_eq!(chat.seen().len(), 1, "{service:?}");
        let started = Instant::now();
        let delivered = slack.wait_for_delivered(1, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(delivered
            .iter()
            .all(|m| !m.to_string().contains("evt-gone")));
    }
}
