//! The `event` column: the event itself as JSON, or, for an event parsed from a delivery and
//! not changed since, only what its body does not say.
//!
//! A delivery's event is `Event::parse(body, id, received_at)` plus the context of the secret
//! that verified it, and the row already holds the body, the id and the time. Storing its JSON
//! as well doubled each row (and each ack log record), the pages every commit writes and
//! every checkpoint copies, and cost a serialisation on the request path. So such a row's
//! `event` is its context (`""` when none) and the event is parsed from the body when read.
//! A text that starts with `{` is the event's JSON: the relay's own alerts, heartbeats,
//! events with delivery progress, and every row written before this form existed. Before a
//! finished event's body is freed (`--keep-bodies`, a full store), its JSON is written in its
//! place ([`free_bodies`]), so the event stays readable for the retention window.

use rusqlite::{params, Connection};

use super::{Delivery, Event, SpoolError};

/// What the `event` column holds for a new row: the event's context alone when the body says
/// everything else (a delivery as parsed, see [`Delivery`]), else its JSON.
pub(super) fn column_for(new: &Delivery) -> Result<String, SpoolError> {
    let event = new.event();
    let derivable = new.is_parsed()
        && !event.heartbeat
        && !event
            .context
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.starts_with('{'));
    if derivable {
        return Ok(event.context.clone().unwrap_or_default());
    }
    serde_json::to_string(event).map_err(|e| SpoolError(e.to_string()))
}

/// The event of a row: its `event` column, with its body, id and time when that column
/// holds only the context.
pub fn event_of(
    column: &str,
    body: &[u8],
    event_id: &str,
    received_at: i64,
) -> Result<Event, String> {
    if column.starts_with('{') {
        return serde_json::from_str(column).map_err(|e| e.to_string());
    }
    let mut event = Event::parse(body, Some(event_id), received_at).map_err(|e| {
        format!("its event is kept as its body, and the body is not readable ({e})")
    })?;
    event.context = (!column.is_empty()).then(|| column.to_owned());
    Ok(event)
}

/// The event's JSON, whichever form the column holds (what another store is given).
pub fn event_json(
    column: &str,
    body: &[u8],
    event_id: &str,
    received_at: i64,
) -> Result<String, String> {
    if column.starts_with('{') {
        return Ok(column.to_owned());
    }
    let event = event_of(column, body, event_id, received_at)?;
    serde_json::to_string(&event).map_err(|e| e.to_string())
}

/// The `event` column without the destinations that refused it (`legs.dead`): only JSON has
/// legs (an event kept as its body never went to several destinations).
pub(super) const UNREFUSED: &str =
    "CASE WHEN substr(event, 1, 1) = '{' THEN json_remove(event, '$.legs.dead') ELSE event END";

/// Of a finished event whose body is freed, this much of its message is kept (characters):
/// what `vslack queue` shows of it. Vast.ai's messages are far shorter; a longer one would
/// otherwise keep a freed body's size in its JSON, and a full store could make no room.
pub const MESSAGE_KEPT: usize = 1000;

/// Free the bodies of finished events (those finished before `before`, when given). A row
/// whose event is kept as its body gets the event's JSON in the same update, its message cut
/// to [`MESSAGE_KEPT`] characters; one whose body cannot be read keeps it (its event is
/// nowhere else). A thousand rows at a time. Returns the bodies freed.
pub(super) fn free_bodies(tx: &Connection, before: Option<i64>) -> Result<usize, SpoolError> {
    let filter = "state <> 0 AND (?1 IS NULL OR done_at < ?1) AND length(body) > 0";
    let mut freed = tx.execute(
        &format!("UPDATE events SET body = x'' WHERE {filter} AND substr(event, 1, 1) = '{{'"),
        [before],
    )?;
    let mut select = tx.prepare(&format!(
        "SELECT seq, event, body, event_id, received_at FROM events WHERE {filter} AND substr(event, 1, 1) <> '{{' AND seq > ?2 ORDER BY seq LIMIT 1000"
    ))?;
    let mut update =
        tx.prepare_cached("UPDATE events SET event = ?2, body = x'' WHERE seq = ?1")?;
    let mut after = 0i64;
    loop {
        let rows = select
            .query_map(params![before, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some(last) = rows.last() else {
            return Ok(freed);
        };
        after = last.0;
        for (seq, column, body, id, received_at) in rows {
            let lean = event_of(&column, &body, &id, received_at).and_then(|mut e| {
                shorten(&mut e.message);
                serde_json::to_string(&e).map_err(|e| e.to_string())
            });
            match lean {
                Ok(json) => freed += update.execute(params![seq, json])?,
                Err(why) => tracing::warn!(seq, %why, "kept the body of a finished event"),
            }
        }
    }
}

/// Cut `message` to [`MESSAGE_KEPT`] characters, marked with `…`.
fn shorten(message: &mut Option<String>) {
    if let Some(m) = message {
        if let Some((at, _)) = m.char_indices().nth(MESSAGE_KEPT) {
            m.truncate(at);
            m.push('…');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event_id":"e1","notif_type":"low_credit","subject":"S","user_id":3,"timestamp":5.5,"x":[1]}"#;

    fn delivery(context: Option<&str>) -> Delivery {
        let mut d = Delivery::parse(BODY.to_vec(), None, 42).unwrap();
        d.set_context(context.map(str::to_owned));
        d
    }

    #[test]
    fn a_delivery_is_read_back_from_its_body() {
        for context in [None, Some("client"), Some("host")] {
            let d = delivery(context);
            let column = column_for(&d).unwrap();
            assert_eq!(column, context.unwrap_or(""));
            assert_eq!(&event_of(&column, BODY, "e1", 42).unwrap(), d.event());
            let json = event_json(&column, BODY, "e1", 42).unwrap();
            assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), d.event());
        }
    }

    #[test]
    fn an_id_from_the_header_or_the_hash_is_the_rows() {
        let body = br#"{"notif_type":"low_credit"}"#;
        let d = Delivery::parse(body.to_vec(), None, 1).unwrap();
        let id = &d.event().event_id;
        assert!(id.starts_with("sha256:"));
        let column = column_for(&d).unwrap();
        assert_eq!(&event_of(&column, body, id, 1).unwrap(), d.event());
        let h = Delivery::parse(body.to_vec(), Some("from-header"), 1).unwrap();
        assert_eq!(&event_of("", body, "from-header", 1).unwrap(), h.event());
    }

    #[test]
    fn what_the_body_does_not_say_is_kept_as_json() {
        let mut d = delivery(None);
        d.set_heartbeat(true);
        assert!(column_for(&d).unwrap().starts_with('{'));
        for odd in ["{odd", ""] {
            let d = delivery(Some(odd));
            let column = column_for(&d).unwrap();
            assert!(column.starts_with('{'), "context {odd:?}");
            assert_eq!(&event_of(&column, b"", "ignored", 0).unwrap(), d.event());
        }
        // An event given with a body it was not parsed from (an alert, or any other caller)
        // is kept whole: the body does not say it.
        let (mut e, _) = delivery(None).into_parts();
        e.subject = Some("changed".into());
        let given = Delivery::given(e.clone(), BODY.to_vec());
        let column = column_for(&given).unwrap();
        assert_eq!(event_of(&column, BODY, "e1", 42).unwrap(), e);
    }

    #[test]
    fn freeing_a_body_keeps_its_event() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT, event TEXT, body BLOB, received_at INTEGER, state INTEGER, done_at INTEGER)",
        )
        .unwrap();
        let d = delivery(Some("client"));
        let json = serde_json::to_string(d.event()).unwrap();
        let rows: [(&str, &[u8], i64); 4] = [
            ("client", BODY, 1),
            (&json, BODY, 1),
            ("client", b"not json", 1),
            ("client", BODY, 0),
        ];
        for (column, body, state) in rows {
            c.execute(
                "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES ('e1', ?1, ?2, 42, ?3, 50)",
                params![column, body, state],
            )
            .unwrap();
        }
        assert_eq!(
            free_bodies(&c, Some(10)).unwrap(),
            0,
            "none finished before 10"
        );
        assert_eq!(free_bodies(&c, Some(100)).unwrap(), 2);
        let mut s = c
            .prepare("SELECT event, length(body) FROM events ORDER BY seq")
            .unwrap();
        let left: Vec<(String, i64)> = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            left[0],
            (json.clone(), 0),
            "derived row: JSON written, body freed"
        );
        assert_eq!(left[1], (json, 0), "JSON row: body freed");
        assert_eq!(left[2].1, 8, "an unreadable body is kept");
        assert_eq!(
            left[3],
            ("client".to_owned(), BODY.len() as i64),
            "pending: untouched"
        );
    }

    #[test]
    fn a_freed_body_keeps_the_start_of_a_long_message() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT, event TEXT, body BLOB, received_at INTEGER, state INTEGER, done_at INTEGER)",
        )
        .unwrap();
        let long = "é".repeat(3 * MESSAGE_KEPT);
        for (i, message) in [long.as_str(), "short"].iter().enumerate() {
            let body = serde_json::json!({"event_id": format!("e{i}"), "message": message});
            let d = Delivery::parse(body.to_string().into_bytes(), None, 42).unwrap();
            c.execute(
                "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES (?1, ?2, ?3, 42, 1, 50)",
                params![d.event().event_id, column_for(&d).unwrap(), d.body()],
            )
            .unwrap();
        }
        // More rows than one pass takes: every one is freed.
        for i in 2..2500 {
            c.execute(
                "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES (?1, '', ?2, 42, 1, 50)",
                params![format!("e{i}"), BODY],
            )
            .unwrap();
        }
        assert_eq!(free_bodies(&c, None).unwrap(), 2500);
        let read = |seq: i64| {
            let (column, len): (String, i64) = c
                .query_row(
                    "SELECT event, length(body) FROM events WHERE seq = ?1",
                    [seq],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(len, 0);
            assert!(
                column.len() < 2 * MESSAGE_KEPT + 200,
                "{} bytes kept",
                column.len()
            );
            event_of(&column, b"", "", 0).unwrap().message.unwrap()
        };
        let kept = read(1);
        assert_eq!(kept.chars().count(), MESSAGE_KEPT + 1);
        assert!(kept.starts_with("éé") && kept.ends_with('…'), "{kept}");
        assert_eq!(read(2), "short");
        assert!(
            read(2500).contains("low_credit"),
            "the last pass's rows too"
        );
    }
}
