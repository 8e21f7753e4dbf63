//! Defects found by trying vslack as a new user, each pinned.

use crate::common::{Env, API_KEY};
use crate::relay::SECRET;
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

#[test]
fn slack_set_finds_a_relay_listening_anywhere_on_this_store() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    // Listening on a free port, not where `serve` would listen by default.
    let s = crate::relay_process::serve(&env, &[]);
    env.unset("SLACK_WEBHOOK_URL");
    env.secret("T1/B1/elsewhere");
    let out = env.run_in(
        &["--json", "slack", "set"],
        Some("https://hooks.slack.com/services/T1/B1/elsewhere\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!("pid {}", s.child.id()))
            && out.stderr.contains("reads the config every 2 s"),
        "{out:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["relay_running"], true);
    let out = env.run(&["status"]);
    assert!(out.stdout.contains("uses this store"), "{out:?}");
}

#[test]
fn setup_checks_its_flags_before_asking_vast() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    let slack = env.slack_url_file("https://hooks.slack.com/services/A/B/SETUPSECRET");
    for url in [
        "https://hooks.slack.com/services/A/B/SETUPSECRET",
        "https://10.0.0.1/",
    ] {
        let out = env.run(&[
            "setup",
            "--no-input",
            "--slack-url-file",
            &slack,
            "--event",
            "low_credit",
            "--public-url",
            url,
        ]);
        assert_eq!(out.code, 2, "{out:?}");
    }
    let cut = env.dir.path().join("cut.txt");
    std::fs::write(&cut, "https://hooks.slack.com/services/A/B\n").unwrap();
    let out = env.setup_tunnel(cut.to_str().unwrap(), &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(vast.requests().is_empty(), "Vast.ai was asked first");
    assert!(!env.config_text().contains("api_key"), "nothing was saved");
}

#[test]
fn json_usage_errors_name_the_argument_and_exit_codes_follow_the_table() {
    let env = Env::new();
    let out = env.run(&["--json", "webhook", "create"]);
    assert_eq!(out.code, 2, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--url"),
        "{v}"
    );
    // No Slack URL saved: a local setup problem, 6.
    let out = env.run(&["--json", "slack", "test"]);
    assert_eq!(out.code, 6, "{out:?}");
}

#[test]
fn serve_args_take_shell_quoting_into_the_unit() {
    let env = Env::new();
    let dir = env.dir.path().join("a b");
    std::fs::create_dir_all(&dir).unwrap();
    let arg = format!("--slack-url-file '{}/slack url.txt'", dir.display());
    let out = env.run(&["service", "install", "--print", "--serve-args", &arg]);
    assert_eq!(out.code, 0, "{out:?}");
    let exec = out
        .stdout
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(
        exec.ends_with(&format!(
            "serve --slack-url-file '{}/slack url.txt'",
            dir.display()
        )),
        "{exec}"
    );
}
