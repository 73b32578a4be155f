//! Mosquitto configuration files (`src/ops/mosquitto`) name TLS and WebSocket listeners with
//! `certfile`, `keyfile`, `cafile`, `require_certificate`, `use_identity_as_username` and
//! `protocol websockets`; this turns one such listener into a [`ListenerConfig`].

use super::listener::{ListenerConfig, TransportKind};
use crate::ops::mosquitto::parse::{Listener, Protocol};
use std::net::SocketAddr;

/// The listener on `address`, or the first directive this broker cannot honour (its name, for
/// a "not supported yet" error at its line).
pub fn listener_config(
    listener: &Listener,
    address: SocketAddr,
) -> Result<ListenerConfig, (&'static str, crate::ops::mosquitto::Location)> {
    let tls = &listener.tls;
    // `capath` (a hashed directory), `tls_version` and cipher lists have no rustls equivalent
    // wired here yet.
    if let Some(capath) = &tls.capath {
        return Err(("capath", capath.at.clone()));
    }
    if let Some(version) = &tls.tls_version {
        return Err(("tls_version", version.at.clone()));
    }
    if let Some(other) = tls.other.first() {
        return Err(("TLS directive", other.at.clone()));
    }
    let websockets = listener
        .protocol
        .as_ref()
        .is_some_and(|p| p.value == Protocol::Websockets);
    let uses_tls = tls.certfile.is_some() || tls.keyfile.is_some();
    let transport = match (websockets, uses_tls) {
        (false, false) => TransportKind::Mqtt,
        (false, true) => TransportKind::MqttTls,
        (true, false) => TransportKind::Ws,
        (true, true) => TransportKind::Wss,
    };
    let mut config = ListenerConfig::new(address, transport);
    config.cert_file = tls.certfile.as_ref().map(|f| f.value.clone());
    config.key_file = tls.keyfile.as_ref().map(|f| f.value.clone());
    config.ca_file = tls.cafile.as_ref().map(|f| f.value.clone());
    config.require_certificate = tls.require_certificate.as_ref().is_some_and(|f| f.value);
    config.use_identity_as_username = tls
        .use_identity_as_username
        .as_ref()
        .is_some_and(|f| f.value);
    // Mosquitto accepts WebSocket upgrades on any path; `/mqtt` is what clients use.
    Ok(config)
}
