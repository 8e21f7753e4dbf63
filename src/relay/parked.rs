//! Connections refused for being over their client's share (see `conns`), held open unread
//! for a while instead of closed at once.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// New connections refused for being over their client's share, held open (never read) for
/// the idle timeout instead of closed at once: a client that reconnects the moment it is
/// closed would otherwise keep the kernel's accept queue full ahead of everyone else. At most
/// `cap` are held; past that the oldest is closed.
pub struct Parked<T> {
    cap: usize,
    hold: Duration,
    held: Mutex<VecDeque<(Instant, T)>>,
}

impl<T> Parked<T> {
    pub fn new(cap: usize, hold: Duration) -> Parked<T> {
        Parked {
            cap,
            hold,
            held: Mutex::new(VecDeque::new()),
        }
    }

    /// Hold `conn` (or, with no room at all, drop it at once).
    pub fn park(&self, conn: T) {
        if self.cap == 0 {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.len() >= self.cap {
            held.pop_front();
        }
        held.push_back((Instant::now(), conn));
    }

    /// Close those held for the hold time.
    pub fn sweep(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.front().is_some_and(|(t, _)| t.elapsed() >= self.hold) {
            held.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    pub fn clear(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connections_are_held_for_a_while_then_closed() {
        let parked = Parked::new(2, Duration::from_millis(50));
        for i in 0..3 {
            parked.park(i);
        }
        assert_eq!(parked.len(), 2, "the oldest gives way past the cap");
        parked.sweep();
        assert_eq!(parked.len(), 2, "held until the hold time");
        tokio::time::sleep(Duration::from_millis(80)).await;
        parked.sweep();
        assert_eq!(parked.len(), 0);
        let none = Parked::new(0, Duration::from_secs(1));
        none.park(1u8);
        assert_eq!(none.len(), 0, "no room: closed at once");
    }
}
