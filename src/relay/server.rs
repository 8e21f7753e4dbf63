//! The HTTP listener (hyper 1, HTTP/1.1): `POST <path>` receives deliveries, `GET /health`
//! and `GET /metrics` report. Everything is bounded: body size (checked against
//! Content-Length first, then while reading), header size and read time, a deadline per
//! request, and (in `accept`) a cap on open connections where idle ones give way (`conns`) and
//! an idle keep-alive timeout. Shutdown stops accepting and lets requests in
//! flight finish.

use crate::output::printable;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::broadcast;

use super::event::Delivery;
use super::metrics::{Metrics, Received};
use super::spool::{Inserted, Spool};
use super::verify::{Verifier, VerifyError};
use super::Activity;

/// Vast.ai's delivery headers (lowercase: the form HTTP/1 header maps compare).
pub const TIMESTAMP_HEADER: &str = "x-vast-timestamp";
pub const SIGNATURE_HEADER: &str = "x-vast-signature-256";
pub const EVENT_ID_HEADER: &str = "x-vast-event-id";
pub const ATTEMPT_HEADER: &str = "x-vast-delivery-attempt";

/// On a 204: `stored` for a new event, `duplicate` for one already stored (a redelivery). Vast.ai
/// only looks at the status; `vslack send` and `demo` show the difference.
pub const OUTCOME_HEADER: &str = "x-vslack-outcome";

#[derive(Debug, Clone)]
pub struct Limits {
    pub body_bytes: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Close a kept-alive connection with no request for this long.
    pub idle_timeout: Duration,
    /// Most connections held unread because their client is over its share (see `conns`).
    pub max_parked: usize,
    pub request_timeout: Duration,
    /// How long to wait for requests in flight at shutdown.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 64 * 1024,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_parked: 1024,
            request_timeout: Duration::from_secs(15),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

pub struct App {
    pub path: String,
    pub limits: Limits,
    /// Swapped whole when the secrets change (rotation), without a restart.
    pub verifier: std::sync::RwLock<Arc<Verifier>>,
    pub spool: Spool,
    pub metrics: Arc<Metrics>,
    pub activity: broadcast::Sender<Activity>,
    /// Log payloads (at -vv).
    pub log_payloads: bool,
    pub clock: Arc<super::clock::Clock>,
    /// What the config file was when the relay last read it, and where its Slack URL comes
    /// from (shown by /health as `config`).
    pub config_version: std::sync::RwLock<serde_json::Value>,
    /// Re-reads the secrets before an unknown signature is refused (see `Control`).
    pub reread_secrets: std::sync::RwLock<Option<Arc<dyn Fn() -> bool + Send + Sync>>>,
    pub incidents: Arc<super::incidents::Incidents>,
    /// Tells the heartbeat's test events from a person's (see `gate`).
    pub gate: Arc<super::gate::Gate>,
    /// HTTPS (see `tls`); plain HTTP when `None`.
    pub tls: Option<Arc<super::tls::Tls>>,
    /// Whether this relay forwards now (always with SQLite; see `spool::postgres::lease`).
    pub forwarding: tokio::sync::watch::Receiver<bool>,
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn refuse(status: StatusCode, reason: &str) -> Resp {
    json_response(status, json!({"ok": false, "error": reason}))
}

pub use super::accept::serve;

pub(super) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let deadline = app.limits.request_timeout;
    Ok(
        match tokio::time::timeout(deadline, route(&app, req)).await {
            Ok(r) => r,
            Err(_) => refuse(StatusCode::REQUEST_TIMEOUT, "request_timeout"),
        },
    )
}

async fn route(app: &App, req: Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let allowed = if path == "/health" || path == "/metrics" {
        Method::GET
    } else if path == app.path {
        Method::POST
    } else {
        return refuse(StatusCode::NOT_FOUND, "not_found");
    };
    if req.method() != allowed && !(allowed == Method::GET && req.method() == Method::HEAD) {
        let mut r = refuse(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        r.headers_mut().insert(
            ALLOW,
            HeaderValue::from_str(allowed.as_str()).expect("method name"),
        );
        return r;
    }
    match path {
        "/health" => health(app).await,
        "/metrics" => {
            let stats = app.spool.stats().await.ok();
            let mut text = app.metrics.render(stats.as_ref());
            text.push_str(&app.incidents.metrics());
            text.push_str(&format!(
                "# HELP vslack_forwarding Whether this relay forwards from the store now (one relay at a time on a shared store).\n# TYPE vslack_forwarding gauge\nvslack_forwarding {}\n",
                u8::from(*app.forwarding.borrow())
            ));
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => receive(app, req).await,
    }
}

async fn health(app: &App) -> Resp {
    if let Some(fault) = app.spool.fault() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "failing", "error": fault.reason(), "version": env!("CARGO_PKG_VERSION")}),
        );
    }
    match app.spool.stats().await {
        Ok(s) => {
            let now = app.clock.steady_secs();
            let oldest_age = s.oldest_pending_at.map(|t| (now - t).max(0));
            let incidents = app.incidents.current();
            let degraded =
                s.dead > 0 || oldest_age.is_some_and(|a| a > 300) || !incidents.is_empty();
            let reason = incidents
                .first()
                .map(|i| i.title.clone())
                .or_else(|| (s.dead > 0).then(|| format!("{} dead-lettered event(s)", s.dead)))
                .or_else(|| degraded.then(|| "the oldest queued event waited over 5 min".into()));
            let incidents: Vec<_> = incidents
                .iter()
                // Not the detail: /health may be public, and `status` shows it on this machine.
                .map(|i| json!({"key": i.key, "title": i.title, "since": i.since}))
                .collect();
            json_response(
                StatusCode::OK,
                json!({
                    "status": if degraded { "degraded" } else { "ok" },
                    "reason": reason,
                    "incidents": incidents,
                    "queue_depth": s.pending,
                    "dead_letters": s.dead,
                    "delivered": s.delivered,
                    "last_delivery_at": s.last_delivered_at,
                    "oldest_pending_age_secs": oldest_age,
                    "store": if app.spool.location().is_shared() { "postgres" } else { "sqlite" },
                    "forwarding": *app.forwarding.borrow(),
                    "config": app.config_version.read().expect("config version lock").clone(),
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            )
        }
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "failing", "error": e.to_string(), "version": env!("CARGO_PKG_VERSION")}),
        ),
    }
}

/// A delivery refused as stale: when its signature is right at its own timestamp, the clocks
/// are apart (not a forgery): count it, with the skew, for the watchdog.
fn signed_but_stale(app: &App, parts: &hyper::http::request::Parts, body: &[u8]) {
    let ts = header(parts, TIMESTAMP_HEADER);
    let Some(at) = ts
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.trim().parse::<i64>().ok())
    else {
        return;
    };
    let verifier = app.verifier.read().expect("verifier lock").clone();
    let now = app.clock.wall_secs();
    if verifier.signed_ignoring_time(ts, header(parts, SIGNATURE_HEADER), body, now) {
        use std::sync::atomic::Ordering::Relaxed;
        app.metrics.skew_secs.store(now - at, Relaxed);
        app.metrics.stale_signed.fetch_add(1, Relaxed);
    }
}

fn header<'a>(req: &'a hyper::http::request::Parts, name: &str) -> Option<&'a [u8]> {
    req.headers.get(name).map(HeaderValue::as_bytes)
}

async fn receive(app: &App, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let limit = app.limits.body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A number in the log, like the forwarder's `attempt` (0 when Vast.ai sent none).
    let attempt: u32 = parts
        .headers
        .get(ATTEMPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let outcome = |r: Received, id: Option<&str>, t: Option<&str>| {
        app.metrics.received(r);
        // (Only `up` listens: `serve` builds no message for nobody.)
        if app.activity.receiver_count() == 0 {
            return;
        }
        let _ = app.activity.send(Activity::Received {
            event_id: id.map(str::to_owned),
            notif_type: t.map(str::to_owned),
            outcome: r,
        });
    };
    if declared.is_some_and(|n| n > limit as u64) {
        outcome(Received::TooLarge, None, None);
        tracing::warn!(declared, limit, "refused delivery: body too large");
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            outcome(Received::TooLarge, None, None);
            tracing::warn!(limit, "refused delivery: body too large");
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
        }
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "unreadable_body"),
    };
    // Signatures are checked against the wall clock (Vast.ai's timestamps); the event is
    // stamped with the steady one (see `clock`).
    let now = app.clock.steady_secs();
    let check = || {
        let verifier = app.verifier.read().expect("verifier lock").clone();
        verifier
            .verify(
                header(&parts, TIMESTAMP_HEADER),
                header(&parts, SIGNATURE_HEADER),
                &bytes,
                app.clock.wall_secs(),
            )
            .cloned()
    };
    let mut checked = check();
    // A webhook created (or a secret rotated) a moment ago: read the secrets again before
    // refusing, since Vast.ai takes a 401 as final and would not send this event again.
    if matches!(checked, Err(VerifyError::BadSignature)) {
        let reread = app.reread_secrets.read().expect("hook lock").clone();
        if let Some(reread) = reread {
            if tokio::task::spawn_blocking(move || reread())
                .await
                .unwrap_or(false)
            {
                checked = check();
            }
        }
    }
    let key = match checked {
        Ok(key) => key,
        Err(e) => {
            let r = match e {
                VerifyError::MissingSignature => Received::MissingSignature,
                VerifyError::BadSignature => Received::BadSignature,
                VerifyError::StaleTimestamp => {
                    signed_but_stale(app, &parts, &bytes);
                    Received::StaleTimestamp
                }
            };
            outcome(r, None, None);
            tracing::warn!(
                reason = e.reason(),
                attempt,
                "refused delivery: signature check failed"
            );
            return refuse(StatusCode::UNAUTHORIZED, e.reason());
        }
    };
    let header_id = parts
        .headers
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    let delivery = match Delivery::parse(bytes.to_vec(), header_id, now) {
        Ok(mut d) => {
            let e = d.event();
            let context = key.context_of(&e.notif_type).map(str::to_owned);
            let heartbeat =
                e.notif_type == "webhook_test" && app.gate.expecting(app.clock.wall_ms());
            d.set_context(context);
            d.set_heartbeat(heartbeat);
            d
        }
        Err(e) => {
            outcome(Received::InvalidJson, None, None);
            tracing::warn!(reason = %e, "refused delivery: not a JSON object");
            return refuse(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    if app.log_payloads {
        tracing::trace!(payload = %String::from_utf8_lossy(&bytes), "delivery body");
    }
    let event = delivery.event();
    let (id, kind, heartbeat) = (
        event.event_id.clone(),
        event.notif_type.clone(),
        event.heartbeat,
    );
    // A store that is known broken (deleted, replaced, corrupt) takes nothing: what it would
    // acknowledge might not survive.
    let stored = match app.spool.fault() {
        Some(super::spool::Fault::Broken(why)) => Err(super::spool::SpoolError(why)),
        _ => app.spool.insert_delivery(delivery).await,
    };
    match stored {
        Ok(Inserted::New) => {
            outcome(Received::Stored, Some(&id), Some(&kind));
            if heartbeat {
                app.gate.arrived(&key.label);
            }
            tracing::info!(event_id = %printable(&id), notif_type = %printable(&kind), attempt, key = %key.label, heartbeat, "stored");
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(OUTCOME_HEADER, "stored")
                .body(Full::default())
                .expect("static response")
        }
        Ok(Inserted::Duplicate) => {
            outcome(Received::Duplicate, Some(&id), Some(&kind));
            tracing::info!(event_id = %printable(&id), notif_type = %printable(&kind), attempt, "duplicate delivery, already stored");
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(OUTCOME_HEADER, "duplicate")
                .body(Full::default())
                .expect("static response")
        }
        Err(e) => {
            outcome(Received::StoreFailed, Some(&id), Some(&kind));
            tracing::error!(event_id = %printable(&id), error = %e, "cannot store delivery; answering 503 so Vast.ai retries");
            let mut r = refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
    }
}
