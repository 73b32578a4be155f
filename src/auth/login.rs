//! Plain-CONNECT logins (password file, JWT, anonymous) with a bounded cost per shard, and the
//! per-session access state the publish, subscribe and delivery paths consult.
//!
//! # Keeping password checks off the critical path
//!
//! A `$7$` check at Mosquitto's 101 iterations costs about 0.19 ms of a shard thread
//! (`cargo bench --bench auth`, README), more for files written with more iterations. Two bounds
//! keep a storm of CONNECTs from stalling the shard's other clients:
//!
//! - a per-shard cache of verified logins: user name -> SHA-256 over a per-shard random key and
//!   the password, tagged with the reload generation. A client reconnecting with the same
//!   password costs one SHA-256, and a wrong password never enters it;
//! - a per-shard budget of [`PASSWORD_CHECKS_PER_WINDOW`] uncached checks per
//!   [`PASSWORD_CHECK_WINDOW`]: past it a CONNECT is refused with 0x89 Server busy (3.1.1:
//!   return code 3, Server unavailable), which clients retry, and the refusal is counted. So at
//!   most 16 checks run per 10 ms: at 101 iterations about 3 ms, under a third of the shard's
//!   time, whatever the number of connecting clients.
//!
//! A verifier thread would move the work off the shard entirely, but the connection would then
//! wait in a new state for an answer through the mesh; the budget gives the same bound with no
//! new state, and the cache makes the common case (reconnects) nearly free.

use super::acl::{AclCache, ClientRules, ACL_READ, ACL_WRITE};
use super::jwt::{JwtIdentity, JwtRefusal, JwtVerifier};
use super::password::PasswordRefusal;
use super::policy::AccessControl;
use super::random_bytes;
use crate::codec::ReasonCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Uncached password checks allowed per shard per window.
pub const PASSWORD_CHECKS_PER_WINDOW: u32 = 16;
/// The budget's window.
pub const PASSWORD_CHECK_WINDOW: Duration = Duration::from_millis(10);
/// Verified logins remembered per shard; the cache is emptied when full.
pub const VERIFIED_LOGINS_MAX: usize = 4096;

/// Why a CONNECT was refused; each kind has its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginRefusal {
    /// The user is not in the password file.
    UnknownUser,
    /// A listed user with a wrong or missing password, or a bad token.
    BadPassword,
    /// The token expired (or is not valid yet).
    ExpiredToken,
    /// No credentials, and anonymous clients are not allowed.
    AnonymousRefused,
    /// The will's topic is not writable for this client.
    WillDenied,
    /// The shard's password-check budget is spent for this window.
    Busy,
}

impl LoginRefusal {
    /// The CONNACK reason code (the codec maps it for MQTT 3.1.1).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Self::UnknownUser | Self::BadPassword | Self::ExpiredToken => {
                ReasonCode::BadUserNameOrPassword
            }
            Self::AnonymousRefused | Self::WillDenied => ReasonCode::NotAuthorized,
            Self::Busy => ReasonCode::ServerBusy,
        }
    }
}

/// Who logged in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    /// The user name for the ACL and logs; `None` for an anonymous client.
    pub username: Option<String>,
    /// The verified token, for a JWT login.
    pub token: Option<JwtIdentity>,
}

/// One shard's login state: the verified-login cache and the check budget. Owned by the shard
/// thread, so no lock.
pub struct ShardLogin {
    key: [u8; 32],
    verified: HashMap<String, (u64, [u8; 32])>,
    window_start: Option<Instant>,
    checks_in_window: u32,
}

impl Default for ShardLogin {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardLogin {
    /// An empty cache with a random key (an all-zero key if the system has no randomness,
    /// which only weakens the cache against someone who can already read the shard's memory).
    pub fn new() -> Self {
        Self {
            key: random_bytes::<32>().unwrap_or_default(),
            verified: HashMap::new(),
            window_start: None,
            checks_in_window: 0,
        }
    }

    fn digest(&self, password: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(password);
        hasher.finalize().into()
    }

    /// Takes one uncached check from the budget; false when spent for this window.
    fn take_budget(&mut self, now: Instant) -> bool {
        let fresh = self.window_start.map_or(true, |start| {
            now.duration_since(start) >= PASSWORD_CHECK_WINDOW
        });
        if fresh {
            self.window_start = Some(now);
            self.checks_in_window = 0;
        }
        if self.checks_in_window >= PASSWORD_CHECKS_PER_WINDOW {
            return false;
        }
        self.checks_in_window += 1;
        true
    }
}

impl AccessControl {
    /// Authenticates a plain CONNECT (no Authentication Method). `now` drives the check budget.
    pub fn login(
        &self,
        shard: &mut ShardLogin,
        username: Option<&str>,
        password: Option<&[u8]>,
        now: Instant,
    ) -> Result<Login, LoginRefusal> {
        let loaded = self.loaded();
        let policy = self.policy();
        if let (Some(jwt), Some(token)) = (&loaded.jwt, password) {
            if JwtVerifier::looks_like_token(token) {
                return match jwt.verify(token) {
                    Ok(identity) => Ok(Login {
                        username: Some(identity.username.clone()),
                        token: Some(identity),
                    }),
                    Err(JwtRefusal::Expired) => Err(LoginRefusal::ExpiredToken),
                    Err(JwtRefusal::Invalid) => Err(LoginRefusal::BadPassword),
                };
            }
        }
        if username.is_none() && password.is_none() {
            return if policy.anonymous_allowed() {
                Ok(Login::default())
            } else {
                Err(LoginRefusal::AnonymousRefused)
            };
        }
        let Some(passwords) = &loaded.passwords else {
            if policy.authenticates() {
                // A JWT-only listener: credentials that are not a token prove nothing.
                return Err(LoginRefusal::BadPassword);
            }
            // No authentication configured: the user name is taken as given (Mosquitto with
            // allow_anonymous and no password file).
            return Ok(Login {
                username: username.map(str::to_owned),
                token: None,
            });
        };
        let generation = self.generation();
        if let (Some(user), Some(password)) = (username, password) {
            let digest = shard.digest(password);
            if shard.verified.get(user) == Some(&(generation, digest)) {
                return Ok(Login {
                    username: Some(user.to_owned()),
                    token: None,
                });
            }
        }
        if !shard.take_budget(now) {
            return Err(LoginRefusal::Busy);
        }
        match passwords.check(username, password) {
            Ok(()) => {
                let user = username.unwrap_or_default().to_owned();
                let digest = shard.digest(password.unwrap_or_default());
                if shard.verified.len() >= super::login::VERIFIED_LOGINS_MAX {
                    shard.verified.clear();
                }
                shard.verified.insert(user.clone(), (generation, digest));
                Ok(Login {
                    username: Some(user),
                    token: None,
                })
            }
            Err(PasswordRefusal::UnknownUser) => Err(LoginRefusal::UnknownUser),
            Err(PasswordRefusal::BadPassword) => Err(LoginRefusal::BadPassword),
        }
    }

    /// The access state of a session restored from disk whose user is not known until its
    /// client connects again: nothing is delivered to it meanwhile (deny by default); `None`
    /// when nothing can restrict it.
    pub fn unknown_identity_access(
        self: &Arc<Self>,
        client_id: &str,
    ) -> Option<Box<SessionAccess>> {
        let mut access = self.session_access(&Login::default(), client_id)?;
        access.unknown_identity = true;
        Some(access)
    }

    /// The access state of a session that logged in as `login` with `client_id`; `None` when
    /// nothing can restrict it (no ACL file, no token claims configured), so the publish path
    /// skips every check.
    pub fn session_access(
        self: &Arc<Self>,
        login: &Login,
        client_id: &str,
    ) -> Option<Box<SessionAccess>> {
        if !self.policy().restricts() {
            return None;
        }
        let mut access = SessionAccess {
            control: self.clone(),
            username: login.username.clone(),
            client_id: client_id.to_owned(),
            token: login.token.as_ref().map(|token| TokenRules {
                publish: token
                    .publish
                    .as_ref()
                    .map(|f| ClientRules::granting(f, ACL_WRITE)),
                subscribe: token
                    .subscribe
                    .as_ref()
                    .map(|f| ClientRules::granting(f, ACL_READ)),
            }),
            generation: 0,
            file: None,
            cache: AclCache::default(),
            unknown_identity: false,
            disconnect_after: login
                .token
                .as_ref()
                .filter(|_| {
                    self.policy()
                        .jwt
                        .as_ref()
                        .is_some_and(|j| j.disconnect_on_expiry)
                })
                .map(|token| token.expires_in),
        };
        access.refresh();
        Some(Box::new(access))
    }
}

/// The topic rules a token granted.
#[derive(Debug)]
struct TokenRules {
    publish: Option<ClientRules>,
    subscribe: Option<ClientRules>,
}

/// One session's authorization: its identity, its rules from the ACL file (rebuilt after a
/// reload), the rules its token granted, and a cache of decisions by topic, so that a
/// publish or a delivery costs one hash lookup once a topic has been seen.
#[derive(Debug)]
pub struct SessionAccess {
    /// The policy the session logged in under (its listener's), for reload generations.
    control: Arc<AccessControl>,
    username: Option<String>,
    client_id: String,
    token: Option<TokenRules>,
    generation: u64,
    file: Option<ClientRules>,
    cache: AclCache,
    disconnect_after: Option<Duration>,
    /// Restored from disk, its user not known yet: every check fails until it reconnects.
    unknown_identity: bool,
}

impl SessionAccess {
    /// How long after the login the connection must be closed because its token expires, if
    /// the operator asked for it.
    pub fn disconnect_after(&self) -> Option<Duration> {
        self.disconnect_after
    }

    /// The user name the session logged in with.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    fn refresh(&mut self) {
        self.generation = self.control.generation();
        self.file = self
            .control
            .loaded()
            .acl
            .as_ref()
            .map(|acl| acl.rules_for(self.username.as_deref(), &self.client_id));
        self.cache.clear();
    }

    fn decide(
        file: Option<&ClientRules>,
        token: Option<&TokenRules>,
        topic: &str,
        access: u8,
    ) -> bool {
        let file = file.map_or(true, |r| r.allows(topic, access));
        let token = token.map_or(true, |t| {
            let rules = if access == ACL_WRITE {
                &t.publish
            } else {
                &t.subscribe
            };
            rules.as_ref().map_or(true, |r| r.allows(topic, access))
        });
        file && token
    }

    /// Whether the session may publish on (`ACL_WRITE`) or receive (`ACL_READ`) a topic name.
    pub fn allows(&mut self, topic: &str, access: u8) -> bool {
        if self.unknown_identity {
            return false;
        }
        if self.generation != self.control.generation() {
            self.refresh();
        }
        let (file, token) = (self.file.as_ref(), self.token.as_ref());
        self.cache
            .check(topic, access, || Self::decide(file, token, topic, access))
    }

    /// Whether a SUBSCRIBE filter (without `$share/group/`) may be granted.
    pub fn may_subscribe(&mut self, filter: &str) -> bool {
        if self.unknown_identity {
            return false;
        }
        if self.generation != self.control.generation() {
            self.refresh();
        }
        let file = self.file.as_ref().map_or(true, |r| r.may_subscribe(filter));
        let token = self
            .token
            .as_ref()
            .and_then(|t| t.subscribe.as_ref())
            .map_or(true, |r| r.may_subscribe(filter));
        file && token
    }
}

/// SCRAM-SHA-256 as the broker offers it: the server in force now, swapped by a reload. An
/// exchange in progress keeps the credentials it started with (they live in its state).
pub struct ReloadableScram(pub Arc<AccessControl>);

impl super::Authenticator for ReloadableScram {
    fn method(&self) -> &str {
        super::SCRAM_SHA_256
    }

    fn start(&self, client_id: &str, data: Option<&[u8]>) -> super::AuthStep {
        match &self.0.loaded().scram {
            Some(server) => server.start(client_id, data),
            None => super::AuthStep::Failure(ReasonCode::BadAuthenticationMethod),
        }
    }

    fn continue_auth(&self, state: super::AuthState, data: Option<&[u8]>) -> super::AuthStep {
        match &self.0.loaded().scram {
            Some(server) => server.continue_auth(state, data),
            None => super::AuthStep::Failure(ReasonCode::NotAuthorized),
        }
    }
}
