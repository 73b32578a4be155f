//! Username/password checks for plain CONNECT, from a Mosquitto password file read unchanged.
//!
//! Each line is `user:HASH`, where `HASH` is one of Mosquitto's encodings (checked against
//! Mosquitto's `src/password_mosq.c` and Debian's `mosquitto_passwd` 2.0 output):
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA-512 of the password over the salt,
//!   64 bytes of output; what `mosquitto_passwd` writes (101 iterations, 12-byte salt);
//! - `$6$SALT$HASH`: SHA-512 over the password followed by the salt (Mosquitto 1.6 and older).
//!
//! `SALT` and `HASH` are standard base64 with padding. Empty lines and lines starting with `#`
//! are skipped. Any other line is an error naming its number, so a typo never lets a user in
//! or locks everyone out silently; a plain-text password gets an error saying how to hash the
//! file (`shardmq-passwd -U FILE`, or `mosquitto_passwd -U FILE`).
//!
//! The broker never holds a password it could read back: only these salted hashes.

use super::{constant_time_eq, random_bytes};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::path::Path;

/// Largest password file read, in bytes.
pub const PASSWORD_FILE_LEN_MAX: u64 = 16 * 1024 * 1024;
/// Iterations `shardmq-passwd` writes by default: Mosquitto's own default, so that files move
/// between the two brokers and a check stays cheap on the shard thread (see README: one check
/// at 101 iterations is measured there).
pub const PBKDF2_ITERATIONS_DEFAULT: u32 = 101;
/// Largest iteration count accepted in a file: one check at this count costs tens of
/// milliseconds of a shard thread, which is the most the per-shard check budget can absorb.
pub const PBKDF2_ITERATIONS_MAX: u32 = 100_000;
/// Salt length written by `shardmq-passwd`, in bytes (Mosquitto's `SALT_LEN`).
pub const PASSWORD_SALT_LEN: usize = 12;
/// Longest salt accepted when reading, in bytes.
const SALT_LEN_MAX: usize = 64;

/// Base64 as OpenSSL's BIO reads it for Mosquitto: standard alphabet, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One stored password hash, in one of Mosquitto's formats.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$`: SHA-512(password || salt).
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte digest.
        hash: [u8; 64],
    },
    /// `$7$`: PBKDF2-HMAC-SHA-512(password, salt, iterations), 64 bytes.
    Pbkdf2Sha512 {
        /// The iteration count, 1..=[`PBKDF2_ITERATIONS_MAX`].
        iterations: u32,
        /// The salt.
        salt: Vec<u8>,
        /// The 64-byte derived key.
        hash: [u8; 64],
    },
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sha512 { .. } => f.write_str("PasswordHash::Sha512(..)"),
            Self::Pbkdf2Sha512 { iterations, .. } => {
                write!(
                    f,
                    "PasswordHash::Pbkdf2Sha512(iterations: {iterations}, ..)"
                )
            }
        }
    }
}

impl PasswordHash {
    /// Hashes `password` as `$7$` with `salt` and `iterations`.
    pub fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        Self::Pbkdf2Sha512 {
            iterations,
            salt: salt.to_vec(),
            hash: pbkdf2_sha512(password, salt, iterations),
        }
    }

    /// Hashes `password` as `$6$` with `salt` (for tests and `-H sha512`).
    pub fn sha512(password: &[u8], salt: &[u8]) -> Self {
        Self::Sha512 {
            salt: salt.to_vec(),
            hash: salted_sha512(password, salt),
        }
    }

    /// Hashes `password` as `$7$` with a fresh random salt of [`PASSWORD_SALT_LEN`] bytes.
    pub fn generate(password: &[u8], iterations: u32) -> Result<Self, getrandom::Error> {
        let salt = random_bytes::<PASSWORD_SALT_LEN>()?;
        Ok(Self::pbkdf2(password, &salt, iterations))
    }

    /// Hashes `password` as `$6$` with a fresh random salt (`-H sha512`, for old brokers).
    pub fn generate_sha512(password: &[u8]) -> Result<Self, getrandom::Error> {
        let salt = random_bytes::<PASSWORD_SALT_LEN>()?;
        Ok(Self::sha512(password, &salt))
    }

    /// Whether `password` hashes to this value; constant time in the comparison.
    pub fn matches(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, hash } => constant_time_eq(&salted_sha512(password, salt), hash),
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => constant_time_eq(&pbkdf2_sha512(password, salt, *iterations), hash),
        }
    }

    /// The Mosquitto encoding, the part of a line after `user:`.
    pub fn encode(&self) -> String {
        match self {
            Self::Sha512 { salt, hash } => {
                format!("$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
        }
    }

    /// Parses a Mosquitto encoding. The error says what is wrong, for the line's message.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let Some(rest) = text.strip_prefix('$') else {
            return Err("the password is in plain text: hash the file first with \
                        `shardmq-passwd -U FILE` (or `mosquitto_passwd -U FILE`)");
        };
        let parts: Vec<&str> = rest.split('$').collect();
        match parts.as_slice() {
            ["6", salt, hash] => Ok(Self::Sha512 {
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            }),
            ["7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .map_err(|_| "the $7$ iteration count is not a number")?;
                if !(1..=PBKDF2_ITERATIONS_MAX).contains(&iterations) {
                    return Err("the $7$ iteration count is outside 1..=100000");
                }
                Ok(Self::Pbkdf2Sha512 {
                    iterations,
                    salt: decode_salt(salt)?,
                    hash: decode_hash(hash)?,
                })
            }
            [kind, ..] if *kind == "6" || *kind == "7" => {
                Err("wrong number of `$`-separated fields for its format")
            }
            _ => Err("unknown hash format (expected $7$ PBKDF2-SHA512 or $6$ SHA512)"),
        }
    }
}

fn decode_salt(text: &str) -> Result<Vec<u8>, &'static str> {
    let salt = BASE64.decode(text).map_err(|_| "the salt is not base64")?;
    if salt.is_empty() || salt.len() > SALT_LEN_MAX {
        return Err("the salt is empty or longer than 64 bytes");
    }
    Ok(salt)
}

fn decode_hash(text: &str) -> Result<[u8; 64], &'static str> {
    let hash = BASE64.decode(text).map_err(|_| "the hash is not base64")?;
    hash.try_into().map_err(|_| "the hash is not 64 bytes")
}

fn salted_sha512(password: &[u8], salt: &[u8]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(password);
    hasher.update(salt);
    hasher.finalize().into()
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

/// Why a password file could not be loaded.
#[derive(Debug)]
pub enum PasswordFileError {
    /// The file could not be read, or is larger than [`PASSWORD_FILE_LEN_MAX`].
    Io(std::io::Error),
    /// A line is not `user:HASH`; `line` counts from 1.
    Line {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system gave no random bytes for the decoy.
    Random(getrandom::Error),
}

impl std::fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "password file: {error}"),
            Self::Line { line, reason } => write!(f, "password file line {line}: {reason}"),
            Self::Random(error) => write!(f, "password file: no random bytes: {error}"),
        }
    }
}

impl std::error::Error for PasswordFileError {}

/// One line of a password file: a user and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordEntry {
    /// The user name: non-empty, no `:`.
    pub username: String,
    /// The stored hash.
    pub hash: PasswordHash,
}

/// Splits the lines of a `user:...` file: yields (1-based line number, user, rest), skipping
/// empty lines and `#` comments, dropping a trailing `\r`; a line without `:`, with an empty
/// user name or a user seen before is an error.
pub(crate) fn user_lines(
    text: &str,
) -> impl Iterator<Item = Result<(usize, &str, &str), (usize, &'static str)>> {
    let mut seen = std::collections::HashSet::new();
    text.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            return None;
        }
        let number = index + 1;
        let Some((username, rest)) = line.split_once(':') else {
            return Some(Err((number, "expected user:hash")));
        };
        if username.is_empty() {
            return Some(Err((number, "empty user name")));
        }
        if !seen.insert(username.to_owned()) {
            return Some(Err((number, "user listed twice")));
        }
        Some(Ok((number, username, rest)))
    })
}

/// Parses a Mosquitto password file (see the module documentation).
pub fn parse_password_file(text: &str) -> Result<Vec<PasswordEntry>, PasswordFileError> {
    let mut entries = Vec::new();
    for item in user_lines(text) {
        let (line, username, rest) =
            item.map_err(|(line, reason)| PasswordFileError::Line { line, reason })?;
        let hash = PasswordHash::parse(rest.trim_end())
            .map_err(|reason| PasswordFileError::Line { line, reason })?;
        entries.push(PasswordEntry {
            username: username.to_owned(),
            hash,
        });
    }
    Ok(entries)
}

/// Reads a file of at most [`PASSWORD_FILE_LEN_MAX`] bytes as UTF-8.
pub(crate) fn read_limited(path: &Path) -> std::io::Result<String> {
    let len = std::fs::metadata(path)?.len();
    if len > PASSWORD_FILE_LEN_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "file is larger than 16 MiB",
        ));
    }
    std::fs::read_to_string(path)
}

/// Why a login was refused, for the counters; the client sees the same reason code for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordRefusal {
    /// No user name, or one that is not in the file.
    UnknownUser,
    /// A listed user with a missing or wrong password.
    BadPassword,
}

/// Checks CONNECT user names and passwords against a Mosquitto password file. Immutable once
/// built, so one instance is shared by every shard (a reload builds a new one).
pub struct PasswordAuthenticator {
    users: HashMap<String, PasswordHash>,
    /// Checked when the user is unknown, so that both cases cost the same work.
    decoy: PasswordHash,
}

impl PasswordAuthenticator {
    /// Builds the user set from parsed entries.
    pub fn new(entries: Vec<PasswordEntry>) -> Result<Self, PasswordFileError> {
        let users: HashMap<String, PasswordHash> = entries
            .into_iter()
            .map(|entry| (entry.username, entry.hash))
            .collect();
        let decoy_password = random_bytes::<16>().map_err(PasswordFileError::Random)?;
        let decoy = PasswordHash::generate(&decoy_password, PBKDF2_ITERATIONS_DEFAULT)
            .map_err(PasswordFileError::Random)?;
        Ok(Self { users, decoy })
    }

    /// Parses `text` with [`parse_password_file`] and builds the user set.
    pub fn from_text(text: &str) -> Result<Self, PasswordFileError> {
        Self::new(parse_password_file(text)?)
    }

    /// Reads, parses and loads a password file of at most [`PASSWORD_FILE_LEN_MAX`] bytes.
    pub fn from_file(path: &Path) -> Result<Self, PasswordFileError> {
        let text = read_limited(path).map_err(PasswordFileError::Io)?;
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

    /// The stored hash of a user, for the per-shard cache of verified logins.
    pub fn hash_of(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// Checks a CONNECT's User Name and Password. Both refusals become CONNACK 0x86 (3.1.1
    /// return code 4) and both cost one hash, so a client cannot tell which.
    pub fn check(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), PasswordRefusal> {
        let user = username.and_then(|username| self.users.get(username));
        match (user, password) {
            (Some(stored), Some(password)) if stored.matches(password) => Ok(()),
            (Some(_), _) => Err(PasswordRefusal::BadPassword),
            (None, _) => {
                let _ = self.decoy.matches(password.unwrap_or_default());
                Err(PasswordRefusal::UnknownUser)
            }
        }
    }
}
