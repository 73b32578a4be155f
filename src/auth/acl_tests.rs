//! Tests for the ACL file (Mosquitto 2 semantics), filter overlap, the decision cache and the
//! login policy.

use super::*;

const ACL: &str = "\
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write shared/in
topic deny alice/private/#
topic read $SYS/#

user bob
topic bob/#

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern deny devices/%c/locked
";

fn rules(user: Option<&str>, client: &str) -> ClientRules {
    AclFile::parse(ACL).unwrap().rules_for(user, client)
}

#[test]
fn user_blocks_anonymous_and_deny_first() {
    let anonymous = rules(None, "anon");
    assert!(anonymous.allows("public/news", ACL_READ));
    assert!(!anonymous.allows("public/news", ACL_WRITE));
    assert!(!anonymous.allows("public/secret", ACL_READ), "deny wins");
    assert!(!anonymous.allows("alice/x", ACL_READ));
    let alice = rules(Some("alice"), "a1");
    assert!(alice.allows("alice/x", ACL_READ) && alice.allows("alice/x", ACL_WRITE));
    assert!(
        !alice.allows("alice/private/x", ACL_READ),
        "deny listed after still wins"
    );
    assert!(alice.allows("shared/in", ACL_WRITE) && !alice.allows("shared/in", ACL_READ));
    assert!(
        !alice.allows("public/news", ACL_READ),
        "a user does not get the anonymous block"
    );
    assert!(alice.allows("$SYS/broker/uptime", ACL_READ));
    let bob = rules(Some("bob"), "b1");
    assert!(
        bob.allows("bob/x", ACL_WRITE),
        "no access word is readwrite"
    );
    let carol = rules(Some("carol"), "c1");
    assert!(
        !carol.allows("bob/x", ACL_READ),
        "an unlisted user gets only patterns"
    );
}

#[test]
fn patterns_substitute_and_refuse_wildcard_ids() {
    let alice = rules(Some("alice"), "dev7");
    assert!(alice.allows("devices/dev7/temp", ACL_WRITE));
    assert!(!alice.allows("devices/dev8/temp", ACL_WRITE));
    assert!(
        !alice.allows("devices/dev7/locked", ACL_WRITE),
        "pattern deny first"
    );
    assert!(alice.allows("users/alice/inbox", ACL_READ));
    let anonymous = rules(None, "dev7");
    assert!(
        anonymous.allows("devices/dev7/x", ACL_READ),
        "%c applies to anonymous clients"
    );
    assert!(
        !anonymous.allows("users//inbox", ACL_READ),
        "%u never applies to them"
    );
    let sneaky = rules(Some("carol"), "dev+");
    assert!(!sneaky.allows("devices/dev+/x", ACL_READ));
    let sneaky = rules(Some("a#"), "dev9");
    assert!(!sneaky.allows("devices/dev9/x", ACL_READ));
}

#[test]
fn dollar_topics_need_dollar_rules() {
    let acl = AclFile::parse("topic readwrite #\n")
        .unwrap()
        .rules_for(None, "c");
    assert!(acl.allows("a/b", ACL_READ));
    assert!(!acl.allows("$SYS/x", ACL_READ));
}

#[test]
fn subscribe_refuses_only_filters_that_can_deliver_nothing() {
    let alice = rules(Some("alice"), "a1");
    assert!(alice.may_subscribe("alice/#"));
    assert!(
        alice.may_subscribe("#"),
        "overlaps alice/#: filtered on delivery"
    );
    assert!(alice.may_subscribe("+/x"));
    assert!(
        !alice.may_subscribe("alice/private/#"),
        "wholly under a deny"
    );
    assert!(
        !alice.may_subscribe("bob/#"),
        "no rule grants reading there"
    );
    assert!(!alice.may_subscribe("shared/in"), "write-only");
    let anonymous = rules(None, "anon");
    assert!(!anonymous.may_subscribe("public/secret"));
    assert!(anonymous.may_subscribe("public/+"));
}

#[test]
fn overlap_and_cover() {
    for (a, b, overlap) in [
        ("a/#", "a", true),
        ("a/+", "a", false),
        ("+/b", "a/+", true),
        ("a/b", "a/c", false),
        ("#", "$SYS/x", false),
        ("$SYS/#", "$SYS/+", true),
        ("a/+/c", "a/b/#", true),
    ] {
        assert_eq!(intersects(a, b), overlap, "{a} {b}");
        assert_eq!(intersects(b, a), overlap, "{b} {a}");
    }
    for (outer, inner, covered) in [
        ("a/#", "a/b/c", true),
        ("a/#", "a", true),
        ("a", "a/#", false),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/b", "a/+", false),
        ("a/+", "a/b/c", false),
        ("#", "$SYS/#", false),
    ] {
        assert_eq!(covers(outer, inner), covered, "{outer} {inner}");
    }
}

#[test]
fn acl_file_errors_name_the_line() {
    for (bad, line) in [
        ("topic read a\nuser\n", 2),
        ("topic\n", 1),
        ("topic maybe a/b\n", 1),
        ("# c\n\ntopic read a/#/b\n", 3),
        ("allow a\n", 1),
    ] {
        match AclFile::parse(bad) {
            Err(AclFileError::Line { line: got, .. }) => assert_eq!(got, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    // Mosquitto: one word after `topic` is the topic, readwrite.
    let one = AclFile::parse("topic read\n").unwrap().rules_for(None, "c");
    assert!(one.allows("read", ACL_WRITE));
}

#[test]
fn decision_cache_is_bounded_and_consistent() {
    let mut cache = AclCache::default();
    let mut calls = 0;
    for _ in 0..3 {
        assert!(cache.check("t", ACL_READ, || {
            calls += 1;
            true
        }));
    }
    assert_eq!(calls, 1);
    assert!(!cache.check("t", ACL_WRITE, || false));
    assert!(cache.check("t", ACL_READ, || unreachable!()));
    for i in 0..ACL_CACHE_ENTRIES_MAX * 2 {
        cache.check(&format!("topic/{i}"), ACL_READ, || i % 2 == 0);
    }
    assert!(cache.check("topic/2", ACL_READ, || true));
}

#[test]
fn policy_defaults() {
    let mut policy = AuthPolicy::default();
    assert!(policy.anonymous_allowed());
    let wide: std::net::SocketAddr = "0.0.0.0:1883".parse().unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:1883".parse().unwrap();
    assert!(policy.open_listener_warning(&wide).is_some());
    assert!(policy.open_listener_warning(&local).is_none());
    policy.password_file = Some("p".into());
    assert!(!policy.anonymous_allowed());
    assert!(policy.open_listener_warning(&wide).is_none());
    policy.allow_anonymous = Some(true);
    assert!(policy.open_listener_warning(&wide).is_some());
}

#[test]
fn login_budget_and_verified_cache() {
    let path = std::env::temp_dir().join(format!("shardmq-login-{}", std::process::id()));
    let hash = PasswordHash::pbkdf2(b"pw", b"salt", 3).encode();
    std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
    let control = AccessControl::load(AuthPolicy {
        password_file: Some(path.clone()),
        ..AuthPolicy::default()
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut shard = ShardLogin::new();
    let now = std::time::Instant::now();
    let login = |shard: &mut ShardLogin, password: &[u8]| {
        control.login(shard, Some("alice"), Some(password), now)
    };
    assert!(login(&mut shard, b"pw").is_ok());
    // Wrong passwords spend the budget of this window, then the shard answers Busy.
    for _ in 1..PASSWORD_CHECKS_PER_WINDOW {
        assert_eq!(login(&mut shard, b"no"), Err(LoginRefusal::BadPassword));
    }
    assert_eq!(login(&mut shard, b"no"), Err(LoginRefusal::Busy));
    assert_eq!(
        LoginRefusal::Busy.reason_code(),
        crate::codec::ReasonCode::ServerBusy
    );
    // A verified login comes from the cache and needs no budget.
    assert!(login(&mut shard, b"pw").is_ok());
    // The next window has a fresh budget.
    let later = now + PASSWORD_CHECK_WINDOW;
    assert_eq!(
        control.login(&mut shard, Some("alice"), Some(b"no"), later),
        Err(LoginRefusal::BadPassword)
    );
    assert_eq!(
        control.login(&mut shard, None, None, later),
        Err(LoginRefusal::AnonymousRefused)
    );
}

#[test]
fn restored_sessions_get_nothing_until_their_user_is_known() {
    let path = std::env::temp_dir().join(format!("shardmq-acl-restored-{}", std::process::id()));
    std::fs::write(&path, "topic readwrite #\n").unwrap();
    let control = std::sync::Arc::new(
        AccessControl::load(AuthPolicy {
            acl_file: Some(path.clone()),
            ..AuthPolicy::default()
        })
        .unwrap(),
    );
    std::fs::remove_file(&path).unwrap();
    let mut known = control.session_access(&Login::default(), "c").unwrap();
    assert!(known.allows("a/b", ACL_READ));
    let mut restored = control.unknown_identity_access("c").unwrap();
    assert!(!restored.allows("a/b", ACL_READ));
    assert!(!restored.may_subscribe("a/#"));
    let open = std::sync::Arc::new(AccessControl::load(AuthPolicy::default()).unwrap());
    assert!(
        open.unknown_identity_access("c").is_none(),
        "nothing restricts: no state"
    );
}
