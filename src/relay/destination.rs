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
