//! Versioned migrations, applied at start under a transaction-scoped advisory lock (two
//! relays starting together do not race). A database whose schema is newer than this binary
//! is refused: an older vslack must not write rows it does not understand.

use anyhow::{bail, Result};
use tokio_postgres::Client;

/// The migrations, in order; the schema version is how many have been applied.
const MIGRATIONS: &[&str] = &["
CREATE TABLE vslack_events (
    seq             BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    notif_type      TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            BYTEA NOT NULL,
    received_at     BIGINT NOT NULL,
    state           BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         BIGINT
);
CREATE INDEX vslack_events_due ON vslack_events(next_attempt_ms, seq) WHERE state = 0;
CREATE INDEX vslack_events_done ON vslack_events(done_at) WHERE state <> 0;
CREATE INDEX vslack_events_pending ON vslack_events(seq) WHERE state = 0;
CREATE INDEX vslack_events_alerts ON vslack_events(seq)
    WHERE state = 0 AND notif_type IN ('vslack_alert', 'vslack_recovered');
CREATE TABLE vslack_relays (
    id          TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL,
    forwarding  BOOLEAN NOT NULL DEFAULT false
);
"];

/// The schema version this binary writes.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key migrations run under ("vslack" + 1).
const MIGRATE_LOCK: i64 = 0x76_73_6c_61_63_6b_01;

/// Bring the schema to [`CURRENT`]; returns the version found before.
pub async fn migrate(client: &mut Client) -> Result<i64> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS vslack_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = tx
        .query_opt("SELECT version FROM vslack_schema", &[])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if found > CURRENT {
        bail!(crate::exit::SetupError(format!(
            "the store's schema is version {found}, newer than this vslack understands ({CURRENT}): upgrade vslack on this machine (relays sharing a store must run the same or a newer version)"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    if found == 0 {
        tx.execute(
            "INSERT INTO vslack_schema (version) VALUES ($1)",
            &[&CURRENT],
        )
        .await?;
    } else if found < CURRENT {
        tx.execute("UPDATE vslack_schema SET version = $1", &[&CURRENT])
            .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// The schema version of the database, without changing it.
pub async fn version(client: &Client) -> Result<Option<i64>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vslack_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt("SELECT version FROM vslack_schema", &[])
        .await?
        .map(|r| r.get(0)))
}
