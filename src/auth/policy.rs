//! The access-control policy and its loaded, reloadable state.
//!
//! [`AuthPolicy`] says what applies (anonymous clients, password file, SCRAM file, ACL file,
//! JWT, certificate identity as user name); today it comes from the global config, and a
//! listener may carry its own later. [`AccessControl`] holds the files loaded from it, shared by
//! every shard behind an `Arc` that [`AccessControl::reload`] swaps: a file that fails to load
//! keeps the previous version in force and the failure is logged and returned. A generation
//! number tells sessions to rebuild their rules and empty their decision caches, so connected
//! clients follow a new ACL from their next publish or delivery.

use super::acl::AclFile;
use super::jwt::{JwtSettings, JwtVerifier};
use super::password::PasswordAuthenticator;
use super::scram::ScramSha256Authenticator;
use parking_lot::RwLock;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What authentication and authorization apply to a listener's clients: the broker-wide one
/// from the config's top-level fields, or a listener's own `[listener.auth]` table (which takes
/// `allow_anonymous`, `password_file`, `acl_file` and `[listener.auth.jwt]`; SCRAM stays
/// broker-wide, and `use_identity_as_username` is the listener's own setting).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthPolicy {
    /// Whether a CONNECT without user name and password is admitted. `None`: yes unless a
    /// password file or JWT is configured (then such a CONNECT gets 0x87 / return code 5).
    pub allow_anonymous: Option<bool>,
    /// Mosquitto password file (`$7$`/`$6$` hashes).
    pub password_file: Option<PathBuf>,
    /// SCRAM-SHA-256 stored keys (MQTT 5 enhanced authentication); broker-wide only.
    #[serde(skip)]
    pub scram_users_file: Option<PathBuf>,
    /// Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// JWT logins.
    pub jwt: Option<JwtSettings>,
    /// Use the client certificate's identity (from a TLS listener) as the user name; set from
    /// the listener's own `use_identity_as_username`.
    #[serde(skip)]
    pub use_identity_as_username: bool,
}

impl AuthPolicy {
    /// Whether a client must prove who it is to use a user name.
    pub fn authenticates(&self) -> bool {
        self.password_file.is_some() || self.jwt.is_some() || self.use_identity_as_username
    }

    /// Whether anonymous clients are admitted.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(!self.authenticates())
    }

    /// Whether sessions need per-session access state (an ACL or token claims may restrict).
    pub fn restricts(&self) -> bool {
        self.acl_file.is_some()
            || self.jwt.as_ref().is_some_and(|j| {
                j.publish_claim.is_some() || j.subscribe_claim.is_some() || j.disconnect_on_expiry
            })
    }

    /// The warning Mosquitto 2 would turn into a refusal: a non-loopback listener that lets
    /// anyone in.
    pub fn open_listener_warning(&self, address: &std::net::SocketAddr) -> Option<String> {
        if address.ip().is_loopback() || !self.anonymous_allowed() {
            return None;
        }
        Some(format!(
            "listener {address} is not on loopback and admits anonymous clients: set a \
             password file, JWT or allow_anonymous = false"
        ))
    }
}

impl From<&crate::broker::Config> for AuthPolicy {
    /// The global policy from the config's access-control fields.
    fn from(config: &crate::broker::Config) -> Self {
        Self {
            allow_anonymous: config.allow_anonymous,
            password_file: config.password_file.clone(),
            scram_users_file: config.scram_users_file.clone(),
            acl_file: config.acl_file.clone(),
            jwt: config.jwt.clone(),
            // A listener setting (TLS client certificates): set per listener, not globally.
            use_identity_as_username: false,
        }
    }
}

/// The files loaded from a policy. Immutable; a reload makes a new one.
#[derive(Default)]
pub struct LoadedAuth {
    /// The password file, when configured.
    pub passwords: Option<Arc<PasswordAuthenticator>>,
    /// The SCRAM server, when configured.
    pub scram: Option<Arc<ScramSha256Authenticator>>,
    /// The ACL file, when configured.
    pub acl: Option<Arc<AclFile>>,
    /// The JWT verifier, when configured.
    pub jwt: Option<Arc<JwtVerifier>>,
}

/// The policy and its loaded files, shared by every shard.
pub struct AccessControl {
    policy: AuthPolicy,
    loaded: RwLock<Arc<LoadedAuth>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("policy", &self.policy)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn load_passwords(path: &std::path::Path) -> Result<PasswordAuthenticator, String> {
    PasswordAuthenticator::from_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn load_scram(path: &std::path::Path) -> Result<Arc<ScramSha256Authenticator>, String> {
    let users =
        super::scram_file::read_scram_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let server =
        ScramSha256Authenticator::new(users).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Arc::new(server))
}

fn load_acl(path: &std::path::Path) -> Result<Arc<AclFile>, String> {
    AclFile::from_file(path)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The new version of a file, or the old one (and the error noted) when it failed.
fn keep<T>(
    result: Result<Arc<T>, String>,
    old: &Option<Arc<T>>,
    errors: &mut Vec<String>,
) -> Option<Arc<T>> {
    match result {
        Ok(new) => Some(new),
        Err(e) => {
            log::error!("reload: {e}; keeping the previous version");
            errors.push(e);
            old.clone()
        }
    }
}

impl AccessControl {
    /// Loads every file the policy names; any failure is an error (the broker does not start).
    pub fn load(policy: AuthPolicy) -> Result<Self, String> {
        let loaded = LoadedAuth {
            passwords: policy
                .password_file
                .as_deref()
                .map(|path| load_passwords(path).map(Arc::new))
                .transpose()?,
            scram: policy
                .scram_users_file
                .as_deref()
                .map(load_scram)
                .transpose()?,
            acl: policy.acl_file.as_deref().map(load_acl).transpose()?,
            jwt: policy
                .jwt
                .as_ref()
                .map(|settings| JwtVerifier::new(settings).map(Arc::new))
                .transpose()?,
        };
        Ok(Self {
            policy,
            loaded: RwLock::new(Arc::new(loaded)),
            generation: AtomicU64::new(1),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &AuthPolicy {
        &self.policy
    }

    /// The files in force now.
    pub fn loaded(&self) -> Arc<LoadedAuth> {
        self.loaded.read().clone()
    }

    /// Changes on every successful reload; sessions compare it on each check (one relaxed
    /// atomic load) and rebuild their rules when it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Re-reads the password, SCRAM and ACL files (and the JWT key). Each file that fails keeps
    /// its previous version; the returned list says which failed and why (each also logged).
    pub fn reload(&self) -> Vec<String> {
        let current = self.loaded();
        let mut errors = Vec::new();
        let policy = &self.policy;
        let passwords = match &policy.password_file {
            Some(path) => keep(
                load_passwords(path).map(Arc::new),
                &current.passwords,
                &mut errors,
            ),
            None => None,
        };
        let scram = match &policy.scram_users_file {
            Some(path) => keep(load_scram(path), &current.scram, &mut errors),
            None => None,
        };
        let acl = match &policy.acl_file {
            Some(path) => keep(load_acl(path), &current.acl, &mut errors),
            None => None,
        };
        let jwt = match &policy.jwt {
            Some(settings) => keep(
                JwtVerifier::new(settings).map(Arc::new),
                &current.jwt,
                &mut errors,
            ),
            None => None,
        };
        *self.loaded.write() = Arc::new(LoadedAuth {
            passwords,
            scram,
            acl,
            jwt,
        });
        self.generation.fetch_add(1, Ordering::Relaxed);
        if errors.is_empty() {
            log::info!("reload: access-control files re-read");
        }
        errors
    }
}
