//! A relay with a large backlog: fills a store with N pending events (default 100,000), then
//! starts the release `vslack serve` on it with Slack unreachable (so the backlog stays) and
//! measures how long the relay takes to be ready, how fast `/health` and `/metrics` answer,
//! and its RSS.
//!
//! With `--drain`, it then restarts the relay with a Slack stand-in that answers (at the
//! default pace of one message a second) and measures how long the whole backlog takes to be
//! accounted for in Slack, in how many messages, and checks that every event is counted once.
//!
//! cargo build --release && cargo run --release --example backlog -- [N] [--drain]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vslack::relay::event::Delivery;
use vslack::relay::spool::Spool;

/// A `/proc/PID/status` figure in kB: `VmRSS`, or `RssAnon` (the process's own memory,
/// without the pages of its executable and libraries).
fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let drain = std::env::args().any(|a| a == "--drain");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("spool.sqlite3");
    {
        let spool = Spool::open(&path, &Default::default()).unwrap();
        let t = Instant::now();
        // A thousand at a time, concurrently, so the writer commits each group with one fsync.
        for start in (0..n).step_by(1000) {
            let tasks: Vec<_> = (start..(start + 1000).min(n))
                .map(|i| {
                    let spool = spool.clone();
                    tokio::spawn(async move {
                        let body = format!("{{\"event_id\": \"backlog-{i:08}\", \"notif_type\": \"instance_stopped\", \"subject\": \"Instance {i} stopped\", \"message\": \"Instance {i} was stopped.\"}}");
                        let d = Delivery::parse(body.into_bytes(), None, vslack::relay::now_secs()).unwrap();
                        spool.insert_delivery(d).await.unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
        println!(
            "filled the store with {n} pending events in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("vslack");
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--retry-initial", "10m"])
        .env_clear()
        .env("VSLACK_DATA_DIR", &data)
        .env("VSLACK_CONFIG_DIR", dir.path().join("config"))
        .env("HOME", dir.path())
        .env("VAST_WEBHOOK_SECRET", "backlog-secret")
        .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:1/services/T/B/x")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run `cargo build --release` first");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    let mut url = String::new();
    for line in lines.by_ref() {
        if let Some(rest) = line.strip_prefix("listening on ") {
            url = rest.trim_end_matches('/').to_owned();
            break;
        }
    }
    let ready = started.elapsed();
    // Keep reading the log, as a terminal or the journal would.
    std::thread::spawn(move || lines.for_each(drop));
    let http = vslack::http::client();
    let health: serde_json::Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["queue_depth"], n as i64, "{health}");
    for what in ["health", "metrics"] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let r = http.get(format!("{url}/{what}")).send().await.unwrap();
            assert!(r.status().is_success() || what == "health");
            let _ = r.text().await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "/{what:<8} p50 {:>7.2} ms  p99 {:>7.2} ms  (200 requests, {n} queued)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );
    }
    println!(
        "ready (listening) {:.0} ms after start with {n} queued",
        ready.as_secs_f64() * 1e3
    );
    println!(
        "relay RSS with {n} queued: {:.1} MB ({:.1} MB anonymous)",
        rss_kb(child.id(), "VmRSS:") as f64 / 1024.0,
        rss_kb(child.id(), "RssAnon:") as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    if drain {
        drain_to_slack(&bin, dir.path(), &data, n).await;
    }
}

/// What the Slack stand-in saw: messages, and the events they account for (a summary's
/// count, or one per listed event).
#[derive(Default)]
struct Seen {
    messages: usize,
    summaries: usize,
    events: usize,
    /// Messages in the busiest second.
    peak_per_sec: usize,
    seconds: std::collections::HashMap<u64, usize>,
}

async fn drain_to_slack(
    bin: &std::path::Path,
    dir: &std::path::Path,
    data: &std::path::Path,
    n: usize,
) {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack = listener.local_addr().unwrap();
    let t0 = Instant::now();
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let body = req.into_body().collect().await?.to_bytes();
                                let v: serde_json::Value =
                                    serde_json::from_slice(&body).unwrap_or_default();
                                let text = v["text"].as_str().unwrap_or("");
                                let summarised = text
                                    .split(" Vast.ai notifications, summarised")
                                    .next()
                                    .filter(|_| text.contains("summarised"))
                                    .and_then(|c| c.replace(',', "").trim().parse::<usize>().ok());
                                let listed = text.matches("event_id=").count();
                                let mut s = seen.lock().unwrap();
                                s.messages += 1;
                                match summarised {
                                    Some(c) => {
                                        s.summaries += 1;
                                        s.events += c;
                                    }
                                    None => s.events += listed.max(1),
                                }
                                let sec = t0.elapsed().as_secs();
                                let k = {
                                    let e = s.seconds.entry(sec).or_default();
                                    *e += 1;
                                    *e
                                };
                                s.peak_per_sec = s.peak_per_sec.max(k);
                                Ok::<_, hyper::Error>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("VSLACK_DATA_DIR", data)
        .env("VSLACK_CONFIG_DIR", dir.join("config"))
        .env("HOME", dir)
        .env("VAST_WEBHOOK_SECRET", "backlog-secret")
        .env(
            "SLACK_WEBHOOK_URL",
            format!("http://{slack}/services/T000/B000/XXXXXXXX"),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    let mut url = String::new();
    for line in lines.by_ref() {
        if let Some(rest) = line.strip_prefix("listening on ") {
            url = rest.trim_end_matches('/').to_owned();
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let http = vslack::http::client();
    loop {
        let h: serde_json::Value = http
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["queue_depth"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let s = seen.lock().unwrap();
    println!(
        "drained {n} queued events to Slack in {:.0} s: {} messages ({} summaries), {} events accounted for, at most {} message(s) in any second",
        took.as_secs_f64(),
        s.messages,
        s.summaries,
        s.events,
        s.peak_per_sec
    );
    assert_eq!(s.events, n, "every event counted once");
    let _ = child.kill();
    let _ = child.wait();
}
