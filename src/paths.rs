//! Where vslack keeps its files: the config directory (secrets, settings) and the data
//! directory (the relay's spool). Both come from the `directories` crate and can be overridden
//! by a flag or by `VSLACK_CONFIG_DIR` / `VSLACK_DATA_DIR`, which keeps tests hermetic.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// Resolved locations. Nothing is created until something is written.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// Flags win over environment variables, which win over the platform defaults.
    pub fn resolve(config_flag: Option<&Path>, data_flag: Option<&Path>) -> Result<Paths> {
        let env_dir = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let project = || {
            directories::ProjectDirs::from("", "", "vslack").ok_or_else(|| {
                anyhow!(
                    "cannot find a home directory for vslack's files; set VSLACK_CONFIG_DIR and VSLACK_DATA_DIR"
                )
            })
        };
        let config_dir = match config_flag
            .map(Path::to_path_buf)
            .or_else(|| env_dir("VSLACK_CONFIG_DIR"))
        {
            Some(p) => p,
            None => project()?.config_dir().to_path_buf(),
        };
        let data_dir = match data_flag
            .map(Path::to_path_buf)
            .or_else(|| env_dir("VSLACK_DATA_DIR"))
        {
            Some(p) => p,
            None => project()?.data_dir().to_path_buf(),
        };
        Ok(Paths {
            config_dir,
            data_dir,
        })
    }

    /// The TOML file holding settings and secrets (mode 0600).
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The relay's SQLite spool.
    pub fn spool_file(&self) -> PathBuf {
        self.data_dir.join("spool.sqlite3")
    }

    /// `serve --dry-run` keeps its own store here, so a rehearsal never touches the real one.
    pub fn dry_run_dir(&self) -> PathBuf {
        self.data_dir.join("dry-run")
    }

    /// The dry run's store.
    pub fn dry_run_spool_file(&self) -> PathBuf {
        self.dry_run_dir().join("spool.sqlite3")
    }
}

/// A file's identity: a rewrite by rename changes the inode, and the times and size tell apart
/// even two writes within the file system's timestamp resolution. `None` when it is missing.
pub fn file_version(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{:x}-{:x}.{:x}-{:x}",
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.len()
    ))
}
