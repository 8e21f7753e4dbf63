//! `vslack setup`: a guided first run. Every prompt has a flag; re-running offers the current
//! values and reuses the existing webhook.

use anyhow::Result;

use super::events::resolve_events;
use super::setup_checks::{check_domain, heartbeat_choice};
use super::webhook::check_webhook_url;
use super::Ctx;
use crate::cli::SetupArgs;
use crate::config::Config;
use crate::exit::usage;
use crate::secret::Secret;
use crate::vast::types::{WebhookChange, WALKTHROUGH_EVENTS};
use crate::vast::{key, ApiKey, KeySource, VastClient, VastError};

const WHICH_EVENTS: &str = "which events? pass --event KEY (repeatable) or --all-events";

pub async fn run(ctx: &Ctx, args: SetupArgs) -> Result<()> {
    let interactive = ctx.interactive();
    let mut config = ctx.config()?;
    // What the flags say is checked before anything is asked of Vast.ai or saved.
    if let Some(u) = &args.reach.public_url {
        check_webhook_url("--public-url", u)?;
    }
    if let Some(cmd) = &args.reach.tunnel_cmd {
        crate::tunnel::TunnelSpec::custom(cmd)?;
    }
    if let Some(name) = &args.reach.tunnel {
        crate::tunnel::TunnelSpec::named(name)?;
    }
    let no_events = args.events.is_empty() && !args.all_events;
    if !interactive && no_events && config.default_webhook.is_none() && config.events.is_empty() {
        return Err(usage(WHICH_EVENTS));
    }
    check_domain(&args)?;
    let slack_from_file = match &args.slack_url_file {
        Some(path) => {
            let url = crate::secret::read_secret_file(path, "--slack-url-file")?;
            crate::relay::message::detect::check(url.expose(), config.slack.kind)?;
            Some(url)
        }
        None => None,
    };

    // 1. API key, checked by fetching the notification types (used again in step 4).
    let (client, catalogue) = match key::find(
        ctx.global.api_key_file.as_deref(),
        config.api_key.as_ref(),
        &ctx.paths.config_file(),
    ) {
        Ok(k) => {
            let from_flag = matches!(k.source, KeySource::Flag(_)).then(|| k.key.clone());
            let c = VastClient::new(&ctx.global.vast_url(), k)?;
            let catalogue = c.notification_types().await?;
            // A key given with --api-key-file is saved, so the next command (which has no
            // such flag) finds it too.
            match from_flag {
                Some(key) => {
                    config = Config::update(&ctx.paths, |c| c.api_key = Some(key))?.0;
                    ctx.note(format!(
                        "API key: accepted ({}) and saved in {} for the other commands",
                        c.key_source(),
                        ctx.paths.config_file().display()
                    ));
                }
                None => ctx.note(format!("API key: accepted ({})", c.key_source())),
            }
            (c, catalogue)
        }
        // Only a key that is nowhere to be found is asked for; an unreadable --api-key-file or
        // a config file others can read is an error to fix, not a reason to prompt. A key
        // Vast.ai rejects is asked for again.
        Err(e) if interactive && matches!(e.downcast_ref(), Some(VastError::NoApiKey { .. })) => {
            let mut accepted = None;
            for tries_left in (0..crate::prompt::TRIES).rev() {
                let k = crate::prompt::password(
                    "Vast.ai API key (from https://cloud.vast.ai/manage-keys/)",
                )?;
                let c = VastClient::new(
                    &ctx.global.vast_url(),
                    ApiKey {
                        key: Secret::new(&k),
                        source: KeySource::Prompt,
                    },
                )?;
                match c.notification_types().await {
                    Ok(catalogue) => {
                        accepted = Some((c, catalogue, k));
                        break;
                    }
                    Err(e @ (VastError::Unauthorized { .. } | VastError::BadRequest { .. }))
                        if tries_left > 0 =>
                    {
                        ctx.note(format!(
                            "{e}\nPlease try again ({tries_left} {} left).",
                            if tries_left == 1 { "try" } else { "tries" }
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let (c, catalogue, k) = accepted.expect("the last try returns its error");
            config = Config::update(&ctx.paths, |c| c.api_key = Some(Secret::new(&k)))?.0;
            ctx.note("API key: accepted and saved");
            (c, catalogue)
        }
        // The error already lists where it looked and how to provide a key.
        Err(e) => return Err(e),
    };

    // 2. Slack URL.
    let slack = if slack_from_file.is_some() {
        slack_from_file
    } else if interactive {
        let keep = match &config.slack.url {
            Some(u) => crate::prompt::confirm(
                &format!(
                    "Keep the saved Slack URL ({})?",
                    crate::relay::deliver::host_of(u.expose())
                ),
                true,
            )?,
            None => false,
        };
        if keep {
            None
        } else {
            let u = crate::prompt::until_valid(
                || {
                    crate::prompt::password(
                        "Slack incoming webhook URL (https://hooks.slack.com/services/...)",
                    )
                },
                |u| crate::relay::message::detect::check(u, None).map(|_| u.to_owned()),
            )?;
            Some(Secret::new(u))
        }
    } else if super::serve::slack_url(None, &config)?.is_none() {
        return Err(usage(
            "no Slack URL: pass --slack-url-file PATH (or set SLACK_WEBHOOK_URL)",
        ));
    } else {
        None
    };
    if let Some(url) = slack {
        if let Some(w) = crate::relay::message::detect::check(url.expose(), config.slack.kind)?.1 {
            ctx.note(format!("warning: {w}"));
        }
        config = Config::update(&ctx.paths, |c| c.slack.url = Some(url))?.0;
        ctx.note("Slack URL: saved");
    }
    let hello = args.send_hello
        || (interactive
            && crate::prompt::confirm(
                "Post a \"vslack is connected\" message to Slack now?",
                true,
            )?);
    if hello {
        if let Some(u) = super::serve::slack_url(None, &config)? {
            let kind = super::serve::kind_of(&u, config.slack.kind)?;
            crate::relay::deliver::post_hello(kind, &u).await?;
            ctx.note("Slack: accepted the message, check the channel");
        }
    }

    // 3. The existing webhook, if any.
    let existing = match config.default_webhook {
        Some(id) => match client.get_webhook(id).await {
            Ok(w) => Some(w),
            Err(VastError::WebhookNotFound { .. }) => {
                config = Config::update(&ctx.paths, |c| c.forget_webhook(id))?.0;
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };

    // 4. Events.
    let events: Vec<String> = if args.all_events {
        catalogue.iter().map(|t| t.key.clone()).collect()
    } else if !args.events.is_empty() {
        resolve_events(&args.events, Some(&catalogue))?
    } else if interactive {
        let current: Vec<String> = match (&existing, config.events.is_empty()) {
            (Some(w), _) => w.event_types.clone(),
            (None, false) => config.events.clone(),
            (None, true) => WALKTHROUGH_EVENTS.iter().map(|s| s.to_string()).collect(),
        };
        super::events::pick_events(&catalogue, &current, "Events to send to Slack")?
    } else if let Some(w) = &existing {
        w.event_types.clone()
    } else if !config.events.is_empty() {
        config.events.clone()
    } else {
        return Err(usage(WHICH_EVENTS));
    };
    if events.is_empty() {
        return Err(usage("choose at least one event"));
    }

    // 5. How Vast.ai reaches the relay: a tunnel, or the public URL of a deployed relay.
    let (tunnel, public_url) = if let Some(u) = &args.reach.public_url {
        check_webhook_url("--public-url", u)?;
        (None, Some(u.clone()))
    } else if let Some(cmd) = &args.reach.tunnel_cmd {
        // Checked as a command (it must hold {port}), never mistaken for a tunnel's name.
        crate::tunnel::TunnelSpec::custom(cmd)?;
        (Some(cmd.clone()), None)
    } else if let Some(t) = &args.reach.tunnel {
        (Some(t.clone()), None)
    } else if interactive {
        let options = [
            "tmole (Tunnelmole)",
            "cloudflared (Cloudflare Tunnel)",
            "ngrok",
            "a public https URL (deployed relay)",
        ];
        let current = match (&config.relay.tunnel, &config.relay.public_url) {
            (Some(t), _) if t == "cloudflared" => 1,
            (Some(t), _) if t == "ngrok" => 2,
            (None, Some(_)) => 3,
            _ => 0,
        };
        let pick = crate::prompt::select("How will Vast.ai reach the relay", &options, current)?;
        if pick == 3 {
            let initial = config.relay.public_url.clone().unwrap_or_default();
            let u = crate::prompt::until_valid(
                || crate::prompt::input("Public https URL of the relay", &initial),
                |u| check_webhook_url("the public URL", u).map(|_| u.to_owned()),
            )?;
            (None, Some(u))
        } else {
            (Some(["tmole", "cloudflared", "ngrok"][pick].into()), None)
        }
    } else if config.relay.tunnel.is_none() && config.relay.public_url.is_none() {
        return Err(usage("how will Vast.ai reach the relay? pass --tunnel tmole|cloudflared|ngrok, --tunnel-cmd CMD, or --public-url URL"));
    } else {
        (config.relay.tunnel.clone(), config.relay.public_url.clone())
    };
    if let Some(t) = &tunnel {
        let spec = crate::tunnel::TunnelSpec::from_config(t)?;
        // Not fatal here: it is needed only when `vslack up` runs.
        if let Err(e) = spec.check_installed() {
            ctx.note(format!("warning: {e}"));
        }
    }
    let path = config.relay_path().to_owned();
    let url = public_url
        .as_ref()
        .map(|u| super::webhook::join_url(u, &path));

    // 6. Create or reuse the webhook. Every write below is a locked read-modify-write of the
    // config, so a command running meanwhile (say, a rotate-secret) loses nothing.
    let id = match &existing {
        Some(w) => {
            let change = WebhookChange {
                event_types: (w.event_types != events).then(|| events.clone()),
                webhook_url: url.clone().filter(|u| *u != w.webhook_url),
                name: None,
            };
            if change.event_types.is_some() || change.webhook_url.is_some() {
                client.update_webhook(w.id, &change).await?;
            }
            Config::update(&ctx.paths, |c| c.set_events(w.id, &events))?;
            ctx.note(format!("Webhook {}: reused and updated", w.id));
            Some(w.id)
        }
        None => match &url {
            Some(url) => {
                super::webhook::check_room(&client).await?;
                let created = client
                    .create_webhook(&WebhookChange {
                        name: Some("vslack".into()),
                        webhook_url: Some(url.clone()),
                        event_types: Some(events.clone()),
                    })
                    .await?;
                let id = created.webhook.id;
                super::webhook::keep_secret(ctx, id, &created.secret, true, Some(&events))?;
                ctx.note(format!("Webhook {id}: created, signing secret saved"));
                Some(id)
            }
            None => {
                // A webhook needs a URL, and a tunnel's URL is known only when it runs: `up`
                // creates the webhook then, so no event is ever sent to a placeholder address.
                ctx.note("Webhook: `vslack up` will create it once the tunnel's URL is known");
                None
            }
        },
    };
    let heartbeat = heartbeat_choice(ctx, &args, &config)?;
    // A tunnel given with a hostname to keep: saved for `up`.
    let tunnel_kept =
        tunnel.is_some() && (args.domain.is_some() || args.reach.tunnel_name.is_some());
    if args.domain.is_some() && public_url.is_none() && tunnel.is_none() {
        return Err(usage(
            "--domain goes with --public-url https://DOMAIN (a certificate for the relay) or with a tunnel that keeps a hostname (--tunnel cloudflared --tunnel-name NAME, or --tunnel ngrok)",
        ));
    }
    if let Some(t) = &tunnel {
        // Checked now: a tunnel that cannot keep the hostname is refused before anything
        // is saved.
        crate::tunnel::TunnelSpec::from_config(t)?
            .stable(args.reach.tunnel_name.as_deref(), args.domain.as_deref())?;
    }
    if let (Some(d), Some(u)) = (&args.domain, &public_url) {
        let host = reqwest::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if host.as_deref() != Some(d.as_str()) {
            return Err(usage(format!(
                "--domain {d} is not the host of --public-url {u}: the certificate must name the host Vast.ai connects to"
            )));
        }
    }
    // A relay serving HTTPS itself listens where the public URL says (443 unless it names a
    // port).
    let port = public_url
        .as_deref()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(443);
    let (config, ()) = Config::update(&ctx.paths, |c| {
        c.events = events.clone();
        c.relay.tunnel = tunnel;
        c.relay.public_url = public_url;
        c.relay.heartbeat = Some(heartbeat.clone());
        if tunnel_kept {
            c.relay.tunnel_name = args.reach.tunnel_name.clone();
            c.relay.tunnel_domain = args.domain.clone();
        }
        if let Some(d) = args.domain.as_ref().filter(|_| !tunnel_kept) {
            c.relay.domain = Some(d.clone());
            c.relay.tls_cert = None;
            c.relay.tls_key = None;
            c.relay.listen = Some(format!("0.0.0.0:{port}"));
            if args.acme_email.is_some() {
                c.relay.acme_email = args.acme_email.clone();
            }
        }
        if id.is_some() {
            c.default_webhook = id;
        }
    })?;
    if ctx.global.json {
        crate::output::json(
            &serde_json::json!({"webhook": id, "events": events, "tunnel": config.relay.tunnel, "public_url": config.relay.public_url, "heartbeat": config.relay.heartbeat}),
        )?;
    }
    ctx.note(match &config.relay.public_url {
        Some(_) if config.relay.domain.is_some() => "\nDone. On the server: `vslack serve` (HTTPS on 443 with its own certificate), or at boot: `vslack service install --system --print | sudo tee /etc/systemd/system/vslack.service`; then `vslack doctor`.".to_owned(),
        Some(_) => "\nDone. On the server: `vslack serve` (or `vslack service install`); then `vslack doctor`.".to_owned(),
        None => "\nDone. Next: `vslack up` starts the relay and the tunnel and points the webhook at it.".to_owned(),
    });
    Ok(())
}
