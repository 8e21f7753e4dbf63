//! The writer thread: owns the read-write connection, applies requests in batches (one
//! transaction, one fsync for all of them: group commit), makes room when the store is full,
//! and keeps the store's fault state up to date. In the relay, new events arrive already
//! acknowledged from the ack log (see `acks`) and are stored in the table every few
//! milliseconds in one transaction (see `logged`); other openers insert directly.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::logged::Backlog;

use rusqlite::Connection;
use rusqlite::TransactionBehavior::Immediate;
use tokio::sync::Notify;

use tokio::sync::oneshot;

use super::apply::{apply, forget, Delta};
use super::seen::Seen;
use super::{Delivery, Fault, Inserted, SpoolError, FULL};
use crate::relay::now_secs;

pub(super) type Reply<T> = oneshot::Sender<Result<T, SpoolError>>;

/// An event ready to store, serialised (and its dedup key computed) by the caller, off the
/// writer thread, which every delivery waits for.
pub(super) struct NewRow {
    pub key: u128,
    pub event_id: String,
    pub notif_type: String,
    pub json: String,
    pub body: Vec<u8>,
    pub received_at: i64,
}

impl NewRow {
    /// A `low_credit` event with id `id` and an empty body (for unit tests).
    #[cfg(test)]
    pub(super) fn named(id: &str) -> NewRow {
        NewRow {
            key: super::seen::key(id),
            event_id: id.into(),
            notif_type: "low_credit".into(),
            json: "{}".into(),
            body: b"{}".to_vec(),
            received_at: 0,
        }
    }

    pub(super) fn new(new: Delivery) -> Result<NewRow, SpoolError> {
        let json = super::column::column_for(&new)?;
        let (event, body) = new.into_parts();
        Ok(NewRow {
            key: super::seen::key(&event.event_id),
            event_id: event.event_id,
            notif_type: event.notif_type,
            json,
            body,
            received_at: event.received_at,
        })
    }
}

/// What the writer thread is asked to do.
pub(super) enum Cmd {
    Insert(Box<NewRow>),
    /// Events acknowledged in the ack log wait to be stored in the table (see `acks::Link`).
    Logged,
    Delivered(Vec<i64>, i64),
    Retry(Vec<i64>, i64, String),
    Dead(Vec<i64>, String, i64),
    Progress(Vec<crate::relay::spool::Progress>),
    Requeue(Option<Vec<i64>>, i64),
    Drop(Vec<i64>, i64),
    Prune(i64, i64),
    RetryNow,
    Restore,
    /// Store the logged events (as every command does first), then checkpoint the WAL.
    Flush,
    /// Nothing: answered once the commands before it are (the ack path waits on it).
    Barrier,
}

/// What it answers.
pub(super) enum Answer {
    Inserted(Inserted),
    Unit(()),
    Count(usize),
}

/// Where the answer goes; the caller's type decides which variant.
pub(super) enum Slot {
    Inserted(Reply<Inserted>),
    Unit(Reply<()>),
    Count(Reply<usize>),
}

impl Slot {
    pub(super) fn send(self, answer: Result<Answer, SpoolError>) {
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

pub(super) type Op = (Cmd, Slot);

/// The writer thread's state: the read-write connection and what it reports back.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) notify: Arc<Notify>,
    pub(super) fault: Arc<std::sync::Mutex<Option<Fault>>>,
    pub(super) retention: Duration,
    /// The store's file, and its size cap, to reopen it after a restore.
    pub(super) path: std::path::PathBuf,
    pub(super) max_bytes: Option<u64>,
    /// The size cap in pages (`max_page_count`; `None`: no cap), lifted while logged events
    /// are stored. New events may use it only up to a reserve for outcomes.
    pub(super) cap_pages: Option<i64>,
    /// The counts `stats()` answers from, kept current here (no query per request).
    pub(super) stats: Arc<std::sync::Mutex<super::Stats>>,
    /// `PRAGMA data_version` when `seen` was read: it moves when another connection writes.
    pub(super) data_version: Option<i64>,
    /// Another process changed the store: the counts are to be taken again.
    pub(super) stale: bool,
    /// Disk space set aside to record outcomes on a full disk.
    pub(super) ballast: super::ballast::Ballast,
    /// The ids the table holds and those logged (the dedup check), shared with the ack path.
    pub(super) seen: Arc<Mutex<Seen>>,
    /// The relay's ack path: the events it logged, where to say new events are refused, and
    /// to ask for a new log file (after a restore). `None` for other openers, which insert
    /// directly.
    pub(super) link: Option<super::acks::Link>,
    /// The log generation a synced commit has taken the mark into (files before it can go).
    pub(super) logged_gen: u64,
    /// Why the last logged events could not be stored, if they could not.
    pub(super) logged_error: Option<SpoolError>,
    /// When the writer last tried to make room for refused events.
    pub(super) room_tried: Option<Instant>,
    /// The connection's `total_changes` at the last checkpoint made when quiet.
    pub(super) checkpointed: u64,
}

/// Why new events are refused when the size cap is reached.
pub(super) fn cap_reached() -> SpoolError {
    SpoolError(format!("{FULL} (--max-store-mb reached)"))
}

impl Writer {
    /// Why new events cannot be stored now, if they cannot: they would eat into the reserve
    /// kept for outcomes (under the size cap, or on disk).
    pub(super) fn refuse_inserts(&self) -> Option<SpoolError> {
        if !self.ballast.armed() {
            return Some(SpoolError(format!(
                "{FULL} (the disk is full: its space for recording outcomes is in use)"
            )));
        }
        super::open::over_insert_limit(&self.conn, self.cap_pages).then(cap_reached)
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Op>, backlog: Backlog) {
        let mut backlog = backlog;
        loop {
            let mut batch = Vec::new();
            let idle = backlog.is_empty();
            let (closed, quiet) = match rx.recv_timeout(backlog.wait(self.link.is_some())) {
                Ok(op) => {
                    batch.push(op);
                    (false, false)
                }
                Err(e) => (e == mpsc::RecvTimeoutError::Disconnected, idle),
            };
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let (mut cmds, mut slots) = (Vec::new(), Vec::new());
            for (cmd, slot) in batch {
                match cmd {
                    Cmd::Logged => backlog.woken(),
                    cmd => {
                        cmds.push(cmd);
                        slots.push(slot);
                    }
                }
            }
            self.ballast.rearm_if_due();
            // Stored first when another command comes: a restore copies them with the rest.
            self.store_backlog(&mut backlog, closed || !cmds.is_empty());
            if closed {
                return;
            }
            self.publish_refusal();
            if cmds.is_empty() {
                // (Not if events were logged since the wait ended: they are stored first.)
                if quiet && backlog.is_empty() {
                    self.checkpoint_if_quiet();
                }
                continue;
            }
            let answers = self.apply_all(&cmds);
            self.publish_refusal();
            let new_events = answers
                .iter()
                .any(|r| matches!(r, Ok(Answer::Inserted(Inserted::New))));
            self.report(&cmds, &answers);
            for (slot, answer) in slots.into_iter().zip(answers) {
                slot.send(answer);
            }
            if new_events {
                self.notify.notify_one();
            }
        }
    }

    /// Fast path: the whole batch in one transaction (one fsync). If any command fails (a
    /// full store refusing an insert), the batch is rolled back and each command runs in a
    /// transaction of its own, so only the failing ones fail. (Not savepoints: on a full disk
    /// SQLite may roll back the whole transaction under them.) An insert refused for lack
    /// of room first makes room, then is tried once more.
    fn apply_all(&mut self, cmds: &[Cmd]) -> Vec<Result<Answer, SpoolError>> {
        if cmds.iter().any(|c| matches!(c, Cmd::Restore | Cmd::Flush)) {
            return cmds
                .iter()
                .map(|c| match c {
                    Cmd::Restore => self.restore(),
                    // A clean stop leaves everything in the database file, the WAL empty;
                    // an error when what was logged could not be stored (just before).
                    Cmd::Flush => match &self.logged_error {
                        Some(e) => Err(e.clone()),
                        None => Ok(self
                            .conn
                            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                            .map(|_| Answer::Unit(()))?),
                    },
                    other => self.one(other),
                })
                .collect();
        }
        if let Ok(answers) = self.batch(cmds) {
            return answers.into_iter().map(Ok).collect();
        }
        let mut made_room = false;
        cmds.iter()
            .map(|cmd| {
                let mut r = self.one(cmd);
                if r.as_ref().is_err_and(|e| e.is_full()) && !made_room {
                    made_room = true;
                    if self.make_room().is_ok_and(|freed| freed > 0) {
                        r = self.one(cmd);
                    }
                }
                // What was posted must be recorded, or a restart posts it again: on a full
                // disk, spend the reserve on it.
                let outcome = matches!(
                    cmd,
                    Cmd::Delivered(..) | Cmd::Dead(..) | Cmd::Retry(..) | Cmd::Progress(..)
                );
                if outcome && r.as_ref().is_err_and(|e| e.is_full()) && self.ballast.release() {
                    r = self.one(cmd);
                }
                r
            })
            .collect()
    }

    fn batch(&mut self, cmds: &[Cmd]) -> Result<Vec<Answer>, SpoolError> {
        if cmds.iter().any(|c| matches!(c, Cmd::Insert(_))) {
            if let Some(e) = self.refuse_inserts() {
                return Err(e);
            }
        }
        let tx = self.conn.transaction_with_behavior(Immediate)?;
        let seen = self.seen.clone();
        let mut seen = seen
            .lock()
            .map_err(|_| SpoolError("dedup set poisoned".into()))?;
        self.stale |= seen.catch_up(&tx, &mut self.data_version);
        // (Held through the commit only for inserts: the ack path checks ids meanwhile.)
        let seen = cmds
            .iter()
            .any(|c| matches!(c, Cmd::Insert(_)))
            .then_some(seen);
        let mut d = Delta::default();
        let answers = cmds
            .iter()
            .map(|c| apply(&tx, c, &mut d, seen.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(seen);
        tx.commit()?;
        self.count(d);
        Ok(answers)
    }

    fn one(&mut self, cmd: &Cmd) -> Result<Answer, SpoolError> {
        if matches!(cmd, Cmd::Insert(_)) {
            if let Some(e) = self.refuse_inserts() {
                return Err(e);
            }
        }
        let tx = self.conn.transaction_with_behavior(Immediate)?;
        let seen = self.seen.clone();
        let mut seen = seen
            .lock()
            .map_err(|_| SpoolError("dedup set poisoned".into()))?;
        self.stale |= seen.catch_up(&tx, &mut self.data_version);
        let seen = matches!(cmd, Cmd::Insert(_)).then_some(seen);
        let mut d = Delta::default();
        let answer = apply(&tx, cmd, &mut d, seen.as_deref())?;
        drop(seen);
        tx.commit()?;
        self.count(d);
        Ok(answer)
    }

    /// Free what the store does not need: the raw bodies of finished events, and finished
    /// events past the retention window. Returns how many rows changed.
    pub(super) fn make_room(&mut self) -> Result<usize, SpoolError> {
        let before = now_secs() - self.retention.as_secs() as i64;
        let tx = self.conn.transaction_with_behavior(Immediate)?;
        if let Ok(mut seen) = self.seen.lock() {
            self.stale |= seen.catch_up(&tx, &mut self.data_version);
        }
        let bodies = super::column::free_bodies(&tx, None)?;
        let mut d = Delta::default();
        let forgotten = forget(&tx, before, &mut d)?;
        tx.commit()?;
        self.count(d);
        if bodies + forgotten > 0 {
            tracing::warn!(
                bodies_freed = bodies,
                forgotten,
                "the event store was full: freed the bodies of delivered events and forgot expired ones"
            );
        }
        Ok(bodies + forgotten)
    }

    /// Log failures once per batch and keep the store's fault up to date: full while an insert
    /// is refused for room, clear again as soon as one is stored.
    fn report(&self, cmds: &[Cmd], answers: &[Result<Answer, SpoolError>]) {
        let inserts = cmds
            .iter()
            .zip(answers)
            .filter(|(c, _)| matches!(c, Cmd::Insert(_)));
        let mut full = None;
        let mut stored = false;
        for (_, a) in inserts {
            match a {
                Ok(_) => stored = true,
                Err(e) if e.is_full() => full = Some(e.0.clone()),
                Err(_) => {}
            }
        }
        if let Some(e) = answers.iter().find_map(|a| a.as_ref().err()) {
            tracing::error!(error = %e, "event store refused a write; deliveries are answered 503 until it can store them");
        }
        let Ok(mut fault) = self.fault.lock() else {
            return;
        };
        if let Some(e) = answers
            .iter()
            .find_map(|a| a.as_ref().err().filter(|e| e.is_corrupt()))
        {
            *fault = Some(Fault::Broken(e.0.clone()));
            return;
        }
        match (&*fault, full, stored) {
            (Some(Fault::Broken(_)), _, _) => {}
            (_, Some(e), false) => {
                *fault = Some(Fault::Full(format!(
                    "{e} (size cap or disk); refusing deliveries with 503 until there is room"
                )))
            }
            (Some(Fault::Full(_)), _, true) => {
                tracing::info!("the event store has room again; accepting deliveries");
                *fault = None;
            }
            _ => {}
        }
    }
}
