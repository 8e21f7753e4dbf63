//! Rules for URLs, shared by every command: which chat service a webhook URL belongs to (its
//! path is then a secret: anyone holding it can post), how a URL may be shown, and which URLs
//! Vast.ai can deliver to.

use reqwest::Url;

use crate::exit::usage;

/// The chat or paging service a URL posts to, when its host says so.
pub fn chat_service(url: &Url) -> Option<&'static str> {
    let host = url.host_str()?.to_ascii_lowercase();
    let path = url.path();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    Some(match () {
        _ if host == "hooks.slack.com" => "Slack",
        _ if host == "chat.googleapis.com" => "Google Chat",
        _ if (under("discord.com") || under("discordapp.com"))
            && path.starts_with("/api/webhooks/") =>
        {
            "Discord"
        }
        _ if under("logic.azure.com")
            || under("powerplatform.com")
            || under("webhook.office.com") =>
        {
            "Microsoft Teams"
        }
        _ if host == "outlook.office.com" && path.starts_with("/webhook") => "Microsoft Teams",
        _ if host == "api.telegram.org" => "Telegram",
        _ if host == "events.pagerduty.com" => "PagerDuty",
        _ if host == "ntfy.sh" => "ntfy",
        _ => return None,
    })
}

/// A URL as it may be printed: a chat service's path is a secret and shows as `…`, and
/// credentials in the user part are dropped. Anything unparsable shows as `(invalid URL)`.
pub fn shown(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "(invalid URL)".into();
    };
    let had_credentials = !url.username().is_empty() || url.password().is_some();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if chat_service(&url).is_some() {
        return format!(
            "{}://{}/… (path redacted)",
            url.scheme(),
            url.host_str().unwrap_or_default()
        );
    }
    if had_credentials {
        return format!("{url} (credentials redacted)");
    }
    text.to_owned()
}

/// Parse `text` given with `flag`, with a message a person can act on instead of the parser's.
pub fn parse(flag: &str, text: &str) -> anyhow::Result<Url> {
    use url::ParseError as E;
    if let Some(why) = stray(text) {
        return Err(usage(format!("{flag} is not usable: {why}")));
    }
    Url::parse(text).map_err(|e| {
        let why = match e {
            E::RelativeUrlWithoutBase => "it needs a scheme and a host, like https://example.com/",
            E::EmptyHost => "it has no host",
            E::InvalidPort => "its port is not a number from 1 to 65535",
            E::InvalidIpv4Address | E::InvalidIpv6Address => "its IP address is malformed",
            E::InvalidDomainCharacter | E::IdnaError => {
                "its host name has characters a host name cannot have"
            }
            _ => "it is not a valid URL",
        };
        usage(format!("{flag} is not usable: {why}"))
    })
}

/// What in `text` cannot be part of a URL as typed: a space, a tab or another control
/// character (the URL parser would percent-encode some of them and keep the rest, so a URL
/// pasted with a word after it would be saved as given and fail only when used).
pub fn stray(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_whitespace) {
        Some("it contains a space or a line break: give the URL alone")
    } else if text.chars().any(char::is_control) {
        Some("it contains a control character: give the URL alone")
    } else {
        None
    }
}

/// Why Vast.ai cannot reach `url`'s host over the internet, if it cannot.
fn not_public(url: &Url) -> Option<&'static str> {
    use std::net::IpAddr;
    match url.host()? {
        url::Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            let d = d.trim_end_matches('.');
            if d == "localhost" || d.ends_with(".localhost") {
                Some("this machine (localhost)")
            } else if d.ends_with(".local")
                || d.ends_with(".internal")
                || d.ends_with(".lan")
                || !d.contains('.')
            {
                Some("a local network name")
            } else {
                None
            }
        }
        url::Host::Ipv4(ip) => {
            let [a, b, ..] = ip.octets();
            if ip.is_loopback() {
                Some("a loopback address")
            } else if ip.is_private() {
                Some("a private network address")
            } else if ip.is_link_local() {
                Some("a link-local address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a carrier-grade NAT address (100.64.0.0/10)")
            } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_documentation() || a == 0 {
                Some("not a routable address")
            } else {
                None
            }
        }
        url::Host::Ipv6(ip) => {
            let first = ip.segments()[0];
            if let Some(v4) = ip.to_ipv4_mapped() {
                return not_public(&Url::parse(&format!("https://{}/", IpAddr::V4(v4))).ok()?);
            }
            if ip.is_loopback() {
                Some("a loopback address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private network address (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if ip.is_unspecified() {
                Some("not a routable address")
            } else {
                None
            }
        }
    }
}

/// Check a delivery URL (given with `flag`) before Vast.ai does: https to a public host, not
/// a chat service's own webhook. Plain http to this machine is allowed for local tests, with
/// the warning returned. Errors never repeat the URL itself (it may be a secret).
pub fn check_delivery_url(flag: &str, text: &str) -> anyhow::Result<Option<String>> {
    if text.len() > 2048 {
        return Err(usage(format!(
            "{flag} is {} characters; Vast.ai allows at most 2048",
            text.len()
        )));
    }
    let url = parse(flag, text)?;
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(usage(format!(
            "{flag} needs a host, like https://relay.example.com/"
        )));
    }
    if let Some(service) = chat_service(&url) {
        return Err(usage(format!(
            "{flag} is a {service} webhook URL: Vast.ai must deliver to vslack, which posts to {service}. \
             Give the relay's public URL here (a tunnel's, or your server's), and save the {service} URL with `vslack slack set`"
        )));
    }
    let why = not_public(&url);
    match url.scheme() {
        "https" => match why {
            None => Ok(None),
            Some(why) => Err(usage(format!(
                "{flag} points at {}, which is {why}: Vast.ai delivers only to public https URLs. Use a tunnel (`vslack up --tunnel tmole`) or the relay's public name",
                url.host_str().unwrap_or_default()
            ))),
        },
        "http" if why == Some("this machine (localhost)") || why == Some("a loopback address") => Ok(Some(format!(
            "{} is plain http on this machine: Vast.ai itself only delivers to public https URLs, so this is for local testing",
            shown(text)
        ))),
        _ => Err(usage(format!(
            "{flag} must be https:// (Vast.ai requires it); got {}. For a relay on this machine use a tunnel: `vslack up --tunnel tmole`",
            shown(text)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_urls_vast_ai_would_refuse_are_refused() {
        for bad in [
            "https://hooks.slack.com/services/T/B/X",
            "https://discord.com/api/webhooks/1/abc",
            "https://chat.googleapis.com/v1/spaces/A/messages?key=k",
            "https://localhost/",
            "https://relay.local/",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.1.5:8443/",
            "https://172.16.0.1/",
            "https://169.254.1.1/",
            "https://100.64.3.4/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "http://relay.example.com/",
            "relay.example.com",
            "https://relay.example.com/vast extra",
            "https://relay.example.com/\tvast",
        ] {
            assert!(check_delivery_url("--url", bad).is_err(), "{bad}");
        }
        let e = check_delivery_url("--url", "https://hooks.slack.com/services/T/B/SECRET")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Vast.ai must deliver to vslack"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        let e = check_delivery_url("--url", "relay.example.com")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("relative URL"), "{e}");
        let e = check_delivery_url("--url", "https://relay.example.com/ x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("give the URL alone"), "{e}");
        assert_eq!(
            check_delivery_url("--url", "https://relay.example.com/vast").unwrap(),
            None
        );
        assert_eq!(
            check_delivery_url("--url", "https://100.128.0.1/").unwrap(),
            None
        );
        assert!(check_delivery_url("--url", "http://127.0.0.1:8787/")
            .unwrap()
            .is_some());
    }

    #[test]
    fn secret_paths_are_never_shown() {
        assert_eq!(
            shown("https://hooks.slack.com/services/T/B/SECRET"),
            "https://hooks.slack.com/… (path redacted)"
        );
        assert_eq!(
            shown("https://u:pw@relay.example.com/"),
            "https://relay.example.com/ (credentials redacted)"
        );
        assert_eq!(
            shown("https://relay.example.com/x"),
            "https://relay.example.com/x"
        );
    }
}
