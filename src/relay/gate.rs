//! The heartbeat's window at the listener: while it is open, a verified `webhook_test` is the
//! heartbeat's own (recorded, never posted), and its arrival is announced to the heartbeat.
//! A person's `vslack webhook test` outside the window is posted as usual.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;

use tokio::sync::watch;

pub struct Gate {
    /// Wall-clock ms until which a test event is the heartbeat's.
    until_ms: AtomicI64,
    /// Counts the heartbeat's arrivals.
    arrivals: watch::Sender<u64>,
    /// The key (webhook) that verified the last one.
    last_key: Mutex<String>,
    /// The webhook being tested now (`webhook 42`): one at a time.
    expected: Mutex<String>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            until_ms: AtomicI64::new(0),
            arrivals: watch::channel(0).0,
            last_key: Mutex::default(),
            expected: Mutex::default(),
        }
    }
}

impl Gate {
    /// Open the window until `until_ms` (wall clock); returns a receiver of arrivals, marked
    /// seen, so only those after this call count.
    pub fn open(&self, until_ms: i64, expected: &str) -> watch::Receiver<u64> {
        *self.expected.lock().expect("gate lock") = expected.to_owned();
        self.until_ms.store(until_ms, Relaxed);
        let mut rx = self.arrivals.subscribe();
        rx.mark_unchanged();
        rx
    }

    pub fn close(&self) {
        self.until_ms.store(0, Relaxed);
    }

    pub fn expecting(&self, now_ms: i64) -> bool {
        now_ms <= self.until_ms.load(Relaxed)
    }

    /// A heartbeat test event verified with `key` was stored.
    pub fn arrived(&self, key: &str) {
        *self.last_key.lock().expect("gate lock") = key.to_owned();
        self.arrivals.send_modify(|n| *n += 1);
    }

    /// A verified test event another relay sharing the store received during the window: it
    /// is the one being waited for (webhooks are tested one at a time), verified over there.
    pub fn arrived_elsewhere(&self) {
        let expected = self.expected.lock().expect("gate lock").clone();
        self.arrived(&expected);
    }

    pub fn last_key(&self) -> String {
        self.last_key.lock().expect("gate lock").clone()
    }
}
