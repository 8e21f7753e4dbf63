//! Events that go to several destinations: each destination delivers, retries and
//! dead-letters its copy on its own, and what each has done is kept with the event
//! (`Event::legs`), so a retry for one never re-sends to another.
//!
//! The forwarder sorts a round's events into one group per destination ([`crate::relay::groups`]),
//! an event going to several being in several groups. Each destination's outcome goes
//! through [`Ledger::settle`]: for an event with one destination it is written as always
//! (delivered, retry, dead); for one with several, the destination is added to its `legs`
//! (sent, or dead with why), and the event stays pending until every destination is done. It
//! is then delivered, or a dead letter if any destination refused it (`vslack queue retry`
//! tries only those again). While a destination that has not yet had a copy could take it,
//! the event stays due at once: the failing destination's own backoff holds its retries, so
//! it delays no one else.

use std::collections::HashMap;

use super::event::Event;
use super::ledger::{Ledger, Mark};
use super::spool::Progress;

/// The round's events that go to several destinations.
#[derive(Default)]
pub struct Round {
    events: HashMap<i64, Leg>,
}

struct Leg {
    event: Event,
    /// The digests of every destination it goes to.
    targets: Vec<String>,
    /// Destinations that failed this round, and when the earliest wants it again.
    failed: Vec<String>,
    retry_at: Option<i64>,
}

impl Round {
    /// Track `event` (queue number `seq`), which goes to `targets` (digests).
    pub fn track(&mut self, seq: i64, event: &Event, targets: Vec<String>) {
        self.events.insert(
            seq,
            Leg {
                event: event.clone(),
                targets,
                failed: Vec::new(),
                retry_at: None,
            },
        );
    }

    pub fn is_tracked(&self, seq: i64) -> bool {
        self.events.contains_key(&seq)
    }
}

impl Leg {
    fn done(&self) -> bool {
        self.targets.iter().all(|t| self.event.legs.done(t))
    }

    /// When to look at it again: now while a destination that has no copy has not failed
    /// this round, else when the earliest failed one wants it.
    fn next_ms(&self, now_ms: i64) -> i64 {
        let waiting = self
            .targets
            .iter()
            .any(|t| !self.event.legs.done(t) && !self.failed.contains(t));
        match (waiting, self.retry_at) {
            (false, Some(at)) => at,
            _ => now_ms,
        }
    }

    fn progress(&self, seq: i64, now_ms: i64, error: Option<String>) -> Progress {
        Progress {
            seq,
            event: serde_json::to_string(&self.event).unwrap_or_default(),
            next_ms: self.next_ms(now_ms),
            error,
        }
    }
}

impl Ledger {
    /// Record `mark`, the outcome of one message to the destination with digest `dest`: as
    /// it is for events with one destination, as a step of their `legs` for the others.
    pub fn settle(&mut self, dest: &str, now_ms: i64, mark: Mark) {
        let seqs = match &mark {
            Mark::Delivered(s) | Mark::Retry(s, ..) | Mark::Dead(s, _) => s.clone(),
            Mark::Progress(_) => return self.marks.push(mark),
        };
        let (several, one): (Vec<i64>, Vec<i64>) =
            seqs.into_iter().partition(|s| self.round.is_tracked(*s));
        if !one.is_empty() {
            self.marks.push(match &mark {
                Mark::Delivered(_) => Mark::Delivered(one),
                Mark::Retry(_, at, e) => Mark::Retry(one, *at, e.clone()),
                Mark::Dead(_, e) => Mark::Dead(one, e.clone()),
                Mark::Progress(_) => unreachable!("returned above"),
            });
        }
        let mut progress = Vec::new();
        let (mut delivered, mut dead) = (Vec::new(), Vec::new());
        for seq in several {
            let leg = self.round.events.get_mut(&seq).expect("tracked");
            let error = match &mark {
                Mark::Delivered(_) => {
                    if !leg.event.legs.sent.iter().any(|s| s == dest) {
                        leg.event.legs.sent.push(dest.to_owned());
                    }
                    None
                }
                Mark::Retry(_, at, e) => {
                    leg.failed.push(dest.to_owned());
                    leg.retry_at = Some(leg.retry_at.map_or(*at, |r| r.min(*at)));
                    Some(e.clone())
                }
                Mark::Dead(_, e) => {
                    leg.event.legs.dead.insert(dest.to_owned(), e.clone());
                    Some(e.clone())
                }
                Mark::Progress(_) => unreachable!("returned above"),
            };
            if !leg.done() {
                progress.push(leg.progress(seq, now_ms, error));
            } else if let Some((_, why)) = leg.event.legs.dead.iter().next() {
                // Done, and refused somewhere: a dead letter that remembers where it got.
                let why = why.clone();
                progress.push(leg.progress(seq, now_ms, Some(why.clone())));
                dead.push((seq, why));
            } else {
                delivered.push(seq);
            }
        }
        if !progress.is_empty() {
            self.marks.push(Mark::Progress(progress));
        }
        if !delivered.is_empty() {
            self.marks.push(Mark::Delivered(delivered));
        }
        for (seq, why) in dead {
            self.marks.push(Mark::Dead(vec![seq], why));
        }
    }
}
