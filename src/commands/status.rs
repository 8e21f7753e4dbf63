//! `vslack status`: the state at a glance (queue, webhook, secrets, Slack, relay), as `serve`
//! would see it.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::output;
use crate::relay::spool;

/// The local relay's /health, if one answers at `addr` (see `serve::local_addr`).
pub async fn status(ctx: &Ctx) -> Result<()> {
    let config = ctx.config()?;
    let location = super::store_pg::location(ctx, &config, None)?;
    let stats = match spool::open_for_command(&location, &ctx.paths.spool_file()).await? {
        Some(sp) => Some(sp.stats().await?),
        None => None,
    };
    // What `vslack serve` would use: flags aside, the environment and the config file.
    let secrets: Vec<String> = super::serve::keys(&config, config.secret_grace())
        .into_iter()
        .map(|k| k.label)
        .collect();
    let slack =
        super::serve::slack_url(None, &config)?.map(|u| crate::relay::deliver::host_of(u.expose()));
    let fallback = config
        .slack
        .fallback_url
        .as_ref()
        .map(|u| crate::relay::deliver::host_of(u.expose()));
    // A destination URL that does not load is `doctor`'s to explain; status shows the rest.
    let destinations = super::dest::rows(&config).unwrap_or_default();
    let listen = super::serve::local_addr(&config)?;
    let health = crate::listen::relay_health(listen).await;
    // A relay started with another --listen still holds the store open.
    let elsewhere = match health {
        Some(_) => None,
        None => super::serve::running_relay(ctx, &config).await,
    };
    let record = crate::relay::incidents::Record::load(&crate::relay::incidents::record_path(
        &ctx.paths.spool_file(),
    ));
    let v = json!({
        "queue_depth": stats.as_ref().map(|s| s.pending),
        "dead_letters": stats.as_ref().map(|s| s.dead),
        "delivered": stats.as_ref().map(|s| s.delivered),
        "last_delivery_at": stats.as_ref().and_then(|s| s.last_delivered_at),
        "default_webhook": config.default_webhook,
        "secrets": secrets,
        "slack_host": slack,
        "fallback_host": fallback,
        "routes": config.slack.routes.iter().map(|r| r.events.clone()).collect::<Vec<_>>(),
        "destinations": destinations,
        "listen": listen.to_string(),
        "relay_running": health.is_some() || elsewhere.is_some(),
        "relay_status": health.as_ref().and_then(|h| h["status"].as_str().map(str::to_owned)),
        "tunnel": config.relay.tunnel.as_deref().map(crate::config::shown_safely),
        "public_url": config.relay.public_url.as_deref().map(crate::config::shown_safely),
        "store": location.shown(),
        "store_kind": if location.is_shared() { "postgres" } else { "sqlite" },
        "heartbeat": {
            "every_secs": record.heartbeat_every_secs,
            "last_success": record.heartbeat_last_success,
            "last_attempt": record.heartbeat_last_attempt,
        },
        "incidents": record.current().map(|i| json!({
            "key": i.key, "title": i.title, "detail": i.detail, "since": i.since,
        })).collect::<Vec<_>>(),
    });
    if ctx.global.json {
        return output::json(&v);
    }
    match &stats {
        Some(s) => {
            println!(
                "queue         {} pending, {} dead-lettered, {} delivered",
                s.pending, s.dead, s.delivered
            );
            let last = s.last_delivered_at.map(output::unix_time);
            println!("last delivery {}", last.unwrap_or_else(|| "never".into()));
        }
        None if ctx.paths.dry_run_dir().exists() => println!(
            "queue         no event store yet (only `serve --dry-run` has run; it keeps its own store in {})",
            ctx.paths.dry_run_dir().display()
        ),
        None => println!("queue         no event store yet (the relay has not run)"),
    }
    if location.is_shared() {
        println!(
            "store         {} (PostgreSQL, shared; `vslack store check` lists the relays)",
            location.shown()
        );
    }
    let default = config.default_webhook.map(|d| format!("{d} (default)"));
    let none = if config.relay.tunnel.is_some() {
        "none yet: `vslack up` creates it once the tunnel's URL is known"
    } else {
        "none: `vslack setup`"
    };
    println!("webhook       {}", default.unwrap_or_else(|| none.into()));
    println!(
        "secrets       {}",
        if secrets.is_empty() && config.relay.tunnel.is_some() {
            "none yet: `vslack up` creates the webhook and stores its secret".to_owned()
        } else if secrets.is_empty() {
            "none: `vslack webhook create` or VAST_WEBHOOK_SECRET".to_owned()
        } else {
            secrets.join(", ")
        }
    );
    println!(
        "slack         {}",
        slack.unwrap_or_else(|| "not set: `vslack slack set` or SLACK_WEBHOOK_URL".into())
    );
    if let Some(f) = &fallback {
        println!("fallback      {f} (alerts about a failing destination)");
    }
    for d in destinations
        .iter()
        .filter(|d| d["role"] != "default" && d["role"] != "fallback")
    {
        let s = |k: &str| output::printable(d[k].as_str().unwrap_or("")).into_owned();
        println!(
            "destination   {} ({}, {}): {}",
            s("name"),
            s("kind"),
            s("host"),
            s("events")
        );
    }
    let running = match (health.as_ref().and_then(|h| h["status"].as_str()), &elsewhere) {
        (Some(st), _) => format!("running ({st})"),
        (None, Some(who)) => format!(
            "not answering here, but a relay {who} uses this store (it was started with another --listen)"
        ),
        (None, None) => "not running".into(),
    };
    println!("relay         {listen}: {running}");
    if let Some(t) = &config.relay.tunnel {
        println!("tunnel        {}", crate::config::shown_safely(t));
    }
    if let Some(u) = &config.relay.public_url {
        println!("public url    {}", crate::config::shown_safely(u));
    }
    println!(
        "heartbeat     {}",
        heartbeat_line(&record, config.relay.heartbeat.as_deref())
    );
    if record.current().next().is_none() {
        println!("incidents     none open");
    }
    for i in record.current() {
        println!(
            "incident      {} (since {}): {}",
            i.title,
            output::unix_time(i.since),
            i.detail
        );
    }
    Ok(())
}

/// The last heartbeat, for a person; `configured` is the config's `relay.heartbeat`.
pub fn heartbeat_line(r: &crate::relay::incidents::Record, configured: Option<&str>) -> String {
    let ago = |t: i64| {
        let secs = (crate::relay::now_secs() - t).max(0) as u64;
        format!(
            "{} ago ({})",
            humantime::format_duration(std::time::Duration::from_secs(secs)),
            output::unix_time(t)
        )
    };
    match (r.heartbeat_every_secs, r.heartbeat_last_success) {
        (None, _) => match configured.filter(|c| *c != "off") {
            Some(every) => {
                format!("every {every} (configured), none sent yet: the relay has not run it")
            }
            None => "off (`vslack serve --heartbeat 6h`, or `vslack setup`)".into(),
        },
        (Some(every), Some(t)) => format!(
            "every {}, last arrived {}",
            humantime::format_duration(std::time::Duration::from_secs(every)),
            ago(t)
        ),
        (Some(every), None) => format!(
            "every {}, none arrived yet{}",
            humantime::format_duration(std::time::Duration::from_secs(every)),
            r.heartbeat_last_attempt
                .map(|t| format!(" (last sent {})", ago(t)))
                .unwrap_or_default()
        ),
    }
}
