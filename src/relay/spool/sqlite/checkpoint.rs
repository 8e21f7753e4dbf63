//! When the store's WAL is copied into its file (a checkpoint): at a size SQLite checks
//! itself ([`CHECKPOINT_PAGES`]), and when the writer falls quiet. Each checkpoint's writes and
//! syncs compete with the ack log's `fdatasync`, so they are few and large, and the WAL file is
//! reused in place rather than cut back and grown again.

use super::writer::Writer;

/// The WAL is checkpointed into the file when it reaches this many pages (16 MB; SQLite's
/// default is 1,000), and by the writer when it falls quiet (see `Writer::checkpoint_if_quiet`).
/// A checkpoint's writes and syncs slow the ack log's `fdatasync` while they last: fewer,
/// larger ones leave more acknowledgements untouched, and pages written several times between
/// two (the tree's upper pages, the log's mark) are copied once. At concurrency 16, eight
/// interleaved rounds: p99 ÷ the ceiling's median 1.54 with 1,000 pages, 1.38 with 4,000;
/// over 60,000 events (several checkpoints in the turn) 1.53 against 1.34 (README, Benchmarks).
pub(super) const CHECKPOINT_PAGES: i64 = 4000;
/// When the WAL starts over after a checkpoint, a file larger than this (one large
/// transaction: a restore, a long retention pruned) is cut back to it. It is above what
/// [`CHECKPOINT_PAGES`] lets the WAL reach, so under steady traffic the file is reused in place
/// rather than grown again each cycle: growing would need new disk space on every cycle, which
/// a nearly full disk may not have (README, "A week of steady traffic").
pub(super) const WAL_FILE_LIMIT: i64 = 20 << 20;

impl Writer {
    /// After a second with nothing to write (the writer's wait when nothing is logged), copy
    /// the WAL into the file: the next burst of events then starts on an empty WAL, and the
    /// file alone holds what was written. Passive: it waits for no reader. (The size
    /// reaching [`CHECKPOINT_PAGES`] checkpoints as well, under steady traffic.)
    pub(super) fn checkpoint_if_quiet(&mut self) {
        let changes = self.conn.total_changes();
        if changes == self.checkpointed {
            return;
        }
        // (busy, frames in the WAL, frames copied): a reader in the way leaves some behind,
        // and it is tried again when quiet next; the size still checkpoints meanwhile.
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok(r.get::<_, i64>(1)? == r.get::<_, i64>(2)?)
            });
        match done {
            Ok(true) => self.checkpointed = changes,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "cannot checkpoint the event store's WAL"),
        }
    }
}
