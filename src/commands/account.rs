//! `login`, `logout`, `slack`, `config`: the settings that live on this machine.

use anyhow::Result;
use serde_json::json;

use super::{read_secret, Ctx};
use crate::cli::{ConfigCmd, SlackCmd};
use crate::config::Config;
use crate::output;
use crate::vast::{ApiKey, KeySource, VastClient};

pub async fn login(ctx: &Ctx) -> Result<()> {
    let key = read_secret(
        ctx,
        "Vast.ai API key",
        "pipe the key on stdin: vslack login < key.txt",
    )?;
    let client = VastClient::new(
        &ctx.global.vast_url(),
        ApiKey {
            key: key.clone(),
            source: if ctx.interactive() {
                KeySource::Prompt
            } else {
                KeySource::Stdin
            },
        },
    )?;
    // A real call proves the key before it is saved.
    client.notification_types().await?;
    Config::update(&ctx.paths, |c| c.api_key = Some(key))?;
    if ctx.global.json {
        output::json(&json!({"saved": true, "path": ctx.paths.config_file()}))?;
    } else {
        ctx.note(format!(
            "API key accepted by Vast.ai and saved in {}",
            ctx.paths.config_file().display()
        ));
    }
    Ok(())
}

pub fn logout(ctx: &Ctx) -> Result<()> {
    let had = ctx.config()?.api_key.is_some()
        && Config::update(&ctx.paths, |c| c.api_key.take().is_some())?.1;
    if ctx.global.json {
        output::json(&json!({"forgotten": had}))?;
    } else if had {
        ctx.note(format!(
            "Forgot the API key saved in {}",
            ctx.paths.config_file().display()
        ));
    } else {
        ctx.note("No API key was saved by `vslack login`; nothing to forget");
    }
    Ok(())
}

pub async fn slack(ctx: &Ctx, cmd: SlackCmd) -> Result<()> {
    let config = ctx.config()?;
    match cmd {
        SlackCmd::Set { fallback, format } => {
            let url = read_secret(
                ctx,
                if fallback {
                    "Fallback Slack webhook URL"
                } else {
                    "Slack webhook URL"
                },
                "pipe the URL on stdin: vslack slack set < url.txt",
            )?;
            let (kind, warning) = crate::relay::message::detect::check(url.expose(), format)?;
            if let Some(warning) = warning {
                ctx.note(format!("warning: {warning}"));
            }
            let other = match fallback {
                true => config.slack.url.as_ref(),
                false => config.slack.fallback_url.as_ref(),
            };
            if other.is_some_and(|o| o.expose() == url.expose()) {
                ctx.note("warning: the Slack URL and the fallback URL are the same: alerts about that destination failing have nowhere else to go");
            }
            let host = crate::relay::deliver::host_of(url.expose());
            let (config, ()) = Config::update(&ctx.paths, |c| match fallback {
                true => {
                    c.slack.fallback_url = Some(url);
                    c.slack.fallback_kind = format;
                }
                false => {
                    c.slack.url = Some(url);
                    c.slack.kind = format;
                }
            })?;
            let (what, saved, role) = match fallback {
                true => (
                    "the new fallback URL",
                    "Fallback URL",
                    "; for alerts about a failing destination",
                ),
                false => ("the new Slack URL", "Destination URL", ""),
            };
            ctx.note(format!(
                "{saved} ({}, {host}{role}) saved in {}",
                kind.name(),
                ctx.paths.config_file().display()
            ));
            let pickup = super::reload::pickup(ctx, &config, !fallback).await;
            ctx.note(pickup.note(what));
            if ctx.global.json {
                output::json(&json!({
                    "saved": true,
                    "kind": kind.name(),
                    "host": host,
                    "relay_running": pickup.running(),
                    "relay_picked_up": pickup.picked_up(),
                }))?;
            }
        }
        SlackCmd::Clear { fallback: true } => {
            let (_, had) = Config::update(&ctx.paths, |c| {
                c.slack.fallback_kind = None;
                c.slack.fallback_url.take().is_some()
            })?;
            if ctx.global.json {
                output::json(&json!({"forgotten": had}))?;
            }
            ctx.note(if had {
                "Forgot the fallback URL"
            } else {
                "No fallback URL was saved"
            });
        }
        SlackCmd::Clear { fallback: false } => {
            let (config, had) = Config::update(&ctx.paths, |c| {
                c.slack.kind = None;
                c.slack.url.take().is_some()
            })?;
            if ctx.global.json {
                output::json(&json!({"forgotten": had}))?;
            }
            ctx.note(if had {
                "Forgot the saved Slack URL"
            } else {
                "No Slack URL was saved"
            });
            if had && super::serve::running_relay(ctx, &config).await.is_some() {
                ctx.note("The running relay keeps posting to the URL it has (it never drops its only destination); `vslack slack set` gives it another, or stop it");
            }
        }
        SlackCmd::Test { fallback } => {
            let url = match fallback {
                true => config.slack.fallback_url.clone(),
                false => config.slack.url.clone(),
            };
            let url = url.ok_or_else(|| {
                crate::exit::SetupError(match fallback {
                    true => "no fallback URL saved; run `vslack slack set --fallback` first".into(),
                    false => "no Slack URL saved; run `vslack slack set` first".into(),
                })
            })?;
            let kind = super::serve::kind_of(
                &url,
                match fallback {
                    true => config.slack.fallback_kind,
                    false => config.slack.kind,
                },
            )?;
            crate::relay::deliver::post_hello(kind, &url).await?;
            if ctx.global.json {
                output::json(&json!({
                    "delivered": true,
                    "kind": kind.name(),
                    "host": crate::relay::deliver::host_of(url.expose()),
                }))?;
            }
            ctx.note(format!(
                "{} accepted the message: check the channel",
                kind.service()
            ));
        }
    }
    Ok(())
}

pub fn config(ctx: &Ctx, cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Show => {
            let config = ctx.config()?;
            let shown = config.redacted();
            if ctx.global.json {
                output::json(&shown)?;
            } else {
                println!("# {}", ctx.paths.config_file().display());
                print!("{}", toml::to_string_pretty(&shown)?);
            }
        }
        ConfigCmd::Path => {
            let p = &ctx.paths;
            if ctx.global.json {
                output::json(&json!({
                    "config_dir": p.config_dir, "config_file": p.config_file(),
                    "data_dir": p.data_dir, "spool": p.spool_file(),
                }))?;
            } else {
                println!("config dir   {}", p.config_dir.display());
                println!("config file  {}", p.config_file().display());
                println!("data dir     {}", p.data_dir.display());
                println!("event store  {}", p.spool_file().display());
            }
        }
    }
    Ok(())
}
