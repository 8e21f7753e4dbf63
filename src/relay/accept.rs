//! The accept loop: every connection is accepted at once and admitted by `conns` (or held
//! unread by `parked`); hyper serves each on its own task with the limits of `server::Limits`.
//! Shutdown stops accepting, asks every connection to close, and waits for requests in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::conns::Conns;
use super::parked::Parked;
use super::server::{handle, App};

/// Accept connections until `shutdown` resolves, then drain. Accepting never stops for
/// idle sockets: at the cap an idle connection gives way (see `conns`).
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let conns = Conns::new(
        app.limits.max_connections,
        app.limits.idle_timeout,
        app.limits.header_timeout,
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.limits.header_timeout)
        .max_buf_size(16 * 1024)
        .max_headers(64);
    let parked = Arc::new(Parked::new(app.limits.max_parked, app.limits.idle_timeout));
    let sweeper = tokio::spawn({
        let conns = conns.clone();
        let parked = parked.clone();
        let every =
            (app.limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        async move {
            loop {
                tokio::time::sleep(every).await;
                conns.sweep();
                parked.sweep();
            }
        }
    });
    tokio::pin!(shutdown);
    let (mut warned_at, mut warned_pressure) = (None::<std::time::Instant>, (0, 0));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ticket = tokio::select! {
            t = conns.admit(peer.ip()) => t,
            _ = &mut shutdown => break,
        };
        let pressure = conns.pressure();
        if pressure > warned_pressure
            && warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                max_connections = app.limits.max_connections,
                per_client = conns.per_client(),
                closed_idle = pressure.0,
                refused = pressure.1,
                held_unread = parked.len(),
                "at the connection cap or a client's share of it: closing idle connections and refusing that client's new ones (a client is holding many open)"
            );
            (warned_at, warned_pressure) = (Some(std::time::Instant::now()), pressure);
        }
        // That client holds its share: hold the connection unread for a while, then close it.
        let Some(ticket) = ticket else {
            parked.park(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, conns, builder) = (app.clone(), conns.clone(), builder.clone());
        tokio::spawn(async move {
            let Some(tls) = app.tls.clone() else {
                return run(builder, TokioIo::new(stream), app, conns, ticket).await;
            };
            // The handshake is bounded like a request's headers, and gives way at the cap.
            let handshake = tokio::time::timeout(app.limits.header_timeout, tls.accept(stream));
            let stream = tokio::select! {
                r = handshake => r,
                _ = ticket.close.notified() => return,
            };
            match stream {
                Ok(Ok(Some(s))) => run(builder, TokioIo::new(s), app, conns, ticket).await,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    sweeper.abort();
    parked.clear();
    conns.close_all();
    if !conns.drained(app.limits.drain_timeout).await {
        tracing::warn!("requests still in flight after the drain timeout; closing them");
    }
}

/// Serve one connection (plain or TLS) until it ends, or until it is asked to close: then an
/// idle one ends at once, and a request already read finishes first.
async fn run<I>(
    builder: http1::Builder,
    io: I,
    app: Arc<App>,
    conns: Arc<Conns>,
    ticket: super::conns::Ticket,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let drain = app.limits.drain_timeout;
    let id = ticket.id();
    let conn = builder.serve_connection(
        io,
        service_fn(move |req| {
            let busy = conns.busy(id);
            let app = app.clone();
            async move {
                let r = handle(app, req).await;
                drop(busy);
                r
            }
        }),
    );
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = ticket.close.notified() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(drain, conn).await;
    drop(ticket);
}
