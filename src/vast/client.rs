//! HTTP client for `https://console.vast.ai/api/v0/` (or `VAST_URL`). Sends the bearer key, a
//! `User-Agent`, trailing slashes, connect and total timeouts. Idempotent calls (GET, PUT,
//! DELETE) are retried on 429, 5xx and connection errors, at most 3 tries with backoff;
//! POSTs (create, rotate, test) are sent exactly once.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::{NotificationType, Webhook, WebhookChange};
use super::{ApiKey, VastError};
use crate::secret::Secret;

pub const DEFAULT_BASE: &str = "https://console.vast.ai";
const MAX_TRIES: u32 = 3;

pub struct VastClient {
    base: String,
    host: String,
    key: ApiKey,
    http: reqwest::Client,
    retry_base: Duration,
}

/// What create and rotate-secret return: the webhook and its (new) signing secret.
pub struct WithSecret {
    pub webhook: Webhook,
    pub secret: Secret,
}

impl VastClient {
    pub fn new(base: &str, key: ApiKey) -> anyhow::Result<VastClient> {
        let base = base.trim_end_matches('/').to_owned();
        let url = crate::urls::parse("the Vast.ai base URL (--vast-url / VAST_URL)", &base)?;
        let host = url.host_str().unwrap_or("(no host)").to_owned();
        let http = crate::http::builder()
            .user_agent(concat!("vslack/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // Tests shorten the backoff; production keeps the default.
        let retry_base = std::env::var("VSLACK_RETRY_BASE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(500));
        Ok(VastClient {
            base,
            host,
            key,
            http,
            retry_base,
        })
    }

    pub fn key_source(&self) -> &super::KeySource {
        &self.key.source
    }

    pub async fn notification_types(&self) -> Result<Vec<NotificationType>, VastError> {
        let v = self.call(Method::GET, "notification-types/", None).await?;
        field(&v, "notification_types", "notification-types/")
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, VastError> {
        let v = self.call(Method::GET, "webhooks/", None).await?;
        field(&v, "webhooks", "webhooks/")
    }

    /// There is no "get one" endpoint: list and filter.
    pub async fn get_webhook(&self, id: i64) -> Result<Webhook, VastError> {
        self.list_webhooks()
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or(VastError::WebhookNotFound { id })
    }

    pub async fn create_webhook(&self, change: &WebhookChange) -> Result<WithSecret, VastError> {
        let body = serde_json::to_value(change).expect("serializable");
        let v = self.call(Method::POST, "webhooks/", Some(body)).await?;
        with_secret(&v, "webhooks/")
    }

    pub async fn update_webhook(
        &self,
        id: i64,
        change: &WebhookChange,
    ) -> Result<Webhook, VastError> {
        let path = format!("webhooks/{id}/");
        let body = serde_json::to_value(change).expect("serializable");
        let v = self
            .call(Method::PUT, &path, Some(body))
            .await
            .map_err(|e| not_found(e, id))?;
        field(&v, "webhook", &path)
    }

    pub async fn delete_webhook(&self, id: i64) -> Result<(), VastError> {
        self.call(Method::DELETE, &format!("webhooks/{id}/"), None)
            .await
            .map_err(|e| not_found(e, id))?;
        Ok(())
    }

    pub async fn rotate_secret(&self, id: i64) -> Result<WithSecret, VastError> {
        let path = format!("webhooks/{id}/rotate-secret/");
        let v = self
            .call(Method::POST, &path, None)
            .await
            .map_err(|e| not_found(e, id))?;
        with_secret(&v, &path)
    }

    /// Ask Vast.ai to deliver its test event; returns Vast.ai's message.
    pub async fn test_webhook(&self, id: i64) -> Result<String, VastError> {
        let v = self
            .call(Method::POST, &format!("webhooks/{id}/test/"), None)
            .await
            .map_err(|e| not_found(e, id))?;
        Ok(v.get("msg")
            .and_then(Value::as_str)
            .unwrap_or("ok")
            .to_owned())
    }

    /// The server's clock (from the `Date` header of a cheap call), for skew checks.
    pub async fn server_time(&self) -> Result<Option<SystemTime>, VastError> {
        let (_, date) = self
            .call_with_date(Method::GET, "notification-types/", None)
            .await?;
        Ok(date)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VastError> {
        Ok(self.call_with_date(method, path, body).await?.0)
    }

    async fn call_with_date(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Value, Option<SystemTime>), VastError> {
        let url = format!("{}/api/v0/{}", self.base, path);
        let idempotent = method != Method::POST;
        let tries = if idempotent { MAX_TRIES } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.key.expose())
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req.json(b);
            }
            let outcome = match req.send().await {
                Err(e) => Err(self.network(e)),
                Ok(resp) => {
                    let status = resp.status();
                    let date = resp
                        .headers()
                        .get(reqwest::header::DATE)
                        .and_then(|d| d.to_str().ok())
                        .and_then(|d| {
                            humantime::parse_rfc3339_weak(d)
                                .ok()
                                .or_else(|| parse_http_date(d))
                        });
                    let text = resp.text().await.map_err(|e| self.network(e))?;
                    self.interpret(status, &text, path).map(|v| (v, date))
                }
            };
            match outcome {
                Err(e) if attempt < tries && retryable(&e) => {
                    let backoff = self.retry_base * 2u32.pow(attempt - 1);
                    let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                    tracing::debug!(%path, attempt, error = %e, "retrying Vast.ai call");
                    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                }
                Err(VastError::RateLimited { .. }) => {
                    return Err(VastError::RateLimited { tries: attempt })
                }
                other => return other,
            }
        }
    }

    fn interpret(&self, status: StatusCode, text: &str, path: &str) -> Result<Value, VastError> {
        let json: Option<Value> = serde_json::from_str(text).ok();
        let msg = json.as_ref().and_then(|v| {
            v.get("msg")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        match status.as_u16() {
            200..=299 => {
                let v = json.ok_or_else(|| VastError::Decode {
                    path: path.to_owned(),
                    detail: "the body is not JSON".into(),
                })?;
                if v.get("success").and_then(Value::as_bool) == Some(false) {
                    return Err(VastError::BadRequest {
                        msg: msg.unwrap_or_else(|| "success: false".into()),
                    });
                }
                Ok(v)
            }
            401 | 403 => Err(VastError::Unauthorized {
                source_desc: self.key.source.to_string(),
                fix: self.key.source.fix(),
            }),
            404 => Err(VastError::NotFound {
                path: format!("/api/v0/{path}"),
            }),
            429 => Err(VastError::RateLimited { tries: 1 }),
            500..=599 => Err(VastError::Server {
                status: status.as_u16(),
                msg,
            }),
            s => Err(VastError::BadRequest {
                msg: msg.unwrap_or_else(|| {
                    format!("HTTP {s}: {}", text.chars().take(200).collect::<String>())
                }),
            }),
        }
    }

    fn network(&self, e: reqwest::Error) -> VastError {
        let cause = if e.is_timeout() {
            "the request timed out".to_owned()
        } else {
            let src = crate::output::root_cause(&e);
            if e.is_connect() {
                format!("connection failed ({src})")
            } else {
                src
            }
        };
        VastError::Network {
            host: self.host.clone(),
            cause,
        }
    }
}

fn retryable(e: &VastError) -> bool {
    matches!(
        e,
        VastError::RateLimited { .. } | VastError::Server { .. } | VastError::Network { .. }
    )
}

fn not_found(e: VastError, id: i64) -> VastError {
    match e {
        VastError::NotFound { .. } => VastError::WebhookNotFound { id },
        other => other,
    }
}

fn field<T: DeserializeOwned>(v: &Value, name: &str, path: &str) -> Result<T, VastError> {
    let inner = v.get(name).cloned().ok_or_else(|| VastError::Decode {
        path: path.to_owned(),
        detail: format!("no `{name}` field"),
    })?;
    serde_json::from_value(inner).map_err(|e| VastError::Decode {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn with_secret(v: &Value, path: &str) -> Result<WithSecret, VastError> {
    let webhook: Webhook = field(v, "webhook", path)?;
    let secret = v
        .pointer("/webhook/webhook_secret")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VastError::Decode {
            path: path.to_owned(),
            detail: "the answer holds no webhook_secret".into(),
        })?;
    Ok(WithSecret {
        webhook,
        secret: Secret::new(secret),
    })
}

/// Parse an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ").map(|(_, r)| r).unwrap_or(s);
    let parts: Vec<&str> = rest.split_whitespace().collect();
    if parts.len() < 4 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[1])? + 1;
    let iso = format!(
        "{}-{:02}-{:02}T{}Z",
        parts[2],
        month,
        parts[0].parse::<u32>().ok()?,
        parts[3]
    );
    humantime::parse_rfc3339(&iso).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_date_parses() {
        let t = super::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            784111777
        );
    }
}
