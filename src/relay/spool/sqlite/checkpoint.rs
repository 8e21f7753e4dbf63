//! The WAL's checkpoints, off the writer (the relay's store only).
//!
//! SQLite checkpoints on the committing thread once the WAL holds 1000 pages: copying 4 MB of
//! pages into the database file, a few milliseconds of CPU in one piece, every fifth of a
//! second at full load, which took a core from the ack path and the HTTP workers at once (p99
//! at concurrency 16, median of five rounds: 2.10x the ceiling's with it, 1.88x without; see
//! the README's Benchmarks). Here the writer's commits only wake a thread of the lowest CPU
//! priority (nice 19, started the first time a checkpoint is due), which runs the same
//! `PASSIVE` checkpoint on a connection of its own when a core is free, as PostgreSQL's
//! checkpointer spreads its writes. Nothing waits for it: readers and the writer go on beside
//! a passive checkpoint. If it falls far behind (a machine busy for long), the writer
//! checkpoints itself again, so the WAL stays bounded.

use std::cell::RefCell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::{Connection, OpenFlags};

/// WAL pages after which a checkpoint is due (SQLite's own default).
const DUE_PAGES: c_int = 1000;
/// WAL pages after which the writer checkpoints itself (the checkpointer is behind).
const WRITER_PAGES: c_int = 16 * DUE_PAGES;

thread_local! {
    /// Set on the writer's thread: the checkpointer its commits wake.
    static DUE: RefCell<Option<Checkpointer>> = const { RefCell::new(None) };
}

/// Called by SQLite after each commit on the writer's connection, with the WAL's size.
fn after_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    if pages < DUE_PAGES {
        return Ok(());
    }
    let told = DUE.with(|d| d.borrow_mut().as_mut().is_some_and(Checkpointer::wake));
    if !told || pages >= WRITER_PAGES {
        // (As SQLite's own hook does; busy is not an error: another checkpoint runs.)
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
    }
    Ok(())
}

/// Hand the checkpoints of `writer` (the connection to `path`) to a thread of their own,
/// started the first time one is due (an idle relay has none). The writer's thread installs
/// the returned [`Due`]; until then, commits checkpoint as before.
pub(super) fn start(writer: &Connection, path: &Path) -> Due {
    hook(writer);
    Due {
        path: path.to_owned(),
        lock: Arc::new(Mutex::new(())),
    }
}

/// Checkpoint `conn`'s WAL through the checkpointer rather than on commit.
pub(super) fn hook(conn: &Connection) {
    conn.wal_hook(Some(after_commit));
}

/// The writer's side of the checkpointer.
pub(super) struct Due {
    path: PathBuf,
    /// Held by the checkpointer while it has the store open.
    lock: Arc<Mutex<()>>,
}

impl Due {
    /// On the writer's thread: its commits wake the checkpointer from now on. (It ends, and
    /// is waited for, when the writer's thread does.)
    pub(super) fn install(&self) {
        let c = Checkpointer {
            path: self.path.clone(),
            lock: self.lock.clone(),
            tx: None,
            thread: None,
        };
        DUE.with(|d| *d.borrow_mut() = Some(c));
    }

    /// Keep the checkpointer from opening the store while the file is replaced (a restore).
    pub(super) fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The thread, once started, and how to wake it.
struct Checkpointer {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
    tx: Option<mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Wake the thread (starting it the first time); false if it cannot run.
    fn wake(&mut self) -> bool {
        if self.tx.is_none() {
            let (tx, rx) = mpsc::sync_channel::<()>(1);
            let (path, lock) = (self.path.clone(), self.lock.clone());
            let spawned = std::thread::Builder::new()
                .name("vslack-ckpt".into())
                .spawn(move || run(&path, &lock, rx));
            match spawned {
                Ok(t) => (self.tx, self.thread) = (Some(tx), Some(t)),
                Err(_) => return false,
            }
        }
        // (Full: it is already told.)
        self.tx
            .as_ref()
            .is_some_and(|tx| !matches!(tx.try_send(()), Err(TrySendError::Disconnected(_))))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Each checkpoint opens the store anew (a few hundred microseconds, a few times a second at
/// most): no connection is left on a file a restore replaces, nor one that creates the file
/// again once it was deleted (the relay reports that).
fn run(path: &Path, lock: &Mutex<()>, rx: mpsc::Receiver<()>) {
    lowest_priority();
    while rx.recv().is_ok() {
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let r = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        });
        if let Err(e) = r {
            // (The writer checkpoints itself once the WAL grows: nothing is lost.)
            tracing::debug!(error = %e, "background checkpoint of the event store failed");
        }
    }
}

/// Nice 19 for the calling thread (Linux: nice is per thread). Unprivileged: lowering one's
/// own priority is always allowed; if it fails the checkpoints still run, at normal priority.
fn lowest_priority() {
    // SAFETY: plain system calls on the calling thread's id.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
