//! Posting to Slack and classifying the answer: 2xx delivered; 429 wait `Retry-After`; 5xx,
//! timeouts and connection errors transient; any other 4xx permanent (dead letter). The URL is
//! a secret: only its host ever reaches a log or an error.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Slack asked us to slow down for this long.
    RateLimited(Duration),
    /// Worth retrying later (5xx, timeout, connection).
    Transient(String),
    /// Slack refused this payload (HTTP 400: invalid_payload, invalid_blocks, ...): the same
    /// events in another message may still go through.
    Rejected(String),
    /// Retrying cannot help (channel_not_found, channel_is_archived, a revoked URL, ...).
    Permanent(String),
}

#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
}

impl SlackClient {
    pub fn new(timeout: Duration) -> Result<SlackClient> {
        Ok(SlackClient {
            http: reqwest::Client::builder()
                .user_agent(concat!("vslack/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5).min(timeout))
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// POST `payload`; returns the classified outcome and how long Slack took.
    pub async fn post(&self, url: &Secret, payload: &Value) -> (Outcome, Duration) {
        let started = Instant::now();
        let outcome = match self.http.post(url.expose()).json(payload).send().await {
            Err(e) if e.is_timeout() => Outcome::Transient("timed out".into()),
            Err(e) => Outcome::Transient(format!(
                "cannot reach {}: {}",
                host_of(url.expose()),
                crate::output::root_cause(&e)
            )),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                // Slack's answer ends up in logs and `vslack queue`: no control characters.
                let body: String = resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                let body = crate::output::printable(&body).into_owned();
                // Workflow triggers answer 200 {"ok":false,"error":...} for some failures.
                let workflow_error = serde_json::from_str::<Value>(&body)
                    .ok()
                    .filter(|v| v.get("ok") == Some(&Value::Bool(false)))
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
                match status {
                    200..=299 => match workflow_error {
                        Some(e) => Outcome::Permanent(format!("HTTP {status} {e}")),
                        None => Outcome::Delivered,
                    },
                    429 => Outcome::RateLimited(Duration::from_secs(
                        retry_after.unwrap_or(1).clamp(1, 3600),
                    )),
                    408 | 500..=599 => Outcome::Transient(format!("HTTP {status} {body}")),
                    400 => Outcome::Rejected(format!("HTTP {status} {body}")),
                    _ => Outcome::Permanent(format!("HTTP {status} {body}")),
                }
            }
        };
        (outcome, started.elapsed())
    }
}

/// The host part of a URL, safe to log.
pub fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "(invalid URL)".into())
}

/// Check that a URL looks like a Slack incoming webhook or workflow trigger. Errors for
/// something unusable; a warning for something that may be a mistake.
pub fn check_url(url: &str) -> Result<Option<String>> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        crate::exit::usage(
            "the Slack URL is not a valid URL (it should start with https://hooks.slack.com/)",
        )
    })?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {
            return Ok(Some(
                "plain http to a loopback Slack stand-in: fine for testing only".into(),
            ))
        }
        _ => return Err(crate::exit::usage("the Slack URL must use https://")),
    }
    if host == "hooks.slack.com" {
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        // services/T…/B…/secret, triggers/T…/id/secret, workflows/T…/A…/id/secret (legacy).
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
        Ok(None)
    } else {
        Ok(Some(format!(
            "{host}{} does not look like a Slack incoming webhook (https://hooks.slack.com/services/...) or workflow trigger (.../triggers/...)",
            if host == "hooks.slack.com" { " with this path" } else { "" }
        )))
    }
}

/// Post a "vslack is connected" message, in the shape the URL expects.
pub async fn post_hello(url: &Secret) -> Result<()> {
    let payload = match super::message::Format::for_url(url.expose()) {
        super::message::Format::Workflow => serde_json::json!({
            "vast_notification_message": "vslack is connected: Vast.ai notifications will arrive here.",
            "vast_action_url": "https://cloud.vast.ai/",
        }),
        _ => {
            serde_json::json!({"text": ":white_check_mark: vslack is connected: Vast.ai notifications will arrive here."})
        }
    };
    let client = SlackClient::new(Duration::from_secs(10))?;
    match client.post(url, &payload).await.0 {
        Outcome::Delivered => Ok(()),
        Outcome::RateLimited(d) => anyhow::bail!(
            "Slack is rate limiting this webhook; try again in {}s",
            d.as_secs()
        ),
        Outcome::Transient(e) => {
            anyhow::bail!("Slack did not accept the message ({e}); try again later")
        }
        Outcome::Rejected(e) | Outcome::Permanent(e) => {
            anyhow::bail!("Slack refused the message ({e}); check the URL with `vslack slack set`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        assert_eq!(
            check_url("https://hooks.slack.com/services/T/B/X").unwrap(),
            None
        );
        assert_eq!(
            check_url("https://hooks.slack.com/triggers/T/1/x").unwrap(),
            None
        );
        assert_eq!(
            check_url("https://hooks.slack.com/workflows/T/A/1/x").unwrap(),
            None
        );
        for bad in [
            "https://hooks.slack.com/services/T/B",
            "https://hooks.slack.com/services/T/B/X/T/B/X",
            "https://hooks.slack.com/triggers/T/1",
            "https://hooks.slack.com/other/T/B/X",
        ] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(e.contains("copy it again from Slack"), "{bad}: {e}");
            assert!(!e.contains("/T/"), "the URL is not echoed: {e}");
        }
        assert!(check_url("https://example.com/x").unwrap().is_some());
        assert!(check_url("http://127.0.0.1:9/services/x")
            .unwrap()
            .is_some());
        assert!(check_url("http://example.com/services/x").is_err());
        assert!(check_url("not a url").is_err());
        assert_eq!(
            host_of("https://hooks.slack.com/services/SECRET"),
            "hooks.slack.com"
        );
    }
}
