//! A fake Slack: incoming webhooks (`/services/...`) and Workflow Builder triggers
//! (`/triggers/...`), validating payloads like Slack, with scriptable failures and rate limits.
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{lock, respond, Recorded, Resp, Server};

/// A scripted answer, used (one per request, in order) before the default behaviour.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Answer this status with this body (e.g. `500, "rollup_error"`); text/plain unless the
    /// body starts with `{`.
    Status(u16, &'static str),
    /// 429 with `Retry-After: secs` and body `rate_limited`.
    RateLimited(u64),
    /// Sleep, then answer as usual (validation applies; normally 200 `ok`).
    Slow(Duration),
    /// Close the connection without answering (a network error for the client).
    Disconnect,
    /// Hold the request until `release()` is called, then answer as usual.
    Hold,
}

/// One request Slack received and what it answered (`status_returned` 0 = disconnected).
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub raw: Vec<u8>,
    /// Parsed body, `Value::Null` if not JSON.
    pub body: Value,
    pub status_returned: u16,
}

struct Bucket {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    requests: Vec<Recorded>,
    received: Vec<Received>,
    bucket: Option<Bucket>,
    gate: Arc<tokio::sync::Notify>,
}

pub struct FakeSlack {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FakeSlack {
    pub fn start() -> FakeSlack {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let server = Server::start(Arc::new(move |req| Box::pin(handle(st.clone(), req))));
        FakeSlack { state, server }
    }

    /// Incoming-webhook URL: `http://127.0.0.1:PORT/services/T000/B000/XXXXXXXX`.
    pub fn url(&self) -> String {
        format!("{}/services/T000/B000/XXXXXXXX", self.server.base())
    }

    /// Workflow Builder trigger URL: `http://127.0.0.1:PORT/triggers/T000/123/abc`.
    pub fn trigger_url(&self) -> String {
        format!("{}/triggers/T000/123/abc", self.server.base())
    }

    /// Queue answers for the next requests (appended to any still queued).
    pub fn script(&self, answers: Vec<Answer>) {
        lock(&self.state).script.extend(answers);
    }

    /// Let one held request (`Answer::Hold`) be answered; if none is held yet, the next one
    /// goes through at once.
    pub fn release(&self) {
        lock(&self.state).gate.notify_one();
    }

    /// Token bucket: refills `per_sec` tokens a second, holds at most `max(1, per_sec)`.
    /// A request finding no token gets 429 `Retry-After: 1` (and consumes nothing).
    /// Scripted answers bypass it.
    pub fn set_rate_limit(&self, per_sec: f64) {
        lock(&self.state).bucket = Some(Bucket {
            per_sec,
            tokens: per_sec.max(1.0),
            last: Instant::now(),
        });
    }

    /// Every request as it arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// Bodies of the requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.status_returned))
            .map(|r| r.body.clone())
            .collect()
    }

    /// Poll until at least `n` were delivered (2xx) or `timeout` passes; returns what there is.
    pub fn wait_for_delivered(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.delivered();
            if d.len() >= n || Instant::now() >= deadline {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Slack's own validation and default answers.
fn default_answer(method: &str, path: &str, body: &Value) -> (u16, &'static str) {
    if method != "POST" {
        return (405, "invalid_method");
    }
    if path.starts_with("/triggers/") {
        return if body.is_object() {
            (200, r#"{"ok":true}"#)
        } else {
            (400, r#"{"ok":false,"error":"invalid_payload"}"#)
        };
    }
    if !path.starts_with("/services/") {
        return (404, "no_service");
    }
    let Some(obj) = body.as_object() else {
        return (400, "invalid_payload");
    };
    let blocks = match obj.get("blocks") {
        None | Some(Value::Null) => 0,
        Some(Value::Array(b)) => {
            let long_text = |b: &Value| {
                b["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.chars().count() > 3000)
            };
            if b.len() > 50 || b.iter().any(|x| !x.is_object() || long_text(x)) {
                return (400, "invalid_blocks");
            }
            b.len()
        }
        Some(_) => return (400, "invalid_blocks"),
    };
    let has_text = obj
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !has_text && blocks == 0 {
        return (400, "no_text");
    }
    (200, "ok")
}

async fn handle(st: Arc<Mutex<State>>, req: Recorded) -> Option<Resp> {
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let scripted = {
        let mut s = lock(&st);
        s.requests.push(req.clone());
        s.script.pop_front()
    };
    let mut retry_after = None;
    let (status, text) = match scripted {
        Some(Answer::Status(code, b)) => (code, b),
        Some(Answer::RateLimited(secs)) => {
            retry_after = Some(secs);
            (429, "rate_limited")
        }
        Some(Answer::Disconnect) => (0, ""),
        Some(Answer::Slow(d)) => {
            tokio::time::sleep(d).await;
            default_answer(&req.method, &path, &body)
        }
        Some(Answer::Hold) => {
            let gate = lock(&st).gate.clone();
            gate.notified().await;
            default_answer(&req.method, &path, &body)
        }
        None => {
            let limited = lock(&st).bucket.as_mut().is_some_and(|b| {
                let now = Instant::now();
                let refill = now.duration_since(b.last).as_secs_f64() * b.per_sec;
                b.tokens = (b.tokens + refill).min(b.per_sec.max(1.0));
                b.last = now;
                let empty = b.tokens < 1.0;
                if !empty {
                    b.tokens -= 1.0;
                }
                empty
            });
            if limited {
                retry_after = Some(1);
                (429, "rate_limited")
            } else {
                default_answer(&req.method, &path, &body)
            }
        }
    };
    lock(&st).received.push(Received {
        at: req.at,
        path,
        headers: req.headers,
        raw: req.body,
        body,
        status_returned: status,
    });
    if status == 0 {
        return None;
    }
    let ct = if text.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut resp = respond(status, ct, text);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().expect("header"));
    }
    Some(resp)
}
