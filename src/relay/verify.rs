//! Signature verification exactly as Vast.ai documents it: `X-Vast-Signature-256:
//! sha256=<lowercase hex>` is HMAC-SHA256, keyed with the secret's UTF-8 bytes, over
//! `<X-Vast-Timestamp> "." <raw body>`; the timestamp must be within the window of now.
//! Comparison is constant-time (`Mac::verify_slice`); any held secret may match, and a
//! rotated-out secret only until its grace period ends.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused. The reason is returned to the sender; it never says what the
/// expected signature was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    MissingSignature,
    BadSignature,
    StaleTimestamp,
}

impl VerifyError {
    pub fn reason(self) -> &'static str {
        match self {
            VerifyError::MissingSignature => "missing_signature",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::StaleTimestamp => "stale_timestamp",
        }
    }
}

/// One secret the relay accepts.
#[derive(Clone)]
pub struct Key {
    /// For logs: "webhook 42", "webhook 42 (previous)", "VAST_WEBHOOK_SECRET".
    pub label: String,
    mac: HmacSha256,
    /// Unix seconds after which this key is refused (rotated-out secrets).
    pub valid_until: Option<i64>,
    /// Slug -> context (`client` or `host`) for the events the key's webhook subscribes to,
    /// where a slug has one context only.
    contexts: std::sync::Arc<std::collections::HashMap<String, String>>,
}

impl Key {
    pub fn new(label: impl Into<String>, secret: &Secret, valid_until: Option<i64>) -> Key {
        Key {
            label: label.into(),
            mac: HmacSha256::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes any key length"),
            valid_until,
            contexts: Default::default(),
        }
    }

    /// The key of a webhook subscribed to `events` (keys such as `host:machine_offline`).
    pub fn with_events(mut self, events: &[String]) -> Key {
        let mut contexts = std::collections::HashMap::new();
        let mut ambiguous = std::collections::HashSet::new();
        for (context, slug) in events.iter().filter_map(|e| e.split_once(':')) {
            match contexts.insert(slug.to_owned(), context.to_owned()) {
                Some(other) if other != context => {
                    ambiguous.insert(slug.to_owned());
                }
                _ => {}
            }
        }
        contexts.retain(|slug, _| !ambiguous.contains(slug));
        self.contexts = std::sync::Arc::new(contexts);
        self
    }

    /// Identifies the key (a MAC of a fixed text under it, with its label, expiry and
    /// contexts) without revealing the secret: equal fingerprints, same key.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"vslack key fingerprint");
        let mut contexts: Vec<_> = self.contexts.iter().collect();
        contexts.sort();
        format!(
            "{} {:?} {:?} {}",
            self.label,
            self.valid_until,
            contexts,
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The context of an event of type `slug` signed with this key, when it is known.
    pub fn context_of(&self, slug: &str) -> Option<&str> {
        self.contexts.get(slug).map(String::as_str)
    }
}

#[derive(Clone)]
pub struct Verifier {
    keys: Vec<Key>,
    window_secs: i64,
}

impl Verifier {
    pub fn new(keys: Vec<Key>, window_secs: i64) -> Verifier {
        Verifier { keys, window_secs }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Check a delivery; on success returns the key that matched.
    pub fn verify(
        &self,
        timestamp: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) -> Result<&Key, VerifyError> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(VerifyError::MissingSignature);
        };
        let ts_value: i64 = std::str::from_utf8(ts)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(VerifyError::BadSignature)?;
        if now.abs_diff(ts_value) > self.window_secs.unsigned_abs() {
            return Err(VerifyError::StaleTimestamp);
        }
        let hex_part = sig
            .strip_prefix(b"sha256=")
            .ok_or(VerifyError::BadSignature)?;
        let mut expected = [0u8; 32];
        // Only lowercase hex is valid, as documented.
        if hex_part.iter().any(|c| c.is_ascii_uppercase())
            || hex::decode_to_slice(hex_part, &mut expected).is_err()
        {
            return Err(VerifyError::BadSignature);
        }
        let mut matched = None;
        for key in &self.keys {
            if key.valid_until.is_some_and(|until| now > until) {
                continue;
            }
            let mut mac = key.mac.clone();
            mac.update(ts);
            mac.update(b".");
            mac.update(body);
            // Check every key so timing does not reveal which one matched.
            if mac.verify_slice(&expected).is_ok() && matched.is_none() {
                matched = Some(key);
            }
        }
        matched.ok_or(VerifyError::BadSignature)
    }
}

impl Verifier {
    /// Whether a delivery refused as stale is signed right by a key valid now: the clocks
    /// are apart, it is no forgery.
    pub fn signed_ignoring_time(
        &self,
        timestamp: Option<&[u8]>,
        signature: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) -> bool {
        let keys = self
            .keys
            .iter()
            .filter(|k| k.valid_until.is_none_or(|u| now <= u))
            .cloned()
            .collect();
        Verifier::new(keys, i64::MAX)
            .verify(timestamp, signature, body, now)
            .is_ok()
    }
}

/// The header value for `body` signed at `timestamp` (what Vast.ai sends; used by `send`).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Verifier {
        /// `verify`, with the matching key's label.
        fn label(
            &self,
            ts: Option<&[u8]>,
            sig: Option<&[u8]>,
            body: &[u8],
            now: i64,
        ) -> Result<&str, VerifyError> {
            self.verify(ts, sig, body, now).map(|k| k.label.as_str())
        }
    }

    #[test]
    fn contexts_come_from_the_webhooks_events() {
        let k = Key::new("w", &Secret::new("s"), None).with_events(&[
            "host:machine_offline".into(),
            "client:low_credit".into(),
            "host:low_credit".into(),
        ]);
        assert_eq!(k.context_of("machine_offline"), Some("host"));
        assert_eq!(k.context_of("low_credit"), None, "in both: unknown");
        assert_eq!(k.context_of("outbid"), None);
    }

    fn verifier() -> Verifier {
        Verifier::new(
            vec![
                Key::new("current", &Secret::new("s1"), None),
                Key::new("previous", &Secret::new("s0"), Some(1_000)),
            ],
            300,
        )
    }

    #[test]
    fn accepts_valid_and_refuses_each_fault() {
        let v = verifier();
        let body = br#"{"event_id":"e"}"#;
        let sig = sign(&Secret::new("s1"), 900, body);
        assert_eq!(
            v.label(Some(b"900"), Some(sig.as_bytes()), body, 900),
            Ok("current")
        );
        // Known answer computed independently with Python's hmac module.
        assert_eq!(
            sign(&Secret::new("whsec"), 1772490000, br#"{"event_id":"e"}"#),
            "sha256=f25ad2fb9bc33414750facef8bf57ad0add8888abecd97618c8465872128c082"
        );
        assert_eq!(
            v.label(None, Some(sig.as_bytes()), body, 900),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            v.label(Some(b"900"), None, body, 900),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            v.label(Some(b"900"), Some(sig.as_bytes()), b"{}", 900),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            // Uppercase hex after a proper prefix: refused, as the format is lowercase.
            v.label(
                Some(b"900"),
                Some(format!("sha256={}", sig[7..].to_uppercase()).as_bytes()),
                body,
                900
            ),
            Err(VerifyError::BadSignature)
        );
        // Exactly 300 s either side is still inside the window; 301 s is not.
        for now in [600, 1200] {
            assert_eq!(
                v.label(Some(b"900"), Some(sig.as_bytes()), body, now),
                Ok("current")
            );
        }
        assert_eq!(
            v.label(Some(b"900"), Some(sig.as_bytes()), body, 1201),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            v.label(Some(b"900"), Some(sig.as_bytes()), body, 599),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            v.label(Some(b"abc"), Some(sig.as_bytes()), body, 900),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn previous_secret_only_within_grace() {
        let v = verifier();
        let body = b"{}";
        let sig = sign(&Secret::new("s0"), 1_000, body);
        assert_eq!(
            v.label(Some(b"1000"), Some(sig.as_bytes()), body, 1_000),
            Ok("previous")
        );
        let sig = sign(&Secret::new("s0"), 1_001, body);
        assert_eq!(
            v.label(Some(b"1001"), Some(sig.as_bytes()), body, 1_001),
            Err(VerifyError::BadSignature)
        );
    }
}
