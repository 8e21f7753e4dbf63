//! Bytes per event in the store: N Vast.ai-like events stored, delivered, and then past
//! `--keep-bodies` (their raw bodies dropped). The file is checkpointed and vacuumed before
//! each measurement, so the figure is what the data needs, not free pages.
//!
//! With `--week RATE [DAYS]`: ten (or DAYS) simulated days of steady traffic, RATE events an hour, each
//! delivered in the hour it arrived, with the relay's hourly pruning at the defaults (bodies
//! dropped after 24 h, events forgotten after 7 days); the file's size (and its WAL's) at the
//! end of each day, never vacuumed: freed pages are reused, so it stops growing once the
//! retention window is full.
//!
//! `cargo run --release --example store_size [-- N]` (default 20,000)
//! `cargo run --release --example store_size -- --week 600`

use std::time::Instant;

use vslack::relay::event::Delivery;
use vslack::relay::spool::{Spool, PENDING};

fn size(path: &std::path::Path) -> u64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// A Vast.ai-shaped body (the size of a real delivery: Python's json.dumps separators).
fn body(i: usize) -> Vec<u8> {
    format!(
        "{{\"event_id\": \"{:032x}\", \"user_id\": 123456, \"notif_type\": \"instance_stopped\", \"subject\": \"Instance 9{i:06} stopped\", \"message\": \"Your instance 9{i:06} (RTX 4090) was stopped because your credit ran out.\", \"timestamp\": 1772490000.123456}}",
        i as u128 * 0x9e37_79b9_7f4a_7c15
    )
    .into_bytes()
}

/// Bytes of the store's file and its WAL, as they are.
fn on_disk(path: &std::path::Path) -> u64 {
    let wal = path.with_extension("sqlite3-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

async fn week(rate: usize, days: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite3");
    let spool = Spool::open(&path, &Default::default()).unwrap();
    let (keep_bodies, retention) = (24 * 3600, 7 * 24 * 3600);
    let start = 1_772_490_000i64;
    let mut i = 0;
    println!("{rate} events an hour; at the end of each day:");
    println!(
        "{:>4} {:>10} {:>10} {:>12}",
        "day", "delivered", "held", "file + WAL"
    );
    for hour in 0..24 * days {
        let t = start + hour * 3600;
        // (Together, so the writer stores the hour's events in a few commits.)
        let tasks: Vec<_> = (i..i + rate)
            .map(|k| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    let d = Delivery::parse(body(k), None, t).unwrap();
                    spool.insert_delivery(d).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        i += rate;
        let seqs = spool.list(PENDING, rate.max(1)).await.unwrap();
        let seqs = seqs.iter().map(|q| q.seq).collect();
        spool.mark_delivered(seqs, t + 60).await.unwrap();
        // The forwarder prunes hourly, on the relay's clock (here the simulated one).
        let now = t + 3600;
        spool
            .prune(now - retention, now - keep_bodies)
            .await
            .unwrap();
        if (hour + 1) % 24 == 0 {
            let held = spool.stats().await.unwrap().delivered;
            println!(
                "{:>4} {:>10} {:>10} {:>9.1} MB",
                (hour + 1) / 24,
                i,
                held,
                on_disk(&path) as f64 / 1e6
            );
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--week") {
        let rate = args.get(at + 1).and_then(|a| a.parse().ok()).unwrap_or(600);
        let days = args.get(at + 2).and_then(|a| a.parse().ok()).unwrap_or(10);
        return week(rate, days).await;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.sqlite3");
    let spool = Spool::open(&path, &Default::default()).unwrap();
    let started = Instant::now();
    for i in 0..n {
        // As the relay receives it: the event is read from the body (see `Delivery`).
        let d = Delivery::parse(body(i), None, 1_772_490_000).unwrap();
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
        ("delivered, past --keep-bodies (dedup window)", lean),
    ] {
        println!("{what:<40} {:>6} bytes/event", bytes / n as u64);
    }
}
