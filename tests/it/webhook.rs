//! `vslack webhook ...` through the real binary against the Vast.ai stand-in (`login`, API
//! key lookup and exit codes: `webhook_keys`). Every run is checked for leaked secrets (see
//! `common`).

use serde_json::Value;

use crate::common::{mode, Env, API_KEY};
use crate::support::fake_vast::FakeVast;

pub(crate) fn vast() -> (FakeVast, Env) {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    (vast, env)
}

pub(crate) fn register_secrets(vast: &FakeVast, env: &Env) {
    for w in vast.webhooks() {
        if let Some(s) = w["webhook_secret"].as_str() {
            env.secret(s);
        }
    }
}

pub(crate) fn json(out: &crate::common::Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[test]
fn create_stores_the_secret_privately_and_never_prints_it() {
    let (vast, env) = vast();
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/hook",
        "--name",
        "alerts",
        "--event",
        "client:low_credit",
        "--event",
        "instance_stopped",
    ]);
    register_secrets(&vast, &env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "1", "prints the id");
    let hooks = vast.webhooks();
    assert_eq!(hooks.len(), 1);
    let secret = hooks[0]["webhook_secret"].as_str().unwrap().to_owned();
    // What was sent: bearer auth, user agent, trailing slash, the expanded event key.
    let reqs = vast.requests();
    let post = reqs.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.path, "/api/v0/webhooks/");
    assert_eq!(post.headers["authorization"], format!("Bearer {API_KEY}"));
    assert!(post.headers["user-agent"].starts_with("vslack/"));
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(
        body["event_types"],
        serde_json::json!(["client:low_credit", "client:instance_stopped"])
    );
    assert_eq!(body["name"], "alerts");
    // Stored, private, default.
    assert_eq!(mode(&env.config_dir()), 0o700);
    assert_eq!(mode(&env.config_file()), 0o600);
    let cfg = env.config_text();
    assert!(
        cfg.contains(&secret) && cfg.contains("default_webhook = 1"),
        "{cfg}"
    );
    // list --json says the secret is here and which is default, without the secret.
    let out = env.run(&["webhook", "list", "--json"]);
    let v = json(&out);
    assert_eq!(v["webhooks"][0]["id"], 1);
    assert_eq!(v["webhooks"][0]["secret_held"], true);
    assert_eq!(v["webhooks"][0]["default"], true);
    let out = env.run(&["webhook", "list"]);
    assert!(
        out.stdout.contains("1*") && out.stdout.contains("yes"),
        "{out:?}"
    );
    let out = env.run(&["webhook", "show", "--json"]);
    assert_eq!(json(&out)["webhook_url"], "https://relay.example.com/hook");
}

#[test]
fn print_secret_prints_exactly_the_secret() {
    let (vast, env) = vast();
    let out = env.run_raw(
        &[
            "webhook",
            "create",
            "--url",
            "https://r.example.com/",
            "--event",
            "client:outbid",
            "--print-secret",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let secret = vast.webhooks()[0]["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(out.stdout, format!("{secret}\n"));
    assert!(!out.stderr.contains(&secret));
}

#[test]
fn create_checks_inputs_before_calling_vast() {
    let (vast, env) = vast();
    let long_name = "n".repeat(121);
    let long_url = format!("https://x.example.com/{}", "a".repeat(2048));
    for (args, needle) in [
        (
            vec!["--url", "http://example.com/", "--event", "client:outbid"],
            "https://",
        ),
        (
            vec![
                "--url",
                "https://x.example.com/ a",
                "--event",
                "client:outbid",
            ],
            "give the URL alone",
        ),
        (
            vec!["--url", "not-a-url", "--event", "client:outbid"],
            "--url is not usable: it needs a scheme and a host",
        ),
        (
            vec!["--url", long_url.as_str(), "--event", "client:outbid"],
            "2048",
        ),
        (
            vec![
                "--url",
                "https://x.example.com/",
                "--name",
                long_name.as_str(),
                "--event",
                "client:outbid",
            ],
            "120",
        ),
        (
            vec!["--url", "https://x.example.com/", "--event", "client:nope"],
            "vslack webhook types",
        ),
        (vec!["--url", "https://x.example.com/"], "--event"),
    ] {
        let mut a = vec!["webhook", "create"];
        a.extend(args.iter());
        let out = env.run(&a);
        assert_eq!(out.code, 2, "{a:?}: {out:?}");
        assert!(
            out.stderr.contains(needle),
            "{a:?} should mention {needle}: {out:?}"
        );
    }
    assert_eq!(
        vast.count("POST", "/api/v0/webhooks/"),
        0,
        "nothing invalid reached Vast.ai"
    );
    // With no events and no prompt, Vast.ai is not asked anything first.
    let asked = vast.api_requests_matching("GET", "/api/v0/");
    let out = env.run(&["webhook", "create", "--url", "https://x.example.com/"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(vast.api_requests_matching("GET", "/api/v0/"), asked);
    // A bad URL is reported as such even before an API key is set up.
    let mut keyless = crate::common::Env::new();
    keyless.set("VAST_URL", &vast.url());
    for cmd in [&["create", "--event", "low_credit"][..], &["update", "1"]] {
        let out =
            keyless.run(&[&["webhook"][..], cmd, &["--url", "ftp://x.example.com/"]].concat());
        assert_eq!(out.code, 2, "{cmd:?}: {out:?}");
        assert!(out.stderr.contains("--url must be https://"), "{out:?}");
    }
    // Loopback http is allowed, with a warning.
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "http://127.0.0.1:8787/",
        "--event",
        "low_credit",
    ]);
    register_secrets(&vast, &env);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("warning: http://127.0.0.1:8787/ is plain http on this machine"),
        "{out:?}"
    );
}

#[test]
fn the_fifth_webhook_gets_a_clear_message() {
    let (vast, env) = vast();
    for i in 0..4 {
        vast.insert_webhook(
            &format!("w{i}"),
            "https://a.example.com/",
            &["client:low_credit"],
        );
    }
    register_secrets(&vast, &env);
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://b.example.com/",
        "--event",
        "client:outbid",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("4 webhooks") && out.stderr.contains("vslack webhook delete"),
        "{out:?}"
    );
    assert_eq!(vast.count("POST", "/api/v0/webhooks/"), 0);
}

#[test]
fn update_rotate_default_test_and_delete() {
    let (vast, env) = vast();
    let (id, _) = vast.insert_webhook(
        "w",
        "https://a.example.com/",
        &["client:low_credit", "client:outbid"],
    );
    register_secrets(&vast, &env);
    // No default yet: a clear usage error.
    let out = env.run(&["webhook", "show"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("vslack webhook default"));
    assert_eq!(env.run(&["webhook", "default", &id.to_string()]).code, 0);
    // Partial update: add and remove events.
    let out = env.run(&[
        "webhook",
        "update",
        "--add-event",
        "client:instance_started",
        "--remove-event",
        "low_credit",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let put = vast
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PUT")
        .unwrap();
    let body: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"event_types": ["client:outbid", "client:instance_started"]})
    );
    assert_eq!(
        json(&out)["event_types"],
        serde_json::json!(["client:outbid", "client:instance_started"])
    );
    let out = env.run(&["webhook", "update", "--name", "renamed"]);
    assert_eq!(out.code, 0);
    let put = vast
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&put.body).unwrap(),
        serde_json::json!({"name": "renamed"})
    );
    // Rotate: this machine held no secret, so the first rotation fetches one; the second keeps
    // the first as the previous secret, with the time it was replaced.
    assert_eq!(env.run(&["webhook", "rotate-secret"]).code, 0);
    register_secrets(&vast, &env);
    let first_secret = vast.webhooks()[0]["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(env.config_text().contains(&first_secret));
    let out = env.run(&["webhook", "rotate-secret"]);
    register_secrets(&vast, &env);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("previous secret for 24 h"), "{out:?}");
    let new_secret = vast.webhooks()[0]["webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_secret, first_secret);
    let cfg: toml::Value = toml::from_str(&env.config_text()).unwrap();
    assert_eq!(
        cfg["webhooks"]["1"]["secret"].as_str(),
        Some(new_secret.as_str())
    );
    assert_eq!(
        cfg["webhooks"]["1"]["previous_secret"].as_str(),
        Some(first_secret.as_str())
    );
    assert!(cfg["webhooks"]["1"]["rotated_at"].as_integer().is_some());
    // Test: nothing listens at the URL, so Vast.ai reports a failed delivery.
    let out = env.run(&["webhook", "test"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("could not deliver the test event"),
        "{out:?}"
    );
    // Delete needs --yes off a terminal, then forgets the secret.
    let out = env.run(&["webhook", "delete"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--yes"));
    let out = env.run(&["webhook", "delete", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(vast.webhooks().is_empty());
    assert!(!env.config_text().contains(&new_secret));
    assert!(!env.config_text().contains("default_webhook"));
}

#[test]
fn a_create_is_sent_exactly_once_even_when_it_fails() {
    let (vast, env) = vast();
    // Pre-flight calls (list, catalogue) succeed; then the create answers 500.
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 0);
    // Two GETs happen before the POST: let them through, fail the POST.
    vast.fail_method_next(
        "POST",
        500,
        r#"{"success":false,"msg":"internal error"}"#,
        1,
    );
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://x.example.com/",
        "--event",
        "client:outbid",
    ]);
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(vast.count("POST", "/api/v0/webhooks/"), 1);
    assert!(vast.webhooks().is_empty());
}
