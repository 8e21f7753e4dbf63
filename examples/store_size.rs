//! Bytes per event in the store: N Vast.ai-like events stored, delivered, and then past
//! `--keep-bodies` (their raw bodies dropped). The file is checkpointed and vacuumed before
//! each measurement, so the figure is what the data needs, not free pages.
//!
//! `cargo run --release --example store_size [-- N]` (default 20,000).

use std::time::Instant;

use vslack::relay::event::Delivery;
use vslack::relay::spool::{Spool, PENDING};

fn size(path: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite3");
    let spool = Spool::open(&path, &Default::default()).unwrap();
    let started = Instant::now();
    for i in 0..n {
        // The shape and size of a real delivery (Python's json.dumps separators).
        let body = format!(
            "{{\"event_id\": \"{:032x}\", \"user_id\": 123456, \"notif_type\": \"instance_stopped\", \"subject\": \"Instance 9{i:06} stopped\", \"message\": \"Your instance 9{i:06} (RTX 4090) was stopped because your credit ran out.\", \"timestamp\": 1772490000.123456}}",
            i as u128 * 0x9e37_79b9_7f4a_7c15
        );
        // As the relay receives it: the event is read from the body (see `Delivery`).
        let d = Delivery::parse(body.into_bytes(), None, 1_772_490_000).unwrap();
        spool.insert_delivery(d).await.unwrap();
    }
    let stored = started.elapsed();
    drop(spool);
    let pending = size(&path);
    let spool = Spool::open(&path, &Default::default()).unwrap();
    loop {
        let rows = spool.list(PENDING, 10_000).await.unwrap();
        if rows.is_empty() {
            break;
        }
        spool
            .mark_delivered(rows.iter().map(|q| q.seq).collect(), 1_772_490_100)
            .await
            .unwrap();
    }
    drop(spool);
    let delivered = size(&path);
    let spool = Spool::open(&path, &Default::default()).unwrap();
    spool.prune(0, i64::MAX).await.unwrap();
    drop(spool);
    let lean = size(&path);
    println!("{n} events stored in {:.1} s", stored.as_secs_f64());
    for (what, bytes) in [
        ("pending", pending),
        ("delivered, body kept (--keep-bodies)", delivered),
        ("delivered, body dropped (dedup window)", lean),
    ] {
        println!("{what:<40} {:>6} bytes/event", bytes / n as u64);
    }
}
