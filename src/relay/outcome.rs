//! What the forwarder does with Slack's answer to one message: mark the events (delivered,
//! retried with backoff, or dead-lettered), pace or back off the destination, count, log, and
//! note the destination's health for the watchdog.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rand::Rng;

use super::forward::{DestState, Destination, Forwarder};
use super::ledger::{Ledger, Mark};
use super::message::Outcome;
use super::spool::Queued;
use super::watchdog::DestHealth;
use super::Activity;

/// One message as sent: to where, carrying what.
pub(super) struct Sent<'a> {
    pub dest: &'a Destination,
    pub batch: &'a [Queued],
    /// A summary (its events are too many to name in a log line).
    pub summary: bool,
    pub seqs: Vec<i64>,
    pub ids: Vec<String>,
    /// The events as a log line may name them.
    pub logged: String,
    pub attempt: i64,
    pub latency: Duration,
}

/// Exponential backoff with full jitter in [d/2, d], capped.
fn backoff(initial: Duration, failures: u32, cap: Duration) -> Duration {
    let exp = initial.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let d = exp.min(cap);
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

impl Forwarder {
    /// Keep a health entry for each destination (by URL), and only for those.
    pub(super) fn track(&self, dests: &[Destination]) {
        let mut health = self.health.lock().expect("health lock");
        let digests: Vec<String> = dests.iter().map(Destination::digest).collect();
        health.retain(|k, _| digests.contains(k));
        for d in dests.iter().filter(|d| d.url.is_some()) {
            // Every destination has its series from the start, at zero.
            self.metrics.dest(&d.name, d.format.name(), |_| {});
        }
        for (d, digest) in dests.iter().zip(digests) {
            health.entry(digest).or_insert_with(|| DestHealth {
                label: d.label(),
                ..DestHealth::default()
            });
        }
    }

    pub(super) fn note_health(&self, dest: &Destination, change: impl FnOnce(&mut DestHealth)) {
        if let Some(h) = self
            .health
            .lock()
            .expect("health lock")
            .get_mut(&dest.digest())
        {
            change(h);
        }
    }

    pub(super) fn outcome(
        &self,
        sent: Sent<'_>,
        outcome: Outcome,
        state: &mut DestState,
        ledger: &mut Ledger,
    ) {
        let Sent {
            dest,
            batch,
            summary,
            seqs,
            ids,
            logged,
            attempt,
            latency,
        } = sent;
        let n = batch.len();
        let dest_key = &dest.digest();
        let now_ms = self.opts.clock.steady_ms();
        let now = Instant::now();
        let count = |c: &std::sync::atomic::AtomicU64, k: usize| c.fetch_add(k as u64, Relaxed);
        let some = |ids: &[String]| match summary {
            true => format!("({} of a summary)", ids.len()),
            false => crate::output::printable(&ids.join(",")).into_owned(),
        };
        match outcome {
            Outcome::Delivered => {
                self.note_health(dest, |h| {
                    *h = DestHealth {
                        label: dest.label(),
                        delivered: true,
                        ..DestHealth::default()
                    }
                });
                state.failures = 0;
                state.next_allowed = now + dest.pace.unwrap_or(self.opts.pace);
                ledger.settle(dest_key, now_ms, Mark::Delivered(seqs));
                count(&self.metrics.delivered_events, n);
                count(&self.metrics.slack_messages, 1);
                self.metrics.dest(&dest.name, dest.format.name(), |c| {
                    c.messages += 1;
                    c.events += n as u64;
                });
                if dest.url.is_some() {
                    tracing::info!(event_ids = %logged, attempt, dest = %dest.label(), latency_ms = latency.as_millis() as u64, "delivered to {}", dest.format.service());
                } else {
                    tracing::info!(event_ids = %logged, dest = %dest.label(), "printed the Slack payload (dry run, nothing posted)");
                }
                let _ = self.activity.send(Activity::Delivered { event_ids: ids });
            }
            Outcome::RateLimited(_) | Outcome::Transient(_) => {
                state.failures += 1;
                self.metrics
                    .dest(&dest.name, dest.format.name(), |c| c.failures += 1);
                let (wait, err) = match outcome {
                    // Retry-After is a floor; repeated 429s back off above it (capped), so a
                    // destination that only ever answers 429 is not asked once a second
                    // forever, and its events age towards --max-age like any failure.
                    Outcome::RateLimited(after) => (
                        after.max(backoff(
                            self.opts.retry_initial.max(after),
                            state.failures,
                            self.opts.retry_max.max(after),
                        )),
                        format!("rate limited (429, Retry-After {} s)", after.as_secs()),
                    ),
                    Outcome::Transient(err) => (
                        backoff(self.opts.retry_initial, state.failures, self.opts.retry_max),
                        err,
                    ),
                    _ => unreachable!("matched above"),
                };
                state.next_allowed = now + wait;
                let since = self.opts.clock.steady_secs();
                self.note_health(dest, |h| {
                    h.failing_since.get_or_insert(since);
                    h.error = Some(err.clone());
                    if batch
                        .iter()
                        .any(|q| q.event.received_at < since - self.opts.max_age.as_secs() as i64)
                    {
                        h.dead += 1;
                    }
                });
                let oldest_allowed =
                    self.opts.clock.steady_secs() - self.opts.max_age.as_secs() as i64;
                let (expired, retry): (Vec<&Queued>, Vec<&Queued>) = batch
                    .iter()
                    .partition(|q| q.event.received_at < oldest_allowed);
                if !expired.is_empty() {
                    let e: Vec<String> = expired.iter().map(|q| q.event.event_id.clone()).collect();
                    ledger.settle(
                        dest_key,
                        now_ms,
                        Mark::Dead(
                            expired.iter().map(|q| q.seq).collect(),
                            format!("gave up after max age: {err}"),
                        ),
                    );
                    count(&self.metrics.dead_lettered, e.len());
                    self.metrics.dest(&dest.name, dest.format.name(), |c| {
                        c.dead_lettered += e.len() as u64
                    });
                    tracing::error!(event_ids = %some(&e), dest = %dest.label(), error = %err, "dead-lettered: still failing after the maximum age");
                    let _ = self.activity.send(Activity::DeadLettered {
                        event_ids: e,
                        error: err.clone(),
                    });
                }
                if !retry.is_empty() {
                    let r: Vec<String> = retry.iter().map(|q| q.event.event_id.clone()).collect();
                    ledger.settle(
                        dest_key,
                        now_ms,
                        Mark::Retry(
                            retry.iter().map(|q| q.seq).collect(),
                            self.opts.clock.steady_ms() + wait.as_millis() as i64,
                            err.clone(),
                        ),
                    );
                    count(&self.metrics.retried, r.len());
                    tracing::warn!(event_ids = %some(&r), attempt, dest = %dest.label(), error = %err, retry_in_ms = wait.as_millis() as u64, "{} failed; will retry", dest.format.service());
                    let _ = self.activity.send(Activity::Retrying {
                        event_ids: r,
                        error: err,
                        wait,
                    });
                }
            }
            Outcome::Rejected(err) if summary => {
                // Slack refused a summary (it should fit every limit): list instead.
                state.next_allowed = now + dest.pace.unwrap_or(self.opts.pace);
                ledger.no_summaries = true;
                ledger.settle(
                    dest_key,
                    now_ms,
                    Mark::Retry(seqs, self.opts.clock.steady_ms(), err.clone()),
                );
                tracing::error!(events = n, dest = %dest.label(), error = %err, "{} refused a summary; listing the backlog instead", dest.format.service());
            }
            Outcome::Rejected(err) if n > 1 => {
                // The digest itself may be what Slack refused: send its events one by one.
                state.next_allowed = now + dest.pace.unwrap_or(self.opts.pace);
                ledger.solo.extend(seqs.iter().copied());
                ledger.settle(
                    dest_key,
                    now_ms,
                    Mark::Retry(seqs, self.opts.clock.steady_ms(), err.clone()),
                );
                tracing::warn!(event_ids = %logged, dest = %dest.label(), error = %err, "{} refused a digest; sending its events one at a time", dest.format.service());
            }
            Outcome::Rejected(err) | Outcome::Permanent(err)
                if batch.iter().all(|q| q.event.alert.is_some()) =>
            {
                // The relay's own alert is never given up on: this destination counts as
                // failing (so the next round sends the alert elsewhere, or here again later),
                // and it waits like a retry.
                state.failures += 1;
                let wait = backoff(self.opts.retry_initial, state.failures, self.opts.retry_max);
                state.next_allowed = now + wait;
                let since = self.opts.clock.steady_secs();
                self.note_health(dest, |h| {
                    h.failing_since.get_or_insert(since);
                    h.error = Some(err.clone());
                });
                ledger.settle(
                    dest_key,
                    now_ms,
                    Mark::Retry(
                        seqs,
                        self.opts.clock.steady_ms() + wait.as_millis() as i64,
                        err.clone(),
                    ),
                );
                tracing::warn!(event_ids = %logged, dest = %dest.label(), error = %err, retry_in_ms = wait.as_millis() as u64, "{} refused an alert; it goes elsewhere or is retried", dest.format.service());
            }
            Outcome::Rejected(err) | Outcome::Permanent(err) => {
                self.note_health(dest, |h| {
                    h.dead += n as u64;
                    h.error = Some(err.clone());
                });
                state.next_allowed = now + dest.pace.unwrap_or(self.opts.pace);
                ledger.settle(dest_key, now_ms, Mark::Dead(seqs, err.clone()));
                count(&self.metrics.dead_lettered, n);
                self.metrics.dest(&dest.name, dest.format.name(), |c| {
                    c.failures += 1;
                    c.dead_lettered += n as u64;
                });
                tracing::error!(event_ids = %logged, attempt, dest = %dest.label(), error = %err, "{} refused the message; dead-lettered (see `vslack queue`)", dest.format.service());
                let _ = self.activity.send(Activity::DeadLettered {
                    event_ids: ids,
                    error: err,
                });
            }
        }
    }
}
