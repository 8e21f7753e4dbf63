//! Reading rows back (for the forwarder, `vslack queue`, status) and the store's files.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::Connection;

use rusqlite::params;

use super::{Event, Queued, SpoolError};

/// Events are the user's private data: the store is created owner-only, and a store left
/// readable by others (by an older vslack) is tightened. SQLite gives its -wal and -shm files
/// the database file's mode.
pub(super) fn private_store_files(path: &Path) -> Result<()> {
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

pub(super) fn query(
    tx: &Connection,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Queued>, SpoolError> {
    let sql = format!(
        "SELECT seq, event, attempts, next_attempt_ms, last_error, state, received_at, body, event_id FROM events {clause}"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, |r| {
        let column: String = r.get(1)?;
        let state: i64 = r.get(5)?;
        let received_at: i64 = r.get(6)?;
        // (The body and id only where the event is kept as its body: see `column`.)
        let event = if column.starts_with('{') {
            super::column::event_of(&column, &[], "", received_at)
        } else {
            let body = r.get_ref(7)?.as_blob().unwrap_or_default();
            super::column::event_of(&column, body, r.get_ref(8)?.as_str()?, received_at)
        };
        Ok((
            r.get(0)?,
            (event, received_at),
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            state,
        ))
    })?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        // A summary reads 10,000 at once (each parsed from its body): offer the core now and
        // then, as the writer does, so the ack path is not kept waiting.
        if i % 64 == 63 {
            std::thread::yield_now();
        }
        let (seq, (event, received_at), attempts, next_attempt_ms, last_error, state) = row?;
        let mut event: Event =
            event.map_err(|e| SpoolError(format!("event {seq} is unreadable: {e}")))?;
        // The column, which `requeue` resets: a dead letter put back ages from then.
        event.received_at = received_at;
        out.push(Queued {
            seq,
            event,
            attempts,
            next_attempt_ms,
            last_error,
            state: crate::relay::spool::state_name(state),
        });
    }
    Ok(out)
}

/// Events numbered `from..=to`, whatever their state (what a summary stood for).
pub(super) fn range(
    c: &Connection,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<Queued>, SpoolError> {
    query(
        c,
        "WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT ?3",
        params![from, to, limit.min(i64::MAX as usize) as i64],
    )
}

/// The relay's own alerts that are due, oldest first: sent ahead of any backlog (one
/// probe of a partial index that holds only them).
pub(super) fn due_alerts(
    c: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Queued>, SpoolError> {
    query(
        c,
        "INDEXED BY events_alerts WHERE state = 0 AND notif_type IN ('vslack_alert', 'vslack_recovered') AND next_attempt_ms <= ?1 ORDER BY seq LIMIT ?2",
        params![now_ms, limit as i64],
    )
}

/// When the oldest pending Vast.ai event (not one of the relay's own alerts) arrived: the
/// watchdog's backlog age.
pub(super) fn oldest_event_pending(c: &Connection) -> Result<Option<i64>, SpoolError> {
    use rusqlite::OptionalExtension;
    Ok(c.query_row(
        "SELECT received_at FROM events INDEXED BY events_pending WHERE state = 0 AND notif_type NOT IN ('vslack_alert', 'vslack_recovered') ORDER BY seq LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()?)
}

/// Pending events per type (for a backlog with routes: see `backlog`).
pub(super) fn pending_by_type(c: &Connection) -> Result<Vec<(String, usize)>, SpoolError> {
    let mut stmt = c.prepare_cached(
        "SELECT notif_type, COUNT(*) FROM events WHERE state = 0 GROUP BY notif_type",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
