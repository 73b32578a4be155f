//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), server and client, over MQTT 5 enhanced
//! authentication with the method name `SCRAM-SHA-256`.
//!
//! The exchange, with MQTT packets:
//! 1. CONNECT, Authentication Data = client-first `n,,n=user,r=client-nonce`;
//! 2. AUTH 0x18, server-first `r=client-nonce server-nonce,s=base64 salt,i=iterations`;
//! 3. AUTH 0x18, client-final `c=biws,r=nonce,p=base64 ClientProof`;
//! 4. CONNACK 0x00, server-final `v=base64 ServerSignature` (the client checks it).
//!
//! Keys (RFC 5802 section 3): `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i)`,
//! `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = SHA-256(ClientKey)`,
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`; `AuthMessage` is client-first-bare, `,`,
//! server-first, `,`, client-final without its proof. The server keeps only StoredKey and
//! ServerKey, and checks `SHA-256(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey`.
//!
//! Not supported: channel binding (`p=` in the GS2 header fails; `y` is accepted as RFC 5802
//! allows), an authorization identity (`a=`), and SASLprep: user names and passwords are used as
//! the bytes given, which is SASLprep's result for ASCII.

use super::{constant_time_eq, random_bytes, AuthState, AuthStep, Authenticator};
use crate::codec::ReasonCode;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// The MQTT Authentication Method name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Largest SCRAM message accepted from the peer, in bytes (real ones are under 300).
pub const SCRAM_MESSAGE_LEN_MAX: usize = 1024;
/// Longest user name accepted in client-first, in bytes after unescaping.
pub const SCRAM_USERNAME_LEN_MAX: usize = 255;
/// Iteration count used for new credentials; RFC 7677 asks for at least 4096.
pub const SCRAM_ITERATIONS_DEFAULT: u32 = 4096;
/// The client refuses a server-first with fewer iterations (RFC 7677 section 4).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// The client refuses more iterations, so that a hostile server cannot make it spin.
pub const SCRAM_ITERATIONS_MAX: u32 = 1_000_000;
/// Length of the random salt of new credentials, in bytes.
pub const SCRAM_SALT_LEN: usize = 16;
/// Random bytes in a nonce (base64 makes 24 characters of them).
const NONCE_BYTES: usize = 18;
/// Longest nonce accepted from the peer, in bytes.
const NONCE_LEN_MAX: usize = 256;

/// Why a SCRAM message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramError {
    /// The message does not follow the RFC 5802 grammar, or exceeds a limit; the text says how.
    Malformed(&'static str),
    /// A feature this implementation does not offer (channel binding, authzid, `m=`).
    Unsupported(&'static str),
    /// The proof (server side) or the server signature (client side) is wrong, or the user is
    /// unknown.
    InvalidProof,
    /// The server answered with `e=...` in server-final.
    ServerError,
    /// The operating system gave no random bytes for a nonce.
    Random,
}

impl ScramError {
    /// The reason code for CONNACK (or DISCONNECT during re-authentication).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::InvalidProof => ReasonCode::BadUserNameOrPassword,
            Self::Random => ReasonCode::UnspecifiedError,
            Self::Malformed(_) | Self::Unsupported(_) | Self::ServerError => {
                ReasonCode::NotAuthorized
            }
        }
    }
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed SCRAM message: {what}"),
            Self::Unsupported(what) => write!(f, "unsupported SCRAM feature: {what}"),
            Self::InvalidProof => f.write_str("SCRAM proof or signature does not verify"),
            Self::ServerError => f.write_str("SCRAM server reported an error"),
            Self::Random => f.write_str("no random bytes for a SCRAM nonce"),
        }
    }
}

impl std::error::Error for ScramError {}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], ScramError> {
    // HMAC takes keys of any length; the error branch cannot be reached.
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| ScramError::Malformed("key"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn random_nonce() -> Result<String, ScramError> {
    let bytes = random_bytes::<NONCE_BYTES>().map_err(|_| ScramError::Random)?;
    Ok(BASE64.encode(bytes))
}

/// What the server stores for one user (RFC 5802 section 3): never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The salt sent in server-first.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count sent in server-first.
    pub iterations: u32,
    /// `SHA-256(ClientKey)`, to check the client's proof.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`, to sign server-final.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derives the stored credentials from a password.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Result<Self, ScramError> {
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key")?;
        Ok(Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key")?,
        })
    }

    /// Derives credentials with a fresh random salt of [`SCRAM_SALT_LEN`] bytes.
    pub fn generate(password: &str, iterations: u32) -> Result<Self, ScramError> {
        let salt = random_bytes::<SCRAM_SALT_LEN>().map_err(|_| ScramError::Random)?;
        Self::from_password(password, &salt, iterations)
    }
}

/// The users a [`ScramSha256Authenticator`] knows, by user name.
#[derive(Clone, Debug, Default)]
pub struct ScramUserStore {
    users: HashMap<String, ScramCredentials>,
}

impl ScramUserStore {
    /// No users.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, username: &str, credentials: ScramCredentials) {
        self.users.insert(username.to_owned(), credentials);
    }

    /// A user's credentials.
    pub fn get(&self, username: &str) -> Option<&ScramCredentials> {
        self.users.get(username)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Reads a peer's SCRAM message as UTF-8 within [`SCRAM_MESSAGE_LEN_MAX`].
fn message_text(data: Option<&[u8]>) -> Result<&str, ScramError> {
    let data = data.ok_or(ScramError::Malformed("no Authentication Data"))?;
    if data.len() > SCRAM_MESSAGE_LEN_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// The value of attribute `name` (`name=value`) in `part`.
fn attribute(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let part = part.ok_or(ScramError::Malformed("missing attribute"))?;
    let mut chars = part.chars();
    if chars.next() != Some(name) || chars.next() != Some('=') {
        if part.starts_with("m=") {
            return Err(ScramError::Unsupported("mandatory extension m="));
        }
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok(&part[2..])
}

/// Checks a nonce: printable ASCII except `,` (RFC 5802 `printable`), within the length limit.
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    let printable = nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if nonce.is_empty() || nonce.len() > NONCE_LEN_MAX || !printable {
        return Err(ScramError::Malformed("bad nonce"));
    }
    Ok(())
}

/// Decodes a `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() || out.len() > SCRAM_USERNAME_LEN_MAX {
        return Err(ScramError::Malformed("bad user name length"));
    }
    Ok(out)
}

fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A parsed client-first message.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    username: String,
    nonce: &'a str,
}

fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = message
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
        _ => return Err(ScramError::Malformed("bad GS2 channel-binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    if !authzid.is_empty() {
        return Err(ScramError::Unsupported("authorization identity"));
    }
    let gs2_header = &message[..message.len() - bare.len()];
    let mut parts = bare.split(',');
    let username = decode_saslname(attribute(parts.next(), 'n')?)?;
    let nonce = attribute(parts.next(), 'r')?;
    check_nonce(nonce)?;
    // Optional extensions after the nonce are ignored (RFC 5802 section 5.1).
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// One connection's progress between server-first and client-final.
struct ScramServerState {
    username: String,
    client_first_bare: String,
    server_first: String,
    /// The combined nonce, client part then server part.
    nonce: String,
    /// `base64(gs2-header)`, the `c=` value client-final must carry.
    channel_binding: String,
    /// `None` for an unknown user: the exchange runs to the end and fails there.
    credentials: Option<ScramCredentials>,
}

/// The SCRAM-SHA-256 server side of enhanced authentication.
///
/// For an unknown user it answers with a decoy salt derived from a secret and the user name (the
/// same every time for that name), so a client cannot probe which users exist.
pub struct ScramSha256Authenticator {
    users: ScramUserStore,
    decoy_secret: [u8; 32],
}

impl ScramSha256Authenticator {
    /// A server for `users`.
    pub fn new(users: ScramUserStore) -> Result<Self, ScramError> {
        Ok(Self {
            users,
            decoy_secret: random_bytes::<32>().map_err(|_| ScramError::Random)?,
        })
    }

    /// [`Authenticator::start`] with a given server nonce (for deterministic tests).
    pub fn start_with_nonce(&self, data: Option<&[u8]>, server_nonce: &str) -> AuthStep {
        match self.server_first(data, server_nonce) {
            Ok((data, state)) => AuthStep::Continue {
                data,
                state: AuthState::new(state),
            },
            Err(error) => AuthStep::Failure(error.reason_code()),
        }
    }

    fn server_first(
        &self,
        data: Option<&[u8]>,
        server_nonce: &str,
    ) -> Result<(Vec<u8>, ScramServerState), ScramError> {
        check_nonce(server_nonce)?;
        let client_first = parse_client_first(message_text(data)?)?;
        let credentials = self.users.get(&client_first.username).cloned();
        let (salt, iterations) = match &credentials {
            Some(credentials) => (credentials.salt.clone(), credentials.iterations),
            None => (
                hmac_sha256(&self.decoy_secret, client_first.username.as_bytes())?
                    [..SCRAM_SALT_LEN]
                    .to_vec(),
                SCRAM_ITERATIONS_DEFAULT,
            ),
        };
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        let state = ScramServerState {
            username: client_first.username,
            client_first_bare: client_first.bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            channel_binding: BASE64.encode(client_first.gs2_header),
            credentials,
        };
        Ok((server_first.into_bytes(), state))
    }

    /// Checks client-final; returns server-final and the user name.
    fn server_final(
        state: ScramServerState,
        data: Option<&[u8]>,
    ) -> Result<(Vec<u8>, String), ScramError> {
        let message = message_text(data)?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        if attribute(parts.next(), 'c')? != state.channel_binding {
            return Err(ScramError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        if attribute(parts.next(), 'r')? != state.nonce {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: [u8; 32] = BASE64
            .decode(proof)
            .ok()
            .and_then(|proof| proof.try_into().ok())
            .ok_or(ScramError::Malformed("bad proof"))?;
        let credentials = state.credentials.ok_or(ScramError::InvalidProof)?;
        let auth_message = format!(
            "{},{},{without_proof}",
            state.client_first_bare, state.server_first
        );
        let client_signature = hmac_sha256(&credentials.stored_key, auth_message.as_bytes())?;
        let client_key = xor(&proof, &client_signature);
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        if !constant_time_eq(&stored_key, &credentials.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac_sha256(&credentials.server_key, auth_message.as_bytes())?;
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((server_final.into_bytes(), state.username))
    }
}

impl Authenticator for ScramSha256Authenticator {
    fn method(&self) -> &str {
        SCRAM_SHA_256
    }

    fn start(&self, _client_id: &str, data: Option<&[u8]>) -> AuthStep {
        match random_nonce() {
            Ok(nonce) => self.start_with_nonce(data, &nonce),
            Err(error) => AuthStep::Failure(error.reason_code()),
        }
    }

    fn continue_auth(&self, state: AuthState, data: Option<&[u8]>) -> AuthStep {
        let Some(state) = state.downcast::<ScramServerState>() else {
            return AuthStep::Failure(ReasonCode::NotAuthorized);
        };
        match Self::server_final(state, data) {
            Ok((data, username)) => AuthStep::Success {
                data: Some(data),
                username,
            },
            Err(error) => AuthStep::Failure(error.reason_code()),
        }
    }
}

/// The client side of SCRAM-SHA-256, before server-first: holds the password and client-first.
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    nonce: String,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

/// The GS2 header our client sends: no channel binding, no authzid; base64 `biws`.
const CLIENT_GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// A client with a random nonce.
    pub fn new(username: &str, password: &str) -> Result<Self, ScramError> {
        Ok(Self::with_nonce(username, password, &random_nonce()?))
    }

    /// A client with a given nonce (for deterministic tests); the nonce must be printable ASCII
    /// without `,`.
    pub fn with_nonce(username: &str, password: &str, nonce: &str) -> Self {
        Self {
            password: password.to_owned(),
            client_first_bare: format!("n={},r={nonce}", encode_saslname(username)),
            nonce: nonce.to_owned(),
        }
    }

    /// The client-first message, for CONNECT's (or AUTH 0x19's) Authentication Data.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{CLIENT_GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Reads server-first and returns client-final (for AUTH 0x18) and the state that checks
    /// server-final.
    pub fn handle_server_first(
        self,
        data: Option<&[u8]>,
    ) -> Result<(Vec<u8>, ScramClientFinal), ScramError> {
        let server_first = message_text(data)?;
        let mut parts = server_first.split(',');
        let nonce = attribute(parts.next(), 'r')?;
        check_nonce(nonce)?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let salt = BASE64
            .decode(attribute(parts.next(), 's')?)
            .map_err(|_| ScramError::Malformed("bad salt"))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let iterations: u32 = attribute(parts.next(), 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("bad iteration count"))?;
        if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Unsupported("iteration count out of range"));
        }
        let salted = salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key")?;
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac_sha256(&salted, b"Server Key")?;
        let without_proof = format!("c={},r={nonce}", BASE64.encode(CLIENT_GS2_HEADER));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes())?;
        let proof = xor(&client_key, &client_signature);
        let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
        let server_signature = hmac_sha256(&server_key, auth_message.as_bytes())?;
        Ok((
            client_final.into_bytes(),
            ScramClientFinal { server_signature },
        ))
    }
}

/// The client side after client-final: checks the server's signature in server-final.
#[derive(Debug)]
pub struct ScramClientFinal {
    server_signature: [u8; 32],
}

impl ScramClientFinal {
    /// Checks server-final (CONNACK's Authentication Data): `Ok` when the server proved that it
    /// knows the user's ServerKey.
    pub fn verify_server_final(&self, data: Option<&[u8]>) -> Result<(), ScramError> {
        let message = message_text(data)?;
        if message.starts_with("e=") {
            return Err(ScramError::ServerError);
        }
        let signature = attribute(message.split(',').next(), 'v')?;
        let signature = BASE64
            .decode(signature)
            .map_err(|_| ScramError::Malformed("bad server signature"))?;
        if constant_time_eq(&signature, &self.server_signature) {
            Ok(())
        } else {
            Err(ScramError::InvalidProof)
        }
    }
}
