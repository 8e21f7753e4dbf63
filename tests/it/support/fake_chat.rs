//! Loopback stand-ins for Google Chat, Discord, Microsoft Teams, Telegram, ntfy and PagerDuty.
//! Each checks the request the way its service documents it (shape and limits), answers
//! with the service's success code and body, and can be scripted to answer with the
//! service's own 429 or permanent error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::chat_rules::validate;
use super::{lock, respond, Recorded, Resp, Server};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    GoogleChat,
    Discord,
    Teams,
    Telegram,
    Ntfy,
    PagerDuty,
}

pub const ALL: [Service; 6] = [
    Service::GoogleChat,
    Service::Discord,
    Service::Teams,
    Service::Telegram,
    Service::Ntfy,
    Service::PagerDuty,
];

/// A scripted answer for the next request.
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// The service's 429, saying to wait this many seconds.
    RateLimited(u64),
    /// The service's "this webhook/chat/key is gone" answer.
    Gone,
    /// 500, as a service having a bad moment.
    ServerError,
}

pub const TELEGRAM_CHAT: &str = "-100777";
pub const PAGERDUTY_KEY: &str = "R0UT1NGKEY0123456789abcdefabcdef";

#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub request: Recorded,
    pub status: u16,
    /// Why the stand-in refused it (empty when accepted or scripted).
    pub invalid: String,
}

#[derive(Default)]
struct State {
    script: VecDeque<Script>,
    seen: Vec<Seen>,
}

pub struct FakeChat {
    pub service: Service,
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FakeChat {
    pub fn start(service: Service) -> FakeChat {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let server = Server::start(Arc::new(move |req| {
            let st = st.clone();
            Box::pin(async move { Some(handle(service, &st, req)) })
        }));
        FakeChat {
            service,
            state,
            server,
        }
    }

    /// The destination URL, shaped like the service's (so loopback detection applies where
    /// the path names the kind).
    pub fn url(&self) -> String {
        let base = self.server.base();
        match self.service {
            Service::GoogleChat => format!("{base}/v1/spaces/AAAA/messages?key=k&token=t"),
            Service::Discord => format!("{base}/api/webhooks/123/tok"),
            Service::Teams => format!("{base}/workflows/abc/triggers/manual/paths/invoke?sig=s"),
            Service::Telegram => {
                format!("{base}/bot123:ABC/sendMessage?chat_id={TELEGRAM_CHAT}")
            }
            Service::Ntfy => format!("{base}/gpu-alerts"),
            Service::PagerDuty => format!("{base}/v2/enqueue?routing_key={PAGERDUTY_KEY}"),
        }
    }

    pub fn script(&self, s: Vec<Script>) {
        lock(&self.state).script.extend(s);
    }

    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// Requests it accepted (2xx), in order.
    pub fn accepted(&self) -> Vec<Recorded> {
        self.seen()
            .into_iter()
            .filter(|s| (200..300).contains(&s.status))
            .map(|s| s.request)
            .collect()
    }

    /// Requests refused as malformed (not scripted): always a bug in the relay.
    pub fn invalid(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| !s.invalid.is_empty())
            .map(|s| s.invalid)
            .collect()
    }

    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let start = Instant::now();
        loop {
            let a = self.accepted();
            if a.len() >= n || start.elapsed() > timeout {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn handle(service: Service, st: &Mutex<State>, req: Recorded) -> Resp {
    let scripted = lock(st).script.pop_front();
    let (status, body, ctype, invalid, retry_after) = match scripted {
        Some(Script::RateLimited(s)) => {
            let (b, ct) = rate_limited(service, s);
            (429, b, ct, String::new(), Some(s))
        }
        Some(Script::ServerError) => (
            500,
            r#"{"error":"internal"}"#.to_owned(),
            "application/json",
            String::new(),
            None,
        ),
        Some(Script::Gone) => {
            let (st, b) = gone(service);
            (st, b, "application/json", String::new(), None)
        }
        None => match validate(service, &req) {
            Ok(()) => {
                let (st, b) = success(service, &req);
                (st, b, "application/json", String::new(), None)
            }
            Err(why) => {
                let (st, b) = invalid(service, &why);
                (st, b, "application/json", why, None)
            }
        },
    };
    lock(st).seen.push(Seen {
        at: Instant::now(),
        request: req,
        status,
        invalid,
    });
    let mut r = respond(status, ctype, body);
    if let Some(s) = retry_after {
        r.headers_mut()
            .insert("retry-after", s.to_string().parse().unwrap());
    }
    r
}

fn rate_limited(service: Service, secs: u64) -> (String, &'static str) {
    let v = match service {
        // Discord: seconds as a float in the body (and Retry-After).
        Service::Discord => {
            json!({"message": "You are being rate limited.", "retry_after": secs as f64, "global": false})
        }
        Service::Telegram => {
            json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {secs}"), "parameters": {"retry_after": secs}})
        }
        Service::GoogleChat => {
            json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}})
        }
        Service::Ntfy => {
            json!({"code": 42901, "http": 429, "error": "limit reached: too many requests"})
        }
        Service::PagerDuty => {
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."})
        }
        Service::Teams => {
            json!({"error": {"code": "TooManyRequests", "message": "Rate limit is exceeded."}})
        }
    };
    (v.to_string(), "application/json")
}

fn gone(service: Service) -> (u16, String) {
    let (s, v) = match service {
        Service::Discord => (404, json!({"message": "Unknown Webhook", "code": 10015})),
        Service::Telegram => (
            403,
            json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was kicked from the group chat"}),
        ),
        Service::GoogleChat => (
            404,
            json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}),
        ),
        Service::Ntfy => (
            403,
            json!({"code": 40301, "http": 403, "error": "forbidden"}),
        ),
        Service::PagerDuty => (
            400,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid routing key"]}),
        ),
        Service::Teams => (
            404,
            json!({"error": {"code": "WorkflowNotFound", "message": "The workflow could not be found."}}),
        ),
    };
    (s, v.to_string())
}

fn invalid(service: Service, why: &str) -> (u16, String) {
    let v = match service {
        Service::Discord => json!({"message": "Invalid Form Body", "code": 50035, "errors": why}),
        Service::Telegram => {
            json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {why}")})
        }
        Service::GoogleChat => {
            json!({"error": {"code": 400, "message": why, "status": "INVALID_ARGUMENT"}})
        }
        Service::Ntfy => json!({"code": 40001, "http": 400, "error": why}),
        Service::PagerDuty => {
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": [why]})
        }
        Service::Teams => json!({"error": {"code": "InvalidRequestContent", "message": why}}),
    };
    (400, v.to_string())
}

fn success(service: Service, req: &Recorded) -> (u16, String) {
    match service {
        Service::Discord => (204, String::new()),
        Service::Telegram => (200, json!({"ok": true, "result": {"message_id": 1, "chat": {"id": TELEGRAM_CHAT}}}).to_string()),
        Service::GoogleChat => (200, json!({"name": "spaces/AAAA/messages/x.y"}).to_string()),
        Service::Teams => (202, String::new()),
        Service::Ntfy => (200, json!({"id": "abc", "event": "message", "topic": "gpu-alerts", "message": req.body_str()}).to_string()),
        Service::PagerDuty => (202, json!({"status": "success", "message": "Event processed", "dedup_key": req.json()["dedup_key"]}).to_string()),
    }
}
