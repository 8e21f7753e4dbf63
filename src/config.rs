//! The configuration file (`config.toml` in the config directory, mode 0600): the saved API
//! key, the default webhook, per-webhook signing secrets (current and previous), the Slack
//! destination(s) and relay settings. The layout is documented in the README.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use crate::secret::{read_private, write_private, Secret};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Saved by `vslack login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Events for the webhook `vslack up` creates (chosen by `vslack setup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The webhook that commands act on when no ID is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_webhook: Option<i64>,
    #[serde(default)]
    pub slack: SlackConfig,
    /// More destinations (`vslack dest add`): each also takes the events its globs match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestConfig>,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default, skip_serializing_if = "StoreConfig::is_default")]
    pub store: StoreConfig,
    /// Signing secrets by webhook id (TOML keys are strings).
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookSecrets>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming-webhook or workflow-trigger URL (a secret: anyone holding it can post).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// The kind of service `url` is (`discord`, `pagerduty`, …; see `vslack serve --format`),
    /// when the URL alone does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::relay::message::Format>,
    /// Send event types matching a glob (on the slug, e.g. `instance_*`) elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Where the relay's alerts go when the destination they are about is failing (a
    /// secret, like `url`; set by `vslack slack set --fallback`). It takes no events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_url: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_kind: Option<crate::relay::message::Format>,
}

/// Where events are stored: the SQLite file in the data directory unless `url` names a
/// PostgreSQL database shared by several relays (set by `vslack store set`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (a secret: it may hold a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
}

impl StoreConfig {
    fn is_default(&self) -> bool {
        self.url.is_none()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub events: String,
    pub url: Secret,
    /// The kind of service `url` is, when the URL alone does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::relay::message::Format>,
}

/// An additional destination: besides where its route sends an event, every event whose type
/// matches one of `events` (every event when empty) is delivered here too, on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestConfig {
    pub name: String,
    pub url: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::relay::message::Format>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The public https URL Vast.ai uses to reach this relay, when it is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Tunnel for `vslack up`: tmole, cloudflared, ngrok, or a command with `{port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// How long a rotated-out signing secret stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_grace_hours: Option<u64>,
    /// How often `serve` asks Vast.ai for a test event to check the whole path (`6h`, or
    /// `off`); set by `vslack setup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// How long to wait for the heartbeat's test event (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<String>,
    /// `up`: a named cloudflared tunnel, and the fixed hostname of the tunnel (cloudflared's
    /// routed hostname, or a reserved ngrok domain), so the webhook keeps one URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_domain: Option<String>,
    /// HTTPS from PEM files (`serve --tls-cert/--tls-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
    /// HTTPS with an ACME certificate for this domain (`serve --domain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecrets {
    pub secret: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<Secret>,
    /// Unix seconds when `previous_secret` was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
    /// The event keys (`client:low_credit`, `host:machine_offline`) the webhook subscribes
    /// to, as last set from this machine: Vast.ai's payload names only the slug, so the relay
    /// takes an event's context (client or host) from the webhook whose secret verified it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

impl Config {
    /// Load the config file; a missing file is an empty config.
    pub fn load(paths: &Paths) -> Result<Config> {
        let path = paths.config_file();
        match read_private(&path)? {
            None => Ok(Config::default()),
            Some(text) => toml::from_str(&text).map_err(|e: toml::de::Error| {
                // toml's own message quotes the offending line, which may hold a secret:
                // say where and what, not the line itself.
                let line = e
                    .span()
                    .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
                crate::exit::SetupError(format!(
                    "{} is not a valid vslack config{}: {}; fix it (or move it aside)",
                    path.display(),
                    line.map(|l| format!(" (line {l})")).unwrap_or_default(),
                    e.message()
                ))
                .into()
            }),
        }
    }

    /// Write the config file atomically, 0600 in a 0700 directory.
    fn save(&self, paths: &Paths) -> Result<()> {
        let text = toml::to_string_pretty(self).context("cannot encode the config")?;
        let header = "# vslack configuration: holds secrets, keep it mode 0600.\n# See `vslack config show` and the README.\n\n";
        write_private(&paths.config_file(), format!("{header}{text}").as_bytes())
    }

    /// Read, change and write the config under an exclusive lock, so two commands running at
    /// once (a rotation while `up` creates a webhook) cannot overwrite each other's secrets.
    pub fn update<R>(paths: &Paths, change: impl FnOnce(&mut Config) -> R) -> Result<(Config, R)> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        crate::secret::ensure_private_dir(&paths.config_dir)?;
        let lock_path = paths.config_dir.join("config.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", lock_path.display()));
        }
        let mut config = Config::load(paths)?;
        let out = change(&mut config);
        config.save(paths)?;
        drop(lock);
        Ok((config, out))
    }

    /// How long a rotated-out secret stays valid (`relay.secret_grace_hours`, default 24 h).
    pub fn secret_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.relay.secret_grace_hours.unwrap_or(24) * 3600)
    }

    /// The relay's webhook path (`relay.path`, default `/`).
    pub fn relay_path(&self) -> &str {
        self.relay.path.as_deref().unwrap_or("/")
    }

    pub fn webhook(&self, id: i64) -> Option<&WebhookSecrets> {
        self.webhooks.get(&id.to_string())
    }

    /// Store a fresh secret for `id`; an existing one becomes the previous secret.
    pub fn store_secret(&mut self, id: i64, secret: Secret, now: i64) {
        let key = id.to_string();
        let entry = match self.webhooks.remove(&key) {
            Some(old) if old.secret != secret => WebhookSecrets {
                secret,
                previous_secret: Some(old.secret),
                rotated_at: Some(now),
                events: old.events,
            },
            old => WebhookSecrets {
                secret,
                previous_secret: None,
                rotated_at: None,
                events: old.map(|o| o.events).unwrap_or_default(),
            },
        };
        self.webhooks.insert(key, entry);
    }

    /// Remember the event keys webhook `id` subscribes to (when its secret is held).
    pub fn set_events(&mut self, id: i64, events: &[String]) {
        if let Some(w) = self.webhooks.get_mut(&id.to_string()) {
            w.events = events.to_vec();
        }
    }

    /// Forget everything held for `id`; clears the default if it pointed there.
    pub fn forget_webhook(&mut self, id: i64) -> bool {
        if self.default_webhook == Some(id) {
            self.default_webhook = None;
        }
        self.webhooks.remove(&id.to_string()).is_some()
    }

    /// The same configuration with every secret replaced by `(redacted)`, for display.
    pub fn redacted(&self) -> toml::Value {
        let mut value =
            toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        redact(&mut value, false);
        if let Some(relay) = value.get_mut("relay").and_then(toml::Value::as_table_mut) {
            for (key, v) in relay.iter_mut() {
                if let (true, Some(text)) = (key == "tunnel" || key == "public_url", v.as_str()) {
                    *v = toml::Value::String(shown_safely(text));
                }
            }
        }
        value
    }
}

/// A tunnel command or public URL as it may be shown: a custom command can carry a token in
/// its arguments and a URL credentials in its user part, so only the harmless part is kept.
pub fn shown_safely(text: &str) -> String {
    if let Ok(mut url) = reqwest::Url::parse(text) {
        if !url.username().is_empty() || url.password().is_some() {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            return format!("{url} (credentials redacted)");
        }
        return text.to_owned();
    }
    match text.split_once(char::is_whitespace) {
        Some((program, _)) => format!("{program} … (arguments redacted)"),
        None => text.to_owned(),
    }
}

const SECRET_KEYS: &[&str] = &[
    "api_key",
    "url",
    "fallback_url",
    "secret",
    "previous_secret",
];

fn redact(value: &mut toml::Value, secret: bool) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                redact(v, SECRET_KEYS.contains(&k.as_str()));
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| redact(v, secret)),
        v if secret => *v = toml::Value::String("(redacted)".into()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_previous_and_redaction_hides_all() {
        let mut c = Config {
            api_key: Some(Secret::new("KEY")),
            ..Config::default()
        };
        c.slack.url = Some(Secret::new("https://hooks.slack.com/services/X"));
        c.store_secret(4, Secret::new("one"), 10);
        c.store_secret(4, Secret::new("two"), 20);
        let w = c.webhook(4).unwrap();
        assert_eq!(w.secret.expose(), "two");
        assert_eq!(w.previous_secret.as_ref().unwrap().expose(), "one");
        assert_eq!(w.rotated_at, Some(20));
        let shown = toml::to_string(&c.redacted()).unwrap();
        for s in ["KEY", "hooks.slack.com", "one", "two"] {
            assert!(!shown.contains(s), "{s} leaked: {shown}");
        }
        assert!(shown.contains("(redacted)"));
        assert_eq!(
            shown_safely("cloudflared tunnel run --token abc {port}"),
            "cloudflared … (arguments redacted)"
        );
        assert_eq!(
            shown_safely("https://u:p@relay.example.com/"),
            "https://relay.example.com/ (credentials redacted)"
        );
        assert_eq!(shown_safely("tmole"), "tmole");
        let round: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(round.webhook(4).unwrap().secret.expose(), "two");
    }
}
