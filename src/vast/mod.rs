//! The Vast.ai console API: typed requests and answers ([`types`]), the HTTP client with
//! retries ([`client`]), where the API key comes from ([`key`]) and what can go wrong.

pub mod client;
pub mod key;
pub mod types;

pub use client::VastClient;
pub use key::{ApiKey, KeySource};
pub use types::{NotificationType, Webhook};

/// Failures a caller branches on (exit codes, retries). Messages name the next step and never
/// contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum VastError {
    #[error("no Vast.ai API key found; looked in: {looked}. Run `vslack login`, set VAST_API_KEY, or pass --api-key-file PATH")]
    NoApiKey { looked: String },
    #[error("--api-key-file {path} is missing or empty: put the key in it (https://cloud.vast.ai/manage-keys/), or leave the flag out to use VAST_API_KEY or the key saved by `vslack login`")]
    KeyFileMissing { path: String },
    #[error("Vast.ai rejected the API key from {source_desc} (HTTP 401): {fix}")]
    Unauthorized {
        source_desc: String,
        fix: &'static str,
    },
    #[error("webhook {id} not found; run `vslack webhook list`")]
    WebhookNotFound { id: i64 },
    #[error("Vast.ai answered 404 Not Found for {path}; is the base URL right? (--vast-url / VAST_URL, default https://console.vast.ai)")]
    NotFound { path: String },
    #[error("Vast.ai refused the request: {msg}")]
    BadRequest { msg: String },
    #[error("Vast.ai is rate limiting this API key (HTTP 429, {tries} tries); wait a minute and try again")]
    RateLimited { tries: u32 },
    #[error("Vast.ai failed with HTTP {status}{}; try again later", msg.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Server { status: u16, msg: Option<String> },
    #[error("cannot reach Vast.ai at {host}: {cause}; check the network, or the base URL if you set one (--vast-url / VAST_URL)")]
    Network { host: String, cause: String },
    #[error("unexpected answer from Vast.ai for {path}: {detail}")]
    Decode { path: String, detail: String },
}
