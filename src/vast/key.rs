//! Finding the Vast.ai API key, first found wins: `--api-key-file`, `VAST_API_KEY`, the key
//! saved by `vslack login`, then the official `vastai` CLI's files. The key is never taken
//! from argv, where other users could read it.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::VastError;
use crate::secret::Secret;

/// Where a key came from, for error messages ("rejected the API key from ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Flag(PathBuf),
    Env,
    Saved(PathBuf),
    VastaiFile(PathBuf),
    Prompt,
    Stdin,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Flag(p) => write!(f, "--api-key-file {}", p.display()),
            KeySource::Env => f.write_str("the VAST_API_KEY environment variable"),
            KeySource::Saved(p) => write!(f, "the key saved by `vslack login` in {}", p.display()),
            KeySource::VastaiFile(p) => write!(f, "the vastai CLI's key file {}", p.display()),
            KeySource::Prompt => f.write_str("the prompt"),
            KeySource::Stdin => f.write_str("standard input"),
        }
    }
}

impl KeySource {
    /// What to do when Vast.ai rejects a key from here.
    pub fn fix(&self) -> &'static str {
        match self {
            KeySource::Flag(_) => "put a current key in that file (https://cloud.vast.ai/manage-keys/)",
            KeySource::Env => "fix VAST_API_KEY, or unset it (`unset VAST_API_KEY`) and save a current key with `vslack login`",
            KeySource::Saved(_) => "run `vslack login` to save a current key (https://cloud.vast.ai/manage-keys/)",
            KeySource::VastaiFile(_) => "put a current key in that file, or save one with `vslack login` (it takes precedence)",
            KeySource::Prompt | KeySource::Stdin => "check the key at https://cloud.vast.ai/manage-keys/ and enter it again",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key: Secret,
    pub source: KeySource,
}

/// The official CLI's key files, in its order.
fn vastai_key_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let mut files = Vec::new();
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(xdg).join("vastai/vast_api_key"));
    }
    if let Some(home) = &home {
        let default = home.join(".config/vastai/vast_api_key");
        if !files.contains(&default) {
            files.push(default);
        }
        files.push(home.join(".vast_api_key"));
    }
    files
}

fn read_key_file(path: &Path) -> Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => {
            crate::secret::warn_if_loose(path);
            Ok(Some(Secret::new(s.trim())))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read API key file {}", path.display())),
    }
}

/// Resolve the key. `saved` is the key stored by `vslack login` and `config_file` its file.
pub fn find(
    flag_file: Option<&Path>,
    saved: Option<&Secret>,
    config_file: &Path,
) -> Result<ApiKey> {
    if let Some(path) = flag_file {
        let key = read_key_file(path)?.ok_or_else(|| VastError::KeyFileMissing {
            path: path.display().to_string(),
        })?;
        return Ok(ApiKey {
            key,
            source: KeySource::Flag(path.to_path_buf()),
        });
    }
    if let Some(k) = std::env::var("VAST_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        return Ok(ApiKey {
            key: Secret::new(k.trim()),
            source: KeySource::Env,
        });
    }
    if let Some(k) = saved {
        return Ok(ApiKey {
            key: k.clone(),
            source: KeySource::Saved(config_file.to_path_buf()),
        });
    }
    let files = vastai_key_files();
    for path in &files {
        if let Some(key) = read_key_file(path)? {
            return Ok(ApiKey {
                key,
                source: KeySource::VastaiFile(path.clone()),
            });
        }
    }
    let mut looked = vec![
        "VAST_API_KEY".to_owned(),
        format!("`vslack login` key in {}", config_file.display()),
    ];
    looked.extend(files.iter().map(|p| p.display().to_string()));
    Err(VastError::NoApiKey {
        looked: looked.join(", "),
    }
    .into())
}
