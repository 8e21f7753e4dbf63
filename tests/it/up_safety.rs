//! `up` never leaves a webhook pointed at something that is not this relay, and its tunnel
//! gets none of vslack's secrets.

use std::time::Duration;

use crate::common::{Env, API_KEY};
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;
use crate::walkthrough::{setup_env, spawn, tunnel_script, up_until_ready};

/// A script that prints `line` (the way a tunnel prints its URL), then stays up or exits.
fn script(env: &Env, name: &str, line: &str, stay: bool) -> String {
    let path = env.dir.path().join(name);
    let tail = if stay { "exec sleep 300" } else { "exit 0" };
    std::fs::write(&path, format!("#!/bin/sh\necho \"{line}\"\n{tail}\n")).unwrap();
    format!("sh {} {{port}}", path.display())
}

fn existing_webhook(env: &Env) {
    let out = env.run(&[
        "webhook",
        "create",
        "--url",
        "https://relay.example.com/",
        "--event",
        "low_credit",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_program_that_prints_a_link_and_exits_is_not_taken_for_a_tunnel() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    let cmd = script(
        &env,
        "signup.sh",
        "Sign up first: see https://dashboard.example/get-started",
        false,
    );
    let mut up = spawn(
        &env,
        &["up", "--tunnel-cmd", &cmd, "--listen", "127.0.0.1:0"],
    );
    let status = up.child.wait().unwrap();
    up.wait_for("and then exited", Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{:#?}", up.seen);
    assert!(
        up.seen.iter().any(|l| l.contains("and then exited")),
        "{:#?}",
        up.seen
    );
    assert!(
        vast.webhooks().is_empty(),
        "no webhook points at the dashboard link: {:?}",
        vast.webhooks()
    );
}

#[test]
fn a_failed_start_restores_the_previous_url_without_cleanup() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    existing_webhook(&env);
    for w in vast.webhooks() {
        env.secret(w["webhook_secret"].as_str().unwrap());
    }
    // A "tunnel" whose URL does not reach the relay: Vast.ai's test event fails.
    let cmd = script(&env, "wrong.sh", "http://127.0.0.1:1 is forwarding", true);
    let mut up = spawn(
        &env,
        &["up", "--tunnel-cmd", &cmd, "--listen", "127.0.0.1:0"],
    );
    let status = up.child.wait().unwrap();
    up.wait_for("points at", Duration::from_secs(5));
    assert_ne!(status.code(), Some(0), "{:#?}", up.seen);
    let hooks = vast.webhooks();
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["webhook_url"], "https://relay.example.com/",
        "{:#?}",
        up.seen
    );
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("points at https://relay.example.com/ again")),
        "{:#?}",
        up.seen
    );
}

#[test]
fn a_stop_without_cleanup_says_where_the_webhook_still_points() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    let mut up = up_until_ready(&env, &vast, &["--no-test"]);
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    assert!(up.child.wait().unwrap().success(), "{:#?}", up.seen);
    assert!(
        up.wait_for("still points at http://127.0.0.1:", Duration::from_secs(5)),
        "{:#?}",
        up.seen
    );
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("vslack webhook update 1 --url")),
        "{:#?}",
        up.seen
    );
    assert_eq!(vast.webhooks().len(), 1, "without --cleanup it stays");
}

#[test]
fn the_tunnel_gets_none_of_vslacks_secrets() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = setup_env(&vast, &slack);
    env.set("VAST_WEBHOOK_SECRET", "env-secret-0123456789");
    env.set("VSLACK_FUTURE_TOKEN", "postgres://u:pw@127.0.0.1/x");
    env.set("UNRELATED_SETTING", "kept");
    let dump = env.dir.path().join("tunnel.env");
    let inner = tunnel_script(&env, None);
    let path = env.dir.path().join("envdump.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nenv > {}\nexec {}\n",
            dump.display(),
            inner.replace("{port}", "\"$1\"")
        ),
    )
    .unwrap();
    let cmd = format!("sh {} {{port}}", path.display());
    let mut up = spawn(
        &env,
        &[
            "up",
            "--tunnel-cmd",
            &cmd,
            "--listen",
            "127.0.0.1:0",
            "--no-test",
        ],
    );
    assert!(
        up.wait_for("ready", Duration::from_secs(30)),
        "{:#?}",
        up.seen
    );
    let seen = std::fs::read_to_string(&dump).unwrap();
    for name in [
        "VAST_API_KEY=",
        "VAST_WEBHOOK_SECRET=",
        "SLACK_WEBHOOK_URL=",
        "VSLACK_FUTURE_TOKEN=",
        "VSLACK_CONFIG_DIR=",
    ] {
        assert!(!seen.contains(name), "the tunnel saw {name}: {seen}");
    }
    assert!(seen.contains("UNRELATED_SETTING=kept"), "{seen}");
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    up.child.wait().unwrap();
}
