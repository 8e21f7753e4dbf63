//! Open connections, and who gives way when there are too many.
//!
//! The listener always accepts (so a real delivery never waits in the kernel's backlog behind
//! sockets that send nothing) and admits each connection here. Under the cap it is simply
//! counted. At the cap, the connection that has been idle longest, taken from the client
//! holding the most connections, is closed to make room: idle means no request in flight, so
//! a connection that never sent a full request head counts as idle from the moment it was
//! accepted. Only when every connection is busy does admission wait, and a busy connection is
//! bounded by the request deadline. Connections idle longer than the idle timeout are closed
//! by [`Conns::sweep`]; closing is hyper's graceful shutdown, which ends an idle connection at
//! once and lets a request already read finish.
//!
//! One client may hold at most half the cap ([`Conns::per_client`]), except 127.0.0.1 and ::1,
//! where a tunnel or reverse proxy connects from on everyone's behalf. A connection over its
//! client's share is `Parked`: held unread for the idle timeout, then closed, so a client
//! that reconnects as fast as it is closed cannot keep the accept queue full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub struct Conns {
    cap: usize,
    idle_timeout: Duration,
    /// How long a connection may take to send its first request (the header timeout: a slow
    /// client's first request is not cut short by the idle timeout).
    first_request: Duration,
    inner: Mutex<Inner>,
    /// Signalled when a connection ends or becomes idle: admission may proceed.
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    next: u64,
    live: HashMap<u64, Entry>,
    /// Connections per client.
    held: HashMap<IpAddr, usize>,
    evicted: u64,
    refused: u64,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.live.remove(&id)?;
        if let Some(n) = self.held.get_mut(&e.peer) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&e.peer);
            }
        }
        Some(e)
    }
}

struct Entry {
    peer: IpAddr,
    /// `None` while a request is in flight.
    idle_since: Option<Instant>,
    admitted: Instant,
    /// Whether a request has been served on it (then the idle timeout applies).
    served: bool,
    close: Arc<Notify>,
}

/// A connection this young is not closed to make room: it has had no fair chance to send its
/// request yet (under a flood its task may not even have run).
const GRACE: Duration = Duration::from_millis(250);

/// One admitted connection; dropping it (when the connection ends) frees its place.
pub struct Ticket {
    conns: Arc<Conns>,
    id: u64,
    /// Notified when the connection should close (evicted, idle too long, or shutdown).
    pub close: Arc<Notify>,
}

/// Held while a request is in flight on a connection.
pub struct Busy {
    conns: Arc<Conns>,
    id: u64,
}

impl Conns {
    pub fn new(cap: usize, idle_timeout: Duration, first_request: Duration) -> Arc<Conns> {
        Arc::new(Conns {
            cap: cap.max(1),
            idle_timeout,
            first_request: first_request.max(idle_timeout),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `peer`, closing an idle one if the cap is reached. Waits only
    /// while every connection has a request in flight or was admitted moments ago. `None`: the client already holds its
    /// share (see [`Conns::per_client`]); close the new connection.
    pub async fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Ticket> {
        loop {
            let wait = self.changed.notified();
            {
                let mut inner = self.lock();
                let held = inner.held.get(&peer).copied().unwrap_or(0);
                if held >= self.per_client() && !shared(peer) {
                    inner.refused += 1;
                    return None;
                }
                if inner.live.len() < self.cap || evict_one(&mut inner) {
                    *inner.held.entry(peer).or_default() += 1;
                    inner.next += 1;
                    let id = inner.next;
                    let close = Arc::new(Notify::new());
                    inner.live.insert(
                        id,
                        Entry {
                            peer,
                            idle_since: Some(Instant::now()),
                            admitted: Instant::now(),
                            served: false,
                            close: close.clone(),
                        },
                    );
                    return Some(Ticket {
                        conns: self.clone(),
                        id,
                        close,
                    });
                }
            }
            // Every connection is busy: wait for one to end or go idle (bounded so a missed
            // wake-up costs little).
            let _ = tokio::time::timeout(Duration::from_millis(50), wait).await;
        }
    }

    /// Most connections one client may hold: half the cap (at least 1). A tunnel or reverse
    /// proxy on this machine connects from 127.0.0.1 or ::1 for everyone, so those addresses
    /// share the whole cap.
    pub fn per_client(&self) -> usize {
        (self.cap / 2).max(1)
    }

    /// Mark the connection busy until the returned guard drops.
    pub fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(e) = self.lock().live.get_mut(&id) {
            e.idle_since = None;
            e.served = true;
        }
        Busy {
            conns: self.clone(),
            id,
        }
    }

    /// Close connections idle longer than the idle timeout.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut inner = self.lock();
        let stale: Vec<u64> = inner
            .live
            .iter()
            .filter(|(_, e)| {
                e.idle_since.is_some_and(|t| {
                    let limit = if e.served {
                        self.idle_timeout
                    } else {
                        self.first_request
                    };
                    now.duration_since(t) >= limit
                })
            })
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            if let Some(e) = inner.remove(id) {
                e.close.notify_one();
            }
        }
    }

    /// Ask every connection to close (shutdown); requests in flight finish.
    pub fn close_all(&self) {
        for e in self.lock().live.values() {
            e.close.notify_one();
        }
    }

    pub fn open(&self) -> usize {
        self.lock().live.len()
    }

    /// How many idle connections were closed to make room, and how many new connections were
    /// refused because their client held its share, since start.
    pub fn pressure(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.evicted, inner.refused)
    }

    /// Wait until no connection is open, or `limit` passes. True when none is left.
    pub async fn drained(&self, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while self.open() > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.changed.notified()).await;
        }
        true
    }
}

/// Where a tunnel or reverse proxy on this machine connects from, for every client it carries.
fn shared(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(a) => a == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(a) => {
            a.is_loopback() || a.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// Close the longest-idle connection of the client holding the most connections (any idle one
/// if that client has none idle), leaving alone those admitted within [`GRACE`]. False when
/// there is none to close.
fn evict_one(inner: &mut Inner) -> bool {
    let heaviest = inner.held.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p);
    let mut best: Option<(bool, Instant, u64)> = None;
    let now = Instant::now();
    for (&id, e) in &inner.live {
        let Some(since) = e.idle_since else { continue };
        if now.duration_since(e.admitted) < GRACE {
            continue;
        }
        let theirs = Some(e.peer) == heaviest;
        // The heaviest client's first, then idle longest.
        let better = best.is_none_or(|(t, s, _)| (theirs && !t) || (theirs == t && since < s));
        if better {
            best = Some((theirs, since, id));
        }
    }
    let Some((_, _, id)) = best else { return false };
    if let Some(e) = inner.remove(id) {
        e.close.notify_one();
        inner.evicted += 1;
    }
    true
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.conns.lock().remove(self.id);
        self.conns.changed.notify_waiters();
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.conns.lock().live.get_mut(&self.id) {
            e.idle_since = Some(Instant::now());
        }
        self.conns.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    async fn closed(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(10), t.close.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_heaviest_clients_longest_idle_connection_gives_way() {
        let conns = Conns::new(3, Duration::from_secs(60), Duration::from_secs(60));
        // 127.0.0.1 (a tunnel, a proxy) may hold more than half the cap.
        let a1 = conns.admit(ip(1)).await.unwrap();
        let a2 = conns.admit(ip(1)).await.unwrap();
        let b1 = conns.admit(ip(2)).await.unwrap();
        tokio::time::sleep(GRACE).await;
        // b1 is idle too, but its client holds one connection to a's two.
        let c = conns.admit(ip(3)).await.unwrap();
        assert_eq!(conns.open(), 3);
        assert_eq!(conns.pressure(), (1, 0));
        assert!(
            closed(&a1).await,
            "the oldest idle of the heaviest client is closed"
        );
        assert!(!closed(&a2).await && !closed(&b1).await && !closed(&c).await);
        drop((a1, a2, b1, c));
        assert_eq!(conns.open(), 0);
    }

    #[tokio::test]
    async fn busy_connections_are_never_closed_and_admission_waits_for_one() {
        let conns = Conns::new(1, Duration::from_secs(60), Duration::from_secs(60));
        let a = conns.admit(ip(2)).await.unwrap();
        let busy = conns.busy(a.id());
        let waiting = tokio::spawn({
            let conns = conns.clone();
            async move { conns.admit(ip(1)).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!waiting.is_finished(), "admitted past a busy connection");
        drop(busy); // idle now: it can give way
        let b = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("admitted once the connection went idle")
            .unwrap();
        assert_eq!(conns.pressure(), (1, 0));
        drop((a, b));
    }

    #[tokio::test]
    async fn a_connection_just_admitted_is_not_closed_to_make_room() {
        let conns = Conns::new(1, Duration::from_secs(60), Duration::from_secs(60));
        let young = conns.admit(ip(1)).await.unwrap();
        let t = std::time::Instant::now();
        let next = conns.admit(ip(1)).await.unwrap();
        assert!(
            t.elapsed() >= GRACE - Duration::from_millis(60),
            "{:?}",
            t.elapsed()
        );
        assert!(closed(&young).await);
        drop((young, next));
    }

    #[tokio::test]
    async fn the_sweep_closes_only_connections_idle_past_the_timeout() {
        let conns = Conns::new(10, Duration::from_millis(50), Duration::from_millis(50));
        let idle = conns.admit(ip(1)).await.unwrap();
        let working = conns.admit(ip(1)).await.unwrap();
        let _busy = conns.busy(working.id());
        tokio::time::sleep(Duration::from_millis(80)).await;
        conns.sweep();
        assert_eq!(conns.open(), 1, "the busy connection stays");
        drop(idle);
        assert_eq!(conns.open(), 1);
    }

    #[tokio::test]
    async fn a_first_request_gets_the_header_timeout_not_the_idle_timeout() {
        let conns = Conns::new(10, Duration::from_millis(30), Duration::from_millis(300));
        let fresh = conns.admit(ip(1)).await.unwrap();
        let used = conns.admit(ip(1)).await.unwrap();
        drop(conns.busy(used.id()));
        tokio::time::sleep(Duration::from_millis(60)).await;
        conns.sweep();
        assert!(closed(&used).await, "kept alive past the idle timeout");
        assert!(!closed(&fresh).await, "still sending its first request");
        assert_eq!(conns.open(), 1);
    }

    #[tokio::test]
    async fn one_client_gets_at_most_half_the_cap_unless_it_is_this_machine() {
        let conns = Conns::new(4, Duration::from_secs(60), Duration::from_secs(60));
        let held: Vec<_> = (0..2).map(|_| conns.admit(ip(9))).collect();
        let mut tickets = Vec::new();
        for t in held {
            tickets.push(t.await.unwrap());
        }
        assert!(
            conns.admit(ip(9)).await.is_none(),
            "a third of four refused"
        );
        assert_eq!(conns.pressure(), (0, 1));
        for _ in 0..2 {
            tickets.push(conns.admit(ip(1)).await.unwrap());
        }
        tokio::time::sleep(GRACE).await;
        // At the cap, 127.0.0.1 makes room (closing an idle one) rather than being refused.
        tickets.push(conns.admit(ip(1)).await.unwrap());
        assert_eq!(conns.pressure(), (1, 1));
    }
}
