//! A loopback stand-in for a Slack incoming webhook and a PagerDuty Events API endpoint, used
//! by `vslack demo`: it answers like each (Slack 200 `ok`; PagerDuty 202 for a `trigger` or
//! `resolve` carrying the routing key), keeps every payload, and can show roughly how Slack
//! would display one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

pub struct SlackSink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlackSink {
    pub async fn start() -> anyhow::Result<SlackSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            // Bounded like every listener here: connections, header time, body size.
            let permits = Arc::new(tokio::sync::Semaphore::new(64));
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let pager = req.uri().path() == "/v2/enqueue";
                            let body = Limited::new(req.into_body(), 1 << 20).collect().await;
                            let parsed = body
                                .ok()
                                .and_then(|b| serde_json::from_slice::<Value>(&b.to_bytes()).ok());
                            let (status, text) = match parsed {
                                Some(v) if pager => {
                                    let ok = v["routing_key"] == "demo"
                                        && matches!(
                                            v["event_action"].as_str(),
                                            Some("trigger" | "resolve")
                                        );
                                    if ok {
                                        store.lock().expect("sink lock").push(v);
                                        (StatusCode::ACCEPTED, r#"{"status":"success"}"#)
                                    } else {
                                        (StatusCode::BAD_REQUEST, r#"{"status":"invalid event"}"#)
                                    }
                                }
                                Some(v)
                                    if v.get("text").is_some_and(|t| {
                                        t.as_str().is_some_and(|s| !s.is_empty())
                                    }) =>
                                {
                                    store.lock().expect("sink lock").push(v);
                                    (StatusCode::OK, "ok")
                                }
                                Some(_) => (StatusCode::BAD_REQUEST, "no_text"),
                                None => (StatusCode::BAD_REQUEST, "invalid_payload"),
                            };
                            let mut r =
                                Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                            *r.status_mut() = status;
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(SlackSink {
            addr,
            received,
            task,
        })
    }

    /// An incoming-webhook-shaped URL on this sink.
    pub fn url(&self) -> String {
        format!("http://{}/services/TDEMO/BDEMO/demo", self.addr)
    }

    /// A PagerDuty Events API URL on this sink (routing key `demo`).
    pub fn pagerduty_url(&self) -> String {
        format!("http://{}/v2/enqueue?routing_key=demo", self.addr)
    }

    /// What Slack received.
    pub fn received(&self) -> Vec<Value> {
        let all = self.received.lock().expect("sink lock");
        all.iter()
            .filter(|v| v.get("event_action").is_none())
            .cloned()
            .collect()
    }

    /// What PagerDuty received.
    pub fn pages(&self) -> Vec<Value> {
        let all = self.received.lock().expect("sink lock");
        all.iter()
            .filter(|v| v.get("event_action").is_some())
            .cloned()
            .collect()
    }
}

impl Drop for SlackSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Slack's `<url|text>` links as `text (url)`, the way they read on screen.
fn links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<http") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let inner = &rest[start + 1..start + end];
        match inner.split_once('|') {
            Some((url, label)) => out.push_str(&format!("{label} ({url})")),
            None => out.push_str(inner),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Roughly how Slack shows a payload, as indented plain text.
pub fn preview(payload: &Value) -> String {
    let mut lines = Vec::new();
    let text_of = |v: &Value| {
        v.pointer("/text/text")
            .or_else(|| v.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match payload.get("blocks").and_then(Value::as_array) {
        Some(blocks) => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("header") => lines.push(format!("*{}*", text_of(b))),
                    Some("section") => lines.extend(text_of(b).lines().map(str::to_owned)),
                    Some(kind @ ("actions" | "context")) => {
                        let elements = b.get("elements").and_then(Value::as_array);
                        for e in elements.into_iter().flatten() {
                            let str_of = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
                            lines.push(if kind == "actions" {
                                format!("[{}] ({})", text_of(e), str_of("url"))
                            } else {
                                format!("  {}", str_of("text"))
                            });
                        }
                    }
                    Some("divider") => lines.push("---".into()),
                    _ => {}
                }
            }
        }
        None => lines.extend(
            payload
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .lines()
                .map(str::to_owned),
        ),
    }
    links(&lines.join("\n"))
}
