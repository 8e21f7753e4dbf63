//! `vslack serve` as a real process: webhook secret rotation (the grace period, a new secret
//! picked up while serving) and the dead-letter queue.

use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::support::fake_slack::FakeSlack;

use crate::relay_process::*;

#[test]
fn rotated_out_secret_is_accepted_only_during_the_grace_period() {
    let slack = FakeSlack::start();
    let env = Env::new();
    let t = now();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let config = format!(
        "[slack]\nurl = \"{}\"\n\n[webhooks.1]\nsecret = \"new-1\"\nprevious_secret = \"old-1\"\nrotated_at = {}\n\n[webhooks.2]\nsecret = \"new-2\"\nprevious_secret = \"old-2\"\nrotated_at = {}\n",
        slack.url(),
        t - 3600,
        t - 25 * 3600
    );
    vslack::secret::write_private(&env.config_file(), config.as_bytes()).unwrap();
    for s in ["new-1", "old-1", "new-2", "old-2"] {
        env.secret(s);
    }
    let s = serve(&env, &[]);
    let send = |secret: &str, id: &str| {
        let body = event_body(id, "low_credit");
        let ts = now();
        post_blocking(&s.url, &body, ts, &signature(secret, ts, &body))
    };
    assert_eq!(send("new-1", "a"), 204);
    assert_eq!(
        send("old-1", "b"),
        204,
        "rotated an hour ago: still in the 24 h grace period"
    );
    assert_eq!(send("new-2", "c"), 204);
    assert_eq!(
        send("old-2", "d"),
        401,
        "rotated 25 h ago: grace period over"
    );
    let start = Instant::now();
    let carried = |id: &str| {
        slack.delivered().iter().any(|m| {
            m["text"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("event_id={id}"))
        })
    };
    while !(carried("a") && carried("b") && carried("c"))
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(carried("a") && carried("b") && carried("c"));
    assert!(!carried("d"));
}

#[test]
fn queue_shows_dead_letters_and_retries_them() {
    let slack = FakeSlack::start();
    slack.script(vec![crate::support::fake_slack::Answer::Status(
        404,
        "channel_not_found",
    )]);
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    // At -vv, the most a user can ask for, the log still holds no secret and no Slack path.
    let s = serve(&env, &["-vv"]);
    let body = event_body("evt-q", "low_credit");
    let ts = now();
    assert_eq!(
        post_blocking(&s.url, &body, ts, &signature(SECRET, ts, &body)),
        204
    );
    let start = Instant::now();
    let mut listed = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(10) {
        let out = env.run(&["queue", "--json"]);
        assert_eq!(out.code, 0, "{out:?}");
        listed = serde_json::from_str(&out.stdout).unwrap();
        if listed["dead"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed["dead"][0]["event"]["event_id"], "evt-q", "{listed}");
    assert!(listed["dead"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("channel_not_found"));
    let human = env.run(&["queue"]);
    assert!(
        human.stdout.contains("1 dead-lettered") && human.stdout.contains("evt-q"),
        "{human:?}"
    );
    // The dead letter opens an incident. Its alert has no other destination, so it goes to this
    // one anyway (which answers again).
    let start = Instant::now();
    let v = loop {
        let status = env.run(&["status", "--json"]);
        assert_eq!(status.code, 0, "{status:?}");
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        if v["incidents"].as_array().is_some_and(|i| !i.is_empty()) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no incident: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["dead_letters"].as_i64(), Some(1), "{v}");
    let title = v["incidents"][0]["title"].as_str().unwrap();
    assert!(title.contains("destination default"), "{v}");
    assert!(
        v["incidents"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{v}"
    );
    assert_eq!(
        v["slack_host"], "127.0.0.1",
        "what serve uses (SLACK_WEBHOOK_URL): {v}"
    );
    assert_eq!(v["secrets"], serde_json::json!(["VAST_WEBHOOK_SECRET"]));
    // Naming an event that is not a dead letter is an error (exit 4), here and before the
    // relay ever ran.
    for args in [&["retry", "999"][..], &["drop", "999", "--yes"]] {
        let out = env.run(&[&["queue"][..], args].concat());
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        let out = Env::new().run(&[&["queue"][..], args].concat());
        assert_eq!(out.code, 4, "{args:?} without a store: {out:?}");
        assert!(out.stderr.contains("no event store yet"), "{out:?}");
    }
    // Named twice, it is still one event, retried once.
    let seq = listed["dead"][0]["seq"].to_string();
    let out = env.run(&["queue", "retry", &seq, &seq]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("Requeued 1"), "{out:?}");
    // The event, and the alert (which says what happened) with its recovery.
    let got = wait_delivered(&slack, 3);
    for needle in [
        "evt-q",
        "vslack-alert:destination:",
        "vslack-resolved:destination:",
    ] {
        let n = got
            .iter()
            .filter(|m| m.to_string().contains(needle))
            .count();
        assert_eq!(n, 1, "{needle}: {got:?}");
    }
    let path = slack.url().split_once("/services/").unwrap().1.to_owned();
    s.assert_logs_free_of(&[SECRET, &path]);
    assert!(
        s.logs.lock().unwrap().iter().any(|l| l.contains("evt-q")),
        "outcome lines name the event"
    );
    let start = Instant::now();
    let mut v = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(5) {
        v = serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
        if v["delivered"].as_i64() == Some(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (
            v["dead_letters"].as_i64(),
            v["delivered"].as_i64(),
            v["incidents"].as_array().map(Vec::len)
        ),
        (Some(0), Some(3), Some(0)),
        "{v}"
    );
    assert!(v["last_delivery_at"].as_i64().is_some());
}

#[test]
fn a_secret_rotated_while_serving_is_picked_up_without_a_restart() {
    let slack = FakeSlack::start();
    let env = Env::new();
    let write = |secret: &str, previous: Option<&str>| {
        let mut text = format!(
            "[slack]\nurl = \"{}\"\n\n[webhooks.1]\nsecret = \"{secret}\"\n",
            slack.url()
        );
        if let Some(p) = previous {
            text.push_str(&format!(
                "previous_secret = \"{p}\"\nrotated_at = {}\n",
                now()
            ));
        }
        vslack::secret::write_private(&env.config_file(), text.as_bytes()).unwrap();
    };
    write("first", None);
    env.secret("first");
    env.secret("second");
    let s = serve(&env, &[]);
    let send = |secret: &str, id: &str| {
        let body = event_body(id, "low_credit");
        let ts = now();
        post_blocking(&s.url, &body, ts, &signature(secret, ts, &body))
    };
    assert_eq!(send("second", "before"), 401);
    write("second", Some("first"));
    let start = Instant::now();
    let mut status = 0;
    while start.elapsed() < Duration::from_secs(10) {
        status = send("second", &format!("after-{}", start.elapsed().as_millis()));
        if status == 204 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, 204, "the new secret was never accepted");
    assert_eq!(
        send("first", "old-still-ok"),
        204,
        "previous secret within its grace period"
    );
}
