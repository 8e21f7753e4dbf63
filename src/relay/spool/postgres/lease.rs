//! The right to forward, across relays sharing one database: a session advisory lock taken
//! on a connection of its own. The server releases it when that connection ends (the holder
//! exited, was killed, or lost the network), so a standby takes over within about a second
//! of noticing. The same connection `LISTEN`s for new events, and the relay's row in
//! `vslack_relays` is refreshed from here (what `doctor` shows as the active relays).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;

use super::connect::Target;

/// The advisory lock key of the forwarder ("vslack" + 2).
const FORWARD_LOCK: i64 = 0x76_73_6c_61_63_6b_02;

/// How often the lock is tried by a standby, and the holder's connection checked.
const EVERY: Duration = Duration::from_secs(1);

/// The channel new events are announced on.
pub const CHANNEL: &str = "vslack_events";

/// Compete for the lock until the process ends; the receiver says whether it is held.
pub fn spawn(target: Arc<Target>, relay: String, arrived: Arc<Notify>) -> watch::Receiver<bool> {
    let (held_tx, held_rx) = watch::channel(false);
    tokio::spawn(async move {
        let started = crate::relay::now_secs();
        // Said once per outage, not at every failed reconnection.
        let mut connected = true;
        loop {
            let mut up = false;
            let ended = session(&target, &relay, started, &arrived, &held_tx, &mut up).await;
            if held_tx.is_closed() {
                return;
            }
            if up || connected {
                let why = match ended {
                    Ok(()) => "the server closed it".to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(error = %why, "lost the store connection that holds the right to forward; reconnecting");
            }
            connected = up;
            if *held_tx.borrow() {
                tracing::warn!(
                    "no longer forwarding: another relay sharing the store may take over"
                );
            }
            held_tx.send_replace(false);
            if held_tx.is_closed() {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    });
    held_rx
}

/// One connection's life: listen, try the lock every second, check the connection.
async fn session(
    target: &Target,
    relay: &str,
    started: i64,
    arrived: &Notify,
    held: &watch::Sender<bool>,
    up: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = target.config.connect(target.tls.clone()).await?;
    *up = true;
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    let wake = Arc::new(Notify::new());
    let wake2 = wake.clone();
    // Drive the connection; a notification wakes the forwarder.
    let driver = async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake2.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        let _ = closed_tx.send(());
    };
    tokio::spawn(driver);
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let host = hostname();
    let pid = std::process::id() as i64;
    loop {
        if !*held.borrow() {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&FORWARD_LOCK])
                .await?
                .get(0);
            if got {
                tracing::info!("this relay now forwards from the shared store");
                held.send_replace(true);
            }
        }
        let forwarding = *held.borrow();
        client
            .execute(
                "INSERT INTO vslack_relays (id, host, pid, started_at, seen_at, forwarding) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at, forwarding = EXCLUDED.forwarding",
                &[&relay, &host, &pid, &started, &crate::relay::now_secs(), &forwarding],
            )
            .await?;
        let tick = tokio::time::sleep(EVERY);
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                _ = wake.notified() => arrived.notify_one(),
                _ = &mut closed => return Ok(()),
                _ = held.closed() => return Ok(()),
            }
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
