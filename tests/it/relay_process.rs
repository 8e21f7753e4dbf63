//! `vslack serve` as a real process: start-up checks, dry runs, a taken port, log lines events
//! cannot forge, and the connection cap within the open-file limit. The harness here (`serve`,
//! `Serving`) is shared with `relay_process_store` (crash safety, the store under the relay)
//! and `relay_process_secrets` (secret rotation, the dead-letter queue).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::support::fake_slack::FakeSlack;

pub struct Serving {
    pub child: Child,
    pub url: String,
    /// Everything the relay logged so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serving {
    /// Whether any log line so far contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Wait (at most 10 s) for a log line containing `needle`; panics with the log otherwise.
    pub fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.logged(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {needle:?}: {:#?}",
                self.logs.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Assert that no log line holds any of `needles` (secrets, the Slack URL's path).
    pub fn assert_logs_free_of(&self, needles: &[&str]) {
        let logs = self.logs.lock().unwrap();
        assert!(!logs.is_empty());
        for line in logs.iter() {
            for n in needles {
                assert!(!line.contains(n), "{n:?} in the relay's log: {line}");
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `vslack serve` on a free port and wait for its "listening on" line.
pub fn serve(env: &Env, extra: &[&str]) -> Serving {
    serve_on(env, "127.0.0.1:0", extra)
}

/// Start `vslack serve` listening on `addr`.
pub fn serve_at(env: &Env, addr: &str) -> Serving {
    serve_on(env, addr, &[])
}

pub fn serve_on(env: &Env, addr: &str, extra: &[&str]) -> Serving {
    let mut args = vec!["serve", "--listen", addr];
    if !extra.contains(&"--pace") {
        args.extend_from_slice(&["--pace", "10ms"]);
    }
    if !extra.contains(&"--retry-initial") {
        args.extend_from_slice(&["--retry-initial", "50ms"]);
    }
    args.extend_from_slice(extra);
    let mut child = env
        .command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let _ = tx.send(rest.to_owned());
            }
            keep.lock().unwrap().push(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve did not start");
    Serving { child, url, logs }
}

pub fn post_blocking(url: &str, body: &[u8], ts: i64, sig: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(crate::relay::post(
        url,
        body,
        Some(ts),
        Some(sig.to_owned()),
    ))
    .0
}

pub fn wait_delivered(slack: &FakeSlack, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    while slack.delivered().len() < n && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    slack.delivered()
}

#[test]
fn serve_refuses_to_start_without_a_secret_or_a_slack_url() {
    let env = Env::new();
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr.contains("no webhook signing secret")
            && out.stderr.contains("VAST_WEBHOOK_SECRET"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("no Slack URL"),
        "both missing things at once: {out:?}"
    );
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr.contains("no Slack URL") && out.stderr.contains("vslack slack set"),
        "{out:?}"
    );
}

/// A destination URL's warning (here: plain http to a loopback stand-in) is logged once at
/// the start, not again when the config watcher takes its first look.
#[test]
fn a_url_warning_is_logged_once() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let s = serve(&env, &[]);
    // The watcher's first look runs as soon as the relay listens; then stop cleanly.
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill has no preconditions; the child is ours and not yet reaped.
    unsafe { libc::kill(s.child.id() as libc::pid_t, libc::SIGTERM) };
    s.wait_log("shutting down");
    let logs = s.logs.lock().unwrap();
    let warned = logs.iter().filter(|l| l.contains("fine for testing only"));
    assert_eq!(warned.count(), 1, "{logs:#?}");
}

#[test]
fn dry_run_prints_payloads_logs_json_and_stops_cleanly_on_sigterm() {
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let mut child = env
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dry-run",
            "--log-format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let _ = tx.send(rest.to_owned());
            }
            if line.contains("printed the Slack payload (dry run") {
                let _ = tx.send("delivered".to_owned());
            }
            lines.push(line);
        }
        lines
    });
    let url = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let body = event_body("evt-dry", "outbid");
    let ts = now();
    assert_eq!(
        post_blocking(&url, &body, ts, &signature(SECRET, ts, &body)),
        204
    );
    // Stop only once the forwarder has printed the payload.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok("delivered")
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let payload: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the Slack payload as JSON on stdout");
    assert!(payload.to_string().contains("evt-dry"));
    let logs = logs.join().unwrap();
    let stored = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "stored")
        .expect("a JSON log line for the stored event");
    assert_eq!(stored["fields"]["event_id"], "evt-dry");
    assert!(
        logs.iter().any(|l| l.contains("shutting down")),
        "{logs:#?}"
    );
    // The dry run kept its own store: the real one was never touched.
    assert!(!env.data_dir().join("spool.sqlite3").exists());
}

#[test]
fn a_taken_port_names_who_holds_it_and_localhost_is_accepted() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let first = serve(&env, &[]);
    let addr = first
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let pid = first.child.id();
    let mut other = Env::new();
    other.vars = env.vars.clone();
    other.set(
        "VSLACK_DATA_DIR",
        &other.dir.path().join("data2").display().to_string(),
    );
    other.secret(SECRET);
    let out = other.run(&["serve", "--listen", &addr]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr
            .contains("another vslack relay is already listening")
            && out.stderr.contains(&format!("pid {pid}")),
        "{out:?}"
    );
    // Not a relay: said so.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let out = other.run(&["serve", "--listen", &busy_addr]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("in use by another program"), "{out:?}");
    // A host name is fine.
    let s = serve_at(&other, "localhost:0");
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
}

#[test]
fn event_fields_cannot_forge_or_colour_a_log_line() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let s = serve(&env, &[]);
    let body = serde_json::json!({
        "event_id": "real\nINFO delivered to Slack event_ids=FORGED",
        "notif_type": "low_credit\u{1b}[31m",
        "subject": "s",
        "message": "m",
    })
    .to_string()
    .into_bytes();
    let ts = now();
    assert_eq!(
        post_blocking(&s.url, &body, ts, &signature(SECRET, ts, &body)),
        204
    );
    wait_delivered(&slack, 1);
    s.wait_log("delivered to Slack");
    let logs = s.logs.lock().unwrap().clone();
    for line in &logs {
        assert!(!line.starts_with("INFO delivered"), "forged line: {line:?}");
        assert!(!line.contains('\u{1b}'), "raw escape code: {line:?}");
    }
    assert!(logs.iter().any(|l| l.contains("real\\nINFO")), "{logs:#?}");
}

#[test]
fn max_connections_is_kept_within_the_open_file_limit() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    // The relay inherits a small limit (soft 256, hard 300) and is asked for 100,000.
    let mut cmd = env.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "100000",
    ]);
    // SAFETY: setrlimit in the child before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 300,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = loop {
        match lines.next() {
            Some(Ok(l)) => {
                let hit = l.contains("does not fit the open-file limit") && l.contains("using=236");
                seen.push(l);
                if hit {
                    break true;
                }
                if seen.last().unwrap().starts_with("listening on") {
                    break false;
                }
            }
            _ => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "soft limit raised to the hard 300, cap 300 - 64: {seen:#?}"
    );
}
