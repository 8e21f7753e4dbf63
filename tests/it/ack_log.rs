//! The relay's ack log (SQLite store, owner only): a new event is answered once it is synced
//! in the log, before it is in the table. Whatever the log holds past the table when the
//! relay dies is stored at the next start, once; a torn record is not; an event stored and
//! later pruned does not come back from the log; another store's log file is left alone; a
//! clean stop that cannot store what the log holds says so.
//!
//! A crash is a copy of the store's files taken while the relay still runs (what a crash
//! leaves on disk: everything synced), with the table kept behind the log by `ack_log_hold`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vslack::relay::spool::{Inserted, Spool, SpoolOptions, PENDING};

use crate::relay::{event_body, now};

fn owner(hold: bool) -> SpoolOptions {
    SpoolOptions {
        owner: true,
        ack_log_hold: hold.then(|| Duration::from_secs(3600)),
        ..Default::default()
    }
}

async fn insert(s: &Spool, id: &str) -> Inserted {
    let body = event_body(id, "low_credit");
    let event = vslack::relay::event::Event::parse(&body, None, now()).unwrap();
    s.insert(event, body).await.unwrap()
}

async fn pending(s: &Spool) -> Vec<String> {
    let mut ids: Vec<String> = s
        .list(PENDING, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.event.event_id)
        .collect();
    ids.sort();
    ids
}

/// The ack log files beside the store at `store`.
fn log_files(store: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}-acklog.", store.file_name().unwrap().to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(store.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// What a crash of the process holding `from` would leave on disk, at `to` (another store
/// file name's directory): the database, its WAL and the ack log files, renamed alike.
fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let (from_name, to_name) = (
        from.file_name().unwrap().to_string_lossy().into_owned(),
        to.file_name().unwrap().to_string_lossy().into_owned(),
    );
    for e in std::fs::read_dir(from.parent().unwrap()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(&from_name) {
            if rest.is_empty() || rest == "-wal" || rest.starts_with("-acklog.") {
                let dest = to.parent().unwrap().join(format!("{to_name}{rest}"));
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }
}

/// A relay's store at `dir/a/s.sqlite3` whose table stays behind its ack log.
fn held_relay(dir: &Path) -> (PathBuf, Spool) {
    let store = dir.join("a/s.sqlite3");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    let relay = Spool::open(&store, &owner(true)).unwrap();
    (store, relay)
}

/// The pending ids once there are `n` (or what there is after 5 s).
async fn wait_pending(s: &Spool, n: usize) -> Vec<String> {
    for _ in 0..500 {
        let ids = pending(s).await;
        if ids.len() >= n {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pending(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_only_in_the_log_are_stored_at_the_next_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let (live, relay) = held_relay(dir.path());
    for id in ["one", "two", "three"] {
        assert_eq!(insert(&relay, id).await, Inserted::New);
    }
    assert_eq!(
        insert(&relay, "two").await,
        Inserted::Duplicate,
        "an id only in the log is known"
    );
    assert!(
        pending(&relay).await.is_empty(),
        "held: the events are in the log only"
    );
    let crashed = dir.path().join("b/s.sqlite3");
    crash_copy(&live, &crashed);
    let old_logs = log_files(&crashed);
    assert!(!old_logs.is_empty());

    let restarted = Spool::open(&crashed, &owner(false)).unwrap();
    assert_eq!(pending(&restarted).await, ["one", "three", "two"]);
    assert_eq!(insert(&restarted, "one").await, Inserted::Duplicate);
    let left = log_files(&crashed);
    assert!(
        old_logs.iter().all(|f| !left.contains(f)),
        "the files replayed are deleted: {left:?}"
    );
    drop(restarted);
    let again = Spool::open(&crashed, &owner(false)).unwrap();
    assert_eq!(
        pending(&again).await,
        ["one", "three", "two"],
        "stored once, not again at the next start"
    );
    // The live relay, closed, stores what it held.
    drop(relay);
    let closed = Spool::open(&live, &owner(false)).unwrap();
    assert_eq!(pending(&closed).await, ["one", "three", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_and_what_follows_it_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (live, relay) = held_relay(dir.path());
    assert_eq!(insert(&relay, "kept-record").await, Inserted::New);
    assert_eq!(insert(&relay, "torn-record").await, Inserted::New);
    let crashed = dir.path().join("b/s.sqlite3");
    crash_copy(&live, &crashed);
    // Damage the second record where its id is written (a write torn by the crash).
    let mut damaged = 0;
    for f in log_files(&crashed) {
        let mut bytes = std::fs::read(&f).unwrap();
        if let Some(at) = bytes.windows(11).position(|w| w == b"torn-record") {
            bytes[at] ^= 0x20;
            std::fs::write(&f, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the record is in a log file");
    let restarted = Spool::open(&crashed, &owner(false)).unwrap();
    assert_eq!(pending(&restarted).await, ["kept-record"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_and_pruned_does_not_come_back_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let relay = Spool::open(&path, &owner(false)).unwrap();
    assert_eq!(insert(&relay, "gone").await, Inserted::New);
    // (The newest row is never pruned: it keeps the sequence's high-water mark.)
    assert_eq!(insert(&relay, "later").await, Inserted::New);
    let stored = wait_pending(&relay, 2).await;
    assert_eq!(
        stored,
        ["gone", "later"],
        "stored in the table within moments"
    );
    let seq = relay.list(PENDING, 10).await.unwrap()[0].seq;
    relay.mark_delivered(vec![seq], now() - 100).await.unwrap();
    assert_eq!(relay.prune(now(), now()).await.unwrap(), 1);
    // Its record is still in the current log file, before the mark.
    assert!(log_files(&path)
        .iter()
        .any(|f| std::fs::read(f).unwrap().windows(4).any(|w| w == b"gone")));
    drop(relay);
    let again = Spool::open(&path, &owner(false)).unwrap();
    assert_eq!(pending(&again).await, ["later"]);
    let stats = again.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivered, stats.dead), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stores_log_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (other, relay) = held_relay(dir.path());
    assert_eq!(insert(&relay, "not-mine").await, Inserted::New);
    let mine = dir.path().join("b/s.sqlite3");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    drop(Spool::open(&mine, &owner(false)).unwrap());
    // The other store's log, under this store's name, at a generation past this one's.
    let stray = mine.with_file_name("s.sqlite3-acklog.999");
    let source = log_files(&other)
        .into_iter()
        .find(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(8)
                .any(|w| w == b"not-mine")
        })
        .unwrap();
    std::fs::copy(source, &stray).unwrap();
    let s = Spool::open(&mine, &owner(false)).unwrap();
    assert!(pending(&s).await.is_empty());
    assert!(stray.exists(), "not deleted");
    // Nor later, when the relay moves to its next log file (the spare, made after the first
    // event) and deletes its own older ones.
    assert_eq!(insert(&s, "first").await, Inserted::New);
    let before = log_files(&mine);
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(insert(&s, &format!("then-{i}")).await, Inserted::New);
        if log_files(&mine) != before && wait_pending(&s, i + 2).await.len() == i + 2 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = log_files(&mine);
    assert!(
        before.iter().any(|f| f != &stray && !after.contains(f)),
        "the relay moved on and deleted its own older file: {before:?} → {after:?}"
    );
    assert!(stray.exists(), "not deleted with them");
}

/// An 8 KiB event: 40 of them are more than a 256 KiB cap holds.
async fn insert_large(s: &Spool, id: &str) -> Result<Inserted, vslack::relay::spool::SpoolError> {
    let body = serde_json::json!({"event_id": id, "notif_type": "low_credit", "message": "x".repeat(8 * 1024)})
        .to_string()
        .into_bytes();
    let event = vslack::relay::event::Event::parse(&body, None, now()).unwrap();
    s.insert(event, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_past_the_size_cap_are_stored_then_new_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.sqlite3");
    // The table stays behind the log for half a second: the ack path answers all 40 before
    // the writer finds the cap reached.
    let opts = SpoolOptions {
        max_bytes: Some(256 * 1024),
        ack_log_hold: Some(Duration::from_millis(500)),
        ..owner(false)
    };
    let relay = Spool::open(&store, &opts).unwrap();
    for i in 0..40 {
        assert_eq!(
            insert_large(&relay, &format!("big-{i}")).await.unwrap(),
            Inserted::New
        );
    }
    assert_eq!(
        wait_pending(&relay, 40).await.len(),
        40,
        "every acknowledged event is stored, past the cap"
    );
    let refused = insert_large(&relay, "big-late").await;
    assert!(refused.as_ref().is_err_and(|e| e.is_full()), "{refused:?}");
    // What is posted can still be recorded: a failed attempt (with its error), then success.
    let seqs = crate::store_contract::pending_seqs(&relay, 1000).await;
    let error = "Slack answered 500 rollup_error; tried again shortly".repeat(20);
    relay.mark_retry(seqs.clone(), 0, error).await.unwrap();
    relay.mark_delivered(seqs, now()).await.unwrap();
    let stats = relay.stats().await.unwrap();
    assert_eq!((stats.pending, stats.delivered), (0, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_stores_what_the_log_holds_past_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (live, relay) = held_relay(dir.path());
    for i in 0..40 {
        assert_eq!(
            insert_large(&relay, &format!("big-{i}")).await.unwrap(),
            Inserted::New
        );
    }
    let crashed = dir.path().join("b/s.sqlite3");
    crash_copy(&live, &crashed);
    let capped = SpoolOptions {
        max_bytes: Some(256 * 1024),
        ..owner(false)
    };
    let restarted = Spool::open(&crashed, &capped).expect("the store opens with its log replayed");
    assert_eq!(pending(&restarted).await.len(), 40);
    drop(relay);
}

/// `vslack store check` counts what a relay acknowledged but had not stored in the table when
/// it died, instead of a pending count short of what was answered 204.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_check_counts_the_events_only_the_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (live, relay) = held_relay(dir.path());
    for id in ["one", "two", "three"] {
        assert_eq!(insert(&relay, id).await, Inserted::New);
    }
    let env = crate::common::Env::new();
    let crashed = env.data_dir().join("spool.sqlite3");
    crash_copy(&live, &crashed);
    let out = env.run(&["--json", "store", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["pending"].as_u64(), v["in_ack_log"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    let out = env.run(&["store", "check"]);
    assert!(
        out.stdout
            .contains("3 more acknowledged events are in the ack log, not in the table"),
        "{out:?}"
    );
    // Once a relay has owned the copy, the table holds them and the log nothing more.
    drop(Spool::open(&crashed, &owner(false)).unwrap());
    let out = env.run(&["--json", "store", "check"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["pending"].as_u64(), v["in_ack_log"].as_u64()),
        (Some(3), Some(0)),
        "{v}"
    );
    // A log file that cannot be read may hold acknowledged events: said, and not "sound".
    std::fs::create_dir(env.data_dir().join("spool.sqlite3-acklog.999")).unwrap();
    let out = env.run(&["--json", "store", "check"]);
    assert_eq!(out.code, 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let why = v["ack_log_error"].as_str().unwrap_or_default();
    assert!(why.contains("spool.sqlite3-acklog.999"), "{v}");
    assert!(v["in_ack_log"].is_null(), "{v}");
    drop(relay);
}

/// A clean stop (`flush`) while the events the log holds cannot be stored says so, so that
/// the relay's stop warning does not claim the table holds everything; once they can be, it
/// stores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_says_when_logged_events_could_not_be_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.sqlite3");
    let relay = Spool::open(&store, &owner(false)).unwrap();
    let other = rusqlite::Connection::open(&store).unwrap();
    other.busy_timeout(Duration::from_secs(5)).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    assert_eq!(
        insert(&relay, "one").await,
        Inserted::New,
        "answered from the log"
    );
    let err = relay
        .flush()
        .await
        .expect_err("the logged event could not be stored");
    assert!(err.to_string().contains("injected failure"), "{err}");
    other.execute_batch("DROP TRIGGER refuse").unwrap();
    relay.flush().await.expect("stored now");
    assert_eq!(pending(&relay).await, ["one"]);
}
