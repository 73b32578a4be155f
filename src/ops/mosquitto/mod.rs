//! Mosquitto configuration files: [`parse`] reads one into a typed intermediate
//! ([`parse::MosquittoConfig`]), [`map`] turns that into our [`Config`] with a list of warnings,
//! or refuses it with errors naming the file and line of each directive it cannot honour.

pub mod map;
pub mod parse;

use crate::broker::Config;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a directive was written. Line 0 means the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Safe to ignore: the broker runs, the directive has no effect.
    Warning,
    /// The configuration is refused: running without the directive would change security or
    /// durability, or the value is wrong.
    Error,
}

/// One line about one directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub at: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {severity}: {}", self.at, self.message)
    }
}

/// A configuration mapped from a Mosquitto file, with the warnings about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and maps a Mosquitto configuration file. On failure every diagnostic is returned
/// (errors and warnings, in file order).
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let parsed = parse::read_file(path)?;
    map::to_config(&parsed)
}

/// Whether `text` is a Mosquitto configuration rather than TOML: its first directive is
/// `name value` rather than `name = value` or a `[table]`. An empty file counts as TOML
/// (both mean "all defaults").
pub fn looks_like_mosquitto(text: &str) -> bool {
    let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    if line.starts_with('[') {
        return false;
    }
    let key_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
        .unwrap_or(line.len());
    !line[key_end..].trim_start().starts_with('=')
}

#[cfg(test)]
mod tests;
