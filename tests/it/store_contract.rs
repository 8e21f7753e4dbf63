//! The store's contract, one suite run against both backends (SQLite, and PostgreSQL on a
//! throwaway cluster): dedup by event id, due order and retry times, outcomes that apply only
//! to pending rows, dead letters and requeue, drop that keeps deduplicating, retention that
//! never forgets a pending event, alerts first, and counts that match what is stored.

use std::future::Future;
use std::pin::Pin;

use vslack::relay::event::{Delivery, Event};
use vslack::relay::spool::{Inserted, Location, Progress, Spool, SpoolOptions, DEAD, PENDING};
use vslack::secret::Secret;

use crate::relay::{event_body, now};
use crate::support::postgres::Postgres;

type Check = fn(Spool) -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn ev(id: &str, kind: &str) -> Event {
    Event::parse(&event_body(id, kind), None, now()).unwrap()
}

/// Store a delivery as the relay does (its event read from its body), and its number.
async fn put(s: &Spool, id: &str) -> i64 {
    let d = Delivery::parse(event_body(id, "low_credit"), None, now()).unwrap();
    assert_eq!(s.insert_delivery(d).await.unwrap(), Inserted::New);
    s.list(PENDING, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.event.event_id == id)
        .expect("just inserted")
        .seq
}

/// The sequence numbers of the first `limit` pending events, in order.
pub async fn pending_seqs(s: &Spool, limit: usize) -> Vec<i64> {
    s.list(PENDING, limit)
        .await
        .unwrap()
        .iter()
        .map(|q| q.seq)
        .collect()
}

fn dedup(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        put(&s, "a").await;
        assert_eq!(
            s.insert(ev("a", "low_credit"), vec![]).await.unwrap(),
            Inserted::Duplicate
        );
        let st = s.stats().await.unwrap();
        assert_eq!((st.pending, st.dead, st.delivered), (1, 0, 0));
        assert!(st.oldest_pending_at.is_some());
    })
}

fn due_order_and_retry(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let a = put(&s, "a").await;
        let b = put(&s, "b").await;
        assert!(a < b, "seq follows arrival");
        let t = now() * 1000;
        let due: Vec<i64> = s.due(t, 10).await.unwrap().iter().map(|q| q.seq).collect();
        assert_eq!(due, vec![a, b]);
        s.mark_retry(vec![a], t + 60_000, "HTTP 503".into())
            .await
            .unwrap();
        let due: Vec<i64> = s.due(t, 10).await.unwrap().iter().map(|q| q.seq).collect();
        assert_eq!(due, vec![b], "a waits for its retry time");
        s.mark_delivered(vec![b], now()).await.unwrap();
        assert_eq!(s.next_due().await.unwrap(), Some(t + 60_000));
        let waiting = &s.list(PENDING, 10).await.unwrap()[0];
        assert_eq!(
            (waiting.attempts, waiting.last_error.as_deref()),
            (1, Some("HTTP 503"))
        );
        assert_eq!(s.retry_now().await.unwrap(), 1);
        assert_eq!(s.due(t, 10).await.unwrap().len(), 1, "due again at once");
        assert_eq!(s.due(t, 1).await.unwrap().len(), 1, "the limit holds");
    })
}

fn outcomes_apply_to_pending_only(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let a = put(&s, "a").await;
        s.mark_delivered(vec![a], now()).await.unwrap();
        // A late outcome (another relay's, a repeated write) changes nothing.
        s.mark_dead(vec![a], "late".into(), now()).await.unwrap();
        s.mark_delivered(vec![a], now()).await.unwrap();
        let st = s.stats().await.unwrap();
        assert_eq!((st.pending, st.dead, st.delivered), (0, 0, 1));
        assert_eq!(
            st.last_delivered_at.map(|t| (t - now()).abs() < 5),
            Some(true)
        );
        assert!(s.list(DEAD, 10).await.unwrap().is_empty());
    })
}

fn dead_letters_and_requeue(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let a = put(&s, "a").await;
        let b = put(&s, "b").await;
        s.mark_dead(vec![a, b], "HTTP 404 no_service".into(), now())
            .await
            .unwrap();
        let dead = s.list(DEAD, 10).await.unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].state, "dead");
        assert_eq!(s.requeue(Some(vec![a])).await.unwrap(), 1);
        assert_eq!(
            s.requeue(Some(vec![a])).await.unwrap(),
            0,
            "already pending"
        );
        let st = s.stats().await.unwrap();
        assert_eq!((st.pending, st.dead), (1, 1));
        let back = &s.list(PENDING, 10).await.unwrap()[0];
        assert_eq!((back.seq, back.attempts), (a, 0));
        assert_eq!(
            (back.event.event_id.as_str(), back.event.subject.as_deref()),
            ("a", Some("Subject a")),
            "the event reads back whole"
        );
        assert_eq!(s.requeue(None).await.unwrap(), 1);
        assert_eq!(s.stats().await.unwrap().pending, 2);
        let due = s.due(i64::MAX, 10).await.unwrap();
        assert_eq!(due[1].event.message.as_deref(), Some("Message for b"));
    })
}

fn drop_keeps_deduplicating(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let a = put(&s, "a").await;
        assert_eq!(s.remove(vec![a]).await.unwrap(), 1);
        assert_eq!(s.remove(vec![a]).await.unwrap(), 0);
        assert!(s.due(i64::MAX, 10).await.unwrap().is_empty());
        assert_eq!(
            s.insert(ev("a", "low_credit"), vec![]).await.unwrap(),
            Inserted::Duplicate
        );
        assert_eq!(s.list_range(a, a, 10).await.unwrap()[0].state, "dropped");
    })
}

fn retention_never_forgets_pending(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let done = put(&s, "done").await;
        let dead = put(&s, "dead").await;
        put(&s, "waiting").await;
        s.mark_delivered(vec![done], now() - 100).await.unwrap();
        s.mark_dead(vec![dead], "HTTP 410".into(), now() - 100)
            .await
            .unwrap();
        assert_eq!(
            s.prune(now() + 3600, now() + 3600).await.unwrap(),
            1,
            "only the delivered one"
        );
        let st = s.stats().await.unwrap();
        assert_eq!((st.pending, st.dead, st.delivered), (1, 1, 0));
        assert_eq!(
            s.insert(ev("done", "low_credit"), vec![]).await.unwrap(),
            Inserted::New,
            "forgotten"
        );
        assert_eq!(
            s.insert(ev("waiting", "low_credit"), vec![]).await.unwrap(),
            Inserted::Duplicate
        );
    })
}

fn alerts_first_and_backlog_age(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        put(&s, "v1").await;
        let alert = ev("vslack-alert:backlog:1", "vslack_alert");
        assert_eq!(s.insert(alert, vec![]).await.unwrap(), Inserted::New);
        let alerts = s.due_alerts(i64::MAX, 10).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].event.notif_type, "vslack_alert");
        assert!(s.oldest_event_pending().await.unwrap().is_some());
        let mut by_type = s.pending_by_type().await.unwrap();
        by_type.sort();
        assert_eq!(
            by_type,
            vec![("low_credit".into(), 1), ("vslack_alert".into(), 1)]
        );
        let seqs = pending_seqs(&s, 10).await;
        s.mark_delivered(vec![seqs[0]], now()).await.unwrap();
        assert_eq!(
            s.oldest_event_pending().await.unwrap(),
            None,
            "alerts are not the backlog"
        );
    })
}

/// Events going to several destinations: their legs are written with the event, to pending
/// events only; a requeued dead letter forgets the destinations that refused it (so they are
/// tried again) and keeps those that have it; and it ages from the requeue.
fn legs_progress_and_requeue(s: Spool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let a = put(&s, "a").await;
        let mut e = s.list(PENDING, 10).await.unwrap()[0].event.clone();
        e.legs.sent.push("slack-digest".into());
        e.legs
            .dead
            .insert("pager-digest".into(), "HTTP 400 invalid".into());
        let update = |e: &Event, next_ms| Progress {
            seq: a,
            event: serde_json::to_string(e).unwrap(),
            next_ms,
            error: Some("HTTP 400 invalid".into()),
        };
        s.mark_progress(vec![update(&e, 12_345)]).await.unwrap();
        let q = &s.list(PENDING, 10).await.unwrap()[0];
        assert_eq!((q.attempts, q.next_attempt_ms), (1, 12_345));
        assert_eq!(q.event.legs, e.legs);
        assert_eq!(q.last_error.as_deref(), Some("HTTP 400 invalid"));
        s.mark_dead(vec![a], "HTTP 400 invalid".into(), now())
            .await
            .unwrap();
        // A dead letter takes no progress.
        let mut later = e.clone();
        later.legs.sent.push("other".into());
        s.mark_progress(vec![update(&later, 1)]).await.unwrap();
        let dead = &s.list(DEAD, 10).await.unwrap()[0];
        assert_eq!(dead.event.legs, e.legs);
        let old = dead.event.received_at;
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(s.requeue(Some(vec![a])).await.unwrap(), 1);
        let back = &s.list(PENDING, 10).await.unwrap()[0];
        assert_eq!(back.event.legs.sent, vec!["slack-digest".to_owned()]);
        assert!(back.event.legs.dead.is_empty(), "{:?}", back.event.legs);
        assert!(
            back.event.received_at > old,
            "a requeued event ages from the requeue"
        );
        assert_eq!(back.event.event_id, "a");
    })
}

const CHECKS: &[(&str, Check)] = &[
    ("legs_progress_and_requeue", legs_progress_and_requeue),
    ("dedup", dedup),
    ("due_order_and_retry", due_order_and_retry),
    (
        "outcomes_apply_to_pending_only",
        outcomes_apply_to_pending_only,
    ),
    ("dead_letters_and_requeue", dead_letters_and_requeue),
    ("drop_keeps_deduplicating", drop_keeps_deduplicating),
    (
        "retention_never_forgets_pending",
        retention_never_forgets_pending,
    ),
    ("alerts_first_and_backlog_age", alerts_first_and_backlog_age),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_contract() {
    for (name, check) in CHECKS {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s.sqlite3"), &SpoolOptions::default()).unwrap();
        eprintln!("sqlite: {name}");
        check(spool).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    for (name, check) in CHECKS {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(pg.fresh_database().await);
        let spool = Spool::open_at(
            &Location::Postgres(url),
            &dir.path().join("s.sqlite3"),
            &SpoolOptions::default(),
        )
        .await
        .unwrap();
        eprintln!("postgres: {name}");
        check(spool).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_schema_newer_than_the_binary_is_refused_with_a_message() {
    let Some(pg) = Postgres::start() else {
        return; // said loudly by `start`
    };
    let url = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let at = Location::Postgres(Secret::new(url.clone()));
    let path = dir.path().join("s.sqlite3");
    // Two relays starting at once both migrate safely (the migration runs under a lock).
    let opts = SpoolOptions::default();
    let (a, b) = tokio::join!(
        Spool::open_at(&at, &path, &opts),
        Spool::open_at(&at, &path, &opts)
    );
    a.unwrap();
    b.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let v: i64 = client
        .query_one("SELECT version FROM vslack_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, vslack::relay::spool::postgres::schema::CURRENT);
    client
        .execute("UPDATE vslack_schema SET version = 99", &[])
        .await
        .unwrap();
    let err = match Spool::open_at(&at, &path, &opts).await {
        Ok(_) => panic!("a newer schema was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("schema is version 99, newer than this vslack"),
        "{err}"
    );
    assert!(err.contains("upgrade vslack"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_verified_when_the_url_asks_for_it() {
    let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let Some(pg) = Postgres::start_tls(&ca.cert.pem(), &ca.key_pair.serialize_pem()) else {
        return; // said loudly by `start_tls`
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ca.pem");
    std::fs::write(&root, ca.cert.pem()).unwrap();
    let base = pg.fresh_database().await;
    let open = |query: String| {
        let at = Location::Postgres(Secret::new(format!("{base}?{query}")));
        let path = dir.path().join("s.sqlite3");
        async move { Spool::open_at(&at, &path, &SpoolOptions::default()).await }
    };
    // Verified against the certificate named by sslrootcert: stores and reads back.
    let spool = open(format!("sslmode=require&sslrootcert={}", root.display()))
        .await
        .expect("TLS with the server's CA");
    let ev = Event::parse(&event_body("tls-1", "low_credit"), None, now()).unwrap();
    assert_eq!(spool.insert(ev, vec![]).await.unwrap(), Inserted::New);
    // Against the public roots alone, the self-signed server is refused, not used in clear.
    let err = match open("sslmode=require".into()).await {
        Ok(_) => panic!("an unverified server certificate was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(
        err.contains("postgres://127.0.0.1:"),
        "the server is named: {err}"
    );
}
