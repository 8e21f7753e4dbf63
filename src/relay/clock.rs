//! The relay's two clocks. The wall clock (`wall_*`) is for what must agree with other
//! machines: a signature's timestamp against Vast.ai's. Everything the relay schedules or
//! ages (retry times, `--max-age`, queue ages, retention) uses the steady clock instead: the
//! wall time when the relay started plus the monotonic time since, so a clock stepped by NTP
//! or by hand (±25 h) neither holds a due retry nor dead-letters a young event, and no age
//! is ever negative. Stored times are steady times; a restart re-reads the wall clock (and
//! makes every retry due at once).

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct Clock {
    /// Wall time (ms) at `start`.
    anchor_ms: i64,
    start: Instant,
    /// A step applied to the wall clock (tests; see [`Clock::step_wall`]).
    step_ms: AtomicI64,
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            anchor_ms: system_ms(),
            start: Instant::now(),
            step_ms: AtomicI64::new(0),
        }
    }
}

impl Clock {
    /// The wall clock, in ms since the epoch.
    pub fn wall_ms(&self) -> i64 {
        system_ms() + self.step_ms.load(Relaxed)
    }

    pub fn wall_secs(&self) -> i64 {
        self.wall_ms().div_euclid(1000)
    }

    /// The steady clock, in ms on the wall clock's scale: never jumps, never goes back.
    pub fn steady_ms(&self) -> i64 {
        self.anchor_ms + self.start.elapsed().as_millis() as i64
    }

    pub fn steady_secs(&self) -> i64 {
        self.steady_ms().div_euclid(1000)
    }

    /// Step the wall clock by `ms`, as NTP or an operator would: a real clock jump cannot be
    /// made in a test, so tests step this one and check that nothing scheduled follows it.
    pub fn step_wall(&self, ms: i64) {
        self.step_ms.fetch_add(ms, Relaxed);
    }
}
