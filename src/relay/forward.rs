//! The forwarder: takes stored events in arrival order and posts them to their destinations
//! (Slack, Discord, PagerDuty, … : see `message`). Pacing keeps each destination within its
//! service's documented rate; a backlog for one destination is combined into digests. 429
//! waits as the service says; 5xx, timeouts and connection errors back off exponentially with
//! jitter up to a cap, until an event is older than the maximum age; other 4xx are
//! dead-lettered at once. Events are marked only after the service answers, so a crash can
//! repeat a message but never lose one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use super::backlog;
use super::deliver::Client;
use super::ledger::{Ledger, Mark};
use super::message::{render_batch, render_summary};
use super::message::{Outcome, Verdict};
use super::metrics::Metrics;
use super::spool::{Queued, Spool};
use super::Activity;

pub use super::destination::{legs_of, Destination};
use super::destination::{slot_key, targets};
use super::groups::Groups;
use super::outcome::Sent;
use super::watchdog::Health;

#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// Minimum gap between two messages to one destination.
    pub pace: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// An event still undelivered this long after it arrived is dead-lettered.
    pub max_age: Duration,
    /// Delivered events are remembered (for deduplication) this long.
    pub retention: Duration,
    /// A finished event's raw body is kept this long (for inspection), then dropped.
    pub keep_bodies: Duration,
    pub console: String,
    pub slack_timeout: Duration,
    /// A backlog a destination could not list one by one within this time (at `pace`) is
    /// summarised, oldest first (see `backlog`).
    pub list_within: Duration,
    /// Retry times and ages follow its steady clock, never a stepped wall clock.
    pub clock: Arc<super::clock::Clock>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            pace: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            keep_bodies: Duration::from_secs(24 * 3600),
            console: "https://cloud.vast.ai".into(),
            slack_timeout: Duration::from_secs(10),
            list_within: Duration::from_secs(300),
            clock: Arc::default(),
        }
    }
}

pub(super) struct DestState {
    pub(super) next_allowed: Instant,
    pub(super) failures: u32,
}

pub struct Forwarder {
    pub spool: Spool,
    /// Routes first, the default last; replaced whole on a reload (queued events follow).
    pub dests: watch::Receiver<Arc<Vec<Destination>>>,
    pub opts: ForwardOptions,
    pub metrics: Arc<Metrics>,
    pub activity: broadcast::Sender<Activity>,
    /// How each destination is doing, for the watchdog.
    pub health: Health,
    /// Whether this relay may forward now: always with SQLite; with a shared store, while it
    /// holds the store's forwarding lock (one relay at a time, so pacing holds).
    pub forwarding: watch::Receiver<bool>,
    /// The heartbeat's window (see `gate`): with a shared store its test event may have
    /// reached another relay, and is recognised here.
    pub gate: Arc<super::gate::Gate>,
}

/// The next change of `rx`; never, once its sender is gone (the right to forward then stays
/// as it is, and a closed channel must not wake the loop over and over).
async fn changed(rx: &mut watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Forwarder {
    /// Run until `stop` turns true. A post in progress is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let client = match Client::new(self.opts.slack_timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client; nothing will be forwarded");
                return;
            }
        };
        // Pacing and backoff belong to a Slack URL: routes that share one share its state,
        // and it survives a reload that keeps the URL.
        let mut states: HashMap<String, DestState> = HashMap::new();
        let mut last_prune = None::<Instant>;
        let mut ledger = Ledger::default();
        let mut dests_rx = self.dests.clone();
        let mut forwarding = self.forwarding.clone();
        let mut was_forwarding = true;
        let mut resume_at = Instant::now();
        while !*stop.borrow() {
            if !*forwarding.borrow_and_update() {
                was_forwarding = false;
                tokio::select! {
                    _ = changed(&mut forwarding) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if !was_forwarding {
                // Taking over from another relay: what waits for a retry goes now, and the
                // first message waits one pace, as the other relay may just have sent one.
                was_forwarding = true;
                if let Err(e) = self.spool.retry_now().await {
                    tracing::warn!(error = %e, "cannot reschedule queued events after taking over");
                }
                resume_at = Instant::now() + self.opts.pace;
                for s in states.values_mut() {
                    s.next_allowed = resume_at;
                }
            }
            let dests = dests_rx.borrow_and_update().clone();
            let keys: Vec<String> = dests
                .iter()
                .enumerate()
                .map(|(i, d)| slot_key(i, d))
                .collect();
            states.retain(|k, _| keys.contains(k));
            self.track(&dests);
            for k in &keys {
                states.entry(k.clone()).or_insert_with(|| DestState {
                    next_allowed: resume_at,
                    failures: 0,
                });
            }
            let every = self
                .opts
                .keep_bodies
                .clamp(Duration::from_secs(1), Duration::from_secs(3600));
            if last_prune.is_none_or(|t| t.elapsed() > every) {
                last_prune = Some(Instant::now());
                let now = self.opts.clock.steady_secs();
                let before = now - self.opts.retention.as_secs() as i64;
                let bodies_before = now - self.opts.keep_bodies.as_secs() as i64;
                match self.spool.prune(before, bodies_before).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(forgotten = n, "pruned events past the retention window")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot prune the event store"),
                }
            }
            // While every destination is paced there is nothing to send: skip the store.
            let now = Instant::now();
            if let Some(until) = states
                .iter()
                .map(|s| s.1.next_allowed)
                .min()
                .filter(|u| *u > now)
            {
                tokio::select! {
                    _ = tokio::time::sleep(until - now) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let wait = match self
                .step(&client, &dests, &keys, &mut states, &mut ledger)
                .await
            {
                Ok(None) => continue,
                Ok(Some(wait)) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "event store unavailable to the forwarder; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = self.spool.arrived.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
                _ = dests_rx.changed() => {}
                _ = changed(&mut forwarding) => {}
            }
        }
    }

    /// Send at most one message per ready destination. `Ok(None)` when something was sent,
    /// else how long to wait: until the next retry is due or a paced destination with
    /// waiting events may send again (at most a second; new events wake the loop sooner).
    async fn step(
        &self,
        client: &Client,
        dests: &[Destination],
        keys: &[String],
        states: &mut HashMap<String, DestState>,
        ledger: &mut Ledger,
    ) -> Result<Option<Duration>, super::spool::SpoolError> {
        ledger.record(&self.spool, &self.opts.clock).await?;
        let mut wait = Duration::from_secs(1);
        let capacity = backlog::capacity(self.opts.list_within, self.opts.pace);
        let pending = self.spool.stats().await?.pending;
        let digests: Vec<String> = dests.iter().map(Destination::digest).collect();
        let plan = backlog::plan(&self.spool, dests, pending, capacity, |t| {
            targets(dests, &digests, t)
        })
        .await?;
        let now_ms = self.opts.clock.steady_ms();
        let due = self.spool.due(now_ms, plan.read).await?;
        // The relay's own alerts go first, alone, whatever is queued before them.
        let alerts = self.spool.due_alerts(now_ms, 16).await?;
        if due.is_empty() && alerts.is_empty() {
            if let Some(next) = self.spool.next_due().await? {
                wait = wait.min(Duration::from_millis(
                    (next - self.opts.clock.steady_ms()).max(0) as u64,
                ));
            }
            return Ok(Some(wait.max(Duration::from_millis(5))));
        }
        let health = self.health.lock().expect("health lock").clone();
        let expecting = self.gate.expecting(self.opts.clock.wall_ms());
        let Groups {
            groups,
            urgent,
            heartbeats,
            heartbeats_elsewhere,
            several,
            finished,
        } = Groups::of(dests, due, alerts, &health, expecting);
        ledger.round = Default::default();
        for (seq, event, to) in several {
            ledger.round.track(seq, &event, to);
        }
        for q in finished {
            // Every destination it goes to is done with it (another was removed).
            match q.event.legs.dead.values().next() {
                Some(why) => ledger.marks.push(Mark::Dead(vec![q.seq], why.clone())),
                None => ledger.marks.push(Mark::Delivered(vec![q.seq])),
            }
        }
        // Another relay on the shared store received the heartbeat's test event: it arrived.
        for _ in 0..heartbeats_elsewhere {
            self.gate.arrived_elsewhere();
        }
        if !heartbeats.is_empty() {
            // Recorded (their ids remembered, state `dropped`), never posted, and not counted
            // as deliveries.
            let n = heartbeats.len();
            match self.spool.remove(heartbeats).await {
                Ok(_) => tracing::info!(events = n, "heartbeat test event recorded (not posted)"),
                Err(e) => tracing::warn!(error = %e, "cannot record the heartbeat test event yet"),
            }
        }
        ledger.record(&self.spool, &self.opts.clock).await?;
        let mut sent = false;
        for (i, group) in groups.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            if !*self.forwarding.borrow() {
                break;
            }
            let state = states.get_mut(&keys[i]).expect("a state per destination");
            let now = Instant::now();
            if state.next_allowed > now {
                wait = wait.min(state.next_allowed - now);
                continue;
            }
            let summary = plan
                .backlog
                .as_ref()
                .filter(|_| !urgent[i])
                .filter(|_| !ledger.no_summaries && !ledger.solo.contains(&group[0].seq))
                .and_then(|b| backlog::summary_size(b[i], capacity, group.len()));
            self.send(client, &dests[i], group, summary, state, ledger)
                .await;
            ledger.record(&self.spool, &self.opts.clock).await?;
            sent = true;
        }
        Ok((!sent).then(|| wait.max(Duration::from_millis(5))))
    }

    async fn send(
        &self,
        client: &Client,
        dest: &Destination,
        group: Vec<Queued>,
        summary: Option<usize>,
        state: &mut DestState,
        ledger: &mut Ledger,
    ) {
        // An event that broke a digest (Slack said 400) goes alone, to find the culprit.
        let mut group = group;
        if ledger.solo.contains(&group[0].seq) {
            group.truncate(1);
        }
        let summarised = summary.and_then(|k| {
            let batch = &group[..k];
            let events: Vec<_> = batch.iter().map(|q| &q.event).collect();
            let seqs = (batch[0].seq, batch[k - 1].seq);
            render_summary(&events, seqs, dest.format, &self.opts.console).map(|v| (v, batch))
        });
        // A kind that never summarises (a pager) lists instead.
        let summary = summary.filter(|_| summarised.is_some());
        let (payload, batch) = match summarised {
            Some(s) => s,
            None => {
                // One message carries at most MAX_BLOCKS events: copy no more than that.
                let events: Vec<_> = group
                    .iter()
                    .take(super::message::MAX_BLOCKS)
                    .map(|q| q.event.clone())
                    .collect();
                let (v, n) = render_batch(&events, dest.format, &self.opts.console);
                (v, &group[..n.clamp(1, group.len())])
            }
        };
        let n = batch.len();
        let seqs: Vec<i64> = batch.iter().map(|q| q.seq).collect();
        let ids: Vec<String> = batch.iter().map(|q| q.event.event_id.clone()).collect();
        // Event ids come from outside: never raw into a log line. A summary's are too many
        // for one: its queue numbers instead.
        let logged = match summary {
            Some(_) => format!(
                "({} summarised: queue numbers {}-{})",
                n,
                seqs[0],
                seqs[n - 1]
            ),
            None => crate::output::printable(&ids.join(",")).into_owned(),
        };
        let (verdict, latency) = match &dest.url {
            Some(url) => client.post(dest.format, url, &payload).await,
            None => {
                // Printed, not posted (no URL). A closed stdout is not worth a panic (which
                // `println!` would be): the message is then shown nowhere, and logged so.
                use std::io::Write;
                let shown = match &payload.body {
                    super::message::Body::Json(v) => {
                        serde_json::to_string_pretty(v).unwrap_or_default()
                    }
                    super::message::Body::Text(_) => payload.shown(),
                };
                if let Err(e) = writeln!(std::io::stdout().lock(), "{shown}") {
                    tracing::warn!(error = %e, "cannot print the message (stdout is closed)");
                }
                (Verdict::from(Outcome::Delivered), Duration::ZERO)
            }
        };
        if dest.url.is_some() {
            self.metrics.slack_latency(latency);
        }
        let attempt = batch.iter().map(|q| q.attempts).max().unwrap_or(0) + 1;
        let sent = Sent {
            dest,
            batch,
            summary: summary.is_some(),
            seqs,
            ids,
            logged,
            attempt,
            latency,
        };
        self.outcome(sent, verdict.outcome, state, ledger);
        if let Some(hold) = verdict.hold {
            // The service said when it takes the next message.
            state.next_allowed = state.next_allowed.max(Instant::now() + hold);
        }
    }
}
