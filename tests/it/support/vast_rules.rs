//! What the Vast.ai stand-in knows of Vast.ai's rules (`vast-api.md`): the notification
//! catalogue, and which webhook URLs and create/update bodies it accepts.

use serde_json::{json, Value};

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

pub fn types_json() -> Value {
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

/// `https://<host>...`, or loopback `http://` so tests can point webhooks at local relays.
pub fn url_ok(u: &str) -> bool {
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
pub type Fields = (Option<Option<String>>, Option<String>, Option<Vec<String>>);

pub fn validate(body: &[u8]) -> Result<Fields, String> {
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
