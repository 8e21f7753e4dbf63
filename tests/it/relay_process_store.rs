//! `vslack serve` as a real process and its store: SIGKILL loses nothing acknowledged, one
//! relay per store, a store deleted or damaged under it.

use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::support::fake_slack::FakeSlack;

use crate::relay_process::*;

/// A relay whose Slack answers 500 to every post: what it acknowledges stays queued.
fn slack_down() -> (FakeSlack, Env, Serving) {
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
    let s = serve(&env, &["--retry-initial", "60s"]);
    (slack, env, s)
}

/// The relay started again on `env`'s store, with a Slack that answers.
fn restart_with_slack(env: &mut Env) -> (FakeSlack, Serving) {
    let slack = FakeSlack::start();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    let s = serve(env, &[]);
    (slack, s)
}

/// Wait (at most `limit`) until everything `slack` was sent, as text, passes `missing`
/// (which says what is missing, or `None`); panics with what it says otherwise.
fn wait_sent(slack: &FakeSlack, limit: Duration, missing: impl Fn(&str) -> Option<String>) {
    let start = Instant::now();
    loop {
        let text: String = slack.delivered().iter().map(|m| m.to_string()).collect();
        let Some(what) = missing(&text) else {
            return;
        };
        assert!(start.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
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
fn a_store_deleted_under_a_running_relay_is_restored_and_loses_nothing() {
    // Slack is down: everything stays queued in the store.
    let (_slack, mut env, mut s) = slack_down();
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
    let (slack2, s2) = restart_with_slack(&mut env);
    wait_sent(&slack2, Duration::from_secs(30), |text| {
        let missing: Vec<&String> = acked
            .iter()
            .filter(|id| !text.contains(id.as_str()))
            .collect();
        (!missing.is_empty()).then(|| format!("lost: {missing:?}"))
    });
    // Replaced (say, by an old backup): moved aside, and the relay's own data restored.
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
    let (_slack, mut env, mut s) = slack_down();
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
    let (slack2, _s2) = restart_with_slack(&mut env);
    wait_sent(&slack2, Duration::from_secs(60), |text| {
        let n = (0..400)
            .filter(|i| {
                text.contains(&format!("evt-dmg-{i}\"")) || text.contains(&format!("evt-dmg-{i} "))
            })
            .count();
        (n < saved as usize).then(|| format!("{n} of {saved} delivered"))
    });
}
