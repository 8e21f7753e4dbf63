//! The relay in-process with a full store (503, acknowledging nothing unstored, room freed
//! without a restart) and retention (dead letters kept, dropped ids still deduplicated).

use std::time::Duration;

use serde_json::json;
use vslack::relay::spool::SpoolOptions;

use crate::relay::*;
use crate::support::fake_slack::{Answer, FakeSlack};

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
