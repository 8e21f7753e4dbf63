//! Test stand-ins for Vast.ai and Slack. Each fake is a real HTTP server on 127.0.0.1:0 that runs
//! on its own tokio runtime in a background thread, so it works from plain `#[test]` functions
//! (and from async tests), and shuts down when dropped.
#![allow(dead_code)]

pub mod chat_rules;
pub mod fake_chat;
pub mod fake_slack;
pub mod fake_vast;
pub mod postgres;
pub mod vast_api;
pub mod vast_rules;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

/// One HTTP request as it arrived at a fake.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path including the query string, e.g. `/api/v0/webhooks/?x=1`.
    pub path: String,
    /// Lowercase header name -> value (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    /// Header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON, `Value::Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub type Resp = Response<Full<Bytes>>;
/// Answers one request; `None` means: drop the connection without answering.
pub type Handler =
    Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Option<Resp>> + Send>> + Send + Sync>;

/// A plain HTTP/1 server on 127.0.0.1:0 running on its own runtime thread.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
                let addr = listener.local_addr().expect("local addr");
                tx.send((addr, stop_tx, tokio::runtime::Handle::current()))
                    .expect("report addr");
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            tokio::spawn(serve_conn(stream, handler.clone()));
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_millis(500));
        });
        let (addr, stop, handle) = rx.recv().expect("fake server failed to start");
        Server {
            addr,
            handle,
            shutdown: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_conn(stream: tokio::net::TcpStream, handler: Handler) {
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let at = Instant::now();
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut headers = BTreeMap::<String, String>::new();
            for (k, v) in &parts.headers {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                headers
                    .entry(k.as_str().to_ascii_lowercase())
                    .and_modify(|e| {
                        e.push_str(", ");
                        e.push_str(&v);
                    })
                    .or_insert(v);
            }
            let rec = Recorded {
                method: parts.method.as_str().to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
                headers,
                body: body.to_vec(),
                at,
            };
            handler(rec)
                .await
                .ok_or_else(|| std::io::Error::other("fake: dropping connection"))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

/// Build a response with a body and content type.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    r.headers_mut()
        .insert("content-type", content_type.parse().expect("content type"));
    r
}

pub fn respond_json(status: u16, v: &serde_json::Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

/// Lock ignoring poisoning (a failed assertion elsewhere must not cascade).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since the Unix epoch, as a float.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, "<ts>.<body>")>`, the `X-Vast-Signature-256` value.
pub fn vast_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `n` random bytes as lowercase hex (`2n` characters).
pub fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex::encode(bytes)
}

/// IMF-fixdate (RFC 9110), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[days.rem_euclid(7) as usize],
        day,
        MON[(month - 1) as usize],
        year,
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}
