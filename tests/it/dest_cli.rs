//! Destinations from the command line: `vslack dest add|list|remove|test`, `slack set
//! --format`, `serve --format` for a one-URL setup of any kind, and what `queue`, `status`,
//! `doctor` and `/metrics` say about each destination. URLs are secrets throughout.

use std::time::{Duration, Instant};

use crate::common::{mode, Env};
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::{post_blocking, serve, wait_delivered};
use crate::support::fake_chat::{FakeChat, Script, Service, PAGERDUTY_KEY};
use crate::support::fake_slack::FakeSlack;

fn deliver(url: &str, id: &str, kind: &str) -> u16 {
    let body = event_body(id, kind);
    let ts = now();
    post_blocking(url, &body, ts, &signature(SECRET, ts, &body))
}

#[test]
fn dest_add_list_test_remove_keep_the_url_secret() {
    let env = Env::new();
    let pager = FakeChat::start(Service::PagerDuty);
    env.secret(PAGERDUTY_KEY);
    let url = pager.url();
    // A name that is not one, and a URL whose kind cannot be told: refused, nothing saved.
    let bad = env.run(&["dest", "add", "no good"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let unknown = env.run_in(
        &["dest", "add", "phone"],
        Some("https://push.example.com/alerts\n"),
    );
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("--format KIND") && unknown.stderr.contains("pagerduty"),
        "{}",
        unknown.stderr
    );
    assert!(!unknown.stderr.contains("/alerts"), "{}", unknown.stderr);
    assert!(!env.config_file().exists());

    let add = env.run_in(
        &[
            "dest",
            "add",
            "pager",
            "--events",
            "machine_*",
            "--events",
            "billing_failed",
            "--json",
        ],
        Some(&format!("{url}\n")),
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    let v: serde_json::Value = serde_json::from_str(&add.stdout).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["host"].as_str()),
        (Some("pagerduty"), Some("127.0.0.1"))
    );
    assert_eq!(mode(&env.config_file()) & 0o777, 0o600);
    assert!(
        env.config_text().contains(PAGERDUTY_KEY),
        "saved in the private config"
    );
    let again = env.run_in(&["dest", "add", "pager"], Some(&format!("{url}\n")));
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);

    let list = env.run(&["dest", "list", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let d = &v["destinations"][0];
    assert_eq!(
        (d["name"].as_str(), d["role"].as_str()),
        (Some("pager"), Some("added"))
    );
    assert_eq!(d["events"], "machine_*, billing_failed");
    let human = env.run(&["dest", "list"]);
    assert!(human.stdout.contains("pager") && human.stdout.contains("pagerduty"));
    let shown = env.run(&["config", "show"]);
    assert!(shown.stdout.contains("(redacted)"), "{}", shown.stdout);

    let test = env.run(&["dest", "test", "pager"]);
    assert_eq!(test.code, 0, "{}", test.stderr);
    // An info alert, resolved at once: a test pages no one for long.
    let got = pager.accepted();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].json()["event_action"], "trigger");
    assert_eq!(got[0].json()["payload"]["severity"], "info");
    assert_eq!(got[1].json()["event_action"], "resolve");
    assert_eq!(got[1].json()["dedup_key"], got[0].json()["dedup_key"]);
    assert!(pager.invalid().is_empty(), "{:?}", pager.invalid());
    pager.script(vec![Script::Gone]);
    let refused = env.run(&["dest", "test", "pager"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("PagerDuty refused"),
        "{}",
        refused.stderr
    );

    assert_eq!(env.run(&["dest", "remove", "pager"]).code, 0);
    // A name that is not there is "not found" (4), whichever command names it.
    let gone = env.run(&["dest", "remove", "pager"]);
    assert_eq!(gone.code, 4, "{gone:?}");
    assert_eq!(env.run(&["dest", "test", "pager"]).code, 4);
    assert!(!env.config_text().contains(PAGERDUTY_KEY));
}

#[test]
fn a_one_url_setup_of_any_kind_needs_only_its_kind() {
    let mut env = Env::new();
    let ntfy = FakeChat::start(Service::Ntfy);
    // The URL alone does not say it is ntfy: `slack set` refuses it without --format.
    let refused = env.run_in(&["slack", "set"], Some(&format!("{}\n", ntfy.url())));
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("ntfy") && refused.stderr.contains("--format"),
        "{}",
        refused.stderr
    );
    // The walkthrough's one-URL setup: SLACK_WEBHOOK_URL and `serve --format ntfy`.
    env.set("SLACK_WEBHOOK_URL", &ntfy.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    let s = serve(&env, &["--format", "ntfy"]);
    assert_eq!(deliver(&s.url, "evt-ntfy", "machine_offline"), 204);
    let got = rt().block_on(ntfy.wait_accepted(1, Duration::from_secs(10)));
    assert_eq!(got.len(), 1, "{:?}", ntfy.seen());
    assert_eq!(got[0].header("priority"), Some("5"));
    assert!(got[0].body_str().contains("event_id=evt-ntfy"));
    s.assert_logs_free_of(&["/gpu-alerts"]);
    drop(s);
    // Saved with its kind, a relay needs no flag.
    let saved = env.run_in(
        &["slack", "set", "--format", "ntfy", "--json"],
        Some(&format!("{}\n", ntfy.url())),
    );
    assert_eq!(saved.code, 0, "{}", saved.stderr);
    let v: serde_json::Value = serde_json::from_str(&saved.stdout).unwrap();
    assert_eq!(v["kind"], "ntfy", "{}", saved.stdout);
    assert!(env.config_text().contains("kind = \"ntfy\""));
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn queue_status_doctor_and_metrics_name_each_destination() {
    let mut env = Env::new();
    let slack = FakeSlack::start();
    let pager = FakeChat::start(Service::PagerDuty);
    env.secret(PAGERDUTY_KEY);
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("VAST_URL", "http://127.0.0.1:1");
    assert_eq!(
        env.run_in(&["slack", "set"], Some(&format!("{}\n", slack.url())))
            .code,
        0
    );
    let add = env.run_in(
        &["dest", "add", "pager", "--events", "machine_*"],
        Some(&format!("{}\n", pager.url())),
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    pager.script(vec![Script::ServerError; 500]);
    let s = serve(&env, &[]);
    assert_eq!(deliver(&s.url, "evt-q1", "machine_offline"), 204);
    assert_eq!(wait_delivered(&slack, 1).len(), 1);
    // Slack has it; PagerDuty keeps failing: pending, and the queue says where.
    let start = Instant::now();
    let listed = loop {
        let out = env.run(&["queue", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let dests = v["pending"][0]["destinations"].clone();
        if dests[0]["state"] == "sent" || start.elapsed() > Duration::from_secs(10) {
            break dests;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        listed,
        serde_json::json!([{"name": "default", "state": "sent"}, {"name": "pager", "state": "waiting"}])
    );
    let human = env.run(&["queue"]);
    assert!(
        human.stdout.contains("default sent, pager waiting"),
        "{}",
        human.stdout
    );
    let metrics = rt().block_on(async {
        vslack::http::get(format!("{}metrics", s.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains(
            "vslack_destination_messages_total{destination=\"default\",kind=\"blocks\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "vslack_destination_failures_total{destination=\"pager\",kind=\"pagerduty\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    let status = env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains("destination   pager (pagerduty, 127.0.0.1): machine_*"),
        "{}",
        status.stdout
    );
    // doctor --send tests each destination and names the one that refuses.
    let doctor = env.run(&["doctor", "--send", "--json"]);
    assert_ne!(doctor.code, 0);
    let v: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap();
    let failed: Vec<String> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["level"] == "fail" && c["name"] == "destination")
        .map(|c| c["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert!(
        failed[0].starts_with("pager (pagerduty, 127.0.0.1)"),
        "{failed:?}"
    );
    // `send` says where the relay sends each type.
    let sent = env.run(&[
        "send",
        "--to",
        &s.url,
        "--type",
        "machine_offline",
        "--json",
    ]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let v: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    assert_eq!(
        v["destinations"]["machine_offline"],
        serde_json::json!(["default", "pager"])
    );
}

/// A URL pasted with something after it is refused, not saved as typed (it would fail only
/// when the relay first posts), and the refusal does not show it.
#[test]
fn a_url_with_a_word_after_it_is_refused_and_not_saved() {
    let env = Env::new();
    let pasted = "https://hooks.slack.com/services/T1/B1/PASTEDSECRET extra\n";
    for args in [&["slack", "set"][..], &["dest", "add", "ops"]] {
        let out = env.run_in(args, Some(pasted));
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains("give the URL alone"), "{out:?}");
        assert!(!out.stderr.contains("PASTEDSECRET"), "{out:?}");
    }
    assert!(!env.config_text().contains("PASTEDSECRET"));
}
