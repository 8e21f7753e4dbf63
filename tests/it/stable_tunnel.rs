//! `up` with a tunnel that keeps its URL (a named cloudflared tunnel): the webhook gets the
//! fixed hostname, and a second run does not re-point it.

use std::time::Duration;

use crate::common::API_KEY;
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;
use crate::walkthrough::{setup_env, spawn};

#[test]
fn a_named_cloudflared_tunnel_keeps_the_webhooks_url_across_runs() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = setup_env(&vast, &slack);
    // A stand-in `cloudflared`: records its arguments, says it connected (as `cloudflared
    // tunnel run` does, printing no URL), stays up.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args_log = env.dir.path().join("cloudflared.args");
    let fake = bin.join("cloudflared");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho '2026-12-02T00:00:00Z INF Registered tunnel connection connIndex=0 location=ams01' >&2\nexec sleep 300\n",
            args_log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    env.set("PATH", &path);
    for run in 0..2 {
        let mut up = spawn(
            &env,
            &[
                "up",
                "--tunnel",
                "cloudflared",
                "--tunnel-name",
                "vslack-relay",
                "--domain",
                "relay.example.com",
                "--no-test",
                "--listen",
                "127.0.0.1:0",
            ],
        );
        assert!(
            up.wait_for("ready", Duration::from_secs(30)),
            "run {run}: {:#?}",
            up.seen
        );
        let hooks = vast.webhooks();
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert_eq!(hooks[0]["webhook_url"], "https://relay.example.com/");
        env.secret(hooks[0]["webhook_secret"].as_str().unwrap());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
        assert!(up.child.wait().unwrap().success(), "{:#?}", up.seen);
    }
    assert_eq!(
        vast.count("PUT", "/api/v0/webhooks/1/"),
        0,
        "the same URL both times: the webhook was never re-pointed"
    );
    let ran = std::fs::read_to_string(&args_log).unwrap();
    assert_eq!(ran.lines().count(), 2);
    for line in ran.lines() {
        assert!(
            line.starts_with("tunnel --no-autoupdate run --url http://127.0.0.1:")
                && line.ends_with(" vslack-relay"),
            "{line}"
        );
    }
}

#[test]
fn a_fixed_url_needs_a_tunnel_that_can_keep_one() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    for (args, says) in [
        (
            &["--tunnel", "cloudflared", "--tunnel-name", "x"][..],
            "--tunnel-name needs --domain HOST",
        ),
        (
            &["--tunnel", "tmole", "--domain", "relay.example.com"][..],
            "cannot keep the same URL",
        ),
    ] {
        let out = env.run(&[&["up", "--listen", "127.0.0.1:0"][..], args].concat());
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(says), "{args:?}: {out:?}");
    }
    assert!(vast.webhooks().is_empty());
}
