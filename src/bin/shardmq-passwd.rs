//! `shardmq-passwd`: manages password files the way `mosquitto_passwd` does, with its flags.
//!
//! ```text
//! shardmq-passwd [-H sha512-pbkdf2|sha512] [-I N] [-c | -D] FILE USER   # asks for the password
//! shardmq-passwd [-H ...] [-I N] [-c] -b FILE USER PASSWORD
//! shardmq-passwd -U FILE                                                # hash a plain file
//! shardmq-passwd --scram ...                                            # SCRAM stored keys
//! ```
//!
//! Writes Mosquitto's `$7$` (PBKDF2-SHA512, 101 iterations by default, as mosquitto_passwd), so
//! the file works with both brokers; `--scram` writes the `--scram-users` format (RFC 5802
//! StoredKey/ServerKey, 4096 iterations by default). Files are written with mode 0600 through a
//! temporary file and a rename, so a crash never leaves half a file.

use clap::Parser;
use shardmq::auth::{
    encode_scram_credentials, PasswordHash, ScramCredentials, PBKDF2_ITERATIONS_DEFAULT,
    PBKDF2_ITERATIONS_MAX, SCRAM_ITERATIONS_DEFAULT,
};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Manage shardmq / Mosquitto password files.
#[derive(Parser, Debug)]
#[command(name = "shardmq-passwd", version, about)]
struct Cli {
    /// Create a new password file (overwrites an existing one).
    #[arg(short = 'c', conflicts_with_all = ["delete", "update"])]
    create: bool,
    /// Batch mode: the password is the last argument.
    #[arg(short = 'b')]
    batch: bool,
    /// Delete the user rather than adding or updating it.
    #[arg(short = 'D', conflicts_with = "update")]
    delete: bool,
    /// Hash every plain-text `user:password` line of FILE in place.
    #[arg(short = 'U')]
    update: bool,
    /// Hash: sha512-pbkdf2 ($7$, default) or sha512 ($6$, Mosquitto 1.6 and older).
    #[arg(short = 'H', value_name = "HASH", default_value = "sha512-pbkdf2")]
    hash: String,
    /// PBKDF2 iterations [default: 101 for $7$, 4096 for --scram].
    #[arg(short = 'I', value_name = "N")]
    iterations: Option<u32>,
    /// Write SCRAM-SHA-256 stored keys (the --scram-users file) instead of Mosquitto hashes.
    #[arg(long)]
    scram: bool,
    /// The password file.
    file: PathBuf,
    /// The user name.
    username: Option<String>,
    /// The password (with -b).
    password: Option<String>,
}

impl Cli {
    /// The file encoding of `password` for a new line.
    fn encode(&self, password: &str) -> Result<String, String> {
        if self.scram {
            let iterations = self.iterations.unwrap_or(SCRAM_ITERATIONS_DEFAULT);
            let credentials = ScramCredentials::generate(password, iterations)
                .map_err(|e| format!("cannot derive SCRAM keys: {e}"))?;
            return Ok(encode_scram_credentials(&credentials));
        }
        let iterations = self.iterations.unwrap_or(PBKDF2_ITERATIONS_DEFAULT);
        if !(1..=PBKDF2_ITERATIONS_MAX).contains(&iterations) {
            return Err(format!("-I must be in 1..={PBKDF2_ITERATIONS_MAX}"));
        }
        let hash = match self.hash.as_str() {
            "sha512-pbkdf2" => PasswordHash::generate(password.as_bytes(), iterations),
            "sha512" => PasswordHash::generate_sha512(password.as_bytes()),
            other => return Err(format!("unknown hash {other:?} (sha512-pbkdf2 or sha512)")),
        };
        hash.map(|h| h.encode())
            .map_err(|e| format!("no random salt: {e}"))
    }
}

/// Whether a line's part after `user:` is already hashed.
fn is_hashed(rest: &str) -> bool {
    rest.starts_with("$6$") || rest.starts_with("$7$") || rest.starts_with("SCRAM-SHA-256$")
}

fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut ask = |prompt: &str| -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        match lines.next() {
            Some(Ok(line)) => Ok(line.trim_end_matches('\r').to_owned()),
            _ => Err("no password given".into()),
        }
    };
    let first = ask("Password: ")?;
    let second = ask("Reenter password: ")?;
    if first != second {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

/// Writes `text` to `path` with mode 0600, through a temporary file and a rename.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("shardmq-passwd.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|_| file.sync_all())
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn run(cli: &Cli) -> Result<(), String> {
    let existing = if cli.create {
        String::new()
    } else {
        std::fs::read_to_string(&cli.file)
            .map_err(|e| format!("cannot read {}: {e}", cli.file.display()))?
    };
    let mut out = String::with_capacity(existing.len() + 200);
    if cli.update {
        for line in existing.lines() {
            match line.split_once(':') {
                Some((user, rest)) if !line.starts_with('#') && !is_hashed(rest) => {
                    out.push_str(&format!("{user}:{}\n", cli.encode(rest)?));
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        return write_private(&cli.file, &out);
    }
    let username = cli.username.as_deref().ok_or("a user name is needed")?;
    if username.is_empty() || username.contains(':') {
        return Err("a user name must be non-empty and without ':'".into());
    }
    let new_line = if cli.delete {
        None
    } else {
        let password = match (&cli.password, cli.batch) {
            (Some(password), true) => password.clone(),
            (None, false) => read_password()?,
            (Some(_), false) => return Err("a password argument needs -b".into()),
            (None, true) => return Err("-b needs a password argument".into()),
        };
        Some(format!("{username}:{}", cli.encode(&password)?))
    };
    let mut found = false;
    for line in existing.lines() {
        if line
            .split_once(':')
            .is_some_and(|(user, _)| user == username)
        {
            found = true;
            if let Some(new_line) = &new_line {
                out.push_str(new_line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    match new_line {
        Some(new_line) if !found => {
            out.push_str(&new_line);
            out.push('\n');
        }
        None if !found => return Err(format!("user {username} not in the file")),
        _ => {}
    }
    write_private(&cli.file, &out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardmq-passwd: {e}");
            ExitCode::from(1)
        }
    }
}
