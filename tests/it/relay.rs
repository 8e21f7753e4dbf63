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

use crate::support::fake_slack::{Answer, FakeSlack};

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
async fn wait_arrived(slack: &FakeSlack, n: usize) {
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
async fn endpoint(h: &Harness, name: &str) -> String {
    vslack::http::get(format!("{}{name}", h.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Assert that `/metrics` holds each of these lines.
fn assert_metrics(metrics: &str, lines: &[&str]) {
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
async fn bad_signatures_are_refused_and_nothing_is_sent() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |_| {}).await;
    let body = event_body("evt-x", "low_credit");
    // The clock keeps ticking while the cases run, so "stale" and "future" sit well
    // outside the 300 s window; the exact boundary is pinned by verify.rs's unit test.
    let ts = now();
    let good = signature(SECRET, ts, &body);
    type Case<'a> = (&'a str, Vec<u8>, Option<i64>, Option<String>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no signature",
            body.clone(),
            Some(ts),
            None,
            "missing_signature",
        ),
        (
            "no timestamp",
            body.clone(),
            None,
            Some(good.clone()),
            "missing_signature",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(ts),
            Some(signature("other", ts, &body)),
            "bad_signature",
        ),
        (
            "tampered body",
            event_body("evt-y", "low_credit"),
            Some(ts),
            Some(good.clone()),
            "bad_signature",
        ),
        (
            "no sha256= prefix",
            body.clone(),
            Some(ts),
            Some(good.trim_start_matches("sha256=").to_owned()),
            "bad_signature",
        ),
        (
            "stale",
            body.clone(),
            Some(ts - 360),
            Some(signature(SECRET, ts - 360, &body)),
            "stale_timestamp",
        ),
        (
            "future",
            body.clone(),
            Some(ts + 360),
            Some(signature(SECRET, ts + 360, &body)),
            "stale_timestamp",
        ),
    ];
    for (name, b, t, s, reason) in cases {
        let (status, text) = post(&h.url, &b, t, s).await;
        assert_eq!(status, 401, "{name}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], reason, "{name}");
        assert!(
            !text.contains(&good[7..]),
            "{name}: the expected signature must not be revealed"
        );
    }
    // Nothing refused was stored or sent: the one valid event sent afterwards is the only
    // thing in the store and the only message at Slack (so the forwarder did run).
    let stats = h.relay.spool.stats().await.unwrap();
    assert_eq!(stats.pending + stats.delivered + stats.dead, 0);
    assert_eq!(deliver(&h.url, "evt-valid", "low_credit").await, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.received().len(), 1);
    assert!(got[0].to_string().contains("evt-valid"));
    let stats = wait_stats(&h.relay, |s| s.delivered == 1).await;
    assert_eq!((stats.pending, stats.delivered, stats.dead), (0, 1, 0));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_500_three_times_then_ok_delivers_once() {
    let slack = FakeSlack::start();
    slack.script(vec![
        Answer::Status(500, "rollup_error"),
        Answer::Status(500, "rollup_error"),
        Answer::Status(500, "rollup_error"),
    ]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-500", "outbid").await, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(slack.received().len(), 4, "three failures, one success");
    // Counters move once the relay has the answer; the store records it last.
    wait_stats(&h.relay, |s| s.delivered >= 1).await;
    assert_metrics(
        &endpoint(&h, "metrics").await,
        &[
            "vslack_retried_total 3",
            "vslack_slack_request_seconds_count 4",
        ],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slack.delivered().len(), 1);
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_429_is_waited_out_for_retry_after() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::RateLimited(1)]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-429", "outbid").await, 204);
    wait_delivered(&slack, 1, Duration::from_secs(10)).await;
    let r = slack.received();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].status_returned, 429);
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before Retry-After"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_429s_back_off_above_retry_after_and_count_toward_max_age() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::RateLimited(1); 50]);
    let h = start(&slack.url(), |o| {
        o.forward.max_age = Duration::from_secs(3);
        o.forward.retry_max = Duration::from_secs(30);
    })
    .await;
    assert_eq!(deliver(&h.url, "evt-429-forever", "outbid").await, 204);
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        wait_stats(&h.relay, |s| s.dead == 1),
    )
    .await
    .expect("an event only ever answered 429 was never dead-lettered");
    // What is left pending is the relay's alert about it (never given up on).
    let pending = h.relay.spool.list(0, 10).await.unwrap();
    assert_eq!(pending.len() as i64, s.pending);
    assert!(
        pending.iter().all(|q| q.event.alert.is_some()),
        "{pending:?}"
    );
    let r = slack.received();
    assert!(r.iter().all(|x| x.status_returned == 429));
    let gaps: Vec<Duration> = r
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(950)),
        "never before Retry-After: {gaps:?}"
    );
    assert!(
        gaps.iter().any(|g| *g >= Duration::from_millis(1900)),
        "the waits grow beyond Retry-After: {gaps:?}"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_neither_hold_retries_nor_dead_letter_young_events() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(500, "rollup_error"); 2]);
    let clock = std::sync::Arc::new(vslack::relay::clock::Clock::default());
    let c = clock.clone();
    let h = start(&slack.url(), move |o| {
        o.forward.clock = c;
        o.forward.retry_initial = Duration::from_millis(300);
        o.forward.retry_max = Duration::from_millis(600);
    })
    .await;
    // Accepted (signed with the real time), then the first post fails and a retry is due in
    // well under a second; now the wall clock is stepped back 240 s.
    assert_eq!(deliver(&h.url, "evt-step-back", "outbid").await, 204);
    wait_arrived(&slack, 1).await;
    clock.step_wall(-240_000);
    let s = wait_stats(&h.relay, |s| s.delivered == 1).await;
    assert_eq!(
        s.delivered, 1,
        "the retry waited for the stepped-back wall clock"
    );
    let health = endpoint(&h, "health").await;
    assert!(
        !health.contains("\"oldest_pending_age_secs\":-"),
        "{health}"
    );
    // Forward 25 h with an event waiting: it is young, whatever the wall clock says.
    clock.step_wall(240_000);
    slack.script(vec![Answer::Status(500, "rollup_error"); 2]);
    assert_eq!(deliver(&h.url, "evt-step-fwd", "outbid").await, 204);
    wait_arrived(&slack, 4).await;
    clock.step_wall(25 * 3600 * 1000);
    let s = wait_stats(&h.relay, |s| s.delivered == 2).await;
    assert_eq!(
        (s.delivered, s.dead),
        (2, 0),
        "dead-lettered by a clock step"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_410_dead_letters_while_later_events_flow() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Status(410, "channel_is_archived")]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-dead", "low_credit").await, 204);
    wait_stats(&h.relay, |s| s.dead >= 1).await;
    assert_eq!(deliver(&h.url, "evt-after", "low_credit").await, 204);
    let got = wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].to_string().contains("evt-after"));
    let stats = wait_stats(&h.relay, |s| s.pending == 0).await;
    assert_eq!((stats.dead, stats.delivered, stats.pending), (1, 1, 0));
    let dead = h
        .relay
        .spool
        .list(vslack::relay::spool::DEAD, 10)
        .await
        .unwrap();
    assert_eq!(dead[0].event.event_id, "evt-dead");
    assert!(dead[0].last_error.as_deref().unwrap().contains("410"));
    let health: Value = serde_json::from_str(&endpoint(&h, "health").await).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["dead_letters"], 1);
    assert_metrics(
        &endpoint(&h, "metrics").await,
        &[
            "vslack_dead_lettered_total 1",
            "vslack_dead_letters 1",
            "vslack_delivered_total 1",
        ],
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_sent_as_digests_within_slack_limits() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| {
        o.forward.pace = Duration::from_millis(300)
    })
    .await;
    let ids: Vec<String> = (0..120).map(|i| format!("evt-backlog-{i:04}")).collect();
    for id in &ids {
        assert_eq!(deliver(&h.url, id, "instance_stopped").await, 204);
    }
    wait_stats(&h.relay, |s| s.pending == 0).await;
    let messages = slack.delivered();
    assert!(
        messages.len() < ids.len() / 2,
        "{} messages for {} events: not digested",
        messages.len(),
        ids.len()
    );
    assert!(
        carried_ids(&messages, &ids).iter().all(|&n| n == 1),
        "every id exactly once"
    );
    // Every message fitted Slack's limits the first time: none was refused (a refused digest
    // would be split and delivered anyway, hiding an oversize one).
    let r = slack.received();
    for m in &r {
        assert_eq!(m.status_returned, 200, "refused: {}", m.body);
        assert!(m.body["blocks"].as_array().unwrap().len() <= 50);
        assert!(m.body["text"].as_str().unwrap().chars().count() <= 4000);
    }
    // Paced: consecutive messages at least ~the pace apart.
    for w in r.windows(2) {
        assert!(w[1].at.duration_since(w[0].at) >= Duration::from_millis(250));
    }
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_triggers_get_flat_string_variables_and_routes_apply() {
    let slack = FakeSlack::start();
    let trigger = slack.trigger_url();
    let h = start(&slack.url(), |o| {
        o.destinations.insert(
            0,
            Destination::new(
                "instance_*",
                Some(glob::Pattern::new("instance_*").unwrap()),
                Some(Secret::new(&trigger)),
                Format::for_url(&trigger).unwrap(),
            ),
        );
    })
    .await;
    assert_eq!(deliver(&h.url, "evt-inst", "instance_started").await, 204);
    assert_eq!(deliver(&h.url, "evt-bill", "low_credit").await, 204);
    wait_delivered(&slack, 2, Duration::from_secs(5)).await;
    let r = slack.received();
    let wf = r
        .iter()
        .find(|x| x.path.contains("/triggers/"))
        .expect("routed to the trigger");
    assert!(wf.body["vast_notification_message"]
        .as_str()
        .unwrap()
        .contains("evt-inst"));
    assert!(wf.body.as_object().unwrap().values().all(Value::is_string));
    let svc = r
        .iter()
        .find(|x| x.path.contains("/services/"))
        .expect("default destination");
    assert!(svc.body.to_string().contains("evt-bill"));
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_methods_paths_and_bad_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |_| {}).await;
    let addr = h.relay.addr;
    // A Content-Length over the limit is refused before the body is read.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n{}")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A chunked body (no Content-Length) is cut off at the limit.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'a'; 16 * 1024];
    // The relay may answer and close before the last chunk is written: a failed write here
    // is expected, the answer read below is what counts.
    for _ in 0..5 {
        let _ = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    // Methods and paths.
    let c = vslack::http::client();
    let r = c.get(&h.url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(c.delete(&h.url).send().await.unwrap().status(), 405);
    assert_eq!(
        c.post(format!("{}health", h.url))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    assert_eq!(
        c.get(format!("{}nope", h.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Signed but not JSON / not an object.
    for (body, reason) in [
        (&b"{not json"[..], "invalid_json"),
        (&b"[1,2]"[..], "invalid_payload"),
    ] {
        let ts = now();
        let (status, text) = post(&h.url, body, Some(ts), Some(signature(SECRET, ts, body))).await;
        assert_eq!(status, 400);
        assert!(text.contains(reason), "{text}");
    }
    // Health and metrics.
    assert_eq!(deliver(&h.url, "evt-m", "low_credit").await, 204);
    wait_delivered(&slack, 1, Duration::from_secs(5)).await;
    wait_stats(&h.relay, |s| s.delivered >= 1).await;
    let health: Value = serde_json::from_str(&endpoint(&h, "health").await).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["delivered"], 1);
    assert!(health["last_delivery_at"].as_i64().is_some());
    assert_metrics(
        &endpoint(&h, "metrics").await,
        &[
            "vslack_received_total{outcome=\"stored\"} 1",
            "vslack_received_total{outcome=\"too_large\"} 2",
            "vslack_received_total{outcome=\"invalid_json\"} 2",
            "vslack_delivered_total 1",
            "vslack_queue_depth 0",
            "vslack_slack_request_seconds_count 1",
        ],
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_answers_503_and_acknowledges_nothing_unstored() {
    let slack = FakeSlack::start();
    // Slack is down, so stored events stay in the store and fill it.
    slack.script(
        (0..10_000)
            .map(|_| Answer::Status(500, "rollup_error"))
            .collect(),
    );
    let h = start(&slack.url(), |o| {
        o.spool.max_bytes = Some(256 * 1024);
        o.forward.retry_initial = Duration::from_secs(60);
    })
    .await;
    let filler = "x".repeat(8 * 1024);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let id = format!("evt-full-{i}");
        let body =
            json!({"event_id": id, "notif_type": "low_credit", "message": filler}).to_string();
        let ts = now();
        let (status, text) = post(
            &h.url,
            body.as_bytes(),
            Some(ts),
            Some(signature(SECRET, ts, body.as_bytes())),
        )
        .await;
        match status {
            204 => acked.push(id),
            503 => {
                assert!(text.contains("store_unavailable"));
                refused += 1;
            }
            s => panic!("unexpected {s}: {text}"),
        }
    }
    assert!(refused > 0, "the store never filled up");
    assert!(!acked.is_empty());
    // Every acknowledged event is in the store, no refused one is.
    let pending = h
        .relay
        .spool
        .list(vslack::relay::spool::PENDING, 1000)
        .await
        .unwrap();
    let stored: Vec<String> = pending.iter().map(|q| q.event.event_id.clone()).collect();
    assert_eq!(stored, acked);
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_frees_room_and_accepts_again_without_a_restart() {
    let slack = FakeSlack::start();
    // Slack is down while the store fills, then recovers.
    slack.script(vec![Answer::Status(500, "rollup_error"); 40]);
    let h = start(&slack.url(), |o| {
        o.spool.max_bytes = Some(256 * 1024);
        o.forward.retry_initial = Duration::from_millis(100);
        o.forward.retry_max = Duration::from_millis(200);
    })
    .await;
    let filler = "x".repeat(8 * 1024);
    let send = |i: usize| {
        let body = json!({"event_id": format!("evt-room-{i}"), "notif_type": "low_credit", "message": filler})
            .to_string();
        let url = h.url.clone();
        async move {
            let ts = now();
            post(
                &url,
                body.as_bytes(),
                Some(ts),
                Some(signature(SECRET, ts, body.as_bytes())),
            )
            .await
        }
    };
    let mut acked = 0;
    let mut i = 0;
    loop {
        let (status, _) = send(i).await;
        i += 1;
        match status {
            204 => acked += 1,
            503 => break,
            s => panic!("unexpected {s}"),
        }
        assert!(i < 500, "the store never filled up");
    }
    let health = endpoint(&h, "health").await;
    assert!(
        health.contains("\"failing\"") && health.contains("full"),
        "{health}"
    );
    // Slack recovers; everything acknowledged is delivered.
    let stats = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let s = h.relay.spool.stats().await.unwrap();
            if s.pending == 0 && s.delivered == acked {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the acknowledged events were not all delivered");
    assert_eq!(stats.dead, 0);
    // The store makes room by itself (delivered bodies) and takes new events again.
    for j in 0..3 {
        let (status, text) = send(1000 + j).await;
        assert_eq!(
            status, 204,
            "still refused after delivery freed room: {text}"
        );
    }
    let health = endpoint(&h, "health").await;
    assert!(!health.contains("failing"), "{health}");
    let messages = slack.delivered();
    let ids: Vec<String> = (0..i).map(|k| format!("evt-room-{k}")).collect();
    assert!(
        carried_ids(&messages, &ids).iter().all(|&n| n <= 1),
        "an event was posted twice"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_slack_refuses_is_split_and_nothing_is_dead_lettered() {
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| {
        o.forward.pace = Duration::from_millis(300)
    })
    .await;
    let ids: Vec<String> = (0..6).map(|i| format!("evt-split-{i}")).collect();
    // Slack holds the first message while the backlog arrives; the next message (a digest of
    // that backlog) is refused as a bad payload.
    slack.script(vec![Answer::Hold, Answer::Status(400, "invalid_blocks")]);
    assert_eq!(deliver(&h.url, &ids[0], "low_credit").await, 204);
    wait_arrived(&slack, 1).await;
    for id in &ids[1..] {
        assert_eq!(deliver(&h.url, id, "low_credit").await, 204);
    }
    slack.release();
    let stats = wait_stats(&h.relay, |s| s.pending == 0).await;
    assert_eq!((stats.dead, stats.pending, stats.delivered), (0, 0, 6));
    let refused = slack
        .received()
        .into_iter()
        .find(|r| r.status_returned == 400)
        .expect("a refused digest");
    assert!(
        refused.body["blocks"].as_array().unwrap().len() > 4,
        "the refused message was a digest"
    );
    assert!(carried_ids(&slack.delivered(), &ids)
        .iter()
        .all(|&n| n == 1));
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_slack_does_not_slow_the_answers_to_vast() {
    let slack = FakeSlack::start();
    slack.script(vec![Answer::Hold]);
    let h = start(&slack.url(), |_| {}).await;
    assert_eq!(deliver(&h.url, "evt-slow-0", "low_credit").await, 204);
    // Wait until the forwarder's request is at Slack (which holds it), then deliver more.
    wait_arrived(&slack, 1).await;
    // Slack answers nothing until released, so every answer below must come without it:
    // answers to Vast.ai never wait for Slack (a relay that did would time out here).
    for i in 1..20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            deliver(&h.url, &format!("evt-slow-{i}"), "low_credit"),
        )
        .await
        .expect("answered while Slack holds the first message");
        assert_eq!(answer, 204);
    }
    let ids: Vec<String> = (0..20).map(|i| format!("evt-slow-{i}")).collect();
    slack.release();
    wait_stats(&h.relay, |s| s.pending == 0).await;
    assert!(carried_ids(&slack.delivered(), &ids)
        .iter()
        .all(|&n| n == 1));
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_dead_letters_and_dropped_ids_stay_deduplicated() {
    use vslack::relay::event::Event;
    use vslack::relay::spool::{Inserted, Spool, DEAD, PENDING};
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("s.sqlite3"), &SpoolOptions::default()).unwrap();
    let ev = |id: &str| Event::parse(&event_body(id, "low_credit"), None, now()).unwrap();
    for id in ["delivered", "dead", "dropped"] {
        assert_eq!(spool.insert(ev(id), vec![]).await.unwrap(), Inserted::New);
    }
    let rows = spool.list(PENDING, 10).await.unwrap();
    spool
        .mark_delivered(vec![rows[0].seq], now() - 10)
        .await
        .unwrap();
    spool
        .mark_dead(vec![rows[1].seq], "HTTP 410".into(), now() - 10)
        .await
        .unwrap();
    assert_eq!(spool.remove(vec![rows[2].seq]).await.unwrap(), 1);
    // A dropped event is not queued again when Vast.ai redelivers it.
    assert_eq!(
        spool.insert(ev("dropped"), vec![]).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(spool.list(PENDING, 10).await.unwrap().len(), 0);
    // The newest row is always kept (so row numbers are never reused); queue one after them.
    assert_eq!(
        spool.insert(ev("newest"), vec![]).await.unwrap(),
        Inserted::New
    );
    // Pruning forgets delivered and dropped ids, never a dead letter.
    assert_eq!(spool.prune(now() + 3600, 0).await.unwrap(), 2);
    let dead = spool.list(DEAD, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.event_id, "dead");
    assert_eq!(
        spool.insert(ev("delivered"), vec![]).await.unwrap(),
        Inserted::New,
        "forgotten after retention"
    );
    // Retrying every dead letter puts the one there is back in the queue.
    assert_eq!(spool.requeue(None).await.unwrap(), 1);
    assert!(spool.list(DEAD, 10).await.unwrap().is_empty());
    let pending = spool.list(PENDING, 10).await.unwrap();
    assert!(pending.iter().any(|q| q.event.event_id == "dead"));
    // The counts kept along the way (no query per /health) match a count from scratch.
    let kept = spool.stats().await.unwrap();
    let fresh = Spool::open(&dir.path().join("s.sqlite3"), &SpoolOptions::default())
        .unwrap()
        .stats()
        .await
        .unwrap();
    assert_eq!((kept.pending, kept.dead, kept.delivered), (3, 0, 0));
    assert_eq!(
        (
            kept.pending,
            kept.dead,
            kept.delivered,
            kept.oldest_pending_at
        ),
        (
            fresh.pending,
            fresh.dead,
            fresh.delivered,
            fresh.oldest_pending_at
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_sharing_a_slack_url_share_its_pace() {
    let slack = FakeSlack::start();
    let url = slack.url();
    let h = start(&url, |o| {
        o.forward.pace = Duration::from_millis(400);
        o.destinations.insert(
            0,
            Destination::new(
                "instance_*",
                Some(glob::Pattern::new("instance_*").unwrap()),
                Some(Secret::new(&url)),
                Format::Text,
            ),
        );
    })
    .await;
    assert_eq!(
        deliver(&h.url, "evt-route-a", "instance_started").await,
        204
    );
    assert_eq!(deliver(&h.url, "evt-route-b", "low_credit").await, 204);
    let got = wait_delivered(&slack, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    let r = slack.received();
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(350),
        "two messages to one URL {gap:?} apart"
    );
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_a_slow_body_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| {
        o.limits.header_timeout = Duration::from_millis(300);
        o.limits.request_timeout = Duration::from_millis(500);
    })
    .await;
    // Headers that never finish: the connection is closed.
    let mut s = tokio::net::TcpStream::connect(h.relay.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A body that trickles past the request deadline: 408, nothing stored.
    let mut s = tokio::net::TcpStream::connect(h.relay.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(h.relay.spool.stats().await.unwrap().pending, 0);
    stop(h.relay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_an_idle_connection_gives_way_to_a_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let slack = FakeSlack::start();
    let h = start(&slack.url(), |o| o.limits.max_connections = 1).await;
    // One idle keep-alive connection holds the only slot.
    let mut first = tokio::net::TcpStream::connect(h.relay.addr).await.unwrap();
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A second client is served at once (the old code kept it waiting until the first left)...
    let mut second = tokio::net::TcpStream::connect(h.relay.addr).await.unwrap();
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("served while an idle connection held the cap")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...and the idle one was closed to make room.
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .expect("the idle connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without another answer");
    stop(h.relay).await;
}

/// Shut the relay down, bounded: a shutdown that hangs fails the test with this message.
pub async fn stop(relay: Relay) {
    tokio::time::timeout(Duration::from_secs(30), relay.shutdown())
        .await
        .expect("the relay did not shut down within 30 s");
}
