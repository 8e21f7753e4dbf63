//! Secrets in memory and on disk. [`Secret`] never shows its value in `Debug` or `Display`;
//! files that hold secrets are written atomically with mode 0600 inside a 0700 directory, and
//! a secrets file that others can read is refused rather than silently used.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A secret string: API key, webhook signing secret or Slack URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value itself: call this only where the secret is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// A file holding secrets has a mode others can read or write.
#[derive(Debug, thiserror::Error)]
#[error("{path} is readable or writable by other users (mode {mode:o}); fix it with `chmod 600 {path}` and rotate any secret it held")]
pub struct InsecureFile {
    pub path: String,
    pub mode: u32,
}

/// Create `dir` (and parents) with mode 0700. An existing directory is not changed (it may
/// be shared, like a home directory given as `--config-dir`), but a loose one is reported.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        return Ok(());
    }
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "{} is accessible to other users; secrets files in it stay 0600, but consider `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a 0600 temporary file in the same directory, fsync,
/// rename over the target, fsync the directory. A crash leaves the old or the new file whole.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .context("a secrets file needs a parent directory")?;
    ensure_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".vslack-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Warn (without refusing) when a file holding a secret that the user pointed us at can be
/// read by other users.
/// Read a secret from the file a flag (`--slack-url-file`, `--secret-file`) names: trimmed,
/// refused when missing or empty (a local setup problem, exit 6), with a warning when others
/// can read the file.
pub fn read_secret_file(path: &Path, flag: &str) -> Result<Secret> {
    let text = fs::read_to_string(path).map_err(|e| {
        crate::exit::SetupError(format!("cannot read {flag} {}: {e}", path.display()))
    })?;
    warn_if_loose(path);
    match text.trim() {
        "" => Err(crate::exit::SetupError(format!("{flag} {} is empty", path.display())).into()),
        s => Ok(Secret::new(s)),
    }
}

pub fn warn_if_loose(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} holds a secret but other users can read it (mode {mode:o}); `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

/// Read a secrets file, refusing one that other users can read or write.
/// `Ok(None)` when it does not exist.
pub fn read_private(path: &Path) -> Result<Option<String>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(InsecureFile {
            path: path.display().to_string(),
            mode,
        }
        .into());
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "(redacted) (redacted)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn files_are_private_and_loose_modes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cfg");
        let file = sub.join("config.toml");
        write_private(&file, b"x = 1\n").unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private(&file).unwrap().as_deref(), Some("x = 1\n"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&file).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(read_private(&sub.join("missing")).unwrap().is_none());
    }
}
