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

use anyhow::Result;
use rusqlite::{params, Connection};
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

mod apply;
mod ballast;
mod open;
mod read;
mod writer;

use super::event::Event;
use super::now_secs;
use open::{count_all, oldest_pending, open_reader, open_writer};
use read::{private_store_files, query};
use writer::{Cmd, Op, Reply, Slot, Writer};

pub const PENDING: i64 = 0;
pub const DELIVERED: i64 = 1;
pub const DEAD: i64 = 2;
/// Given up on by `vslack queue drop`; remembered for deduplication, then pruned.
pub const DROPPED: i64 = 3;

/// The store could not commit; the delivery must not be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event store: {0}")]
pub struct SpoolError(pub String);

/// The start of a [`SpoolError`] for a full store (the size cap or the disk).
const FULL: &str = "the event store is full";

/// The start of a [`SpoolError`] for a damaged database file.
const CORRUPT: &str = "the event store is damaged";

impl SpoolError {
    /// The store refused for lack of space (size cap reached, or disk full).
    pub fn is_full(&self) -> bool {
        self.0.starts_with(FULL)
    }

    /// The database file is damaged: nothing more may be acknowledged from it.
    pub fn is_corrupt(&self) -> bool {
        self.0.starts_with(CORRUPT)
    }
}

fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

impl From<rusqlite::Error> for SpoolError {
    fn from(e: rusqlite::Error) -> Self {
        if is_full(&e) {
            SpoolError(format!("{FULL}: {e}"))
        } else if is_corrupt(&e) {
            SpoolError(format!(
                "{CORRUPT} ({e}): stop the relay and run `vslack store recover`"
            ))
        } else {
            SpoolError(e.to_string())
        }
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
    /// Why the store refuses events now, if it does (full, or see [`Spool::set_fault`]).
    fault: Arc<std::sync::Mutex<Option<Fault>>>,
    path: std::path::PathBuf,
    stats: Arc<std::sync::Mutex<Stats>>,
}

/// Why the store cannot take events now.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Out of room; cleared by itself as soon as an insert succeeds again.
    Full(String),
    /// Something a person must look at (the file deleted, replaced or corrupt): the relay
    /// answers 503 until it is resolved.
    Broken(String),
}

impl Fault {
    pub fn reason(&self) -> &str {
        match self {
            Fault::Full(r) | Fault::Broken(r) => r,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SpoolOptions {
    /// Cap the database size; beyond it inserts fail (and the relay answers 503).
    pub max_bytes: Option<u64>,
    /// How long finished events are kept for deduplication; when the store is full, older
    /// ones are forgotten at once to make room (0: the default, 7 days).
    pub retention: Duration,
    /// Set aside disk space to record outcomes on a full disk (see `ballast`). The relay does;
    /// commands that only look (`status`, `queue`, `doctor`) write nothing.
    pub reserve: bool,
}

/// Finished events are remembered this long unless told otherwise.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Spool {
    /// Open (creating if needed) the store at `path` and start its writer thread.
    pub fn open(path: &Path, opts: &SpoolOptions) -> Result<Spool> {
        if let Some(dir) = path.parent() {
            crate::secret::ensure_private_dir(dir)?;
        }
        private_store_files(path)?;
        let (conn, insert_pages) = open_writer(path, opts.max_bytes)?;
        let stats = Arc::new(std::sync::Mutex::new(count_all(&conn)?));
        let data_version = conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok();
        let reader = open_reader(path)?;
        let reader = Arc::new(std::sync::Mutex::new(reader));
        let (tx, rx) = mpsc::sync_channel::<Op>(4096);
        let arrived = Arc::new(Notify::new());
        let fault = Arc::new(std::sync::Mutex::new(None));
        let retention = match opts.retention {
            Duration::ZERO => DEFAULT_RETENTION,
            r => r,
        };
        let w = Writer {
            conn,
            notify: arrived.clone(),
            fault: fault.clone(),
            retention,
            insert_pages,
            path: path.to_owned(),
            max_bytes: opts.max_bytes,
            stats: stats.clone(),
            data_version,
            ballast: if opts.reserve {
                ballast::Ballast::new(path)
            } else {
                ballast::Ballast::none()
            },
        };
        std::thread::Builder::new()
            .name("vslack-spool".into())
            .spawn(move || w.run(rx))?;
        Ok(Spool {
            tx,
            reader,
            arrived,
            fault,
            path: path.to_owned(),
            stats,
        })
    }

    /// Write what this relay holds to a fresh file at the store's path and switch to it: after
    /// the file was deleted or replaced under the running relay, nothing acknowledged may
    /// live only in an unlinked inode. Runs on the writer thread, so no write lands between
    /// the copy and the switch.
    pub async fn restore(&self) -> Result<(), SpoolError> {
        self.ask(Cmd::Restore, Slot::Unit).await?;
        let fresh = open_reader(&self.path).map_err(|e| SpoolError(format!("{e:#}")))?;
        *self
            .reader
            .lock()
            .map_err(|_| SpoolError("reader poisoned".into()))? = fresh;
        Ok(())
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Why the store refuses events now, if it does.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }

    /// Mark the store broken (or, with `None`, fixed): events are refused with 503 meanwhile.
    pub fn set_fault(&self, fault: Option<Fault>) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
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
        let result = tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| SpoolError("reader poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| SpoolError(e.to_string()))?;
        if let Err(e) = &result {
            if e.is_corrupt() {
                self.set_fault(Some(Fault::Broken(e.0.clone())));
            }
        }
        result
    }

    /// The counts, as the writer keeps them: no query, so `/health` and `/metrics` answer at
    /// once whatever the backlog, and never wait behind the forwarder.
    pub async fn stats(&self) -> Result<Stats, SpoolError> {
        self.stats
            .lock()
            .map(|s| s.clone())
            .map_err(|_| SpoolError("stats poisoned".into()))
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
    /// Forget delivered and dropped events finished before `before` (Unix seconds), and
    /// drop the raw body of those finished before `bodies_before` (what deduplication and
    /// `vslack queue` need stays). Dead letters are kept until someone retries or drops them.
    pub async fn prune(&self, before: i64, bodies_before: i64) -> Result<usize, SpoolError> {
        self.ask(Cmd::Prune(before, bodies_before), Slot::Count)
            .await
    }
}

/// Open the store read-only style for one-off inspection; `None` when it does not exist yet.
pub fn open_existing(path: &Path) -> Result<Option<Spool>> {
    if !path.exists() {
        return Ok(None);
    }
    Spool::open(path, &SpoolOptions::default()).map(Some)
}
