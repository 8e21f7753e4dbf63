//! `vslack webhook ...`: the walkthrough's curl calls as commands. Secrets returned by create
//! and rotate-secret go straight into the config file; they are printed only on request.

use anyhow::{Context, Result};
use serde_json::json;

use super::events::{catalogue, pick_events, resolve_events};
pub use super::webhook_view::WebhookView;
use super::webhook_view::{list, print_details, types};
use super::{now_secs, Ctx};
use crate::cli::{CreateArgs, UpdateArgs, WebhookCmd};
use crate::config::Config;
use crate::exit::usage;
use crate::output;
use crate::vast::types::{WebhookChange, MAX_WEBHOOKS, WALKTHROUGH_EVENTS};
use crate::vast::{VastClient, VastError};

/// Check what can be checked without Vast.ai first, so a mistake is reported as such even
/// when no API key is set up yet.
fn check_args(ctx: &Ctx, cmd: &WebhookCmd) -> Result<()> {
    let (url, name) = match cmd {
        WebhookCmd::Create(a) => (Some(&a.url), Some(&a.name)),
        WebhookCmd::Update(a) => (a.url.as_ref(), a.name.as_ref()),
        _ => return Ok(()),
    };
    if let Some(w) = url
        .map(|u| check_webhook_url("--url", u))
        .transpose()?
        .flatten()
    {
        ctx.note(format!("warning: {w}"));
    }
    name.map(|n| check_name(n)).transpose()?;
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: WebhookCmd) -> Result<()> {
    check_args(ctx, &cmd)?;
    let config = ctx.config()?;
    let client = ctx.client(&config)?;
    match cmd {
        WebhookCmd::Types => types(ctx, &client).await,
        WebhookCmd::Create(args) => create(ctx, &client, args).await,
        WebhookCmd::List => list(ctx, &client, &config).await,
        WebhookCmd::Show { id } => {
            let id = resolve_id(id, &config)?;
            let view = WebhookView::new(client.get_webhook(id).await?, &config);
            if ctx.global.json {
                output::json(&view)
            } else {
                print_details(&view);
                Ok(())
            }
        }
        WebhookCmd::Update(args) => update(ctx, &client, &config, args).await,
        WebhookCmd::Test { id } => {
            let id = resolve_id(id, &config)?;
            match client.test_webhook(id).await {
                Ok(msg) => {
                    if ctx.global.json {
                        output::json(&json!({"id": id, "delivered": true, "msg": msg}))
                    } else {
                        println!("Vast.ai: {msg}");
                        Ok(())
                    }
                }
                Err(VastError::BadRequest { msg }) => Err(anyhow::anyhow!(
                    "Vast.ai could not deliver the test event to webhook {id}: {msg}. Is the relay running and reachable at the webhook URL? (`vslack webhook show {id}`)"
                )),
                Err(e) => Err(e.into()),
            }
        }
        WebhookCmd::Delete { id, yes } => delete(ctx, &client, &config, id, yes).await,
        WebhookCmd::RotateSecret { id, print_secret } => {
            let id = resolve_id(id, &config)?;
            let rotated = client.rotate_secret(id).await?;
            let (config, _) = keep_secret(ctx, id, &rotated.secret, false, None)?;
            let grace = config.secret_grace().as_secs() / 3600;
            if print_secret {
                println!("{}", rotated.secret.expose());
            } else if ctx.global.json {
                output::json(
                    &json!({"id": id, "rotated": true, "secret_stored": true, "previous_valid_hours": grace}),
                )?;
            }
            ctx.note(format!(
                "Rotated the signing secret of webhook {id} and saved it in {}; the relay keeps accepting the previous secret for {grace} h",
                ctx.paths.config_file().display()
            ));
            ctx.note(
                super::reload::pickup(ctx, &config, false)
                    .await
                    .note("the new secret"),
            );
            Ok(())
        }
        WebhookCmd::Default { id } => {
            client.get_webhook(id).await?;
            let (config, _) = Config::update(&ctx.paths, |c| c.default_webhook = Some(id))?;
            if ctx.global.json {
                output::json(
                    &json!({"default_webhook": id, "secret_held": config.webhook(id).is_some()}),
                )?;
            }
            if config.webhook(id).is_none() {
                ctx.note(format!("note: this machine does not hold webhook {id}'s secret; `vslack webhook rotate-secret {id}` fetches a new one"));
            }
            ctx.note(format!("Webhook {id} is now the default"));
            Ok(())
        }
    }
}

/// The ID given, else the default webhook, else a usage error saying how to pick one.
pub fn resolve_id(id: Option<i64>, config: &Config) -> Result<i64> {
    id.or(config.default_webhook).ok_or_else(|| {
        usage("no webhook ID given and no default set; pass an ID (see `vslack webhook list`) or run `vslack webhook default ID`")
    })
}

/// Check a delivery URL (given with `flag`) before Vast.ai does (see `urls`).
pub fn check_webhook_url(flag: &str, url: &str) -> Result<Option<String>> {
    crate::urls::check_delivery_url(flag, url)
}

fn check_name(name: &str) -> Result<()> {
    if name.chars().any(char::is_control) {
        return Err(usage(
            "--name has a control character (a newline, tab or escape code); use plain text",
        ));
    }
    let n = name.chars().count();
    if n > 120 {
        return Err(usage(format!(
            "--name is {n} characters; Vast.ai allows at most 120"
        )));
    }
    Ok(())
}

/// Before a create: Vast.ai allows `MAX_WEBHOOKS` per account, so say clearly when there is
/// no room, and how to make some.
pub async fn check_room(client: &VastClient) -> Result<()> {
    let existing = client.list_webhooks().await?;
    if existing.len() >= MAX_WEBHOOKS {
        return Err(usage(format!(
            "the account already has {} webhooks, Vast.ai's limit; delete one (`vslack webhook delete ID`), re-point one (`vslack webhook update ID --url URL`), or make one this machine's default (`vslack webhook default ID`)",
            existing.len()
        )));
    }
    Ok(())
}

/// Where Vast.ai delivers: the relay's public base URL plus its path.
pub fn join_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

const CHOOSE_EVENTS: &str =
    "choose events with --event KEY (repeatable) or --all-events; `vslack webhook types` lists the keys";

async fn create(ctx: &Ctx, client: &VastClient, args: CreateArgs) -> Result<()> {
    // Nothing to ask and nothing given: said before Vast.ai is asked anything.
    if args.events.is_empty() && !args.all_events && !ctx.interactive() {
        return Err(usage(CHOOSE_EVENTS));
    }
    check_room(client).await?;
    let cat = catalogue(ctx, client).await?;
    let events = if args.all_events {
        let cat = cat.as_deref().context("--all-events needs the notification types, which could not be fetched; list keys with --event")?;
        cat.iter().map(|t| t.key.clone()).collect()
    } else if !args.events.is_empty() {
        resolve_events(&args.events, cat.as_deref())?
    } else if ctx.interactive() && cat.is_some() {
        let walkthrough: Vec<String> = WALKTHROUGH_EVENTS.iter().map(|s| s.to_string()).collect();
        pick_events(
            cat.as_deref().unwrap_or_default(),
            &walkthrough,
            "Events to subscribe to",
        )?
    } else {
        return Err(usage(CHOOSE_EVENTS));
    };
    if events.is_empty() {
        return Err(usage("no events selected; a webhook needs at least one"));
    }
    if events.iter().any(|e| e.starts_with("client:"))
        && events.iter().any(|e| e.starts_with("host:"))
    {
        ctx.note("warning: this webhook mixes client (renter) and host events; Vast.ai's docs advise one webhook per context, e.g. one with `--event client:…` and another with `--event host:…`");
    }
    let created = client
        .create_webhook(&WebhookChange {
            name: Some(args.name),
            webhook_url: Some(args.url),
            event_types: Some(events),
        })
        .await?;
    let id = created.webhook.id;
    let (config, first) = keep_secret(
        ctx,
        id,
        &created.secret,
        true,
        Some(&created.webhook.event_types),
    )?;
    if args.print_secret {
        println!("{}", created.secret.expose());
    } else if ctx.global.json {
        output::json(&WebhookView::new(created.webhook.clone(), &config))?;
    } else {
        println!("{id}");
    }
    ctx.note(format!(
        "Created webhook {id} -> {} ({}). Signing secret saved in {}{}",
        crate::urls::shown(&created.webhook.webhook_url),
        output::plural(created.webhook.event_types.len(), "event"),
        ctx.paths.config_file().display(),
        if first {
            "; it is the default webhook"
        } else {
            ""
        }
    ));
    let pickup = super::reload::pickup(ctx, &config, false).await;
    if pickup.running() {
        ctx.note(pickup.note("its signing secret"));
    }
    Ok(())
}

/// Store a secret Vast.ai just issued (the previous one is kept for the grace period); with
/// `default`, make the webhook the default if there is none. Returns the config and whether
/// it became the default. The secret exists only in Vast.ai's answer: if it cannot be saved,
/// the error says how to recover.
pub fn keep_secret(
    ctx: &Ctx,
    id: i64,
    secret: &crate::secret::Secret,
    default: bool,
    events: Option<&[String]>,
) -> Result<(Config, bool)> {
    Config::update(&ctx.paths, |c| {
        c.store_secret(id, secret.clone(), now_secs());
        if let Some(events) = events {
            c.set_events(id, events);
        }
        let first = default && c.default_webhook.is_none();
        if first {
            c.default_webhook = Some(id);
        }
        first
    })
    .with_context(|| {
        format!("Vast.ai issued a new secret for webhook {id} but it could not be saved; fix the problem and run `vslack webhook rotate-secret {id}` to get another")
    })
}

async fn update(ctx: &Ctx, client: &VastClient, config: &Config, args: UpdateArgs) -> Result<()> {
    let id = resolve_id(args.id, config)?;
    // The URL and name were checked by `check_args`.
    let mut change = WebhookChange {
        webhook_url: args.url.clone(),
        name: args.name.clone(),
        ..Default::default()
    };
    let touches_events =
        !args.events.is_empty() || !args.add_events.is_empty() || !args.remove_events.is_empty();
    if touches_events {
        let cat = catalogue(ctx, client).await?;
        let events = if !args.events.is_empty() {
            resolve_events(&args.events, cat.as_deref())?
        } else {
            let mut current = client.get_webhook(id).await?.event_types;
            let remove = resolve_events(&args.remove_events, cat.as_deref())?;
            for key in &remove {
                if !current.contains(key) {
                    ctx.note(format!("note: webhook {id} was not subscribed to {key}"));
                }
            }
            current.retain(|k| !remove.contains(k));
            for key in resolve_events(&args.add_events, cat.as_deref())? {
                if !current.contains(&key) {
                    current.push(key);
                }
            }
            current
        };
        if events.is_empty() {
            return Err(usage("that would leave the webhook with no events; Vast.ai needs at least one (delete it instead?)"));
        }
        change.event_types = Some(events);
    }
    if change.name.is_none() && change.webhook_url.is_none() && change.event_types.is_none() {
        return Err(usage(
            "nothing to change; pass --url, --name, --event, --add-event or --remove-event",
        ));
    }
    let updated = client.update_webhook(id, &change).await?;
    if change.event_types.is_some() {
        Config::update(&ctx.paths, |c| c.set_events(id, &updated.event_types))?;
    }
    let view = WebhookView::new(updated, config);
    if ctx.global.json {
        output::json(&view)
    } else {
        ctx.note(format!("Updated webhook {id}"));
        print_details(&view);
        Ok(())
    }
}

async fn delete(
    ctx: &Ctx,
    client: &VastClient,
    config: &Config,
    id: Option<i64>,
    yes: bool,
) -> Result<()> {
    let id = resolve_id(id, config)?;
    if !yes {
        if !ctx.interactive() {
            return Err(usage(format!(
                "deleting webhook {id} needs confirmation: pass --yes"
            )));
        }
        let w = client.get_webhook(id).await?;
        let ok = crate::prompt::confirm(
            &format!(
                "Delete webhook {id} {:?} -> {} at Vast.ai and forget its secret?",
                w.name.as_deref().unwrap_or(""),
                crate::urls::shown(&w.webhook_url)
            ),
            false,
        )?;
        if !ok {
            ctx.note("Nothing deleted");
            return Ok(());
        }
    }
    client.delete_webhook(id).await?;
    // With the default gone and exactly one other webhook held here, that one is the default.
    let (config, (forgot, new_default)) = Config::update(&ctx.paths, |c| {
        let was_default = c.default_webhook == Some(id);
        let forgot = c.forget_webhook(id);
        let mut promoted = None;
        if was_default && c.webhooks.len() == 1 {
            promoted = c.webhooks.keys().next().and_then(|k| k.parse().ok());
            c.default_webhook = promoted;
        }
        (forgot, promoted)
    })?;
    if ctx.global.json {
        output::json(
            &json!({"id": id, "deleted": true, "secret_forgotten": forgot, "default_webhook": config.default_webhook}),
        )?;
    }
    ctx.note(format!(
        "Deleted webhook {id}{}",
        if forgot { " and forgot its secret" } else { "" }
    ));
    if let Some(d) = new_default {
        ctx.note(format!("Webhook {d} is now the default"));
    }
    Ok(())
}
