//! `vslack doctor` reads by default, fails on dead letters naming the destination's answer,
//! and only gives fixes that can work.

use std::time::{Duration, Instant};

use crate::common::API_KEY;
use crate::support::fake_slack::{Answer, FakeSlack};
use crate::support::fake_vast::FakeVast;
use crate::walkthrough::{doctor_check, setup_env};

#[test]
fn doctor_sends_nothing_unless_asked_and_fails_on_dead_letters() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(404, "no_service")]);
    let mut env = setup_env(&vast, &slack);
    env.set("VAST_WEBHOOK_SECRET", "doctor-secret-2");
    env.secret("doctor-secret-2");
    let relay = crate::relay_process::serve(&env, &[]);
    let (id, real) = vast.insert_webhook("w", &relay.url, &["client:low_credit"]);
    env.secret(&real);
    vslack::secret::write_private(
        &env.config_file(),
        format!("default_webhook = {id}\n\n[webhooks.{id}]\nsecret = \"{real}\"\n").as_bytes(),
    )
    .unwrap();
    let out = env.run(&["send", "--to", &relay.url, "--type", "low_credit"]);
    assert_eq!(out.code, 0, "{out:?}");
    let start = Instant::now();
    let queue = loop {
        let q = doctor_check(&env, &[], "queue");
        if q["level"] == "fail" || start.elapsed() > Duration::from_secs(10) {
            break q;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(queue["level"], "fail", "{queue}");
    assert!(
        queue["detail"].as_str().unwrap().contains("404 no_service"),
        "{queue}"
    );
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(!out.stdout.contains("see the error"), "{out:?}");
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("queue"))
            .count(),
        1,
        "one verdict on the queue: {out:?}"
    );
    // Read-only: no test event was fired and nothing more was posted to Slack.
    assert_eq!(
        vast.api_requests_matching("POST", &format!("/api/v0/webhooks/{id}/test")),
        0
    );
    assert_eq!(slack.requests().len(), 1, "only the event itself");
    // --send does test.
    let out = env.run(&["doctor", "--send"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        vast.api_requests_matching("POST", &format!("/api/v0/webhooks/{id}/test")),
        1
    );
}

#[test]
fn a_config_that_does_not_parse_gets_no_login_advice() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = setup_env(&vast, &slack);
    env.unset("VAST_API_KEY");
    vslack::secret::write_private(&env.config_file(), b"api_key = [oops\n").unwrap();
    let out = env.run(&["doctor"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("FAIL  config"), "{out:?}");
    assert!(!out.stdout.contains("vslack login"), "{out:?}");
    assert!(out.stdout.contains("fix the config file first"), "{out:?}");
}

/// With no webhook to follow (no API key here), doctor still says whether `vslack serve`
/// would have a signing secret: it would refuse to start without one.
#[test]
fn a_missing_signing_secret_fails_without_an_account() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = setup_env(&vast, &slack);
    env.unset("VAST_API_KEY");
    env.unset("VAST_WEBHOOK_SECRET");
    let secret = doctor_check(&env, &[], "secret");
    assert_eq!(secret["level"], "fail", "{secret}");
    assert!(
        secret["fix"]
            .as_str()
            .unwrap()
            .contains("VAST_WEBHOOK_SECRET"),
        "{secret}"
    );
    env.set("VAST_WEBHOOK_SECRET", "doctor-secret-3");
    env.secret("doctor-secret-3");
    let secret = doctor_check(&env, &[], "secret");
    assert_eq!(secret["level"], "ok", "{secret}");
    assert_eq!(secret["detail"], "from VAST_WEBHOOK_SECRET", "{secret}");
}
