//! A fake Vast.ai console API (`/api/v0/...`) following `vast-api.md`, whose test endpoint
//! really POSTs a signed event to the webhook URL.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::vast_api::{deliver, handle};
use super::{lock, random_hex, unix_now, Recorded, Server};

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
pub(super) struct Hook {
    pub(super) id: i64,
    pub(super) name: Option<String>,
    pub(super) url: String,
    pub(super) events: Vec<String>,
    pub(super) secret: String,
    pub(super) created: f64,
    pub(super) updated: f64,
}

impl Hook {
    pub(super) fn json(&self, with_secret: bool) -> Value {
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

pub(super) struct Event<'a> {
    pub(super) id: String,
    pub(super) notif_type: &'a str,
    pub(super) subject: &'a str,
    pub(super) message: &'a str,
    pub(super) attempt: u32,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) api_key: String,
    pub(super) requests: Vec<Recorded>,
    /// (only for this method, status, body)
    pub(super) fail_queue: VecDeque<(Option<String>, u16, String)>,
    pub(super) hooks: Vec<Hook>,
    pub(super) next_id: i64,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) skew: i64,
    /// Requests with this method are recorded but never answered (an unresponsive Vast.ai).
    pub(super) stall: Option<String>,
}

impl State {
    pub(super) fn now(&self) -> f64 {
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
