//! The walkthrough's setup steps through the real binary: `vslack setup` with and without
//! prompts, and `vslack send`'s variants against a running relay.

use std::time::{Duration, Instant};

use crate::common::{Env, API_KEY};
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

#[test]
fn setup_without_prompts_creates_then_reuses_the_webhook() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    let slack_arg = env.slack_url_file("https://hooks.slack.com/services/T1/B1/setupsecret");
    // A missing value is an error naming its flag.
    let out = env.run(&[
        "setup",
        "--no-input",
        "--slack-url-file",
        &slack_arg,
        "--tunnel",
        "tmole",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--event"), "{out:?}");
    // An unknown tunnel is refused before anything is asked of Vast.ai or saved.
    let asked = vast.api_requests_matching("GET", "/api/v0/");
    let out = env.run(&[
        "setup",
        "--no-input",
        "--event",
        "low_credit",
        "--slack-url-file",
        &slack_arg,
        "--tunnel",
        "bogus",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unknown tunnel"), "{out:?}");
    assert!(!env.config_text().contains("setupsecret"), "nothing saved");
    assert_eq!(vast.api_requests_matching("GET", "/api/v0/"), asked);
    // Tunnel mode: settings saved; the webhook waits for `up` (no placeholder URL at Vast.ai).
    let out = env.setup_tunnel(&slack_arg, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("vslack up"), "{out:?}");
    assert_eq!(vast.count("POST", "/api/v0/webhooks/"), 0);
    let cfg: toml::Value = toml::from_str(&env.config_text()).unwrap();
    assert_eq!(cfg["relay"]["tunnel"].as_str(), Some("tmole"));
    assert_eq!(cfg["relay"]["heartbeat"].as_str(), Some("6h"));
    assert_eq!(
        cfg["events"].as_array().unwrap()[0].as_str(),
        Some("client:low_credit")
    );
    assert!(cfg["slack"]["url"].as_str().is_some());
    // A deployed relay: the webhook is created at its public URL and its secret stored.
    let out = env.run(&[
        "setup",
        "--no-input",
        "--public-url",
        "https://relay.example.com",
    ]);
    for w in vast.webhooks() {
        env.secret(w["webhook_secret"].as_str().unwrap());
    }
    assert_eq!(out.code, 0, "{out:?}");
    let hooks = vast.webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["webhook_url"], "https://relay.example.com/");
    assert_eq!(
        hooks[0]["event_types"],
        serde_json::json!(["client:low_credit"])
    );
    let cfg: toml::Value = toml::from_str(&env.config_text()).unwrap();
    assert_eq!(cfg["default_webhook"].as_integer(), Some(1));
    assert!(cfg["webhooks"]["1"]["secret"].as_str().is_some());
    // Re-running reuses the webhook and changes only what changed.
    let out = env.run(&[
        "setup",
        "--no-input",
        "--event",
        "low_credit",
        "--event",
        "outbid",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        vast.count("POST", "/api/v0/webhooks/"),
        1,
        "no second webhook"
    );
    assert_eq!(
        vast.webhooks()[0]["event_types"],
        serde_json::json!(["client:low_credit", "client:outbid"])
    );
}

#[test]
fn send_variants_get_the_expected_answers() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", "send-secret");
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret("send-secret");
    let relay = crate::relay_process::serve(&env, &[]);
    let url = relay.url.clone();
    let out = env.run(&["send", "--to", &url, "--type", "low_credit", "--duplicate"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.matches("-> 204").count(), 2, "{out:?}");
    assert!(
        out.stdout.contains("-> 204 accepted (stored)")
            && out
                .stdout
                .contains("-> 204 accepted (duplicate, not queued again)"),
        "{out:?}"
    );
    for (flag, reason) in [
        ("--bad-signature", "bad_signature"),
        ("--stale", "stale_timestamp"),
    ] {
        let out = env.run(&["send", "--to", &url, flag]);
        assert_eq!(out.code, 0, "{flag}: {out:?}");
        assert!(out.stdout.contains(&format!("-> 401 {reason}")), "{out:?}");
    }
    // Bad input is refused before anything is sent.
    for (args, needle) in [
        (
            &["--to", "ftp://x"][..],
            "--to must be an http:// or https:// URL",
        ),
        (&["--to", &url, "--count", "0"], "'--count <COUNT>'"),
    ] {
        let out = env.run(&[&["send"][..], args].concat());
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:?}");
    }
    let out = env.run(&["send", "--to", &url, "--all-types", "--json"]);
    assert_eq!(out.code, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["sent"].as_array().unwrap().len(), 14);
    // One low_credit message despite the duplicate, plus the 14 others (possibly digested).
    let start = Instant::now();
    let count_ids = || {
        let all = slack
            .delivered()
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        v["sent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| all.contains(s["event_id"].as_str().unwrap()))
            .count()
    };
    while count_ids() < 14 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_ids(), 14);
    // A wrong secret makes `send` fail: the relay's 401 was not expected.
    let f = env.dir.path().join("wrong.txt");
    std::fs::write(&f, "wrong").unwrap();
    let out = env.run(&[
        "send",
        "--to",
        &url,
        "--secret-file",
        &f.display().to_string(),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    drop(relay);
}

#[test]
fn setup_interactively_through_a_terminal() {
    let vast = FakeVast::start(API_KEY);
    let mut env = Env::with_vast(&vast.url());
    env.set("TERM", "xterm");
    let mut cmd = env.command(&["setup"]);
    cmd.env("TERM", "xterm");
    let mut p = rexpect::session::spawn_command(cmd, Some(20_000)).expect("spawn in a pty");
    p.exp_string("API key: accepted").unwrap();
    p.exp_string("Slack incoming webhook URL").unwrap();
    p.send_line("https://hooks.slack.com/services/T9/B9/ptysecret")
        .unwrap();
    p.exp_string("Slack URL: saved").unwrap();
    p.exp_string("[Y/n]").unwrap();
    // dialoguer switches the terminal to raw mode just after drawing; a key sent earlier
    // would wait in the line buffer.
    let settle = || std::thread::sleep(Duration::from_millis(300));
    settle();
    p.send("n\r").unwrap();
    p.flush().unwrap();
    p.exp_string("Events to send to Slack").unwrap();
    p.exp_string("host:maintenance_scheduled").unwrap(); // the whole list is drawn
    settle();
    p.send("\r").unwrap();
    p.flush().unwrap(); // keep the pre-selected walkthrough events
    p.exp_string("How will Vast.ai reach the relay").unwrap();
    p.exp_string("deployed relay").unwrap();
    settle();
    p.send("\r").unwrap();
    p.flush().unwrap(); // tmole
    p.exp_string("Check the whole path every 6h").unwrap();
    settle();
    p.send("\r").unwrap();
    p.flush().unwrap(); // yes: the default
    p.exp_string("vslack up").unwrap();
    p.exp_eof().unwrap();
    let cfg: toml::Value = toml::from_str(&env.config_text()).unwrap();
    assert_eq!(
        cfg["slack"]["url"].as_str(),
        Some("https://hooks.slack.com/services/T9/B9/ptysecret")
    );
    assert_eq!(cfg["relay"]["tunnel"].as_str(), Some("tmole"));
    let events: Vec<&str> = cfg["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(events, vslack::vast::types::WALKTHROUGH_EVENTS);
}
