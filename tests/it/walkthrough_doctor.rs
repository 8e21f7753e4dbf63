//! `vslack doctor` against the Vast.ai and Slack stand-ins: a wrong secret, a missing
//! webhook, a stale URL, clock skew, and failing Slack deliveries.

use std::time::{Duration, Instant};

use crate::common::API_KEY;
use crate::support::fake_slack::{Answer, FakeSlack};
use crate::support::fake_vast::FakeVast;

use crate::walkthrough::*;

#[test]
fn doctor_names_a_wrong_secret_a_missing_webhook_and_a_stale_url() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    // This machine holds a secret that is not the webhook's.
    vslack::secret::write_private(
        &env.config_file(),
        b"default_webhook = 1\n\n[webhooks.1]\nsecret = \"not-the-real-one\"\n",
    )
    .unwrap();
    env.secret("not-the-real-one");
    let relay = crate::relay_process::serve(&env, &[]);
    let url = relay.url.clone();
    let (id, real) = vast.insert_webhook("w", &url, &["client:low_credit"]);
    env.secret(&real);
    assert_eq!(id, 1);
    let out = env.run(&["doctor", "--send"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("ok    api key"), "{out:?}");
    assert!(out.stdout.contains("ok    relay"), "{out:?}");
    assert!(
        out.stdout.contains("FAIL  signature") && out.stdout.contains("rotate-secret"),
        "{out:?}"
    );
    // A stale URL: nothing listens there any more.
    drop(relay);
    let out = env.run(&["doctor", "--json"]);
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let relay_check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "relay")
        .unwrap()
        .clone();
    assert_eq!(relay_check["level"], "fail");
    assert!(relay_check["fix"].as_str().unwrap().contains("vslack up"));
    // The default webhook no longer exists at Vast.ai.
    vslack::secret::write_private(&env.config_file(), b"default_webhook = 7\n").unwrap();
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("FAIL  webhook") && out.stdout.contains("does not exist"),
        "{out:?}"
    );
}

#[test]
fn doctor_reports_clock_skew_against_vast() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    vast.set_clock_skew(600);
    let clock = doctor_check(&env, &[], "clock");
    assert_eq!(clock["level"], "fail", "{clock}");
    assert!(
        clock["detail"]
            .as_str()
            .unwrap()
            .contains("behind Vast.ai's"),
        "{clock}"
    );
    vast.set_clock_skew(0);
    let clock = doctor_check(&env, &[], "clock");
    assert_eq!(clock["level"], "ok", "{clock}");
    assert!(
        clock["fix"].is_null(),
        "an ok check has a null fix: {clock}"
    );
}

#[test]
fn doctor_warns_while_slack_deliveries_fail() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(500, "rollup_error"); 20]);
    let mut env = setup_env(&vast, &slack);
    env.set("VAST_WEBHOOK_SECRET", "doctor-secret");
    env.secret("doctor-secret");
    let relay = crate::relay_process::serve(&env, &["--retry-initial", "60s"]);
    let out = env.run(&["send", "--to", &relay.url, "--type", "low_credit"]);
    assert_eq!(out.code, 0, "{out:?}");
    // The queue is young, but its head's last try failed: that is worth a warning now.
    let start = Instant::now();
    let queue = loop {
        let queue = doctor_check(&env, &[], "queue");
        if queue["level"] != "ok" || start.elapsed() > Duration::from_secs(10) {
            break queue;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(queue["level"], "warn", "{queue}");
    assert!(
        queue["detail"].as_str().unwrap().contains("HTTP 500"),
        "{queue}"
    );
    assert!(queue["fix"].as_str().unwrap().contains("vslack slack test"));
}
