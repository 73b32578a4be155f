//! Reading a configuration file of either kind: our TOML (the native format) or a Mosquitto
//! configuration, told apart by content ([`mosquitto::looks_like_mosquitto`]).

use super::mosquitto;
use crate::broker::Config;
use std::path::Path;

/// Which kind a configuration file was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Toml,
    Mosquitto,
}

/// A configuration read from a file, with the warnings about it (one line each).
#[derive(Clone, Debug)]
pub struct FileConfig {
    pub config: Config,
    pub kind: FileKind,
    pub warnings: Vec<String>,
}

/// Reads `path`. On failure returns every error found, one line each, naming the file (and
/// for Mosquitto files the line).
pub fn load_file(path: &Path) -> Result<FileConfig, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    if mosquitto::looks_like_mosquitto(&text) {
        let parsed = mosquitto::parse::parse_str(&text, path)
            .map_err(|all| all.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        return match mosquitto::map::to_config(&parsed) {
            Ok(loaded) => Ok(FileConfig {
                config: loaded.config,
                kind: FileKind::Mosquitto,
                warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
            }),
            Err(all) => Err(all.iter().map(ToString::to_string).collect()),
        };
    }
    let config =
        Config::from_toml_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    Ok(FileConfig {
        config,
        kind: FileKind::Toml,
        warnings: Vec::new(),
    })
}
