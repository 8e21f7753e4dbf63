//! The relay in-process (the same `Relay::start` that `serve` uses) against the Slack stand-in.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use vslack::relay::forward::{Destination, ForwardOptions};
use vslack::relay::message::Format;
use vslack::relay::server::Limits;
use vslack::relay::spool::{SpoolOptions, Stats};
use vslack::relay::verify::{Key, Verifier};
use vslack::relay::{Relay, RelayOptions};
use vslack::secret::Secret;

use crate::support::fake_slack::FakeSlack;

pub const SECRET: &str = "relay-test-secret";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signature computed independently of the crate under test.
pub fn signature(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{ts}.").as_bytes());
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

pub fn event_body(id: &str, kind: &str) -> Vec<u8> {
    json!({"event_id": id, "user_id": 7, "notif_type": kind, "subject": format!("Subject {id}"),
           "message": format!("Message for {id}"), "timestamp": now() as f64})
    .to_string()
    .into_bytes()
}

/// POST with Vast.ai's headers; returns (status, body).
pub async fn post(url: &str, body: &[u8], ts: Option<i64>, sig: Option<String>) -> (u16, String) {
    // Bounded, so a relay that never answers fails the test instead of hanging it.
    let mut req = vslack::http::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(ts) = ts {
        req = req.header("X-Vast-Timestamp", ts.to_string());
    }
    if let Some(sig) = sig {
        req = req.header("X-Vast-Signature-256", sig);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn deliver(url: &str, id: &str, kind: &str) -> u16 {
    let body = event_body(id, kind);
    let ts = now();
    post(url, &body, Some(ts), Some(signature(SECRET, ts, &body)))
        .await
        .0
}

/// Wait (at most 10 s) until Slack's stand-in has seen `n` requests arrive.
pub async fn wait_arrived(slack: &FakeSlack, n: usize) {
    let start = Instant::now();
    while slack.requests().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Slack saw {} request(s), expected {n}",
            slack.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_delivered(slack: &FakeSlack, n: usize, timeout: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let d = slack.delivered();
        if d.len() >= n || start.elapsed() > timeout {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait (at most 10 s) until the store's counts satisfy `done`, and return them. Slack's
/// stand-in records a message before the relay has read the answer and committed the outcome,
/// so a test that has seen a message at Slack must still wait for the store.
pub async fn wait_stats(relay: &Relay, done: impl Fn(&Stats) -> bool) -> Stats {
    let start = Instant::now();
    loop {
        let stats = tokio::time::timeout(Duration::from_secs(10), relay.spool.stats())
            .await
            .expect("the store did not answer within 10 s")
            .unwrap();
        if done(&stats) || start.elapsed() > Duration::from_secs(10) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET one of the relay's own endpoints (`health`, `metrics`) as text.
pub async fn endpoint(h: &Harness, name: &str) -> String {
    vslack::http::get(format!("{}{name}", h.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Assert that `/metrics` holds each of these lines.
pub fn assert_metrics(metrics: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            metrics.lines().any(|l| l == *line),
            "missing {line:?} in\n{metrics}"
        );
    }
}

pub struct Harness {
    pub relay: Relay,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Where the store is (a data directory for `vslack queue`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

pub async fn start(slack_url: &str, tweak: impl FnOnce(&mut RelayOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = RelayOptions {
        path: "/".into(),
        limits: Limits::default(),
        verifier: Verifier::new(vec![Key::new("test", &Secret::new(SECRET), None)], 300),
        destinations: vec![Destination::new(
            "default",
            None,
            Some(Secret::new(slack_url)),
            Format::for_url(slack_url).unwrap_or(Format::Blocks),
        )],
        forward: ForwardOptions {
            pace: Duration::from_millis(10),
            retry_initial: Duration::from_millis(50),
            ..ForwardOptions::default()
        },
        spool_path: dir.path().join("spool.sqlite3"),
        store_url: None,
        spool: SpoolOptions::default(),
        log_payloads: false,
        alerts: Default::default(),
        tls: None,
    };
    tweak(&mut opts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = Relay::start(listener, opts).await.unwrap();
    let url = format!("http://{}/", relay.addr);
    Harness {
        relay,
        url,
        _dir: dir,
    }
}

pub fn carried_ids(messages: &[Value], ids: &[String]) -> Vec<usize> {
    // A whole id only: "evt-1" must not be found inside "evt-10".
    let carries = |text: &str, id: &str| {
        text.match_indices(id).any(|(i, _)| {
            !text[i + id.len()..]
                .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    };
    ids.iter()
        .map(|id| {
            messages
                .iter()
                .filter(|m| carries(&m.to_string(), id))
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_delivery_becomes_one_block_kit_message() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |_| {}).await;
    let body = json!({"event_id": "evt-1", "user_id": 7, "notif_type": "low_credit",
        "subject": "Low credit", "message": "Balance <$5> & falling", "timestamp": now() as f64})
    .to_string();
    let ts = now();
    let (status, _) = post(
        &h.url,
        body.as_bytes(),
        Some(ts),
        Some(signature(SECRET, ts, body.as_bytes())),
    )
    .await;
    assert_eq!(status, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("Low credit") && text.contains("evt-1"),
        "{text}"
    );
    let blocks = m["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks[0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("Low credit"));
    assert!(
        m.to_string().contains("https://cloud.vast.ai/billing/"),
        "billing button: {m}"
    );
    assert!(
        m.to_string().contains("Balance &lt;$5&gt; &amp; falling"),
        "escaped: {m}"
    );
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.received().len(), 1);
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_is_one_message() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |_| {}).await;
    let body = event_body("evt-dup", "instance_stopped");
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let ts = now();
        let r = vslack::http::client()
            .post(&h.url)
            .header("X-Vast-Timestamp", ts.to_string())
            .header("X-Vast-Signature-256", signature(SECRET, ts, &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        outcomes.push(r.headers()["x-vslack-outcome"].to_str().unwrap().to_owned());
    }
    assert_eq!(outcomes, ["stored", "duplicate", "duplicate"]);
    wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(slack.delivered().len(), 1);
    assert_eq!(
        h.relay
            .metrics
            .received_count(vslack::relay::metrics::Received::Duplicate),
        2
    );
    stop(h.relay).await;
}

/// Shut the relay down, bounded: a shutdown that hangs fails the test with this message.
pub async fn stop(relay: Relay) {
    tokio::time::timeout(Duration::from_secs(30), relay.shutdown())
        .await
        .expect("the relay did not shut down within 30 s");
}
