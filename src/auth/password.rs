//! Username/password checks for plain CONNECT, from a file of `user:password` lines.
//!
//! The file holds the passwords in clear (like a Mosquitto password file before
//! `mosquitto_passwd -U`), so the operator keeps it readable by the broker only. In memory each
//! password is kept only as SHA-256 over a random per-user salt and the password: a memory dump
//! does not show the passwords, and a check costs one hash. A slow KDF would buy nothing against
//! someone who already has the file, and would make every CONNECT a denial-of-service lever.

use super::{constant_time_eq, random_bytes};
use crate::codec::ReasonCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Largest password file read by [`PasswordAuthenticator::from_file`], in bytes.
pub const PASSWORD_FILE_LEN_MAX: u64 = 16 * 1024 * 1024;

const SALT_LEN: usize = 16;

/// One `user:password` line of a password file.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordEntry {
    /// The user name: non-empty, no `:`.
    pub username: String,
    /// The password in clear: everything after the first `:` (it may contain `:`).
    pub password: String,
}

impl std::fmt::Debug for PasswordEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordEntry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a password file could not be loaded.
#[derive(Debug)]
pub enum PasswordFileError {
    /// The file could not be read, or is larger than [`PASSWORD_FILE_LEN_MAX`].
    Io(std::io::Error),
    /// A line is not `user:password`; `line` counts from 1.
    Line {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system gave no random bytes for the salts.
    Random(getrandom::Error),
}

impl std::fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "password file: {error}"),
            Self::Line { line, reason } => write!(f, "password file line {line}: {reason}"),
            Self::Random(error) => write!(f, "password file: no random salt: {error}"),
        }
    }
}

impl std::error::Error for PasswordFileError {}

/// Parses a password file: one `user:password` per line; empty lines and lines starting with
/// `#` are skipped; a trailing `\r` is dropped; a user may appear only once.
pub fn parse_password_file(text: &str) -> Result<Vec<PasswordEntry>, PasswordFileError> {
    let mut entries: Vec<PasswordEntry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| PasswordFileError::Line {
            line: index + 1,
            reason,
        };
        let Some((username, password)) = line.split_once(':') else {
            return Err(error("expected user:password"));
        };
        if username.is_empty() {
            return Err(error("empty user name"));
        }
        if !seen.insert(username.to_owned()) {
            return Err(error("user listed twice"));
        }
        entries.push(PasswordEntry {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    Ok(entries)
}

struct SaltedHash {
    salt: [u8; SALT_LEN],
    hash: [u8; 32],
}

impl SaltedHash {
    fn new(salt: [u8; SALT_LEN], password: &[u8]) -> Self {
        Self {
            salt,
            hash: salted_sha256(&salt, password),
        }
    }

    fn matches(&self, password: &[u8]) -> bool {
        constant_time_eq(&salted_sha256(&self.salt, password), &self.hash)
    }
}

fn salted_sha256(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password);
    hasher.finalize().into()
}

/// Checks CONNECT user names and passwords against a fixed set of users. Immutable once built,
/// so one instance is shared by every shard.
pub struct PasswordAuthenticator {
    users: HashMap<String, SaltedHash>,
    /// Checked when the user is unknown, so that both cases cost the same hash.
    decoy: SaltedHash,
}

impl PasswordAuthenticator {
    /// Builds the user set from parsed entries, salting each password.
    pub fn new(entries: &[PasswordEntry]) -> Result<Self, PasswordFileError> {
        let mut users = HashMap::with_capacity(entries.len());
        for entry in entries {
            let salt = random_bytes::<SALT_LEN>().map_err(PasswordFileError::Random)?;
            users.insert(
                entry.username.clone(),
                SaltedHash::new(salt, entry.password.as_bytes()),
            );
        }
        let decoy_salt = random_bytes::<SALT_LEN>().map_err(PasswordFileError::Random)?;
        let decoy_password = random_bytes::<SALT_LEN>().map_err(PasswordFileError::Random)?;
        Ok(Self {
            users,
            decoy: SaltedHash::new(decoy_salt, &decoy_password),
        })
    }

    /// Parses `text` with [`parse_password_file`] and builds the user set.
    pub fn from_text(text: &str) -> Result<Self, PasswordFileError> {
        Self::new(&parse_password_file(text)?)
    }

    /// Reads, parses and loads a password file of at most [`PASSWORD_FILE_LEN_MAX`] bytes.
    pub fn from_file(path: &Path) -> Result<Self, PasswordFileError> {
        let len = std::fs::metadata(path)
            .map_err(PasswordFileError::Io)?
            .len();
        if len > PASSWORD_FILE_LEN_MAX {
            return Err(PasswordFileError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "password file is larger than 16 MiB",
            )));
        }
        let text = std::fs::read_to_string(path).map_err(PasswordFileError::Io)?;
        Self::from_text(&text)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users (every check fails).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a CONNECT's User Name and Password. A missing user name or password, an unknown
    /// user and a wrong password all give `Err(ReasonCode::BadUserNameOrPassword)` (CONNACK 0x86,
    /// or return code 4 in MQTT 3.1.1), and all cost one hash, so a client cannot tell which.
    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> Result<(), ReasonCode> {
        let user = username.and_then(|username| self.users.get(username));
        let matched = match (user, password) {
            (Some(stored), Some(password)) => stored.matches(password),
            _ => {
                let _ = self.decoy.matches(password.unwrap_or_default());
                false
            }
        };
        if matched {
            Ok(())
        } else {
            Err(ReasonCode::BadUserNameOrPassword)
        }
    }
}
