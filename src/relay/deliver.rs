//! Posting one message to a destination and reading the answer through its kind
//! ([`crate::relay::message::Kind::classify`]). The URL is a secret: only its host ever
//! reaches a log or an error.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::message::detect::endpoint;
use super::message::{kind, Answer, Body, Format, Outcome, Rendered, Verdict};
use crate::secret::Secret;

/// At most this much of an answer is kept (for logs and `vslack queue`).
const ANSWER_KEPT: usize = 200;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Client {
    pub fn new(timeout: Duration) -> Result<Client> {
        Ok(Client {
            http: crate::http::builder()
                .user_agent(concat!("vslack/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5).min(timeout))
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// POST `message` to `url` as a `format` destination; the classified answer and how long
    /// the service took.
    pub async fn post(
        &self,
        format: Format,
        url: &Secret,
        message: &Rendered,
    ) -> (Verdict, Duration) {
        let started = Instant::now();
        let verdict = match endpoint(format, url) {
            Err(e) => Outcome::Permanent(e).into(),
            Ok(end) => {
                let mut req = self.http.post(end.url.expose());
                req = match &message.body {
                    Body::Json(v) => {
                        let mut v = v.clone();
                        if let Value::Object(o) = &mut v {
                            for (k, val) in end.fields {
                                o.insert(k.into(), Value::String(val));
                            }
                        }
                        req.json(&v)
                    }
                    Body::Text(t) => req
                        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(t.clone()),
                };
                for (k, v) in &message.headers {
                    req = req.header(*k, v);
                }
                match req.send().await {
                    Err(e) if e.is_timeout() => Outcome::Transient("timed out".into()).into(),
                    Err(e) => Outcome::Transient(format!(
                        "cannot reach {}: {}",
                        host_of(url.expose()),
                        crate::output::root_cause(&e)
                    ))
                    .into(),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        // The answer ends up in logs and `vslack queue`: no control characters.
                        let body: String = resp
                            .text()
                            .await
                            .unwrap_or_default()
                            .chars()
                            .take(ANSWER_KEPT)
                            .collect();
                        let body = crate::output::printable(&body).into_owned();
                        kind(format).classify(&Answer {
                            status,
                            headers,
                            body,
                        })
                    }
                }
            }
        };
        (verdict, started.elapsed())
    }
}

/// The host part of a URL, safe to log (`telegram://…` and `pagerduty://…` show the
/// service's host, never the token or key).
pub fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "telegram" => "api.telegram.org".into(),
        Ok(u) if u.scheme() == "pagerduty" => "events.pagerduty.com".into(),
        Ok(u) => u
            .host_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "(invalid URL)".into()),
        Err(_) => "(invalid URL)".into(),
    }
}

/// Post a "vslack is connected" message to a `format` destination, in its own shape. On
/// PagerDuty it is an `info` alert resolved at once, so a test pages no one for long.
pub async fn post_hello(format: Format, url: &Secret) -> Result<()> {
    let event = super::event::Event {
        event_id: format!("vslack-hello-{}", hex::encode(rand::random::<[u8; 4]>())),
        notif_type: "webhook_test".into(),
        subject: Some("vslack is connected".into()),
        message: Some("Vast.ai notifications will arrive here.".into()),
        user_id: None,
        timestamp: None,
        received_at: super::now_secs(),
        context: None,
        alert: None,
        heartbeat: false,
        legs: Default::default(),
    };
    let id = event.event_id.clone();
    let (message, _) = super::message::render_batch(&[event], format, "https://cloud.vast.ai");
    let client = Client::new(Duration::from_secs(10))?;
    let service = format.service();
    match client.post(format, url, &message).await.0.outcome {
        Outcome::Delivered if format == Format::Pagerduty => {
            let resolve = Rendered::json(serde_json::json!({
                "event_action": "resolve",
                "dedup_key": id,
            }));
            match client.post(format, url, &resolve).await.0.outcome {
                Outcome::Delivered => Ok(()),
                _ => anyhow::bail!(
                    "PagerDuty took the test alert but not its resolve: resolve the \"vslack is connected\" alert by hand"
                ),
            }
        }
        Outcome::Delivered => Ok(()),
        Outcome::RateLimited(d) => anyhow::bail!(
            "{service} is rate limiting this destination; try again in {}s",
            d.as_secs().max(1)
        ),
        Outcome::Transient(e) => {
            anyhow::bail!("{service} did not accept the message ({e}); try again later")
        }
        Outcome::Rejected(e) | Outcome::Permanent(e) => {
            anyhow::bail!(
                "{service} refused the message ({e}); check the URL with `vslack slack set`"
            )
        }
    }
}
