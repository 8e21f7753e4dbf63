//! The durable queue, behind one small interface ([`Store`]) with two backends:
//!
//! - [`sqlite`]: an embedded SQLite file in the data directory (the default). One relay
//!   owns it (a file lock), and a writer thread group-commits concurrent deliveries.
//! - [`postgres`]: a PostgreSQL database several relays share (`--store postgres://…`).
//!   Inserts are deduplicated by the unique event id across relays; one relay at a time
//!   forwards (a session advisory lock that the server releases when its holder's connection
//!   drops), woken by `LISTEN`/`NOTIFY`.
//!
//! The guarantees are the backends' contract (one test suite runs against both): an insert
//! returns only after its row is committed; an `event_id` seen within the retention window is
//! a duplicate; outcomes apply only to pending rows; pending rows are never pruned.
//!
//! [`Spool`] is the handle the relay and the commands hold: the backend plus what every
//! backend shares (the arrival signal, the fault that makes the relay answer 503).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::{watch, Notify};

mod location;
pub mod postgres;
pub mod sqlite;
mod types;

pub use location::Location;
pub use types::*;
use types::{retention, CORRUPT, FULL};

use super::event::{Delivery, Event};
use super::now_secs;

/// What the handle shares with its backend.
#[derive(Clone, Default)]
pub struct Shared {
    /// Signalled after new events commit, to wake the forwarder.
    pub arrived: Arc<Notify>,
    /// Why the store refuses events now, if it does (full, or see [`Spool::set_fault`]).
    pub fault: Arc<Mutex<Option<Fault>>>,
}

/// What a store backend does. Times are the relay's steady clock (see `clock`); `seq` is the
/// store's own number for an event, in arrival order.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Commit a verified event; `Duplicate` if its id was seen within the retention window.
    async fn insert(&self, new: Delivery) -> Result<Inserted, SpoolError>;
    /// Pending events due at `now_ms`, oldest first.
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError>;
    /// The relay's own alerts that are due, oldest first.
    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError>;
    /// When the next pending event becomes due (ms), if any.
    async fn next_due(&self) -> Result<Option<i64>, SpoolError>;
    async fn mark_delivered(&self, seqs: Vec<i64>, now: i64) -> Result<(), SpoolError>;
    /// Count an attempt and schedule the next one.
    async fn mark_retry(
        &self,
        seqs: Vec<i64>,
        next_ms: i64,
        error: String,
    ) -> Result<(), SpoolError>;
    async fn mark_dead(&self, seqs: Vec<i64>, error: String, now: i64) -> Result<(), SpoolError>;
    /// Record where events going to several destinations have got (their `legs`), count an
    /// attempt, and schedule the next: each update applies to a pending event only.
    async fn mark_progress(&self, updates: Vec<Progress>) -> Result<(), SpoolError>;
    /// Events in `state`, oldest first.
    async fn list(&self, state: i64, limit: usize) -> Result<Vec<Queued>, SpoolError>;
    /// Events numbered `from..=to`, whatever their state.
    async fn list_range(&self, from: i64, to: i64, limit: usize)
        -> Result<Vec<Queued>, SpoolError>;
    /// Dead letters back to pending (all with `None`), received again at `now`; the
    /// destinations that refused one (`legs.dead`) are tried again.
    async fn requeue(&self, seqs: Option<Vec<i64>>, now: i64) -> Result<usize, SpoolError>;
    /// Pending or dead events given up on (state `dropped`, remembered for dedup).
    async fn remove(&self, seqs: Vec<i64>, now: i64) -> Result<usize, SpoolError>;
    /// Make every pending event due now.
    async fn retry_now(&self) -> Result<usize, SpoolError>;
    /// Forget delivered and dropped events finished before `before`; empty the bodies of
    /// those finished before `bodies_before`.
    async fn prune(&self, before: i64, bodies_before: i64) -> Result<usize, SpoolError>;
    async fn stats(&self) -> Result<Stats, SpoolError>;
    /// When the oldest pending Vast.ai event (not a relay alert) arrived.
    async fn oldest_event_pending(&self) -> Result<Option<i64>, SpoolError>;
    /// Pending events per type.
    async fn pending_by_type(&self) -> Result<Vec<(String, usize)>, SpoolError>;
    /// Make everything acknowledged so far visible to other processes (SQLite: store what
    /// the ack log holds past the table), before a clean stop.
    async fn flush(&self) -> Result<(), SpoolError> {
        Ok(())
    }
    /// Rewrite the store from what this process holds (SQLite: after its file was deleted).
    async fn restore(&self) -> Result<(), SpoolError> {
        Err(SpoolError(
            "this store cannot be restored by the relay".into(),
        ))
    }
    /// Start competing for the right to forward; the receiver says whether this process
    /// holds it. Only one process forwards from a store at a time.
    fn forwarding(&self, relay: &str) -> watch::Receiver<bool> {
        let _ = relay;
        watch::channel(true).1
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    store: Arc<dyn Store>,
    /// Signalled after new events commit, to wake the forwarder.
    pub arrived: Arc<Notify>,
    fault: Arc<Mutex<Option<Fault>>>,
    /// The SQLite file, or (shared store) where it would be: this relay's own files
    /// (`incidents.json`, the lock) sit beside it.
    path: PathBuf,
    location: Arc<Location>,
}

impl Spool {
    /// Open (creating if needed) the SQLite store at `path` and start its writer thread.
    pub fn open(path: &Path, opts: &SpoolOptions) -> Result<Spool> {
        let shared = Shared::default();
        let store = sqlite::Sqlite::open(path, opts, shared.clone())?;
        Ok(Spool::wrap(
            Arc::new(store),
            shared,
            path,
            Location::Sqlite(path.to_owned()),
        ))
    }

    /// Open the store at `location`; `path` is where the SQLite file is or would be.
    pub async fn open_at(location: &Location, path: &Path, opts: &SpoolOptions) -> Result<Spool> {
        match location {
            Location::Sqlite(p) => Spool::open(p, opts),
            Location::Postgres(url) => {
                let shared = Shared::default();
                let store = postgres::Postgres::open(url, opts, shared.clone()).await?;
                Ok(Spool::wrap(Arc::new(store), shared, path, location.clone()))
            }
        }
    }

    fn wrap(store: Arc<dyn Store>, shared: Shared, path: &Path, location: Location) -> Spool {
        Spool {
            store,
            arrived: shared.arrived,
            fault: shared.fault,
            path: path.to_owned(),
            location: Arc::new(location),
        }
    }

    /// The SQLite file, or where it would be (this relay's own files sit beside it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn location(&self) -> &Location {
        &self.location
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

    pub async fn restore(&self) -> Result<(), SpoolError> {
        self.store.restore().await
    }
    pub async fn flush(&self) -> Result<(), SpoolError> {
        self.store.flush().await
    }
    pub fn forwarding(&self, relay: &str) -> watch::Receiver<bool> {
        self.store.forwarding(relay)
    }
    /// Store `event` with `body` (any body: see [`Delivery::given`]).
    pub async fn insert(&self, event: Event, body: Vec<u8>) -> Result<Inserted, SpoolError> {
        self.store.insert(Delivery::given(event, body)).await
    }
    /// Store a delivery as received (see [`Delivery`]).
    pub async fn insert_delivery(&self, new: Delivery) -> Result<Inserted, SpoolError> {
        self.store.insert(new).await
    }
    pub async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.store.due(now_ms, limit).await
    }
    pub async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.store.due_alerts(now_ms, limit).await
    }
    pub async fn next_due(&self) -> Result<Option<i64>, SpoolError> {
        self.store.next_due().await
    }
    pub async fn mark_delivered(&self, seqs: Vec<i64>, now: i64) -> Result<(), SpoolError> {
        self.store.mark_delivered(seqs, now).await
    }
    pub async fn mark_retry(
        &self,
        seqs: Vec<i64>,
        next: i64,
        err: String,
    ) -> Result<(), SpoolError> {
        self.store.mark_retry(seqs, next, err).await
    }
    pub async fn mark_dead(&self, seqs: Vec<i64>, err: String, now: i64) -> Result<(), SpoolError> {
        self.store.mark_dead(seqs, err, now).await
    }
    pub async fn mark_progress(&self, updates: Vec<Progress>) -> Result<(), SpoolError> {
        self.store.mark_progress(updates).await
    }
    /// The counts, kept current by the backend: `/health` and `/metrics` answer at once
    /// whatever the backlog.
    pub async fn stats(&self) -> Result<Stats, SpoolError> {
        self.store.stats().await
    }
    pub async fn list(&self, state: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        self.store.list(state, limit).await
    }
    pub async fn list_range(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Queued>, SpoolError> {
        self.store.list_range(from, to, limit).await
    }
    /// Put dead letters back in the queue (all of them with `None`); their age restarts now,
    /// so `--max-age` counts from the retry.
    pub async fn requeue(&self, seqs: Option<Vec<i64>>) -> Result<usize, SpoolError> {
        self.store.requeue(seqs, now_secs()).await
    }
    /// Give up on pending or dead events for good. Their ids stay remembered (state
    /// `dropped`) for the retention window, so a redelivery is not queued again.
    pub async fn remove(&self, seqs: Vec<i64>) -> Result<usize, SpoolError> {
        self.store.remove(seqs, now_secs()).await
    }
    /// Make every pending event due now (at start-up: a restart usually follows a fix).
    pub async fn retry_now(&self) -> Result<usize, SpoolError> {
        self.store.retry_now().await
    }
    /// Forget delivered and dropped events finished before `before` (Unix seconds), and
    /// drop the raw body of those finished before `bodies_before` (what deduplication and
    /// `vslack queue` need stays). Dead letters are kept until someone retries or drops them.
    pub async fn prune(&self, before: i64, bodies_before: i64) -> Result<usize, SpoolError> {
        self.store.prune(before, bodies_before).await
    }
    pub async fn oldest_event_pending(&self) -> Result<Option<i64>, SpoolError> {
        self.store.oldest_event_pending().await
    }
    pub async fn pending_by_type(&self) -> Result<Vec<(String, usize)>, SpoolError> {
        self.store.pending_by_type().await
    }
}

/// Open the SQLite store for one-off inspection; `None` when it does not exist yet.
pub fn open_existing(path: &Path) -> Result<Option<Spool>> {
    if !path.exists() {
        return Ok(None);
    }
    Spool::open(path, &SpoolOptions::default()).map(Some)
}

/// Open the store at `location` for a command (`status`, `queue`, `doctor`): `None` when it is
/// the SQLite file and that does not exist yet (a database is always there to ask).
pub async fn open_for_command(location: &Location, path: &Path) -> Result<Option<Spool>> {
    match location {
        Location::Sqlite(p) => open_existing(p),
        Location::Postgres(_) => Spool::open_at(location, path, &SpoolOptions::default())
            .await
            .map(Some),
    }
}
