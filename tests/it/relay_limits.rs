//! The relay in-process: what its listener refuses and bounds (signatures, methods, paths,
//! sizes, slow clients, the connection cap), and that a slow Slack does not slow the answers.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::relay::*;
use crate::support::fake_slack::{Answer, FakeSlack};

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
