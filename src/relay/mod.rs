//! The relay: listener ([`server`]), signature check ([`verify`]), durable queue ([`spool`]),
//! delivery ([`forward`], [`deliver`]), message shapes per destination kind ([`message`]) and counters
//! ([`metrics`]). [`Relay::start`] wires them together; `serve`, `up` and `demo` all use it.

mod accept;
pub mod acme;
mod acme_http;
pub mod backlog;
pub mod clock;
mod conns;
pub mod deliver;
mod destination;
pub mod event;
mod fanout;
pub mod forward;
mod gate;
mod groups;
mod guard;
pub mod incidents;
mod ledger;
pub mod message;
pub mod metrics;
mod outcome;
mod parked;
pub mod server;
pub mod spool;
pub mod tls;
pub mod verify;
pub mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use forward::{Destination, ForwardOptions, Forwarder};
use metrics::{Metrics, Received};
use server::{App, Limits};
use spool::{Spool, SpoolOptions};
use verify::Verifier;

/// Unix time now, in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Lock the database file itself exclusively (flock, which SQLite's own fcntl locks do not
/// touch), or explain who holds it. A helper lock file could be deleted under a running relay
/// and let a second one in; the database cannot be, without the relay noticing.
pub(crate) fn lock_store(spool_path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    if let Some(dir) = spool_path.parent() {
        crate::secret::ensure_private_dir(dir)?;
    }
    let path = spool_path;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .mode(0o600)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| {
            RelayStartError(format!(
                "cannot open the event store {}: {e}",
                path.display()
            ))
        })?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(RelayStartError(format!(
            "another vslack relay is already using the event store {} (stop it first, or give this one its own --data-dir)",
            spool_path.display()
        ))
        .into());
    }
    Ok(file)
}

/// This process's name among relays sharing a store: host, process id and a random part.
fn relay_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

/// The relay cannot start: something it needs is missing or unsafe. The message says how to
/// provide it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayStartError(pub String);

/// What happened, as it happens (for `up` and tests). `Received` comes from the request
/// handler and the outcomes from the forwarder, both woken by the same commit: an event's
/// `Delivered` may be seen before its `Received`.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    Received {
        event_id: Option<String>,
        notif_type: Option<String>,
        outcome: Received,
    },
    Delivered {
        event_ids: Vec<String>,
    },
    Retrying {
        event_ids: Vec<String>,
        error: String,
        wait: Duration,
    },
    DeadLettered {
        event_ids: Vec<String>,
        error: String,
    },
}

pub struct RelayOptions {
    /// The webhook path (`/` by default).
    pub path: String,
    pub limits: Limits,
    pub verifier: Verifier,
    /// Routes first, the default destination last (at least one).
    pub destinations: Vec<Destination>,
    pub forward: ForwardOptions,
    pub spool_path: PathBuf,
    /// A shared PostgreSQL store (`--store`); `None`: the SQLite file at `spool_path`.
    pub store_url: Option<crate::secret::Secret>,
    pub spool: SpoolOptions,
    pub log_payloads: bool,
    /// When the relay alerts about its own pipeline (see `watchdog`).
    pub alerts: watchdog::AlertOptions,
    /// HTTPS: where the certificate comes from (`None`: plain HTTP).
    pub tls: Option<tls::TlsSource>,
}

/// Changes what a running relay uses, from anywhere (the reload loop, the request handler):
/// cheap to clone.
#[derive(Clone)]
pub struct Control {
    app: Arc<App>,
    dests: Arc<watch::Sender<Arc<Vec<Destination>>>>,
}

impl Control {
    /// Replace the accepted signing secrets for the next deliveries.
    pub fn set_verifier(&self, verifier: Verifier) {
        *self.app.verifier.write().expect("verifier lock") = Arc::new(verifier);
    }

    /// Replace the destinations (routes first, the default last; at least one). Queued events
    /// go where the new ones say, from the forwarder's next round.
    pub fn set_destinations(&self, dests: Vec<Destination>) {
        if !dests.is_empty() {
            self.dests.send_replace(Arc::new(dests));
        }
    }

    /// What the config file was when last read, and where the Slack URL comes from
    /// (`config`, `SLACK_WEBHOOK_URL` or `--slack-url-file`): `/health` says both, so a command
    /// that changed the file can tell whether the relay has read it and uses it.
    pub fn set_config_version(&self, version: Option<String>, slack_url_from: &str) {
        *self
            .app
            .config_version
            .write()
            .expect("config version lock") =
            serde_json::json!({"version": version, "slack_url_from": slack_url_from});
    }

    /// The relay's incidents (the heartbeat opens and clears its own).
    pub fn incidents(&self) -> Arc<incidents::Incidents> {
        self.app.incidents.clone()
    }

    /// Open the heartbeat's window until `until_ms` (wall clock): a verified `webhook_test`
    /// arriving before then is recorded, not posted, and counted on the returned receiver.
    pub fn expect_heartbeat(&self, until_ms: i64, key: &str) -> watch::Receiver<u64> {
        self.app.gate.open(until_ms, key)
    }

    pub fn close_heartbeat(&self) {
        self.app.gate.close();
    }

    /// Whether this relay forwards now (on a shared store, one relay does; it runs the
    /// heartbeat, whose test event may reach any relay).
    pub fn forwarding(&self) -> bool {
        *self.app.forwarding.borrow()
    }

    /// The key (`webhook 42`) that verified the last heartbeat event.
    pub fn heartbeat_key(&self) -> String {
        self.app.gate.last_key()
    }

    /// Verified deliveries so far, and refusals for a bad signature and for a clock apart
    /// (with the last skew seen, in seconds): what the heartbeat diagnoses a failure from.
    pub fn counts(&self) -> (u64, u64, u64, i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.app.metrics;
        (
            m.received_count(Received::Stored) + m.received_count(Received::Duplicate),
            m.received_count(Received::BadSignature),
            m.stale_signed.load(Relaxed),
            m.skew_secs.load(Relaxed),
        )
    }

    /// Digests of the destinations that are failing now (an alert avoids them).
    pub fn failing_destinations(&self) -> Vec<String> {
        self.app
            .incidents
            .current()
            .iter()
            .filter_map(|i| i.key.strip_prefix("destination:").map(str::to_owned))
            .collect()
    }

    /// Called before a delivery whose signature matches no held secret is refused: re-read
    /// the secrets (true when they changed, and the delivery is checked again).
    pub fn on_unknown_signature(&self, reread: impl Fn() -> bool + Send + Sync + 'static) {
        *self.app.reread_secrets.write().expect("hook lock") = Some(Arc::new(reread));
    }
}

/// A running relay.
pub struct Relay {
    /// Held while running: two relays forwarding from one store would post events twice.
    /// (Replaced by the guard when it restores a deleted store.)
    _lock: Arc<std::sync::Mutex<std::fs::File>>,
    app: Arc<App>,
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub spool: Spool,
    activity: broadcast::Sender<Activity>,
    dests: Arc<watch::Sender<Arc<Vec<Destination>>>>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Open the store and start serving on `listener` and forwarding.
    pub async fn start(listener: TcpListener, opts: RelayOptions) -> Result<Relay> {
        if opts.destinations.is_empty() {
            return Err(RelayStartError("no Slack destination configured".into()).into());
        }
        let location = spool::Location::pick(opts.store_url.clone(), &opts.spool_path);
        // One relay per data directory (its incidents record, its SQLite file). With a shared
        // store the database is not a file to lock: a lock file stands in.
        let lock_path = match &location {
            spool::Location::Sqlite(p) => p.clone(),
            spool::Location::Postgres(_) => opts.spool_path.with_file_name("relay.lock"),
        };
        let lock = Arc::new(std::sync::Mutex::new(lock_store(&lock_path)?));
        // The relay owns the store: it keeps the disk reserve that records what it posted.
        let spool = Spool::open_at(
            &location,
            &opts.spool_path,
            &SpoolOptions {
                owner: true,
                ..opts.spool.clone()
            },
        )
        .await?;
        // Events waiting for a retry go out now: a restart usually follows a fix.
        let rescheduled = spool.retry_now().await?;
        if rescheduled > 0 {
            tracing::info!(events = rescheduled, "retrying queued events now");
        }
        let addr = listener.local_addr()?;
        let tls = match &opts.tls {
            Some(source) => Some(Arc::new(tls::Tls::start(source).await?)),
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        let clock = opts.forward.clock.clone();
        let incidents = incidents::Incidents::new(&opts.spool_path, spool.clone(), clock.clone());
        let health = watchdog::Health::default();
        let (activity, _) = broadcast::channel(1024);
        let forwarding = spool.forwarding(&relay_id());
        let gate = Arc::new(gate::Gate::default());
        let (stop, stop_rx) = watch::channel(false);
        let app = Arc::new(App {
            path: opts.path,
            limits: opts.limits,
            verifier: std::sync::RwLock::new(Arc::new(opts.verifier)),
            spool: spool.clone(),
            metrics: metrics.clone(),
            activity: activity.clone(),
            log_payloads: opts.log_payloads,
            clock: opts.forward.clock.clone(),
            config_version: Default::default(),
            reread_secrets: Default::default(),
            incidents: incidents.clone(),
            gate: gate.clone(),
            tls,
            forwarding: forwarding.clone(),
        });
        tokio::spawn(
            watchdog::Watchdog {
                opts: opts.alerts,
                metrics: metrics.clone(),
                spool: spool.clone(),
                incidents,
                health: health.clone(),
                clock,
                forwarding: forwarding.clone(),
            }
            .run(stop_rx.clone()),
        );
        if !location.is_shared() {
            tokio::spawn(guard::watch(spool.clone(), lock.clone(), stop_rx.clone()));
        }

        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(server::serve(listener, app.clone(), async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        let (dests, dests_rx) = watch::channel(Arc::new(opts.destinations));
        let forwarder = tokio::spawn(
            Forwarder {
                spool: spool.clone(),
                dests: dests_rx,
                opts: opts.forward,
                metrics: metrics.clone(),
                activity: activity.clone(),
                health,
                forwarding,
                gate,
            }
            .run(stop_rx),
        );
        Ok(Relay {
            _lock: lock,
            app,
            addr,
            metrics,
            spool,
            activity,
            dests: Arc::new(dests),
            stop,
            server,
            forwarder,
        })
    }

    /// Replace the accepted signing secrets (after a rotation) for the next deliveries.
    pub fn set_verifier(&self, verifier: Verifier) {
        self.control().set_verifier(verifier);
    }

    /// A handle that changes what the running relay uses (see [`Control`]).
    pub fn control(&self) -> Control {
        Control {
            app: self.app.clone(),
            dests: self.dests.clone(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Stop accepting, let requests in flight finish, finish the Slack post in progress.
    /// Everything stored stays in the spool for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.forwarder.await;
        if let Err(e) = self.spool.flush().await {
            tracing::warn!(error = %e, "cannot store the last acknowledged events in the table now (they are in the ack log: the next start stores them)");
        }
    }
}
