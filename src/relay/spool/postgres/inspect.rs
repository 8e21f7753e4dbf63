//! What `doctor` and `status` ask a shared store: can it be reached, its schema version, and
//! which relays use it (each refreshes its row every second while it runs).

use anyhow::Result;
use serde::Serialize;

use super::connect;
use crate::secret::Secret;

#[derive(Debug, Clone, Serialize)]
pub struct RelayRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub seen_at: i64,
    pub forwarding: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Where (no user or password).
    pub store: String,
    /// The schema version found (`None`: no vslack tables yet), and this binary's.
    pub schema: Option<i64>,
    pub schema_supported: i64,
    /// Relays seen in the last 30 seconds.
    pub relays: Vec<RelayRow>,
}

/// Seen this recently, a relay counts as active.
pub const ACTIVE_WITHIN: i64 = 30;

/// Connect once and look; errors say what failed, with the server's name only.
pub async fn inspect(url: &Secret) -> Result<Inspection> {
    let target = connect::target(url.expose())?;
    let (client, conn) = target
        .config
        .connect(target.tls.clone())
        .await
        .map_err(|e| anyhow::anyhow!(connect::explain(&e, url.expose())))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let explain = |e: tokio_postgres::Error| anyhow::anyhow!(connect::explain(&e, url.expose()));
    let schema = match super::schema::version(&client).await {
        Ok(v) => v,
        Err(e) => match e.downcast::<tokio_postgres::Error>() {
            Ok(pg) => return Err(explain(pg)),
            Err(other) => return Err(other),
        },
    };
    let mut relays = Vec::new();
    if schema.is_some() {
        let since = crate::relay::now_secs() - ACTIVE_WITHIN;
        for r in client
            .query(
                "SELECT id, host, pid, started_at, seen_at, forwarding FROM vslack_relays WHERE seen_at >= $1 ORDER BY started_at",
                &[&since],
            )
            .await
            .map_err(explain)?
        {
            relays.push(RelayRow {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                started_at: r.get(3),
                seen_at: r.get(4),
                forwarding: r.get(5),
            });
        }
    }
    driver.abort();
    Ok(Inspection {
        store: connect::shown(url.expose()),
        schema,
        schema_supported: super::schema::CURRENT,
        relays,
    })
}
