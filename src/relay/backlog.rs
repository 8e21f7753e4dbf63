//! When a backlog is listed and when it is summarised.
//!
//! A destination takes about one message per `--pace`, and a digest lists up to
//! [`LISTED_PER_MESSAGE`] events, so `--list-within` (5 minutes by default) gives how many
//! waiting events can still be listed one by one in time: its *capacity*. While a
//! destination's backlog is within it, every event is listed as usual. Beyond it, the oldest
//! events go out in summaries (`message::render_summary`), up to [`SUMMARY_MOST`] each, until
//! what is left is half the capacity: those, the newest, are listed. Every event is still
//! carried by exactly one message, in arrival order, and marked delivered once.

use std::time::Duration;

use super::destination::Destination;
use super::spool::{Spool, SpoolError};

/// Events a digest lists (a header block plus one section each, within Slack's 50 blocks).
pub const LISTED_PER_MESSAGE: usize = super::message::MAX_BLOCKS - 1;
/// Most events one summary stands for (what the forwarder reads at once while summarising).
pub const SUMMARY_MOST: usize = 10_000;
/// What the forwarder reads at once otherwise (more than a digest can carry).
pub const LIST_READ: usize = 500;

/// How many waiting events a destination can list one by one within `within` at `pace`.
pub fn capacity(within: Duration, pace: Duration) -> usize {
    let messages = within.as_millis() / pace.as_millis().max(1);
    (messages as usize)
        .max(1)
        .saturating_mul(LISTED_PER_MESSAGE)
}

/// What this round of the forwarder reads, and each destination's backlog when some may be
/// summarised.
pub struct Plan {
    pub read: usize,
    /// Per destination (index as in `dests`); `None` while nothing is summarised.
    pub backlog: Option<Vec<usize>>,
}

/// Plan a round from the pending count (cached by the writer, so this costs nothing while
/// the queue is short). Only past the capacity does it count per destination.
pub async fn plan(
    spool: &Spool,
    dests: &[Destination],
    pending: i64,
    capacity: usize,
    targets: impl Fn(&str) -> Vec<usize>,
) -> Result<Plan, SpoolError> {
    let pending = pending.max(0) as usize;
    if pending <= capacity {
        return Ok(Plan {
            read: LIST_READ,
            backlog: None,
        });
    }
    let backlog = if dests.len() == 1 {
        vec![pending]
    } else {
        let mut per = vec![0; dests.len()];
        for (notif_type, n) in spool.pending_by_type().await? {
            for i in targets(&notif_type) {
                per[i] += n;
            }
        }
        per
    };
    Ok(Plan {
        read: SUMMARY_MOST,
        backlog: Some(backlog),
    })
}

/// How many of the `due` oldest events of a destination with `backlog` waiting to summarise
/// in one message, if any.
pub fn summary_size(backlog: usize, capacity: usize, due: usize) -> Option<usize> {
    (backlog > capacity)
        .then(|| (backlog - capacity / 2).min(SUMMARY_MOST).min(due))
        .filter(|&n| n > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lists_five_minutes_of_digests_and_summarises_beyond() {
        let cap = capacity(Duration::from_secs(300), Duration::from_secs(1));
        assert_eq!(cap, 300 * 49);
        assert_eq!(summary_size(cap, cap, 500), None, "within capacity: listed");
        // 100,000 waiting: summaries of 10,000 until half the capacity is left.
        let (mut left, mut messages) = (100_000usize, 0);
        while let Some(n) = summary_size(left, cap, left) {
            left -= n;
            messages += 1;
        }
        assert_eq!((messages, left), (9, 10_000));
        // The rest is listed: 205 digests; 214 messages in all, under 4 minutes at 1/s.
        assert_eq!(left.div_ceil(LISTED_PER_MESSAGE), 205);
        // Just past the capacity, half of it is left to list.
        assert_eq!(
            summary_size(cap + 1000, cap, cap + 1000),
            Some(cap + 1000 - cap / 2)
        );
    }
}
