//! The durable queue: an embedded SQLite database (WAL, `synchronous=FULL`) in the data
//! directory. One writer thread owns the connection and applies requests in batches, so
//! concurrent deliveries share one transaction and one fsync (group commit). A caller is
//! answered only after its batch has committed: an acknowledged event is on disk.
//!
//! Rows are kept after delivery so that a redelivered `event_id` is recognised for the
//! retention window (7 days by default); pending rows are never pruned.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use super::event::Event;
use super::now_secs;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    notif_type      TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            BLOB NOT NULL,
    received_at     INTEGER NOT NULL,
    state           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER
);
CREATE INDEX IF NOT EXISTS events_due ON events(next_attempt_ms, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_done ON events(done_at) WHERE state <> 0;
";

pub const PENDING: i64 = 0;
pub const DELIVERED: i64 = 1;
pub const DEAD: i64 = 2;
/// Given up on by `vslack queue drop`; remembered for deduplication, then pruned.
pub const DROPPED: i64 = 3;

/// The store could not commit; the delivery must not be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event store: {0}")]
pub struct SpoolError(pub String);

impl From<rusqlite::Error> for SpoolError {
    fn from(e: rusqlite::Error) -> Self {
        SpoolError(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// A queued event as the forwarder and `vslack queue` see it.
#[derive(Debug, Clone, Serialize)]
pub struct Queued {
    pub seq: i64,
    pub event: Event,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub state: &'static str,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    pub pending: i64,
    pub dead: i64,
    pub delivered: i64,
    /// Unix seconds of the last successful Slack delivery.
    pub last_delivered_at: Option<i64>,
    /// Unix seconds when the oldest pending event was received.
    pub oldest_pending_at: Option<i64>,
}

type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

/// What the writer thread is asked to do.
enum Cmd {
    Insert(Box<(Event, Vec<u8>)>),
    Delivered(Vec<i64>, i64),
    Retry(Vec<i64>, i64, String),
    Dead(Vec<i64>, String, i64),
    Requeue(Option<Vec<i64>>, i64),
    Drop(Vec<i64>, i64),
    Prune(i64),
    RetryNow,
}

/// What it answers.
enum Answer {
    Inserted(Inserted),
    Unit(()),
    Count(usize),
}

/// Where the answer goes; the caller's type decides which variant.
enum Slot {
    Inserted(Reply<Inserted>),
    Unit(Reply<()>),
    Count(Reply<usize>),
}

impl Slot {
    fn send(self, answer: Result<Answer, SpoolError>) {
        // Hand the answer to the caller's channel if it is of the kind the caller asked for.
        macro_rules! deliver {
            ($reply:expr, $kind:ident) => {
                drop($reply.send(answer.and_then(|a| match a {
                    Answer::$kind(v) => Ok(v),
                    _ => Err(SpoolError("internal: answer of the wrong kind".into())),
                })))
            };
        }
        match self {
            Slot::Inserted(r) => deliver!(r, Inserted),
            Slot::Unit(r) => deliver!(r, Unit),
            Slot::Count(r) => deliver!(r, Count),
        }
    }
}

type Op = (Cmd, Slot);

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::SyncSender<Op>,
    /// A second, read-only connection: the forwarder's queries, status, health, metrics and
    /// `vslack queue` read through it (WAL lets readers run beside the writer), so they never
    /// delay a commit.
    reader: Arc<std::sync::Mutex<Connection>>,
    /// Signalled after new events commit, to wake the forwarder.
    pub arrived: Arc<Notify>,
}

#[derive(Debug, Clone, Default)]
pub struct SpoolOptions {
    /// Cap the database size; beyond it inserts fail (and the relay answers 503).
    pub max_bytes: Option<u64>,
}

impl Spool {
    /// Open (creating if needed) the store at `path` and start its writer thread.
    pub fn open(path: &Path, opts: &SpoolOptions) -> Result<Spool> {
        if let Some(dir) = path.parent() {
            crate::secret::ensure_private_dir(dir)?;
        }
        private_store_files(path)?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the event store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| conn.execute_batch(SCHEMA))
            .with_context(|| {
                format!(
                    "cannot initialise the event store {} (is the disk writable?)",
                    path.display()
                )
            })?;
        if let Some(max) = opts.max_bytes {
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", (max as i64 / page).max(16))?;
        }
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open the event store {}", path.display()))?;
        reader.busy_timeout(Duration::from_secs(5))?;
        let reader = Arc::new(std::sync::Mutex::new(reader));
        let (tx, rx) = mpsc::sync_channel::<Op>(4096);
        let arrived = Arc::new(Notify::new());
        let notify = arrived.clone();
        std::thread::Builder::new()
            .name("vslack-spool".into())
            .spawn(move || writer(conn, rx, notify))?;
        Ok(Spool {
            tx,
            reader,
            arrived,
        })
    }

    async fn ask<T>(&self, cmd: Cmd, slot: impl FnOnce(Reply<T>) -> Slot) -> Result<T, SpoolError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        let op = (cmd, slot(reply));
        // The channel is bounded: when the writer falls behind, wait without blocking the runtime.
        match tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(op)) => tokio::task::spawn_blocking(move || tx.send(op))
                .await
                .map_err(|e| SpoolError(e.to_string()))?
                .map_err(|_| SpoolError("writer stopped".into()))?,
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(SpoolError("writer stopped".into()))
            }
        }
        rx.await.map_err(|_| SpoolError("writer stopped".into()))?
    }

    /// Commit a verified event; `Duplicate` if its id was seen within the retention window.
    pub async fn insert(&self, event: Event, body: Vec<u8>) -> Result<Inserted, SpoolError> {
        self.ask(Cmd::Insert(Box::new((event, body))), Slot::Inserted)
            .await
    }
    /// Pending events due at `now_ms`, oldest first. (The forwarder awaits each outcome's
    /// commit before asking again, so this read sees it.)
    pub async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| {
            query(
                c,
                "WHERE state = 0 AND next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2",
                params![now_ms, limit as i64],
            )
        })
        .await
    }
    /// When the next pending event becomes due (ms), if any.
    pub async fn next_due(&self) -> Result<Option<i64>, SpoolError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_attempt_ms) FROM events WHERE state = 0",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }
    pub async fn mark_delivered(&self, seqs: Vec<i64>, now: i64) -> Result<(), SpoolError> {
        self.ask(Cmd::Delivered(seqs, now), Slot::Unit).await
    }
    /// Count an attempt and schedule the next one.
    pub async fn mark_retry(
        &self,
        seqs: Vec<i64>,
        next_ms: i64,
        error: String,
    ) -> Result<(), SpoolError> {
        self.ask(Cmd::Retry(seqs, next_ms, error), Slot::Unit).await
    }
    pub async fn mark_dead(
        &self,
        seqs: Vec<i64>,
        error: String,
        now: i64,
    ) -> Result<(), SpoolError> {
        self.ask(Cmd::Dead(seqs, error, now), Slot::Unit).await
    }
    /// Run a read on the reader connection, off the async runtime's threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| SpoolError("reader poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| SpoolError(e.to_string()))?
    }

    pub async fn stats(&self) -> Result<Stats, SpoolError> {
        // Three narrow queries (pending and finished rows have partial indexes) rather than one
        // scan over every stored event.
        self.read(|c| {
            let (pending, oldest_pending_at) = c.query_row(
                "SELECT COUNT(*), MIN(received_at) FROM events WHERE state = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let dead = c.query_row("SELECT COUNT(*) FROM events WHERE state = 2", [], |r| {
                r.get(0)
            })?;
            let (delivered, last_delivered_at) = c.query_row(
                "SELECT COUNT(*), MAX(done_at) FROM events WHERE state = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(Stats {
                pending,
                dead,
                delivered,
                last_delivered_at,
                oldest_pending_at,
            })
        })
        .await
    }

    /// Events in `state` (PENDING or DEAD), oldest first.
    pub async fn list(&self, state: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| {
            query(
                c,
                "WHERE state = ?1 ORDER BY seq LIMIT ?2",
                params![state, limit as i64],
            )
        })
        .await
    }
    /// Put dead letters back in the queue (all of them with `None`); their age restarts now,
    /// so `--max-age` counts from the retry.
    pub async fn requeue(&self, seqs: Option<Vec<i64>>) -> Result<usize, SpoolError> {
        self.ask(Cmd::Requeue(seqs, now_secs()), Slot::Count).await
    }
    /// Give up on pending or dead events for good. Their ids stay remembered (state
    /// `dropped`) for the retention window, so a redelivery is not queued again.
    pub async fn remove(&self, seqs: Vec<i64>) -> Result<usize, SpoolError> {
        self.ask(Cmd::Drop(seqs, now_secs()), Slot::Count).await
    }
    /// Make every pending event due now (at start-up: a restart usually follows a fix).
    pub async fn retry_now(&self) -> Result<usize, SpoolError> {
        self.ask(Cmd::RetryNow, Slot::Count).await
    }
    /// Forget delivered and dropped events finished before `before` (Unix seconds). Dead
    /// letters are kept until someone retries or drops them.
    pub async fn prune(&self, before: i64) -> Result<usize, SpoolError> {
        self.ask(Cmd::Prune(before), Slot::Count).await
    }
}

/// Events are the user's private data: the store is created owner-only, and a store left
/// readable by others (by an older vslack) is tightened. SQLite gives its -wal and -shm files
/// the database file's mode.
fn private_store_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the event store {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} owner-only", file.display()))?;
                tracing::warn!(file = %file.display(), "the event store was readable by others; made it owner-only (0600)");
            }
        }
    }
    Ok(())
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>, notify: Arc<Notify>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (cmds, slots): (Vec<Cmd>, Vec<Slot>) = batch.into_iter().unzip();
        // Fast path: the whole batch in one transaction. If any command fails (a full disk
        // refusing an insert), roll back and run the batch again with a savepoint per command,
        // so only the failing ones fail and the rest still share one commit.
        let mut result = run_batch(&mut conn, &cmds, false);
        if matches!(&result, Ok(answers) if answers.iter().any(Result::is_err)) {
            result = run_batch(&mut conn, &cmds, true);
        }
        let (committed, answers) = match result {
            Ok(answers) => (Ok(()), answers),
            Err(e) => (Err(e), Vec::new()),
        };
        let new_events = answers
            .iter()
            .any(|r| matches!(r, Ok(Answer::Inserted(Inserted::New))));
        if let Err(e) = &committed {
            tracing::error!(error = %e, "event store could not commit; deliveries are being refused with 503");
        } else if answers.iter().any(Result::is_err) {
            tracing::error!("event store refused a write (disk full or --max-store-mb reached?); deliveries are answered 503");
        }
        let mut answers = answers.into_iter();
        for slot in slots {
            slot.send(match &committed {
                Ok(()) => answers
                    .next()
                    .unwrap_or_else(|| Err(SpoolError("internal: no answer".into()))),
                Err(e) => Err(e.clone()),
            });
        }
        if new_events && committed.is_ok() {
            notify.notify_one();
        }
    }
}

/// Apply `cmds` in one transaction and commit it. With `isolate`, each command runs in a
/// savepoint, so a failing one is rolled back alone; without, the first failure leaves the
/// transaction uncommitted (the caller retries with `isolate`).
fn run_batch(
    conn: &mut Connection,
    cmds: &[Cmd],
    isolate: bool,
) -> Result<Vec<Result<Answer, SpoolError>>, SpoolError> {
    let mut tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        let answer = if isolate {
            let mut sp = tx.savepoint()?;
            match apply(&sp, cmd) {
                Ok(a) => sp.commit().map(|_| a).map_err(SpoolError::from),
                Err(e) => {
                    let _ = sp.rollback();
                    Err(e)
                }
            }
        } else {
            let a = apply(&tx, cmd);
            if a.is_err() {
                // Dropping `tx` rolls everything back; the caller runs the isolated pass.
                answers.push(a);
                return Ok(answers);
            }
            a
        };
        answers.push(answer);
    }
    tx.commit()?;
    Ok(answers)
}

fn apply(tx: &Connection, cmd: &Cmd) -> Result<Answer, SpoolError> {
    Ok(match cmd {
        Cmd::Insert(item) => {
            let (event, body) = &**item;
            let json = serde_json::to_string(&event).map_err(|e| SpoolError(e.to_string()))?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (event_id, notif_type, event, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let n = stmt.execute(params![event.event_id, event.notif_type, json, body, event.received_at])?;
            Answer::Inserted(if n == 1 { Inserted::New } else { Inserted::Duplicate })
        }
        Cmd::Delivered(seqs, now) => {
            each(tx, "UPDATE events SET state = 1, done_at = ?2, attempts = attempts + 1, last_error = NULL WHERE seq = ?1", seqs, *now)?;
            Answer::Unit(())
        }
        Cmd::Retry(seqs, next, error) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1 AND state = 0",
            )?;
            for s in seqs {
                stmt.execute(params![s, next, error])?;
            }
            Answer::Unit(())
        }
        Cmd::Dead(seqs, error, now) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET state = 2, attempts = attempts + 1, last_error = ?2, done_at = ?3 WHERE seq = ?1",
            )?;
            for s in seqs {
                stmt.execute(params![s, error, now])?;
            }
            Answer::Unit(())
        }
        Cmd::Requeue(None, now) => Answer::Count(tx.execute(
            "UPDATE events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = ?1 WHERE state = 2",
            [*now],
        )?),
        Cmd::Requeue(Some(seqs), now) => Answer::Count(each(
            tx,
            "UPDATE events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = ?2 WHERE seq = ?1 AND state = 2",
            seqs,
            *now,
        )?),
        Cmd::Drop(seqs, now) => Answer::Count(each(
            tx,
            "UPDATE events SET state = 3, done_at = ?2 WHERE seq = ?1 AND state IN (0, 2)",
            seqs,
            *now,
        )?),
        Cmd::Prune(before) => Answer::Count(tx.execute("DELETE FROM events WHERE state IN (1, 3) AND done_at < ?1", [*before])?),
        Cmd::RetryNow => Answer::Count(tx.execute(
            "UPDATE events SET next_attempt_ms = 0 WHERE state = 0 AND next_attempt_ms > 0",
            [],
        )?),
    })
}

/// Run `sql` (params: seq, value) for each seq; returns the rows changed.
fn each(tx: &Connection, sql: &str, seqs: &[i64], value: i64) -> Result<usize, SpoolError> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut n = 0;
    for s in seqs {
        n += stmt.execute(params![s, value])?;
    }
    Ok(n)
}

fn query(
    tx: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Queued>, SpoolError> {
    let sql = format!(
        "SELECT seq, event, attempts, next_attempt_ms, last_error, state FROM events {clause}"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, |r| {
        let json: String = r.get(1)?;
        let state: i64 = r.get(5)?;
        Ok((r.get(0)?, json, r.get(2)?, r.get(3)?, r.get(4)?, state))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, json, attempts, next_attempt_ms, last_error, state) = row?;
        let event: Event = serde_json::from_str(&json)
            .map_err(|e| SpoolError(format!("event {seq} is unreadable: {e}")))?;
        out.push(Queued {
            seq,
            event,
            attempts,
            next_attempt_ms,
            last_error,
            state: match state {
                PENDING => "pending",
                DELIVERED => "delivered",
                DEAD => "dead",
                _ => "dropped",
            },
        });
    }
    Ok(out)
}

/// Open the store read-only style for one-off inspection; `None` when it does not exist yet.
pub fn open_existing(path: &Path) -> Result<Option<Spool>> {
    if !path.exists() {
        return Ok(None);
    }
    Spool::open(path, &SpoolOptions::default()).map(Some)
}
