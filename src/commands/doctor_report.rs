//! `doctor`'s report: one check per link, each ok, warn or FAIL with its fix.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// `null` when there is nothing to fix.
    pub fix: Option<String>,
}

#[derive(Default)]
pub struct Report(pub Vec<Check>);

impl Report {
    pub fn add(
        &mut self,
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: Option<String>,
    ) {
        self.0.push(Check {
            name,
            level,
            detail: detail.into(),
            fix,
        });
    }
    pub fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.add(name, Level::Ok, detail, None);
    }
    pub fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Warn, detail, Some(fix.into()));
    }
    pub fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Level::Fail, detail, Some(fix.into()));
    }
}
