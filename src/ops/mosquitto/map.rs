//! Mapping a parsed Mosquitto configuration onto our [`Config`].
//!
//! Every directive ends up in one of three places: mapped onto a `Config` field, a warning
//! (no effect, safe to ignore), or an error (honouring it needs a feature we do not have yet,
//! and running without it would weaken security or durability). Errors name the file and line.
//! Directives whose feature another branch is building (TLS and WebSocket listeners, hashed
//! password files, ACL files, persistence) are errors saying "not supported yet"; they are
//! mapped here when that work is on `main`.

use super::parse::{At, Listener, LogDest, MosquittoConfig, Protocol, Security, SocketDomain};
use super::{Diagnostic, Loaded, Location, Severity};
use crate::broker::Config;
use crate::ops::config::{LogDestination, SYS_INTERVAL_SECS_MAX};
use crate::transport::{ListenerConfig, TransportKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Bytes allowed on top of `message_size_limit` for a PUBLISH's fixed header, topic and
/// properties when it is mapped onto our whole-packet limit.
pub const MESSAGE_SIZE_HEADROOM_BYTES: u32 = 1024;
/// `max_queued_messages 0` (unlimited in Mosquitto) maps to our largest bound.
const QUEUED_MESSAGES_MAX: usize = 10_000_000;
/// `max_connections -1` (unlimited in Mosquitto) maps to our largest bound.
const CONNECTIONS_MAX: usize = 10_000_000;

/// Collects what the mapping finds.
struct Mapper {
    config: Config,
    diagnostics: Vec<Diagnostic>,
}

impl Mapper {
    fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            at: at.clone(),
            message: message.into(),
        });
    }

    fn warn(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            at: at.clone(),
            message: message.into(),
        });
    }

    /// A directive whose feature is not on `main` yet.
    fn not_yet(&mut self, at: &Location, name: &str, what: &str) {
        self.error(at, format!("{name}: not supported yet ({what})"));
    }
}

/// Maps `parsed` onto a fresh [`Config`] (defaults for everything it does not set).
pub fn to_config(parsed: &MosquittoConfig) -> Result<Loaded, Vec<Diagnostic>> {
    let mut m = Mapper {
        config: Config::default(),
        diagnostics: Vec::new(),
    };
    let listeners: Vec<&Listener> = parsed
        .default_listener
        .iter()
        .chain(parsed.listeners.iter())
        .collect();
    map_listeners(&mut m, &listeners);
    map_listener_security(&mut m, parsed, &listeners);
    let security = effective_security(parsed, &listeners);
    map_security(&mut m, &security, listeners.first().map(|l| &l.at));
    map_limits(&mut m, parsed, &listeners);
    map_persistence(&mut m, parsed);
    map_logging(&mut m, parsed);
    for entry in &parsed.ignored {
        m.warn(
            &entry.at,
            format!("{}: ignored (no effect here)", entry.value),
        );
    }
    for entry in &parsed.refused {
        let name = &entry.value;
        m.error(
            &entry.at,
            format!("{name}: not supported (bridges and persistent client expiry)"),
        );
    }
    let failed = m.diagnostics.iter().any(|d| d.severity == Severity::Error);
    // Validation only of a complete mapping (a refused listener leaves `listen` short).
    let validated = if failed { Ok(()) } else { m.config.validate() };
    if let Err(e) = validated {
        let at = listeners.first().map_or_else(
            || Location {
                file: "configuration".into(),
                line: 0,
            },
            |l| l.at.clone(),
        );
        m.error(&at, e);
    }
    if m.diagnostics.iter().any(|d| d.severity == Severity::Error) {
        Err(m.diagnostics)
    } else {
        Ok(Loaded {
            config: m.config,
            warnings: m.diagnostics,
        })
    }
}

fn map_listeners(m: &mut Mapper, listeners: &[&Listener]) {
    if listeners.is_empty() {
        // Mosquitto 2 without listeners: port 1883 on the loopback interface, our default too.
        return;
    }
    // Every listener becomes a `[[listener]]` section; the default `listen` address is then
    // not opened (`Config::effective_listeners`), as Mosquitto drops its default listener.
    let mut sections = Vec::new();
    for listener in listeners {
        if let Some(mount) = &listener.mount_point {
            m.not_yet(&mount.at, "mount_point", "topic prefixes per listener");
        }
        for entry in &listener.ignored {
            m.warn(
                &entry.at,
                format!("{}: ignored (no effect here)", entry.value),
            );
        }
        let Some(address) = listener_address(m, listener) else {
            continue;
        };
        if let Some(section) = listener_section(m, listener, address) {
            sections.push(section);
        }
    }
    m.config.listeners = sections;
}

/// One listener's transport, TLS settings and connection limit.
fn listener_section(
    m: &mut Mapper,
    listener: &Listener,
    address: SocketAddr,
) -> Option<ListenerConfig> {
    let tls = &listener.tls;
    let websockets = listener
        .protocol
        .as_ref()
        .is_some_and(|p| p.value == Protocol::Websockets);
    let transport = match (websockets, tls.certfile.is_some() || tls.keyfile.is_some()) {
        (false, false) => TransportKind::Mqtt,
        (false, true) => TransportKind::MqttTls,
        (true, false) => TransportKind::Ws,
        (true, true) => TransportKind::Wss,
    };
    let mut section = ListenerConfig::new(address, transport);
    if let (true, Some(protocol)) = (websockets, &listener.protocol) {
        m.warn(
            &protocol.at,
            format!(
                "protocol websockets: clients must upgrade on the path {} (Mosquitto accepts \
                 any path)",
                section.ws_path
            ),
        );
    }
    if let Some(max) = &listener.max_connections {
        if max.value >= 0 {
            section.max_connections =
                Some(bounded(m, "max_connections", max, 1, 10_000_000)? as usize);
        }
    }
    if let Some((name, at)) = tls.first() {
        if !transport.is_tls() {
            let at = at.clone();
            m.error(
                &at,
                format!("{name}: TLS needs certfile and keyfile on this listener"),
            );
            return None;
        }
    }
    section.cert_file = tls.certfile.as_ref().map(|f| f.value.clone());
    section.key_file = tls.keyfile.as_ref().map(|f| f.value.clone());
    section.ca_file = tls.cafile.as_ref().map(|f| f.value.clone());
    if let Some(capath) = &tls.capath {
        m.not_yet(
            &capath.at,
            "capath",
            "a CA folder; name a bundle with cafile",
        );
    }
    section.require_certificate = tls.require_certificate.as_ref().is_some_and(|v| v.value);
    section.use_identity_as_username = tls
        .use_identity_as_username
        .as_ref()
        .is_some_and(|v| v.value);
    if let Some(version) = &tls.tls_version {
        match version.value.as_str() {
            // The minimum version: we speak TLS 1.2 and 1.3 only, at least as strict.
            "tlsv1.2" => {}
            "tlsv1.1" => m.warn(
                &version.at,
                "tls_version tlsv1.1: TLS 1.1 is never accepted here (1.2 and 1.3 are)",
            ),
            other => m.not_yet(
                &version.at,
                &format!("tls_version {other}"),
                "a TLS 1.3 minimum",
            ),
        }
    }
    for entry in &tls.other {
        match entry.value.as_str() {
            // rustls negotiates ECDHE only: Diffie-Hellman parameters have nothing to set.
            "dhparamfile" => m.warn(&entry.at, "dhparamfile: ignored (no DHE cipher suites)"),
            name => m.not_yet(&entry.at, name, "this TLS option"),
        }
    }
    if let Err(e) = section.validate() {
        m.error(&listener.at, e);
        return None;
    }
    Some(section)
}

/// The socket address of a plain MQTT listener.
fn listener_address(m: &mut Mapper, listener: &Listener) -> Option<SocketAddr> {
    let domain = listener.socket_domain.as_ref().map(|d| d.value);
    let Some(bind) = &listener.bind_address else {
        // No address: every interface, as Mosquitto does (it binds IPv4 and IPv6 unless
        // socket_domain says one; we bind one socket, IPv4 unless socket_domain ipv6).
        let ip = match domain {
            Some(SocketDomain::Ipv6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        return Some(SocketAddr::new(ip, listener.port));
    };
    if listener.port == 0 && bind.value.starts_with('/') {
        m.not_yet(&bind.at, "listener 0 PATH", "Unix socket listeners");
        return None;
    }
    let wanted = |a: &SocketAddr| match domain {
        Some(SocketDomain::Ipv4) => a.is_ipv4(),
        Some(SocketDomain::Ipv6) => a.is_ipv6(),
        None => true,
    };
    match (bind.value.as_str(), listener.port).to_socket_addrs() {
        Ok(mut found) => match found.find(wanted) {
            Some(address) => Some(address),
            None => {
                m.error(
                    &bind.at,
                    format!("{}: no address of the socket_domain", bind.value),
                );
                None
            }
        },
        Err(e) => {
            m.error(&bind.at, format!("cannot resolve {}: {e}", bind.value));
            None
        }
    }
}

/// The security settings in force: global, or the only listener's with
/// `per_listener_settings true`.
fn effective_security(parsed: &MosquittoConfig, listeners: &[&Listener]) -> Security {
    let per_listener = parsed
        .per_listener_settings
        .as_ref()
        .is_some_and(|p| p.value);
    let mut security = parsed.security.clone();
    if per_listener {
        let with_own: Vec<_> = listeners
            .iter()
            .filter(|l| l.security != Security::default())
            .collect();
        if listeners.len() > 1 && !with_own.is_empty() {
            // Several listeners: each has its own `[listener.auth]` (map_listener_security);
            // the global settings stay for listeners without their own.
            return security;
        }
        for listener in with_own {
            let own = &listener.security;
            merge(&mut security.allow_anonymous, &own.allow_anonymous);
            merge(&mut security.password_file, &own.password_file);
            merge(&mut security.acl_file, &own.acl_file);
            security.other.extend(own.other.iter().cloned());
        }
    }
    security
}

/// Access control (issue 13): with `per_listener_settings true` and several listeners, each
/// listener's own `allow_anonymous`, `password_file` and `acl_file` become its `[listener.auth]`
/// policy. Mosquitto 2 refuses anonymous clients on a listener unless it says
/// `allow_anonymous true`. (A listener that failed to map has already failed the whole file.)
fn map_listener_security(m: &mut Mapper, parsed: &MosquittoConfig, listeners: &[&Listener]) {
    let per_listener = parsed
        .per_listener_settings
        .as_ref()
        .is_some_and(|p| p.value);
    if !per_listener || listeners.len() < 2 {
        return;
    }
    for listener in listeners {
        for entry in &listener.security.other {
            m.not_yet(&entry.at, &entry.value, "changes authentication");
        }
    }
    for (config, listener) in m.config.listeners.iter_mut().zip(listeners) {
        let own = &listener.security;
        config.auth = Some(crate::auth::AuthPolicy {
            allow_anonymous: Some(own.allow_anonymous.as_ref().is_some_and(|a| a.value)),
            password_file: own.password_file.as_ref().map(|f| f.value.clone()),
            acl_file: own.acl_file.as_ref().map(|f| f.value.clone()),
            ..crate::auth::AuthPolicy::default()
        });
    }
}

fn merge<T: Clone>(into: &mut Option<At<T>>, from: &Option<At<T>>) {
    if from.is_some() {
        into.clone_from(from);
    }
}

fn map_security(m: &mut Mapper, security: &Security, first_listener: Option<&Location>) {
    let has_listeners = first_listener.is_some();
    for entry in &security.other {
        m.not_yet(&entry.at, &entry.value, "changes authentication");
    }
    // Access control (issue 13): Mosquitto's password and ACL files are read as they are.
    if let Some(acl) = &security.acl_file {
        m.config.acl_file = Some(acl.value.clone());
    }
    if let Some(file) = &security.password_file {
        m.config.password_file = Some(file.value.clone());
    }
    // Mosquitto 2: anonymous clients are refused once a listener is configured, unless
    // allow_anonymous true says otherwise.
    let anonymous = security
        .allow_anonymous
        .as_ref()
        .map_or(!has_listeners, |a| a.value);
    m.config.allow_anonymous = Some(anonymous);
}

/// A number in `min..=max` or an error naming the directive.
fn bounded(m: &mut Mapper, name: &str, value: &At<i64>, min: i64, max: i64) -> Option<i64> {
    if value.value < min || value.value > max {
        m.error(
            &value.at,
            format!("{name} must be in {min}..={max}, got {}", value.value),
        );
        return None;
    }
    Some(value.value)
}

fn map_limits(m: &mut Mapper, parsed: &MosquittoConfig, listeners: &[&Listener]) {
    if let Some(v) = &parsed.max_inflight_messages {
        if let Some(n) = bounded(m, "max_inflight_messages", v, 0, 65_535) {
            // 0 is unlimited in Mosquitto; the window of a u16 packet id space is our largest.
            m.config.max_inflight = if n == 0 { u16::MAX } else { n as u16 };
        }
    }
    if let Some(v) = &parsed.max_queued_messages {
        if let Some(n) = bounded(m, "max_queued_messages", v, 0, QUEUED_MESSAGES_MAX as i64) {
            m.config.max_queued_messages = if n == 0 {
                QUEUED_MESSAGES_MAX
            } else {
                n as usize
            };
        }
    }
    if let Some(v) = &parsed.max_queued_bytes {
        // Issue 11 made ours per session, as Mosquitto's: 0 (Mosquitto's unlimited) is our
        // largest, and our smallest is 1 KiB (a queue must hold one message's overhead).
        let max = i64::from(u32::MAX);
        if let Some(n) = bounded(m, "max_queued_bytes", v, 0, max) {
            m.config.max_queued_bytes = if n == 0 { max } else { n.max(1024) } as usize;
        }
    }
    if let Some(v) = &parsed.max_inflight_bytes {
        // As `max_queued_bytes`: Mosquitto's 0 (unlimited) is our largest, 1 KiB our smallest.
        let max = i64::from(u32::MAX);
        if let Some(n) = bounded(m, "max_inflight_bytes", v, 0, max) {
            m.config.max_inflight_bytes = if n == 0 { max } else { n.max(1024) } as usize;
        }
    }
    if let Some(v) = &parsed.max_packet_size {
        if let Some(n) = bounded(m, "max_packet_size", v, 0, 268_435_460) {
            if n > 0 {
                m.config.max_packet_size = n.max(16) as u32;
            } else {
                m.config.max_packet_size = 268_435_460;
            }
        }
    }
    if let Some(v) = &parsed.message_size_limit {
        if let Some(n) = bounded(m, "message_size_limit", v, 0, 268_435_455) {
            if n > 0 {
                let limit = (n as u32).saturating_add(MESSAGE_SIZE_HEADROOM_BYTES);
                m.config.max_packet_size = m.config.max_packet_size.min(limit);
            }
        }
    }
    if let Some(v) = &parsed.max_keepalive {
        if let Some(n) = bounded(m, "max_keepalive", v, 0, 65_535) {
            if n > 0 {
                m.config.max_keep_alive_secs = n as u16;
            }
        }
    }
    if let Some(v) = &parsed.queue_qos0_messages {
        m.config.queue_qos0 = v.value;
    }
    if let Some(v) = &parsed.retain_available {
        m.config.retain_available = v.value;
    }
    // Per-listener max_qos: ours is broker-wide, so the lowest one given applies.
    let qos = listeners
        .iter()
        .filter_map(|l| l.max_qos.as_ref())
        .map(|q| q.value)
        .min();
    if let Some(qos) = qos {
        m.config.max_qos = qos;
    }
    // Per-listener max_connections: ours counts over every listener, so they add up.
    let mut total = 0usize;
    let mut unlimited = false;
    for listener in listeners {
        match &listener.max_connections {
            Some(v) if v.value >= 0 => total = total.saturating_add(v.value as usize),
            _ => unlimited = true,
        }
    }
    if !listeners.is_empty() && !unlimited {
        m.config.max_connections = total.clamp(1, CONNECTIONS_MAX);
    }
    if let Some(v) = &parsed.sys_interval {
        if let Some(n) = bounded(m, "sys_interval", v, 0, SYS_INTERVAL_SECS_MAX as i64) {
            m.config.ops.sys_interval_secs = n as u64;
        }
    }
}

fn map_persistence(m: &mut Mapper, parsed: &MosquittoConfig) {
    // Issue 14: `persistence true` is `periodic`, fsyncing every `autosave_interval` seconds
    // (Mosquitto's default 1,800; 0, "only at shutdown" there, becomes the longest interval)
    // into `persistence_location`. shardmq writes every loop turn, so a crash of the process
    // loses nothing, where Mosquitto loses everything since its last autosave.
    if parsed.persistence.as_ref().is_some_and(|p| p.value) {
        m.config.persistence = crate::store::Durability::Periodic;
        if let Some(dir) = &parsed.persistence_location {
            m.config.persistence_dir = dir.value.clone();
        }
        let interval_secs = match &parsed.autosave_interval {
            Some(v) => bounded(m, "autosave_interval", v, 0, 3_600).unwrap_or(1_800),
            None => 1_800,
        };
        let interval_secs = if interval_secs == 0 {
            3_600
        } else {
            interval_secs
        };
        m.config.persistence_interval_ms = interval_secs as u64 * 1000;
        if let Some(file) = &parsed.persistence_file {
            m.warn(
                &file.at,
                "persistence_file: ignored (shardmq keeps one log per shard in persistence_location)",
            );
        }
        return;
    }
    let extras = [
        parsed
            .persistence_location
            .as_ref()
            .map(|v| ("persistence_location", &v.at)),
        parsed
            .persistence_file
            .as_ref()
            .map(|v| ("persistence_file", &v.at)),
        parsed
            .autosave_interval
            .as_ref()
            .map(|v| ("autosave_interval", &v.at)),
    ];
    for (name, at) in extras.into_iter().flatten() {
        m.warn(at, format!("{name}: ignored (persistence is off)"));
    }
}

fn map_logging(m: &mut Mapper, parsed: &MosquittoConfig) {
    let mut destination = None;
    for dest in &parsed.log_dest {
        let mapped = match &dest.value {
            LogDest::Stdout => LogDestination::Stdout,
            LogDest::Stderr => LogDestination::Stderr,
            LogDest::File(path) => LogDestination::File(path.clone()),
            LogDest::None => {
                m.config.ops.log_level = Some("off".into());
                continue;
            }
            other => {
                m.warn(
                    &dest.at,
                    format!("log_dest {other:?}: ignored (not supported)"),
                );
                continue;
            }
        };
        if destination.is_some() {
            m.warn(&dest.at, "log_dest: only the first destination is used");
        } else {
            destination = Some(mapped);
        }
    }
    if let Some(destination) = destination {
        m.config.ops.log_destination = destination;
    }
    // The most verbose level among the types given (Mosquitto logs each type given).
    let mut level: Option<log::LevelFilter> = None;
    for kind in &parsed.log_type {
        let this = match kind.value.as_str() {
            "none" => log::LevelFilter::Off,
            "error" => log::LevelFilter::Error,
            "warning" => log::LevelFilter::Warn,
            "notice" | "information" => log::LevelFilter::Info,
            "debug" | "all" => log::LevelFilter::Debug,
            other => {
                m.warn(
                    &kind.at,
                    format!("log_type {other}: ignored (no such category)"),
                );
                continue;
            }
        };
        level = Some(level.map_or(this, |l| l.max(this)));
    }
    if let Some(level) = level {
        m.config.ops.log_level = Some(level.to_string().to_lowercase());
    }
    if let Some(v) = &parsed.connection_messages {
        m.config.ops.connection_messages = v.value;
    }
    if let Some(v) = &parsed.pid_file {
        m.config.ops.pid_file = Some(v.value.clone());
    }
}

impl Location {
    /// A location naming a whole file (or `what`) rather than a line.
    pub fn whole(what: &str) -> Location {
        Location {
            file: what.into(),
            line: 0,
        }
    }
}
