//! The SQLite store's own promises beside the shared contract: the writer checks event ids in
//! memory (no unique index), so the set it checks against must match the table after a
//! restart, after retention forgets rows, within one batch, and after another process wrote
//! the file; and a store made by an earlier version is upgraded in place, keeping everything.

use vslack::relay::event::Event;
use vslack::relay::spool::{Inserted, Spool, SpoolOptions, PENDING};

use crate::relay::{event_body, now};

fn ev(id: &str) -> Event {
    Event::parse(&event_body(id, "low_credit"), None, now()).unwrap()
}

async fn insert(s: &Spool, id: &str) -> Inserted {
    s.insert(ev(id), event_body(id, "low_credit"))
        .await
        .unwrap()
}

/// The relay's options: it owns the store, and acknowledges through the ack log.
fn owner() -> SpoolOptions {
    SpoolOptions {
        owner: true,
        ..Default::default()
    }
}

/// Wait (up to 5 s) until `id` is in the table: the relay stores acknowledged events from its
/// ack log within moments.
async fn wait_stored(s: &Spool, id: &str) {
    for _ in 0..500 {
        if s.list(PENDING, 1000)
            .await
            .unwrap()
            .iter()
            .any(|q| q.event.event_id == id)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn seq_of(s: &Spool, id: &str) -> i64 {
    s.list(PENDING, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.event.event_id == id)
        .unwrap_or_else(|| panic!("{id} is not pending"))
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_known_after_a_restart_and_forgotten_only_with_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let s = Spool::open(&path, &SpoolOptions::default()).unwrap();
    assert_eq!(insert(&s, "old").await, Inserted::New);
    assert_eq!(insert(&s, "kept").await, Inserted::New);
    let old = seq_of(&s, "old").await;
    s.mark_delivered(vec![old], now() - 100).await.unwrap();
    drop(s);
    let s = Spool::open(&path, &SpoolOptions::default()).unwrap();
    assert_eq!(
        insert(&s, "old").await,
        Inserted::Duplicate,
        "delivered, within retention"
    );
    assert_eq!(insert(&s, "kept").await, Inserted::Duplicate, "pending");
    assert_eq!(s.prune(now(), now()).await.unwrap(), 1);
    assert_eq!(
        insert(&s, "old").await,
        Inserted::New,
        "forgotten with its row"
    );
    assert_eq!(insert(&s, "kept").await, Inserted::Duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_new_id_twice_at_once_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(&dir.path().join("s.sqlite3"), &SpoolOptions::default()).unwrap();
    for round in 0..20 {
        let id = format!("twice-{round}");
        let (a, b) = tokio::join!(insert(&s, &id), insert(&s, &id));
        let mut answers = [a, b];
        answers.sort_by_key(|a| *a == Inserted::Duplicate);
        assert_eq!(answers, [Inserted::New, Inserted::Duplicate], "{id}");
    }
    assert_eq!(s.stats().await.unwrap().pending, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_another_process_stored_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let s = Spool::open(&path, &SpoolOptions::default()).unwrap();
    assert_eq!(insert(&s, "mine").await, Inserted::New);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    other
        .execute(
            "INSERT INTO events (event_id, notif_type, event, body, received_at) VALUES ('theirs', 'low_credit', ?1, x'', ?2)",
            rusqlite::params![serde_json::to_string(&ev("theirs")).unwrap(), now()],
        )
        .unwrap();
    assert_eq!(insert(&s, "theirs").await, Inserted::Duplicate);
    assert_eq!(insert(&s, "mine").await, Inserted::Duplicate);
    assert_eq!(s.stats().await.unwrap().pending, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_an_earlier_version_is_upgraded_keeping_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    {
        // The shape stores had before: AUTOINCREMENT and a unique index on event_id.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                notif_type TEXT NOT NULL, event TEXT NOT NULL, body BLOB NOT NULL,
                received_at INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
                last_error TEXT, done_at INTEGER);
             CREATE INDEX events_due ON events(next_attempt_ms, seq) WHERE state = 0;
             CREATE INDEX events_pending ON events(seq) WHERE state = 0;",
        )
        .unwrap();
        for (id, state, attempts) in [("p1", 0, 2), ("d1", 1, 1), ("p2", 0, 0)] {
            c.execute(
                "INSERT INTO events (event_id, notif_type, event, body, received_at, state, attempts, done_at) VALUES (?1, 'low_credit', ?2, ?3, ?4, ?5, ?6, CASE WHEN ?5 = 0 THEN NULL ELSE ?4 END)",
                rusqlite::params![id, serde_json::to_string(&ev(id)).unwrap(), event_body(id, "low_credit"), now(), state, attempts],
            )
            .unwrap();
        }
        // Events up to 7 were numbered; the newest, forgotten, left 3 as the largest row.
        c.execute(
            "UPDATE sqlite_sequence SET seq = 7 WHERE name = 'events'",
            [],
        )
        .unwrap();
    }
    let indexes = || -> Vec<String> {
        let c = rusqlite::Connection::open(&path).unwrap();
        let mut st = c
            .prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql LIKE '%state = 0' ORDER BY name")
            .unwrap();
        let sql = st.query_map([], |r| r.get(0)).unwrap();
        sql.map(Result::unwrap).collect()
    };
    let shape = || -> String {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    // A command that only looks (status, queue, doctor) leaves the file as it is: an older
    // relay may still be running on it.
    let looked = Spool::open(&path, &SpoolOptions::default()).unwrap();
    assert_eq!(looked.stats().await.unwrap().pending, 2);
    drop(looked);
    assert!(shape().contains("UNIQUE"), "{}", shape());
    assert_eq!(indexes().len(), 2, "{:?}", indexes());
    // The relay, which owns the store, rebuilds it.
    let s = Spool::open(&path, &owner()).unwrap();
    let pending = s.list(PENDING, 10).await.unwrap();
    let kept: Vec<(i64, &str, i64)> = pending
        .iter()
        .map(|q| (q.seq, q.event.event_id.as_str(), q.attempts))
        .collect();
    assert_eq!(kept, vec![(1, "p1", 2), (3, "p2", 0)]);
    let st = s.stats().await.unwrap();
    assert_eq!((st.pending, st.delivered), (2, 1));
    for id in ["p1", "d1", "p2"] {
        assert_eq!(insert(&s, id).await, Inserted::Duplicate, "{id}");
    }
    assert_eq!(insert(&s, "new").await, Inserted::New);
    wait_stored(&s, "new").await;
    assert_eq!(
        seq_of(&s, "new").await,
        8,
        "numbers continue after the largest ever given"
    );
    let due: Vec<i64> = s
        .due(now() * 1000, 10)
        .await
        .unwrap()
        .iter()
        .map(|q| q.seq)
        .collect();
    assert_eq!(due, vec![1, 3, 8]);
    drop(s);
    let sql = shape();
    assert!(
        !sql.contains("UNIQUE") && !sql.contains("AUTOINCREMENT"),
        "{sql}"
    );
    // Pending events have one index, in arrival order carrying the retry time, not two.
    assert_eq!(
        indexes(),
        vec!["CREATE INDEX events_pending ON events(seq, next_attempt_ms) WHERE state = 0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_keeps_the_newest_row_so_numbers_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(&dir.path().join("s.sqlite3"), &SpoolOptions::default()).unwrap();
    insert(&s, "a").await;
    insert(&s, "b").await;
    let (a, b) = (seq_of(&s, "a").await, seq_of(&s, "b").await);
    s.mark_delivered(vec![a, b], now() - 100).await.unwrap();
    assert_eq!(s.prune(now(), now()).await.unwrap(), 1, "the newest stays");
    assert_eq!(insert(&s, "c").await, Inserted::New);
    assert!(seq_of(&s, "c").await > b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_two_pending_indexes_gets_one_keeping_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let s = Spool::open(&path, &owner()).unwrap();
    insert(&s, "a").await;
    insert(&s, "b").await;
    wait_stored(&s, "b").await;
    drop(s);
    // The indexes of a store written before 2026-12-06.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP INDEX events_pending;
             CREATE INDEX events_due ON events(next_attempt_ms, seq) WHERE state = 0;
             CREATE INDEX events_pending ON events(seq) WHERE state = 0;",
        )
        .unwrap();
    let names = || -> Vec<String> {
        let c = rusqlite::Connection::open(&path).unwrap();
        let mut st = c
            .prepare("SELECT name || ' ' || sql FROM sqlite_master WHERE type = 'index' AND name IN ('events_due', 'events_pending') ORDER BY name")
            .unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap();
        v.map(Result::unwrap).collect()
    };
    // A command that only looks leaves them.
    drop(Spool::open(&path, &SpoolOptions::default()).unwrap());
    assert_eq!(names().len(), 2, "{:?}", names());
    let s = Spool::open(&path, &owner()).unwrap();
    assert_eq!(
        names(),
        vec!["events_pending CREATE INDEX events_pending ON events(seq, next_attempt_ms) WHERE state = 0"]
    );
    let due: Vec<String> = s
        .due(now() * 1000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.event.event_id)
        .collect();
    assert_eq!(due, vec!["a", "b"]);
    let seq = seq_of(&s, "a").await;
    s.mark_retry(vec![seq], i64::MAX / 2, "later".into())
        .await
        .unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(0), "b is due now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_relay_falls_quiet_the_file_alone_holds_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let s = Spool::open(&path, &owner()).unwrap();
    for id in ["a", "b", "c"] {
        insert(&s, id).await;
    }
    // The file without its WAL, as a copy of it alone would be.
    let copy = dir.path().join("copy.sqlite3");
    let in_file = || -> i64 {
        std::fs::copy(&path, &copy).unwrap();
        rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM events WHERE state = 0", [], |r| {
                r.get(0)
            })
            .unwrap_or(0)
    };
    let mut held = 0;
    for _ in 0..100 {
        held = in_file();
        if held == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(held, 3, "the WAL was not copied into the file");
    assert_eq!(s.list(PENDING, 10).await.unwrap().len(), 3);
}
