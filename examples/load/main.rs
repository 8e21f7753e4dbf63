//! Load benchmark for `vslack serve`: spawns the release binary with a temporary store and a
//! loopback Slack stand-in, then sends signed unique events (5 % redeliveries, 2 % bad
//! signatures) over keep-alive connections at each concurrency level and reports stored events
//! per second, p50/p99/max answer latency and the relay's RSS.
//!
//! In one run, interleaved per concurrency level: the ceiling (the fastest durable
//! acknowledgement this machine allows: see `ceiling`; its own process, this program run with
//! `--ceiling`), `vslack serve` on the SQLite file, and
//! on PostgreSQL (a throwaway cluster started here from the Debian server binaries, as the
//! tests do, or `VSLACK_TEST_DATABASE_URL`; skipped with a note when neither is there).
//! `LOAD_STORES=ceiling,sqlite` picks some (an older binary: `VSLACK_BIN=…`).
//! `LOAD_LOGS=DIR` keeps each target's log (`DIR/sqlite.log`) and each turn's requests
//! (`DIR/sqlite-c16-1.txt`: start in Unix µs and latency in µs, a line each), to see when the
//! slow ones came and what the relay was doing then. Each relay logs
//! at its default level (one line per stored event), to a pipe that is read and dropped.
//! Per level and target: stored/s, p50/p99/max, unexpected answers, the target's CPU (`/proc`)
//! and bytes written to the disk (`/sys/dev/block`) per stored event, the load generator's
//! own CPU per event, and how long the machine took to settle before the turn began (each
//! turn starts on a quiet machine: see `settle`). During a turn the other targets are stopped
//! (SIGSTOP, then SIGCONT after it): each relay keeps delivering its backlog at the stand-in's
//! pace, and another relay's delivery landing in a turn showed up as a cluster of slow answers
//! in that turn (`LOAD_TOGETHER=1` lets them run, to see that).
//!
//! cargo build --release && cargo run --release --example load -- [REQUESTS] [CONCURRENCY,...]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vslack::relay::server;
use vslack::relay::verify::sign;
use vslack::secret::Secret;
use vslack::slack_sink::SlackSink;

const SECRET: &str = "load-test-secret";

mod ceiling;
mod machine;
use machine::{rss_kb, settle, usage};
#[allow(dead_code)] // stop/start_again are for the tests
#[path = "../../tests/it/support/postgres.rs"]
mod postgres;

/// What is measured: a process (the relay, or the ceiling) and its temporary directories.
struct Relay {
    name: &'static str,
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// RSS in MB.
    fn rss(&self) -> String {
        format!("{:.1} MB", rss_kb(self.child.id()) as f64 / 1024.0)
    }

    /// Stop (SIGSTOP) or continue (SIGCONT) the process: while one target is measured the
    /// others are stopped, so that their own paced deliveries do not land in its turn.
    fn hold(&self, stopped: bool) {
        let sig = if stopped {
            libc::SIGSTOP
        } else {
            libc::SIGCONT
        };
        // SAFETY: kill has no preconditions; the pid is our own child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

/// The ceiling, as a process of its own: this program again, with `--ceiling`.
fn spawn_ceiling() -> Relay {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("--ceiling");
    start(cmd, "ceiling", tempfile::tempdir().unwrap())
}

fn spawn(bin: &str, name: &'static str, sink: &SlackSink, store: Option<&str>) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("VSLACK_CONFIG_DIR", dir.path().join("c"))
        .env("VSLACK_DATA_DIR", dir.path().join("d"))
        .env("VAST_WEBHOOK_SECRET", SECRET)
        .env("SLACK_WEBHOOK_URL", sink.url());
    if let Some(url) = store {
        cmd.env("VSLACK_STORE_URL", url);
    }
    start(cmd, name, dir)
}

/// Start `cmd` and wait for its `listening on URL` line; the rest of its stderr is dropped.
fn start(mut cmd: Command, name: &'static str, dir: tempfile::TempDir) -> Relay {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
        panic!("cannot start {program} (build it with `cargo build --release`): {e}")
    });
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let l = lines.next().expect("serve exited").unwrap();
        if let Some(u) = l.strip_prefix("listening on ") {
            break u.to_owned();
        }
    };
    let log = std::env::var("LOAD_LOGS")
        .ok()
        .map(|d| format!("{d}/{name}.log"));
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = log.map(|p| std::fs::File::create(p).unwrap());
        for l in lines.map_while(Result::ok) {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{l}");
            }
        }
    });
    Relay {
        name,
        child,
        url,
        _dir: dir,
    }
}

struct Req {
    body: Vec<u8>,
    ts: String,
    sig: String,
    expect: u16,
}

/// A Vast.ai-shaped event id (32 hex digits, in no order: as random as Vast.ai's), unique per
/// `tag` and `i`.
fn event_id(tag: &str, i: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{tag}-{i}"))[..16])
}

/// `n` requests; with `verifies`, 2 % carry a bad signature and expect a 401.
fn requests(n: usize, tag: &str, verifies: bool) -> Vec<Req> {
    let secret = Secret::new(SECRET);
    let now = vslack::relay::now_secs();
    let mut out: Vec<Req> = Vec::with_capacity(n);
    for i in 0..n {
        let roll = i % 100;
        if roll < 5 && i > 0 {
            // A redelivery of an earlier event: same body, fresh signature.
            let prev = &out[i / 2];
            let body = prev.body.clone();
            out.push(Req {
                sig: sign(&secret, now, &body),
                body,
                ts: now.to_string(),
                expect: 204,
            });
            continue;
        }
        let body = serde_json::json!({
            "event_id": event_id(tag, i), "user_id": 1, "notif_type": "instance_stopped",
            "subject": "Instance stopped", "message": format!("Instance {i} was stopped."), "timestamp": now as f64,
        })
        .to_string()
        .into_bytes();
        let (sig, expect) = if roll >= 98 && verifies {
            (sign(&Secret::new("wrong"), now, &body), 401)
        } else {
            (sign(&secret, now, &body), 204)
        };
        out.push(Req {
            body,
            ts: now.to_string(),
            sig,
            expect,
        });
    }
    out
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--ceiling") {
        return ceiling::serve();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(measure());
}

async fn measure() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let levels: Vec<usize> = args
        .get(2)
        .map(|a| a.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![1, 16, 64]);
    let bin = std::env::var("VSLACK_BIN").unwrap_or_else(|_| "target/release/vslack".into());
    let sink = SlackSink::start().await.unwrap();
    // LOAD_STORES=sqlite measures one store (e.g. an older binary that has only SQLite).
    let stores = std::env::var("LOAD_STORES").unwrap_or_else(|_| "ceiling,sqlite,postgres".into());
    let pg = stores
        .contains("postgres")
        .then(postgres::Postgres::start)
        .flatten();
    let mut relays = Vec::new();
    if stores.contains("ceiling") {
        relays.push(spawn_ceiling());
    }
    if stores.contains("sqlite") {
        relays.push(spawn(&bin, "sqlite", &sink, None));
    }
    if let Some(pg) = &pg {
        let url = pg.fresh_database().await;
        relays.push(spawn(&bin, "postgres", &sink, Some(&url)));
    }
    // LOAD_TOGETHER=1: the other targets keep running during a turn (as before 2026-12-06).
    let isolate = std::env::var_os("LOAD_TOGETHER").is_none();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for r in &relays {
        println!("{:<8} {} idle RSS {}", r.name, r.url, r.rss());
    }
    println!(
        "{:<8} {:>11} {:>9} {:>12} {:>9} {:>9} {:>9} {:>11} {:>10} {:>10} {:>10} {:>8}",
        "target",
        "concurrency",
        "requests",
        "stored/s",
        "p50",
        "p99",
        "max",
        "unexpected",
        "cpu/event",
        "disk/event",
        "load cpu",
        "settled"
    );
    for (li, &c) in levels.iter().enumerate() {
        for relay in &relays {
            // The ceiling checks no signature: every request is stored.
            let verifies = relay.name != "ceiling";
            let reqs = Arc::new(requests(n, &format!("{}-c{c}-{li}", relay.name), verifies));
            let others = || relays.iter().filter(|r| r.name != relay.name && isolate);
            others().for_each(|r| r.hold(true));
            let waited = settle().await;
            let pid = relay.child.id();
            let before = usage(pid);
            let mine = usage(std::process::id()).0;
            let (stored, rate, p50, p99, max, unexpected, timeline) =
                run(&relay.url, reqs, c).await;
            if let Ok(dir) = std::env::var("LOAD_LOGS") {
                let path = format!("{dir}/{}-c{c}-{li}.txt", relay.name);
                std::fs::write(path, timeline).unwrap();
            }
            // What the relay spent per stored event (its CPU, and bytes written to the disk,
            // checkpoints included once they are due).
            let ((t1, w1), (t0, w0)) = (usage(pid), before);
            let per = |x: f64| x / stored.max(1) as f64;
            let cpu = format!("{:.1}µs", per((t1 - t0) * 1e6));
            let disk = format!("{:.1}kB", per((w1 - w0) as f64 / 1e3));
            let load_cpu = format!("{:.1}µs", per((usage(std::process::id()).0 - mine) * 1e6));
            others().for_each(|r| r.hold(false));
            println!(
                "{:<8} {:>11} {:>9} {:>12.0} {:>9.2?} {:>9.2?} {:>9.2?} {:>11} {:>10} {:>10} {:>10} {:>7.1}s",
                relay.name, c, n, rate, p50, p99, max, unexpected, cpu, disk, load_cpu, waited.as_secs_f64()
            );
        }
    }
    for mut r in relays {
        println!("{:<8} RSS after load {}", r.name, r.rss());
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
}

/// Send `reqs` over `c` keep-alive connections; stored, stored/s, p50, p99, max, unexpected
/// answers, and each request's start (Unix µs) and latency (µs), a line each.
async fn run(
    url: &str,
    reqs: Arc<Vec<Req>>,
    c: usize,
) -> (usize, f64, Duration, Duration, Duration, usize, String) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c {
        let reqs = reqs.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let client = vslack::http::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut lat = Vec::new();
            let mut starts: Vec<u128> = Vec::new();
            let (mut stored, mut unexpected) = (0usize, 0usize);
            for r in reqs.iter().skip(w).step_by(c) {
                let t = Instant::now();
                let wall = std::time::UNIX_EPOCH.elapsed().unwrap().as_micros();
                let resp = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header(server::TIMESTAMP_HEADER, &r.ts)
                    .header(server::SIGNATURE_HEADER, &r.sig)
                    .body(r.body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                lat.push(t.elapsed());
                starts.push(wall);
                if status != r.expect {
                    unexpected += 1;
                } else if status == 204 {
                    stored += 1;
                }
            }
            (lat, starts, stored, unexpected)
        }));
    }
    let mut lat = Vec::new();
    let (mut stored, mut unexpected) = (0, 0);
    let mut dump = String::new();
    for t in tasks {
        let (l, st, s, u) = t.await.unwrap();
        for (a, b) in st.iter().zip(&l) {
            dump.push_str(&format!("{a} {}\n", b.as_micros()));
        }
        lat.extend(l);
        stored += s;
        unexpected += u;
    }
    let elapsed = started.elapsed();
    lat.sort();
    (
        stored,
        stored as f64 / elapsed.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        unexpected,
        dump,
    )
}
