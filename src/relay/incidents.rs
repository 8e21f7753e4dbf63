//! Incidents: what the relay found wrong with its own pipeline (a heartbeat that did not come
//! back, refused deliveries, a failing destination, an old backlog). Each one alerts once when
//! it opens and once when it clears, however long it lasts and however often the relay restarts
//! meanwhile:
//! - the open incidents are kept in `incidents.json` next to the store (0600), written before
//!   the alert is queued;
//! - an alert is an event in the store like any other (paced, retried, dead-lettered, listed by
//!   `vslack queue`), whose id is made from the incident and when it started, so queueing it
//!   again after a restart is a duplicate and posts nothing;
//! - the recovery message is queued before the incident leaves the file, under an id of its
//!   own made the same way.
//!
//! The forwarder sends alerts ahead of the backlog, and never to a destination they avoid (see
//! `destination::carrier`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::clock::Clock;
use super::event::{AlertRoute, Event};
use super::spool::Spool;

/// The event types of the relay's own messages.
pub const ALERT: &str = "vslack_alert";
pub const RECOVERED: &str = "vslack_recovered";

/// One open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `heartbeat`, `bad_signature`, `stale_timestamp`, `backlog`, `destination:<digest>`.
    pub key: String,
    /// One line: what is wrong.
    pub title: String,
    /// The diagnosis and what to do.
    pub detail: String,
    /// When it opened (Unix seconds, wall clock).
    pub since: i64,
    /// Destinations the alert must not go to (failing ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

/// What `incidents.json` holds (also read by `status` and `doctor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub open: Vec<Incident>,
    /// When a heartbeat's test event last arrived (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_last_success: Option<i64>,
    /// When the last heartbeat was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_last_attempt: Option<i64>,
    /// The heartbeat interval of the relay that wrote this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_every_secs: Option<u64>,
}

impl Record {
    /// The file's contents; nothing when it is missing, and a warning when it is unreadable.
    pub fn load(path: &Path) -> Record {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the incident record; starting with none open");
                Record::default()
            }),
            Err(_) => Record::default(),
        }
    }
}

/// Where the incident record of the store at `spool_path` lives.
pub fn record_path(spool_path: &Path) -> PathBuf {
    spool_path.with_file_name("incidents.json")
}

/// The relay's incidents: opened and resolved by the watchdog and the heartbeat.
pub struct Incidents {
    path: PathBuf,
    record: Mutex<Record>,
    /// Alerts and recoveries not yet stored (the store refused; retried by `flush`), and
    /// whether the record must be written once they are.
    outbox: Mutex<(Vec<Event>, bool)>,
    spool: Spool,
    clock: Arc<Clock>,
}

impl Incidents {
    /// Load the record; the alert of every open incident is queued again (a duplicate unless
    /// the relay stopped before it was stored).
    pub fn new(spool_path: &Path, spool: Spool, clock: Arc<Clock>) -> Arc<Incidents> {
        let path = record_path(spool_path);
        let record = Record::load(&path);
        let alerts = record.open.iter().map(|i| alert_event(i, &clock)).collect();
        Arc::new(Incidents {
            path,
            record: Mutex::new(record),
            outbox: Mutex::new((alerts, false)),
            spool,
            clock,
        })
    }

    pub fn record(&self) -> Record {
        self.record.lock().expect("incident lock").clone()
    }

    pub fn is_open(&self, key: &str) -> bool {
        self.record().open.iter().any(|i| i.key == key)
    }

    /// Open an incident unless one with this key is open; true when it is new.
    pub async fn open(&self, key: &str, title: &str, detail: &str, avoid: Vec<String>) -> bool {
        let incident = Incident {
            key: key.to_owned(),
            title: title.to_owned(),
            detail: detail.to_owned(),
            since: self.clock.wall_secs(),
            avoid,
        };
        {
            let mut r = self.record.lock().expect("incident lock");
            if r.open.iter().any(|i| i.key == key) {
                return false;
            }
            r.open.push(incident.clone());
            self.save(&r);
        }
        tracing::error!(incident = key, detail, "{title}");
        self.outbox
            .lock()
            .expect("outbox lock")
            .0
            .push(alert_event(&incident, &self.clock));
        self.flush().await;
        true
    }

    /// Clear an open incident with a recovery message saying `note`; true when one was open.
    pub async fn resolve(&self, key: &str, note: &str) -> bool {
        let incident = {
            let mut r = self.record.lock().expect("incident lock");
            let Some(at) = r.open.iter().position(|i| i.key == key) else {
                return false;
            };
            r.open.remove(at)
        };
        let lasted = (self.clock.wall_secs() - incident.since).max(0) as u64;
        tracing::info!(
            incident = key,
            lasted_secs = lasted,
            "resolved: {}",
            incident.title
        );
        {
            let mut out = self.outbox.lock().expect("outbox lock");
            out.0
                .push(recovery_event(&incident, note, lasted, &self.clock));
            out.1 = true;
        }
        self.flush().await;
        true
    }

    /// Store what is waiting in the outbox; then write the record if a recovery asked for it
    /// (so a crash before the recovery is stored leaves the incident open, to clear again).
    pub async fn flush(&self) {
        let (events, save) = {
            let mut out = self.outbox.lock().expect("outbox lock");
            (std::mem::take(&mut out.0), std::mem::take(&mut out.1))
        };
        let mut left = Vec::new();
        for e in events {
            if !left.is_empty() {
                left.push(e);
                continue;
            }
            let body = serde_json::to_vec(&e).unwrap_or_default();
            if let Err(err) = self.spool.insert(e.clone(), body).await {
                tracing::warn!(error = %err, "cannot queue an alert yet; retrying");
                left.push(e);
            }
        }
        if left.is_empty() {
            if save {
                self.save(&self.record.lock().expect("incident lock"));
            }
        } else {
            let mut out = self.outbox.lock().expect("outbox lock");
            left.append(&mut out.0);
            out.0 = left;
            out.1 |= save;
        }
    }

    /// Note a heartbeat sent (`ok` false) or one whose test event arrived (`ok` true).
    pub fn heartbeat(&self, ok: bool, every: std::time::Duration) {
        let now = self.clock.wall_secs();
        let mut r = self.record.lock().expect("incident lock");
        match ok {
            true => r.heartbeat_last_success = Some(now),
            false => r.heartbeat_last_attempt = Some(now),
        }
        r.heartbeat_every_secs = Some(every.as_secs());
        self.save(&r);
    }

    fn save(&self, r: &Record) {
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        if let Err(e) = crate::secret::write_private(&self.path, &bytes) {
            tracing::warn!(error = %format!("{e:#}"), "cannot write the incident record");
        }
    }

    /// `/metrics` lines: the open incidents and the last heartbeat.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let r = self.record();
        let mut out = format!(
            "# HELP vslack_incidents Open incidents (the relay's own alerts).\n# TYPE vslack_incidents gauge\nvslack_incidents {}\n",
            r.open.len()
        );
        for i in &r.open {
            let kind = i.key.split(':').next().unwrap_or_default();
            let _ = writeln!(
                out,
                "vslack_incident_open_since_seconds{{incident=\"{kind}\"}} {}",
                i.since
            );
        }
        let _ = writeln!(
            out,
            "# HELP vslack_heartbeat_last_success_timestamp_seconds When a heartbeat's test event last arrived (0: never).\n# TYPE vslack_heartbeat_last_success_timestamp_seconds gauge\nvslack_heartbeat_last_success_timestamp_seconds {}",
            r.heartbeat_last_success.unwrap_or(0)
        );
        out
    }
}

fn alert_event(i: &Incident, clock: &Clock) -> Event {
    Event {
        event_id: format!("vslack-alert:{}:{}", i.key, i.since),
        notif_type: ALERT.into(),
        subject: Some(format!("vslack: {}", i.title)),
        message: Some(i.detail.clone()),
        user_id: None,
        timestamp: Some(i.since as f64),
        received_at: clock.steady_secs(),
        context: None,
        alert: Some(AlertRoute {
            avoid: i.avoid.clone(),
        }),
        heartbeat: false,
    }
}

fn recovery_event(i: &Incident, note: &str, lasted: u64, clock: &Clock) -> Event {
    let lasted = humantime::format_duration(std::time::Duration::from_secs(lasted));
    Event {
        event_id: format!("vslack-resolved:{}:{}", i.key, i.since),
        notif_type: RECOVERED.into(),
        subject: Some(format!("vslack: resolved: {}", i.title)),
        message: Some(format!(
            "{note}. The incident began {} and lasted {lasted}.",
            crate::output::unix_time(i.since)
        )),
        user_id: None,
        timestamp: Some(clock.wall_secs() as f64),
        received_at: clock.steady_secs(),
        context: None,
        alert: Some(AlertRoute {
            avoid: i.avoid.clone(),
        }),
        heartbeat: false,
    }
}
