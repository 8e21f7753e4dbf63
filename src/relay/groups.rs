//! One forwarder round's events, sorted: per destination what to send, which destinations
//! carry an alert this round (sent alone, ahead of their backlog), the heartbeat's test events
//! (recorded, never posted) and alerts no destination may carry.

use std::collections::HashSet;

use super::destination::{route_event, Destination};
use super::spool::Queued;

pub struct Groups {
    /// By destination index.
    pub groups: Vec<Vec<Queued>>,
    /// The destination's group is alerts only.
    pub urgent: Vec<bool>,
    pub heartbeats: Vec<i64>,
    pub nowhere: Vec<i64>,
}

impl Groups {
    /// `due` in arrival order; `alerts` are the due alerts (also possibly in `due`).
    pub fn of(dests: &[Destination], due: Vec<Queued>, alerts: Vec<Queued>) -> Groups {
        let mut g = Groups {
            groups: vec![Vec::new(); dests.len()],
            urgent: vec![false; dests.len()],
            heartbeats: Vec::new(),
            nowhere: Vec::new(),
        };
        let alert_seqs: HashSet<i64> = alerts.iter().map(|q| q.seq).collect();
        for q in alerts {
            match route_event(dests, &q.event) {
                Some(i) => {
                    g.urgent[i] = true;
                    g.groups[i].push(q);
                }
                None => g.nowhere.push(q.seq),
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
            match route_event(dests, &q.event) {
                Some(i) if !g.urgent[i] => g.groups[i].push(q),
                Some(_) => {}
                None => g.nowhere.push(q.seq),
            }
        }
        g
    }
}
