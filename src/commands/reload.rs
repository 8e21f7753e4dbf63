//! Reload without a restart. The config file is checked every two seconds and on SIGHUP, and
//! again before a delivery whose signature matches no held secret is refused (a webhook created
//! a moment ago must not lose its first event: Vast.ai takes a 401 as final). The signing
//! secrets and the destinations (Slack URL, routes, message shapes) are re-read; what changed
//! is applied to the running relay, queued events included. `/health` reports which version
//! of the file the relay has read (`config.version`) and where its Slack URL comes from, so the
//! command that changed the file can tell whether the change took effect.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::serve::{destinations, fingerprint, grace, keys, slack_url};
use super::Ctx;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::paths::Paths;
use crate::relay::verify::Verifier;
use crate::relay::{Control, Relay};

/// The config file's identity (see `paths::file_version`).
pub fn config_version(path: &std::path::Path) -> Option<String> {
    crate::paths::file_version(path)
}

/// Where the relay's Slack URL comes from (see `serve::slack_url`).
fn slack_url_from(args: &ServeArgs) -> &'static str {
    if args.slack_url_file.is_some() {
        "--slack-url-file"
    } else if std::env::var("SLACK_WEBHOOK_URL").is_ok_and(|u| !u.trim().is_empty()) {
        "SLACK_WEBHOOK_URL"
    } else {
        "config"
    }
}

struct Reloader {
    paths: Paths,
    file: PathBuf,
    args: ServeArgs,
    control: Control,
    seen: Option<String>,
    secrets: Option<Vec<String>>,
    dests: Option<Vec<String>>,
}

impl Reloader {
    /// Read the config again if it changed (or when `forced`); apply what differs. True when
    /// the signing secrets changed.
    fn check(&mut self, forced: bool) -> bool {
        let version = config_version(&self.file);
        if !forced && version == self.seen {
            return false;
        }
        let config = match Config::load(&self.paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot reload the config; keeping the current settings");
                self.seen = version;
                return false;
            }
        };
        self.seen = version.clone();
        let secrets = self.secrets_from(&config);
        self.destinations_from(&config);
        self.control
            .set_config_version(version, slack_url_from(&self.args));
        secrets
    }

    fn secrets_from(&mut self, config: &Config) -> bool {
        let keys = keys(config, grace(&self.args, config));
        if keys.is_empty() {
            tracing::warn!("the config now holds no signing secret; keeping the previous ones");
            return false;
        }
        // A rewrite that left the secrets as they were (a Slack URL saved) is not news.
        let now = fingerprint(&keys);
        if self.secrets.as_ref() == Some(&now) {
            return false;
        }
        self.secrets = Some(now);
        let labels: Vec<String> = keys.iter().map(|k| k.label.clone()).collect();
        self.control
            .set_verifier(Verifier::new(keys, self.args.signature_window));
        tracing::info!(secrets = %labels.join(", "), "reloaded signing secrets");
        true
    }

    fn destinations_from(&mut self, config: &Config) {
        let url = if self.args.dry_run {
            None
        } else {
            match slack_url(self.args.slack_url_file.as_deref(), config) {
                Ok(Some(u)) => Some(u),
                Ok(None) => {
                    tracing::warn!("the config now has no Slack URL; keeping the current one");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the Slack URL; keeping the current one");
                    return;
                }
            }
        };
        let dests = match destinations(&self.args, config, url, false) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot reload the destinations; keeping the current ones");
                return;
            }
        };
        let now: Vec<String> = dests.iter().map(|d| d.fingerprint()).collect();
        if self.dests.as_ref() == Some(&now) {
            return;
        }
        let first = self.dests.is_none();
        self.dests = Some(now);
        if first {
            return; // what the relay started with
        }
        let labels: Vec<String> = dests.iter().map(|d| d.label()).collect();
        self.control.set_destinations(dests);
        tracing::info!(destinations = %labels.join(", "), "reloaded destinations (queued events follow them)");
    }
}

/// Watch the config until the process stops (see the module docs).
pub async fn watch(ctx: &Ctx, args: &ServeArgs, relay: &Relay) {
    use tokio::signal::unix::{signal, SignalKind};
    let file = ctx.paths.config_file();
    let reloader = Arc::new(Mutex::new(Reloader {
        paths: ctx.paths.clone(),
        file: file.clone(),
        args: args.clone(),
        control: relay.control(),
        seen: None,
        secrets: None,
        dests: None,
    }));
    // What the relay started with: the current state, without logging it as a change.
    if let Ok(mut r) = reloader.lock() {
        let version = config_version(&file);
        if let Ok(config) = ctx.config() {
            r.secrets = Some(fingerprint(&keys(&config, grace(args, &config))));
            r.destinations_from(&config);
        }
        r.seen = version.clone();
        r.control.set_config_version(version, slack_url_from(args));
    }
    {
        let reloader = reloader.clone();
        relay.control().on_unknown_signature(move || {
            reloader.lock().map(|mut r| r.check(false)).unwrap_or(false)
        });
    }
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => false,
            _ = hangup => true,
        };
        let reloader = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut r) = reloader.lock() {
                r.check(forced);
            }
        })
        .await;
    }
}

/// Whether a relay running on this machine has read the config as it is now.
pub enum Pickup {
    /// No relay uses this store.
    NoRelay,
    /// The relay answering where `serve` listens reports this config version.
    PickedUp(String),
    /// It read this config, but its Slack URL comes from elsewhere, which overrides it.
    Overridden(String, String),
    /// A relay holds the store but does not answer where the config says it listens (started
    /// with another `--listen`), or has not read the file within the wait: it reads it within
    /// two seconds, unconfirmed.
    Unconfirmed(String),
}

/// After a command changed the config: wait (up to 4 s) for the running relay to report that
/// it read it, and say so. With `slack_url`, the change was the Slack URL: say whether
/// another source overrides it.
pub async fn pickup(ctx: &Ctx, config: &Config, slack_url: bool) -> Pickup {
    let Some(running) = super::serve::running_relay(ctx, config).await else {
        return Pickup::NoRelay;
    };
    let want = config_version(&ctx.paths.config_file());
    let Some(addr) = super::serve::answering_relay(config).await else {
        return Pickup::Unconfirmed(running);
    };
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(h) = crate::listen::relay_health(addr).await {
            if want.is_some() && h["config"]["version"].as_str() == want.as_deref() {
                return match h["config"]["slack_url_from"].as_str() {
                    Some(from) if slack_url && from != "config" => {
                        Pickup::Overridden(running, from.into())
                    }
                    _ => Pickup::PickedUp(running),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Pickup::Unconfirmed(running)
}

impl Pickup {
    /// A note for a person, given what the change was ("the new Slack URL").
    pub fn note(&self, what: &str) -> String {
        match self {
            Pickup::NoRelay => format!("No relay is running here; the next `vslack serve` or `vslack up` uses {what}"),
            Pickup::PickedUp(r) => format!("The relay running {r} picked up {what} (queued events too)"),
            Pickup::Overridden(r, from) => format!("The relay running {r} read the config, but its Slack URL is set by {from}, which overrides the config: it keeps posting there (restart it without {from} to use the config's URL)"),
            Pickup::Unconfirmed(r) => format!("A relay is running {r}; it reads the config every 2 s, so it uses {what} shortly (not confirmed: it does not answer where the config says it listens)"),
        }
    }

    pub fn picked_up(&self) -> bool {
        matches!(self, Pickup::PickedUp(_))
    }

    pub fn running(&self) -> bool {
        !matches!(self, Pickup::NoRelay)
    }
}
