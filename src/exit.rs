//! Exit codes, decided in one place. The README lists them; scripts may rely on them.

use crate::relay::RelayStartError;
use crate::secret::InsecureFile;
use crate::vast::VastError;

pub const OK: u8 = 0;
/// Anything not listed below, and checks that failed (`doctor`, `demo`).
pub const FAILURE: u8 = 1;
/// Invalid arguments or input (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// No API key found, or Vast.ai rejected it.
pub const AUTH: u8 = 3;
/// The webhook, destination, queued event or event store named does not exist.
pub const NOT_FOUND: u8 = 4;
/// Vast.ai unreachable, rate limiting after retries, or failing with 5xx.
pub const UNAVAILABLE: u8 = 5;
/// A local problem: a secrets file others can read, something required missing (secret,
/// Slack URL), or the event store in use by another relay.
pub const CONFIG: u8 = 6;
/// Ctrl-C at a prompt, or a second Ctrl-C (or SIGTERM) cut `up`'s cleanup short (128 +
/// SIGINT, as shells report).
pub const INTERRUPTED: u8 = 130;

/// A mistake in what the user asked for; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Something named does not exist (exit 4); the message says where to look.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFoundError(pub String);

/// Something this machine needs is missing or unsafe (exit 6); the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The person pressed Ctrl-C at a prompt (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Shorthand for returning a [`UsageError`].
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Map an error (anywhere in its chain) to the process exit code.
pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(v) = cause.downcast_ref::<VastError>() {
            return match v {
                VastError::NoApiKey { .. }
                | VastError::KeyFileMissing { .. }
                | VastError::Unauthorized { .. } => AUTH,
                VastError::WebhookNotFound { .. } | VastError::NotFound { .. } => NOT_FOUND,
                VastError::BadRequest { .. } | VastError::Decode { .. } => FAILURE,
                VastError::RateLimited { .. }
                | VastError::Server { .. }
                | VastError::Network { .. } => UNAVAILABLE,
            };
        }
        if cause.is::<Interrupted>() {
            return INTERRUPTED;
        }
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if cause.is::<NotFoundError>() {
            return NOT_FOUND;
        }
        if cause.is::<InsecureFile>() || cause.is::<RelayStartError>() || cause.is::<SetupError>() {
            return CONFIG;
        }
    }
    FAILURE
}
