//! What the store's interface speaks in: event states, errors, what an insert says, queued
//! events, counts, faults and the options a store opens with.

use std::time::Duration;

use serde::Serialize;

use crate::relay::event::Event;

pub const PENDING: i64 = 0;
pub const DELIVERED: i64 = 1;
pub const DEAD: i64 = 2;
/// Given up on by `vslack queue drop`; remembered for deduplication, then pruned.
pub const DROPPED: i64 = 3;

/// The name of a state, as `vslack queue` shows it.
pub fn state_name(state: i64) -> &'static str {
    match state {
        PENDING => "pending",
        DELIVERED => "delivered",
        DEAD => "dead",
        _ => "dropped",
    }
}

/// The store could not commit; the delivery must not be acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event store: {0}")]
pub struct SpoolError(pub String);

/// The start of a [`SpoolError`] for a full store (the size cap or the disk).
pub(super) const FULL: &str = "the event store is full";

/// The start of a [`SpoolError`] for a damaged database file.
pub(super) const CORRUPT: &str = "the event store is damaged";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// An event that goes to several destinations, as it now stands (see `Store::mark_progress`).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub seq: i64,
    /// The event as JSON, its `legs` updated.
    pub event: String,
    pub next_ms: i64,
    pub error: Option<String>,
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
    /// Cap the database size; beyond it inserts fail (and the relay answers 503). SQLite only.
    pub max_bytes: Option<u64>,
    /// How long finished events are kept for deduplication; when the store is full, older
    /// ones are forgotten at once to make room (0: the default, 7 days).
    pub retention: Duration,
    /// This process owns the store (the relay, which holds its lock): it sets aside disk
    /// space to record outcomes on a full disk (see `ballast`) and rebuilds a SQLite store of
    /// an earlier shape. Commands that only look (`status`, `queue`, `doctor`) do neither, so
    /// they never change a file an older relay may still be running on.
    pub owner: bool,
    /// For tests: how long the owner's acknowledged events wait in the SQLite ack log before
    /// they are stored in the table (default 20 ms; they are stored at close in any case).
    #[doc(hidden)]
    pub ack_log_hold: Option<Duration>,
}

/// Finished events are remembered this long unless told otherwise.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn retention(opts: &SpoolOptions) -> Duration {
    match opts.retention {
        Duration::ZERO => DEFAULT_RETENTION,
        r => r,
    }
}
