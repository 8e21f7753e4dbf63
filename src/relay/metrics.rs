//! Counters for `/metrics` (Prometheus text format) and the one-line outcomes `up` and `demo`
//! print. Plain atomics: cheap on the hot path, no registry to wire up.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::spool::Stats;

/// Answer given to a delivery, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Stored,
    Duplicate,
    MissingSignature,
    BadSignature,
    StaleTimestamp,
    InvalidJson,
    TooLarge,
    StoreFailed,
}

impl Received {
    const ALL: [Received; 8] = [
        Received::Stored,
        Received::Duplicate,
        Received::MissingSignature,
        Received::BadSignature,
        Received::StaleTimestamp,
        Received::InvalidJson,
        Received::TooLarge,
        Received::StoreFailed,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Received::Stored => "stored",
            Received::Duplicate => "duplicate",
            Received::MissingSignature => "missing_signature",
            Received::BadSignature => "bad_signature",
            Received::StaleTimestamp => "stale_timestamp",
            Received::InvalidJson => "invalid_json",
            Received::TooLarge => "too_large",
            Received::StoreFailed => "store_failed",
        }
    }
}

const BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    received: [AtomicU64; Received::ALL.len()],
    pub delivered_events: AtomicU64,
    pub slack_messages: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Stale refusals whose signature was right at their own timestamp: a clock apart.
    pub stale_signed: AtomicU64,
    /// This clock minus the timestamp of the last of those, in seconds.
    pub skew_secs: AtomicI64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Per destination (name, kind): what each has taken and refused.
    per_dest: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), DestCounts>>,
}

/// One destination's counters.
#[derive(Default, Clone, Copy)]
pub struct DestCounts {
    pub messages: u64,
    pub events: u64,
    pub failures: u64,
    pub dead_lettered: u64,
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn received(&self, r: Received) {
        self.received[r as usize].fetch_add(1, Relaxed);
    }

    pub fn received_count(&self, r: Received) -> u64 {
        self.received[r as usize].load(Relaxed)
    }

    pub fn slack_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Count something for one destination.
    pub fn dest(&self, name: &str, kind: &'static str, change: impl FnOnce(&mut DestCounts)) {
        let mut per = self.per_dest.lock().expect("metrics lock");
        change(per.entry((name.to_owned(), kind)).or_default());
    }

    fn render_dests(&self, out: &mut String) {
        let per = self.per_dest.lock().expect("metrics lock").clone();
        type Series = (&'static str, &'static str, fn(&DestCounts) -> u64);
        let series: [Series; 4] = [
            (
                "vslack_destination_messages_total",
                "Messages a destination accepted.",
                |c| c.messages,
            ),
            (
                "vslack_destination_events_total",
                "Events a destination accepted.",
                |c| c.events,
            ),
            (
                "vslack_destination_failures_total",
                "Answers from a destination that were not a delivery (retried, or dead-lettered).",
                |c| c.failures,
            ),
            (
                "vslack_destination_dead_lettered_total",
                "Events a destination refused for good (or never took within --max-age).",
                |c| c.dead_lettered,
            ),
        ];
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((dest, kind), c) in &per {
                let _ = writeln!(
                    out,
                    "{name}{{destination=\"{}\",kind=\"{kind}\"}} {}",
                    label(dest),
                    get(c)
                );
            }
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self, stats: Option<&Stats>) -> String {
        let mut out = String::new();
        out.push_str("# HELP vslack_received_total Deliveries received, by outcome.\n# TYPE vslack_received_total counter\n");
        for r in Received::ALL {
            let _ = writeln!(
                out,
                "vslack_received_total{{outcome=\"{}\"}} {}",
                r.label(),
                self.received_count(r)
            );
        }
        // `stored` and `duplicates` repeat two of the per-outcome series above on purpose: they
        // are the totals dashboards and the README's metric list name directly.
        let counters = [
            (
                "vslack_stored_total",
                "Events committed to the store.",
                self.received_count(Received::Stored),
            ),
            (
                "vslack_duplicates_total",
                "Deliveries of an already stored event id.",
                self.received_count(Received::Duplicate),
            ),
            (
                "vslack_delivered_total",
                "Events delivered (to each of their destinations).",
                self.delivered_events.load(Relaxed),
            ),
            (
                "vslack_slack_messages_total",
                "Messages the destinations accepted (a digest carries several events).",
                self.slack_messages.load(Relaxed),
            ),
            (
                "vslack_retried_total",
                "Events scheduled for another attempt.",
                self.retried.load(Relaxed),
            ),
            (
                "vslack_dead_lettered_total",
                "Events given up on.",
                self.dead_lettered.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        if let Some(s) = stats {
            let _ = writeln!(out, "# HELP vslack_queue_depth Events waiting for Slack.\n# TYPE vslack_queue_depth gauge\nvslack_queue_depth {}", s.pending);
            let _ = writeln!(out, "# HELP vslack_dead_letters Events in the dead-letter queue.\n# TYPE vslack_dead_letters gauge\nvslack_dead_letters {}", s.dead);
        }
        out.push_str("# HELP vslack_slack_request_seconds Slack request latency.\n# TYPE vslack_slack_request_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "vslack_slack_request_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "vslack_slack_request_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "vslack_slack_request_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "vslack_slack_request_seconds_count {count}");
        self.render_dests(&mut out);
        out
    }
}
