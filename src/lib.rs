//! vslack: relay Vast.ai notification webhooks into Slack.
//!
//! The crate is a library with a thin binary (`src/main.rs`). Layout:
//! - [`cli`]: the clap derive tree, nothing else.
//! - [`commands`]: one module per command group; each resolves settings and calls the library.
//! - [`paths`], [`config`], [`secret`]: where files live, the TOML config, redacting secrets.
//! - [`vast`]: the Vast.ai console API client.
//! - [`relay`]: the HTTP listener, signature verification, the SQLite spool and the Slack forwarder.
//! - [`exit`]: the one place that maps errors to exit codes.

pub mod cli;
pub mod commands;
pub mod config;
pub mod exit;
pub mod http;
pub mod listen;
pub mod output;
pub mod paths;
pub mod prompt;
pub mod relay;
pub mod sample;
pub mod secret;
pub mod slack_sink;
pub mod tunnel;
pub mod urls;
pub mod vast;

pub use commands::run;
