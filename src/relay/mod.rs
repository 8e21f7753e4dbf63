//! The relay: listener ([`server`]), signature check ([`verify`]), durable queue ([`spool`]),
//! Slack delivery ([`forward`], [`slack`]) and message shapes ([`message`]).

pub mod event;
pub mod message;
pub mod slack;

/// The relay cannot start: something it needs is missing or unsafe. The message says how to
/// provide it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayStartError(pub String);
