//! One forwarder round's events, sorted: per destination what to send (an event going to
//! several destinations is in each group that has not had it yet), which destinations carry
//! an alert this round (sent alone, ahead of their backlog), the heartbeat's test events
//! (recorded, never posted). An alert goes to a destination that works when there is one.

use std::collections::HashSet;

use std::collections::HashMap;

use super::destination::{route_event, targets, Destination};
use super::event::Event;
use super::spool::Queued;
use super::watchdog::DestHealth;

pub struct Groups {
    /// By destination index.
    pub groups: Vec<Vec<Queued>>,
    /// The destination's group is alerts only.
    pub urgent: Vec<bool>,
    pub heartbeats: Vec<i64>,
    /// Of those, how many another relay sharing the store received (not flagged at arrival).
    pub heartbeats_elsewhere: usize,
    /// Events going to several destinations: queue number, event, every destination's digest.
    pub several: Vec<(i64, Event, Vec<String>)>,
    /// Events every destination of which is done with (one was removed by a reload).
    pub finished: Vec<Queued>,
}

impl Groups {
    /// `due` in arrival order; `alerts` are the due alerts (also possibly in `due`); `health`
    /// is how each destination (by digest) is doing; `expecting`: the heartbeat's window is
    /// open here, so a `webhook_test` another relay stored is the heartbeat's too.
    pub fn of(
        dests: &[Destination],
        due: Vec<Queued>,
        alerts: Vec<Queued>,
        health: &HashMap<String, DestHealth>,
        expecting: bool,
    ) -> Groups {
        let mut g = Groups {
            groups: vec![Vec::new(); dests.len()],
            urgent: vec![false; dests.len()],
            heartbeats: Vec::new(),
            heartbeats_elsewhere: 0,
            several: Vec::new(),
            finished: Vec::new(),
        };
        let digests: Vec<String> = dests.iter().map(Destination::digest).collect();
        let failing: Vec<String> = health
            .iter()
            .filter(|(_, h)| h.failing_since.is_some() || h.dead > 0)
            .map(|(k, _)| k.clone())
            .collect();
        let healthy = |d: &String| {
            health
                .get(d)
                .is_some_and(|h| h.delivered && h.dead == 0 && h.failing_since.is_none())
        };
        // An alert avoids what it names and whatever fails now; when that leaves nowhere, it
        // goes to a destination it avoids that has delivered since, else to the default
        // anyway, where it is retried like any event until it gets through (late, not lost).
        let route = |q: &Queued| {
            let Some(a) = &q.event.alert else {
                return route_event(dests, &q.event);
            };
            let mut e = q.event.clone();
            let mut avoid: Vec<String> = a.avoid.iter().chain(&failing).cloned().collect();
            if let Some(i) = route_event(dests, &{
                e.alert.as_mut().expect("an alert").avoid = avoid.clone();
                e.clone()
            }) {
                return Some(i);
            }
            avoid.retain(|d| !healthy(d));
            e.alert.as_mut().expect("an alert").avoid = avoid;
            route_event(dests, &e).or(Some(dests.len() - 1))
        };
        let alert_seqs: HashSet<i64> = alerts.iter().map(|q| q.seq).collect();
        for q in alerts {
            match route(&q) {
                // One alert per message: never a digest.
                Some(i) if g.groups[i].is_empty() => {
                    g.urgent[i] = true;
                    g.groups[i].push(q);
                }
                _ => {}
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
            if expecting && q.event.notif_type == "webhook_test" {
                g.heartbeats.push(q.seq);
                g.heartbeats_elsewhere += 1;
                continue;
            }
            if q.event.alert.is_some() {
                match route(&q) {
                    Some(i) if !g.urgent[i] => g.groups[i].push(q),
                    _ => {}
                }
                continue;
            }
            let to = targets(dests, &digests, &q.event.notif_type);
            let todo: Vec<usize> = to
                .iter()
                .copied()
                .filter(|&i| !q.event.legs.done(&digests[i]))
                .collect();
            if to.len() > 1 || !q.event.legs.is_empty() {
                let all = to.iter().map(|&i| digests[i].clone()).collect();
                g.several.push((q.seq, q.event.clone(), all));
            }
            if todo.is_empty() {
                g.finished.push(q);
                continue;
            }
            for i in todo {
                if !g.urgent[i] {
                    g.groups[i].push(q.clone());
                }
            }
        }
        g
    }
}
