//! Authentication of CONNECT and AUTH packets: plain username/password
//! ([`crate::auth::PasswordAuthenticator`], `--password-file`) and MQTT 5 enhanced
//! authentication (spec 4.12) through the [`crate::auth::Authenticator`] trait, with
//! SCRAM-SHA-256 offered by `--scram-users`. See `crate::auth`'s module doc for the exchange.
//!
//! A CONNECT whose authenticator answers Continue stays in `AwaitConnect` with its validated
//! CONNECT kept in [`AuthProgress`]; only AUTH packets may follow until the exchange ends, and
//! the handshake timeout still bounds it. Re-authentication (AUTH 0x19) runs on a connected
//! connection, which keeps working under its identity meanwhile.

use crate::auth::{AuthState, AuthStep};
use crate::broker::core::connection::protocol::{self, AcceptedConnect};
use crate::broker::core::keys::ConnKey;
use crate::broker::core::shard::{CloseReason, ShardCore};
use crate::broker::core::stats::bump;
use crate::codec::{Auth, ConnAck, Connect, MqttString, Packet, Properties, ReasonCode};
use bytes::Bytes;

/// One enhanced-authentication exchange in progress on a connection.
#[derive(Debug)]
pub struct AuthProgress {
    /// The Authentication Method of the exchange ([MQTT-4.12.0-5]: every AUTH repeats it).
    pub method: MqttString,
    /// The authenticator's state for the next AUTH.
    pub state: AuthState,
    /// The CONNECT being authenticated; `None` for a re-authentication.
    pub connect: Option<Box<AcceptedConnect>>,
}

fn protocol_error(why: &str) -> CloseReason {
    CloseReason::Protocol(ReasonCode::ProtocolError, why.to_string())
}

/// An authenticator's answer whose Authentication Data could not be sent (over the 65,535 bytes
/// of a binary field; an authenticator may build it from what the client sent) becomes a
/// failure, 0x83 Implementation specific error, instead of an AUTH or CONNACK the broker could
/// not encode.
fn bounded(step: AuthStep) -> AuthStep {
    let data_len = match &step {
        AuthStep::Continue { data, .. } => data.len(),
        AuthStep::Success { data, .. } => data.as_ref().map_or(0, Vec::len),
        AuthStep::Failure(_) => 0,
    };
    if data_len > crate::codec::FIELD_LEN_MAX {
        log::warn!("authenticator answered {data_len} bytes of Authentication Data: refused");
        return AuthStep::Failure(ReasonCode::ImplementationSpecificError);
    }
    step
}

impl ShardCore {
    /// Authenticates a valid CONNECT. Returns it when the client may be admitted now; `None`
    /// when an exchange continues (AUTH) or the CONNECT was refused (CONNACK sent).
    pub(crate) fn authenticate_connect(
        &mut self,
        key: ConnKey,
        connect: &Connect,
        accepted: AcceptedConnect,
    ) -> Option<AcceptedConnect> {
        let shared = self.global.clone();
        let config = self.config.clone();
        if let Some(reference) = &config.server_reference {
            // Spec 4.11: the operator moves clients to another server.
            self.redirect_connect(key, reference);
            return None;
        }
        if let Some(method) = &connect.properties.authentication_method {
            let Some(authenticator) = shared.authenticators.find(method.as_str()) else {
                // [MQTT-4.12.0-1]: an unsupported method gets 0x8C and the connection closes.
                self.refuse_connect(key, ReasonCode::BadAuthenticationMethod);
                return None;
            };
            let data = connect.properties.authentication_data.as_deref();
            let step = authenticator.start(accepted.client_id.as_str(), data);
            let method = MqttString::from(method.as_str());
            self.auth_step(key, method, step, Some(Box::new(accepted)));
            return None;
        }
        // Listener hook (src/transport): with use_identity_as_username the verified client
        // certificate is the login (as in Mosquitto); its identity is the username, read with
        // `Connection::certificate_identity()`, and the ACL applies to it (issue 13).
        if let Some(conn) = self.connections.get(key) {
            let identity_login = shared
                .listeners
                .get(conn.listener)
                .is_some_and(|l| l.config.use_identity_as_username);
            if identity_login {
                let Some(identity) = conn.certificate_identity() else {
                    self.refuse_connect(key, ReasonCode::NotAuthorized);
                    return None;
                };
                let login = crate::auth::Login {
                    username: Some(identity.to_owned()),
                    token: None,
                };
                return self.authorize_connect(key, &login, accepted);
            }
        }
        // Access control (issue 13, access.rs): password file, JWT or anonymous, then the will.
        self.login_connect(key, connect, accepted)
    }

    /// CONNACK 0x9C Use another server with the Server Reference (MQTT 5; 3.x: return code 3).
    #[allow(clippy::field_reassign_with_default)] // the property sits behind DerefMut
    fn redirect_connect(&mut self, key: ConnKey, reference: &str) {
        bump(&self.global.counters[self.id].connects_refused);
        let Some(version) = self.connections.get(key).map(|c| c.version) else {
            return;
        };
        let mut properties = Properties::default();
        if version.is_v5() {
            properties.server_reference = Some(MqttString::from(reference));
        }
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::UseAnotherServer,
            properties,
        });
        self.send_packet(key, &connack);
        self.close(
            key,
            CloseReason::ConnectRefused(ReasonCode::UseAnotherServer),
        );
    }

    /// CONNACK with an error code, then close ([MQTT-4.12.0-4] for a failed authentication).
    pub(crate) fn refuse_connect(&mut self, key: ConnKey, code: ReasonCode) {
        bump(&self.global.counters[self.id].connects_refused);
        bump(&self.global.counters[self.id].authentication_failures);
        self.send_packet(key, &protocol::connack_refused(code));
        self.close(key, CloseReason::ConnectRefused(code));
    }

    /// Acts on an authenticator's answer, for a CONNECT (`connect` is `Some`) or a
    /// re-authentication.
    fn auth_step(
        &mut self,
        key: ConnKey,
        method: MqttString,
        step: AuthStep,
        connect: Option<Box<AcceptedConnect>>,
    ) {
        match bounded(step) {
            AuthStep::Continue { data, state } => {
                // [MQTT-4.12.0-2] AUTH 0x18 with the method and the challenge.
                self.send_auth(key, ReasonCode::ContinueAuthentication, &method, Some(data));
                if let Some(conn) = self.connections.get_mut(key) {
                    conn.extras_mut().auth = Some(Box::new(AuthProgress {
                        method,
                        state,
                        connect,
                    }));
                }
            }
            AuthStep::Success { data, username } => match connect {
                Some(accepted) => {
                    // Access control (issue 13): rules for the SCRAM identity, will check.
                    let login = crate::auth::Login {
                        username: Some(username.clone()),
                        token: None,
                    };
                    let Some(mut accepted) = self.authorize_connect(key, &login, *accepted) else {
                        return;
                    };
                    accepted.authentication_method = Some(method.clone());
                    accepted.authentication_data = data.map(Bytes::from);
                    if let Some(conn) = self.connections.get_mut(key) {
                        let extras = conn.extras_mut();
                        extras.auth_method = Some(method);
                        extras.auth_username = Some(username);
                    }
                    self.admit_connect(key, accepted);
                }
                None => {
                    let same = self
                        .connections
                        .get(key)
                        .and_then(|c| c.extras.as_ref())
                        .is_some_and(|e| e.auth_username.as_deref() == Some(username.as_str()));
                    if !same {
                        // A re-authentication may not change who the client is.
                        bump(&self.global.counters[self.id].authentication_failures);
                        self.close(
                            key,
                            CloseReason::Protocol(
                                ReasonCode::NotAuthorized,
                                "re-authenticated as another user".into(),
                            ),
                        );
                        return;
                    }
                    // [MQTT-4.12.1-1]: a successful re-authentication ends with AUTH 0x00.
                    self.send_auth(key, ReasonCode::Success, &method, data);
                }
            },
            AuthStep::Failure(code) => {
                if connect.is_some() {
                    self.refuse_connect(key, code);
                } else {
                    // [MQTT-4.12.1-2]: a failed re-authentication is answered with DISCONNECT.
                    bump(&self.global.counters[self.id].authentication_failures);
                    self.close(
                        key,
                        CloseReason::Protocol(code, "re-authentication failed".into()),
                    );
                }
            }
        }
    }

    // The authentication properties live behind `Properties`' rare-property box (DerefMut), so
    // a struct literal cannot name them.
    #[allow(clippy::field_reassign_with_default)]
    fn send_auth(
        &mut self,
        key: ConnKey,
        reason_code: ReasonCode,
        method: &MqttString,
        data: Option<Vec<u8>>,
    ) {
        let mut properties = Properties::default();
        properties.authentication_method = Some(method.clone());
        properties.authentication_data = data.map(Bytes::from);
        let auth = Auth {
            reason_code,
            properties,
        };
        self.send_packet(key, &Packet::Auth(auth));
    }

    /// An AUTH from the client: the next step of an exchange (0x18) or a re-authentication
    /// (0x19).
    pub(crate) fn handle_auth(&mut self, key: ConnKey, auth: Auth) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let expected = conn.extras.as_ref().and_then(|e| match &e.auth {
            Some(progress) => Some(progress.method.clone()),
            None => e.auth_method.clone(),
        });
        let Some(expected) = expected else {
            // No Authentication Method was used in CONNECT ([MQTT-4.12.0-7] family).
            self.close(key, protocol_error("AUTH without an authentication method"));
            return;
        };
        // [MQTT-4.12.0-5]: the same Authentication Method as in CONNECT.
        if auth.properties.authentication_method.as_ref() != Some(&expected) {
            self.close(
                key,
                protocol_error("[MQTT-4.12.0-5] AUTH with another authentication method"),
            );
            return;
        }
        let shared = self.global.clone();
        let Some(authenticator) = shared.authenticators.find(expected.as_str()) else {
            self.close(
                key,
                protocol_error("authentication method no longer offered"),
            );
            return;
        };
        let data = auth.properties.authentication_data.as_deref();
        match auth.reason_code {
            ReasonCode::ContinueAuthentication => {
                let Some(progress) = conn.extras.as_mut().and_then(|e| e.auth.take()) else {
                    self.close(
                        key,
                        protocol_error("AUTH 0x18 with no exchange in progress"),
                    );
                    return;
                };
                let step = authenticator.continue_auth(progress.state, data);
                self.auth_step(key, expected, step, progress.connect);
            }
            ReasonCode::ReAuthenticate if conn.is_connected() && !conn.authenticating() => {
                let Some(session) = conn.session.and_then(|skey| self.sessions.get(skey)) else {
                    return;
                };
                let client_id = session.session.state.client_id.clone();
                let step = authenticator.start(client_id.as_str(), data);
                self.auth_step(key, expected, step, None);
            }
            _ => self.close(key, protocol_error("unexpected AUTH reason code")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FIELD_LEN_MAX;

    /// An authenticator answering more Authentication Data than an AUTH or CONNACK can carry
    /// fails the exchange (0x83) instead of producing a packet the broker cannot encode.
    #[test]
    fn authentication_data_over_65535_bytes_fails_the_exchange() {
        let continue_with = |len: usize| AuthStep::Continue {
            data: vec![b'd'; len],
            state: AuthState::new(()),
        };
        let success_with = |len: usize| AuthStep::Success {
            data: Some(vec![b'd'; len]),
            username: "u".into(),
        };
        for step in [
            continue_with(FIELD_LEN_MAX + 1),
            success_with(FIELD_LEN_MAX + 1),
        ] {
            assert!(matches!(
                bounded(step),
                AuthStep::Failure(ReasonCode::ImplementationSpecificError)
            ));
        }
        assert!(matches!(
            bounded(continue_with(FIELD_LEN_MAX)),
            AuthStep::Continue { .. }
        ));
        assert!(matches!(
            bounded(success_with(FIELD_LEN_MAX)),
            AuthStep::Success { .. }
        ));
    }
}
