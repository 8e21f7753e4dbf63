//! The store's guard: a running relay checks every second that its database file is still
//! the one it opened and locked. If the file was deleted or replaced (a cleanup script, a
//! restore from backup, `rm -rf ~/.local/share`), acknowledging would put events into an
//! unlinked inode that vanishes at the next restart. So the relay at once refuses deliveries
//! (503, Vast.ai retries), says so in the log and `/health`, moves a replacement aside, writes
//! everything it holds to a fresh file at the path, locks it, and carries on.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::spool::{Fault, Spool};

/// How often the file's identity is checked.
const EVERY: Duration = Duration::from_secs(1);

/// (device, inode) of what is at `path` now, if anything.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Watch the store until `stop`. `lock` is the locked handle of the database file; it is
/// replaced by a lock on the restored file.
pub async fn watch(spool: Spool, lock: Arc<Mutex<std::fs::File>>, mut stop: watch::Receiver<bool>) {
    let path = spool.path().to_owned();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return,
        }
        let held = lock
            .lock()
            .ok()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        let now = identity(&path);
        if now.is_some() && now == held {
            continue;
        }
        let what = if now.is_none() { "deleted" } else { "replaced" };
        let reason = format!(
            "the event store {} was {what} while the relay runs; refusing deliveries (503) while it is restored from what the relay holds",
            path.display()
        );
        if !matches!(spool.fault(), Some(Fault::Broken(_))) {
            tracing::error!("{reason}");
        }
        spool.set_fault(Some(Fault::Broken(reason)));
        match restore(&spool, &path, now.is_some()).await {
            Ok(file) => {
                if let Ok(mut l) = lock.lock() {
                    *l = file;
                }
                spool.set_fault(None);
                tracing::warn!(store = %path.display(), "restored the event store from the running relay; accepting deliveries again");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot restore the event store yet; retrying in a second")
            }
        }
    }
}

async fn restore(spool: &Spool, path: &Path, replaced: bool) -> anyhow::Result<std::fs::File> {
    if replaced {
        let aside = path.with_extension(format!("replaced-{}", super::now_secs()));
        std::fs::rename(path, &aside)?;
        tracing::warn!(moved_to = %aside.display(), "moved the file that replaced the event store aside");
    }
    // SQLite's own -wal/-shm beside the new file would belong to the old one.
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    spool.restore().await?;
    super::lock_store(path)
}
