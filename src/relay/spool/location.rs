//! Where the store is: the embedded SQLite file, or a PostgreSQL database (its URL a secret).

use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// Where the store is.
#[derive(Debug, Clone)]
pub enum Location {
    /// The embedded file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (a secret: it may hold a password).
    Postgres(Secret),
}

impl Location {
    /// The SQLite file at `path`, unless a store URL is given.
    pub fn pick(url: Option<Secret>, path: &Path) -> Location {
        match url {
            Some(u) => Location::Postgres(u),
            None => Location::Sqlite(path.to_owned()),
        }
    }

    /// What logs, errors and `--json` may show: the file, or the server and database without
    /// user or password.
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(u) => super::postgres::shown(u.expose()),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}
