//! Which event ids the store holds, kept in memory by the writer: the dedup check. A unique
//! index on `event_id` did this before, but Vast.ai's ids are random (32 hex digits), so every
//! new event landed on a different leaf page of that index: a batch of 16 deliveries wrote 16
//! more pages to the WAL and its checkpoint, about two thirds of what the commit wrote. Here a
//! new event costs a hash probe instead.
//!
//! The set always matches the table: it is loaded at open; an id joins it only once the
//! transaction that stored it has committed and leaves it only with its row (retention); and
//! when another process changed the file (`PRAGMA data_version` moved) it is loaded again.
//! In the relay, an id also joins it (as *logged*) once the ack log holds it, and moves to the
//! table's side when the writer has stored it; a reload keeps the logged ones.
//! One relay owns the file (`serve` holds a lock), so nothing else stores events behind it.
//! Keys are the first 128 bits of the id's SHA-256: two different ids collide with a
//! probability of about n²/2¹²⁹ (10⁻²⁶ for ten million ids).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use super::SpoolError;

/// The dedup key of an event id.
pub(super) fn key(event_id: &str) -> u128 {
    let digest = Sha256::digest(event_id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(k)
}

/// The keys are already uniform (a hash): use their low bits as is.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = self.0 << 8 | u64::from(*b);
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

type Keys = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// The keys of every event id in the table, and of those acknowledged in the ack log that the
/// writer has not stored in the table yet (see `acks`).
#[derive(Default)]
pub(super) struct Seen {
    table: Keys,
    logged: Keys,
}

impl Seen {
    /// Whether another connection changed the file since `version` (`PRAGMA data_version`
    /// moved); then the set is read again, so that connection's ids are known. Run first in
    /// a write transaction, so nothing can change behind it before the inserts are checked.
    pub(super) fn catch_up(&mut self, conn: &Connection, version: &mut Option<i64>) -> bool {
        let Ok(now) = conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        else {
            return false;
        };
        if Some(now) == *version {
            return false;
        }
        // (The version moves on only with a set read at it: a failed read is tried again.)
        match Seen::load(conn) {
            Ok(seen) => {
                self.table = seen.table;
                *version = Some(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event ids another process left in the store")
            }
        }
        true
    }

    /// Read every id in the table (one pass over it).
    pub(super) fn load(conn: &Connection) -> Result<Seen, SpoolError> {
        let mut stmt = conn.prepare("SELECT event_id FROM events")?;
        let mut rows = stmt.query([])?;
        let mut seen = Seen::default();
        while let Some(row) = rows.next()? {
            let id = row.get_ref(0)?;
            seen.table.insert(key(id.as_str().unwrap_or_default()));
        }
        Ok(seen)
    }

    pub(super) fn contains(&self, k: u128) -> bool {
        self.table.contains(&k) || self.logged.contains(&k)
    }

    /// Whether the table holds `k` (not only the log).
    pub(super) fn in_table(&self, k: u128) -> bool {
        self.table.contains(&k)
    }

    /// Ids acknowledged in the ack log, not yet in the table.
    pub(super) fn logged(&mut self, keys: &[u128]) {
        self.logged.extend(keys);
    }

    /// Apply a committed transaction: the ids it stored and those it forgot.
    pub(super) fn commit(&mut self, added: &[u128], removed: &[u128]) {
        for k in removed {
            self.table.remove(k);
        }
        for k in added {
            self.logged.remove(k);
        }
        self.table.extend(added);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_id_and_the_set_follows_commits() {
        assert_eq!(key("evt-1"), key("evt-1"));
        assert_ne!(key("evt-1"), key("evt-2"));
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (event_id TEXT); INSERT INTO events VALUES ('a'), ('b');",
        )
        .unwrap();
        let mut seen = Seen::load(&conn).unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.contains(key("a")) && seen.contains(key("b")) && !seen.contains(key("c")));
        seen.commit(&[key("c")], &[key("a")]);
        assert!(!seen.contains(key("a")) && seen.contains(key("c")));
    }
}
