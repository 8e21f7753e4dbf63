//! What each writer command does to the database, in SQL, and how it changes the counts.

use rusqlite::{params, Connection};

use super::column::UNREFUSED;
use super::seen::{key, Seen};
use super::writer::{Answer, Cmd, NewRow};
use super::{Inserted, SpoolError};

/// How a command changed the counts (applied to the shared [`Stats`] once committed).
#[derive(Default)]
pub(super) struct Delta {
    pub pending: i64,
    pub dead: i64,
    pub delivered: i64,
    pub last_delivered_at: Option<i64>,
    /// Pending rows left the queue: the oldest pending one may have changed.
    pub pending_left: bool,
    /// Dedup keys of the ids stored, and of those forgotten.
    pub added: Vec<u128>,
    pub removed: Vec<u128>,
}

/// Forget finished events (delivered or dropped) finished before `before`. The newest row is
/// kept whatever its age: a new row's `seq` is one more than the largest, so it never reuses
/// the number of an event forgotten.
pub(super) fn forget(tx: &Connection, before: i64, d: &mut Delta) -> Result<usize, SpoolError> {
    let mut stmt = tx.prepare_cached(
        "DELETE FROM events WHERE state IN (1, 3) AND done_at < ?1 AND seq < (SELECT MAX(seq) FROM events) RETURNING event_id, state",
    )?;
    let mut rows = stmt.query([before])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        n += 1;
        d.removed
            .push(key(row.get_ref(0)?.as_str().unwrap_or_default()));
        if row.get::<_, i64>(1)? == 1 {
            d.delivered -= 1;
        }
    }
    Ok(n)
}

/// Insert one new event (its id already checked); counted in `d` if it was stored. (OR
/// IGNORE: a store made before the in-memory check keeps its unique index.)
pub(super) fn insert_row(tx: &Connection, row: &NewRow, d: &mut Delta) -> Result<bool, SpoolError> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO events (event_id, notif_type, event, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let n = stmt.execute(params![
        row.event_id,
        row.notif_type,
        row.json,
        row.body,
        row.received_at
    ])?;
    d.pending += n as i64;
    if n == 1 {
        d.added.push(row.key);
    }
    Ok(n == 1)
}

pub(super) fn apply(
    tx: &Connection,
    cmd: &Cmd,
    d: &mut Delta,
    seen: Option<&Seen>,
) -> Result<Answer, SpoolError> {
    Ok(match cmd {
        Cmd::Insert(row) => {
            let seen = seen.ok_or_else(|| SpoolError("internal: insert without the ids".into()))?;
            if seen.contains(row.key) || d.added.contains(&row.key) {
                return Ok(Answer::Inserted(Inserted::Duplicate));
            }
            let new = insert_row(tx, row, d)?;
            Answer::Inserted(if new {
                Inserted::New
            } else {
                Inserted::Duplicate
            })
        }
        Cmd::Delivered(seqs, now) => {
            // A summary marks up to 10,000 at once, mostly consecutive: a statement per run
            // of consecutive numbers (at most RUN_MOST rows), offering the core between runs
            // so the ack path is not kept waiting (see `logged::YIELD_EVERY`).
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET state = 1, done_at = ?3, attempts = attempts + 1, last_error = NULL WHERE seq BETWEEN ?1 AND ?2 AND state = 0",
            )?;
            let mut n = 0;
            for (i, (from, to)) in runs(seqs, RUN_MOST).into_iter().enumerate() {
                if i > 0 {
                    std::thread::yield_now();
                }
                n += stmt.execute(params![from, to, now])? as i64;
            }
            d.pending -= n;
            d.delivered += n;
            d.last_delivered_at = Some(*now);
            d.pending_left = true;
            Answer::Unit(())
        }
        Cmd::Retry(seqs, next, error) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE seq = ?1 AND state = 0",
            )?;
            for s in seqs {
                stmt.execute(params![s, next, error])?;
            }
            Answer::Unit(())
        }
        Cmd::Dead(seqs, error, now) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET state = 2, attempts = attempts + 1, last_error = ?2, done_at = ?3 WHERE seq = ?1 AND state = 0",
            )?;
            for s in seqs {
                let n = stmt.execute(params![s, error, now])? as i64;
                d.pending -= n;
                d.dead += n;
            }
            d.pending_left = true;
            Answer::Unit(())
        }
        Cmd::Progress(updates) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET event = ?2, attempts = attempts + 1, next_attempt_ms = ?3, last_error = ?4 WHERE seq = ?1 AND state = 0",
            )?;
            for u in updates {
                stmt.execute(params![u.seq, u.event, u.next_ms, u.error])?;
            }
            Answer::Unit(())
        }
        Cmd::Requeue(seqs, now) => {
            let n = match seqs {
                None => tx.execute(
                    &format!("UPDATE events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = ?1, event = {UNREFUSED} WHERE state = 2"),
                    [*now],
                )?,
                Some(seqs) => each(
                    tx,
                    &format!("UPDATE events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = ?2, event = {UNREFUSED} WHERE seq = ?1 AND state = 2"),
                    seqs,
                    *now,
                )?,
            };
            d.dead -= n as i64;
            d.pending += n as i64;
            d.pending_left = true;
            Answer::Count(n)
        }
        Cmd::Drop(seqs, now) => {
            let pending = each(
                tx,
                "UPDATE events SET state = 3, done_at = ?2 WHERE seq = ?1 AND state = 0",
                seqs,
                *now,
            )?;
            let dead = each(
                tx,
                "UPDATE events SET state = 3, done_at = ?2 WHERE seq = ?1 AND state = 2",
                seqs,
                *now,
            )?;
            d.pending -= pending as i64;
            d.dead -= dead as i64;
            d.pending_left = true;
            Answer::Count(pending + dead)
        }
        Cmd::Prune(before, bodies_before) => {
            let n = forget(tx, *before, d)?;
            super::column::free_bodies(tx, Some(*bodies_before))?;
            Answer::Count(n)
        }
        Cmd::Restore => unreachable!("run by Writer::restore, outside a transaction"),
        Cmd::Logged => unreachable!("run by Writer::store_backlog"),
        Cmd::Flush => unreachable!("run by Writer::apply_all, outside a transaction"),
        Cmd::Barrier => Answer::Unit(()),
        Cmd::RetryNow => Answer::Count(tx.execute(
            "UPDATE events SET next_attempt_ms = 0 WHERE state = 0 AND next_attempt_ms > 0",
            [],
        )?),
    })
}

/// Run `sql` (params: seq, value) for each seq; returns the rows changed.
/// Rows one statement of a large outcome changes at most.
const RUN_MOST: i64 = 64;

/// `seqs` as runs of consecutive numbers `(from, to)`, in order, each at most `most` long.
fn runs(seqs: &[i64], most: i64) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((from, to)) if *to + 1 == s && s - *from < most => *to = s,
            _ => out.push((s, s)),
        }
    }
    out
}

fn each(tx: &Connection, sql: &str, seqs: &[i64], value: i64) -> Result<usize, SpoolError> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut n = 0;
    for s in seqs {
        n += stmt.execute(params![s, value])?;
    }
    Ok(n)
}

impl super::writer::Writer {
    /// Apply a committed change to the shared counts and the dedup set. When another
    /// process had changed the store (`vslack queue retry` or `drop`, seen by `catch_up` at
    /// the start of a transaction), count again from scratch.
    pub(super) fn count(&mut self, d: Delta) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.commit(&d.added, &d.removed);
        }
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        if std::mem::take(&mut self.stale) {
            if let Ok(fresh) = super::count_all(&self.conn) {
                *stats = fresh;
            }
            return;
        }
        let was_empty = stats.pending == 0;
        stats.pending += d.pending;
        stats.dead += d.dead;
        stats.delivered += d.delivered;
        if d.last_delivered_at.is_some() {
            stats.last_delivered_at = d.last_delivered_at;
        }
        if d.pending_left || (was_empty && stats.pending > 0) {
            stats.oldest_pending_at = super::oldest_pending(&self.conn).ok().flatten();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_cover_each_number_once_and_nothing_between() {
        assert_eq!(runs(&[], 64), vec![]);
        assert_eq!(
            runs(&[5, 3, 4, 4, 9, 10, 12], 64),
            vec![(3, 5), (9, 10), (12, 12)]
        );
        assert_eq!(runs(&[1, 2, 3, 4, 5], 2), vec![(1, 2), (3, 4), (5, 5)]);
        let many: Vec<i64> = (1..=10_000).filter(|s| s % 1000 != 0).collect();
        let r = runs(&many, 64);
        let covered: Vec<i64> = r.iter().flat_map(|&(a, b)| a..=b).collect();
        assert_eq!(covered, many);
        assert!(r.iter().all(|(a, b)| b - a < 64));
    }
}
