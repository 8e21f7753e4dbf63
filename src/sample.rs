//! Realistic sample deliveries, signed the way Vast.ai signs them, for `vslack send` and
//! `vslack demo`: testing the relay without a Vast.ai account.

use std::time::Duration;

use serde_json::json;

use crate::relay::server;
use crate::relay::verify::sign;
use crate::secret::Secret;

/// Every kind of event vslack knows a sample for: (slug, subject, message).
pub const SAMPLES: &[(&str, &str, &str)] = &[
    ("low_credit", "Low credit balance", "Your Vast.ai credit balance is $4.12, below your $5.00 alert threshold. Add credit to keep your instances running."),
    ("billing_failed", "Payment failed", "We could not charge your card ending in 4242. Update your payment method to avoid interruption."),
    ("payment_receipt", "Payment receipt", "We received your payment of $50.00. Thank you!"),
    ("instance_created", "Instance created", "Instance 12345678 (RTX 4090 x1) was created."),
    ("instance_started", "Instance started", "Instance 12345678 is now running."),
    ("instance_stopped", "Instance stopped", "Instance 12345678 was stopped."),
    ("instance_offline", "Instance offline", "Instance 12345678 went offline: its host stopped responding."),
    ("instance_online", "Instance back online", "Instance 12345678 is reachable again."),
    ("outbid", "Outbid on an interruptible instance", "Instance 12345678 was outbid and paused. Raise your bid to resume it."),
    ("upcoming_downtime", "Scheduled downtime", "The host of instance 12345678 has maintenance scheduled in 24 hours."),
    ("machine_offline", "Machine offline", "Your machine 4321 went offline."),
    ("machine_error", "Machine error", "Machine 4321 reported a GPU error."),
    ("maintenance_scheduled", "Maintenance scheduled", "Maintenance for machine 4321 is scheduled for tomorrow 02:00 UTC."),
    ("webhook_test", "Vast.ai webhook test", "This is a test notification from Vast.ai."),
];

/// A delivery as Vast.ai would send it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub notif_type: String,
    pub body: Vec<u8>,
    pub timestamp: i64,
    pub signature: String,
}

/// A fresh 32-hex event id.
pub fn event_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// Build and sign a sample event of `notif_type` (unknown types get a generic text).
pub fn delivery(notif_type: &str, secret: &Secret, timestamp: i64) -> Delivery {
    let (subject, message) = SAMPLES
        .iter()
        .find(|(t, _, _)| *t == notif_type)
        .map(|(_, s, m)| (s.to_string(), m.to_string()))
        .unwrap_or_else(|| {
            (
                "Vast.ai notification".into(),
                format!("A {notif_type} event."),
            )
        });
    let event_id = event_id();
    let body = json!({
        "event_id": event_id,
        "user_id": 123456,
        "notif_type": notif_type,
        "subject": subject,
        "message": message,
        "timestamp": timestamp as f64 + 0.123,
    })
    .to_string()
    .into_bytes();
    let signature = sign(secret, timestamp, &body);
    Delivery {
        event_id,
        notif_type: notif_type.to_owned(),
        body,
        timestamp,
        signature,
    }
}

/// The relay's answer to one delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub status: u16,
    /// The relay's short reason (`bad_signature`, ...), empty on 204.
    pub reason: String,
    /// On a 204 from vslack: `stored` or `duplicate` (see `relay::server::OUTCOME_HEADER`).
    pub outcome: Option<String>,
}

impl Answer {
    /// How to show the answer: `204 accepted (stored)`, `204 accepted (duplicate, not queued
    /// again)`, `401 bad_signature`, ...
    pub fn describe(&self) -> String {
        match (self.status, self.outcome.as_deref()) {
            (204, Some("duplicate")) => "204 accepted (duplicate, not queued again)".into(),
            (204, Some(o)) => format!("204 accepted ({o})"),
            (204, None) => "204 accepted".into(),
            (s, _) => format!("{s} {}", self.reason).trim_end().to_owned(),
        }
    }
}

/// POST a delivery to a relay with Vast.ai's headers.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    d: &Delivery,
    attempt: u32,
) -> Result<Answer, String> {
    let resp = http
        .post(url)
        .header("Content-Type", "application/json")
        .header(server::EVENT_ID_HEADER, &d.event_id)
        .header(server::ATTEMPT_HEADER, attempt.to_string())
        .header(server::TIMESTAMP_HEADER, d.timestamp.to_string())
        .header(server::SIGNATURE_HEADER, &d.signature)
        .body(d.body.clone())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot reach the relay at {url}: {}",
                crate::output::root_cause(&e)
            )
        })?;
    let status = resp.status().as_u16();
    let outcome = resp
        .headers()
        .get(server::OUTCOME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_default();
    Ok(Answer {
        status,
        reason,
        outcome,
    })
}
