//! Listener configuration: one `[[listener]]` TOML section (or a flag) per listen address, with
//! its transport, its connection limit and its TLS, WebSocket and PROXY protocol settings.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What a listener speaks on top of TCP.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum TransportKind {
    /// MQTT over plain TCP (default).
    #[default]
    #[serde(rename = "mqtt")]
    Mqtt,
    /// MQTT over TLS 1.2/1.3.
    #[serde(rename = "mqtt+tls")]
    MqttTls,
    /// MQTT over WebSocket (binary frames), spec section 6.
    #[serde(rename = "ws")]
    Ws,
    /// MQTT over WebSocket over TLS.
    #[serde(rename = "wss")]
    Wss,
}

impl TransportKind {
    /// Whether TLS runs under the MQTT (or WebSocket) bytes.
    pub fn is_tls(self) -> bool {
        matches!(self, TransportKind::MqttTls | TransportKind::Wss)
    }

    /// Whether MQTT travels in WebSocket frames.
    pub fn is_websocket(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }

    /// The name used in the TOML file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Mqtt => "mqtt",
            TransportKind::MqttTls => "mqtt+tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
        }
    }
}

impl std::str::FromStr for TransportKind {
    type Err = String;

    fn from_str(s: &str) -> Result<TransportKind, String> {
        match s {
            "mqtt" => Ok(TransportKind::Mqtt),
            "mqtt+tls" | "mqtts" => Ok(TransportKind::MqttTls),
            "ws" => Ok(TransportKind::Ws),
            "wss" => Ok(TransportKind::Wss),
            _ => Err(format!(
                "unknown transport {s:?} (mqtt, mqtt+tls, ws or wss)"
            )),
        }
    }
}

/// Whether a listener expects a PROXY protocol (v1 or v2) header before anything else.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// No header is read (default): a connection that sends one fails as a malformed packet.
    #[default]
    Off,
    /// A header is used when the first byte announces one ('P' for v1, '\r' for v2).
    Optional,
    /// A connection without a valid header is closed.
    Required,
}

impl std::str::FromStr for ProxyProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<ProxyProtocol, String> {
        match s {
            "off" => Ok(ProxyProtocol::Off),
            "optional" => Ok(ProxyProtocol::Optional),
            "required" => Ok(ProxyProtocol::Required),
            _ => Err(format!(
                "unknown proxy_protocol {s:?} (off, optional or required)"
            )),
        }
    }
}

/// The default WebSocket upgrade path.
pub const WS_PATH_DEFAULT: &str = "/mqtt";

/// One listener. Every field but `address` may be omitted.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to listen on (port 0 picks a free one). Default `127.0.0.1:1883`.
    pub address: SocketAddr,
    /// `mqtt` (default), `mqtt+tls`, `ws` or `wss`.
    pub transport: TransportKind,
    /// Connections this listener may hold at once, 1..=10,000,000, on top of the broker-wide
    /// `max_connections`. Default none (only the broker-wide limit). Over it a new connection
    /// is closed at accept (counted in `connections_rejected`).
    pub max_connections: Option<usize>,
    /// PEM file with the server certificate chain (leaf first); needed by `mqtt+tls` and `wss`.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1); needed with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM file of CA certificates that client certificates are verified against. Default none:
    /// clients are not asked for a certificate.
    pub ca_file: Option<PathBuf>,
    /// Refuse a TLS client without a certificate signed by `ca_file` (Mosquitto's
    /// `require_certificate`). Default false: a certificate is asked for but optional.
    pub require_certificate: bool,
    /// Use the client certificate's subject CN (else its first DNS or email SAN) as the MQTT
    /// username (Mosquitto's `use_identity_as_username`); the certificate then is the login.
    /// Needs `ca_file` and `require_certificate`. Default false.
    pub use_identity_as_username: bool,
    /// WebSocket upgrade path for `ws` and `wss`. Default `/mqtt`.
    pub ws_path: String,
    /// PROXY protocol v1/v2 header: `off` (default), `optional` or `required`.
    pub proxy_protocol: ProxyProtocol,
    /// Access control (issue 13): this listener's own policy (`[listener.auth]`), replacing the
    /// broker-wide password file, ACL file, JWT settings and `allow_anonymous` for its clients.
    /// Default none: the broker-wide policy applies.
    pub auth: Option<crate::auth::AuthPolicy>,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 1883)),
            transport: TransportKind::Mqtt,
            max_connections: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            require_certificate: false,
            use_identity_as_username: false,
            ws_path: WS_PATH_DEFAULT.to_string(),
            proxy_protocol: ProxyProtocol::Off,
            auth: None,
        }
    }
}

impl ListenerConfig {
    /// A plain MQTT listener on `address`.
    pub fn mqtt(address: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            address,
            ..ListenerConfig::default()
        }
    }

    /// A listener of `transport` on `address` with everything else at its default.
    pub fn new(address: SocketAddr, transport: TransportKind) -> ListenerConfig {
        ListenerConfig {
            address,
            transport,
            ..ListenerConfig::default()
        }
    }

    /// Whether this listener needs more than a bare socket (TLS, WebSocket or PROXY header).
    pub fn is_layered(&self) -> bool {
        self.transport != TransportKind::Mqtt || self.proxy_protocol != ProxyProtocol::Off
    }

    /// Checks the settings that do not need the files (those are read when the broker starts).
    pub fn validate(&self) -> Result<(), String> {
        let at = format!("listener {} ({})", self.address, self.transport.name());
        if let Some(max) = self.max_connections {
            if !(1..=10_000_000).contains(&max) {
                return Err(format!(
                    "{at}: max_connections must be in 1..=10000000, got {max}"
                ));
            }
        }
        let tls_file = self.cert_file.is_some()
            || self.key_file.is_some()
            || self.ca_file.is_some()
            || self.require_certificate
            || self.use_identity_as_username;
        if self.transport.is_tls() {
            if self.cert_file.is_none() || self.key_file.is_none() {
                return Err(format!("{at}: cert_file and key_file are needed"));
            }
        } else if tls_file {
            return Err(format!(
                "{at}: certificate settings need transport mqtt+tls or wss"
            ));
        }
        if self.require_certificate && self.ca_file.is_none() {
            return Err(format!("{at}: require_certificate needs ca_file"));
        }
        if self.use_identity_as_username && !self.require_certificate {
            return Err(format!(
                "{at}: use_identity_as_username needs require_certificate"
            ));
        }
        if self.transport.is_websocket()
            && (!self.ws_path.starts_with('/') || self.ws_path.len() > 256)
        {
            return Err(format!(
                "{at}: ws_path must start with '/' and be at most 256 bytes"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        listener: Vec<ListenerConfig>,
    }

    #[test]
    fn listener_sections_parse_with_defaults() {
        let file: File = toml::from_str(
            r#"
            [[listener]]
            address = "127.0.0.1:8883"
            transport = "mqtt+tls"
            cert_file = "server.pem"
            key_file = "server.key"
            ca_file = "ca.pem"
            require_certificate = true
            use_identity_as_username = true

            [[listener]]
            address = "127.0.0.1:8080"
            transport = "ws"
            proxy_protocol = "required"
            max_connections = 10
            "#,
        )
        .unwrap();
        let [tls, ws] = &file.listener[..] else {
            panic!("two listeners expected");
        };
        assert_eq!(tls.transport, TransportKind::MqttTls);
        assert!(tls.require_certificate && tls.use_identity_as_username);
        assert!(tls.validate().is_ok());
        assert_eq!(ws.ws_path, "/mqtt");
        assert_eq!(ws.proxy_protocol, ProxyProtocol::Required);
        assert_eq!(ws.max_connections, Some(10));
        assert!(ws.validate().is_ok());
        assert!(toml::from_str::<File>("[[listener]]\ntransport = \"quic\"\n").is_err());
    }

    #[test]
    fn inconsistent_listeners_are_refused() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        assert!(ListenerConfig::new(addr, TransportKind::MqttTls)
            .validate()
            .is_err());
        let mut plain = ListenerConfig::mqtt(addr);
        plain.require_certificate = true;
        assert!(plain.validate().is_err());
        let mut tls = ListenerConfig::new(addr, TransportKind::Wss);
        tls.cert_file = Some("c".into());
        tls.key_file = Some("k".into());
        assert!(tls.validate().is_ok());
        tls.use_identity_as_username = true;
        assert!(tls.validate().is_err());
        tls.ws_path = "mqtt".into();
        tls.use_identity_as_username = false;
        assert!(tls.validate().is_err());
        let mut limited = ListenerConfig::mqtt(addr);
        limited.max_connections = Some(0);
        assert!(limited.validate().is_err());
    }
}
