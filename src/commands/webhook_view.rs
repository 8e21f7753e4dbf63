//! How webhooks are shown: the `--json` view (Vast.ai's fields plus what this machine knows),
//! `webhook types`, `webhook list` and the details of one.

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::config::Config;
use crate::output;
use crate::vast::{VastClient, Webhook};

/// A webhook as vslack shows it (`--json`): Vast.ai's fields plus what this machine knows.
#[derive(Debug, Serialize)]
pub struct WebhookView {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// This machine holds the signing secret.
    pub secret_held: bool,
    /// It is the default for commands given no ID.
    pub default: bool,
    /// Unix seconds of the last rotation, when the previous secret is still held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
}

impl WebhookView {
    /// The view of `webhook`; its URL is shown safely (a chat service's path is a secret).
    pub fn new(mut webhook: Webhook, config: &Config) -> WebhookView {
        webhook.webhook_url = crate::urls::shown(&webhook.webhook_url);
        let held = config.webhook(webhook.id);
        WebhookView {
            secret_held: held.is_some(),
            default: config.default_webhook == Some(webhook.id),
            rotated_at: held.and_then(|h| h.rotated_at),
            webhook,
        }
    }
}

pub(super) async fn types(ctx: &Ctx, client: &VastClient) -> Result<()> {
    let types = client.notification_types().await?;
    if ctx.global.json {
        return output::json(&types);
    }
    let rows: Vec<Vec<String>> = types
        .iter()
        .map(|t| {
            vec![
                t.key.clone(),
                t.display_name.clone().unwrap_or_default(),
                t.context.clone().unwrap_or_default(),
                t.category.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["KEY", "NAME", "CONTEXT", "CATEGORY"], &rows)
    );
    Ok(())
}

pub(super) async fn list(ctx: &Ctx, client: &VastClient, config: &Config) -> Result<()> {
    let views: Vec<WebhookView> = client
        .list_webhooks()
        .await?
        .into_iter()
        .map(|w| WebhookView::new(w, config))
        .collect();
    if ctx.global.json {
        return output::json(&json!({ "webhooks": views }));
    }
    if views.is_empty() {
        ctx.note(if config.relay.tunnel.is_some() {
            "No webhooks yet; `vslack up` creates one once the tunnel's URL is known (or `vslack webhook create --url URL --event KEY`)"
        } else {
            "No webhooks yet; create one with `vslack webhook create --url URL --event KEY`"
        });
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                format!("{}{}", v.webhook.id, if v.default { "*" } else { "" }),
                v.webhook.name.clone().unwrap_or_default(),
                v.webhook.webhook_url.clone(),
                v.webhook.event_types.len().to_string(),
                if v.secret_held { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["ID", "NAME", "URL", "EVENTS", "SECRET HERE"], &rows)
    );
    if views.iter().any(|v| v.default) {
        ctx.note("* = default webhook");
    }
    Ok(())
}

pub(super) fn print_details(v: &WebhookView) {
    let w = &v.webhook;
    println!(
        "id           {}{}",
        w.id,
        if v.default { " (default)" } else { "" }
    );
    println!("name         {}", w.name.as_deref().unwrap_or(""));
    println!("url          {}", w.webhook_url);
    println!(
        "secret here  {}",
        match (v.secret_held, v.rotated_at) {
            (true, Some(t)) => format!(
                "yes (previous kept since rotation at {})",
                output::unix_time(t)
            ),
            (true, None) => "yes".to_owned(),
            (false, _) => "no (run `vslack webhook rotate-secret` to get one)".to_owned(),
        }
    );
    if let Some(c) = w.created_at {
        println!("created      {}", output::unix_time(c as i64));
    }
    println!("events       {}", w.event_types.join("\n             "));
}
