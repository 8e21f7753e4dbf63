//! Serde shapes of the Vast.ai webhook API (see `vast-api.md`). Unknown fields are ignored so a
//! new field at Vast.ai never breaks vslack.

use serde::{Deserialize, Serialize};

/// A webhook as listed by Vast.ai. The signing secret is deliberately not a field here: it is
/// taken out of create/rotate answers separately and goes straight to the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Webhook {
    pub id: i64,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    pub webhook_url: String,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationType {
    pub key: String,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub default_preferences: Option<serde_json::Value>,
    #[serde(default)]
    pub mandatory_email: Option<bool>,
}

/// Body of create (all of it) and update (any subset).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
}

/// The walkthrough's six events, pre-selected in prompts.
pub const WALKTHROUGH_EVENTS: &[&str] = &[
    "client:low_credit",
    "client:instance_created",
    "client:instance_started",
    "client:instance_stopped",
    "client:outbid",
    "client:upcoming_downtime",
];

/// Vast.ai's limit on webhooks per account.
pub const MAX_WEBHOOKS: usize = 4;
