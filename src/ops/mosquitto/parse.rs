//! Reading a Mosquitto configuration file into [`MosquittoConfig`], a typed intermediate that
//! keeps where each directive was written (file and line), so that the mapping onto our
//! [`crate::broker::Config`] can name them in its errors and warnings.
//!
//! Syntax (as Mosquitto 2 reads it): one `directive value...` per line, values separated by
//! whitespace, `#` starting a comment only at the start of a line, `listener` opening a block
//! that the following listener settings apply to, `include_dir` reading the `*.conf` files of a
//! folder in name order. Every directive is checked now, including those whose feature is not on
//! `main` yet; a directive Mosquitto does not know is an error, as in Mosquitto.

use super::{Diagnostic, Location, Severity};
use std::path::{Path, PathBuf};

/// Largest configuration file read, in bytes.
pub const FILE_LEN_MAX: u64 = 1024 * 1024;
/// Most files an `include_dir` folder may hold.
pub const INCLUDED_FILES_MAX: usize = 1000;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub at: Location,
}

/// `protocol` of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    Websockets,
}

/// `socket_domain` of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketDomain {
    Ipv4,
    Ipv6,
}

/// One `log_dest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    File(PathBuf),
    Syslog,
    Topic,
    Dlt,
    None,
}

/// Authentication and authorisation settings: global, or per listener with
/// `per_listener_settings true`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    pub allow_anonymous: Option<At<bool>>,
    pub password_file: Option<At<PathBuf>>,
    pub acl_file: Option<At<PathBuf>>,
    /// Other security directives (`psk_file`, `plugin`, `auth_plugin`, ...), kept to be refused.
    pub other: Vec<At<String>>,
}

/// TLS settings of one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    pub cafile: Option<At<PathBuf>>,
    pub capath: Option<At<PathBuf>>,
    pub certfile: Option<At<PathBuf>>,
    pub keyfile: Option<At<PathBuf>>,
    pub require_certificate: Option<At<bool>>,
    pub use_identity_as_username: Option<At<bool>>,
    pub tls_version: Option<At<String>>,
    /// Other TLS directives (`ciphers`, `crlfile`, `dhparamfile`, ...), kept to be refused.
    pub other: Vec<At<String>>,
}

impl Tls {
    /// Whether any TLS directive was given.
    pub fn is_set(&self) -> bool {
        *self != Tls::default()
    }

    /// The first TLS directive given, for messages.
    pub fn first(&self) -> Option<(&'static str, &Location)> {
        let paths = [
            ("cafile", &self.cafile),
            ("capath", &self.capath),
            ("certfile", &self.certfile),
            ("keyfile", &self.keyfile),
        ];
        let flags = [
            ("require_certificate", &self.require_certificate),
            ("use_identity_as_username", &self.use_identity_as_username),
        ];
        paths
            .iter()
            .find_map(|(n, v)| v.as_ref().map(|v| (*n, &v.at)))
            .or_else(|| {
                flags
                    .iter()
                    .find_map(|(n, v)| v.as_ref().map(|v| (*n, &v.at)))
            })
            .or_else(|| self.tls_version.as_ref().map(|v| ("tls_version", &v.at)))
            .or_else(|| self.other.first().map(|v| ("TLS option", &v.at)))
    }
}

/// One `listener` block (or the default listener of `port` / `bind_address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Where the `listener` (or `port`) line is.
    pub at: Location,
    pub port: u16,
    /// The listener line's address, or `bind_address`: an IP address, a host name, or (port 0)
    /// a Unix socket path.
    pub bind_address: Option<At<String>>,
    pub socket_domain: Option<At<SocketDomain>>,
    pub protocol: Option<At<Protocol>>,
    pub max_connections: Option<At<i64>>,
    pub max_qos: Option<At<u8>>,
    pub mount_point: Option<At<String>>,
    pub tls: Tls,
    pub security: Security,
    /// Listener directives safe to ignore (`http_dir`, `websockets_log_level`, ...).
    pub ignored: Vec<At<String>>,
}

impl Listener {
    fn new(at: Location, port: u16) -> Listener {
        Listener {
            at,
            port,
            bind_address: None,
            socket_domain: None,
            protocol: None,
            max_connections: None,
            max_qos: None,
            mount_point: None,
            tls: Tls::default(),
            security: Security::default(),
            ignored: Vec::new(),
        }
    }
}

/// Every directive of a Mosquitto configuration, typed, with its location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MosquittoConfig {
    /// The listener of the deprecated top-level `port` / `bind_address` / TLS settings.
    pub default_listener: Option<Listener>,
    pub listeners: Vec<Listener>,
    /// Global security settings (all of them without `per_listener_settings true`).
    pub security: Security,
    pub per_listener_settings: Option<At<bool>>,
    pub max_inflight_messages: Option<At<i64>>,
    pub max_queued_messages: Option<At<i64>>,
    pub max_queued_bytes: Option<At<i64>>,
    pub max_inflight_bytes: Option<At<i64>>,
    pub max_packet_size: Option<At<i64>>,
    pub message_size_limit: Option<At<i64>>,
    pub max_keepalive: Option<At<i64>>,
    pub queue_qos0_messages: Option<At<bool>>,
    pub persistence: Option<At<bool>>,
    pub persistence_location: Option<At<PathBuf>>,
    pub persistence_file: Option<At<String>>,
    pub autosave_interval: Option<At<i64>>,
    pub retain_available: Option<At<bool>>,
    pub sys_interval: Option<At<i64>>,
    pub log_dest: Vec<At<LogDest>>,
    pub log_type: Vec<At<String>>,
    pub connection_messages: Option<At<bool>>,
    pub pid_file: Option<At<PathBuf>>,
    /// Directives that change message flow or durability and that we do not have (bridges,
    /// `persistent_client_expiration` with persistence, ...): refused.
    pub refused: Vec<At<String>>,
    /// Directives that are safe to ignore (`user`, `log_timestamp`, ...): a warning each.
    pub ignored: Vec<At<String>>,
}

/// Reads `path` (and the folders it includes). Every problem found is returned, not just the
/// first.
pub fn read_file(path: &Path) -> Result<MosquittoConfig, Vec<Diagnostic>> {
    let mut parser = Parser::default();
    parser.file(path, 0);
    if parser.errors.is_empty() {
        Ok(parser.config)
    } else {
        Err(parser.errors)
    }
}

/// Parses `text` as if read from `path` (no `include_dir` below the top file's folder is read
/// unless it exists).
pub fn parse_str(text: &str, path: &Path) -> Result<MosquittoConfig, Vec<Diagnostic>> {
    let mut parser = Parser::default();
    parser.text(text, path, 0);
    if parser.errors.is_empty() {
        Ok(parser.config)
    } else {
        Err(parser.errors)
    }
}

#[derive(Default)]
struct Parser {
    config: MosquittoConfig,
    errors: Vec<Diagnostic>,
    /// Index into `config.listeners` of the open `listener` block.
    current: Option<usize>,
}

/// What a directive's value must look like.
fn error(at: &Location, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        at: at.clone(),
        message,
    }
}

impl Parser {
    fn file(&mut self, path: &Path, depth: usize) {
        let at = Location {
            file: path.to_path_buf(),
            line: 0,
        };
        match read_bounded(path) {
            Ok(text) => self.text(&text, path, depth),
            Err(e) => self.errors.push(error(&at, e)),
        }
    }

    fn text(&mut self, text: &str, path: &Path, depth: usize) {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = Location {
                file: path.to_path_buf(),
                line: index + 1,
            };
            let mut words = line.split_whitespace();
            let Some(name) = words.next() else { continue };
            let args: Vec<&str> = words.collect();
            if let Err(message) = self.directive(name, &args, &at, depth) {
                self.errors.push(error(&at, format!("{name}: {message}")));
            }
        }
    }

    fn directive(
        &mut self,
        name: &str,
        args: &[&str],
        at: &Location,
        depth: usize,
    ) -> Result<(), String> {
        let config = &mut self.config;
        macro_rules! one {
            ($parse:expr) => {{
                let [value] = args else {
                    return Err(format!("expects one value, got {}", args.len()));
                };
                At {
                    value: $parse(value)?,
                    at: at.clone(),
                }
            }};
        }
        match name {
            "listener" => {
                let (port, address) = match args {
                    [port] => (*port, None),
                    [port, address] => (*port, Some(*address)),
                    _ => return Err("expects a port and an optional address".into()),
                };
                let mut listener = Listener::new(at.clone(), parse_port(port)?);
                listener.bind_address = address.map(|a| At {
                    value: a.to_string(),
                    at: at.clone(),
                });
                config.listeners.push(listener);
                self.current = Some(config.listeners.len() - 1);
            }
            "port" => {
                let port = one!(parse_port);
                let listener = config
                    .default_listener
                    .get_or_insert_with(|| Listener::new(port.at.clone(), port.value));
                listener.port = port.value;
                listener.at = port.at;
            }
            "bind_address" => {
                let address = one!(|v: &str| Ok::<_, String>(v.to_string()));
                // Mosquitto 2: bind_address sets the default listener's address only.
                let listener = config
                    .default_listener
                    .get_or_insert_with(|| Listener::new(address.at.clone(), 1883));
                listener.bind_address = Some(address);
            }
            "socket_domain" => self.listener(at)?.socket_domain = Some(one!(parse_domain)),
            // Outside a block these set the default listener, which Mosquitto 2 creates only
            // when one of its settings differs from the default (protocol mqtt,
            // max_connections -1, max_qos 2 do not create it).
            "protocol" => {
                let protocol = one!(parse_protocol);
                if self.current.is_some() || protocol.value != Protocol::Mqtt {
                    self.listener(at)?.protocol = Some(protocol);
                }
            }
            "max_connections" => {
                let max = one!(parse_int);
                if self.current.is_some() || max.value != -1 {
                    self.listener(at)?.max_connections = Some(max);
                }
            }
            "max_qos" => {
                let qos = one!(parse_qos);
                if self.current.is_some() || qos.value != 2 {
                    self.listener(at)?.max_qos = Some(qos);
                }
            }
            "mount_point" => {
                self.listener(at)?.mount_point = Some(one!(|v: &str| Ok::<_, String>(v.into())))
            }
            "cafile" => self.tls(at)?.cafile = Some(one!(parse_path)),
            "capath" => self.tls(at)?.capath = Some(one!(parse_path)),
            "certfile" => self.tls(at)?.certfile = Some(one!(parse_path)),
            "keyfile" => self.tls(at)?.keyfile = Some(one!(parse_path)),
            "require_certificate" => self.tls(at)?.require_certificate = Some(one!(parse_bool)),
            "use_identity_as_username" => {
                self.tls(at)?.use_identity_as_username = Some(one!(parse_bool))
            }
            "tls_version" => self.tls(at)?.tls_version = Some(one!(parse_tls_version)),
            "ciphers"
            | "ciphers_tls1.3"
            | "crlfile"
            | "dhparamfile"
            | "tls_engine"
            | "tls_engine_kpass_sha1"
            | "tls_keyform"
            | "use_subject_as_username" => self.tls(at)?.other.push(At {
                value: name.to_string(),
                at: at.clone(),
            }),
            "allow_anonymous" => self.security().allow_anonymous = Some(one!(parse_bool)),
            "password_file" => self.security().password_file = Some(one!(parse_path)),
            "acl_file" => self.security().acl_file = Some(one!(parse_path)),
            "psk_file"
            | "psk_hint"
            | "plugin"
            | "auth_plugin"
            | "auth_plugin_deny_special_chars"
            | "allow_zero_length_clientid"
            | "auto_id_prefix"
            | "clientid_prefixes"
            | "use_username_as_clientid" => self.security().other.push(At {
                value: name.to_string(),
                at: at.clone(),
            }),
            _ if name.starts_with("plugin_opt_") || name.starts_with("auth_opt_") => {
                self.security().other.push(At {
                    value: name.to_string(),
                    at: at.clone(),
                })
            }
            "per_listener_settings" => config.per_listener_settings = Some(one!(parse_bool)),
            "max_inflight_messages" => config.max_inflight_messages = Some(one!(parse_int)),
            "max_queued_messages" => config.max_queued_messages = Some(one!(parse_int)),
            "max_queued_bytes" => config.max_queued_bytes = Some(one!(parse_int)),
            "max_inflight_bytes" => config.max_inflight_bytes = Some(one!(parse_int)),
            "max_packet_size" => config.max_packet_size = Some(one!(parse_int)),
            "message_size_limit" => config.message_size_limit = Some(one!(parse_int)),
            "max_keepalive" => config.max_keepalive = Some(one!(parse_int)),
            "queue_qos0_messages" => config.queue_qos0_messages = Some(one!(parse_bool)),
            "persistence" => config.persistence = Some(one!(parse_bool)),
            "persistence_location" => config.persistence_location = Some(one!(parse_path)),
            "persistence_file" => {
                config.persistence_file = Some(one!(|v: &str| Ok::<_, String>(v.into())))
            }
            "autosave_interval" => config.autosave_interval = Some(one!(parse_int)),
            "retain_available" => config.retain_available = Some(one!(parse_bool)),
            "sys_interval" => config.sys_interval = Some(one!(parse_int)),
            "log_dest" => {
                let dest = parse_log_dest(args)?;
                config.log_dest.push(At {
                    value: dest,
                    at: at.clone(),
                });
            }
            "log_type" => config.log_type.push(one!(parse_log_type)),
            "connection_messages" => config.connection_messages = Some(one!(parse_bool)),
            "pid_file" => config.pid_file = Some(one!(parse_path)),
            "include_dir" => {
                let dir = one!(parse_path);
                if depth > 0 {
                    return Err("not allowed in an included file".into());
                }
                self.include_dir(&dir.value, &dir.at);
            }
            // Safe to ignore: process, logging and tuning details that change neither security
            // nor durability.
            "user"
            | "log_timestamp"
            | "log_timestamp_format"
            | "log_facility"
            | "websockets_log_level"
            | "set_tcp_nodelay"
            | "upgrade_outgoing_qos"
            | "check_retain_source"
            | "memory_limit"
            | "allow_duplicate_messages"
            | "autosave_on_changes"
            | "http_dir"
            | "bind_interface"
            | "websockets_headers_size"
            | "max_topic_alias"
            | "enable_control_api"
            | "global_plugin"
            | "global_max_clients"
            | "global_max_connections" => {
                let entry = At {
                    value: name.to_string(),
                    at: at.clone(),
                };
                match self.current {
                    Some(i) if LISTENER_IGNORED.contains(&name) => {
                        self.config.listeners[i].ignored.push(entry)
                    }
                    _ => self.config.ignored.push(entry),
                }
            }
            // Durability or message flow we do not have: bridges and persistent sessions' expiry.
            "persistent_client_expiration"
            | "connection"
            | "address"
            | "addresses"
            | "topic"
            | "bridge_protocol_version"
            | "remote_clientid"
            | "remote_username"
            | "remote_password"
            | "cleansession"
            | "try_private"
            | "start_type"
            | "notifications" => config.refused.push(At {
                value: name.to_string(),
                at: at.clone(),
            }),
            _ if name.starts_with("bridge_") => config.refused.push(At {
                value: name.to_string(),
                at: at.clone(),
            }),
            _ => return Err("unknown directive".into()),
        }
        Ok(())
    }

    /// The open listener block, or the default listener outside one.
    fn listener(&mut self, at: &Location) -> Result<&mut Listener, String> {
        Ok(match self.current {
            Some(i) => &mut self.config.listeners[i],
            None => self
                .config
                .default_listener
                .get_or_insert_with(|| Listener::new(at.clone(), 1883)),
        })
    }

    fn tls(&mut self, at: &Location) -> Result<&mut Tls, String> {
        Ok(&mut self.listener(at)?.tls)
    }

    /// The security settings a directive here applies to: the open listener's when
    /// `per_listener_settings true` was given before it, else the global ones.
    fn security(&mut self) -> &mut Security {
        let per_listener = self
            .config
            .per_listener_settings
            .as_ref()
            .is_some_and(|p| p.value);
        match self.current {
            Some(i) if per_listener => &mut self.config.listeners[i].security,
            _ => &mut self.config.security,
        }
    }

    fn include_dir(&mut self, dir: &Path, at: &Location) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.errors.push(error(
                    at,
                    format!("include_dir: cannot read {}: {e}", dir.display()),
                ));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
            .collect();
        if files.len() > INCLUDED_FILES_MAX {
            self.errors.push(error(
                at,
                format!("include_dir: more than {INCLUDED_FILES_MAX} files"),
            ));
            return;
        }
        // Mosquitto reads them in name order.
        files.sort();
        for file in files {
            self.file(&file, 1);
        }
    }
}

/// Listener directives that go to the open block when given inside one.
const LISTENER_IGNORED: &[&str] = &[
    "http_dir",
    "websockets_log_level",
    "websockets_headers_size",
    "bind_interface",
    "max_topic_alias",
];

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(FILE_LEN_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > FILE_LEN_MAX {
        return Err(format!("larger than {FILE_LEN_MAX} bytes"));
    }
    Ok(text)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expects true or false, got {value:?}")),
    }
}

fn parse_int(value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("expects an integer, got {value:?}"))
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse()
        .map_err(|_| format!("expects a port 0..=65535, got {value:?}"))
}

fn parse_qos(value: &str) -> Result<u8, String> {
    match value {
        "0" => Ok(0),
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err(format!("expects 0, 1 or 2, got {value:?}")),
    }
}

fn parse_path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

fn parse_domain(value: &str) -> Result<SocketDomain, String> {
    match value {
        "ipv4" => Ok(SocketDomain::Ipv4),
        "ipv6" => Ok(SocketDomain::Ipv6),
        _ => Err(format!("expects ipv4 or ipv6, got {value:?}")),
    }
}

fn parse_protocol(value: &str) -> Result<Protocol, String> {
    match value {
        "mqtt" => Ok(Protocol::Mqtt),
        "websockets" => Ok(Protocol::Websockets),
        _ => Err(format!("expects mqtt or websockets, got {value:?}")),
    }
}

fn parse_tls_version(value: &str) -> Result<String, String> {
    match value {
        "tlsv1.1" | "tlsv1.2" | "tlsv1.3" => Ok(value.to_string()),
        _ => Err(format!(
            "expects tlsv1.1, tlsv1.2 or tlsv1.3, got {value:?}"
        )),
    }
}

fn parse_log_dest(args: &[&str]) -> Result<LogDest, String> {
    match args {
        ["stdout"] => Ok(LogDest::Stdout),
        ["stderr"] => Ok(LogDest::Stderr),
        ["syslog"] => Ok(LogDest::Syslog),
        ["topic"] => Ok(LogDest::Topic),
        ["dlt"] => Ok(LogDest::Dlt),
        ["none"] => Ok(LogDest::None),
        ["file", path] => Ok(LogDest::File(PathBuf::from(path))),
        _ => Err("expects stdout, stderr, syslog, topic, dlt, none or file PATH".into()),
    }
}

/// Mosquitto's log types.
pub const LOG_TYPES: &[&str] = &[
    "error",
    "warning",
    "notice",
    "information",
    "debug",
    "subscribe",
    "unsubscribe",
    "websockets",
    "all",
    "none",
];

fn parse_log_type(value: &str) -> Result<String, String> {
    if LOG_TYPES.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(format!("unknown log type {value:?}"))
    }
}
