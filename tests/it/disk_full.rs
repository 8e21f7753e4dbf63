//! A disk that fills up completely (no `--max-store-mb`) while a message is being posted: the
//! relay must still record that it was posted, so a restart does not post it again. Uses a
//! small tmpfs as the data directory (mounting needs root; CI runs as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Env;
use crate::relay::{event_body, now, signature, SECRET};
use crate::relay_process::{post_blocking, serve};
use crate::support::fake_slack::{Answer, FakeSlack};

/// A tmpfs of `mb` MiB at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mb: u32) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("\n*** SKIPPED disk_full: mounting a small tmpfs needs root (CI runs as root) ***\n");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs at {} as root", dir.display());
        Some(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write zeros into `dir/filler` until the disk refuses.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn deliver(url: &str, id: &str) -> u16 {
    let body = event_body(id, "instance_stopped");
    let ts = now();
    post_blocking(url, &body, ts, &signature(SECRET, ts, &body))
}

#[test]
fn a_message_posted_as_the_disk_fills_is_recorded_and_never_posted_again() {
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    let Some(_disk) = Tmpfs::mount(&env.data_dir(), 16) else {
        return;
    };
    // The first message is held at Slack while the disk fills up.
    slack.script(vec![Answer::Hold]);
    let mut relay = serve(&env, &[]);
    assert_eq!(deliver(&relay.url, "evt-posted"), 204);
    let start = Instant::now();
    while slack.requests().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "never posted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let filler = fill(&env.data_dir());
    // Slack answers 200: the relay must record it although the disk is full.
    slack.release();
    relay.wait_log("delivered to Slack");
    // A new delivery is refused while the disk is full (Vast.ai retries it later).
    assert_eq!(deliver(&relay.url, "evt-while-full"), 503);
    std::thread::sleep(Duration::from_millis(300));
    // Killed while the disk is still full, restarted once there is room: what was posted is
    // not posted again.
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();
    std::fs::remove_file(&filler).unwrap();
    let again = serve(&env, &[]);
    assert_eq!(deliver(&again.url, "evt-after"), 204);
    let start = Instant::now();
    while !slack
        .delivered()
        .iter()
        .any(|m| m.to_string().contains("evt-after"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "evt-after never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let posted = slack
        .delivered()
        .iter()
        .filter(|m| m.to_string().contains("evt-posted"))
        .count();
    assert_eq!(posted, 1, "evt-posted was posted {posted} times");
    assert!(
        relay.logged("spent the space set aside"),
        "the log says why"
    );
    // Full again: refused; room again: accepted, without a restart.
    let filler = fill(&env.data_dir());
    let mut refused = false;
    for i in 0..50 {
        // The first few may still fit in what SQLite had allocated.
        if deliver(&again.url, &format!("evt-full-{i}")) == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a full disk refuses new events");
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        match deliver(&again.url, "evt-room-again") {
            204 => break,
            s => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still {s} with room on the disk"
            ),
        }
    }
}
