//! The embedded store: a SQLite database (WAL, `synchronous=FULL`) in the data directory.
//! One writer thread owns the connection and applies requests in batches, so concurrent
//! deliveries share one transaction and one fsync (group commit). A caller is answered only
//! after its batch is on disk. In the relay (the store's owner) a new event is made durable
//! in the ack log first (`acklog`, `acks`: one append and one `fdatasync` per batch) and the
//! writer moves logged events into the table in large transactions (`logged`); at open, what
//! the log holds past the table is stored.
//!
//! Rows are kept after delivery so that a redelivered `event_id` is recognised for the
//! retention window (7 days by default); pending rows are never pruned.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

mod acklog;
mod acks;
mod apply;
mod ballast;
mod checkpoint;
mod column;
mod logged;
mod mark;
pub use column::event_json;
pub use mark::{carry_mark, unstored};
mod open;
mod read;
mod seen;
mod writer;

use super::{Delivery, Event, Fault, Inserted, Queued, Shared, SpoolError, SpoolOptions, Stats};
use super::{CORRUPT, FULL};
use open::{count_all, oldest_pending, open_reader, open_writer};
use read::{private_store_files, query};
use writer::{Cmd, Op, Reply, Slot, Writer};

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

/// The SQLite backend.
pub struct Sqlite {
    tx: mpsc::SyncSender<Op>,
    /// The ack path (the relay only): new events go there rather than to the writer.
    acks: Option<mpsc::SyncSender<acks::AckOp>>,
    /// The writer and ack threads, waited for when the store is closed.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// A second, read-only connection: the forwarder's queries, status, health, metrics and
    /// `vslack queue` read through it (WAL lets readers run beside the writer), so they never
    /// delay a commit.
    reader: Arc<std::sync::Mutex<Connection>>,
    shared: Shared,
    path: std::path::PathBuf,
    stats: Arc<std::sync::Mutex<Stats>>,
}

impl Sqlite {
    /// Open (creating if needed) the store at `path` and start its writer thread.
    pub fn open(path: &Path, opts: &SpoolOptions, shared: Shared) -> Result<Sqlite> {
        if let Some(dir) = path.parent() {
            crate::secret::ensure_private_dir(dir)?;
        }
        private_store_files(path)?;
        let (conn, cap_pages) = open_writer(path, opts.max_bytes, opts.owner)?;
        let stats = Arc::new(std::sync::Mutex::new(count_all(&conn)?));
        let reader = open_reader(path)?;
        let reader = Arc::new(std::sync::Mutex::new(reader));
        // The ids, and the version of the file they were read at (as before each write).
        let (mut seen, mut data_version) = (seen::Seen::default(), None);
        seen.catch_up(&conn, &mut data_version);
        if data_version.is_none() {
            return Err(anyhow::anyhow!(
                "cannot read the event ids in the store {}",
                path.display()
            ));
        }
        let mut conn = conn;
        let log = if opts.owner {
            let (id, gen, _) = logged::replay(&mut conn, path, &mut seen, cap_pages)?;
            let log = acklog::AckLog::create(path, id, gen, false).with_context(|| {
                format!(
                    "cannot create the ack log {}",
                    acklog::path_of(path, gen).display()
                )
            })?;
            Some((log, gen, id))
        } else {
            None
        };
        let link = acks::Link {
            seen: Arc::new(std::sync::Mutex::new(seen)),
            store_id: log.as_ref().map_or(0, |l| l.2),
            ..Default::default()
        };
        let (tx, rx) = mpsc::sync_channel::<Op>(4096);
        let backlog = logged::Backlog::new(opts.ack_log_hold);
        let w = Writer {
            conn,
            notify: shared.arrived.clone(),
            fault: shared.fault.clone(),
            retention: super::retention(opts),
            path: path.to_owned(),
            max_bytes: opts.max_bytes,
            cap_pages,
            stats: stats.clone(),
            data_version,
            stale: false,
            seen: link.seen.clone(),
            link: log.is_some().then(|| link.clone()),
            logged_gen: log.as_ref().map_or(0, |l| l.1),
            logged_error: None,
            room_tried: None,
            checkpointed: 0,
            ballast: if opts.owner {
                ballast::Ballast::new(path)
            } else {
                ballast::Ballast::none()
            },
        };
        let writer = std::thread::Builder::new()
            .name("vslack-spool".into())
            .spawn(move || w.run(rx, backlog))?;
        let mut threads = vec![writer];
        let acks = match log {
            Some((log, _, _)) => {
                let (acks_tx, acks_rx) = mpsc::sync_channel::<acks::AckOp>(4096);
                let a = acks::Acks {
                    log,
                    link,
                    writer: tx.clone(),
                    fault: shared.fault.clone(),
                    started: std::time::Instant::now(),
                };
                threads.push(
                    std::thread::Builder::new()
                        .name("vslack-acks".into())
                        .spawn(move || a.run(acks_rx))?,
                );
                Some(acks_tx)
            }
            None => None,
        };
        Ok(Sqlite {
            tx,
            acks,
            threads,
            reader,
            shared,
            path: path.to_owned(),
            stats,
        })
    }

    async fn ask<T>(&self, cmd: Cmd, slot: impl FnOnce(Reply<T>) -> Slot) -> Result<T, SpoolError> {
        let (reply, rx) = oneshot::channel();
        let op = (cmd, slot(reply));
        self.send(&self.tx, op, rx).await
    }

    /// Queue `op` on a bounded channel (when its thread falls behind, wait without blocking
    /// the runtime) and wait for the answer.
    async fn send<O: Send + 'static, T>(
        &self,
        tx: &mpsc::SyncSender<O>,
        op: O,
        rx: oneshot::Receiver<Result<T, SpoolError>>,
    ) -> Result<T, SpoolError> {
        let tx = tx.clone();
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
                if let Ok(mut f) = self.shared.fault.lock() {
                    *f = Some(Fault::Broken(e.0.clone()));
                }
            }
        }
        result
    }
}

/// Closing the store waits for its threads: the ack path answers what it holds, and the
/// writer stores what the ack log holds past the table, so a relay stopped cleanly leaves
/// everything in the table (a crash leaves it to the next start's replay).
impl Drop for Sqlite {
    fn drop(&mut self) {
        self.acks = None;
        let (closed, _) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.tx, closed));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[async_trait::async_trait]
impl super::Store for Sqlite {
    async fn insert(&self, new: Delivery) -> Result<Inserted, SpoolError> {
        let row = Box::new(writer::NewRow::new(new)?);
        match &self.acks {
            Some(acks) => {
                let (reply, rx) = oneshot::channel();
                self.send(acks, (row, reply), rx).await
            }
            None => self.ask(Cmd::Insert(row), Slot::Inserted).await,
        }
    }
    // (The forwarder awaits each outcome's commit before asking again, so reads see it.)
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| {
            query(
                c,
                "WHERE state = 0 AND next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2",
                params![now_ms, limit as i64],
            )
        })
        .await
    }
    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| read::due_alerts(c, now_ms, limit)).await
    }
    async fn next_due(&self) -> Result<Option<i64>, SpoolError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_attempt_ms) FROM events WHERE state = 0",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )?)
        })
        .await
    }
    async fn mark_delivered(&self, seqs: Vec<i64>, now: i64) -> Result<(), SpoolError> {
        self.ask(Cmd::Delivered(seqs, now), Slot::Unit).await
    }
    async fn mark_retry(
        &self,
        seqs: Vec<i64>,
        next_ms: i64,
        error: String,
    ) -> Result<(), SpoolError> {
        self.ask(Cmd::Retry(seqs, next_ms, error), Slot::Unit).await
    }
    async fn mark_dead(&self, seqs: Vec<i64>, error: String, now: i64) -> Result<(), SpoolError> {
        self.ask(Cmd::Dead(seqs, error, now), Slot::Unit).await
    }
    async fn mark_progress(&self, updates: Vec<super::Progress>) -> Result<(), SpoolError> {
        self.ask(Cmd::Progress(updates), Slot::Unit).await
    }
    /// The counts, as the writer keeps them: no query, so `/health` and `/metrics` answer at
    /// once whatever the backlog, and never wait behind the forwarder.
    async fn stats(&self) -> Result<Stats, SpoolError> {
        self.stats
            .lock()
            .map(|s| s.clone())
            .map_err(|_| SpoolError("stats poisoned".into()))
    }
    async fn list(&self, state: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| {
            query(
                c,
                "WHERE state = ?1 ORDER BY seq LIMIT ?2",
                params![state, limit as i64],
            )
        })
        .await
    }
    async fn list_range(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Queued>, SpoolError> {
        self.read(move |c| read::range(c, from, to, limit)).await
    }
    async fn requeue(&self, seqs: Option<Vec<i64>>, now: i64) -> Result<usize, SpoolError> {
        self.ask(Cmd::Requeue(seqs, now), Slot::Count).await
    }
    async fn remove(&self, seqs: Vec<i64>, now: i64) -> Result<usize, SpoolError> {
        self.ask(Cmd::Drop(seqs, now), Slot::Count).await
    }
    async fn retry_now(&self) -> Result<usize, SpoolError> {
        self.ask(Cmd::RetryNow, Slot::Count).await
    }
    async fn prune(&self, before: i64, bodies_before: i64) -> Result<usize, SpoolError> {
        self.ask(Cmd::Prune(before, bodies_before), Slot::Count)
            .await
    }
    async fn oldest_event_pending(&self) -> Result<Option<i64>, SpoolError> {
        self.read(read::oldest_event_pending).await
    }
    async fn pending_by_type(&self) -> Result<Vec<(String, usize)>, SpoolError> {
        self.read(read::pending_by_type).await
    }
    /// Store what the ack log holds past the table and checkpoint the WAL into the file; an
    /// error when logged events could not be stored (they stay in the log for the next start).
    async fn flush(&self) -> Result<(), SpoolError> {
        self.ask(Cmd::Flush, Slot::Unit).await
    }
    /// Write what this relay holds to a fresh file at the store's path and switch to it: after
    /// the file was deleted or replaced under the running relay, nothing acknowledged may
    /// live only in an unlinked inode. Runs on the writer thread, so no write lands between
    /// the copy and the switch.
    async fn restore(&self) -> Result<(), SpoolError> {
        self.ask(Cmd::Restore, Slot::Unit).await?;
        let fresh = open_reader(&self.path).map_err(|e| SpoolError(format!("{e:#}")))?;
        *self
            .reader
            .lock()
            .map_err(|_| SpoolError("reader poisoned".into()))? = fresh;
        Ok(())
    }
}
