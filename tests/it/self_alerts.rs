//! The watchdog's self-alerts, through the real `vslack serve` process: a failing destination
//! (alerting on the fallback), a backlog that does not move, a burst of refused deliveries.
//! Each alerts once and clears once.

use std::time::Duration;

use serde_json::Value;

use crate::common::Env;
use crate::never_silent::{messages, wait_message};
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::{post_blocking, serve_on};
use crate::support::fake_slack::{Answer, FakeSlack};

#[test]
fn an_archived_channel_alerts_on_the_fallback_once_and_recovers_once() {
    let slack = FakeSlack::start();
    let fallback = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    for (args, url) in [
        (&["slack", "set"][..], slack.url()),
        (&["slack", "set", "--fallback"][..], fallback.url()),
    ] {
        let out = env.run_in(args, Some(&format!("{url}\n")));
        assert_eq!(out.code, 0, "{out:?}");
    }
    slack.script(vec![Answer::Status(410, "channel_is_archived")]);
    let relay = serve_on(&env, "127.0.0.1:0", &[]);
    let deliver = |id: &str| {
        let body = event_body(id, "instance_stopped");
        let ts = now();
        post_blocking(&relay.url, &body, ts, &signature(SECRET, ts, &body))
    };
    assert_eq!(deliver("evt-archived"), 204);
    let alert = wait_message(&fallback, "vslack-alert:destination:");
    assert!(alert.contains("channel_is_archived"), "{alert}");
    assert!(alert.contains("unarchive"), "{alert}");
    // Unarchived: the next event goes through, and the fallback hears so.
    assert_eq!(deliver("evt-after"), 204);
    wait_message(&fallback, "vslack-resolved:destination:");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(messages(&fallback, "vslack-alert:").len(), 1);
    assert_eq!(messages(&fallback, "vslack-resolved:").len(), 1);
    assert_eq!(
        fallback.delivered().len(),
        2,
        "the fallback takes no events"
    );
    assert!(
        messages(&slack, "vslack-").is_empty(),
        "nothing about it went to the broken destination"
    );
    assert_eq!(messages(&slack, "evt-after").len(), 1);
}

#[test]
fn an_old_backlog_alerts_once_and_recovers_once() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    // One message every 5 s: the second and third events wait over the 2 s threshold. Ages
    // are whole seconds checked once a second, so the alert is queued 2-3 s after they are
    // stored, well before the next send.
    let relay = serve_on(
        &env,
        "127.0.0.1:0",
        &["--pace", "5s", "--alert-backlog-age", "2s"],
    );
    for i in 0..3 {
        let body = event_body(&format!("evt-b{i}"), "instance_stopped");
        let ts = now();
        assert_eq!(
            post_blocking(&relay.url, &body, ts, &signature(SECRET, ts, &body)),
            204
        );
        // (The first goes out alone; events stored together would share one digest.)
        std::thread::sleep(Duration::from_millis(50));
    }
    let alert = wait_message(&slack, "vslack-alert:backlog:");
    assert!(alert.contains("has waited"), "{alert}");
    // The alert went ahead of the waiting events.
    let order: Vec<String> = slack.delivered().iter().map(Value::to_string).collect();
    assert!(
        order[0].contains("evt-b0") && order[1].contains("vslack-alert"),
        "{order:#?}"
    );
    wait_message(&slack, "vslack-resolved:backlog:");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(messages(&slack, "vslack-alert:").len(), 1);
    assert_eq!(messages(&slack, "vslack-resolved:").len(), 1);
    for i in 0..3 {
        assert_eq!(messages(&slack, &format!("evt-b{i}")).len(), 1);
    }
}

#[test]
fn a_burst_of_bad_signatures_alerts_once_and_a_good_delivery_clears_it() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    let relay = serve_on(&env, "127.0.0.1:0", &["--alert-window", "2s"]);
    let deliver = |id: &str, secret: &str| {
        let body = event_body(id, "instance_stopped");
        let ts = now();
        post_blocking(&relay.url, &body, ts, &signature(secret, ts, &body))
    };
    for i in 0..5 {
        assert_eq!(
            deliver(&format!("evt-bad{i}"), "a-secret-rotated-elsewhere"),
            401
        );
    }
    let alert = wait_message(&slack, "vslack-alert:bad_signature:");
    assert!(
        alert.contains("deliveries in the last 2s were refused"),
        "{alert}"
    );
    assert_eq!(deliver("evt-good", SECRET), 204);
    wait_message(&slack, "vslack-resolved:bad_signature:");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(messages(&slack, "vslack-alert:").len(), 1);
    assert_eq!(messages(&slack, "vslack-resolved:").len(), 1);
}
