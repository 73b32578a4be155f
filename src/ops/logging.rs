//! The broker's logger: env_logger with our format, plain text or JSON lines, to standard error,
//! standard output or a file that SIGUSR1 reopens (for logrotate).
//!
//! The level is `log::set_max_level` (changed by a reload); env_logger itself lets everything
//! through. JSON lines carry the message's `key=value` pairs (the broker writes `client_id`,
//! `addr`, `shard`, `reason`, ... that way) as fields, beside `ts`, `level`, `msg` and the
//! shard of the thread that logged it.

use super::config::{LogDestination, LogFormat, OpsConfig};
use parking_lot::Mutex;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a reload may change in the logger, and the file to reopen.
#[derive(Debug)]
pub struct LogControl {
    json: AtomicBool,
    connection_messages: AtomicBool,
    file: Option<Arc<ReopenableFile>>,
}

/// A log file appended to; `reopen` starts a new one at the same path (after logrotate moved
/// the old one away).
#[derive(Debug)]
pub struct ReopenableFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open_log(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Logs may hold client ids and addresses: readable by the broker's group at most.
        options.mode(0o640);
    }
    options.open(path)
}

impl ReopenableFile {
    fn open(path: &Path) -> io::Result<ReopenableFile> {
        Ok(ReopenableFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_log(path)?),
        })
    }

    /// Opens the path again and writes to the new file from now on.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_log(&self.path)?;
        *self.file.lock() = fresh;
        Ok(())
    }
}

/// env_logger's pipe into the current file.
struct FileWriter(Arc<ReopenableFile>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.file.lock().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.file.lock().flush()
    }
}

impl LogControl {
    /// Applies what can change while running: the level, the format, connection messages.
    pub fn apply(&self, ops: &OpsConfig, level_override: Option<log::LevelFilter>) {
        log::set_max_level(level_override.unwrap_or_else(|| ops.level()));
        self.json
            .store(ops.log_format == LogFormat::Json, Ordering::Relaxed);
        self.connection_messages
            .store(ops.connection_messages, Ordering::Relaxed);
    }

    /// Reopens the log file (SIGUSR1); nothing to do for standard error or output.
    pub fn reopen(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => file.reopen(),
            None => Ok(()),
        }
    }
}

/// Installs the logger. Fails if the log file cannot be opened.
pub fn init(
    ops: &OpsConfig,
    level_override: Option<log::LevelFilter>,
) -> io::Result<Arc<LogControl>> {
    let file = match &ops.log_destination {
        LogDestination::File(path) => {
            Some(Arc::new(ReopenableFile::open(path).map_err(|e| {
                io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
            })?))
        }
        _ => None,
    };
    let control = Arc::new(LogControl {
        json: AtomicBool::new(false),
        connection_messages: AtomicBool::new(true),
        file: file.clone(),
    });
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Trace);
    builder.target(match (&ops.log_destination, file) {
        (_, Some(file)) => env_logger::Target::Pipe(Box::new(FileWriter(file))),
        (LogDestination::Stdout, None) => env_logger::Target::Stdout,
        _ => env_logger::Target::Stderr,
    });
    let format_control = control.clone();
    builder.format(move |buf, record| {
        let message = record.args().to_string();
        if !format_control.connection_messages.load(Ordering::Relaxed)
            && record.level() == log::Level::Info
            && is_connection_message(&message)
        {
            return Ok(());
        }
        let timestamp = buf.timestamp_millis();
        if format_control.json.load(Ordering::Relaxed) {
            writeln!(
                buf,
                "{}",
                json_line(&timestamp.to_string(), record.level(), &message)
            )
        } else {
            writeln!(buf, "{timestamp} {:<5} {message}", record.level())
        }
    });
    // A second init (a test that starts two brokers) keeps the first logger.
    if builder.try_init().is_err() {
        log::debug!("logger already installed");
    }
    control.apply(ops, level_override);
    Ok(control)
}

/// The broker's connect and disconnect lines (`connection_messages false` moves them to debug).
fn is_connection_message(message: &str) -> bool {
    message.starts_with("connect ") || message.starts_with("disconnect ")
}

/// One JSON object: `ts`, `level`, `msg`, the shard of the logging thread, and the message's
/// `key=value` words as fields (values that parse as integers become numbers).
pub fn json_line(timestamp: &str, level: log::Level, message: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert("ts".into(), timestamp.into());
    object.insert("level".into(), level.as_str().to_lowercase().into());
    let thread = std::thread::current();
    if let Some(shard) = thread.name().and_then(|n| n.strip_prefix("shard-")) {
        if let Ok(shard) = shard.parse::<u64>() {
            object.insert("shard".into(), shard.into());
        }
    }
    // Words before the first `key=value` name the event; a word without `=` after one
    // continues the previous value (`reason=peer closed`).
    let mut event = Vec::new();
    let mut fields: Vec<(&str, String)> = Vec::new();
    for word in message.split(' ') {
        match word.split_once('=') {
            Some((key, value))
                if !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                fields.push((key, value.to_string()));
            }
            _ => match fields.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(word);
                }
                None => event.push(word),
            },
        }
    }
    for (key, value) in fields {
        let value = match value.parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(value),
        };
        object.insert(key.to_string(), value);
    }
    if !event.is_empty() {
        object.insert("event".into(), event.join(" ").into());
    }
    object.insert("msg".into(), message.into());
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_message_fields() {
        let line = json_line(
            "2026-12-04T20:00:00.000Z",
            log::Level::Info,
            "disconnect client_id=c1 addr=127.0.0.1:5 shard=1 listener=0 reason=peer closed",
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "disconnect");
        assert_eq!(value["client_id"], "c1");
        assert_eq!(value["addr"], "127.0.0.1:5");
        assert_eq!(value["shard"], 1);
        assert_eq!(value["listener"], 0);
        assert_eq!(value["reason"], "peer closed");
        assert_eq!(value["level"], "info");
        assert!(value["msg"].as_str().unwrap().ends_with("peer closed"));
    }

    #[test]
    fn a_reopened_file_receives_the_next_lines() {
        let dir = std::env::temp_dir().join(format!("shardmq-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.log");
        let file = Arc::new(ReopenableFile::open(&path).unwrap());
        let mut writer = FileWriter(file.clone());
        writer.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("broker.log.1")).unwrap();
        file.reopen().unwrap();
        writer.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("broker.log.1")).unwrap(),
            "one\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
