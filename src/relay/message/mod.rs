//! Turn stored [`Event`]s into messages for each kind of destination, and read each service's
//! answer.
//!
//! One module per kind, behind one small trait ([`Kind`]): render a batch within the kind's
//! documented limits, render a summary of a backlog, classify the service's answer, and say
//! how fast the service lets one URL be posted to. Adding a kind is one new file and one line
//! in [`kind`]; nothing kind-specific leaks into the forwarder.
//!
//! | kind          | module          | what is sent                                          |
//! |---------------|-----------------|-------------------------------------------------------|
//! | `blocks`      | [`slack`]       | Slack Block Kit with a `text` fallback                |
//! | `text`        | [`slack`]       | Slack `text` only, Vast.ai's adapter format           |
//! | `workflow`    | [`slack`]       | Slack Workflow Builder string variables               |
//! | `google-chat` | [`google_chat`] | `text` plus a `cardsV2` card with a console button    |
//! | `discord`     | [`discord`]     | embeds, `allowed_mentions` none                       |
//! | `teams`       | [`teams`]       | an Adaptive Card in the Workflows `attachments` shape |
//! | `telegram`    | [`telegram`]    | `sendMessage`, HTML, inline-keyboard link             |
//! | `ntfy`        | [`ntfy`]        | plain text, `Title`/`Priority`/`Tags`/`Click` headers |
//! | `pagerduty`   | [`pagerduty`]   | Events API v2 `trigger`/`resolve`                     |
//!
//! The event model ([`model::Parts`]: subject, message, console link, severity, time) and the
//! length-safe truncation are shared. Every message names each event's type and id, so a
//! delivered message can always be traced back to the store; every string from Vast.ai is
//! escaped for the target's markup, so it can neither mention anyone nor add a link.
//! Lengths are counted in UTF-16 code units, never fewer than characters, so limits hold
//! whichever way a service counts.

use std::time::Duration;

use serde_json::Value;

use super::event::Event;

pub mod answer;
pub mod detect;
pub mod discord;
pub mod google_chat;
pub mod model;
pub mod ntfy;
pub mod pagerduty;
pub mod slack;
mod slack_summary;
pub mod summary;
pub mod teams;
pub mod telegram;

pub use answer::{Answer, Outcome, Verdict};
pub use model::Parts;
pub use summary::{thousands, Summary};

/// The kind of a destination: which service it is, and so what shape its messages take.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Slack incoming webhook: Block Kit with a plain-text fallback
    Blocks,
    /// Slack incoming webhook: plain `text` only, as Vast.ai's own adapter sends
    Text,
    /// Slack Workflow Builder trigger: flat string variables
    Workflow,
    /// Google Chat incoming webhook: text and a card with a console button
    GoogleChat,
    /// Discord webhook: an embed per event, no mentions
    Discord,
    /// Microsoft Teams Workflows webhook: an Adaptive Card
    Teams,
    /// Telegram bot: sendMessage to one chat
    Telegram,
    /// ntfy topic (ntfy.sh or self-hosted)
    Ntfy,
    /// PagerDuty Events API v2: one alert per event, resolved by its recovery event
    Pagerduty,
}

impl Format {
    /// Every kind, in the order help and errors list them.
    pub const ALL: [Format; 9] = [
        Format::Blocks,
        Format::Workflow,
        Format::Text,
        Format::GoogleChat,
        Format::Discord,
        Format::Teams,
        Format::Telegram,
        Format::Ntfy,
        Format::Pagerduty,
    ];

    /// The name `--format` and `kind =` take.
    pub fn name(self) -> &'static str {
        match self {
            Format::Blocks => "blocks",
            Format::Text => "text",
            Format::Workflow => "workflow",
            Format::GoogleChat => "google-chat",
            Format::Discord => "discord",
            Format::Teams => "teams",
            Format::Telegram => "telegram",
            Format::Ntfy => "ntfy",
            Format::Pagerduty => "pagerduty",
        }
    }

    /// Every kind's name, comma separated (for errors and help).
    pub fn names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }

    /// The kind a URL names unambiguously (see [`detect`]); `None` when it does not.
    pub fn for_url(url: &str) -> Option<Format> {
        detect::detect(url)
    }

    /// The service's name, for people ("Slack", "Discord").
    pub fn service(self) -> &'static str {
        match self {
            Format::Blocks | Format::Text | Format::Workflow => "Slack",
            Format::GoogleChat => "Google Chat",
            Format::Discord => "Discord",
            Format::Teams => "Microsoft Teams",
            Format::Telegram => "Telegram",
            Format::Ntfy => "ntfy",
            Format::Pagerduty => "PagerDuty",
        }
    }
}

/// One message ready to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub body: Body,
    /// Request headers the kind needs (ntfy's `Title`, `Priority`, `Tags`, `Click`).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// `text/plain; charset=utf-8`.
    Text(String),
}

impl Rendered {
    pub fn json(v: Value) -> Rendered {
        Rendered {
            body: Body::Json(v),
            headers: Vec::new(),
        }
    }

    /// The JSON body (`Value::Null` for a text body).
    pub fn value(&self) -> &Value {
        match &self.body {
            Body::Json(v) => v,
            Body::Text(_) => &Value::Null,
        }
    }

    /// Everything a person would read in it (body and headers), for checks and `demo`.
    pub fn shown(&self) -> String {
        let mut out = match &self.body {
            Body::Json(v) => v.to_string(),
            Body::Text(t) => t.clone(),
        };
        for (k, v) in &self.headers {
            out.push_str(&format!("\n{k}: {v}"));
        }
        out
    }
}

/// A kind of destination: its shape, its limits, and how it answers.
pub trait Kind: Sync {
    /// Render the first of `parts` (non-empty) as one message; how many it carries (≥ 1).
    /// One event is a single message; several, a digest within the kind's limits.
    fn render(&self, parts: &[Parts]) -> (Rendered, usize);
    /// One message standing for a backlog too long to list; `None` when the kind never
    /// summarises (a pager wants one alert per event).
    fn summary(&self, summary: &Summary) -> Option<Rendered>;
    /// What the service's answer means.
    fn classify(&self, answer: &Answer) -> Verdict {
        answer::slack_like(answer)
    }
    /// The gap between two messages to one URL that the service's documented rate allows.
    fn pace(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// At most this many events in one message.
    fn max_events(&self) -> usize;
}

/// The registry: the implementation of each kind.
pub fn kind(format: Format) -> &'static dyn Kind {
    match format {
        Format::Blocks => &slack::Blocks,
        Format::Text => &slack::Text,
        Format::Workflow => &slack::Workflow,
        Format::GoogleChat => &google_chat::GoogleChat,
        Format::Discord => &discord::Discord,
        Format::Teams => &teams::Teams,
        Format::Telegram => &telegram::Telegram,
        Format::Ntfy => &ntfy::Ntfy,
        Format::Pagerduty => &pagerduty::PagerDuty,
    }
}

/// The most events any kind carries in one message (what the forwarder reads for a batch).
pub const MAX_BLOCKS: usize = slack::MAX_BLOCKS;

/// Render the first events of `events` (non-empty) as ONE message of `format`, and how many
/// it carries (≥ 1).
///
/// # Panics
///
/// If `events` is empty.
pub fn render_batch(events: &[Event], format: Format, console: &str) -> (Rendered, usize) {
    assert!(!events.is_empty(), "render_batch needs at least one event");
    let k = kind(format);
    let parts: Vec<Parts> = events
        .iter()
        .take(k.max_events().min(MAX_BLOCKS))
        .map(|e| Parts::new(e, console))
        .collect();
    let (r, n) = k.render(&parts);
    (r, n.clamp(1, parts.len()))
}

/// One message standing for all of `events` (queue numbers `seqs.0..=seqs.1`), or `None`
/// when `format` never summarises.
pub fn render_summary(
    events: &[&Event],
    seqs: (i64, i64),
    format: Format,
    console: &str,
) -> Option<Rendered> {
    kind(format).summary(&Summary::of(events, seqs, console))
}

#[cfg(test)]
mod kinds_tests;
