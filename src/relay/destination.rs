//! A destination: where a set of event types goes (the default, a route's glob, or an
//! additional destination's globs), its URL (a secret: only its host is ever shown), kind and
//! pace. An event goes to its route (the first matching route, else the default) and to
//! every additional destination whose globs match it ([`targets`]).

use super::deliver::host_of;
use super::message::Format;
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
    /// The gap between two messages to it; `None`: the forwarder's (`ForwardOptions::pace`).
    /// `serve` sets `--pace`, else the rate its kind documents.
    pub pace: Option<std::time::Duration>,
    /// The fallback destination (`[slack] fallback_url`): it takes no events, only the
    /// relay's alerts about the others.
    pub fallback: bool,
    /// An additional destination (`vslack dest add`): besides its route, every event whose
    /// type matches one of these (every event when empty) goes here too.
    pub also: Option<Vec<glob::Pattern>>,
}

impl Destination {
    /// A destination of `format` at `url` (`None`: a dry run), paced like the forwarder.
    pub fn new(
        name: impl Into<String>,
        pattern: Option<glob::Pattern>,
        url: Option<Secret>,
        format: Format,
    ) -> Destination {
        Destination {
            name: name.into(),
            pattern,
            url,
            format,
            pace: None,
            fallback: false,
            also: None,
        }
    }

    /// An additional destination for the events matching `events` (all when empty).
    pub fn additionally(mut self, events: Vec<glob::Pattern>) -> Destination {
        self.also = Some(events);
        self
    }

    /// Paced at `pace`, else at the rate its kind documents.
    pub fn paced(mut self, pace: Option<std::time::Duration>) -> Destination {
        self.pace = Some(pace.unwrap_or_else(|| super::message::kind(self.format).pace()));
        self
    }

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
        format!(
            "{}|{:?}|{}|{}|{:?}",
            self.name,
            self.format,
            self.digest(),
            self.fallback,
            self.also
                .as_ref()
                .map(|p| p.iter().map(glob::Pattern::as_str).collect::<Vec<_>>())
        )
    }

    /// A digest of the URL (what an alert names to avoid a failing destination; routes
    /// sharing a URL share it), or the name in a dry run.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        match &self.url {
            Some(u) => hex::encode(&Sha256::digest(u.expose().as_bytes())[..8]),
            None => format!("dry run {}", self.name),
        }
    }
}

/// Whose pacing and backoff a destination shares: its Slack URL (a dry run's are its own).
pub(super) fn slot_key(i: usize, d: &Destination) -> String {
    match &d.url {
        Some(u) => u.expose().to_owned(),
        None => format!("dry run {i}"),
    }
}

/// Where a stored event goes: its type's destination, or for one of the relay's own alerts the
/// carrier (see [`carrier`]); `None` when no destination may carry the alert.
pub(super) fn route_event(dests: &[Destination], e: &super::event::Event) -> Option<usize> {
    match &e.alert {
        None => Some(route(dests, &e.notif_type)),
        Some(a) => carrier(dests, &a.avoid),
    }
}

/// An alert goes to the default destination, unless it is one to avoid (failing): then to the
/// fallback, else to the first route with another URL.
pub(super) fn carrier(dests: &[Destination], avoid: &[String]) -> Option<usize> {
    let ok = |d: &Destination| !avoid.contains(&d.digest());
    let default = dests.len() - 1;
    if ok(&dests[default]) {
        return Some(default);
    }
    dests
        .iter()
        .position(|d| d.fallback && ok(d))
        .or_else(|| dests.iter().position(ok))
}

/// The destination for a type: the first matching route, else the default (always last).
pub(super) fn route(dests: &[Destination], notif_type: &str) -> usize {
    dests
        .iter()
        .position(|d| d.also.is_none() && d.pattern.as_ref().is_some_and(|p| p.matches(notif_type)))
        .unwrap_or(dests.len() - 1)
}

/// Every destination a type goes to: its route, then each additional destination that takes
/// it; one per URL (`digests[i]` is `dests[i].digest()`), so no URL gets an event twice.
pub(super) fn targets(dests: &[Destination], digests: &[String], notif_type: &str) -> Vec<usize> {
    let mut t = vec![route(dests, notif_type)];
    for (i, d) in dests.iter().enumerate() {
        let takes = d
            .also
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.iter().any(|p| p.matches(notif_type)));
        if takes && !t.iter().any(|&j| digests[j] == digests[i]) {
            t.push(i);
        }
    }
    t
}

/// Where a stored event goes and how far it got there, for `vslack queue`: each destination's
/// name and `sent`, `refused` or `waiting` (`state` is the event's: `pending`, `dead`, …).
pub fn legs_of(
    dests: &[Destination],
    e: &super::event::Event,
    state: &str,
) -> Vec<(String, &'static str)> {
    if dests.is_empty() {
        return Vec::new();
    }
    let digests: Vec<String> = dests.iter().map(Destination::digest).collect();
    let to = match &e.alert {
        Some(a) => carrier(dests, &a.avoid).into_iter().collect(),
        None => targets(dests, &digests, &e.notif_type),
    };
    to.into_iter()
        .map(|i| {
            let d = &digests[i];
            let how = if e.legs.sent.contains(d) {
                "sent"
            } else if e.legs.dead.contains_key(d) {
                "refused"
            } else {
                match state {
                    "dead" if e.legs.is_empty() => "refused",
                    "delivered" => "sent",
                    "dropped" => "dropped",
                    _ => "waiting",
                }
            };
            (dests[i].name.clone(), how)
        })
        .collect()
}
