//! JWT logins: the client sends a signed token as its CONNECT password (a common IoT pattern).
//!
//! Verification is the `jsonwebtoken` crate's (no hand-written crypto): RS256, ES256 or HS256
//! against a key read from a file (PEM public key for RS256/ES256, the file's bytes without
//! trailing whitespace as the HS256 secret). `exp` is required; `exp` and `nbf` are checked with
//! a small clock skew. The user name is a configurable claim (default `sub`). Optional claims
//! list the topic filters the client may publish to and subscribe to; when present they act as
//! the client's ACL (together with the ACL file, if any: both must allow).

use serde::Deserialize;
use std::path::PathBuf;

/// Largest JWT accepted as a password, in bytes.
pub const JWT_LEN_MAX: usize = 8192;
/// Topic filters taken from one claim at most.
pub const JWT_TOPICS_MAX: usize = 256;

/// The JWT signature algorithms offered.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the key file is a PEM RSA public key.
    RS256,
    /// ECDSA P-256 with SHA-256; the key file is a PEM EC public key.
    ES256,
    /// HMAC-SHA-256; the key file holds the shared secret.
    HS256,
}

impl std::str::FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            "HS256" => Ok(Self::HS256),
            _ => Err(format!(
                "unknown JWT algorithm {s:?} (RS256, ES256 or HS256)"
            )),
        }
    }
}

/// JWT settings, as in the config file's `[jwt]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The one algorithm accepted (a token naming another is refused).
    pub algorithm: JwtAlgorithm,
    /// The verification key file.
    pub key_file: PathBuf,
    /// The claim holding the user name. Default `sub`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// A claim with a list of topic filters the client may publish to. Default none.
    #[serde(default)]
    pub publish_claim: Option<String>,
    /// A claim with a list of topic filters the client may subscribe to. Default none.
    #[serde(default)]
    pub subscribe_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds, 0..=300. Default 30.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Close the connection when its token expires (MQTT 5: DISCONNECT 0xA0 Maximum connect
    /// time). Default false: the token is checked at CONNECT only.
    #[serde(default)]
    pub disconnect_on_expiry: bool,
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_leeway_secs() -> u64 {
    30
}

impl JwtSettings {
    /// Settings with the defaults for the optional fields.
    pub fn new(algorithm: JwtAlgorithm, key_file: PathBuf) -> Self {
        Self {
            algorithm,
            key_file,
            username_claim: default_username_claim(),
            publish_claim: None,
            subscribe_claim: None,
            leeway_secs: default_leeway_secs(),
            disconnect_on_expiry: false,
        }
    }
}

/// A verified token: who the client is and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The user name from the username claim.
    pub username: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at_secs: u64,
    /// Time left until the expiry when the token was verified (jsonwebtoken reads the system
    /// clock for `exp` anyway; the broker core then only needs its monotonic `now`).
    pub expires_in: std::time::Duration,
    /// Filters from the publish claim, when configured and present.
    pub publish: Option<Vec<String>>,
    /// Filters from the subscribe claim, when configured and present.
    pub subscribe: Option<Vec<String>>,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtRefusal {
    /// `exp` passed (or `nbf` not reached), beyond the skew.
    Expired,
    /// Anything else: bad signature, wrong algorithm, malformed, missing claims.
    Invalid,
}

/// Checks tokens against one key. Immutable; built at start (and on reload).
pub struct JwtVerifier {
    settings: JwtSettings,
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Reads the key file and prepares the validation rules.
    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        if settings.leeway_secs > 300 {
            return Err("jwt leeway_secs must be in 0..=300".into());
        }
        let bytes = std::fs::read(&settings.key_file)
            .map_err(|e| format!("jwt key {}: {e}", settings.key_file.display()))?;
        let bad_key = |e: jsonwebtoken::errors::Error| {
            format!("jwt key {}: {e}", settings.key_file.display())
        };
        let (algorithm, key) = match settings.algorithm {
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(&bytes).map_err(bad_key)?,
            ),
            JwtAlgorithm::ES256 => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(&bytes).map_err(bad_key)?,
            ),
            JwtAlgorithm::HS256 => {
                let secret = bytes.trim_ascii_end();
                if secret.is_empty() {
                    return Err(format!(
                        "jwt key {}: empty secret",
                        settings.key_file.display()
                    ));
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = settings.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(Self {
            settings: settings.clone(),
            key,
            validation,
        })
    }

    /// The settings this verifier was built from.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Whether a password looks like a JWT (three base64url parts), so that it goes to this
    /// verifier rather than to the password file.
    pub fn looks_like_token(password: &[u8]) -> bool {
        password.len() <= JWT_LEN_MAX
            && password.starts_with(b"eyJ")
            && password.iter().filter(|&&b| b == b'.').count() == 2
    }

    /// Verifies a token and extracts the identity and topic claims.
    pub fn verify(&self, token: &[u8]) -> Result<JwtIdentity, JwtRefusal> {
        use jsonwebtoken::errors::ErrorKind;
        if token.len() > JWT_LEN_MAX {
            return Err(JwtRefusal::Invalid);
        }
        let token = std::str::from_utf8(token).map_err(|_| JwtRefusal::Invalid)?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => JwtRefusal::Expired,
            _ => JwtRefusal::Invalid,
        })?;
        let claims = data.claims;
        let username = claims
            .get(&self.settings.username_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 65_535)
            .ok_or(JwtRefusal::Invalid)?
            .to_owned();
        let expires_at_secs = claims
            .get("exp")
            .and_then(|v| v.as_u64())
            .ok_or(JwtRefusal::Invalid)?;
        let topics = |claim: &Option<String>| -> Result<Option<Vec<String>>, JwtRefusal> {
            let Some(value) = claim.as_ref().and_then(|name| claims.get(name)) else {
                return Ok(None);
            };
            let list = value.as_array().ok_or(JwtRefusal::Invalid)?;
            if list.len() > JWT_TOPICS_MAX {
                return Err(JwtRefusal::Invalid);
            }
            list.iter()
                .map(|v| {
                    let filter = v.as_str().ok_or(JwtRefusal::Invalid)?;
                    crate::topic::validate_topic_filter(filter).map_err(|_| JwtRefusal::Invalid)?;
                    Ok(filter.to_owned())
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(JwtIdentity {
            username,
            expires_at_secs,
            expires_in: std::time::Duration::from_secs(expires_at_secs.saturating_sub(now_secs)),
            publish: topics(&self.settings.publish_claim)?,
            subscribe: topics(&self.settings.subscribe_claim)?,
        })
    }
}
