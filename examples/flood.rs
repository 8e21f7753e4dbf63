//! An idle-connection flood against the release `vslack serve`: one client (127.0.0.2) holds
//! N connections open (default 1,500, above the default cap of 1,024) and reopens each as soon
//! as the relay closes it, while another client (127.0.0.1) sends signed deliveries, each on a
//! new connection. Prints the deliveries' latency percentiles, and the same with no flood as
//! the reference measured in the same run.
//!
//! cargo build --release && cargo run --release --example flood -- [N] [DELIVERIES]
//! (`FLOOD_FROM=127.0.0.1` floods from the deliveries' own address, as through a tunnel)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

const SECRET: &str = "flood-secret";

/// Where the flood comes from: another client (127.0.0.2), or with `FLOOD_FROM=127.0.0.1`
/// the address a tunnel or proxy on the relay's machine would use for everyone.
fn flood_from() -> std::net::IpAddr {
    std::env::var("FLOOD_FROM")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or([127, 0, 0, 2].into())
}

async fn hold_open(addr: SocketAddr, stop: Arc<AtomicBool>, open: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(flood_from(), 0)).unwrap();
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

/// Latencies of `n` signed deliveries, each on a new connection.
async fn deliveries(url: &str, tag: &str, n: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for i in 0..n {
        let body = format!("{{\"event_id\": \"{tag}-{i}\", \"notif_type\": \"instance_stopped\"}}");
        let ts = vslack::relay::now_secs();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let client = vslack::http::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let t = Instant::now();
        let r = client
            .post(url)
            .header("X-Vast-Timestamp", ts.to_string())
            .header("X-Vast-Signature-256", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(r.status(), 204);
    }
    took.sort();
    took
}

fn show(label: &str, took: &[Duration]) {
    let p = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{label:<28} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} deliveries)",
        p(0.5),
        p(0.99),
        p(1.0),
        took.len()
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1500);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let bin = std::env::var_os("VSLACK_BIN")
        .map(Into::into)
        .unwrap_or_else(|| exe.parent().unwrap().parent().unwrap().join("vslack"));
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--dry-run"])
        .env_clear()
        .env("VSLACK_DATA_DIR", dir.path().join("data"))
        .env("VSLACK_CONFIG_DIR", dir.path().join("config"))
        .env("HOME", dir.path())
        .env("VAST_WEBHOOK_SECRET", SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run `cargo build --release` first");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut url = String::new();
    let mut lines = stderr.lines().map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some(rest) = line.strip_prefix("listening on ") {
            url = rest.to_owned();
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    show(
        "no flood (reference)",
        &deliveries(&url, "calm", count).await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..n)
        .map(|_| tokio::spawn(hold_open(addr, stop.clone(), open.clone())))
        .collect();
    let t = Instant::now();
    while open.load(Ordering::Relaxed) < n.min(1100) && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = deliveries(&url, "flood", count).await;
    let held = open.load(Ordering::Relaxed);
    show(&format!("{n} idle from {}", flood_from()), &took);
    println!("the flood held {held} connections open at the end");
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
