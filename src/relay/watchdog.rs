//! The watchdog: once a second it looks for the failures Vast.ai cannot report, and opens or
//! clears an incident for each (see `incidents`):
//! - `bad_signature`: `--alert-refused` deliveries within `--alert-window` whose signature no
//!   held secret matches; cleared by a verified delivery once no such refusal has come for a
//!   quiet spell (the window, at most a minute), so one good webhook among bad ones does not
//!   make it flap;
//! - `stale_timestamp`: as many correctly signed deliveries refused as too old or too new,
//!   i.e. this machine's clock is off; cleared likewise;
//! - `destination:<digest>`: a destination failing for `--alert-failing-for`, or one that
//!   dead-lettered an event; cleared by its next delivery; the alert avoids it;
//! - `backlog`: the oldest queued Vast.ai event older than `--alert-backlog-age`; cleared when
//!   it is younger than half that.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::clock::Clock;
use super::incidents::Incidents;
use super::metrics::{Metrics, Received};
use super::spool::Spool;

/// Thresholds (flags of `serve`).
#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// Refusals within `window` that open `bad_signature` or `stale_timestamp` (0: never).
    pub refused: u32,
    pub window: Duration,
    /// A destination failing this long opens an incident (a dead-letter opens one at once).
    pub failing_for: Duration,
    /// The oldest queued event this old opens `backlog` (zero: never).
    pub backlog_age: Duration,
    /// The command that replaces a wrong secret, for the `bad_signature` alert.
    pub rotate_hint: String,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            refused: 3,
            window: Duration::from_secs(300),
            failing_for: Duration::from_secs(600),
            backlog_age: Duration::from_secs(900),
            rotate_hint: "run `vslack webhook rotate-secret ID`".into(),
        }
    }
}

/// How one destination (a URL) is doing, as the forwarder last saw it.
#[derive(Debug, Clone, Default)]
pub struct DestHealth {
    pub label: String,
    /// Steady seconds of the first failure since the last delivery.
    pub failing_since: Option<i64>,
    pub error: Option<String>,
    /// Events dead-lettered since the last delivery.
    pub dead: u64,
    /// A message was delivered since the relay started (so "not failing" is known, not
    /// merely not yet seen).
    pub delivered: bool,
}

/// By destination digest; written by the forwarder.
pub type Health = Arc<Mutex<HashMap<String, DestHealth>>>;

pub struct Watchdog {
    pub opts: AlertOptions,
    pub metrics: Arc<Metrics>,
    pub spool: Spool,
    pub incidents: Arc<Incidents>,
    pub health: Health,
    pub clock: Arc<Clock>,
    /// The shared queue's backlog is watched by the relay that forwards it only, so several
    /// relays on one store alert about it once.
    pub forwarding: tokio::sync::watch::Receiver<bool>,
}

/// Refusals seen within the window, from a counter's increments.
#[derive(Default)]
struct Burst {
    seen: u64,
    times: VecDeque<Instant>,
    last: Option<Instant>,
}

impl Burst {
    fn count(&mut self, total: u64, window: Duration) -> usize {
        let now = Instant::now();
        for _ in self.seen..total {
            self.times.push_back(now);
            self.last = Some(now);
        }
        self.seen = total;
        while self.times.front().is_some_and(|t| now - *t > window) {
            self.times.pop_front();
        }
        self.times.len()
    }
}

impl Watchdog {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // What an earlier run left open, that this one does not look for, cannot clear.
        if self.opts.refused == 0 {
            for key in ["bad_signature", "stale_timestamp"] {
                self.incidents
                    .resolve(key, "This check was turned off")
                    .await;
            }
        }
        if self.opts.backlog_age.is_zero() {
            self.incidents
                .resolve("backlog", "This check was turned off")
                .await;
        }
        let quiet = self.opts.window.min(Duration::from_secs(60));
        let (mut bad, mut stale) = (Burst::default(), Burst::default());
        bad.seen = self.metrics.received_count(Received::BadSignature);
        stale.seen = self.metrics.stale_signed.load(Relaxed);
        // Verified deliveries when each refusal incident was first seen open.
        let mut accepted_at: HashMap<&str, u64> = HashMap::new();
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            self.incidents.flush().await;
            let accepted = self.metrics.received_count(Received::Stored)
                + self.metrics.received_count(Received::Duplicate);
            let failing = self.failing();
            let avoid: Vec<String> = failing.iter().map(|f| f.0.clone()).collect();
            let n = bad.count(
                self.metrics.received_count(Received::BadSignature),
                self.opts.window,
            );
            if self.opts.refused > 0 && n >= self.opts.refused as usize {
                let detail = format!(
                    "{} or more deliveries in the last {} were refused: their signature matches no secret the relay holds (the webhook's secret was rotated elsewhere, or the relay holds an old one). To fix: {}",
                    self.opts.refused,
                    humantime::format_duration(self.opts.window),
                    self.opts.rotate_hint
                );
                self.incidents
                    .open(
                        "bad_signature",
                        "deliveries are refused: the secret doesn't match",
                        &detail,
                        avoid.clone(),
                    )
                    .await;
            }
            let n = stale.count(self.metrics.stale_signed.load(Relaxed), self.opts.window);
            if self.opts.refused > 0 && n >= self.opts.refused as usize {
                let detail = clock_detail(self.metrics.skew_secs.load(Relaxed));
                self.incidents
                    .open(
                        "stale_timestamp",
                        "deliveries are refused: this machine's clock is off",
                        &detail,
                        avoid.clone(),
                    )
                    .await;
            }
            for key in ["bad_signature", "stale_timestamp"] {
                if !self.incidents.is_open(key) {
                    accepted_at.remove(key);
                    continue;
                }
                let at = *accepted_at.entry(key).or_insert(accepted);
                let burst = if key == "bad_signature" { &bad } else { &stale };
                let calm = burst.last.is_none_or(|t| t.elapsed() >= quiet);
                if accepted > at && calm {
                    self.incidents
                        .resolve(key, "A signed delivery was accepted again")
                        .await;
                    accepted_at.remove(key);
                    // Refusals before the fix do not open the next incident.
                    match key {
                        "bad_signature" => bad.times.clear(),
                        _ => stale.times.clear(),
                    }
                }
            }
            self.destinations(&failing).await;
            self.backlog(avoid).await;
        }
    }

    /// Destinations (digest, health) failing past the threshold or dead-lettering.
    fn failing(&self) -> Vec<(String, DestHealth)> {
        let now = self.clock.steady_secs();
        let limit = self.opts.failing_for.as_secs() as i64;
        let health = self.health.lock().expect("health lock");
        let mut out: Vec<(String, DestHealth)> = health
            .iter()
            .filter(|(_, h)| h.dead > 0 || h.failing_since.is_some_and(|t| now - t >= limit))
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn destinations(&self, failing: &[(String, DestHealth)]) {
        let avoid: Vec<String> = failing.iter().map(|f| f.0.clone()).collect();
        for (digest, h) in failing {
            let error = h.error.clone().unwrap_or_default();
            let mut detail = if h.dead > 0 {
                format!("it refused events, which were dead-lettered: {error}")
            } else {
                format!(
                    "failing for over {}: {error}; events are queued and retried",
                    humantime::format_duration(self.opts.failing_for)
                )
            };
            detail.push_str(&destination_hint(
                &error,
                h.label.starts_with("fallback "),
                h.dead > 0,
            ));
            let title = format!("destination {} is failing", h.label);
            self.incidents
                .open(
                    &format!("destination:{digest}"),
                    &title,
                    &detail,
                    avoid.clone(),
                )
                .await;
        }
        for i in self.incidents.current() {
            let Some(digest) = i.key.strip_prefix("destination:") else {
                continue;
            };
            let delivered = {
                let health = self.health.lock().expect("health lock");
                if health.is_empty() {
                    continue; // the forwarder has not listed its destinations yet
                }
                health.get(digest).map(|h| h.delivered)
            };
            let note = match delivered {
                None => "It is no longer one of the relay's destinations",
                Some(true) if !failing.iter().any(|f| f.0 == digest) => "It accepts messages again",
                Some(_) => continue,
            };
            self.incidents.resolve(&i.key, note).await;
        }
    }

    async fn backlog(&self, avoid: Vec<String>) {
        if self.opts.backlog_age.is_zero() || !*self.forwarding.borrow() {
            return;
        }
        let limit = self.opts.backlog_age.as_secs();
        let Ok(stats) = self.spool.stats().await else {
            return;
        };
        let age_of = |t: Option<i64>| t.map(|t| (self.clock.steady_secs() - t).max(0) as u64);
        // The counted oldest includes the relay's own alerts; only when it is old is the
        // oldest Vast.ai event looked up.
        let mut age = age_of(stats.oldest_pending_at).unwrap_or(0);
        if age >= limit / 2 {
            let Ok(oldest) = self.spool.oldest_event_pending().await else {
                return;
            };
            age = age_of(oldest).unwrap_or(0);
        }
        if age >= limit {
            let detail = format!(
                "The oldest queued event has waited over {}: events arrive faster than the destinations take them at --pace, or a destination is failing (see `vslack status` and `vslack queue list`)",
                humantime::format_duration(self.opts.backlog_age)
            );
            self.incidents
                .open(
                    "backlog",
                    &format!(
                        "events have waited over {}",
                        humantime::format_duration(self.opts.backlog_age)
                    ),
                    &detail,
                    avoid,
                )
                .await;
        } else if age < limit / 2 {
            self.incidents
                .resolve("backlog", "The queue is moving again")
                .await;
        }
    }
}

/// What to say about a clock `skew` seconds off (this machine minus Vast.ai's).
pub fn clock_detail(skew: i64) -> String {
    let way = if skew > 0 { "ahead of" } else { "behind" };
    format!(
        "This machine's clock is {} s {way} Vast.ai's, so correctly signed deliveries are refused as stale (more than the signature window off). Sync the clock (`timedatectl set-ntp true`, or chrony)",
        skew.abs()
    )
}

/// The likely fix for a destination error (Slack's documented answers), and what to do
/// about dead letters when there are any.
fn destination_hint(error: &str, fallback: bool, dead: bool) -> String {
    let set = if fallback {
        "`vslack slack set --fallback`"
    } else {
        "`vslack slack set`"
    };
    let hint = if error.contains("channel_is_archived") {
        format!("the channel was archived: unarchive it, or give the relay a new URL with {set}")
    } else if error.contains("channel_not_found") || error.contains("no_service") {
        format!(
            "the channel or the webhook was deleted: create a new incoming webhook and run {set}"
        )
    } else if error.contains("invalid_token") || error.contains("action_prohibited") {
        format!("the webhook was revoked or the app removed: create a new incoming webhook and run {set}")
    } else {
        String::new()
    };
    let retry = if dead {
        "once fixed, `vslack queue retry --all` sends the dead-lettered events again"
    } else {
        ""
    };
    match (hint.is_empty(), retry.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!(". {}{}", &retry[..1].to_uppercase(), &retry[1..]),
        (false, true) => format!(". Likely: {hint}"),
        (false, false) => format!(". Likely: {hint}; {retry}"),
    }
}
