//! Reading the documented fields of a delivery's body alone: the fast way `Event::parse` takes.

use serde::Deserialize;
use serde_json::Value;

/// The documented fields of a body, read without building a map of the whole object. Every
/// value is still parsed as a JSON value (the same checks as the whole object's, the last of
/// a repeated field wins), only the others are dropped at once.
#[derive(Default)]
pub(super) struct Fields {
    pub event_id: Option<Value>,
    pub notif_type: Option<Value>,
    pub subject: Option<Value>,
    pub message: Option<Value>,
    pub user_id: Option<Value>,
    pub timestamp: Option<Value>,
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut f = Fields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let value: Value = map.next_value()?;
                    let slot = match key {
                        Key::EventId => &mut f.event_id,
                        Key::NotifType => &mut f.notif_type,
                        Key::Subject => &mut f.subject,
                        Key::Message => &mut f.message,
                        Key::UserId => &mut f.user_id,
                        Key::Timestamp => &mut f.timestamp,
                        Key::Other => continue,
                    };
                    *slot = Some(value);
                }
                Ok(f)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A key of the body's object, named without copying it when it is not one of the fields.
enum Key {
    EventId,
    NotifType,
    Subject,
    Message,
    UserId,
    Timestamp,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "event_id" => Key::EventId,
                    "notif_type" => Key::NotifType,
                    "subject" => Key::Subject,
                    "message" => Key::Message,
                    "user_id" => Key::UserId,
                    "timestamp" => Key::Timestamp,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(Visit)
    }
}

/// A non-empty string, else none (as every text field is read).
pub(super) fn text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}
