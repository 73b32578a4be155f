//! Client side of MQTT 5 enhanced authentication (spec section 4.12): the [`EnhancedAuth`]
//! trait the session drives, and [`ScramSha256Auth`] over the crate's SCRAM-SHA-256 client.
//!
//! The exchange as the session runs it: CONNECT carries the Authentication Method and the data
//! of [`EnhancedAuth::start`]; each AUTH 0x18 Continue authentication from the server goes
//! through [`EnhancedAuth::continue_auth`] and its answer leaves as AUTH 0x18 with the same
//! method ([MQTT-4.12.0-5]); the successful CONNACK's Authentication Data goes through
//! [`EnhancedAuth::finish`], which may still refuse the server (SCRAM's server signature).
//! Re-authentication (AUTH 0x19) is not offered.

use super::ClientError;
use crate::auth::{ScramClient, ScramClientFinal, SCRAM_SHA_256};
use bytes::Bytes;
use std::fmt;

/// One client-side enhanced-authentication mechanism. The session calls `start` at the
/// beginning of every connection, so an implementation restarts its exchange there.
pub trait EnhancedAuth: Send + fmt::Debug {
    /// The Authentication Method name, e.g. `SCRAM-SHA-256`.
    fn method(&self) -> &str;

    /// Begins a new exchange; returns the Authentication Data for CONNECT.
    fn start(&mut self) -> Result<Option<Bytes>, ClientError>;

    /// Answers the server's AUTH 0x18 data with the data of our AUTH 0x18.
    fn continue_auth(&mut self, data: Option<&[u8]>) -> Result<Option<Bytes>, ClientError>;

    /// Checks the Authentication Data of the successful CONNACK.
    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), ClientError>;
}

/// SCRAM-SHA-256 (RFC 5802, RFC 7677) with a user name and password.
pub struct ScramSha256Auth {
    username: String,
    password: String,
    step: ScramStep,
}

enum ScramStep {
    Idle,
    /// Client-first sent; waiting for server-first.
    First(ScramClient),
    /// Client-final sent; waiting for server-final in CONNACK.
    Final(ScramClientFinal),
}

impl fmt::Debug for ScramSha256Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password stays out of logs.
        f.debug_struct("ScramSha256Auth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramSha256Auth {
    /// An authenticator for this user.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> ScramSha256Auth {
        ScramSha256Auth {
            username: username.into(),
            password: password.into(),
            step: ScramStep::Idle,
        }
    }
}

fn scram_error(error: crate::auth::ScramError) -> ClientError {
    ClientError::Authentication(error.to_string())
}

impl EnhancedAuth for ScramSha256Auth {
    fn method(&self) -> &str {
        SCRAM_SHA_256
    }

    fn start(&mut self) -> Result<Option<Bytes>, ClientError> {
        // A fresh nonce for every connection.
        let client = ScramClient::new(&self.username, &self.password).map_err(scram_error)?;
        let first = Bytes::from(client.client_first());
        self.step = ScramStep::First(client);
        Ok(Some(first))
    }

    fn continue_auth(&mut self, data: Option<&[u8]>) -> Result<Option<Bytes>, ClientError> {
        match std::mem::replace(&mut self.step, ScramStep::Idle) {
            ScramStep::First(client) => {
                let (client_final, verifier) =
                    client.handle_server_first(data).map_err(scram_error)?;
                self.step = ScramStep::Final(verifier);
                Ok(Some(Bytes::from(client_final)))
            }
            ScramStep::Idle | ScramStep::Final(_) => Err(ClientError::Protocol(
                "AUTH Continue authentication after the SCRAM exchange ended (section 4.12)",
            )),
        }
    }

    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), ClientError> {
        match std::mem::replace(&mut self.step, ScramStep::Idle) {
            ScramStep::Final(verifier) => verifier.verify_server_final(data).map_err(scram_error),
            ScramStep::Idle | ScramStep::First(_) => Err(ClientError::Authentication(
                "CONNACK Success before the SCRAM exchange completed".into(),
            )),
        }
    }
}
