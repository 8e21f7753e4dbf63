//! `vslack dest`: the destinations besides the default Slack URL. `add` saves one (its URL a
//! secret, read from a hidden prompt or stdin; its kind given or told by the URL), `list`
//! shows every destination the relay has (hosts only), `remove` forgets one, `test` posts to
//! one.

use anyhow::Result;
use serde_json::json;

use super::{read_secret, Ctx};
use crate::cli::DestCmd;
use crate::config::{Config, DestConfig};
use crate::output;
use crate::relay::deliver::{host_of, post_hello};

pub async fn run(ctx: &Ctx, cmd: DestCmd) -> Result<()> {
    let config = ctx.config()?;
    match cmd {
        DestCmd::Add {
            name,
            events,
            format,
        } => add(ctx, &config, name, events, format).await,
        DestCmd::List => list(ctx, &config),
        DestCmd::Remove { name } => {
            let (config, had) = Config::update(&ctx.paths, |c| {
                let before = c.destinations.len();
                c.destinations.retain(|d| d.name != name);
                before != c.destinations.len()
            })?;
            if !had {
                return Err(crate::exit::NotFoundError(format!(
                    "no destination named {name:?} was added (see `vslack dest list`)"
                ))
                .into());
            }
            let pickup = super::reload::pickup(ctx, &config, false).await;
            ctx.note(format!("Removed destination {name}"));
            ctx.note(pickup.note("the change"));
            if ctx.global.json {
                output::json(&json!({"removed": name, "relay_picked_up": pickup.picked_up()}))?;
            }
            Ok(())
        }
        DestCmd::Test { name } => {
            let dests = super::destinations::configured(&config)?;
            let d = dests
                .iter()
                .find(|d| d.name == name && d.url.is_some())
                .ok_or_else(|| {
                    crate::exit::NotFoundError(format!(
                        "no destination named {name:?} (see `vslack dest list`)"
                    ))
                })?;
            let url = d.url.as_ref().expect("found with a URL");
            post_hello(d.format, url).await?;
            if ctx.global.json {
                output::json(
                    &json!({"delivered": true, "name": name, "kind": d.format.name(), "host": host_of(url.expose())}),
                )?;
            }
            ctx.note(format!(
                "{} ({}) accepted the message: check it arrived",
                name,
                d.format.service()
            ));
            Ok(())
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !matches!(name, "default" | "fallback")
}

async fn add(
    ctx: &Ctx,
    config: &Config,
    name: String,
    events: Vec<String>,
    format: Option<crate::relay::message::Format>,
) -> Result<()> {
    if !valid_name(&name) {
        return Err(crate::exit::usage(format!(
            "{name:?} is not a destination name: use up to 40 letters, digits, - and _ (not `default` or `fallback`)"
        )));
    }
    if config.destinations.iter().any(|d| d.name == name) {
        return Err(crate::exit::usage(format!(
            "a destination named {name} exists already: `vslack dest remove {name}` first"
        )));
    }
    super::destinations::globs(&events, &name)?;
    let url = read_secret(
        ctx,
        &format!("URL for destination {name}"),
        "pipe the URL on stdin: vslack dest add NAME < url.txt",
    )?;
    let (kind, warning) = crate::relay::message::detect::check(url.expose(), format)?;
    if let Some(w) = warning {
        ctx.note(format!("warning: {w}"));
    }
    let host = host_of(url.expose());
    let (config, ()) = Config::update(&ctx.paths, |c| {
        c.destinations.push(DestConfig {
            name: name.clone(),
            url,
            kind: format,
            events: events.clone(),
        })
    })?;
    let takes = match events.is_empty() {
        true => "every event".to_owned(),
        false => events.join(", "),
    };
    ctx.note(format!(
        "Destination {name} ({}, {host}) saved: it takes {takes}",
        kind.name()
    ));
    let pickup = super::reload::pickup(ctx, &config, false).await;
    ctx.note(pickup.note("the new destination"));
    if ctx.global.json {
        output::json(&json!({
            "saved": true, "name": name, "kind": kind.name(), "host": host, "events": events,
            "relay_running": pickup.running(), "relay_picked_up": pickup.picked_up(),
        }))?;
    }
    Ok(())
}

/// Every destination with a URL: name, role, kind, host (never more of the URL), events.
pub fn rows(config: &Config) -> Result<Vec<serde_json::Value>> {
    let dests = super::destinations::configured(config)?;
    Ok(dests
        .iter()
        .filter(|d| d.url.is_some())
        .map(|d| {
            let (role, events) = match (&d.also, &d.pattern, d.fallback) {
                (Some(p), _, _) if p.is_empty() => ("added", "every event".to_owned()),
                (Some(p), _, _) => (
                    "added",
                    p.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "),
                ),
                (None, Some(p), _) => ("route", format!("{} (instead of the default)", p.as_str())),
                (None, None, true) => ("fallback", "the relay's alerts only".to_owned()),
                (None, None, false) => ("default", "every event no route takes".to_owned()),
            };
            json!({
                "name": d.name, "role": role, "kind": d.format.name(),
                "host": host_of(d.url.as_ref().expect("filtered").expose()), "events": events,
            })
        })
        .collect())
}

fn list(ctx: &Ctx, config: &Config) -> Result<()> {
    let rows = rows(config)?;
    if ctx.global.json {
        return output::json(&json!({ "destinations": rows }));
    }
    if rows.is_empty() {
        ctx.note("No destination: `vslack slack set` saves the default, `vslack dest add` more");
        return Ok(());
    }
    println!(
        "{:<16} {:<9} {:<12} {:<28} EVENTS",
        "NAME", "ROLE", "KIND", "HOST"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        println!(
            "{:<16} {:<9} {:<12} {:<28} {}",
            output::printable(&s("name")),
            s("role"),
            s("kind"),
            s("host"),
            output::printable(&s("events"))
        );
    }
    Ok(())
}
