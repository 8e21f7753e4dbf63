//! The Vast.ai stand-in's request handling (see `fake_vast`): its routes, Vast.ai's error
//! shapes, and the signed POST its test endpoint makes to a webhook URL.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::fake_vast::*;
use super::vast_rules::{types_json, validate};
use super::{
    http_date, lock, random_hex, respond, respond_json, unix_now, vast_signature, Recorded, Resp,
};

pub(super) async fn deliver(
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

pub(super) async fn handle(st: Arc<Mutex<State>>, client: reqwest::Client, req: Recorded) -> Resp {
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
