//! The relay: listener ([`server`]), signature check ([`verify`]), durable queue ([`spool`]),
//! Slack delivery ([`forward`]) and message shapes ([`message`]).

pub mod event;
pub mod message;
