//! `vslack serve` as a real process: start-up checks, the walkthrough's variables, secret
//! rotation grace, and crash safety under SIGKILL.

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

#[test]
fn walkthrough_environment_variables_work_and_sigkill_loses_nothing() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    // First run: Slack unreachable (a closed port), so the event stays queued.
    // Port 1 is never handed out as an ephemeral port, so no other test's stand-in is there.
    env.set("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/T/B/dead");
    let mut first = serve(&env, &["--retry-initial", "60s"]);
    let body = event_body("evt-crash", "instance_offline");
    let ts = now();
    let sig = signature(SECRET, ts, &body);
    assert_eq!(post_blocking(&first.url, &body, ts, &sig), 204);
    // Killed right after acknowledging: no chance to clean up.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // The store and its WAL files are owner-only, like everything else vslack writes.
    let mut store_files = 0;
    for entry in std::fs::read_dir(env.data_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("spool.") {
            use std::os::unix::fs::PermissionsExt;
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
            store_files += 1;
        }
    }
    assert!(store_files >= 3, "the store, its WAL and its lock file");
    // A store an older version left readable by others is made owner-only at the next start.
    std::fs::set_permissions(
        env.data_dir().join("spool.sqlite3"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    // Second run, Slack reachable: the acknowledged event arrives exactly once.
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let second = serve(&env, &[]);
    let got = wait_delivered(&slack, 1);
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("evt-crash"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.data_dir().join("spool.sqlite3"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the loose store was tightened");
    // A Vast.ai retry of the same event after the restart is still recognised.
    let ts = now();
    assert_eq!(
        post_blocking(&second.url, &body, ts, &signature(SECRET, ts, &body)),
        204
    );
    // Recognised as already stored (the relay says so), and not posted again.
    let start = Instant::now();
    while !second
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("duplicate delivery, already stored") && l.contains("evt-crash"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the redelivery was not recognised: {:#?}",
            second.logs.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(slack.delivered().len(), 1);
}

#[test]
fn rotated_out_secret_is_accepted_only_during_the_grace_period() {
    let slack = FakeSlack::start();
    let env = Env::new();
    let t = now();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    let config = format!(
        "[slack]\nurl = \"{}\"\n\n[webhooks.1]\nsecret = \"new-1\"\nprevious_secret = \"old-1\"\nrotated_at = {}\n\n[webhooks.2]\nsecret = \"new-2\"\nprevious_secret = \"old-2\"\nrotated_at = {}\n",
        slack.url(),
        t - 3600,
        t - 25 * 3600
    );
    vslack::secret::write_private(&env.config_file(), config.as_bytes()).unwrap();
    for s in ["new-1", "old-1", "new-2", "old-2"] {
        env.secret(s);
    }
    let s = serve(&env, &[]);
    let send = |secret: &str, id: &str| {
        let body = event_body(id, "low_credit");
        let ts = now();
        post_blocking(&s.url, &body, ts, &signature(secret, ts, &body))
    };
    assert_eq!(send("new-1", "a"), 204);
    assert_eq!(
        send("old-1", "b"),
        204,
        "rotated an hour ago: still in the 24 h grace period"
    );
    assert_eq!(send("new-2", "c"), 204);
    assert_eq!(
        send("old-2", "d"),
        401,
        "rotated 25 h ago: grace period over"
    );
    let start = Instant::now();
    let carried = |id: &str| {
        slack.delivered().iter().any(|m| {
            m["text"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("event_id={id}"))
        })
    };
    while !(carried("a") && carried("b") && carried("c"))
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(carried("a") && carried("b") && carried("c"));
    assert!(!carried("d"));
}

#[test]
fn queue_shows_dead_letters_and_retries_them() {
    let slack = FakeSlack::start();
    slack.script(vec![crate::support::fake_slack::Answer::Status(
        404,
        "channel_not_found",
    )]);
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    // At -vv, the most a user can ask for, the log still holds no secret and no Slack path.
    let s = serve(&env, &["-vv"]);
    let body = event_body("evt-q", "low_credit");
    let ts = now();
    assert_eq!(
        post_blocking(&s.url, &body, ts, &signature(SECRET, ts, &body)),
        204
    );
    let start = Instant::now();
    let mut listed = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(10) {
        let out = env.run(&["queue", "--json"]);
        assert_eq!(out.code, 0, "{out:?}");
        listed = serde_json::from_str(&out.stdout).unwrap();
        if listed["dead"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed["dead"][0]["event"]["event_id"], "evt-q", "{listed}");
    assert!(listed["dead"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("channel_not_found"));
    let human = env.run(&["queue"]);
    assert!(
        human.stdout.contains("1 dead-lettered") && human.stdout.contains("evt-q"),
        "{human:?}"
    );
    // The dead letter opens an incident. Its alert has no other destination, so it goes to this
    // one anyway (which answers again).
    let start = Instant::now();
    let v = loop {
        let status = env.run(&["status", "--json"]);
        assert_eq!(status.code, 0, "{status:?}");
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        if v["incidents"].as_array().is_some_and(|i| !i.is_empty()) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no incident: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["dead_letters"].as_i64(), Some(1), "{v}");
    let title = v["incidents"][0]["title"].as_str().unwrap();
    assert!(title.contains("destination default"), "{v}");
    assert!(
        v["incidents"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("channel_not_found"),
        "{v}"
    );
    assert_eq!(
        v["slack_host"], "127.0.0.1",
        "what serve uses (SLACK_WEBHOOK_URL): {v}"
    );
    assert_eq!(v["secrets"], serde_json::json!(["VAST_WEBHOOK_SECRET"]));
    // Naming an event that is not a dead letter is an error (exit 4), here and before the
    // relay ever ran.
    for args in [&["retry", "999"][..], &["drop", "999", "--yes"]] {
        let out = env.run(&[&["queue"][..], args].concat());
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        let out = Env::new().run(&[&["queue"][..], args].concat());
        assert_eq!(out.code, 4, "{args:?} without a store: {out:?}");
        assert!(out.stderr.contains("no event store yet"), "{out:?}");
    }
    // Named twice, it is still one event, retried once.
    let seq = listed["dead"][0]["seq"].to_string();
    let out = env.run(&["queue", "retry", &seq, &seq]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("Requeued 1"), "{out:?}");
    // The event, and the alert (which says what happened) with its recovery.
    let got = wait_delivered(&slack, 3);
    for needle in [
        "evt-q",
        "vslack-alert:destination:",
        "vslack-resolved:destination:",
    ] {
        let n = got
            .iter()
            .filter(|m| m.to_string().contains(needle))
            .count();
        assert_eq!(n, 1, "{needle}: {got:?}");
    }
    let path = slack.url().split_once("/services/").unwrap().1.to_owned();
    s.assert_logs_free_of(&[SECRET, &path]);
    assert!(
        s.logs.lock().unwrap().iter().any(|l| l.contains("evt-q")),
        "outcome lines name the event"
    );
    let start = Instant::now();
    let mut v = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(5) {
        v = serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
        if v["delivered"].as_i64() == Some(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (
            v["dead_letters"].as_i64(),
            v["delivered"].as_i64(),
            v["incidents"].as_array().map(Vec::len)
        ),
        (Some(0), Some(3), Some(0)),
        "{v}"
    );
    assert!(v["last_delivery_at"].as_i64().is_some());
}

#[test]
fn a_secret_rotated_while_serving_is_picked_up_without_a_restart() {
    let slack = FakeSlack::start();
    let env = Env::new();
    let write = |secret: &str, previous: Option<&str>| {
        let mut text = format!(
            "[slack]\nurl = \"{}\"\n\n[webhooks.1]\nsecret = \"{secret}\"\n",
            slack.url()
        );
        if let Some(p) = previous {
            text.push_str(&format!(
                "previous_secret = \"{p}\"\nrotated_at = {}\n",
                now()
            ));
        }
        vslack::secret::write_private(&env.config_file(), text.as_bytes()).unwrap();
    };
    write("first", None);
    env.secret("first");
    env.secret("second");
    let s = serve(&env, &[]);
    let send = |secret: &str, id: &str| {
        let body = event_body(id, "low_credit");
        let ts = now();
        post_blocking(&s.url, &body, ts, &signature(secret, ts, &body))
    };
    assert_eq!(send("second", "before"), 401);
    write("second", Some("first"));
    let start = Instant::now();
    let mut status = 0;
    while start.elapsed() < Duration::from_secs(10) {
        status = send("second", &format!("after-{}", start.elapsed().as_millis()));
        if status == 204 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, 204, "the new secret was never accepted");
    assert_eq!(
        send("first", "old-still-ok"),
        204,
        "previous secret within its grace period"
    );
}

#[test]
fn a_second_relay_on_the_same_store_is_refused() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.secret(SECRET);
    let _first = serve(&env, &[]);
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("another vslack relay"), "{out:?}");
    // Whatever happens to helper files (here: every file beside the database and SQLite's
    // own -wal/-shm is deleted, a lock file included), the lock holds: it is on the
    // database itself.
    for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("spool.sqlite3") && entry.path().is_file() {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("another vslack relay"), "{out:?}");
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
fn a_store_deleted_under_a_running_relay_is_restored_and_loses_nothing() {
    let slack = FakeSlack::start();
    // Slack is down: everything stays queued in the store.
    slack.script(vec![
        crate::support::fake_slack::Answer::Status(
            500,
            "rollup_error"
        );
        1000
    ]);
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let mut s = serve(&env, &["--retry-initial", "60s"]);
    let send = |url: &str, id: &str| {
        let body = event_body(id, "low_credit");
        let ts = now();
        post_blocking(url, &body, ts, &signature(SECRET, ts, &body))
    };
    let mut acked = Vec::new();
    for i in 0..10 {
        let id = format!("evt-before-{i}");
        assert_eq!(send(&s.url, &id), 204);
        acked.push(id);
    }
    // The store and SQLite's files vanish under the relay.
    for entry in std::fs::read_dir(env.data_dir()).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("spool.sqlite3")
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    s.wait_log("restored the event store");
    assert!(s.logged("was deleted while the relay runs"));
    assert!(env.data_dir().join("spool.sqlite3").exists());
    for i in 0..10 {
        let id = format!("evt-after-{i}");
        let status = send(&s.url, &id);
        assert!(status == 204 || status == 503, "{status}");
        if status == 204 {
            acked.push(id);
        }
    }
    assert!(acked.len() > 10, "accepting again after the restore");
    // Crash, then restart with Slack working: every acknowledged event arrives.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
    let _ = s.child.wait();
    let slack2 = FakeSlack::start();
    env.set("SLACK_WEBHOOK_URL", &slack2.url());
    let _s2 = serve(&env, &[]);
    let start = Instant::now();
    loop {
        let text: String = slack2.delivered().iter().map(|m| m.to_string()).collect();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| !text.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "lost: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Replaced (say, by an old backup): moved aside, and the relay's own data restored.
    let s2 = _s2;
    let other = env.data_dir().join("old-backup");
    std::fs::write(&other, b"not this relay's store").unwrap();
    std::fs::rename(&other, env.data_dir().join("spool.sqlite3")).unwrap();
    s2.wait_log("restored the event store");
    assert!(std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("replaced-")));
    assert_eq!(send(&s2.url, "evt-after-replace"), 204);
    let start = Instant::now();
    while !slack2
        .delivered()
        .iter()
        .any(|m| m.to_string().contains("evt-after-replace"))
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_damaged_store_is_named_at_start_and_recover_saves_what_can_be_read() {
    let slack = FakeSlack::start();
    slack.script(vec![
        crate::support::fake_slack::Answer::Status(
            500,
            "rollup_error"
        );
        5000
    ]);
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let mut s = serve(&env, &["--retry-initial", "60s"]);
    for i in 0..400 {
        let body = event_body(&format!("evt-dmg-{i}"), "low_credit");
        let ts = now();
        assert_eq!(
            post_blocking(&s.url, &body, ts, &signature(SECRET, ts, &body)),
            204
        );
    }
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let _ = s.child.wait();
    let out = env.run(&["store", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("sound (400 pending"), "{out:?}");
    // Damage a page in the middle of the file.
    let file = env.data_dir().join("spool.sqlite3");
    let mut bytes = std::fs::read(&file).unwrap();
    let pages = bytes.len() / 4096;
    assert!(pages > 8, "{pages} pages");
    let at = pages / 2 * 4096;
    bytes[at..at + 4096].fill(0xA5);
    std::fs::write(&file, &bytes).unwrap();
    let out = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(
        out.stderr.contains(&file.display().to_string())
            && out.stderr.contains("vslack store recover"),
        "{out:?}"
    );
    let out = env.run(&["store", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("DAMAGED"), "{out:?}");
    let out = env.run(&["--json", "store", "recover"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let saved = v["pending"].as_u64().unwrap();
    assert!(saved > 0 && saved <= 400, "{v}");
    assert!(std::path::Path::new(v["damaged_kept_at"].as_str().unwrap()).exists());
    let out = env.run(&["store", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    // The relay starts on the recovered store and delivers what was saved.
    let slack2 = FakeSlack::start();
    env.set("SLACK_WEBHOOK_URL", &slack2.url());
    let _s2 = serve(&env, &[]);
    let start = Instant::now();
    loop {
        let text: String = slack2.delivered().iter().map(|m| m.to_string()).collect();
        let n = (0..400)
            .filter(|i| {
                text.contains(&format!("evt-dmg-{i}\"")) || text.contains(&format!("evt-dmg-{i} "))
            })
            .count();
        if n as u64 >= saved {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{n} of {saved} delivered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
