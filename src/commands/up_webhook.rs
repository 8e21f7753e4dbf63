//! What `up` changes at Vast.ai, and how it is undone: point the default webhook at this
//! relay (creating one when there is none), and on the way out delete what it created or give
//! an existing webhook its previous URL back.

use anyhow::{bail, Result};

use super::up_report::say;
use super::Ctx;
use crate::cli::UpArgs;
use crate::config::Config;
use crate::vast::types::{WebhookChange, WALKTHROUGH_EVENTS};
use crate::vast::{VastClient, VastError};

/// What `up` changed at Vast.ai, to undo with --cleanup (or when start-up fails).
pub(super) struct Pointed {
    pub id: i64,
    pub created: bool,
    pub previous_url: Option<String>,
    /// Where it points now.
    pub url: String,
}

pub(super) async fn point(
    ctx: &Ctx,
    client: &VastClient,
    args: &UpArgs,
    url: &str,
) -> Result<Pointed> {
    let config = ctx.config()?;
    if let Some(id) = config.default_webhook {
        match client.get_webhook(id).await {
            Ok(w) => {
                if config.webhook(id).is_none() {
                    bail!(crate::exit::UsageError(format!(
                        "this machine does not hold webhook {id}'s signing secret, so the relay could not verify its deliveries; run `vslack webhook rotate-secret {id}` first"
                    )));
                }
                Config::update(&ctx.paths, |c| c.set_events(id, &w.event_types))?;
                if w.webhook_url != url {
                    client
                        .update_webhook(
                            id,
                            &WebhookChange {
                                webhook_url: Some(url.into()),
                                ..Default::default()
                            },
                        )
                        .await?;
                }
                return Ok(Pointed {
                    id,
                    created: false,
                    previous_url: Some(w.webhook_url),
                    url: url.to_owned(),
                });
            }
            Err(VastError::WebhookNotFound { .. }) => {
                ctx.note(format!("note: the default webhook {id} no longer exists at Vast.ai; creating a new one"));
                Config::update(&ctx.paths, |c| c.forget_webhook(id))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    super::webhook::check_room(client).await?;
    let events = if !args.events.is_empty() {
        let cat = super::events::catalogue(ctx, client).await?;
        super::events::resolve_events(&args.events, cat.as_deref())?
    } else if !config.events.is_empty() {
        config.events.clone()
    } else {
        WALKTHROUGH_EVENTS.iter().map(|s| s.to_string()).collect()
    };
    let created = client
        .create_webhook(&WebhookChange {
            name: Some("vslack".into()),
            webhook_url: Some(url.into()),
            event_types: Some(events),
        })
        .await?;
    let id = created.webhook.id;
    // There is no default here (`point` reuses one that exists), so this one becomes it.
    super::webhook::keep_secret(
        ctx,
        id,
        &created.secret,
        true,
        Some(&created.webhook.event_types),
    )?;
    say(format!(
        "created webhook {id} (signing secret saved in {})",
        ctx.paths.config_file().display()
    ));
    Ok(Pointed {
        id,
        created: true,
        previous_url: None,
        url: url.to_owned(),
    })
}

/// What an interrupted `--cleanup` leaves at Vast.ai, and the command that finishes the job.
pub(super) fn left_behind(p: &Pointed) -> Option<String> {
    match (&p.previous_url, p.created) {
        (_, true) => Some(format!(
            "webhook {} still exists: delete it with `vslack webhook delete {}`",
            p.id, p.id
        )),
        (Some(prev), false) => {
            // A previous URL whose path is a secret (a chat webhook) is not printed.
            let shown = crate::urls::shown(prev);
            let url = if shown == *prev { prev.as_str() } else { "URL" };
            Some(format!(
                "webhook {} still points at the tunnel: restore it with `vslack webhook update {} --url {url}` (it was {shown})",
                p.id, p.id
            ))
        }
        (None, false) => None,
    }
}

/// `--cleanup`: delete a webhook `up` created, or give an existing one its URL back.
pub(super) async fn undo(ctx: &Ctx, client: &VastClient, p: &Pointed) -> Result<()> {
    if p.created {
        client.delete_webhook(p.id).await?;
        Config::update(&ctx.paths, |c| c.forget_webhook(p.id))?;
        say(format!("cleanup   deleted webhook {}", p.id));
    } else if let Some(prev) = p.previous_url.as_ref().filter(|prev| **prev != p.url) {
        client
            .update_webhook(
                p.id,
                &WebhookChange {
                    webhook_url: Some(prev.clone()),
                    ..Default::default()
                },
            )
            .await?;
        say(format!(
            "cleanup   webhook {} points at {} again",
            p.id,
            crate::urls::shown(prev)
        ));
    }
    Ok(())
}
