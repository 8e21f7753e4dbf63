//! Incidents: what the relay found wrong with its own pipeline (a heartbeat that did not come
//! back, refused deliveries, a failing destination, an old backlog). Each one alerts once when
//! it opens and once when it clears, however long it lasts and however often the relay restarts
//! meanwhile:
//! - the open incidents are kept in `incidents.json` next to the store (0600), written before
//!   the alert is queued;
//! - an alert is an event in the store like any other (paced, retried, dead-lettered, listed by
//!   `vslack queue`), whose id is made from the incident and when it started, so queueing it
//!   again after a restart is a duplicate and posts nothing;
//! - the incident is marked `alerted` once its alert is stored, so it is never queued again
//!   (even after the retention window forgot the alert's id);
//! - a resolved incident stays in the file, marked `resolved`, until its recovery message is
//!   stored under an id of its own made the same way; one resolved before its alert was
//!   stored needs neither.
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

/// One incident: open, or resolved with its recovery message not yet queued.
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
    /// Its alert is in the store (so a restart, even after the retention window forgot the
    /// alert's id, does not queue it again).
    #[serde(default)]
    pub alerted: bool,
    /// Resolved (the note, and when): kept until the recovery message is in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<(String, i64)>,
}

/// What `incidents.json` holds (also read by `status` and `doctor`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Incidents open, or resolved with their recovery not yet queued.
    #[serde(default)]
    pub open: Vec<Incident>,
    /// When a heartbeat's test event last arrived (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_last_success: Option<i64>,
    /// When the last heartbeat was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_last_attempt: Option<i64>,
    /// The heartbeat interval of the relay that wrote this (`None`: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_every_secs: Option<u64>,
    /// Why the heartbeat sends nothing (no webhook stored), when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_idle: Option<String>,
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

    /// The incidents still open (not resolved).
    pub fn current(&self) -> impl Iterator<Item = &Incident> {
        self.open.iter().filter(|i| i.resolved.is_none())
    }
}

/// Where the incident record of the store at `spool_path` lives.
pub fn record_path(spool_path: &Path) -> PathBuf {
    spool_path.with_file_name("incidents.json")
}

/// The relay's incidents: opened and resolved by the watchdog and the heartbeat.
pub struct Incidents {
    path: PathBuf,
    record: Arc<Mutex<Record>>,
    /// One flush at a time, so an alert is always stored before its recovery.
    flushing: tokio::sync::Mutex<()>,
    /// One file write at a time, each of the newest record.
    writing: Arc<Mutex<()>>,
    spool: Spool,
    clock: Arc<Clock>,
}

impl Incidents {
    /// Load the record (what is not yet stored is queued at the first `flush`).
    pub fn new(spool_path: &Path, spool: Spool, clock: Arc<Clock>) -> Arc<Incidents> {
        let path = record_path(spool_path);
        let record = Record::load(&path);
        Arc::new(Incidents {
            path,
            record: Arc::new(Mutex::new(record)),
            flushing: Default::default(),
            writing: Default::default(),
            spool,
            clock,
        })
    }

    pub fn record(&self) -> Record {
        self.record.lock().expect("incident lock").clone()
    }

    /// The open incidents (what `/health` and `/metrics` show).
    pub fn current(&self) -> Vec<Incident> {
        self.record().current().cloned().collect()
    }

    pub fn is_open(&self, key: &str) -> bool {
        self.record().current().any(|i| i.key == key)
    }

    /// Open an incident unless one with this key is open; true when it is new. The record is
    /// written before the alert is queued. An open one takes the new diagnosis (for `status`,
    /// `doctor` and the log) without alerting again.
    pub async fn open(&self, key: &str, title: &str, detail: &str, avoid: Vec<String>) -> bool {
        let changed = {
            let mut r = self.record.lock().expect("incident lock");
            match r
                .open
                .iter_mut()
                .find(|i| i.key == key && i.resolved.is_none())
            {
                Some(i) if i.detail == detail && i.title == title => return false,
                Some(i) => {
                    (i.title, i.detail) = (title.to_owned(), detail.to_owned());
                    true
                }
                None => false,
            }
        };
        if changed {
            tracing::warn!(incident = key, detail, "still open, now: {title}");
            self.save().await;
            return false;
        }
        {
            let mut r = self.record.lock().expect("incident lock");
            r.open.push(Incident {
                key: key.to_owned(),
                title: title.to_owned(),
                detail: detail.to_owned(),
                since: self.clock.wall_secs(),
                avoid,
                alerted: false,
                resolved: None,
            });
        }
        tracing::error!(incident = key, detail, "{title}");
        self.save().await;
        self.flush().await;
        true
    }

    /// Clear an open incident with a recovery message saying `note`; true when one was open.
    pub async fn resolve(&self, key: &str, note: &str) -> bool {
        let now = self.clock.wall_secs();
        let title = {
            let mut r = self.record.lock().expect("incident lock");
            let Some(i) = r
                .open
                .iter_mut()
                .find(|i| i.key == key && i.resolved.is_none())
            else {
                return false;
            };
            i.resolved = Some((note.to_owned(), now));
            i.title.clone()
        };
        tracing::info!(incident = key, "resolved: {title}");
        self.save().await;
        self.flush().await;
        true
    }

    /// Queue what the record says is not yet stored: alerts, then recoveries (an incident
    /// resolved before its alert was stored needs neither). Retried by the watchdog.
    pub async fn flush(&self) {
        let _one = self.flushing.lock().await;
        let todo = self.record();
        let mut changed = false;
        for i in &todo.open {
            let (id, since) = (i.key.clone(), i.since);
            let same = |x: &Incident| x.key == id && x.since == since;
            if i.resolved.is_some() && !i.alerted {
                self.record
                    .lock()
                    .expect("incident lock")
                    .open
                    .retain(|x| !same(x));
                changed = true;
                continue;
            }
            if !i.alerted {
                if !self.store(alert_event(i, &self.clock)).await {
                    break;
                }
                if let Some(x) = self
                    .record
                    .lock()
                    .expect("incident lock")
                    .open
                    .iter_mut()
                    .find(|x| same(x))
                {
                    x.alerted = true;
                }
                changed = true;
            }
            if let Some((note, at)) = &i.resolved {
                if !self.store(recovery_event(i, note, *at, &self.clock)).await {
                    break;
                }
                self.record
                    .lock()
                    .expect("incident lock")
                    .open
                    .retain(|x| !same(x));
                changed = true;
            }
        }
        if changed {
            self.save().await;
        }
    }

    async fn store(&self, e: Event) -> bool {
        let body = serde_json::to_vec(&e).unwrap_or_default();
        match self.spool.insert(e, body).await {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "cannot queue an alert yet; retrying");
                false
            }
        }
    }

    /// Note a heartbeat sent (`ok` false) or one whose test event arrived (`ok` true); with
    /// `every` `None`, that the heartbeat is off.
    pub async fn heartbeat(&self, ok: bool, every: Option<std::time::Duration>) {
        let now = self.clock.wall_secs();
        {
            let mut r = self.record.lock().expect("incident lock");
            r.heartbeat_idle = None;
            match (ok, every) {
                (_, None) => {}
                (true, _) => r.heartbeat_last_success = Some(now),
                (false, _) => r.heartbeat_last_attempt = Some(now),
            }
            r.heartbeat_every_secs = every.map(|e| e.as_secs());
        }
        self.save().await;
    }

    /// Note that the heartbeat has nothing to test, and why.
    pub async fn heartbeat_idle(&self, why: &str, every: std::time::Duration) {
        {
            let mut r = self.record.lock().expect("incident lock");
            if r.heartbeat_idle.as_deref() == Some(why) {
                return;
            }
            r.heartbeat_idle = Some(why.to_owned());
            r.heartbeat_every_secs = Some(every.as_secs());
        }
        self.save().await;
    }

    /// Write the newest record (off the runtime's threads; one write at a time).
    async fn save(&self) {
        let (path, writing, record) =
            (self.path.clone(), self.writing.clone(), self.record.clone());
        let wrote = tokio::task::spawn_blocking(move || {
            let _one = writing.lock().expect("write lock");
            // Taken inside the write lock, so the last write is of the newest record.
            let snapshot = record.lock().expect("incident lock").clone();
            let bytes = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            crate::secret::write_private(&path, &bytes)
        })
        .await;
        if let Ok(Err(e)) = wrote {
            tracing::warn!(error = %format!("{e:#}"), "cannot write the incident record");
        }
    }

    /// `/metrics` lines: the open incidents and the last heartbeat.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let r = self.record();
        let open: Vec<&Incident> = r.current().collect();
        let mut out = format!(
            "# HELP vslack_incidents Open incidents (the relay's own alerts).\n# TYPE vslack_incidents gauge\nvslack_incidents {}\n# HELP vslack_incident_open_since_seconds When each open incident began.\n# TYPE vslack_incident_open_since_seconds gauge\n",
            open.len()
        );
        for i in open {
            let _ = writeln!(
                out,
                "vslack_incident_open_since_seconds{{incident=\"{}\"}} {}",
                i.key, i.since
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
        legs: Default::default(),
    }
}

fn recovery_event(i: &Incident, note: &str, at: i64, clock: &Clock) -> Event {
    let lasted = (at - i.since).max(0) as u64;
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
        timestamp: Some(at as f64),
        received_at: clock.steady_secs(),
        context: None,
        alert: Some(AlertRoute {
            avoid: i.avoid.clone(),
        }),
        heartbeat: false,
        legs: Default::default(),
    }
}
