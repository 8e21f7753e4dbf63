//! Moving acknowledged events from the ack log into the table: in the writer, in large
//! transactions that also move the mark (see `acklog`); and at open, what a crash left past
//! the mark ([`replay`]).
//!
//! These transactions commit with `synchronous=NORMAL` (no fsync of their own): the events are
//! already durable in the log, and SQLite's WAL keeps a prefix of its transactions after a
//! crash, so the mark always says truly what the table holds. Every outcome (posted, retried,
//! dead) still commits with `synchronous=FULL`, which syncs these rows with it. A log file is
//! deleted only after a synced commit has moved the mark past it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::TransactionBehavior::Immediate;

use super::acklog::{self, Mark};
use super::apply::{insert_row, Delta};
use super::mark::{mark, not_held, past_mark, set_mark, store_mark};
use super::seen::Seen;
use super::writer::{NewRow, Writer};
use super::SpoolError;

/// How long acknowledged events wait in the log before the writer stores them in the table
/// (unless [`MAX_WAITING`] are waiting, or another command comes): one transaction for many.
const STORE_LOGGED_EVERY: Duration = Duration::from_millis(20);
pub(super) const MAX_WAITING: usize = 4096;
/// A transaction of logged events is a millisecond or more of CPU: the writer offers its core
/// every this many rows, so the ack path, waking from its `fdatasync`, runs at once instead of
/// waiting out the scheduler's slice (p99 at concurrency 16 about a quarter lower on 2 cores).
const YIELD_EVERY: usize = 16;

/// Insert `rows` (already checked against the ids held); their keys go to `d.added`.
fn insert(conn: &Connection, rows: &[NewRow], d: &mut Delta) -> Result<(), SpoolError> {
    for row in rows {
        insert_row(conn, row, d)?;
    }
    Ok(())
}

/// SQLite's own limit on `max_page_count`.
const NO_CAP: i64 = 0xFFFF_FFFE;

/// Run `f` with the size cap (`max_page_count`) lifted, then set it to `cap` again: events
/// acknowledged in the log are stored whatever the cap, since they were answered 204 (those
/// logged before the writer said the cap was reached go past it). When they did, the cap is
/// set to the file's size plus the reserve kept for outcomes (see `open_writer`), so what is
/// posted can still be recorded; new events are refused meanwhile (`over_insert_limit`).
fn uncapped<T>(
    conn: &Connection,
    cap: Option<i64>,
    f: impl FnOnce() -> Result<T, SpoolError>,
) -> Result<T, SpoolError> {
    let Some(cap) = cap else { return f() };
    conn.pragma_update(None, "max_page_count", NO_CAP)?;
    let r = f();
    let size: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let reserve = super::open::reserve_pages(cap);
    conn.pragma_update(None, "max_page_count", cap.max(size + reserve).min(NO_CAP))?;
    r
}

/// Delete this store's log files of generations before `gen` (another store's are left).
fn delete_before(store: &Path, store_id: i64, gen: u64) {
    for g in acklog::generations(store).into_iter().filter(|g| *g < gen) {
        if acklog::deletable(store, store_id, g) {
            let _ = std::fs::remove_file(acklog::path_of(store, g));
        }
    }
}

/// At open (the owner only): store what the log holds past the mark, then move the mark to a
/// new generation, synced, and delete the old files. Returns the new generation and how many
/// events were stored. A log that cannot be read stops the open: it may hold acknowledged
/// events.
pub(super) fn replay(
    conn: &mut Connection,
    store: &Path,
    seen: &mut Seen,
    cap: Option<i64>,
) -> anyhow::Result<(i64, u64, usize)> {
    let (store_id, at) = store_mark(conn)?;
    let (rows, last) = past_mark(store, store_id, at, false)?;
    let next = last.max(at.gen) + 1;
    let fresh = not_held(rows, seen);
    let mut d = Delta::default();
    let tx = conn.transaction_with_behavior(Immediate)?;
    // (The cap `open_writer` set, if any, lifted while what was acknowledged is stored.)
    uncapped(&tx, cap, || {
        insert(&tx, &fresh, &mut d)?;
        set_mark(&tx, Mark { gen: next, pos: 0 })
    })?;
    tx.commit()?;
    seen.commit(&d.added, &[]);
    delete_before(store, store_id, next);
    if !fresh.is_empty() {
        tracing::info!(
            events = fresh.len(),
            "stored the acknowledged events the ack log held past the table (the relay had stopped before storing them)"
        );
    }
    Ok((store_id, next, fresh.len()))
}

/// In the writer: logged events it has taken and not stored yet (they stay here while they
/// cannot be stored), the mark past them, and since when they wait (or when to try again).
pub(super) struct Backlog {
    rows: Vec<NewRow>,
    to: Mark,
    since: Option<Instant>,
    every: Duration,
}

impl Backlog {
    pub(super) fn new(every: Option<Duration>) -> Backlog {
        Backlog {
            rows: Vec::new(),
            to: Mark::default(),
            since: None,
            every: every.unwrap_or(STORE_LOGGED_EVERY),
        }
    }

    /// How long the writer may wait for its next command.
    pub(super) fn wait(&self, owner: bool) -> Duration {
        match self.since {
            // (In the past when it is a retry's time: `elapsed` is then zero.)
            Some(t) => self.every.saturating_sub(t.elapsed()),
            None if owner => Duration::from_secs(1),
            None => Duration::from_secs(3600),
        }
    }

    /// Nothing logged waits to be stored.
    pub(super) fn is_empty(&self) -> bool {
        self.since.is_none() && self.rows.is_empty()
    }

    /// The ack path says events wait.
    pub(super) fn woken(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }
}

impl Writer {
    /// Store the logged events when they have waited long enough, when many wait, or `now`.
    pub(super) fn store_backlog(&mut self, b: &mut Backlog, now: bool) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let Ok(mut pending) = link.pending.lock() else {
            return;
        };
        let due = b.since.is_some_and(|t| t.elapsed() >= b.every);
        if !(now || due || pending.rows.len() >= MAX_WAITING) {
            return;
        }
        b.rows.append(&mut pending.rows);
        b.to = b.to.max(pending.to);
        drop(pending);
        b.since = match b.rows.is_empty() || self.store_logged(&mut b.rows, b.to) {
            true => None,
            // (Tried again in a second.)
            false => Some(Instant::now() + Duration::from_millis(980)),
        };
    }

    /// Store acknowledged rows from the log, moving the mark to `to`. On success `rows` is
    /// emptied; on failure they stay, to be tried again (they are safe in the log meanwhile).
    fn store_logged(&mut self, rows: &mut Vec<NewRow>, to: Mark) -> bool {
        let mut r = self.logged_tx(rows, to);
        if r.as_ref().is_err_and(|e| e.is_full()) {
            // Acknowledged events must be stored: make room, then spend the disk reserve.
            if self.make_room().is_ok_and(|n| n > 0) {
                r = self.logged_tx(rows, to);
            }
            if r.as_ref().is_err_and(|e| e.is_full()) && self.ballast.release() {
                r = self.logged_tx(rows, to);
            }
        }
        match r {
            Ok(d) => {
                self.count(d);
                rows.clear();
                if to.gen > self.logged_gen {
                    self.logged_gen = to.gen;
                    let id = self.link.as_ref().map_or(0, |l| l.store_id);
                    delete_before(&self.path, id, to.gen);
                }
                self.logged_error = None;
                self.notify.notify_one();
                true
            }
            Err(e) => {
                if e.is_corrupt() {
                    if let Ok(mut fault) = self.fault.lock() {
                        *fault = Some(super::Fault::Broken(e.0.clone()));
                    }
                }
                if self.logged_error.is_none() {
                    tracing::error!(error = %e, events = rows.len(), "cannot store acknowledged events from the ack log in the table (they are safe in the log; tried again)");
                }
                self.logged_error = Some(e);
                false
            }
        }
    }

    /// One transaction: the rows and the mark. Synced (`FULL`) when it moves the mark into a
    /// new generation, so the files before it can go.
    fn logged_tx(&mut self, rows: &[NewRow], to: Mark) -> Result<Delta, SpoolError> {
        let synced = to.gen > self.logged_gen;
        let mode = if synced { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", mode)?;
        let cap = self.cap_pages;
        let r = (|| {
            let tx = self.conn.transaction_with_behavior(Immediate)?;
            // (Rows the table already holds are not stored again: a copy that reached it by
            // the direct path, or a retry of a transaction that did commit.)
            let held: Vec<bool> = {
                let mut seen = self
                    .seen
                    .lock()
                    .map_err(|_| SpoolError("dedup set poisoned".into()))?;
                self.stale |= seen.catch_up(&tx, &mut self.data_version);
                rows.iter().map(|r| seen.in_table(r.key)).collect()
            };
            let mut d = Delta::default();
            uncapped(&tx, cap, || {
                match mark(&tx)? {
                    // Another opener (a replay) stored these already.
                    Some(m) if m >= to => d.added = rows.iter().map(|r| r.key).collect(),
                    _ => {
                        for (i, (row, held)) in rows.iter().zip(held).enumerate() {
                            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                                std::thread::yield_now();
                            }
                            if held {
                                d.added.push(row.key);
                            } else {
                                insert_row(&tx, row, &mut d)?;
                            }
                        }
                    }
                }
                set_mark(&tx, to)
            })?;
            // New events are refused before these rows show, so whoever sees them stored
            // also sees the refusal they bring (the writer's next look confirms or lifts it).
            if super::open::over_insert_limit(&tx, cap) {
                if let Some(Ok(mut refuse)) = self.link.as_ref().map(|l| l.refuse.lock()) {
                    refuse.get_or_insert_with(super::writer::cap_reached);
                }
            }
            tx.commit()?;
            Ok(d)
        })();
        if !synced {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
        }
        r
    }

    /// Tell the ack path whether new events may be logged: not while the store is over its
    /// cap or the disk reserve is spent (after trying to make room), nor while logged events
    /// cannot be stored.
    pub(super) fn publish_refusal(&mut self) {
        let Some(refuse) = self.link.as_ref().map(|l| l.refuse.clone()) else {
            return;
        };
        let mut why = self.refuse_inserts();
        if why.is_some() && self.room_tried.is_none_or(|t| t.elapsed().as_secs() >= 1) {
            self.room_tried = Some(std::time::Instant::now());
            if self.make_room().is_ok_and(|n| n > 0) {
                why = self.refuse_inserts();
            }
        }
        // (While logged events cannot be stored, new ones are not taken either.)
        let why = why.or_else(|| self.logged_error.clone());
        if let Ok(mut r) = refuse.lock() {
            *r = why;
        };
    }
}
