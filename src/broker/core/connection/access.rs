//! Access-control hooks (issue 13): the shard's side of `crate::auth`. The logic (password
//! files, JWT, ACL decisions, caches) lives in `crate::auth`; these methods only connect it to
//! CONNECT, PUBLISH, SUBSCRIBE and delivery, count refusals and send the answers.

use crate::auth::{Login, LoginRefusal, ACL_READ, ACL_WRITE};
use crate::broker::core::connection::protocol::AcceptedConnect;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::shard::{CloseReason, ShardCore};
use crate::broker::core::stats::bump;
use crate::broker::core::timers::TimerKind;
use crate::codec::{Connect, MqttString, ReasonCode};
use std::time::Duration;

impl ShardCore {
    /// The access-control policy of connection `key`: its listener's own (`[listener.auth]`),
    /// else the broker-wide one.
    fn access_control(&self, key: ConnKey) -> std::sync::Arc<crate::auth::AccessControl> {
        let listener = self.connections.get(key).map(|c| c.listener);
        listener
            .and_then(|id| self.global.listeners.get(id))
            .and_then(|l| l.access.clone())
            .unwrap_or_else(|| self.global.access.clone())
    }

    /// The access state of a session restored from disk (persistence): its user is not known
    /// until its client reconnects, so while any policy restricts topics nothing is delivered
    /// to it (deny by default) rather than everything.
    pub(crate) fn restored_access(
        &self,
        client_id: &str,
    ) -> Option<Box<crate::auth::SessionAccess>> {
        let global = &self.global;
        std::iter::once(&global.access)
            .chain(global.listeners.iter().filter_map(|l| l.access.as_ref()))
            .find(|control| control.policy().restricts())
            .and_then(|control| control.unknown_identity_access(client_id))
    }

    /// Authenticates a plain CONNECT (no Authentication Method) and authorizes its will.
    /// Returns the CONNECT to admit, or `None` when it was refused (CONNACK sent).
    pub(crate) fn login_connect(
        &mut self,
        key: ConnKey,
        connect: &Connect,
        accepted: AcceptedConnect,
    ) -> Option<AcceptedConnect> {
        let access = self.access_control(key);
        let username = connect.username.as_ref().map(|u| u.as_str());
        let password = connect.password.as_deref();
        match access.login(&mut self.login, username, password, self.now) {
            Ok(login) => self.authorize_connect(key, &login, accepted),
            Err(refusal) => {
                let client_id = accepted.client_id.as_str();
                self.refuse_login(key, refusal, client_id, username);
                None
            }
        }
    }

    /// Gives an authenticated CONNECT its session access state and checks that its will may be
    /// published ([MQTT-3.1.2-*]: Mosquitto refuses such a CONNECT with Not authorized).
    pub(crate) fn authorize_connect(
        &mut self,
        key: ConnKey,
        login: &Login,
        mut accepted: AcceptedConnect,
    ) -> Option<AcceptedConnect> {
        let control = self.access_control(key);
        let mut session_access = control.session_access(login, accepted.client_id.as_str());
        if let (Some(access), Some(will)) = (session_access.as_mut(), accepted.will.as_ref()) {
            if !access.allows(will.message.topic.as_str(), ACL_WRITE) {
                let username = login.username.as_deref();
                let client_id = accepted.client_id.as_str();
                self.refuse_login(key, LoginRefusal::WillDenied, client_id, username);
                return None;
            }
        }
        accepted.access = session_access;
        Some(accepted)
    }

    /// CONNACK with the refusal's code, counted by kind, logged with the client's id and user
    /// name (escaped: both are client text), then close.
    fn refuse_login(
        &mut self,
        key: ConnKey,
        refusal: LoginRefusal,
        client_id: &str,
        username: Option<&str>,
    ) {
        let counters = &self.global.counters[self.id];
        bump(match refusal {
            LoginRefusal::UnknownUser => &counters.auth_unknown_user,
            LoginRefusal::BadPassword => &counters.auth_bad_password,
            LoginRefusal::ExpiredToken => &counters.auth_expired_token,
            LoginRefusal::AnonymousRefused => &counters.auth_anonymous_refused,
            LoginRefusal::WillDenied => &counters.acl_denied_will,
            LoginRefusal::Busy => &counters.auth_busy,
        });
        if let Some(conn) = self.connections.get(key) {
            log::info!(
                "connect refused client_id={} username={} addr={} shard={} access={refusal:?}",
                crate::broker::log_escape::Escaped(client_id),
                crate::broker::log_escape::Escaped(username.unwrap_or("")),
                conn.peer,
                self.id
            );
        }
        self.refuse_connect(key, refusal.reason_code());
    }

    /// Whether session `skey` may publish on `topic` (one cache lookup once the topic is known).
    pub(crate) fn may_publish(&mut self, skey: SessionKey, topic: &MqttString) -> bool {
        let Some(access) = self.sessions.get_mut(skey).and_then(|s| s.access.as_mut()) else {
            return true;
        };
        let allowed = access.allows(topic.as_str(), ACL_WRITE);
        if !allowed {
            bump(&self.global.counters[self.id].acl_denied_publish);
        }
        allowed
    }

    /// Whether session `skey` may subscribe to a plain filter (`$share/group/` removed).
    pub(crate) fn may_subscribe(&mut self, skey: SessionKey, filter: &str) -> bool {
        let Some(access) = self.sessions.get_mut(skey).and_then(|s| s.access.as_mut()) else {
            return true;
        };
        let allowed = access.may_subscribe(filter);
        if !allowed {
            bump(&self.global.counters[self.id].acl_denied_subscribe);
        }
        allowed
    }

    /// The PUBLISH reason code for a denied QoS 1/2 message: 0x87 for MQTT 5; MQTT 3.1.1 has no
    /// way to say it, so the message is acknowledged and dropped, as Mosquitto does.
    pub(crate) fn denied_publish_code(&self, key: ConnKey) -> ReasonCode {
        match self.connections.get(key) {
            Some(conn) if conn.version.is_v5() => ReasonCode::NotAuthorized,
            _ => ReasonCode::Success,
        }
    }
}

impl ShardCore {
    /// Arms the timer that closes connection `key` when its token expires, `left` from now
    /// (measured when the token was verified).
    pub(crate) fn arm_token_expiry(&mut self, key: ConnKey, connection_id: u64, left: Duration) {
        self.timers.arm(
            self.now + left,
            TimerKind::TokenExpiry,
            key.index(),
            connection_id,
        );
    }

    /// The token of connection `key` expired: DISCONNECT 0xA0 Maximum connect time (MQTT 5),
    /// then close.
    pub(crate) fn token_expired(&mut self, key: ConnKey, connection_id: u64) {
        if self
            .connections
            .get(key)
            .map_or(true, |c| c.id != connection_id)
        {
            return;
        }
        bump(&self.global.counters[self.id].token_expired_disconnects);
        self.close(
            key,
            CloseReason::Protocol(ReasonCode::MaximumConnectTime, "token expired".into()),
        );
    }
}

/// Whether `access` lets a session read `topic`; used on the delivery path with the session
/// already borrowed. The topic is taken as an `MqttString` so that a broker without ACLs does
/// not pay `as_str`'s UTF-8 check per delivery (issue 17 profile: ~125 instructions each).
pub(crate) fn may_read(
    access: &mut Option<Box<crate::auth::SessionAccess>>,
    topic: &MqttString,
) -> bool {
    match access {
        Some(access) => access.allows(topic.as_str(), ACL_READ),
        None => true,
    }
}
