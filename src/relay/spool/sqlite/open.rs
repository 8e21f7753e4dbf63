//! Opening the store: the schema, the read-write connection (WAL, `synchronous=FULL`, an
//! integrity check, the size cap), the read-only one, and counting what it holds.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::{SpoolError, Stats};

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
CREATE INDEX IF NOT EXISTS events_pending ON events(seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS events_alerts ON events(seq)
    WHERE state = 0 AND notif_type IN ('vslack_alert', 'vslack_recovered');
";

/// The read-write connection: WAL, `synchronous=FULL`, the schema, and with a size cap the
/// number of pages new events may use (the cap less a reserve: see `Writer`).
pub(super) fn open_writer(
    path: &Path,
    max_bytes: Option<u64>,
) -> Result<(Connection, Option<i64>)> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the event store {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .and_then(|_| conn.pragma_update(None, "synchronous", "FULL"))
        .and_then(|_| conn.execute_batch(SCHEMA))
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
    let mut insert_pages = None;
    if let Some(max) = max_bytes {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (max as i64 / page).max(64);
        conn.pragma_update(None, "max_page_count", pages)?;
        insert_pages = Some(pages - (pages / 10).max(16));
    }
    Ok((conn, insert_pages))
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
