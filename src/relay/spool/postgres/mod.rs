//! The shared store: PostgreSQL, for several relays behind one name. Driver: tokio-postgres
//! (async on the relay's own runtime, no compile-time database, pipelining on a connection),
//! pooled by deadpool-postgres, which drops broken connections, so the relay recovers by
//! itself when the server comes back.
//!
//! - Inserts are one autocommitted `INSERT … ON CONFLICT (event_id) DO NOTHING`: a redelivery
//!   to any relay is a duplicate, and the answer comes only after the commit.
//! - One relay forwards at a time (`lease`): pacing is per destination, so it must not be
//!   split across relays. Only the holder reads due events and writes outcomes, and every
//!   outcome applies only to rows still pending.
//! - New events wake the holder by `NOTIFY` (coalesced to at most one per 20 ms per relay).
//! - Counts for `/health` and `/metrics` are of the shared queue, cached for 200 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{watch, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

pub mod connect;
pub mod import;
pub mod inspect;
mod lease;
pub mod schema;

pub use connect::{has_password, is_postgres_url, shown};

use super::{Delivery, Event, Inserted, Queued, Shared, SpoolError, SpoolOptions, Stats, FULL};
use crate::secret::Secret;

/// The PostgreSQL backend.
pub struct Postgres {
    pool: Pool,
    target: Arc<connect::Target>,
    url: Secret,
    shared: Shared,
    stats: tokio::sync::Mutex<Option<(Instant, Stats)>>,
    /// Ask for a `NOTIFY` (sent by a task, coalesced).
    announce: Arc<Notify>,
}

const COLUMNS: &str = "seq, event, attempts, next_attempt_ms, last_error, state, received_at";

impl Postgres {
    /// Connect, apply migrations, start the pool. A server that cannot be reached, or a
    /// schema newer than this binary, is an error that names the server (never the password).
    pub async fn open(url: &Secret, _opts: &SpoolOptions, shared: Shared) -> Result<Postgres> {
        let target = Arc::new(connect::target(url.expose())?);
        let (mut client, conn) = target
            .config
            .connect(target.tls.clone())
            .await
            .map_err(|e| crate::exit::SetupError(format!(
                "cannot reach the event store: {} (is the server running and the URL right? `vslack doctor` checks it)",
                connect::explain(&e, url.expose())
            )))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        schema::migrate(&mut client).await.map_err(|e| {
            match e.downcast::<tokio_postgres::Error>() {
                Ok(pg) => anyhow::anyhow!(
                    "cannot prepare the event store: {}",
                    connect::explain(&pg, url.expose())
                ),
                Err(other) => other,
            }
        })?;
        drop(client);
        driver.abort();
        let manager = Manager::from_config(
            target.config.clone(),
            target.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("cannot build the store's connection pool")?;
        let announce = Arc::new(Notify::new());
        tokio::spawn(announcer(pool.clone(), announce.clone()));
        Ok(Postgres {
            pool,
            target,
            url: url.clone(),
            shared,
            stats: Default::default(),
            announce,
        })
    }

    fn err(&self, e: tokio_postgres::Error) -> SpoolError {
        if e.code() == Some(&SqlState::DISK_FULL) {
            return SpoolError(format!(
                "{FULL}: {}",
                connect::explain(&e, self.url.expose())
            ));
        }
        SpoolError(connect::explain(&e, self.url.expose()))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, SpoolError> {
        self.pool.get().await.map_err(|e| {
            let why = match e {
                deadpool_postgres::PoolError::Backend(pg) => {
                    connect::explain(&pg, self.url.expose())
                }
                other => format!("PostgreSQL at {}: {other}", shown(self.url.expose())),
            };
            SpoolError(why)
        })
    }

    async fn rows(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, SpoolError> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        c.query(&stmt, args).await.map_err(|e| self.err(e))
    }

    async fn exec(
        &self,
        sql: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<usize, SpoolError> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        let n = c.execute(&stmt, args).await.map_err(|e| self.err(e))?;
        self.stale();
        Ok(n as usize)
    }

    async fn queued(
        &self,
        clause: &str,
        args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Queued>, SpoolError> {
        let sql = format!("SELECT {COLUMNS} FROM vslack_events {clause}");
        self.rows(&sql, args).await?.iter().map(queued).collect()
    }

    /// The counts changed: the next `stats` counts again.
    fn stale(&self) {
        if let Ok(mut s) = self.stats.try_lock() {
            *s = None;
        }
    }

    async fn count(&self) -> Result<Stats, SpoolError> {
        let rows = self
            .rows(
                "SELECT
                   (SELECT COUNT(*) FROM vslack_events WHERE state = 0),
                   (SELECT COUNT(*) FROM vslack_events WHERE state = 2),
                   (SELECT COUNT(*) FROM vslack_events WHERE state = 1),
                   (SELECT MAX(done_at) FROM vslack_events WHERE state = 1),
                   (SELECT received_at FROM vslack_events WHERE state = 0 ORDER BY seq LIMIT 1)",
                &[],
            )
            .await?;
        let r = &rows[0];
        Ok(Stats {
            pending: r.get(0),
            dead: r.get(1),
            delivered: r.get(2),
            last_delivered_at: r.get(3),
            oldest_pending_at: r.get(4),
        })
    }
}

fn queued(r: &Row) -> Result<Queued, SpoolError> {
    let seq: i64 = r.get(0);
    let json: String = r.get(1);
    let mut event: Event = serde_json::from_str(&json)
        .map_err(|e| SpoolError(format!("event {seq} is unreadable: {e}")))?;
    // The column, which `requeue` resets: a dead letter put back ages from then.
    event.received_at = r.get(6);
    Ok(Queued {
        seq,
        event,
        attempts: r.get(2),
        next_attempt_ms: r.get(3),
        last_error: r.get(4),
        state: super::state_name(r.get(5)),
    })
}

/// Send `NOTIFY` when asked, at most once per 20 ms: a burst of inserts wakes the forwarding
/// relay once at its start and once after, never once per event.
async fn announcer(pool: Pool, announce: Arc<Notify>) {
    loop {
        announce.notified().await;
        if let Ok(c) = pool.get().await {
            let _ = c.batch_execute(&format!("NOTIFY {}", lease::CHANNEL)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Args<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];

#[async_trait::async_trait]
impl super::Store for Postgres {
    async fn insert(&self, new: Delivery) -> Result<Inserted, SpoolError> {
        let (event, body) = new.into_parts();
        let json = serde_json::to_string(&event).map_err(|e| SpoolError(e.to_string()))?;
        let args: &Args = &[
            &event.event_id,
            &event.notif_type,
            &json,
            &body,
            &event.received_at,
        ];
        let n = self
            .exec(
                "INSERT INTO vslack_events (event_id, notif_type, event, body, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
                args,
            )
            .await?;
        if n == 0 {
            return Ok(Inserted::Duplicate);
        }
        self.shared.arrived.notify_one();
        self.announce.notify_one();
        Ok(Inserted::New)
    }
    async fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        let limit = limit as i64;
        self.queued(
            "WHERE state = 0 AND next_attempt_ms <= $1 ORDER BY seq LIMIT $2",
            &[&now_ms, &limit],
        )
        .await
    }
    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        let limit = limit as i64;
        self.queued(
            "WHERE state = 0 AND notif_type IN ('vslack_alert', 'vslack_recovered') AND next_attempt_ms <= $1 ORDER BY seq LIMIT $2",
            &[&now_ms, &limit],
        )
        .await
    }
    async fn next_due(&self) -> Result<Option<i64>, SpoolError> {
        let rows = self
            .rows(
                "SELECT MIN(next_attempt_ms) FROM vslack_events WHERE state = 0",
                &[],
            )
            .await?;
        Ok(rows[0].get(0))
    }
    async fn mark_delivered(&self, seqs: Vec<i64>, now: i64) -> Result<(), SpoolError> {
        self.exec("UPDATE vslack_events SET state = 1, done_at = $2, attempts = attempts + 1, last_error = NULL WHERE seq = ANY($1) AND state = 0", &[&seqs, &now])
            .await
            .map(drop)
    }
    async fn mark_retry(
        &self,
        seqs: Vec<i64>,
        next_ms: i64,
        error: String,
    ) -> Result<(), SpoolError> {
        self.exec("UPDATE vslack_events SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3 WHERE seq = ANY($1) AND state = 0", &[&seqs, &next_ms, &error])
            .await
            .map(drop)
    }
    async fn mark_progress(&self, updates: Vec<super::Progress>) -> Result<(), SpoolError> {
        let seqs: Vec<i64> = updates.iter().map(|u| u.seq).collect();
        let events: Vec<&str> = updates.iter().map(|u| u.event.as_str()).collect();
        let next: Vec<i64> = updates.iter().map(|u| u.next_ms).collect();
        let errors: Vec<Option<&str>> = updates.iter().map(|u| u.error.as_deref()).collect();
        self.exec(
            "UPDATE vslack_events e SET event = u.event, attempts = e.attempts + 1, next_attempt_ms = u.next, last_error = u.error
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS u(seq, event, next, error)
             WHERE e.seq = u.seq AND e.state = 0",
            &[&seqs, &events, &next, &errors],
        )
        .await
        .map(drop)
    }
    async fn mark_dead(&self, seqs: Vec<i64>, error: String, now: i64) -> Result<(), SpoolError> {
        self.exec("UPDATE vslack_events SET state = 2, attempts = attempts + 1, last_error = $2, done_at = $3 WHERE seq = ANY($1) AND state = 0", &[&seqs, &error, &now])
            .await
            .map(drop)
    }
    async fn list(&self, state: i64, limit: usize) -> Result<Vec<Queued>, SpoolError> {
        let limit = limit as i64;
        self.queued("WHERE state = $1 ORDER BY seq LIMIT $2", &[&state, &limit])
            .await
    }
    async fn list_range(
        &self,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<Queued>, SpoolError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.queued(
            "WHERE seq BETWEEN $1 AND $2 ORDER BY seq LIMIT $3",
            &[&from, &to, &limit],
        )
        .await
    }
    async fn requeue(&self, seqs: Option<Vec<i64>>, now: i64) -> Result<usize, SpoolError> {
        let n = match seqs {
            None => self.exec("UPDATE vslack_events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = $1, event = (event::jsonb #- '{legs,dead}')::text WHERE state = 2", &[&now]).await?,
            Some(seqs) => self.exec("UPDATE vslack_events SET state = 0, next_attempt_ms = 0, attempts = 0, done_at = NULL, received_at = $2, event = (event::jsonb #- '{legs,dead}')::text WHERE seq = ANY($1) AND state = 2", &[&seqs, &now]).await?,
        };
        if n > 0 {
            // Said now, not by the announcer: `vslack queue retry` exits right after.
            self.exec(&format!("NOTIFY {}", lease::CHANNEL), &[])
                .await?;
        }
        Ok(n)
    }
    async fn remove(&self, seqs: Vec<i64>, now: i64) -> Result<usize, SpoolError> {
        self.exec("UPDATE vslack_events SET state = 3, done_at = $2 WHERE seq = ANY($1) AND state IN (0, 2)", &[&seqs, &now])
            .await
    }
    async fn retry_now(&self) -> Result<usize, SpoolError> {
        self.exec(
            "UPDATE vslack_events SET next_attempt_ms = 0 WHERE state = 0 AND next_attempt_ms > 0",
            &[],
        )
        .await
    }
    async fn prune(&self, before: i64, bodies_before: i64) -> Result<usize, SpoolError> {
        let n = self
            .exec(
                "DELETE FROM vslack_events WHERE state IN (1, 3) AND done_at < $1",
                &[&before],
            )
            .await?;
        self.exec("UPDATE vslack_events SET body = ''::bytea WHERE state <> 0 AND done_at < $1 AND length(body) > 0", &[&bodies_before])
            .await?;
        let gone = crate::relay::now_secs() - 24 * 3600;
        self.exec("DELETE FROM vslack_relays WHERE seen_at < $1", &[&gone])
            .await?;
        Ok(n)
    }
    async fn stats(&self) -> Result<Stats, SpoolError> {
        let mut cached = self.stats.lock().await;
        if let Some((at, s)) = &*cached {
            if at.elapsed() < Duration::from_millis(200) {
                return Ok(s.clone());
            }
        }
        let fresh = self.count().await?;
        *cached = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
    async fn oldest_event_pending(&self) -> Result<Option<i64>, SpoolError> {
        let rows = self
            .rows("SELECT received_at FROM vslack_events WHERE state = 0 AND notif_type NOT IN ('vslack_alert', 'vslack_recovered') ORDER BY seq LIMIT 1", &[])
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }
    async fn pending_by_type(&self) -> Result<Vec<(String, usize)>, SpoolError> {
        let rows = self
            .rows("SELECT notif_type, COUNT(*) FROM vslack_events WHERE state = 0 GROUP BY notif_type", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as usize))
            .collect())
    }
    fn forwarding(&self, relay: &str) -> watch::Receiver<bool> {
        lease::spawn(
            self.target.clone(),
            relay.to_owned(),
            self.shared.arrived.clone(),
        )
    }
}
