//! `vslack store migrate`: copy a SQLite store into PostgreSQL in one transaction, keeping
//! every row's state (pending events stay pending, delivered and dropped ids keep deduplicating,
//! dead letters stay dead) and the order of arrival. An id the database already holds is kept
//! as it is there, so running it twice copies nothing twice.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::connect;
use crate::secret::Secret;

#[derive(Debug, Default, Serialize)]
pub struct Imported {
    /// Copied, by state: pending, delivered, dead, dropped.
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub dropped: u64,
    /// Already in the database (same event id): left as they were there.
    pub already_there: u64,
}

type Row = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    Option<i64>,
);

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut stmt = c.prepare(
        "SELECT event_id, notif_type, event, body, received_at, state, attempts, next_attempt_ms, last_error, done_at FROM events ORDER BY seq",
    ).with_context(|| format!("{} is not a vslack event store", path.display()))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    })?;
    rows.collect::<rusqlite::Result<Vec<Row>>>()
        .with_context(|| {
            format!(
                "cannot read {} (`vslack store check` examines it)",
                path.display()
            )
        })
}

/// Copy the SQLite store at `path` into the database at `url` (its schema already migrated).
pub async fn import(path: &Path, url: &Secret) -> Result<Imported> {
    let rows = read_rows(path)?;
    let target = connect::target(url.expose())?;
    let explain = |e: tokio_postgres::Error| anyhow::anyhow!(connect::explain(&e, url.expose()));
    let (mut client, conn) = target
        .config
        .connect(target.tls.clone())
        .await
        .map_err(explain)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    super::schema::migrate(&mut client).await?;
    let tx = client.transaction().await.map_err(explain)?;
    let stmt = tx
        .prepare(
            "INSERT INTO vslack_events (event_id, notif_type, event, body, received_at, state, attempts, next_attempt_ms, last_error, done_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id) DO NOTHING",
        )
        .await
        .map_err(explain)?;
    let mut done = Imported::default();
    for (id, kind, event, body, received, state, attempts, next, err, done_at) in &rows {
        // (The SQLite store may keep a delivery's event as its body: this store wants JSON.)
        let event = &crate::relay::spool::sqlite::event_json(event, body, id, *received)
            .map_err(|why| anyhow::anyhow!("event {id} cannot be copied: {why} (`vslack store check` examines the SQLite file)"))?;
        // The other store's retry times are on its relay's clock: due at once here.
        let next = if *state == 0 { 0 } else { *next };
        let n = tx
            .execute(
                &stmt,
                &[
                    id, kind, event, body, received, state, attempts, &next, err, done_at,
                ],
            )
            .await
            .map_err(explain)?;
        if n == 0 {
            done.already_there += 1;
            continue;
        }
        match *state {
            0 => done.pending += 1,
            1 => done.delivered += 1,
            2 => done.dead += 1,
            _ => done.dropped += 1,
        }
    }
    tx.execute(&format!("NOTIFY {}", super::lease::CHANNEL), &[])
        .await
        .map_err(explain)?;
    tx.commit().await.map_err(explain)?;
    driver.abort();
    Ok(done)
}
