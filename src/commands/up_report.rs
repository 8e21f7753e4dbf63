//! What `up` prints: one line per thing that happened (`HH:MM:SS what  message`, or a JSON
//! object per line with `--json`), and one line per event, however many times it was
//! received or retried.

use crate::relay::metrics::Received;
use crate::relay::Activity;

/// `--json`: each line is a JSON object instead (`time`, `what`, `message`).
pub static JSON_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One line of `up`'s report: `HH:MM:SS what     message`.
pub fn say(line: impl AsRef<str>) {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let line = line.as_ref();
    if JSON_LINES.load(std::sync::atomic::Ordering::Relaxed) {
        let (what, message) = line.split_once(' ').unwrap_or((line, ""));
        println!(
            "{}",
            serde_json::json!({"time": t, "what": what, "message": message.trim_start()})
        );
    } else {
        println!("{} {line}", &t[11..19]);
    }
}

/// One line per event: `delivered`, `duplicate`, `refused` or `GAVE UP`, plus one line when
/// delivery of an event first fails (not one per retry).
#[derive(Default)]
pub struct Lines {
    /// Types of stored events not delivered yet, to name them when they are.
    types: std::collections::HashMap<String, String>,
    /// Events whose failure was already reported.
    retrying: std::collections::HashSet<String>,
}

impl Lines {
    pub fn say(&mut self, a: &Activity) {
        let shown =
            |s: &Option<String>| crate::output::printable(s.as_deref().unwrap_or("?")).into_owned();
        match a {
            Activity::Received {
                event_id,
                notif_type,
                outcome,
            } => match outcome {
                Received::Stored => {
                    if let Some(id) = event_id {
                        self.types.insert(id.clone(), shown(notif_type));
                    }
                }
                Received::Duplicate => say(format!(
                    "duplicate {} {} (already stored; not sent again)",
                    shown(notif_type),
                    shown(event_id)
                )),
                other => say(format!("refused   {}", other.label())),
            },
            Activity::Delivered { event_ids } => {
                for id in event_ids {
                    self.retrying.remove(id);
                    let t = self.types.remove(id).unwrap_or_else(|| "?".into());
                    say(format!("delivered {t} {}", crate::output::printable(id)));
                }
            }
            Activity::Retrying {
                event_ids,
                error,
                wait,
            } => {
                let new: Vec<&str> = event_ids
                    .iter()
                    .filter(|id| self.retrying.insert((*id).clone()))
                    .map(String::as_str)
                    .collect();
                if !new.is_empty() {
                    say(format!(
                        "failing   {} ({error}); retrying in {}s, then with backoff",
                        new.join(", "),
                        wait.as_secs()
                    ));
                }
            }
            Activity::DeadLettered { event_ids, error } => {
                for id in event_ids {
                    self.retrying.remove(id);
                    let t = self.types.remove(id).unwrap_or_else(|| "?".into());
                    say(format!(
                        "dead      {t} {} GAVE UP ({error}): see `vslack queue`",
                        crate::output::printable(id)
                    ));
                }
            }
        }
    }
}
