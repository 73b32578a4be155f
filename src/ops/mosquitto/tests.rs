//! Parsing and mapping Mosquitto configuration files.

use super::map::to_config;
use super::parse::parse_str;
use super::{looks_like_mosquitto, Severity};
use std::path::Path;

fn map(text: &str) -> Result<super::Loaded, Vec<super::Diagnostic>> {
    let parsed = parse_str(text, Path::new("test.conf"))?;
    to_config(&parsed)
}

fn errors(text: &str) -> Vec<String> {
    match map(text) {
        Ok(loaded) => panic!("expected errors, got {:?}", loaded.config),
        Err(all) => all
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect(),
    }
}

#[test]
fn tells_mosquitto_from_toml() {
    assert!(looks_like_mosquitto("# c\n\nlistener 1883\n"));
    assert!(looks_like_mosquitto("allow_anonymous true"));
    assert!(!looks_like_mosquitto("shards = 2\n"));
    assert!(!looks_like_mosquitto("# c\n[ops]\nsys_interval_secs = 1\n"));
    assert!(!looks_like_mosquitto(""));
}

#[test]
fn maps_listeners_limits_and_logging() {
    let loaded = map("# a Mosquitto file\n\
         per_listener_settings false\n\
         listener 1884 127.0.0.1\n\
         max_connections 50\n\
         listener 1885 ::1\n\
         socket_domain ipv6\n\
         max_connections 25\n\
         allow_anonymous true\n\
         max_inflight_messages 10\n\
         max_queued_messages 0\n\
         max_packet_size 2048\n\
         message_size_limit 100\n\
         max_keepalive 120\n\
         retain_available false\n\
         max_qos 1\n\
         sys_interval 5\n\
         persistence false\n\
         log_dest stdout\n\
         log_type error\n\
         log_type debug\n\
         connection_messages false\n\
         pid_file /run/x.pid\n\
         user mosquitto\n")
    .unwrap();
    let c = &loaded.config;
    let listeners = c.effective_listeners();
    let addresses: Vec<_> = listeners.iter().map(|l| l.address.to_string()).collect();
    assert_eq!(addresses, ["127.0.0.1:1884", "[::1]:1885"]);
    assert_eq!(listeners[0].max_connections, Some(50));
    assert_eq!(listeners[1].max_connections, Some(25));
    assert_eq!(c.max_connections, 75);
    assert_eq!(c.max_inflight, 10);
    assert_eq!(c.max_queued_messages, 10_000_000);
    assert_eq!(c.max_packet_size, 1124);
    assert_eq!(c.max_keep_alive_secs, 120);
    assert!(!c.retain_available);
    assert_eq!(c.max_qos, 1);
    assert_eq!(c.ops.sys_interval_secs, 5);
    assert_eq!(
        c.ops.log_destination,
        crate::ops::config::LogDestination::Stdout
    );
    assert_eq!(c.ops.log_level.as_deref(), Some("debug"));
    assert!(!c.ops.connection_messages);
    assert_eq!(c.ops.pid_file.as_deref(), Some(Path::new("/run/x.pid")));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "test.conf:23: warning: user: ignored (no effect here)"
    );
}

#[test]
fn default_listener_settings_create_it_only_when_not_default() {
    // As Mosquitto 2: max_connections -1, protocol mqtt and max_qos 2 leave it out.
    let loaded = map("max_connections -1\nprotocol mqtt\nmax_qos 2\n").unwrap();
    assert_eq!(loaded.config.listen[0].to_string(), "127.0.0.1:1883");
    let loaded = map("max_connections 5\nallow_anonymous true\n").unwrap();
    let listeners = loaded.config.effective_listeners();
    assert_eq!(listeners[0].address.to_string(), "0.0.0.0:1883");
    assert_eq!(loaded.config.max_connections, 5);
}

#[test]
fn max_queued_bytes_maps_per_session() {
    let loaded = map("max_queued_bytes 100000\n").unwrap();
    assert_eq!(loaded.config.max_queued_bytes, 100_000);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        map("max_queued_bytes 0\n").unwrap().config.max_queued_bytes,
        4_294_967_295
    );
    assert_eq!(
        map("max_queued_bytes 10\n")
            .unwrap()
            .config
            .max_queued_bytes,
        1024
    );
    assert_eq!(errors("max_queued_bytes -1\n").len(), 1);
}

#[test]
fn no_listener_keeps_loopback_default_and_allows_anonymous() {
    let loaded = map("max_queued_messages 7\n").unwrap();
    assert_eq!(loaded.config.listen[0].to_string(), "127.0.0.1:1883");
    assert_eq!(loaded.config.max_queued_messages, 7);
    let loaded = map("listener 1883\nallow_anonymous true\n").unwrap();
    let listeners = loaded.config.effective_listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].address.to_string(), "0.0.0.0:1883");
}

#[test]
fn security_and_durability_directives_are_errors_with_file_and_line() {
    // A TLS listener needs its key too.
    let errs = errors("listener 8883\ncertfile /x.pem\nallow_anonymous true\n");
    assert_eq!(
        errs,
        vec!["test.conf:1: error: listener 0.0.0.0:8883 (mqtt+tls): cert_file and key_file are needed"]
    );
    let errs = errors("listener 1883\ncafile /ca.pem\nallow_anonymous true\n");
    assert_eq!(
        errs,
        vec!["test.conf:2: error: cafile: TLS needs certfile and keyfile on this listener"]
    );
    let loaded = map("allow_anonymous true\nacl_file /etc/acl\npersistence true\n").unwrap();
    assert!(loaded.config.acl_file.is_some());
    assert!(matches!(
        loaded.config.persistence,
        crate::store::Durability::Periodic
    ));
    let loaded = map(
        "listener 9001\nprotocol websockets\nlistener 8883 127.0.0.1\ncertfile /c.pem\n\
         keyfile /k.pem\ncafile /ca.pem\nrequire_certificate true\n\
         use_identity_as_username true\nallow_anonymous true\n",
    )
    .unwrap();
    let listeners = loaded.config.effective_listeners();
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    assert_eq!(listeners[0].transport, crate::transport::TransportKind::Ws);
    assert_eq!(listeners[0].address.to_string(), "0.0.0.0:9001");
    assert_eq!(
        listeners[1].transport,
        crate::transport::TransportKind::MqttTls
    );
    assert!(listeners[1].require_certificate && listeners[1].use_identity_as_username);
    let errs = errors("connection bridge1\naddress 10.0.0.1\n");
    assert_eq!(errs.len(), 2);
}

#[test]
fn bad_values_and_unknown_directives_are_all_reported() {
    let errs = match parse_str(
        "max_qos 3\nno_such_thing 1\nallow_anonymous yes\nlistener\n",
        Path::new("m.conf"),
    ) {
        Ok(_) => panic!("accepted"),
        Err(all) => all.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert_eq!(errs[1], "m.conf:2: error: no_such_thing: unknown directive");
    let errs = errors("max_inflight_messages 70000\n");
    assert!(errs[0].contains("max_inflight_messages must be in 0..=65535"));
}

/// `per_listener_settings true` with several listeners: each gets its own policy.
#[test]
fn per_listener_security_maps_to_listener_policies() {
    let loaded = map("per_listener_settings true\n\
         listener 1883 127.0.0.1\nallow_anonymous true\n\
         listener 1884 127.0.0.1\npassword_file /etc/p\nacl_file /etc/a\n")
    .unwrap();
    let listeners = loaded.config.effective_listeners();
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    let open = listeners[0].auth.as_ref().unwrap();
    assert_eq!(open.allow_anonymous, Some(true));
    assert_eq!(open.password_file, None);
    let guarded = listeners[1].auth.as_ref().unwrap();
    assert_eq!(guarded.allow_anonymous, Some(false));
    assert_eq!(guarded.password_file.as_deref(), Some(Path::new("/etc/p")));
    assert_eq!(guarded.acl_file.as_deref(), Some(Path::new("/etc/a")));
}

/// Access control (issue 13): password and ACL files map as they are; a listener without
/// `allow_anonymous true` refuses anonymous clients, as Mosquitto 2.
#[test]
fn access_control_directives_map() {
    let loaded = map("listener 1883\nacl_file /etc/acl\npassword_file /etc/passwd\n").unwrap();
    assert_eq!(
        loaded.config.acl_file.as_deref(),
        Some(Path::new("/etc/acl"))
    );
    assert_eq!(
        loaded.config.password_file.as_deref(),
        Some(Path::new("/etc/passwd"))
    );
    assert_eq!(loaded.config.allow_anonymous, Some(false));
    let loaded = map("listener 1883\nallow_anonymous true\n").unwrap();
    assert_eq!(loaded.config.allow_anonymous, Some(true));
    let loaded = map("max_queued_messages 7\n").unwrap();
    assert_eq!(loaded.config.allow_anonymous, Some(true));
}

#[test]
fn include_dir_reads_conf_files_in_name_order() {
    let dir = std::env::temp_dir().join(format!("shardmq-inc-{}", std::process::id()));
    let conf_d = dir.join("conf.d");
    std::fs::create_dir_all(&conf_d).unwrap();
    std::fs::write(conf_d.join("b.conf"), "max_queued_messages 20\n").unwrap();
    std::fs::write(conf_d.join("a.conf"), "max_queued_messages 10\n").unwrap();
    std::fs::write(conf_d.join("c.txt"), "nonsense\n").unwrap();
    let main = dir.join("main.conf");
    std::fs::write(&main, format!("include_dir {}\n", conf_d.display())).unwrap();
    let loaded = super::load(&main).unwrap();
    assert_eq!(loaded.config.max_queued_messages, 20);
    std::fs::write(conf_d.join("d.conf"), "bogus 1\n").unwrap();
    let errs = super::load(&main).unwrap_err();
    assert!(errs[0].to_string().contains("d.conf:1: error: bogus"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_and_websocket_listeners_map_onto_listener_sections() {
    use crate::transport::TransportKind;
    let loaded = map("per_listener_settings false\n\
         allow_anonymous true\n\
         listener 8883 127.0.0.1\n\
         cafile /etc/ca.pem\n\
         certfile /etc/server.pem\n\
         keyfile /etc/server.key\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         tls_version tlsv1.2\n\
         listener 9001 127.0.0.1\n\
         protocol websockets\n\
         listener 9443 127.0.0.1\n\
         protocol websockets\n\
         certfile /etc/server.pem\n\
         keyfile /etc/server.key\n\
         dhparamfile /etc/dh.pem\n")
    .unwrap();
    let listeners = loaded.config.effective_listeners();
    let kinds: Vec<_> = listeners.iter().map(|l| l.transport).collect();
    assert_eq!(
        kinds,
        [
            TransportKind::MqttTls,
            TransportKind::Ws,
            TransportKind::Wss
        ]
    );
    let tls = &listeners[0];
    assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(tls.cert_file.as_deref(), Some(Path::new("/etc/server.pem")));
    assert_eq!(tls.key_file.as_deref(), Some(Path::new("/etc/server.key")));
    assert!(tls.require_certificate && tls.use_identity_as_username);
    let warnings: Vec<_> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].starts_with("test.conf:11: warning: protocol websockets"));
    assert!(warnings[2].starts_with("test.conf:16: warning: dhparamfile"));
    let errs = errors("allow_anonymous true\nlistener 8883\ncertfile /a\nkeyfile /b\ncapath /c\ntls_version tlsv1.3\nciphers X\n");
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].starts_with("test.conf:5: error: capath: not supported yet"));
    assert!(errs[1].starts_with("test.conf:6: error: tls_version tlsv1.3: not supported yet"));
    assert!(errs[2].starts_with("test.conf:7: error: ciphers: not supported yet"));
}

#[test]
fn persistence_true_is_periodic_with_the_autosave_interval() {
    let loaded = map("allow_anonymous true\npersistence true\npersistence_location /var/lib/mq/\nautosave_interval 60\n")
        .expect("maps");
    let config = loaded.config;
    assert_eq!(config.persistence, crate::store::Durability::Periodic);
    assert_eq!(
        config.persistence_dir,
        std::path::PathBuf::from("/var/lib/mq/")
    );
    assert_eq!(config.persistence_interval_ms, 60_000);
    let config = map("allow_anonymous true\npersistence true\n")
        .unwrap()
        .config;
    assert_eq!(config.persistence_interval_ms, 1_800_000);
    let config = map("allow_anonymous true\npersistence false\n")
        .unwrap()
        .config;
    assert_eq!(config.persistence, crate::store::Durability::Off);
}
