//! A Vast.ai notification as the relay understands it: parsed leniently from the delivery body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The documented fields, read straight from the body (the others are skipped, not kept):
/// the common case, without building a map of every field first. Whatever it cannot take
/// as the full parse would (a duplicate key, no `message`, not an object) goes to that.
#[derive(Deserialize)]
struct Known {
    event_id: Option<Value>,
    notif_type: Option<Value>,
    subject: Option<Value>,
    message: Option<Value>,
    user_id: Option<Value>,
    timestamp: Option<Value>,
}

/// A field as text: a non-empty string, else nothing (as the walkthrough's adapter reads it).
fn text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

impl Event {
    /// Parse a verified body. `header_event_id` is `X-Vast-Event-Id`, used when the body has none.
    pub fn parse(
        body: &[u8],
        header_event_id: Option<&str>,
        received_at: i64,
    ) -> Result<Event, ParseError> {
        let object = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        let known = object
            .then(|| serde_json::from_slice::<Known>(body).ok())
            .flatten();
        match known {
            Some(k) if matches!(&k.message, Some(Value::String(m)) if !m.is_empty()) => {
                Ok(Event::of(k, body, header_event_id, received_at))
            }
            _ => Event::parse_whole(body, header_event_id, received_at),
        }
    }

    fn of(k: Known, body: &[u8], header_event_id: Option<&str>, received_at: i64) -> Event {
        let event_id = text(k.event_id)
            .or_else(|| header_event_id.filter(|s| !s.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| body_hash(body));
        Event {
            event_id,
            notif_type: text(k.notif_type).unwrap_or_else(|| "notification".to_owned()),
            subject: text(k.subject),
            message: text(k.message),
            user_id: k.user_id.as_ref().and_then(Value::as_i64),
            timestamp: k.timestamp.as_ref().and_then(Value::as_f64),
            received_at,
            context: None,
            alert: None,
            heartbeat: false,
            legs: Default::default(),
        }
    }

    /// The full parse: every field into a map (the payload is shown when there is no message).
    fn parse_whole(
        body: &[u8],
        header_event_id: Option<&str>,
        received_at: i64,
    ) -> Result<Event, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::InvalidJson)?;
        let Value::Object(map) = value else {
            return Err(ParseError::NotAnObject);
        };
        let field = |k: &str| map.get(k).cloned();
        let mut e = Event::of(
            Known {
                event_id: field("event_id"),
                notif_type: field("notif_type"),
                subject: field("subject"),
                message: field("message"),
                user_id: field("user_id"),
                timestamp: field("timestamp"),
            },
            body,
            header_event_id,
            received_at,
        );
        // Like the walkthrough's adapter: show the payload when there is no message.
        e.message = e
            .message
            .or_else(|| Some(serde_json::to_string(&map).unwrap_or_default()));
        Ok(e)
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

    /// The direct read and the full parse agree on every body.
    #[test]
    fn the_direct_read_is_the_full_parse() {
        let bodies: &[&str] = &[
            r#"{"event_id":"a","notif_type":"low_credit","subject":"S","message":"M","user_id":7,"timestamp":1.5}"#,
            r#" {"event_id":"","message":"M","notif_type":"","subject":""}"#,
            r#"{"event_id":5,"message":"M","user_id":"7","timestamp":"x"}"#,
            r#"{"message":"M","user_id":7.0,"timestamp":3,"extra":{"deep":[1,2,{"x":null}]}}"#,
            r#"{"message":"M","user_id":18446744073709551615,"timestamp":null,"event_id":null}"#,
            r#"{"event_id":"first","event_id":"second","message":"M"}"#,
            r#"{"event\u005fid":"escaped","message":"M\u00e9"}"#,
            r#"{"event_id":"no message","notif_type":"x"}"#,
            r#"{"event_id":"m","message":""}"#,
            r#"{"event_id":"m","message":3}"#,
            r#"{"message":"M"} trailing"#,
            r#"{"message":"M""#,
            "[1]",
            "\"s\"",
            "",
        ];
        // (The first ones are read directly, not by the full parse.)
        assert!(serde_json::from_slice::<Known>(bodies[0].as_bytes()).is_ok());
        assert!(serde_json::from_slice::<Known>(bodies[3].as_bytes()).is_ok());
        for body in bodies {
            let fast = Event::parse(body.as_bytes(), Some("hdr"), 9);
            let whole = Event::parse_whole(body.as_bytes(), Some("hdr"), 9);
            assert_eq!(fast, whole, "{body}");
        }
        let dup = Event::parse(
            br#"{"event_id":"first","event_id":"second","message":"M"}"#,
            None,
            0,
        );
        assert_eq!(
            dup.unwrap().event_id,
            "second",
            "the last of a key, as a map keeps it"
        );
    }

    #[test]
    fn rejects_non_objects() {
        assert_eq!(Event::parse(b"[1]", None, 0), Err(ParseError::NotAnObject));
        assert_eq!(Event::parse(b"{", None, 0), Err(ParseError::InvalidJson));
    }
}
