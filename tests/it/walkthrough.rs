//! The one-command walkthrough: `up` with a stand-in tunnel against the Vast.ai and Slack
//! stand-ins (Vast.ai's test endpoint really signs and POSTs to the relay). The harness here
//! (the stand-in tunnel, `Running`, `setup_env`) is shared with `walkthrough_setup` (`setup`,
//! `send`) and `walkthrough_doctor`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{Env, API_KEY};
use crate::support::fake_slack::FakeSlack;
use crate::support::fake_vast::FakeVast;

/// A stand-in tunnel: prints a URL the way tmole does, records its pid, stays running (or
/// exits after `live` seconds). Odd runs print 127.0.0.1, even runs localhost, so a restart
/// yields a new URL.
pub(crate) fn tunnel_script(env: &Env, live: Option<u32>) -> String {
    let path = env.dir.path().join("tunnel.sh");
    let runs = env.dir.path().join("tunnel.runs");
    let pid = env.dir.path().join("tunnel.pid");
    let tail = match live {
        Some(s) => format!("sleep {s}\necho 'tunnel-log: connection to edge lost' >&2\nexit 1\n"),
        None => "exec sleep 300\n".into(),
    };
    let script = format!(
        "#!/bin/sh\necho $$ > {pid}\necho x >> {runs}\nif [ $(wc -l < {runs}) -eq 2 ]; then host=localhost; else host=127.0.0.1; fi\necho \"http://$host:$1 is forwarding to localhost:$1\"\n{tail}",
        pid = pid.display(),
        runs = runs.display()
    );
    std::fs::write(&path, script).unwrap();
    format!("sh {} {{port}}", path.display())
}

pub(crate) struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    /// Whether a line (already seen, or arriving within `timeout`) contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_line(|l| l.contains(needle), timeout)
    }

    pub fn wait_for_line(&mut self, hit: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let start = Instant::now();
        if self.seen.iter().any(|l| hit(l)) {
            return true;
        }
        while let Some(left) = timeout.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = hit(&l);
                    self.seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }
}

pub(crate) fn spawn(env: &Env, args: &[&str]) -> Running {
    let mut child = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
    }
    Running {
        child,
        lines,
        seen: Vec::new(),
    }
}

pub(crate) fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub(crate) fn setup_env(vast: &FakeVast, slack: &FakeSlack) -> Env {
    let mut env = Env::with_vast(&vast.url());
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env
}

/// `vslack up` with the stand-in tunnel (which stays running) on a free port, plus `extra`,
/// once it says it is ready; the webhook secrets it got are registered for the leak check.
pub(crate) fn up_until_ready(env: &Env, vast: &FakeVast, extra: &[&str]) -> Running {
    let cmd = tunnel_script(env, None);
    let mut args = vec!["up", "--tunnel-cmd", &cmd, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut up = spawn(env, &args);
    assert!(
        up.wait_for("ready", Duration::from_secs(30)),
        "up never became ready: {:#?}",
        up.seen
    );
    for w in vast.webhooks() {
        env.secret(w["webhook_secret"].as_str().unwrap());
    }
    up
}

/// The pid the stand-in tunnel recorded.
pub(crate) fn tunnel_pid(env: &Env) -> i32 {
    std::fs::read_to_string(env.dir.path().join("tunnel.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn up_points_the_webhook_at_the_tunnel_and_delivers_the_test_event() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    let mut up = up_until_ready(&env, &vast, &["--pace", "10ms", "--cleanup"]);
    // The webhook was created pointing at the tunnel URL + path.
    let hooks = vast.webhooks();
    assert_eq!(hooks.len(), 1);
    let url = hooks[0]["webhook_url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    // Vast.ai's signed test delivery was accepted and reached Slack.
    assert_eq!(vast.deliveries(), vec![Ok(204)]);
    assert!(slack
        .delivered()
        .iter()
        .any(|m| m.to_string().contains("webhook_test")));
    assert!(
        up.seen.iter().any(|l| l.contains("all links work")),
        "{:#?}",
        up.seen
    );
    // Events keep flowing, one line each; a Vast.ai retry is reported as a duplicate.
    let d = vast.deliver_event(1, "instance_stopped", Some("evt-up-flow"), 1);
    assert_eq!(d.outcome, Ok(204));
    vast.deliver_event(1, "instance_stopped", Some("evt-up-flow"), 2);
    assert!(
        up.wait_for(
            "duplicate instance_stopped evt-up-flow",
            Duration::from_secs(10)
        ),
        "{:#?}",
        up.seen
    );
    assert!(
        up.wait_for(
            "delivered instance_stopped evt-up-flow",
            Duration::from_secs(10)
        ),
        "{:#?}",
        up.seen
    );
    // One line for the event and one for its redelivery: nothing more.
    std::thread::sleep(Duration::from_millis(300));
    up.wait_for("never printed", Duration::from_millis(100));
    let about: Vec<&String> = up
        .seen
        .iter()
        .filter(|l| l.contains("evt-up-flow"))
        .collect();
    assert_eq!(about.len(), 2, "{about:#?}");
    let pid = tunnel_pid(&env);
    assert!(alive(pid));
    // Ctrl-C: tunnel stopped, webhook deleted (--cleanup), exit 0.
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status:?} {:#?}", up.seen);
    assert!(!alive(pid), "the tunnel process outlived `vslack up`");
    assert!(
        vast.webhooks().is_empty(),
        "--cleanup deletes the webhook it created"
    );
    // `up`'s own last line is "HH:MM:SS stopped" (not a line about an instance_stopped event).
    assert!(
        up.wait_for_line(
            |l| l.split_once(' ').is_some_and(|(_, rest)| rest == "stopped"),
            Duration::from_secs(2)
        ),
        "{:#?}",
        up.seen
    );
    for l in &up.seen {
        for s in env.secrets.lock().unwrap().iter() {
            assert!(!l.contains(s.as_str()), "secret in output: {l}");
        }
    }
}

#[test]
fn up_checks_how_vast_reaches_the_relay_before_starting_anything() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let mut env = setup_env(&vast, &slack);
    // A PATH without any tunnel program on it.
    let empty = env.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    env.set("PATH", &empty.display().to_string());
    for (args, code, needle) in [
        (
            &["--tunnel", "tmole"][..],
            6,
            "`tmole` was not found on PATH: install Tunnelmole with `npm install -g tunnelmole`",
        ),
        (
            &["--public-url", "http://relay.example.com"],
            2,
            "--public-url must be https://",
        ),
    ] {
        let out = env.run(&[&["up", "--listen", "127.0.0.1:0"][..], args].concat());
        assert_eq!(out.code, code, "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {out:?}");
        assert!(
            !out.stdout.contains("listening on") && !out.stderr.contains("listening on"),
            "nothing started: {out:?}"
        );
    }
    assert!(vast.requests().is_empty(), "nothing was asked of Vast.ai");
}

#[test]
fn a_second_ctrl_c_cuts_a_stuck_cleanup_short_and_says_what_is_left() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    let mut up = up_until_ready(&env, &vast, &["--no-test", "--cleanup"]);
    let pid = tunnel_pid(&env);
    // Vast.ai stops answering, so --cleanup's DELETE hangs after the first Ctrl-C.
    vast.stall_method("DELETE");
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    while vast.api_requests_matching("DELETE", "/api/v0/webhooks/") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cleanup never sent its DELETE: {:#?}",
            up.seen
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the tunnel is stopped before the cleanup");
    unsafe { libc::kill(up.child.id() as i32, libc::SIGINT) };
    let status = up.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{:#?}", up.seen);
    assert!(
        up.wait_for("vslack webhook delete 1", Duration::from_secs(5)),
        "the message names what is left to undo: {:#?}",
        up.seen
    );
    assert_eq!(
        vast.webhooks().len(),
        1,
        "the stalled DELETE never completed"
    );
}

#[test]
fn a_dying_tunnel_is_restarted_and_the_webhook_re_pointed_then_up_gives_up_clearly() {
    let vast = FakeVast::start(API_KEY);
    let slack = FakeSlack::start();
    let env = setup_env(&vast, &slack);
    let cmd = tunnel_script(&env, Some(1));
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
        up.wait_for("re-pointed", Duration::from_secs(30)),
        "{:#?}",
        up.seen
    );
    let puts: Vec<String> = vast
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        puts.iter().any(|b| b.contains("http://localhost:")),
        "re-pointed at the new URL: {puts:?}"
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = up.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "up did not give up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    up.wait_for("keeps exiting", Duration::from_secs(2));
    assert_eq!(status.code(), Some(1), "{:#?}", up.seen);
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("the tunnel keeps exiting")),
        "{:#?}",
        up.seen
    );
    // Why it died is shown (its last output), and the counter never passes its limit.
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("    tunnel-log: connection to edge lost")),
        "{:#?}",
        up.seen
    );
    assert!(
        up.seen.iter().any(|l| l.contains("(3/3)")),
        "{:#?}",
        up.seen
    );
    assert!(
        !up.seen.iter().any(|l| l.contains("(4/3)")),
        "{:#?}",
        up.seen
    );
}

/// One named check from `doctor --json`.
pub(crate) fn doctor_check(env: &Env, extra: &[&str], name: &str) -> serde_json::Value {
    let out = env.run(&[&["doctor", "--json"][..], extra].concat());
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {out:?}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {v}"))
        .clone()
}
