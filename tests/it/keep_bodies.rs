//! Bodies past `--keep-bodies`: a delivery is kept as its body; once delivered and past the
//! window, what the body holds beyond the event goes (the event's JSON takes its place where
//! that is smaller), every event stays readable, and redeliveries stay duplicates.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::relay::{deliver, event_body, now, post, signature, start, stop, wait_stats, SECRET};
use crate::support::fake_slack::FakeSlack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_bodies_are_dropped_after_keep_bodies_and_dedup_stays() {
    let slack = FakeSlack::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spool.sqlite3");
    let f = file.clone();
    let h = start(&slack.url(), move |o| {
        o.forward.keep_bodies = Duration::from_secs(1);
        o.spool_path = f;
    })
    .await;
    // A plain delivery, and one whose body carries 4 kB more than its event.
    assert_eq!(deliver(&h.url, "evt-body-1", "outbid").await, 204);
    let mut big: serde_json::Value =
        serde_json::from_slice(&event_body("evt-body-2", "outbid")).unwrap();
    big["instance"] = json!("i".repeat(4000));
    let big = big.to_string().into_bytes();
    let ts = now();
    let sent = post(&h.url, &big, Some(ts), Some(signature(SECRET, ts, &big))).await;
    assert_eq!(sent.0, 204);
    wait_stats(&h.relay, |s| s.delivered == 2).await;
    let row = |id: &str| {
        let c = rusqlite::Connection::open_with_flags(
            &file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        c.query_row(
            "SELECT length(body), state, event FROM events WHERE event_id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .unwrap()
    };
    for id in ["evt-body-1", "evt-body-2"] {
        let (len, _, column) = row(id);
        assert!(len > 0, "kept right after delivery");
        assert!(
            !column.starts_with('{'),
            "a delivery's event is kept as its body, not as JSON beside it: {column}"
        );
    }
    let start = Instant::now();
    while row("evt-body-2").0 > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the body was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, state, column) = row("evt-body-2");
    assert_eq!(state, 1, "still remembered (delivered) for deduplication");
    assert!(
        column.starts_with('{') && column.len() < 1000,
        "its JSON took the body's place: {column}"
    );
    // The plain body is its event's smallest form: it stays, and nothing grew.
    let (len, _, column) = row("evt-body-1");
    assert!(!column.starts_with('{'), "{column}");
    assert_eq!(len as usize, event_body("evt-body-1", "outbid").len());
    let kept = h
        .relay
        .spool
        .list(vslack::relay::spool::DELIVERED, 10)
        .await
        .unwrap();
    let read: Vec<_> = kept
        .iter()
        .map(|q| (q.event.event_id.as_str(), q.event.subject.as_deref()))
        .collect();
    assert_eq!(
        read,
        [
            ("evt-body-1", Some("Subject evt-body-1")),
            ("evt-body-2", Some("Subject evt-body-2"))
        ],
        "the events are still readable"
    );
    assert_eq!(deliver(&h.url, "evt-body-1", "outbid").await, 204);
    assert_eq!(deliver(&h.url, "evt-body-2", "outbid").await, 204);
    let st = h.relay.spool.stats().await.unwrap();
    assert_eq!(
        (st.pending, st.delivered),
        (0, 2),
        "redeliveries are still duplicates"
    );
    stop(h.relay).await;
}
