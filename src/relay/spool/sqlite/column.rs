//! The `event` column: the event itself as JSON, or, for an event parsed from a delivery and
//! not changed since, only what its body does not say.
//!
//! A delivery's event is `Event::parse(body, id, received_at)` plus the context of the secret
//! that verified it, and the row already holds the body, the id and the time. Storing its JSON
//! as well doubled each row (and each ack log record), the pages every commit writes and
//! every checkpoint copies, and cost a serialisation on the request path. So such a row's
//! `event` is its context (`""` when none) and the event is parsed from the body when read.
//! A text that starts with `{` is the event's JSON: the relay's own alerts, heartbeats,
//! events with delivery progress, and every row written before this form existed. When a
//! finished event's body is freed (`--keep-bodies`, a full store), its JSON takes its place if
//! that is smaller ([`free_bodies`]), so the event stays readable for the retention window.

use rusqlite::{params, Connection, OptionalExtension};

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

/// How far [`free_bodies`] has looked at finished events kept as their bodies: those finished
/// before `done_before` were looked at, and kept as they were (their body was the smaller
/// form), so they are not parsed again at every pruning.
const LOOKED_AT: &str = "CREATE TABLE IF NOT EXISTS vslack_bodies (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    done_before INTEGER NOT NULL
)";

/// Free what the bodies of finished events (those finished before `before`, when given) hold
/// beyond what deduplication and `vslack queue` need. A row whose event is its JSON loses its
/// body. A delivered or dropped event kept as its body gets its JSON instead (the message cut
/// to [`MESSAGE_KEPT`] characters), but only where that is smaller: a plain Vast.ai body is
/// the smallest form of its event and stays; one with large extra fields or a long message
/// shrinks. A dead letter keeps its body whole (it may be posted again), and so does a body
/// that cannot be read (its event is nowhere else). Nothing grows, so a full store can run
/// this. Returns how many rows shrank.
pub(super) fn free_bodies(tx: &Connection, before: Option<i64>) -> Result<usize, SpoolError> {
    let mut freed = tx.execute(
        "UPDATE events SET body = x'' WHERE state <> 0 AND (?1 IS NULL OR done_at < ?1) AND length(body) > 0 AND substr(event, 1, 1) = '{'",
        [before],
    )?;
    tx.execute_batch(LOOKED_AT)?;
    let from: i64 = tx
        .query_row(
            "SELECT done_before FROM vslack_bodies WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(i64::MIN);
    let mut select = tx.prepare(
        "SELECT seq, event, body, event_id, received_at, done_at FROM events WHERE state IN (1, 3) AND done_at >= ?2 AND (?1 IS NULL OR done_at < ?1) AND length(body) > 0 AND substr(event, 1, 1) <> '{' AND seq > ?3 ORDER BY seq LIMIT 1000",
    )?;
    let mut update =
        tx.prepare_cached("UPDATE events SET event = ?2, body = x'' WHERE seq = ?1")?;
    let (mut after, mut reached) = (0i64, from);
    loop {
        let rows = select
            .query_map(params![before, from, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        for (seq, column, body, id, received_at, done_at) in rows {
            reached = reached.max(done_at);
            let lean = event_of(&column, &body, &id, received_at).and_then(|mut e| {
                shorten(&mut e.message);
                serde_json::to_string(&e).map_err(|e| e.to_string())
            });
            match lean {
                Ok(json) if json.len() < column.len() + body.len() => {
                    freed += update.execute(params![seq, json])?
                }
                Ok(_) => {}
                Err(why) => tracing::warn!(seq, %why, "kept the body of a finished event"),
            }
        }
    }
    // Everything finished before `before` has been looked at; without it, up to the newest
    // seen (those finished in that same second are looked at again next time).
    let to = before.unwrap_or(reached).max(from);
    tx.execute(
        "INSERT INTO vslack_bodies (id, done_before) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET done_before = excluded.done_before",
        [to],
    )?;
    Ok(freed)
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
    use serde_json::json;

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

    fn table() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT, event TEXT, body BLOB, received_at INTEGER, state INTEGER, done_at INTEGER)",
        )
        .unwrap();
        c
    }

    /// Store a delivery of `body` as the relay does, in `state`, finished at 50.
    fn put(c: &Connection, body: serde_json::Value, state: i64) -> Delivery {
        let mut d = Delivery::parse(body.to_string().into_bytes(), None, 42).unwrap();
        d.set_context(Some("client".into()));
        c.execute(
            "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES (?1, ?2, ?3, 42, ?4, 50)",
            params![d.event().event_id, column_for(&d).unwrap(), d.body(), state],
        )
        .unwrap();
        d
    }

    /// The `event` column and the body's length of row `seq`, and its event as read.
    fn row(c: &Connection, seq: i64) -> (String, usize, Event) {
        let (column, body, id): (String, Vec<u8>, String) = c
            .query_row(
                "SELECT event, body, event_id FROM events WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let e = event_of(&column, &body, &id, 42).unwrap();
        (column, body.len(), e)
    }

    #[test]
    fn freeing_bodies_shrinks_rows_and_keeps_every_event_readable() {
        let c = table();
        let plain = json!({"event_id": "p", "notif_type": "low_credit", "subject": "S", "message": "M", "user_id": 3, "timestamp": 5.5});
        let extra = json!({"event_id": "x", "notif_type": "low_credit", "subject": "S", "message": "M", "instance": "i".repeat(2000)});
        let long = json!({"event_id": "l", "message": "é".repeat(3 * MESSAGE_KEPT)});
        let d1 = put(&c, plain.clone(), 1);
        let d2 = put(&c, extra, 1);
        let d3 = put(&c, long.clone(), 3);
        let d4 = put(&c, long, 2);
        let d5 = put(&c, plain, 0);
        let json = serde_json::to_string(d1.event()).unwrap();
        c.execute(
            "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES ('j', ?1, x'00ff', 42, 1, 50)",
            [&json],
        )
        .unwrap();
        c.execute(
            "INSERT INTO events (event_id, event, body, received_at, state, done_at) VALUES ('u', 'client', x'00ff', 42, 1, 50)",
            [],
        )
        .unwrap();
        let size = |c: &Connection| -> i64 {
            c.query_row(
                "SELECT SUM(length(event) + length(body)) FROM events",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let before = size(&c);
        assert_eq!(
            free_bodies(&c, Some(10)).unwrap(),
            0,
            "none finished before 10"
        );
        assert_eq!(
            free_bodies(&c, Some(100)).unwrap(),
            3,
            "the extra, the long, the JSON row"
        );
        assert!(size(&c) < before);
        // A plain body is its event's smallest form: kept.
        assert_eq!(
            row(&c, 1),
            ("client".into(), d1.body().len(), d1.event().clone())
        );
        // Large extra fields: the JSON took the body's place; the event reads the same.
        let (column, len, e) = row(&c, 2);
        assert!(column.starts_with('{') && len == 0, "{column}");
        assert_eq!(&e, d2.event());
        // A long message is cut, marked, where the body went.
        let (_, len, e) = row(&c, 3);
        let kept = e.message.unwrap();
        assert_eq!((len, kept.chars().count()), (0, MESSAGE_KEPT + 1));
        assert!(kept.starts_with("éé") && kept.ends_with('…'));
        assert_eq!(e.event_id, d3.event().event_id);
        // A dead letter keeps its body and its whole message (a retry posts it).
        assert_eq!(
            row(&c, 4),
            ("client".into(), d4.body().len(), d4.event().clone())
        );
        // Pending: untouched.
        assert_eq!(row(&c, 5).1, d5.body().len());
        // A JSON row loses its body; an unreadable body is kept.
        assert_eq!(row(&c, 6).1, 0);
        let len: i64 = c
            .query_row("SELECT length(body) FROM events WHERE seq = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(len, 2);
    }

    #[test]
    fn each_finished_row_is_looked_at_once_and_later_ones_too() {
        let c = table();
        let extra =
            |id: &str| json!({"event_id": id, "message": "M", "instance": "i".repeat(2000)});
        for i in 0..2500 {
            put(&c, extra(&format!("e{i}")), 1);
        }
        assert_eq!(
            free_bodies(&c, None).unwrap(),
            2500,
            "more than one pass takes"
        );
        let mark = |c: &Connection| -> i64 {
            c.query_row("SELECT done_before FROM vslack_bodies", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(mark(&c), 50);
        // A row finished in the same second, and one later: both looked at.
        put(&c, extra("same"), 1);
        c.execute(
            "UPDATE events SET done_at = 70 WHERE seq = (SELECT MAX(seq) FROM events)",
            [],
        )
        .unwrap();
        put(&c, extra("same-second"), 1);
        assert_eq!(free_bodies(&c, Some(60)).unwrap(), 1, "finished before 60");
        assert_eq!(mark(&c), 60);
        assert_eq!(free_bodies(&c, Some(100)).unwrap(), 1);
        assert_eq!(mark(&c), 100);
        // A cut below what was looked at moves nothing back.
        assert_eq!(free_bodies(&c, Some(80)).unwrap(), 0);
        assert_eq!(mark(&c), 100);
    }
}
