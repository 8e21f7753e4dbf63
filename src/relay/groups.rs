//! One forwarder round's events, sorted: per destination what to send, which destinations
//! carry an alert this round (sent alone, ahead of their backlog), the heartbeat's test events
//! (recorded, never posted). An alert no destination may carry now (each it may go to is
//! failing) stays queued until one can.

use std::collections::HashSet;

use super::destination::{route_event, Destination};
use super::spool::Queued;

pub struct Groups {
    /// By destination index.
    pub groups: Vec<Vec<Queued>>,
    /// The destination's group is alerts only.
    pub urgent: Vec<bool>,
    pub heartbeats: Vec<i64>,
    /// Alerts held back: no destination may carry them yet.
    pub held: usize,
}

impl Groups {
    /// `due` in arrival order; `alerts` are the due alerts (also possibly in `due`). `healthy`
    /// tells (by digest) a destination that delivered since its trouble.
    pub fn of(
        dests: &[Destination],
        due: Vec<Queued>,
        alerts: Vec<Queued>,
        healthy: impl Fn(&str) -> bool,
    ) -> Groups {
        let mut g = Groups {
            groups: vec![Vec::new(); dests.len()],
            urgent: vec![false; dests.len()],
            heartbeats: Vec::new(),
            held: 0,
        };
        // An alert goes where it may; when nowhere, it waits for an avoided destination to
        // deliver again (then it goes there, late but not lost).
        let route = |q: &Queued| {
            route_event(dests, &q.event).or_else(|| {
                let mut e = q.event.clone();
                e.alert.as_mut()?.avoid.retain(|d| !healthy(d));
                route_event(dests, &e)
            })
        };
        let alert_seqs: HashSet<i64> = alerts.iter().map(|q| q.seq).collect();
        for q in alerts {
            match route(&q) {
                Some(i) => {
                    g.urgent[i] = true;
                    g.groups[i].push(q);
                }
                None => g.held += 1,
            }
        }
        for q in due {
            if alert_seqs.contains(&q.seq) {
                continue;
            }
            if q.event.heartbeat {
                g.heartbeats.push(q.seq);
                continue;
            }
            match route(&q) {
                Some(i) if !g.urgent[i] => g.groups[i].push(q),
                _ => {}
            }
        }
        g
    }
}
