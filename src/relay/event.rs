//! A Vast.ai notification as the relay understands it: parsed leniently from the delivery body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod fields;
use fields::{text, Fields};

/// One notification. Only `event_id` and `notif_type` are always present; Vast.ai documents
/// the other fields but a missing one must never break delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id used for deduplication (body `event_id`, else `X-Vast-Event-Id`, else a hash).
    pub event_id: String,
    /// The slug without `client:`/`host:`, e.g. `low_credit`; `notification` when absent.
    pub notif_type: String,
    pub subject: Option<String>,
    pub message: Option<String>,
    pub user_id: Option<i64>,
    /// Event time from the body (Unix seconds, may be fractional).
    pub timestamp: Option<f64>,
    /// When the relay stored it (Unix seconds).
    pub received_at: i64,
    /// `client` or `host`, from the webhook whose secret verified it (the payload's slug
    /// does not say); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Set on the relay's own alerts (never parsed from a delivery): which destinations must
    /// not carry it (see `incidents`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertRoute>,
    /// A `webhook_test` the heartbeat asked Vast.ai for: recorded, never posted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heartbeat: bool,
    /// Where it has been delivered, when it goes to several destinations (see `fanout`).
    #[serde(default, skip_serializing_if = "Legs::is_empty")]
    pub legs: Legs,
}

/// The destinations (URL digests, `Destination::digest`) an event going to several has
/// reached, and those that refused it for good. Kept with the event, so a restart, another
/// relay on a shared store, or a retry of another destination never sends it twice to one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Legs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<String>,
    /// Digest -> why. `vslack queue retry` clears them, so those destinations are tried again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dead: std::collections::BTreeMap<String, String>,
}

impl Legs {
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty() && self.dead.is_empty()
    }

    /// Whether the destination with this digest is done with the event.
    pub fn done(&self, digest: &str) -> bool {
        self.sent.iter().any(|s| s == digest) || self.dead.contains_key(digest)
    }
}

/// Where one of the relay's own alerts may go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertRoute {
    /// Digests of destinations that are failing (`Destination::digest`): the alert goes
    /// elsewhere (the fallback first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

/// Why a body is not a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid_json")]
    InvalidJson,
    #[error("invalid_payload")]
    NotAnObject,
}

impl Event {
    /// Parse a verified body. `header_event_id` is `X-Vast-Event-Id`, used when the body has none.
    ///
    /// The documented fields are read alone (see [`Fields`]; `cargo bench --bench verify --
    /// delivery/parse` measures it). A body that needs the whole object (no message: it is
    /// shown instead), or that this reading refuses (not an object, not JSON), is read as a
    /// map, which decides.
    pub fn parse(
        body: &[u8],
        header_event_id: Option<&str>,
        received_at: i64,
    ) -> Result<Event, ParseError> {
        let fields = serde_json::from_slice::<Fields>(body).ok();
        let Some(f) =
            fields.filter(|f| matches!(&f.message, Some(Value::String(m)) if !m.is_empty()))
        else {
            return Event::parse_map(body, header_event_id, received_at);
        };
        Ok(Event::of(f, header_event_id, body, received_at))
    }

    /// [`Event::parse`] by a map of the whole object.
    fn parse_map(
        body: &[u8],
        header_event_id: Option<&str>,
        received_at: i64,
    ) -> Result<Event, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::InvalidJson)?;
        let Value::Object(mut map) = value else {
            return Err(ParseError::NotAnObject);
        };
        // Like the walkthrough's adapter: show the payload when there is no message (written
        // before any field is taken out of the map).
        let shown = match map.get("message") {
            Some(Value::String(m)) if !m.is_empty() => None,
            _ => Some(serde_json::to_string(&map).unwrap_or_default()),
        };
        let mut f = Fields {
            event_id: map.remove("event_id"),
            notif_type: map.remove("notif_type"),
            subject: map.remove("subject"),
            message: map.remove("message"),
            user_id: map.remove("user_id"),
            timestamp: map.remove("timestamp"),
        };
        if let Some(shown) = shown {
            f.message = Some(Value::String(shown));
        }
        Ok(Event::of(f, header_event_id, body, received_at))
    }

    /// The event the documented fields of `body` make: each text a non-empty string or none;
    /// the id from the body, else the header, else the body's hash.
    fn of(f: Fields, header_event_id: Option<&str>, body: &[u8], received_at: i64) -> Event {
        let event_id = text(f.event_id)
            .or_else(|| header_event_id.filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| body_hash(body));
        Event {
            event_id,
            notif_type: text(f.notif_type).unwrap_or_else(|| "notification".to_owned()),
            subject: text(f.subject),
            message: text(f.message),
            user_id: f.user_id.as_ref().and_then(Value::as_i64),
            timestamp: f.timestamp.as_ref().and_then(Value::as_f64),
            received_at,
            context: None,
            alert: None,
            heartbeat: false,
            legs: Default::default(),
        }
    }
}

/// A verified delivery as the store takes it: the event and the body it came in.
///
/// [`Delivery::parse`] makes one whose event is exactly what [`Event::parse`] reads from the
/// body, and only what the body cannot say (the webhook's context, the heartbeat's mark) can
/// be changed after: so a store may keep the body alone and parse it again when it is read
/// (SQLite does: see `spool::sqlite::column`). [`Delivery::given`] pairs any event with any
/// body (the relay's alerts, tests), and is stored whole.
#[derive(Debug, Clone)]
pub struct Delivery {
    event: Event,
    body: Vec<u8>,
    parsed: bool,
}

impl Delivery {
    /// Parse `body` (see [`Event::parse`]).
    pub fn parse(
        body: Vec<u8>,
        header_event_id: Option<&str>,
        received_at: i64,
    ) -> Result<Delivery, ParseError> {
        let event = Event::parse(&body, header_event_id, received_at)?;
        Ok(Delivery {
            event,
            body,
            parsed: true,
        })
    }

    /// An event and a body it need not have come from.
    pub fn given(event: Event, body: Vec<u8>) -> Delivery {
        Delivery {
            event,
            body,
            parsed: false,
        }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the event is the body's, parsed, with at most its context and heartbeat set.
    pub fn is_parsed(&self) -> bool {
        self.parsed
    }

    /// `client` or `host`: the webhook whose secret verified it.
    pub fn set_context(&mut self, context: Option<String>) {
        self.event.context = context;
    }

    pub fn set_heartbeat(&mut self, heartbeat: bool) {
        self.event.heartbeat = heartbeat;
    }

    pub fn into_parts(self) -> (Event, Vec<u8>) {
        (self.event, self.body)
    }
}

/// A stable id for a body that names none: `sha256:` and the first 32 hex digits of its hash.
fn body_hash(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body);
    format!("sha256:{}", &hex::encode(digest)[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_fields() {
        let body = br#"{"event_id":"abc","user_id":7,"notif_type":"low_credit","subject":"S","message":"M","timestamp":1772490000.5,"extra":1}"#;
        let e = Event::parse(body, Some("hdr"), 10).unwrap();
        assert_eq!(e.event_id, "abc");
        assert_eq!(e.notif_type, "low_credit");
        assert_eq!(e.subject.as_deref(), Some("S"));
        assert_eq!(e.message.as_deref(), Some("M"));
        assert_eq!(e.user_id, Some(7));
        assert_eq!(e.timestamp, Some(1772490000.5));
    }

    #[test]
    fn falls_back_to_header_then_hash() {
        let e = Event::parse(b"{}", Some("hdr"), 0).unwrap();
        assert_eq!(e.event_id, "hdr");
        assert_eq!(e.notif_type, "notification");
        let a = Event::parse(b"{\"a\":1}", None, 0).unwrap();
        let b = Event::parse(b"{\"a\":2}", None, 0).unwrap();
        assert!(a.event_id.starts_with("sha256:"));
        assert_ne!(a.event_id, b.event_id);
    }

    #[test]
    fn a_body_without_a_message_is_shown_whole() {
        for body in [
            &br#"{"event_id":"x","notif_type":"t","subject":"S","n":1}"#[..],
            br#"{"event_id":"x","notif_type":"t","subject":"S","message":""}"#,
            br#"{"event_id":"x","notif_type":"t","subject":"S","message":7}"#,
        ] {
            let e = Event::parse(body, None, 0).unwrap();
            let shown: Value = serde_json::from_str(e.message.as_deref().unwrap()).unwrap();
            assert_eq!(shown, serde_json::from_slice::<Value>(body).unwrap());
            assert_eq!(
                (e.event_id.as_str(), e.subject.as_deref()),
                ("x", Some("S"))
            );
        }
    }

    #[test]
    fn the_fields_alone_read_as_the_whole_object_does() {
        let bodies: &[&[u8]] = &[
            br#"{"event_id":"abc","user_id":7,"notif_type":"low_credit","subject":"S","message":"M","timestamp":1772490000.5,"extra":{"a":[1,2,{"b":null}]}}"#,
            br#" {"message":"M","event_id":"","notif_type":7,"subject":null,"user_id":1.5,"timestamp":"x"}"#,
            br#"{"message":"M","user_id":18446744073709551615,"timestamp":3}"#,
            br#"{"message":"M","user_id":-4,"event_id":"a\u00e9\n\"b"}"#,
            br#"{"message":"M","event_id":"a","event_id":"b"}"#,
            br#"{"message":"first","message":""}"#,
            br#"{"message":"M","notif_type":["x"],"subject":{"s":1}}"#,
            br#"{"message":"M"} trailing"#,
            br#"{"message":"M""#,
            br#"["M","S"]"#,
            br#""a string""#,
            br#"{"message":"M","x":1e999}"#,
            br#"{"message":"M","x":"\ud800"}"#,
            br#"{"message":"M","x":"\q"}"#,
            br#"{"message":"M","x":[1,]}"#,
            br#"{"message":"M","message":"N","x":{"message":7}}"#,
            // (A key serde_json treats specially with its `arbitrary_precision` feature: if
            // that is ever turned on, the two readings differ here.)
            br#"{"$serde_json::private::Number":"1","message":"M"}"#,
        ];
        let deep = format!(
            r#"{{"message":"M","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let nested = format!(
            r#"{{"message":"M","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        for body in bodies.iter().chain(&[deep.as_bytes(), nested.as_bytes()]) {
            for header in [None, Some("hdr")] {
                assert_eq!(
                    Event::parse(body, header, 5),
                    Event::parse_map(body, header, 5),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(Event::parse(b"[1]", None, 0), Err(ParseError::NotAnObject));
        assert_eq!(Event::parse(b"{", None, 0), Err(ParseError::InvalidJson));
    }
}
