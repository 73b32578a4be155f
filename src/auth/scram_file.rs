//! The `--scram-users` file: RFC 5802 salted keys per user, never passwords.
//!
//! One line per user, in the layout PostgreSQL uses for the same keys:
//! `user:SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY`, each binary field standard base64.
//! `shardmq-passwd --scram` writes it; the broker only needs StoredKey (to check the client's
//! proof) and ServerKey (to sign server-final), from which the password cannot be recovered.
//! Empty lines and `#` comments are skipped; any other line is an error naming its number.

use super::password::{read_limited, user_lines, PasswordFileError};
use super::scram::{ScramCredentials, ScramUserStore, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::path::Path;

const PREFIX: &str = "SCRAM-SHA-256$";

/// The file encoding of one user's credentials (the part after `user:`).
pub fn encode_scram_credentials(credentials: &ScramCredentials) -> String {
    format!(
        "{PREFIX}{}:{}${}:{}",
        credentials.iterations,
        BASE64.encode(&credentials.salt),
        BASE64.encode(credentials.stored_key),
        BASE64.encode(credentials.server_key)
    )
}

/// Parses one user's credentials.
pub fn parse_scram_credentials(text: &str) -> Result<ScramCredentials, &'static str> {
    let Some(rest) = text.strip_prefix(PREFIX) else {
        return Err(
            "expected SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY (a plain \
                    password? write the file with `shardmq-passwd --scram -c FILE USER`, or \
                    convert a user:password file with `shardmq-passwd --scram -U FILE`)",
        );
    };
    let (params, keys) = rest.split_once('$').ok_or("missing `$` before the keys")?;
    let (iterations, salt) = params
        .split_once(':')
        .ok_or("missing `:` after iterations")?;
    let (stored, server) = keys.split_once(':').ok_or("missing `:` between the keys")?;
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| "the iteration count is not a number")?;
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
        return Err("the iteration count is outside 4096..=1000000");
    }
    let salt = BASE64.decode(salt).map_err(|_| "the salt is not base64")?;
    if salt.is_empty() || salt.len() > 64 {
        return Err("the salt is empty or longer than 64 bytes");
    }
    let key = |text: &str| -> Result<[u8; 32], &'static str> {
        let bytes = BASE64.decode(text).map_err(|_| "a key is not base64")?;
        bytes.try_into().map_err(|_| "a key is not 32 bytes")
    };
    Ok(ScramCredentials {
        salt,
        iterations,
        stored_key: key(stored)?,
        server_key: key(server)?,
    })
}

/// Parses a whole `--scram-users` file.
pub fn parse_scram_file(text: &str) -> Result<ScramUserStore, PasswordFileError> {
    let mut store = ScramUserStore::new();
    for item in user_lines(text) {
        let (line, username, rest) =
            item.map_err(|(line, reason)| PasswordFileError::Line { line, reason })?;
        let credentials = parse_scram_credentials(rest.trim_end())
            .map_err(|reason| PasswordFileError::Line { line, reason })?;
        store.insert(username, credentials);
    }
    Ok(store)
}

/// Reads and parses a `--scram-users` file.
pub fn read_scram_file(path: &Path) -> Result<ScramUserStore, PasswordFileError> {
    parse_scram_file(&read_limited(path).map_err(PasswordFileError::Io)?)
}
