//! What the machine and a process used: CPU time, bytes written to the disk, RSS, and
//! waiting for a quiet machine between turns.

use std::time::{Duration, Instant};

/// A relay process's CPU time (user + system, seconds) from `/proc`, and the bytes written so
/// far to the device its temporary directory is on (`/sys/dev/block/M:m/stat`: the whole
/// disk, so anything else writing counts too; the process's own `write_bytes` in
/// `/proc/PID/io` counted ten times what reached the disk for the relay's ack log, a
/// preallocated file written in place).
pub fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: fields 14 and 15 are utime and stime, in ticks.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks as f64 / hz, device_written())
}

fn device_written() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(std::env::temp_dir()) else {
        return 0;
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(6)?.parse::<u64>().ok())
        .map_or(0, |sectors| sectors * 512)
}

/// CPU time the whole machine spent busy so far (user, nice, system, irq, softirq: ticks).
fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum()
}

/// Wait until the machine is quiet (at most 5 % of its CPU busy over 1.5 s, longer than a
/// relay's pace of one message a second), at most 30 s: what a target did after its turn (a
/// relay summarising the backlog the last level left, once a second, and the database server
/// doing it with the PostgreSQL relay) must not run during the next target's turn. What a
/// relay does during its own turn is measured. Returns how long it waited.
pub async fn settle() -> Duration {
    let started = Instant::now();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let window = Duration::from_millis(1500);
    let quiet = (hz * cores * window.as_millis() as u64 / 1000 / 20).max(1);
    while started.elapsed() < Duration::from_secs(30) {
        let before = machine_busy();
        tokio::time::sleep(window).await;
        if machine_busy() - before <= quiet {
            break;
        }
    }
    started.elapsed()
}

pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
