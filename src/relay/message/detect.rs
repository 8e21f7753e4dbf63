//! Which kind a URL is ([`detect`]), whether it is usable ([`check`]), and where a message to
//! it is posted ([`endpoint`]: Telegram's chat and PagerDuty's routing key move from the URL
//! into the body, so neither is ever in a request line a proxy could log).
//!
//! | URL                                                           | kind          |
//! |---------------------------------------------------------------|---------------|
//! | `https://hooks.slack.com/services/T…/B…/…`                    | `blocks`      |
//! | `https://hooks.slack.com/triggers/…`, legacy `…/workflows/…`  | `workflow`    |
//! | `https://chat.googleapis.com/v1/spaces/…/messages?key=…`      | `google-chat` |
//! | `https://discord.com/api/webhooks/ID/TOKEN` (`discordapp.com`) | `discord`     |
//! | `https://….logic.azure.com/…`, `https://….powerplatform.com/…` | `teams`       |
//! | `https://api.telegram.org/botTOKEN/sendMessage?chat_id=CHAT`  | `telegram`    |
//! | `telegram://TOKEN@CHAT`                                       | `telegram`    |
//! | `https://ntfy.sh/TOPIC`                                       | `ntfy`        |
//! | `https://events.pagerduty.com/v2/enqueue?routing_key=KEY`     | `pagerduty`   |
//! | `pagerduty://KEY`                                             | `pagerduty`   |
//!
//! On a loopback host (a stand-in) the path decides the same way. Anything else (a
//! self-hosted ntfy, a proxy) needs its kind given (`--format KIND`, `kind =`).

use anyhow::Result;
use reqwest::Url;

use super::Format;
use crate::secret::Secret;

const TELEGRAM_API: &str = "https://api.telegram.org";
const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// The kind a URL names unambiguously, or `None`.
pub fn detect(url: &str) -> Option<Format> {
    let u = Url::parse(url).ok()?;
    match u.scheme() {
        "telegram" => return Some(Format::Telegram),
        "pagerduty" => return Some(Format::Pagerduty),
        "https" | "http" => {}
        _ => return None,
    }
    let host = u.host_str()?.to_ascii_lowercase();
    let path = u.path();
    let by_path = || {
        if path.starts_with("/services/") {
            Some(Format::Blocks)
        } else if path.starts_with("/triggers/") || path.starts_with("/workflows/") {
            Some(Format::Workflow)
        } else if path.starts_with("/api/webhooks/") {
            Some(Format::Discord)
        } else if path.starts_with("/bot") && path.ends_with("/sendMessage") {
            Some(Format::Telegram)
        } else if path == "/v2/enqueue" {
            Some(Format::Pagerduty)
        } else if path.starts_with("/v1/spaces/") {
            Some(Format::GoogleChat)
        } else {
            None
        }
    };
    match host.as_str() {
        "hooks.slack.com" => match by_path() {
            Some(f @ (Format::Blocks | Format::Workflow)) => Some(f),
            _ => None,
        },
        "chat.googleapis.com" => Some(Format::GoogleChat),
        "discord.com" | "discordapp.com" | "ptb.discord.com" | "canary.discord.com"
            if path.starts_with("/api/webhooks/") =>
        {
            Some(Format::Discord)
        }
        "api.telegram.org" if by_path() == Some(Format::Telegram) => Some(Format::Telegram),
        "ntfy.sh" if path.len() > 1 => Some(Format::Ntfy),
        "events.pagerduty.com" | "events.eu.pagerduty.com" => Some(Format::Pagerduty),
        h if h.ends_with(".logic.azure.com") || h.ends_with(".powerplatform.com") => {
            Some(Format::Teams)
        }
        h if is_loopback(h) => by_path(),
        _ => None,
    }
}

/// Check that `url` is usable as a destination of kind `explicit` (else the kind it names):
/// the kind, and a warning for something that may be a mistake. An error names what to do
/// and never echoes the URL (it is a secret).
pub fn check(url: &str, explicit: Option<Format>) -> Result<(Format, Option<String>)> {
    if let Some(why) = crate::urls::stray(url) {
        return Err(crate::exit::usage(format!(
            "the destination URL is not usable: {why}"
        )));
    }
    let parsed = Url::parse(url).map_err(|_| {
        crate::exit::usage("the destination URL is not a valid URL (it should start with https://)")
    })?;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if host.ends_with(".webhook.office.com") {
        return Err(crate::exit::usage(
            "this is an Office 365 connector URL, which Microsoft retired: in Teams, create a \
             webhook with the Workflows app (\"Post to a channel when a webhook request is \
             received\") and use its URL",
        ));
    }
    let mut warning = None;
    match parsed.scheme() {
        "https" => {}
        "telegram" | "pagerduty" => {}
        "http" if is_loopback(&host) => {
            warning = Some("plain http to a loopback stand-in: fine for testing only".into())
        }
        _ => return Err(crate::exit::usage("the destination URL must use https://")),
    }
    if host == "hooks.slack.com" {
        check_slack_path(&parsed)?;
    }
    let detected = detect(url);
    let format = match (explicit, detected) {
        (Some(f), Some(d)) if d != f && d.service() != f.service() => {
            warning = Some(format!(
                "this looks like a {} URL, but it is set to be sent as {}",
                d.service(),
                f.name()
            ));
            f
        }
        (Some(f), _) => f,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(crate::exit::usage(format!(
                "cannot tell which service {} is: give its kind with --format KIND (one of {})",
                if host.is_empty() {
                    "this URL"
                } else {
                    host.as_str()
                },
                Format::names()
            )))
        }
    };
    endpoint(format, &Secret::new(url)).map_err(crate::exit::usage)?;
    Ok((format, warning))
}

/// `hooks.slack.com/services/T…/B…/secret`, `triggers/T…/id/secret`, `workflows/T…/A…/id/secret`.
fn check_slack_path(parsed: &Url) -> Result<()> {
    let segments: Vec<&str> = parsed
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    let (kind, expected) = match segments.first().copied() {
        Some("services") => ("incoming webhook", 4),
        Some("triggers") => ("workflow trigger", 4),
        Some("workflows") => ("workflow webhook", 5),
        _ => {
            return Err(crate::exit::usage(
                "this hooks.slack.com URL is neither an incoming webhook (…/services/…) nor a workflow trigger (…/triggers/…); copy it again from Slack",
            ))
        }
    };
    if segments.len() != expected {
        return Err(crate::exit::usage(format!(
            "this Slack {kind} URL has {} after hooks.slack.com/{}/ where Slack's have {}: it was probably cut short or pasted twice; copy it again from Slack",
            crate::output::plural(segments.len() - 1, "part"),
            segments[0],
            expected - 1
        )));
    }
    Ok(())
}

/// Take query parameter `name` out of `u`.
fn take(u: &mut Url, name: &str) -> Option<String> {
    let mut found = None;
    let rest: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, v)| {
            if k == name {
                found = Some(v.to_string());
            }
            k != name
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if rest.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(rest);
    }
    found.filter(|v| !v.is_empty())
}

/// Where to post, and the fields the body must carry (`chat_id`, `routing_key`).
pub struct Endpoint {
    pub url: Secret,
    pub fields: Vec<(&'static str, String)>,
}

/// The endpoint for a destination of kind `format` at `url`: for Telegram and PagerDuty, the
/// chat id or routing key is taken out of the URL (query or `telegram://TOKEN@CHAT`,
/// `pagerduty://KEY`) into the body. An error says what is missing.
pub fn endpoint(format: Format, url: &Secret) -> Result<Endpoint, String> {
    let mut u = Url::parse(url.expose()).map_err(|_| "the destination URL is not a valid URL")?;
    let plain = |u: &Url| Secret::new(u.as_str());
    match format {
        Format::Telegram if u.scheme() == "telegram" => {
            // A bot token is `123456:ABC…`: the URL parser sees a user and a password.
            let token = match u.password() {
                Some(p) => format!("{}:{p}", u.username()),
                None => u.username().to_owned(),
            };
            let chat = u.host_str().unwrap_or_default().to_owned();
            if token.is_empty() || chat.is_empty() {
                return Err("a Telegram URL is telegram://BOT_TOKEN@CHAT_ID (or https://api.telegram.org/botBOT_TOKEN/sendMessage?chat_id=CHAT_ID)".into());
            }
            Ok(Endpoint {
                url: Secret::new(format!("{TELEGRAM_API}/bot{token}/sendMessage")),
                fields: vec![("chat_id", chat)],
            })
        }
        Format::Telegram => {
            let chat = take(&mut u, "chat_id").ok_or(
                "a Telegram URL needs the chat: …/botBOT_TOKEN/sendMessage?chat_id=CHAT_ID (or telegram://BOT_TOKEN@CHAT_ID)",
            )?;
            Ok(Endpoint {
                url: plain(&u),
                fields: vec![("chat_id", chat)],
            })
        }
        Format::Pagerduty if u.scheme() == "pagerduty" => {
            let key = u.host_str().unwrap_or_default().to_owned();
            if key.is_empty() {
                return Err("a PagerDuty URL is pagerduty://ROUTING_KEY (the Events API v2 integration key)".into());
            }
            Ok(Endpoint {
                url: Secret::new(PAGERDUTY_EVENTS),
                fields: vec![("routing_key", key)],
            })
        }
        Format::Pagerduty => {
            let key = take(&mut u, "routing_key").ok_or(
                "a PagerDuty URL needs the integration key: …/v2/enqueue?routing_key=KEY (or pagerduty://KEY)",
            )?;
            Ok(Endpoint {
                url: plain(&u),
                fields: vec![("routing_key", key)],
            })
        }
        _ if !matches!(u.scheme(), "https" | "http") => Err(format!(
            "a {} destination needs an https:// URL",
            format.name()
        )),
        _ => Ok(Endpoint {
            url: url.clone(),
            fields: Vec::new(),
        }),
    }
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
