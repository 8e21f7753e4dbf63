//! `vslack store check|recover`: look at the event store's file, and salvage a damaged one.
//! Recovery reads the damaged file row by row, skipping what cannot be read, into a fresh
//! store, then swaps the files and keeps the damaged one aside: nothing readable is lost, and
//! nothing is ever deleted.

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use super::Ctx;
use crate::cli::StoreCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: StoreCmd) -> Result<u8> {
    match cmd {
        StoreCmd::Set => return super::store_pg::set(ctx).await,
        StoreCmd::Clear => return super::store_pg::clear(ctx),
        StoreCmd::Migrate => return super::store_pg::migrate(ctx).await,
        StoreCmd::Check | StoreCmd::Recover => {}
    }
    let config = ctx.config()?;
    if let Some(url) = super::store_pg::url(&config, None)? {
        return match cmd {
            StoreCmd::Check => super::store_pg::check(ctx, &url).await,
            _ => Err(crate::exit::usage(
                "`vslack store recover` repairs the SQLite file; this machine stores events in PostgreSQL, whose own tools (and replication) protect it",
            )),
        };
    }
    let path = ctx.paths.spool_file();
    if !path.exists() {
        return Err(crate::exit::NotFoundError(format!(
            "there is no event store at {} yet (the relay creates it when it first runs)",
            path.display()
        ))
        .into());
    }
    match cmd {
        StoreCmd::Check => check(ctx, &path),
        StoreCmd::Recover => recover(ctx, &path),
        _ => unreachable!("handled above"),
    }
}

/// `PRAGMA integrity_check`'s findings ("ok" alone when sound), or the error that stopped it.
fn integrity(conn: &Connection) -> Vec<String> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    run().unwrap_or_else(|e| vec![e.to_string()])
}

fn check(ctx: &Ctx, path: &std::path::Path) -> Result<u8> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let problems = integrity(&conn);
    let sound = problems == ["ok"];
    let count = |state: i64| -> Option<i64> {
        conn.query_row(
            "SELECT COUNT(*) FROM events WHERE state = ?1",
            [state],
            |r| r.get(0),
        )
        .ok()
    };
    let (pending, delivered, dead) = (count(0), count(1), count(2));
    // Acknowledged events not in the table yet: a relay stores them within moments, or at
    // its next start. (Not counted in a damaged file: `store recover` keeps the log's place.)
    let (logged, log_error) =
        match sound.then(|| crate::relay::spool::sqlite::unstored(&conn, path)) {
            Some(Ok(n)) => (Some(n), None),
            Some(Err(e)) => (None, Some(format!("{e:#}"))),
            None => (None, None),
        };
    if ctx.global.json {
        output::json(&json!({
            "store": path, "sound": sound, "problems": if sound { vec![] } else { problems.clone() },
            "pending": pending, "delivered": delivered, "dead": dead,
            "in_ack_log": logged, "ack_log_error": log_error,
        }))?;
    } else if sound {
        println!(
            "{}: sound ({} pending, {} dead letters, {} delivered)",
            path.display(),
            pending.unwrap_or(0),
            dead.unwrap_or(0),
            delivered.unwrap_or(0)
        );
        if let Some(n) = logged.filter(|n| *n > 0) {
            println!("{n} more acknowledged events are in the ack log, not in the table yet: a running relay stores them within moments; a stopped one at its next start, then delivers them.");
        }
        if let Some(e) = &log_error {
            println!("{e}");
        }
    } else {
        println!("{}: DAMAGED", path.display());
        for p in &problems {
            println!("  {}", output::printable(p));
        }
        println!("Stop the relay, then run `vslack store recover`: it saves every readable event into a new store and keeps this file aside.");
    }
    Ok(if sound && log_error.is_none() {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

/// What recovery saved, by state, and how many rows could not be read.
#[derive(Default)]
struct Salvaged {
    by_state: [usize; 4],
    unreadable: usize,
}

const COLUMNS: &str = "seq, event_id, notif_type, event, body, received_at, state, attempts, next_attempt_ms, last_error, done_at";

fn recover(ctx: &Ctx, path: &std::path::Path) -> Result<u8> {
    // Refuse while a relay holds the store: it would keep writing to the file moved aside.
    let lock = crate::relay::lock_store(path)
        .context("stop the relay first (`vslack store recover` needs the store to itself)")?;
    let fresh = path.with_extension("recovering");
    let _ = std::fs::remove_file(&fresh);
    let salvaged = {
        let old = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let spool = crate::relay::spool::Spool::open(&fresh, &Default::default())?;
        drop(spool);
        let new = Connection::open(&fresh)?;
        let salvaged = copy_rows(&old, &new)?;
        crate::relay::spool::sqlite::carry_mark(&old, &new)?;
        salvaged
    };
    let aside = move_aside(path, "damaged")?;
    std::fs::rename(&fresh, path)?;
    drop(lock);
    let [pending, delivered, dead, dropped] = salvaged.by_state;
    if ctx.global.json {
        output::json(&json!({
            "store": path, "damaged_kept_at": aside, "pending": pending, "dead": dead,
            "delivered": delivered, "dropped": dropped, "unreadable": salvaged.unreadable,
        }))?;
    } else {
        println!(
            "Recovered {pending} pending, {dead} dead-lettered and {} delivered or dropped events (dedup history) into {}; {} rows could not be read. The damaged file is kept at {}.",
            delivered + dropped,
            path.display(),
            salvaged.unreadable,
            aside.display()
        );
    }
    Ok(crate::exit::OK)
}

/// Copy every readable row of `old` into `new`, in order, stepping over unreadable ones.
fn copy_rows(old: &Connection, new: &Connection) -> Result<Salvaged> {
    let mut out = Salvaged::default();
    let max: i64 = old
        .query_row("SELECT MAX(seq) FROM events", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten()
        .or_else(|| {
            old.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .ok()
        })
        .unwrap_or(0);
    let mut insert = new.prepare(&format!(
        "INSERT OR IGNORE INTO events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?;
    let mut select = old.prepare(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))?;
    new.execute_batch("BEGIN")?;
    for seq in 1..=max {
        let row = select.query_row([seq], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<i64>>(10)?,
            ))
        });
        match row {
            Ok(v) => {
                let state = v.6.clamp(0, 3) as usize;
                insert.execute(rusqlite::params![
                    v.0, v.1, v.2, v.3, v.4, v.5, v.6, v.7, v.8, v.9, v.10
                ])?;
                out.by_state[state] += 1;
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => {}
            Err(_) => out.unreadable += 1,
        }
    }
    new.execute_batch("COMMIT")?;
    Ok(out)
}

/// Rename the SQLite store at `path` (with its -wal and -shm files) to
/// `spool.sqlite3.<why>-<time>` beside it; returns the new path. Nothing is deleted.
pub(super) fn move_aside(path: &std::path::Path, why: &str) -> Result<std::path::PathBuf> {
    let aside = path.with_extension(format!("sqlite3.{why}-{}", crate::relay::now_secs()));
    std::fs::rename(path, &aside)
        .with_context(|| format!("cannot move {} aside", path.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = aside.as_os_str().to_owned();
        to.push(suffix);
        let _ = std::fs::rename(from, to);
    }
    Ok(aside)
}
