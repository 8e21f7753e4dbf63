//! The mark: how far the table has taken the ack log (generation and offset, one row of
//! `vslack_acklog`, moved in the same transaction as the rows it stored; see `acklog`), the
//! store's id that its log files carry, and what the log holds past the mark.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::acklog::{self, Mark};
use super::seen::Seen;
use super::writer::NewRow;
use super::SpoolError;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS vslack_acklog (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_id INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    pos INTEGER NOT NULL
)";

/// The store's id and its mark, if the store has them (not before a relay first owned it).
fn kept(conn: &Connection) -> rusqlite::Result<Option<(i64, Mark)>> {
    conn.query_row(
        "SELECT store_id, gen, pos FROM vslack_acklog WHERE id = 1",
        [],
        |r| {
            let at = Mark {
                gen: r.get::<_, i64>(1)? as u64,
                pos: r.get::<_, i64>(2)? as u64,
            };
            Ok((r.get(0)?, at))
        },
    )
    .optional()
}

/// The store's id and its mark (made, with a random id, the first time).
pub(super) fn store_mark(conn: &Connection) -> Result<(i64, Mark), SpoolError> {
    conn.execute_batch(TABLE)?;
    conn.execute(
        "INSERT OR IGNORE INTO vslack_acklog (id, store_id, gen, pos) VALUES (1, ?1, 0, 0)",
        [rand::random::<i64>() & i64::MAX],
    )?;
    kept(conn)?.ok_or_else(|| SpoolError("the store's ack log mark is missing".into()))
}

/// `vslack store recover`: give the rebuilt store `new` the damaged store's id and mark, so
/// the relay's next start still stores what the ack log holds past the table.
pub fn carry_mark(old: &Connection, new: &Connection) -> Result<(), SpoolError> {
    // (No mark in the damaged file, or none readable: the log's files stay, named as theirs.)
    let Ok(Some((id, at))) = kept(old) else {
        return Ok(());
    };
    new.execute_batch(TABLE)?;
    new.execute(
        "INSERT OR REPLACE INTO vslack_acklog (id, store_id, gen, pos) VALUES (1, ?1, ?2, ?3)",
        // (From the start of its generation: what damaged pages lost is stored again.)
        params![id, at.gen as i64, 0],
    )?;
    Ok(())
}

pub(super) fn mark(conn: &Connection) -> Result<Option<Mark>, SpoolError> {
    Ok(kept(conn)?.map(|(_, at)| at))
}

pub(super) fn set_mark(conn: &Connection, m: Mark) -> Result<(), SpoolError> {
    conn.prepare_cached("UPDATE vslack_acklog SET gen = ?1, pos = ?2 WHERE id = 1")?
        .execute(params![m.gen as i64, m.pos as i64])?;
    Ok(())
}

/// The records the ack log holds past the mark `at`, oldest first, and the log's newest
/// generation (0 when there is none). With `gone_ok`, a file that went between listing and
/// reading (a running relay deletes the files it has stored) is passed over.
pub(super) fn past_mark(
    store: &Path,
    store_id: i64,
    at: Mark,
    gone_ok: bool,
) -> anyhow::Result<(Vec<NewRow>, u64)> {
    let gens = acklog::generations(store);
    let mut rows = Vec::new();
    for &g in gens.iter().filter(|g| **g >= at.gen) {
        let from = if g == at.gen { at.pos } else { 0 };
        match acklog::read(store, store_id, g, from) {
            Ok(Some(found)) => rows.extend(found),
            Ok(None) => tracing::warn!(file = %acklog::path_of(store, g).display(), "an ack log file of another store lies beside this one; left as it is"),
            Err(e) if gone_ok && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!(
                "cannot read the ack log {} ({e}): it may hold acknowledged events, and the relay reads it when it starts; fix its permissions or the disk",
                acklog::path_of(store, g).display()
            ),
        }
    }
    Ok((rows, gens.last().copied().unwrap_or(0)))
}

/// `vslack store check`: how many acknowledged events the ack log holds that the table does
/// not (a running relay stores them within moments; a stopped one at its next start). Only
/// reads; safe while a relay runs.
pub fn unstored(conn: &Connection, store: &Path) -> anyhow::Result<usize> {
    let owned: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vslack_acklog')",
        [],
        |r| r.get(0),
    )?;
    // (No mark: no relay has owned this store, so it has no log.)
    if !owned {
        return Ok(0);
    }
    let Some((store_id, at)) = kept(conn)? else {
        return Ok(0);
    };
    let (rows, _) = past_mark(store, store_id, at, true)?;
    if rows.is_empty() {
        // (The usual answer: no need to read every stored id.)
        return Ok(0);
    }
    let seen = Seen::load(conn).map_err(|e| anyhow::anyhow!("cannot read the stored ids: {e}"))?;
    Ok(not_held(rows, &seen).len())
}

/// The records of `rows` whose ids `seen` does not hold, each id once (the first): what a
/// replay stores.
pub(super) fn not_held(rows: Vec<NewRow>, seen: &Seen) -> Vec<NewRow> {
    let mut taken = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| !seen.contains(r.key) && taken.insert(r.key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_takes_each_id_once_and_none_the_table_holds() {
        let mut seen = Seen::default();
        seen.commit(&[super::super::seen::key("stored")], &[]);
        let rows = ["a", "stored", "b", "a"]
            .into_iter()
            .map(NewRow::named)
            .collect();
        let ids: Vec<String> = not_held(rows, &seen)
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
