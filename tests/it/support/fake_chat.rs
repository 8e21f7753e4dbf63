//! Loopback stand-ins for Google Chat, Discord, Microsoft Teams, Telegram, ntfy and PagerDuty.
//! Each checks the request the way its service documents it (shape and limits), answers
//! with the service's success code and body, and can be scripted to answer with the
//! service's own 429 or permanent error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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

fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
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

/// The service's documented request shape and limits.
fn validate(service: Service, req: &Recorded) -> Result<(), String> {
    if req.method != "POST" {
        return Err("method must be POST".into());
    }
    let v = req.json();
    let s = |v: &Value| v.as_str().map_or(0, units);
    let need = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_owned()) };
    match service {
        Service::Discord => {
            need(
                v["allowed_mentions"]["parse"] == json!([]),
                "allowed_mentions.parse must be []",
            )?;
            let embeds = v["embeds"].as_array().ok_or("embeds missing")?;
            need(!embeds.is_empty() && embeds.len() <= 10, "1 to 10 embeds")?;
            let mut total = 0;
            for e in embeds {
                need(s(&e["title"]) <= 256, "title over 256")?;
                need(s(&e["description"]) <= 4096, "description over 4096")?;
                need(s(&e["footer"]["text"]) <= 2048, "footer over 2048")?;
                let fields = e["fields"].as_array().cloned().unwrap_or_default();
                need(fields.len() <= 25, "more than 25 fields")?;
                total += s(&e["title"]) + s(&e["description"]) + s(&e["footer"]["text"]);
                for f in fields {
                    need(
                        s(&f["name"]) <= 256 && s(&f["value"]) <= 1024,
                        "field too long",
                    )?;
                    total += s(&f["name"]) + s(&f["value"]);
                }
            }
            need(total <= 6000, "embeds over 6000 characters in all")
        }
        Service::Telegram => {
            need(
                !req.path.contains("chat_id"),
                "chat_id must not be in the URL",
            )?;
            need(v["chat_id"] == TELEGRAM_CHAT, "wrong or missing chat_id")?;
            need(v["parse_mode"] == "HTML", "parse_mode must be HTML")?;
            let text = v["text"].as_str().ok_or("message text is empty")?;
            let visible = telegram_visible(text)?;
            need(!visible.is_empty(), "message text is empty")?;
            need(units(&visible) <= 4096, "message is too long")
        }
        Service::GoogleChat => {
            need(req.body.len() <= 32_000, "message over 32,000 bytes")?;
            need(
                v["text"].is_string() || v["cardsV2"].is_array(),
                "no text and no cards",
            )?;
            for c in v["cardsV2"].as_array().into_iter().flatten() {
                need(
                    c["cardId"].is_string() && c["card"].is_object(),
                    "cardsV2 needs cardId and card",
                )?;
            }
            Ok(())
        }
        Service::Teams => {
            need(req.body.len() <= 28_000, "message over 28 KB")?;
            need(v["type"] == "message", "type must be message")?;
            let a = &v["attachments"][0];
            need(
                a["contentType"] == "application/vnd.microsoft.card.adaptive",
                "not an Adaptive Card",
            )?;
            need(
                a["content"]["type"] == "AdaptiveCard",
                "content is not an AdaptiveCard",
            )?;
            need(a["content"]["body"].is_array(), "card has no body")
        }
        Service::Ntfy => {
            need(req.body.len() <= 4_096, "message over 4,096 bytes")?;
            need(!req.body.is_empty(), "empty message")?;
            for (k, val) in &req.headers {
                need(val.is_ascii(), &format!("header {k} is not ASCII"))?;
            }
            need(req.header("title").is_some(), "no Title")?;
            need(
                matches!(req.header("priority"), Some("1" | "2" | "3" | "4" | "5")),
                "Priority must be 1-5",
            )
        }
        Service::PagerDuty => {
            need(
                !req.path.contains("routing_key"),
                "routing_key must not be in the URL",
            )?;
            need(v["routing_key"] == PAGERDUTY_KEY, "Invalid routing key")?;
            let dedup = v["dedup_key"].as_str().ok_or("dedup_key missing")?;
            need(
                !dedup.is_empty() && dedup.len() <= 255,
                "dedup_key must be 1-255 characters",
            )?;
            match v["event_action"].as_str() {
                Some("resolve") => Ok(()),
                Some("trigger") => {
                    let p = &v["payload"];
                    need(
                        s(&p["summary"]) > 0 && s(&p["summary"]) <= 1024,
                        "summary must be 1-1024 characters",
                    )?;
                    need(p["source"].is_string(), "source missing")?;
                    need(
                        matches!(
                            p["severity"].as_str(),
                            Some("critical" | "error" | "warning" | "info")
                        ),
                        "severity invalid",
                    )
                }
                _ => Err("event_action must be trigger, acknowledge or resolve".into()),
            }
        }
    }
}

/// Telegram's HTML parse mode: only known tags, balanced, entities known; the visible text.
fn telegram_visible(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let end = rest.find('>').ok_or("can't parse entities: unclosed tag")?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop().as_deref() != Some(name) {
                    return Err(format!("can't parse entities: unexpected end tag {name}"));
                }
            } else if ["b", "code", "i"].contains(&tag) {
                open.push(tag.to_owned());
            } else {
                return Err(format!(
                    "can't parse entities: unsupported start tag \"{tag}\""
                ));
            }
            rest = &rest[end + 1..];
        } else if c == '&' {
            let end = rest.find(';').ok_or("can't parse entities: bare &")?;
            out.push(match &rest[1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                e => return Err(format!("can't parse entities: unknown entity {e}")),
            });
            rest = &rest[end + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !open.is_empty() {
        return Err("can't parse entities: unclosed tag".into());
    }
    Ok(out)
}
