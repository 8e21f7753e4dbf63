//! A service's answer to one message, and what it means for the events it carried.

use std::time::Duration;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// The service asked us to slow down for this long.
    RateLimited(Duration),
    /// Worth retrying later (5xx, timeout, connection).
    Transient(String),
    /// The service refused this payload (a 400: invalid payload or blocks, a message too
    /// long): the same events in another message may still go through.
    Rejected(String),
    /// Retrying cannot help (an archived channel, a deleted webhook, a revoked token).
    Permanent(String),
}

/// An outcome, and how long the destination must then wait before its next message when
/// the service said so (Discord's `X-RateLimit-Remaining: 0` on a success).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub hold: Option<Duration>,
}

impl From<Outcome> for Verdict {
    fn from(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            hold: None,
        }
    }
}

/// What came back: status, headers and (the start of) the body, made printable.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header holding seconds (`Retry-After: 5`, `X-RateLimit-Reset-After: 0.75`).
    pub fn seconds(&self, name: &str) -> Option<Duration> {
        let s: f64 = self.header(name)?.trim().parse().ok()?;
        (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)))
    }

    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// `HTTP 404 {body}`: what a log line and `vslack queue` show.
    pub fn described(&self) -> String {
        format!("HTTP {} {}", self.status, self.body)
            .trim_end()
            .to_owned()
    }

    /// `Retry-After`, at least a second and at most an hour; `default` without one.
    pub fn retry_after(&self, default: Duration) -> Duration {
        self.seconds("retry-after")
            .unwrap_or(default)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

/// The common rules: 2xx delivered; 429 wait `Retry-After`; 408 and 5xx transient; 400 this
/// payload refused; any other 4xx permanent. Slack's Workflow triggers answer some failures
/// with 200 `{"ok":false,"error":…}`: permanent.
pub fn slack_like(a: &Answer) -> Verdict {
    let workflow_error = a
        .json()
        .filter(|v| v.get("ok") == Some(&Value::Bool(false)))
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
    match a.status {
        200..=299 => match workflow_error {
            Some(e) => Outcome::Permanent(format!("HTTP {} {e}", a.status)),
            None => Outcome::Delivered,
        },
        _ => http_rules(a, Duration::from_secs(1)),
    }
    .into()
}

/// Everything but success: 429 waits `Retry-After` (or `default_wait`), 408/5xx transient,
/// 400/413/422 refused payload, other 4xx permanent.
pub fn http_rules(a: &Answer, default_wait: Duration) -> Outcome {
    match a.status {
        200..=299 => Outcome::Delivered,
        429 => Outcome::RateLimited(a.retry_after(default_wait)),
        408 | 500..=599 => Outcome::Transient(a.described()),
        400 | 413 | 422 => Outcome::Rejected(a.described()),
        _ => Outcome::Permanent(a.described()),
    }
}

#[cfg(test)]
pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Answer {
        status,
        headers: map,
        body: body.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_rules() {
        let d = |a: Answer| slack_like(&a).outcome;
        assert_eq!(d(answer(200, &[], "ok")), Outcome::Delivered);
        assert_eq!(
            d(answer(429, &[("retry-after", "7")], "")),
            Outcome::RateLimited(Duration::from_secs(7))
        );
        assert_eq!(
            d(answer(429, &[], "")),
            Outcome::RateLimited(Duration::from_secs(1))
        );
        assert!(matches!(d(answer(503, &[], "")), Outcome::Transient(_)));
        assert!(matches!(
            d(answer(400, &[], "invalid_blocks")),
            Outcome::Rejected(_)
        ));
        assert_eq!(
            d(answer(410, &[], "channel_is_archived")),
            Outcome::Permanent("HTTP 410 channel_is_archived".into())
        );
        assert!(matches!(
            d(answer(200, &[], r#"{"ok":false,"error":"invalid_workflow"}"#)),
            Outcome::Permanent(e) if e.contains("invalid_workflow")
        ));
    }

    use crate::relay::message::{kind, Format};

    #[test]
    fn each_service_answers_in_its_own_way() {
        let c = |f: Format, status, headers: &[(&str, &str)], body: &str| {
            kind(f).classify(&answer(status, headers, body))
        };
        // Discord: retry_after in the body; a spent bucket holds the next message; 404 deleted.
        let v = c(
            Format::Discord,
            429,
            &[("retry-after", "1")],
            r#"{"message":"You are being rate limited.","retry_after":2.5,"global":false}"#,
        );
        assert_eq!(v.outcome, Outcome::RateLimited(Duration::from_millis(2500)));
        let v = c(
            Format::Discord,
            204,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "1.5"),
            ],
            "",
        );
        assert_eq!(
            (v.outcome, v.hold),
            (Outcome::Delivered, Some(Duration::from_millis(1500)))
        );
        let v = c(
            Format::Discord,
            404,
            &[],
            r#"{"message":"Unknown Webhook","code":10015}"#,
        );
        assert!(matches!(v.outcome, Outcome::Permanent(e) if e.contains("deleted")));
        // Telegram: parameters.retry_after; 403 permanent; ok:false permanent.
        let v = c(
            Format::Telegram,
            429,
            &[],
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
        );
        assert_eq!(v.outcome, Outcome::RateLimited(Duration::from_secs(7)));
        let v = c(
            Format::Telegram,
            403,
            &[],
            r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the group chat"}"#,
        );
        assert!(matches!(v.outcome, Outcome::Permanent(e) if e.contains("kicked")));
        let v = c(
            Format::Telegram,
            400,
            &[],
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        );
        assert!(matches!(v.outcome, Outcome::Permanent(_)));
        let v = c(
            Format::Telegram,
            400,
            &[],
            r#"{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities"}"#,
        );
        assert!(matches!(v.outcome, Outcome::Rejected(_)));
        assert_eq!(
            c(Format::Telegram, 200, &[], r#"{"ok":true,"result":{}}"#).outcome,
            Outcome::Delivered
        );
        // PagerDuty: 202 accepted, 400 permanent, 429 back off.
        assert_eq!(
            c(Format::Pagerduty, 202, &[], r#"{"status":"success"}"#).outcome,
            Outcome::Delivered
        );
        assert!(matches!(
            c(Format::Pagerduty, 400, &[], r#"{"status":"invalid event"}"#).outcome,
            Outcome::Permanent(_)
        ));
        assert_eq!(
            c(Format::Pagerduty, 429, &[], "").outcome,
            Outcome::RateLimited(Duration::from_secs(5))
        );
        // Google Chat, Teams, ntfy: the common rules.
        assert_eq!(
            c(Format::GoogleChat, 429, &[], "").outcome,
            Outcome::RateLimited(Duration::from_secs(1))
        );
        assert_eq!(c(Format::Teams, 202, &[], "").outcome, Outcome::Delivered);
        assert!(matches!(
            c(Format::Ntfy, 413, &[], "").outcome,
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            c(Format::Teams, 404, &[], "").outcome,
            Outcome::Permanent(_)
        ));
    }

    #[test]
    fn each_kind_has_its_documented_pace() {
        let pace = |f| kind(f).pace();
        assert_eq!(pace(Format::Blocks), Duration::from_secs(1));
        assert_eq!(pace(Format::GoogleChat), Duration::from_secs(1));
        assert_eq!(pace(Format::Discord), Duration::from_secs(2));
        assert_eq!(pace(Format::Telegram), Duration::from_secs(3));
        assert_eq!(pace(Format::Ntfy), Duration::from_secs(5));
        assert_eq!(pace(Format::Pagerduty), Duration::from_millis(500));
    }
}
