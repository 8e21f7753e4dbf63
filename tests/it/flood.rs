//! An idle-connection flood against the real relay process: one client holds 1,500
//! connections open and reopens each as soon as it is closed; a signed delivery from another
//! client must still be answered promptly (the relay closes idle connections to make room
//! instead of leaving new ones in the kernel's backlog).
//!
//! The p99 figure is measured by `cargo run --release --example flood`; this test asserts a
//! bound far above it and far below what waiting in the backlog costs (the header timeout).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::common::Env;
use crate::relay::{carried_ids, event_body, now, signature, SECRET};
use crate::relay_process::serve;
use crate::support::fake_slack::FakeSlack;

/// Hold a connection from 127.0.0.2 open until the relay closes it, then open another.
async fn hold_open(addr: SocketAddr, stop: Arc<AtomicBool>, open: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let Ok(mut stream) = sock.connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        open.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        tokio::select! {
            _ = stream.read(&mut buf) => {}
            _ = async { while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } } => {}
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        assert!(
            lim.rlim_max >= 4096,
            "this test needs 4,096 open files (hard limit {}): raise `ulimit -Hn`",
            lim.rlim_max
        );
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_does_not_delay_a_signed_delivery() {
    raise_open_files();
    let slack = FakeSlack::start();
    let mut env = Env::new();
    env.set("SLACK_WEBHOOK_URL", &slack.url());
    env.set("VAST_WEBHOOK_SECRET", SECRET);
    env.secret(SECRET);
    // Default cap (1,024) and timeouts: the flood is larger than the cap.
    let relay = serve(&env, &[]);
    let addr: SocketAddr = relay
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..1500)
        .map(|_| tokio::spawn(hold_open(addr, stop.clone(), open.clone())))
        .collect();
    // The flood is past the cap (1,024) once most of its connections are open.
    let start = Instant::now();
    while open.load(Ordering::Relaxed) < 1100 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the flood never reached the cap ({} open)",
            open.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut took = Vec::new();
    for i in 0..20 {
        let id = format!("evt-flood-{i}");
        let body = event_body(&id, "instance_stopped");
        let ts = now();
        // A new connection each time, as Vast.ai's deliveries arrive.
        let client = vslack::http::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let t = Instant::now();
        let r = client
            .post(&relay.url)
            .header("Content-Type", "application/json")
            .header("X-Vast-Timestamp", ts.to_string())
            .header("X-Vast-Signature-256", signature(SECRET, ts, &body))
            .body(body)
            .send()
            .await
            .expect("the delivery got an answer");
        took.push(t.elapsed());
        assert_eq!(r.status(), 204, "delivery {i}");
    }
    let held = open.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    took.sort();
    let worst = *took.last().unwrap();
    // Waiting in the backlog for an idle connection to time out costs the header timeout
    // (10 s); making room costs microseconds. Two seconds separates them on a busy machine.
    assert!(
        worst < Duration::from_secs(2),
        "slowest of 20 deliveries under the flood took {worst:?} (median {:?}); the flood held {held} open",
        took[took.len() / 2]
    );
    assert!(
        relay.logged("at the connection cap"),
        "the relay says it is closing idle connections"
    );
    assert!(held >= 900, "the flood held only {held} connections open");
    let ids: Vec<String> = (0..20).map(|i| format!("evt-flood-{i}")).collect();
    let start = Instant::now();
    loop {
        let carried = carried_ids(&slack.delivered(), &ids);
        if carried.iter().all(|&n| n == 1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "each delivery reaches Slack once: {carried:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
