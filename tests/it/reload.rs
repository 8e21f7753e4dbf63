//! What a running relay picks up without a restart: a new Slack URL (queued events follow it),
//! and a secret written a moment before its first delivery.

use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::{post_blocking, serve_at};
use crate::support::fake_slack::FakeSlack;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn deliver(url: &str, id: &str, secret: &str) -> u16 {
    let body = event_body(id, "instance_stopped");
    let ts = now();
    post_blocking(url, &body, ts, &signature(secret, ts, &body))
}

#[test]
fn a_slack_url_saved_while_serving_is_used_for_queued_events_too() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    // The saved URL points nowhere (port 1): events queue and are retried.
    let out = env.run_in(
        &["slack", "set"],
        Some("http://127.0.0.1:1/services/T/B/old\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let port = free_port();
    env.set("PORT", &port.to_string());
    let relay = serve_at(&env, &format!("127.0.0.1:{port}"));
    for i in 0..3 {
        assert_eq!(deliver(&relay.url, &format!("evt-q{i}"), SECRET), 204);
    }
    relay.wait_log("will retry");
    // A new URL, saved while the relay runs: it says the relay picked it up...
    let out = env.run_in(
        &["--json", "slack", "set"],
        Some(&format!("{}\n", slack.url())),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "The relay running on 127.0.0.1:{port} picked up the new Slack URL"
        )),
        "{out:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["relay_picked_up"], true, "{v}");
    // ...and the events queued for the old one go to the new one.
    let start = Instant::now();
    loop {
        let text: String = slack.delivered().iter().map(|m| m.to_string()).collect();
        if (0..3).all(|i| text.contains(&format!("evt-q{i}"))) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "queued events did not follow the new URL: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(relay.logged("reloaded destinations"));
}

#[test]
fn a_secret_written_while_serving_is_accepted_on_its_very_first_delivery() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let port = free_port();
    let relay = serve_at(&env, &format!("127.0.0.1:{port}"));
    // Wait out one reload round, so the next one is up to 2 s away.
    std::thread::sleep(Duration::from_millis(200));
    // A webhook created on this machine (as `webhook create` or `setup` would save it), and
    // its first delivery at once, before the relay's next look at the config.
    let new_secret = "fresh-webhook-secret-0123456789";
    env.secret(new_secret);
    let path = env.config_file();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!(
        "\n[webhooks.77]\nsecret = \"{new_secret}\"\nevents = [\"client:instance_stopped\"]\n"
    ));
    let tmp = path.with_extension("tmp");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    // Without the re-read this is a 401 (the poll is up to 2 s away), which Vast.ai takes as
    // final.
    assert_eq!(deliver(&relay.url, "evt-first", new_secret), 204);
    // A signature nothing matches is still refused.
    assert_eq!(
        deliver(&relay.url, "evt-forged", "not-a-secret-at-all"),
        401
    );
    slack.wait_for_delivered(1, Duration::from_secs(10));
    assert!(slack.delivered()[0].to_string().contains("evt-first"));
}
