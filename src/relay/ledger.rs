//! Outcomes the forwarder has yet to write to the store, and what it remembers between rounds.
//! Until the outcomes of sent messages are written nothing else is sent, so a store that
//! refuses writes cannot make the forwarder repeat a message.

use std::collections::HashSet;

use super::clock::Clock;
use super::spool::{Spool, SpoolError};

/// An outcome to write to the store.
#[derive(Debug, Clone)]
pub enum Mark {
    Delivered(Vec<i64>),
    Retry(Vec<i64>, i64, String),
    Dead(Vec<i64>, String),
    /// Events going to several destinations, as they now stand (see `fanout`).
    Progress(Vec<super::spool::Progress>),
}

#[derive(Default)]
pub struct Ledger {
    /// Outcomes not yet written (the store refused); written before anything else is sent.
    pub marks: Vec<Mark>,
    /// Events to send alone because a digest carrying them was refused.
    pub solo: HashSet<i64>,
    /// Slack refused a summary: list the backlog instead from then on.
    pub no_summaries: bool,
    /// This round's events that go to several destinations.
    pub round: super::fanout::Round,
}

impl Ledger {
    /// Write every outcome held, oldest first; stops at the first the store refuses.
    pub async fn record(&mut self, spool: &Spool, clock: &Clock) -> Result<(), SpoolError> {
        while let Some(mark) = self.marks.first().cloned() {
            match mark {
                Mark::Delivered(seqs) => {
                    spool
                        .mark_delivered(seqs.clone(), clock.steady_secs())
                        .await?;
                    self.forget_solo(&seqs);
                }
                Mark::Retry(seqs, next, err) => spool.mark_retry(seqs, next, err).await?,
                Mark::Progress(updates) => spool.mark_progress(updates).await?,
                Mark::Dead(seqs, err) => {
                    spool
                        .mark_dead(seqs.clone(), err, clock.steady_secs())
                        .await?;
                    self.forget_solo(&seqs);
                }
            }
            self.marks.remove(0);
        }
        Ok(())
    }

    fn forget_solo(&mut self, seqs: &[i64]) {
        if !self.solo.is_empty() {
            let done: HashSet<i64> = seqs.iter().copied().collect();
            self.solo.retain(|s| !done.contains(s));
        }
    }
}
