//! A reserve of disk space for outcomes. Beside the store lies a file of [`SIZE`] bytes,
//! allocated for real (not sparse). When the disk is so full that SQLite cannot record that a
//! message was posted, the writer deletes this file and records it in the room that frees, so
//! a restart never posts that message again. While the reserve is spent, new events are
//! refused (503: Vast.ai retries them) and the writer tries once a second to allocate the
//! reserve again; as soon as it can, deliveries are accepted again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Room for many outcome commits (each a few pages of WAL).
pub const SIZE: u64 = 4 << 20;

pub struct Ballast {
    path: PathBuf,
    armed: bool,
    last_try: Option<Instant>,
}

impl Ballast {
    /// The reserve beside `store` (`<store>-reserve`), allocated now if it can be.
    pub fn new(store: &std::path::Path) -> Ballast {
        let mut path = store.as_os_str().to_owned();
        path.push("-reserve");
        let mut b = Ballast {
            path: path.into(),
            armed: false,
            last_try: None,
        };
        b.arm();
        if !b.armed {
            tracing::warn!(reserve = %b.path.display(), "cannot set aside disk space for recording outcomes (the disk is full?); new events are refused until it can be");
        }
        b
    }

    /// No reserve (for commands that only look at the store): never spent, never refuses.
    pub fn none() -> Ballast {
        Ballast {
            path: PathBuf::new(),
            armed: true,
            last_try: None,
        }
    }

    /// Whether the reserve is in place (new events may be stored).
    pub fn armed(&self) -> bool {
        self.armed
    }

    fn arm(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        self.last_try = Some(Instant::now());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.path);
        let ok = file.is_ok_and(|f| {
            // SAFETY: posix_fallocate on a file descriptor we own, for a range we choose.
            let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, SIZE as libc::off_t) };
            r == 0 && f.sync_all().is_ok()
        });
        if !ok {
            let _ = std::fs::remove_file(&self.path);
        }
        self.armed = ok;
    }

    /// Give the reserve back to the disk. True when there was one to give.
    pub fn release(&mut self) -> bool {
        if !self.armed || self.path.as_os_str().is_empty() {
            return false;
        }
        self.armed = false;
        self.last_try = Some(Instant::now());
        let freed = std::fs::remove_file(&self.path).is_ok();
        if freed {
            tracing::warn!(
                "the disk is full: spent the space set aside to record what was posted; new deliveries are answered 503 until there is room"
            );
        }
        freed
    }

    /// Allocate the reserve again if it is spent and a second has passed since the last try.
    /// True when it was just put back.
    pub fn rearm_if_due(&mut self) -> bool {
        if self.armed
            || self
                .last_try
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        self.arm();
        if self.armed {
            tracing::info!("disk space set aside again for recording outcomes");
        }
        self.armed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_reserve_is_real_space_and_comes_back_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("spool.sqlite3");
        let mut b = Ballast::new(&store);
        let file = dir.path().join("spool.sqlite3-reserve");
        let meta = std::fs::metadata(&file).unwrap();
        assert!(b.armed());
        // Allocated blocks, not a sparse file.
        assert!(meta.blocks() * 512 >= SIZE, "{} blocks", meta.blocks());
        assert!(b.release());
        assert!(!file.exists() && !b.armed());
        assert!(!b.release(), "nothing left to release");
        assert!(!b.rearm_if_due(), "not within a second");
        b.last_try = Some(Instant::now() - Duration::from_secs(2));
        assert!(b.rearm_if_due());
        assert!(file.exists());
        // A command that only looks at the store keeps none, and is never refused for it.
        let mut none = Ballast::none();
        assert!(none.armed() && !none.release() && !none.rearm_if_due());
    }
}
