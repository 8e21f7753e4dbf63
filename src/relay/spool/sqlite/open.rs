//! Opening the store: the schema, the read-write connection (WAL, `synchronous=FULL`, an
//! integrity check, the size cap), the read-only one, and counting what it holds.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::checkpoint::{CHECKPOINT_PAGES, WAL_FILE_LIMIT};
use super::{SpoolError, Stats};

/// The events table. `seq` is the rowid (one more than the largest: `forget` keeps the newest
/// row so numbers are never reused) and `event_id` has no index: the writer keeps the ids in
/// memory (see `seen`). Stores made before that are rebuilt in this shape at open
/// ([`upgrade`]).
const TABLE: &str = "
    seq             INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL,
    notif_type      TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            BLOB NOT NULL,
    received_at     INTEGER NOT NULL,
    state           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER
";

const COLUMNS: &str = "seq, event_id, notif_type, event, body, received_at, state, attempts, next_attempt_ms, last_error, done_at";

const PENDING_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS events_pending ON events(seq, next_attempt_ms) WHERE state = 0;";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_done ON events(done_at) WHERE state <> 0;
CREATE INDEX IF NOT EXISTS events_alerts ON events(seq)
    WHERE state = 0 AND notif_type IN ('vslack_alert', 'vslack_recovered');
";

/// Create the table and its indexes, rebuilding a table of the earlier shape (a unique index on
/// `event_id`, `AUTOINCREMENT`: an index page and the sequence page written with every commit).
/// The rebuild copies the table once, in one transaction; if it cannot (no room for the copy),
/// the store keeps working in its old shape and this is logged. Only the store's owner
/// (`owner`: the relay, holding its lock) rebuilds: an older relay may still run on the file.
fn schema(conn: &Connection, owner: bool) -> rusqlite::Result<()> {
    conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS events ({TABLE});"))?;
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |r| r.get(0),
    )?;
    if owner && (sql.contains("AUTOINCREMENT") || sql.contains("UNIQUE")) {
        let started = std::time::Instant::now();
        match upgrade(conn) {
            Ok(n) => tracing::info!(
                events = n,
                took_ms = started.elapsed().as_millis() as u64,
                "event store upgraded: ids checked in memory, no unique index"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot upgrade the event store (it keeps working as it is)")
            }
        }
    }
    if owner {
        // (The two indexes serve every query too: a store that cannot change them now, the
        // disk full or the file locked, keeps working and is changed at a later start.)
        if let Err(e) = one_pending_index(conn) {
            tracing::warn!(error = %e, "cannot merge the event store's pending indexes (it keeps working as it is)");
        }
    }
    conn.execute_batch(&format!("{PENDING_INDEX}{INDEXES}"))
}

/// Pending events had two indexes, `events_pending(seq)` and `events_due(next_attempt_ms,
/// seq)`: every new event and every outcome wrote both. One index in arrival order that carries
/// the retry time serves both (the forwarder takes due events oldest first, and the next retry
/// time is a scan of that index alone): 3.5 µs less CPU per event at concurrency 16 (README,
/// Benchmarks). With 100,000 events waiting to be retried, a look for due events reads the
/// index alone (5 ms, was 20 ms through the table), the next retry time scans it (7 ms, was a
/// seek). The owner replaces the two in one transaction, so readers see one or the other.
fn one_pending_index(conn: &Connection) -> rusqlite::Result<()> {
    let index = |name: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
    };
    let old_pending = index("events_pending")?.is_some_and(|sql| !sql.contains("next_attempt_ms"));
    if old_pending || index("events_due")?.is_some() {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!(
            "DROP INDEX IF EXISTS events_due; DROP INDEX IF EXISTS events_pending; {PENDING_INDEX}"
        ))?;
        tx.commit()?;
    }
    Ok(())
}

/// Rebuild the events table in the current shape; returns how many rows it holds. Where
/// `AUTOINCREMENT` had numbered past the largest row left (the newest were forgotten), a
/// finished placeholder row keeps that number taken, so no new event reuses the number of one
/// already shown (`forget` always keeps the newest row).
fn upgrade(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE events_upgraded ({TABLE});
         INSERT INTO events_upgraded ({COLUMNS}) SELECT {COLUMNS} FROM events ORDER BY seq;
         INSERT INTO events_upgraded (seq, event_id, notif_type, event, body, received_at, state, done_at)
             SELECT s.seq, 'vslack-numbering-' || s.seq, 'vslack_numbering',
                    json_object('event_id', 'vslack-numbering-' || s.seq, 'notif_type', 'vslack_numbering', 'received_at', unixepoch()),
                    x'', unixepoch(), 3, unixepoch()
             FROM sqlite_sequence s
             WHERE s.name = 'events' AND s.seq > (SELECT IFNULL(MAX(seq), 0) FROM events);
         DROP TABLE events;
         ALTER TABLE events_upgraded RENAME TO events;
         DELETE FROM sqlite_sequence WHERE name = 'events';"
    ))
    .and_then(|_| conn.execute_batch(&format!("{PENDING_INDEX}{INDEXES}")))
    .and_then(|_| conn.execute_batch("COMMIT"))
    .inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
}

/// The read-write connection: WAL, `synchronous=FULL`, the schema, and with a size cap its
/// number of pages (new events may use it less a reserve: see [`reserve_pages`]).
pub(super) fn open_writer(
    path: &Path,
    max_bytes: Option<u64>,
    owner: bool,
) -> Result<(Connection, Option<i64>)> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the event store {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
        .and_then(|_| conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES))
        .and_then(|_| conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT))
        .and_then(|_| schema(&conn, owner))
        .map_err(|e| anyhow::anyhow!(SpoolError::from(e)))
        .with_context(|| {
            format!(
                "cannot initialise the event store {} (is the disk writable? `vslack store check` examines the file)",
                path.display()
            )
        })?;
    // A damaged file is named, with the way forward, rather than failing later on some page.
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string());
    if check != "ok" {
        return Err(crate::exit::SetupError(format!(
            "the event store {} is damaged ({}): `vslack store check` shows the damage, and `vslack store recover` saves every readable event into a new store (the damaged file is kept aside)",
            path.display(),
            crate::output::printable(&check)
        ))
        .into());
    }
    // With a size cap, new events may fill it only up to a reserve, so the outcomes of what
    // is queued (retries, deliveries) can always be written: a full store must never stop
    // the forwarder from recording what it posted.
    let mut cap = None;
    if let Some(max) = max_bytes {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (max as i64 / page).max(64);
        conn.pragma_update(None, "max_page_count", pages)?;
        cap = Some(pages);
    }
    Ok((conn, cap))
}

/// Whether new events would eat into the reserve kept for outcomes under the cap (`cap`
/// pages; `None`: no cap).
pub(super) fn over_insert_limit(conn: &Connection, cap: Option<i64>) -> bool {
    let Some(cap) = cap else {
        return false;
    };
    let used: rusqlite::Result<i64> = conn.query_row(
        "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
        [],
        |r| r.get(0),
    );
    used.is_ok_and(|u| u >= cap - reserve_pages(cap))
}

/// The pages of a store capped at `cap` pages that new events may not use: kept for outcomes.
pub(super) fn reserve_pages(cap: i64) -> i64 {
    (cap / 10).max(16)
}

/// Count everything (at open, and after another process changed the store): three narrow
/// queries over the partial indexes.
pub(super) fn count_all(c: &Connection) -> Result<Stats, SpoolError> {
    let pending = c.query_row("SELECT COUNT(*) FROM events WHERE state = 0", [], |r| {
        r.get(0)
    })?;
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
        oldest_pending_at: oldest_pending(c)?,
    })
}

/// When the first pending event in arrival order was received (one index probe).
pub(super) fn oldest_pending(c: &Connection) -> Result<Option<i64>, SpoolError> {
    use rusqlite::OptionalExtension;
    Ok(c.query_row(
        "SELECT received_at FROM events INDEXED BY events_pending WHERE state = 0 ORDER BY seq LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()?)
}

/// The read-only connection for queries.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let reader = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the event store {}", path.display()))?;
    reader.busy_timeout(Duration::from_secs(5))?;
    Ok(reader)
}

impl super::writer::Writer {
    /// Copy everything this connection sees (WAL included) into a new file, make it the
    /// store's file, and continue on it.
    pub(super) fn restore(&mut self) -> Result<super::writer::Answer, SpoolError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e: std::io::Error| SpoolError(format!("cannot restore the event store: {e}"));
        let tmp = self.path.with_extension("restoring");
        let _ = std::fs::remove_file(&tmp);
        self.conn
            .execute("VACUUM INTO ?1", [tmp.to_string_lossy()])?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        let (conn, cap) = super::open_writer(&self.path, self.max_bytes, false)
            .map_err(|e| SpoolError(format!("{e:#}")))?;
        self.conn = conn;
        self.cap_pages = cap;
        self.checkpointed = 0;
        // The version is the connection's own: read the ids again on the new one.
        self.data_version = None;
        // The log files may have gone with the old file's directory entry: start a new one.
        // The next logged events commit synced (they may be in a log file that went too).
        self.logged_gen = 0;
        if let Some(link) = &self.link {
            link.rotate
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(super::writer::Answer::Unit(()))
    }
}
