//! A fake Vast.ai console API (`/api/v0/...`) following `vast-api.md`, whose test endpoint
//! really POSTs a signed event to the webhook URL.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    http_date, lock, random_hex, respond, respond_json, unix_now, vast_signature, Recorded, Resp,
    Server,
};

/// Catalogue row: key, topic, category, display name, default email, default webhooks,
/// mandatory email.
pub type TypeRow = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    bool,
    bool,
    bool,
);

/// What `GET /api/v0/notification-types/` lists.
#[rustfmt::skip]
pub const NOTIFICATION_TYPES: [TypeRow; 14] = [
    ("client:low_credit", Some("billing"), "billing", "Low balance notifications", true, false, false),
    ("client:billing_failed", Some("billing"), "billing", "Billing failures", true, false, true),
    ("client:payment_receipt", Some("billing"), "billing", "Payment receipts", true, false, false),
    ("client:instance_created", Some("instances"), "instances", "Instance created", false, false, false),
    ("client:instance_started", Some("instances"), "instances", "Instance started", false, false, false),
    ("client:instance_stopped", Some("instances"), "instances", "Instance stopped", false, false, false),
    ("client:instance_offline", Some("instances"), "instances", "Instance offline", true, false, false),
    ("client:instance_online", Some("instances"), "instances", "Instance back online", false, false, false),
    ("client:outbid", Some("instances"), "instances", "Outbid on an interruptible instance", true, false, false),
    ("client:upcoming_downtime", Some("instances"), "instances", "Upcoming host downtime", true, false, false),
    ("host:machine_offline", Some("machines"), "machines", "Machine offline", true, false, false),
    ("host:machine_error", Some("machines"), "machines", "Machine error", true, false, false),
    ("host:maintenance_scheduled", None, "machines", "Maintenance scheduled", true, false, false),
    // A host event whose slug alone does not say "host" (its context comes from the webhook).
    ("host:payout_sent", Some("earnings"), "earnings", "Payout sent", false, false, false),
];

/// Vast.ai's per-account webhook limit.
pub const WEBHOOK_LIMIT: usize = 4;

/// One signed delivery the fake made to a webhook URL (test endpoint or `deliver_event`).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub webhook_id: i64,
    pub url: String,
    pub event_id: String,
    pub attempt: u32,
    /// Value of `X-Vast-Timestamp`.
    pub timestamp: String,
    /// Raw body as sent (and signed).
    pub body: String,
    /// HTTP status of the receiver's answer, or the connection/timeout error.
    pub outcome: Result<u16, String>,
    pub at: Instant,
}

#[derive(Clone)]
struct Hook {
    id: i64,
    name: Option<String>,
    url: String,
    events: Vec<String>,
    secret: String,
    created: f64,
    updated: f64,
}

impl Hook {
    fn json(&self, with_secret: bool) -> Value {
        let mut v = json!({
            "id": self.id, "user_id": 1, "name": self.name, "webhook_url": self.url,
            "event_types": self.events, "created_at": self.created, "updated_at": self.updated,
        });
        if with_secret {
            v["webhook_secret"] = json!(self.secret);
        }
        v
    }
}

struct Event<'a> {
    id: String,
    notif_type: &'a str,
    subject: &'a str,
    message: &'a str,
    attempt: u32,
}

#[derive(Default)]
struct State {
    api_key: String,
    requests: Vec<Recorded>,
    /// (only for this method, status, body)
    fail_queue: VecDeque<(Option<String>, u16, String)>,
    hooks: Vec<Hook>,
    next_id: i64,
    deliveries: Vec<Delivery>,
    skew: i64,
    /// Requests with this method are recorded but never answered (an unresponsive Vast.ai).
    stall: Option<String>,
}

impl State {
    fn now(&self) -> f64 {
        unix_now() + self.skew as f64
    }
}

pub struct FakeVast {
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    server: Server,
}

impl FakeVast {
    /// Start a fake that accepts `Authorization: Bearer <api_key>`.
    pub fn start(api_key: &str) -> FakeVast {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_string(),
            next_id: 1,
            ..State::default()
        }));
        let client = vslack::http::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("reqwest client");
        let (st, cl) = (state.clone(), client.clone());
        let server = Server::start(Arc::new(move |req| {
            let (st, cl) = (st.clone(), cl.clone());
            Box::pin(async move { Some(handle(st, cl, req).await) })
        }));
        FakeVast {
            state,
            client,
            server,
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the value for `VAST_URL`.
    pub fn url(&self) -> String {
        self.server.base()
    }

    /// The next `times` requests (any path, before auth) get `status` with `body`: JSON
    /// content type if the body parses as JSON, else text/plain; never a `Retry-After`.
    pub fn fail_next(&self, status: u16, body: &str, times: usize) {
        let mut s = lock(&self.state);
        for _ in 0..times {
            s.fail_queue.push_back((None, status, body.to_string()));
        }
    }

    /// Like `fail_next`, but only requests with `method` consume these failures.
    pub fn fail_method_next(&self, method: &str, status: u16, body: &str, times: usize) {
        let mut s = lock(&self.state);
        for _ in 0..times {
            s.fail_queue
                .push_back((Some(method.to_string()), status, body.to_string()));
        }
    }

    /// From now on, requests with `method` are recorded but never answered.
    pub fn stall_method(&self, method: &str) {
        lock(&self.state).stall = Some(method.to_string());
    }

    /// Number of recorded requests with exactly this method and path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Every request as it arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Number of recorded requests with this method whose path starts with `path_prefix`.
    pub fn api_requests_matching(&self, method: &str, path_prefix: &str) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// Current webhooks, including `webhook_secret`.
    pub fn webhooks(&self) -> Vec<Value> {
        lock(&self.state)
            .hooks
            .iter()
            .map(|h| h.json(true))
            .collect()
    }

    /// Seed a webhook (no validation, limit not enforced). Returns its id and secret.
    pub fn insert_webhook(&self, name: &str, url: &str, events: &[&str]) -> (i64, String) {
        let mut s = lock(&self.state);
        let (id, now, secret) = (s.next_id, s.now(), random_hex(32));
        s.next_id += 1;
        s.hooks.push(Hook {
            id,
            name: Some(name.to_string()),
            url: url.to_string(),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: secret.clone(),
            created: now,
            updated: now,
        });
        (id, secret)
    }

    /// Point webhook `id` at `url` (as a change in the console would).
    pub fn set_webhook_url(&self, id: i64, url: &str) {
        let mut s = lock(&self.state);
        if let Some(h) = s.hooks.iter_mut().find(|h| h.id == id) {
            h.url = url.to_string();
        }
    }

    /// Give webhook `id` a new secret without telling anyone (a rotation on another machine).
    pub fn rotate_secret_elsewhere(&self, id: i64) -> String {
        let mut s = lock(&self.state);
        let h = s.hooks.iter_mut().find(|h| h.id == id).expect("webhook");
        h.secret = random_hex(32);
        h.secret.clone()
    }

    /// Delete webhook `id` (as in the console).
    pub fn remove_webhook(&self, id: i64) {
        lock(&self.state).hooks.retain(|h| h.id != id);
    }

    /// Accept only `key` from now on (the old key revoked).
    pub fn set_api_key(&self, key: &str) {
        lock(&self.state).api_key = key.to_string();
    }

    /// Outcomes of all deliveries so far: the receiver's HTTP status, or the error.
    pub fn deliveries(&self) -> Vec<Result<u16, String>> {
        lock(&self.state)
            .deliveries
            .iter()
            .map(|d| d.outcome.clone())
            .collect()
    }

    /// Full records of all deliveries so far.
    pub fn delivery_log(&self) -> Vec<Delivery> {
        lock(&self.state).deliveries.clone()
    }

    /// Shift this fake's clock: `Date` headers, webhook timestamps, event timestamps.
    pub fn set_clock_skew(&self, secs: i64) {
        lock(&self.state).skew = secs;
    }

    /// Act like Vast.ai delivering a real notification: POST a signed event of `notif_type`
    /// (slug, e.g. `low_credit`) to webhook `webhook_id`'s URL, signed with its current secret.
    /// Pass the same `event_id` and a higher `attempt` to simulate a retry. Blocks until the
    /// receiver answers (10 s timeout). Panics if the webhook does not exist.
    pub fn deliver_event(
        &self,
        webhook_id: i64,
        notif_type: &str,
        event_id: Option<&str>,
        attempt: u32,
    ) -> Delivery {
        let hook = lock(&self.state)
            .hooks
            .iter()
            .find(|h| h.id == webhook_id)
            .cloned()
            .expect("deliver_event: no such webhook");
        let id = event_id.map_or_else(|| random_hex(16), str::to_string);
        let (tx, rx) = std::sync::mpsc::channel();
        let (st, cl, nt) = (
            self.state.clone(),
            self.client.clone(),
            notif_type.to_string(),
        );
        self.server.handle.spawn(async move {
            let subject = format!("Vast.ai notification: {nt}");
            let message = format!("Test stand-in for a {nt} notification.");
            let ev = Event {
                id,
                notif_type: &nt,
                subject: &subject,
                message: &message,
                attempt,
            };
            let _ = tx.send(deliver(&st, &cl, &hook, ev).await);
        });
        rx.recv().expect("delivery task")
    }
}

async fn deliver(
    st: &Mutex<State>,
    client: &reqwest::Client,
    hook: &Hook,
    ev: Event<'_>,
) -> Delivery {
    let now = lock(st).now();
    let ts = (now as i64).to_string();
    // Python's json.dumps separators (", " and ": "): receivers must verify the raw bytes.
    let body = format!(
        "{{\"event_id\": {}, \"user_id\": 1, \"notif_type\": {}, \"subject\": {}, \"message\": {}, \"timestamp\": {:.6}}}",
        json!(ev.id),
        json!(ev.notif_type),
        json!(ev.subject),
        json!(ev.message),
        now
    );
    let result = client
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header("X-Vast-Event-Id", &ev.id)
        .header("X-Vast-Delivery-Attempt", ev.attempt.to_string())
        .header("X-Vast-Timestamp", &ts)
        .header(
            "X-Vast-Signature-256",
            vast_signature(&hook.secret, &ts, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await;
    let outcome = match result {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            Err(msg)
        }
    };
    let d = Delivery {
        webhook_id: hook.id,
        url: hook.url.clone(),
        event_id: ev.id,
        attempt: ev.attempt,
        timestamp: ts,
        body,
        outcome,
        at: Instant::now(),
    };
    lock(st).deliveries.push(d.clone());
    d
}

fn err(status: u16, error: &str, msg: &str) -> Resp {
    respond_json(
        status,
        &json!({"success": false, "error": error, "msg": msg}),
    )
}

fn bad(msg: impl AsRef<str>) -> Resp {
    err(400, "invalid_request", msg.as_ref())
}

fn not_found() -> Resp {
    err(404, "not_found", "Webhook not found")
}

/// `https://<host>...`, or loopback `http://` so tests can point webhooks at local relays.
fn url_ok(u: &str) -> bool {
    if let Some(rest) = u.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        return !host.is_empty() && !host.starts_with(':') && !rest.contains(char::is_whitespace);
    }
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            u.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        })
}

/// Parsed fields of a create/update body: `None` = absent; name `Some(None)` = null.
type Fields = (Option<Option<String>>, Option<String>, Option<Vec<String>>);

fn validate(body: &[u8]) -> Result<Fields, String> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err("Request body must be a JSON object".into());
    };
    let name = match obj.get("name") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(n)) if n.chars().count() <= 120 => Some(Some(n.clone())),
        Some(Value::String(_)) => return Err("name must be at most 120 characters".into()),
        Some(_) => return Err("name must be a string".into()),
    };
    let url = match obj.get("webhook_url") {
        None => None,
        Some(Value::String(u)) if u.len() > 2048 => {
            return Err("webhook_url must be at most 2048 characters".into())
        }
        Some(Value::String(u)) if url_ok(u) => Some(u.clone()),
        Some(_) => return Err("webhook_url must be a valid https:// URL".into()),
    };
    let events = match obj.get("event_types") {
        None => None,
        Some(Value::Array(a)) if a.is_empty() => {
            return Err("event_types must contain at least one event type".into())
        }
        Some(Value::Array(a)) => {
            let mut out: Vec<String> = Vec::new();
            for e in a {
                let Some(k) = e.as_str() else {
                    return Err("event_types must be a list of strings".into());
                };
                if !NOTIFICATION_TYPES.iter().any(|t| t.0 == k) {
                    return Err(format!("Unknown event type: {k}"));
                }
                if !out.iter().any(|o| o == k) {
                    out.push(k.to_string());
                }
            }
            Some(out)
        }
        Some(_) => return Err("event_types must be a list of strings".into()),
    };
    Ok((name, url, events))
}

async fn handle(st: Arc<Mutex<State>>, client: reqwest::Client, req: Recorded) -> Resp {
    let stalled = {
        let mut s = lock(&st);
        let stalled = s
            .stall
            .as_ref()
            .is_some_and(|m| m.eq_ignore_ascii_case(&req.method));
        if stalled {
            s.requests.push(req.clone());
        }
        stalled
    };
    if stalled {
        std::future::pending::<()>().await;
    }
    let mut resp = route(&st, &client, &req).await;
    let date = http_date(unix_now() as i64 + lock(&st).skew);
    resp.headers_mut()
        .insert("date", date.parse().expect("date header"));
    resp
}

fn types_json() -> Value {
    let types: Vec<Value> = NOTIFICATION_TYPES
        .iter()
        .map(|(key, topic, cat, name, email, hooks, mandatory)| {
            let (context, slug) = key.split_once(':').expect("key has a context");
            json!({
                "key": key, "slug": slug, "context": context, "topic": topic,
                "category": cat, "display_name": name,
                "default_preferences": {"email": email, "webhooks": hooks},
                "mandatory_email": mandatory,
            })
        })
        .collect();
    json!({"success": true, "notification_types": types})
}

async fn route(st: &Mutex<State>, client: &reqwest::Client, req: &Recorded) -> Resp {
    let (failure, key) = {
        let mut s = lock(st);
        s.requests.push(req.clone());
        let applies = match s.fail_queue.front() {
            Some((Some(m), _, _)) => m.eq_ignore_ascii_case(&req.method),
            Some((None, _, _)) => true,
            None => false,
        };
        let failure = if applies {
            s.fail_queue.pop_front()
        } else {
            None
        };
        (failure, s.api_key.clone())
    };
    if let Some((_, status, body)) = failure {
        let ct = if serde_json::from_str::<Value>(&body).is_ok() {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        return respond(status, ct, body);
    }
    let path = req.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known = path.ends_with('/')
        && matches!(
            segs.as_slice(),
            ["api", "v0", "notification-types" | "webhooks"]
                | ["api", "v0", "webhooks", _]
                | ["api", "v0", "webhooks", _, "rotate-secret" | "test"]
        );
    if !known {
        return err(404, "not_found", "Not found");
    }
    if req.header("authorization") != Some(format!("Bearer {key}").as_str()) {
        return err(401, "auth_error", "Invalid API key");
    }
    let id = segs.get(3).map_or(-1, |s| s.parse::<i64>().unwrap_or(-1));
    let exists = lock(st).hooks.iter().any(|h| h.id == id);
    match (req.method.as_str(), &segs[2..]) {
        ("GET", ["notification-types"]) => respond_json(200, &types_json()),
        ("GET", ["webhooks"]) => {
            let hooks: Vec<Value> = lock(st).hooks.iter().map(|h| h.json(false)).collect();
            respond_json(200, &json!({"success": true, "webhooks": hooks}))
        }
        ("POST", ["webhooks"]) => {
            let (name, url, events) = match validate(&req.body) {
                Ok(v) => v,
                Err(msg) => return bad(msg),
            };
            let (Some(url), Some(events)) = (url, events) else {
                return bad("webhook_url and event_types are required");
            };
            let mut s = lock(st);
            if s.hooks.len() >= WEBHOOK_LIMIT {
                // Deliberately msg-only: "some endpoints give only msg".
                let msg =
                    format!("Webhook limit reached: at most {WEBHOOK_LIMIT} webhooks per account");
                return respond_json(400, &json!({"success": false, "msg": msg}));
            }
            let (id, now) = (s.next_id, s.now());
            s.next_id += 1;
            let hook = Hook {
                id,
                name: name.flatten(),
                url,
                events,
                secret: random_hex(32),
                created: now,
                updated: now,
            };
            s.hooks.push(hook.clone());
            respond_json(
                200,
                &json!({"success": true, "webhook": hook.json(true),
                        "enabled_notification_preferences": hook.events}),
            )
        }
        ("PUT" | "DELETE" | "POST", ["webhooks", _, ..]) if !exists => not_found(),
        ("PUT", ["webhooks", _]) => {
            let (name, url, events) = match validate(&req.body) {
                Ok(v) => v,
                Err(msg) => return bad(msg),
            };
            let mut s = lock(st);
            let now = s.now();
            let Some(h) = s.hooks.iter_mut().find(|h| h.id == id) else {
                return not_found();
            };
            if let Some(n) = name {
                h.name = n;
            }
            if let Some(u) = url {
                h.url = u;
            }
            if let Some(e) = events {
                h.events = e;
            }
            h.updated = now;
            respond_json(
                200,
                &json!({"success": true, "webhook": h.json(false),
                        "enabled_notification_preferences": h.events}),
            )
        }
        ("DELETE", ["webhooks", _]) => {
            lock(st).hooks.retain(|h| h.id != id);
            respond_json(200, &json!({"success": true}))
        }
        ("POST", ["webhooks", _, "rotate-secret"]) => {
            let mut s = lock(st);
            let now = s.now();
            let Some(h) = s.hooks.iter_mut().find(|h| h.id == id) else {
                return not_found();
            };
            h.secret = random_hex(32);
            h.updated = now;
            respond_json(200, &json!({"success": true, "webhook": h.json(true)}))
        }
        ("POST", ["webhooks", _, "test"]) => {
            let Some(hook) = lock(st).hooks.iter().find(|h| h.id == id).cloned() else {
                return not_found();
            };
            let ev = Event {
                id: random_hex(16),
                notif_type: "webhook_test",
                subject: "Vast.ai webhook test",
                message: "This is a test notification from Vast.ai.",
                attempt: 1,
            };
            match deliver(st, client, &hook, ev).await.outcome {
                Ok(s) if (200..300).contains(&s) => respond_json(
                    200,
                    &json!({"success": true, "msg": "Test webhook delivered"}),
                ),
                Ok(s) => err(
                    400,
                    "delivery_failed",
                    &format!("Test delivery failed: webhook returned HTTP {s}"),
                ),
                Err(e) => err(
                    400,
                    "delivery_failed",
                    &format!("Test delivery failed: {e}"),
                ),
            }
        }
        _ => err(405, "method_not_allowed", "Method not allowed"),
    }
}
