//! Authentication building blocks, sans-IO: the MQTT 5 enhanced-authentication exchange
//! (spec section 4.12) as an [`Authenticator`] trait with a SCRAM-SHA-256 server
//! ([`ScramSha256Authenticator`]) and client ([`ScramClient`]), and a username/password check for
//! plain CONNECT ([`PasswordAuthenticator`]). Nothing here touches a socket or a clock; the only
//! outside input is randomness (nonces, salts) from the operating system, and every function that
//! uses it has a twin that takes the random value as an argument for deterministic tests.
//!
//! - `password.rs`: Mosquitto password files (`$7$` PBKDF2-SHA512, `$6$` SHA512),
//!   [`PasswordAuthenticator`].
//! - `scram.rs`: SCRAM-SHA-256 (RFC 5802 and RFC 7677) messages, credentials, server and client;
//!   `scram_file.rs`: the `--scram-users` file of stored keys.
//! - `acl.rs`: Mosquitto ACL files and their decisions; `jwt.rs`: JWT logins.
//! - `policy.rs`: [`AuthPolicy`] and [`AccessControl`], the loaded files and their reload;
//!   `login.rs`: plain-CONNECT logins with a bounded cost per shard, per-session access state.
//!
//! # How the broker drives an [`Authenticator`]
//!
//! The authenticator is shared by every connection and immutable; the per-connection progress is an
//! [`AuthState`] that the connection owns between packets.
//!
//! 1. CONNECT carries an Authentication Method property: look the method up (e.g. with
//!    [`Authenticators::find`]). An unknown method gets CONNACK 0x8C Bad authentication method
//!    ([MQTT-4.12.0-1]). Otherwise call [`Authenticator::start`] with the client identifier and the
//!    CONNECT's Authentication Data.
//! 2. [`AuthStep::Continue`]: send AUTH with reason 0x18 Continue authentication, the same
//!    Authentication Method ([MQTT-4.12.0-5]) and `data` as Authentication Data
//!    ([MQTT-4.12.0-2]); keep `state` in
//!    the connection. The client answers with AUTH 0x18: call [`Authenticator::continue_auth`] with
//!    that state and the AUTH's Authentication Data. Any other packet before the exchange ends is
//!    a protocol error; an AUTH with a different method is one too ([MQTT-4.12.0-5]).
//! 3. [`AuthStep::Success`]: send CONNACK 0x00 with the Authentication Method and, when `data` is
//!    `Some`, Authentication Data (SCRAM's server-final message, which the client verifies).
//!    `username` is the authenticated identity, for authorization and logs.
//! 4. [`AuthStep::Failure`]: send CONNACK with that reason code (0x86 or 0x87 here) and close
//!    ([MQTT-4.12.0-4]).
//! 5. Re-authentication: after a successful CONNECT, the client may send AUTH 0x19
//!    Re-authenticate with the same method ([MQTT-4.12.1-1]). Call [`Authenticator::start`]
//!    again with its data; Continue steps go out as AUTH 0x18 as above, Success as AUTH 0x00
//!    Success (with Authentication Data), and Failure as DISCONNECT with the reason code
//!    ([MQTT-4.12.1-2]). The connection keeps working under its old identity meanwhile; the broker
//!    should refuse a re-authentication that yields a different `username`.
//!
//! Plain CONNECT without an Authentication Method goes to [`AccessControl::login`] instead
//! (password file, JWT or anonymous): a refusal's [`LoginRefusal::reason_code`] becomes the
//! CONNACK (the codec maps it to a return code for MQTT 3.1.1).

mod acl;
mod jwt;
mod login;
mod password;
mod policy;
mod scram;
mod scram_file;

#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod tests;

pub use acl::{
    covers, intersects, AclCache, AclFile, AclFileError, ClientRules, ACL_CACHE_ENTRIES_MAX,
    ACL_READ, ACL_WRITE,
};
pub use jwt::{JwtAlgorithm, JwtIdentity, JwtRefusal, JwtSettings, JwtVerifier, JWT_LEN_MAX};
pub use login::{
    Login, LoginRefusal, ReloadableScram, SessionAccess, ShardLogin, PASSWORD_CHECKS_PER_WINDOW,
    PASSWORD_CHECK_WINDOW, VERIFIED_LOGINS_MAX,
};
pub use password::{
    parse_password_file, PasswordAuthenticator, PasswordEntry, PasswordFileError, PasswordHash,
    PasswordRefusal, PASSWORD_FILE_LEN_MAX, PASSWORD_SALT_LEN, PBKDF2_ITERATIONS_DEFAULT,
    PBKDF2_ITERATIONS_MAX,
};
pub use policy::{AccessControl, AuthPolicy, LoadedAuth};
pub use scram::{
    ScramClient, ScramClientFinal, ScramCredentials, ScramError, ScramSha256Authenticator,
    ScramUserStore, SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN,
    SCRAM_MESSAGE_LEN_MAX, SCRAM_SALT_LEN, SCRAM_SHA_256, SCRAM_USERNAME_LEN_MAX,
};
pub use scram_file::{
    encode_scram_credentials, parse_scram_credentials, parse_scram_file, read_scram_file,
};

use crate::codec::ReasonCode;
use std::any::Any;

/// One enhanced-authentication mechanism, shared by all connections (hence `Send + Sync` and
/// `&self`). See the module documentation for how the broker calls it.
pub trait Authenticator: Send + Sync {
    /// The Authentication Method name, e.g. `SCRAM-SHA-256`.
    fn method(&self) -> &str;

    /// Begins an exchange: CONNECT with this method, or AUTH 0x19 Re-authenticate. `data` is the
    /// packet's Authentication Data.
    fn start(&self, client_id: &str, data: Option<&[u8]>) -> AuthStep;

    /// Continues an exchange with the client's AUTH 0x18 data. `state` is the one returned by the
    /// previous [`AuthStep::Continue`] of this authenticator; a state of another authenticator
    /// fails with Not authorized.
    fn continue_auth(&self, state: AuthState, data: Option<&[u8]>) -> AuthStep;
}

/// What the broker does next in an exchange.
#[derive(Debug)]
pub enum AuthStep {
    /// Send AUTH 0x18 with `data`; keep `state` for the client's next AUTH.
    Continue {
        /// Authentication Data for the AUTH packet.
        data: Vec<u8>,
        /// The connection's progress, to pass to [`Authenticator::continue_auth`].
        state: AuthState,
    },
    /// The client is authenticated as `username`; send `data` (if any) as Authentication Data in
    /// CONNACK (or AUTH 0x00 when re-authenticating).
    Success {
        /// Authentication Data for CONNACK or AUTH.
        data: Option<Vec<u8>>,
        /// The authenticated identity.
        username: String,
    },
    /// Authentication failed; the reason code for CONNACK (or DISCONNECT when re-authenticating).
    Failure(ReasonCode),
}

/// The per-connection progress of one exchange, opaque to the broker. Each authenticator stores
/// its own type inside and gets it back with [`AuthState::downcast`].
pub struct AuthState {
    inner: Box<dyn Any + Send>,
}

impl AuthState {
    /// Wraps an authenticator's own state.
    pub fn new<T: Any + Send>(state: T) -> Self {
        Self {
            inner: Box::new(state),
        }
    }

    /// The wrapped state, if it is a `T`.
    pub fn downcast<T: Any>(self) -> Option<T> {
        self.inner.downcast::<T>().ok().map(|state| *state)
    }
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthState(..)")
    }
}

/// The enhanced-authentication methods a broker offers, looked up by name.
#[derive(Default)]
pub struct Authenticators {
    methods: Vec<Box<dyn Authenticator>>,
}

impl Authenticators {
    /// No methods: every CONNECT with an Authentication Method gets 0x8C.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a method; a later one with the same name is never found.
    pub fn add(&mut self, authenticator: Box<dyn Authenticator>) {
        self.methods.push(authenticator);
    }

    /// The authenticator for a CONNECT's Authentication Method, if offered.
    pub fn find(&self, method: &str) -> Option<&dyn Authenticator> {
        self.methods
            .iter()
            .find(|authenticator| authenticator.method() == method)
            .map(|authenticator| authenticator.as_ref())
    }

    /// Whether no method is offered.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }
}

/// Compares two byte strings in time that depends only on their lengths, so that a secret
/// comparison does not leak how many leading bytes matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `N` random bytes from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}
