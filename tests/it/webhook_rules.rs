//! Vast.ai's rules for webhook URLs and names, checked before Vast.ai is asked; an event's
//! context taken from the webhook that signed it; the default after a delete.

use std::time::Duration;

use crate::common::{Env, API_KEY};
use crate::relay_process::serve;
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

#[test]
fn urls_vast_ai_would_refuse_and_chat_urls_are_refused_without_echoing_them() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    env.secret("T000/B000/slacksecret");
    for (url, needle) in [
        (
            "https://hooks.slack.com/services/T000/B000/slacksecret",
            "Vast.ai must deliver to vslack, which posts to Slack",
        ),
        (
            "https://discord.com/api/webhooks/1/T000/B000/slacksecret",
            "posts to Discord",
        ),
        (
            "https://localhost:8443/",
            "Vast.ai delivers only to public https URLs",
        ),
        ("https://relay.local/", "a local network name"),
        ("https://192.168.1.20/", "a private network address"),
        ("https://100.64.0.9/", "carrier-grade NAT"),
        ("https://[fe80::1]/", "link-local"),
        ("relay.example.com/vast", "it needs a scheme and a host"),
    ] {
        let out = env.run(&["webhook", "create", "--url", url, "--event", "low_credit"]);
        assert_eq!(out.code, 2, "{url}: {out:?}");
        assert!(out.stderr.contains(needle), "{url}: {out:?}");
        assert!(!out.stderr.contains("relative URL"), "{out:?}");
    }
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--name",
        "evil\nINFO forged",
        "--event",
        "low_credit",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("control character"), "{out:?}");
    assert!(vast.requests().is_empty(), "nothing reached Vast.ai");
}

#[test]
fn mixing_contexts_warns_and_one_event_is_singular() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--all-events",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("one webhook per context"), "{out:?}");
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/b",
        "--event",
        "low_credit",
    ]);
    assert!(out.stderr.contains("(1 event)"), "{out:?}");
    assert!(!out.stderr.contains("per context"), "{out:?}");
}

#[test]
fn deleting_the_default_makes_the_only_other_one_default() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    for url in ["https://a.example.com/", "https://b.example.com/"] {
        let out = env.run(&["webhook", "create", "--url", url, "--event", "low_credit"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    for w in vast.webhooks() {
        env.secret(w["webhook_secret"].as_str().unwrap());
    }
    let out = env.run(&["webhook", "delete", "1", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("Webhook 2 is now the default"),
        "{out:?}"
    );
    let out = env.run(&["webhook", "show"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2 (default)"), "{out:?}");
    // Nothing starred, no legend.
    let out = env.run(&["webhook", "delete", "2", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    vast.insert_webhook(
        "console-made",
        "https://c.example.com/",
        &["client:low_credit"],
    );
    let out = env.run(&["webhook", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("= default"), "{out:?}");
}

#[test]
fn a_host_event_links_to_the_host_pages_because_its_webhook_is_a_host_one() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = Env::with_vast(&vast.url());
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--event",
        "host:payout_sent",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let s = serve(&env, &[]);
    // Point the stand-in's webhook at the relay and let Vast.ai deliver.
    let id = vast.webhooks()[0]["id"].as_i64().unwrap();
    let out = env.run(&["webhook", "update", &id.to_string(), "--url", &s.url]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        vast.deliver_event(id, "payout_sent", Some("evt-payout"), 1)
            .outcome,
        Ok(204)
    );
    let msgs = slack.wait_for_delivered(1, Duration::from_secs(10));
    let text = msgs[0].to_string();
    assert!(
        text.contains("/host/machines/|Open host machines"),
        "{text}"
    );
    assert!(text.contains("type=host:payout_sent"), "{text}");
}

#[test]
fn slack_set_refuses_a_cut_url_and_says_whether_a_running_relay_uses_the_new_one() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.secret("T1/B1/cutshort");
    let out = env.run_in(
        &["slack", "set"],
        Some("https://hooks.slack.com/services/T1/B1\n"),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("copy it again from Slack"), "{out:?}");
    assert!(!env.config_text().contains("hooks.slack.com"));
    let out = env.run_in(
        &["slack", "set"],
        Some("https://hooks.slack.com/services/T1/B1/ok1\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("No relay is running here"), "{out:?}");
    // With a relay running where `serve` listens, whose URL comes from SLACK_WEBHOOK_URL: it
    // read the config, and the message says the variable overrides it.
    env.set("VAST_WEBHOOK_SECRET", "relay-secret-0123");
    env.secret("relay-secret-0123");
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.set("PORT", &port.to_string());
    let _s = crate::relay_process::serve_at(&env, &format!("127.0.0.1:{port}"));
    let out = env.run_in(
        &["slack", "set"],
        Some("https://hooks.slack.com/services/T1/B1/ok2\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "The relay running on 127.0.0.1:{port} read the config"
        )) && out.stderr.contains("set by SLACK_WEBHOOK_URL"),
        "{out:?}"
    );
}

#[test]
fn wording_typos_get_a_suggestion_and_status_after_a_tunnel_setup_points_at_up() {
    let vast = FakeVast::start(API_KEY);
    let env = Env::with_vast(&vast.url());
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--event",
        "low_credt",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("did you mean client:low_credit?"),
        "{out:?}"
    );
    let slack = env.slack_url_file("https://hooks.slack.com/services/T/B/statusword");
    let out = env.setup_tunnel(&slack, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = env.run(&["status"]);
    assert!(
        out.stdout.contains("none yet: `vslack up` creates it"),
        "{out:?}"
    );
}

#[test]
fn a_config_rewrite_that_keeps_the_secrets_is_not_logged_as_a_reload() {
    let slack = FakeSlack::start();
    let env = Env::new();
    let text = format!(
        "[slack]\nurl = \"{}\"\n\n[webhooks.1]\nsecret = \"same-secret-1\"\n",
        slack.url()
    );
    vslack::secret::write_private(&env.config_file(), text.as_bytes()).unwrap();
    env.secret("same-secret-1");
    let s = serve(&env, &[]);
    vslack::secret::write_private(
        &env.config_file(),
        format!("default_webhook = 1\n{text}").as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2600));
    assert!(
        !s.logged("reloaded signing secrets"),
        "{:#?}",
        s.logs.lock().unwrap()
    );
    vslack::secret::write_private(
        &env.config_file(),
        text.replace("same-secret-1", "other-secret-2").as_bytes(),
    )
    .unwrap();
    env.secret("other-secret-2");
    s.wait_log("reloaded signing secrets");
}
