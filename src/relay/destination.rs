//! A destination: where a set of event types goes (the default, or a route's glob), its URL
//! (a secret: only its host is ever shown) and message shape.

use super::message::Format;
use super::slack::host_of;
use crate::secret::Secret;

/// Where a set of event types goes.
#[derive(Clone)]
pub struct Destination {
    /// `default`, or the route's glob.
    pub name: String,
    pub pattern: Option<glob::Pattern>,
    /// `None` in dry-run mode: payloads are printed instead.
    pub url: Option<Secret>,
    pub format: Format,
}

impl Destination {
    pub fn label(&self) -> String {
        match &self.url {
            Some(u) => format!("{} ({})", self.name, host_of(u.expose())),
            None => format!("{} (dry run)", self.name),
        }
    }
}

impl Destination {
    /// What tells one destination from another (name, pattern, shape and a digest of the URL),
    /// without keeping the URL in the clear.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let url = self
            .url
            .as_ref()
            .map(|u| hex::encode(&Sha256::digest(u.expose().as_bytes())[..8]))
            .unwrap_or_default();
        format!("{}|{:?}|{url}", self.name, self.format)
    }
}

/// Whose pacing and backoff a destination shares: its Slack URL (a dry run's are its own).
pub(super) fn slot_key(i: usize, d: &Destination) -> String {
    match &d.url {
        Some(u) => u.expose().to_owned(),
        None => format!("dry run {i}"),
    }
}

/// The destination for a type: the first matching route, else the default (always last).
pub(super) fn route(dests: &[Destination], notif_type: &str) -> usize {
    dests
        .iter()
        .position(|d| d.pattern.as_ref().is_some_and(|p| p.matches(notif_type)))
        .unwrap_or(dests.len() - 1)
}
