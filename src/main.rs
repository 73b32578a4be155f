//! `shardmq`: the broker binary. Command line (and a configuration file: our TOML or a
//! Mosquitto file) -> `Config`, logging, then `shardmq::ops::daemon` runs it: signals,
//! reload, `$SYS`, metrics.

use clap::Parser;
use shardmq::broker::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Parser, Debug, Clone)]
#[command(name = "shardmq", version, about)]
struct Cli {
    /// Address to listen on, repeatable [default: 127.0.0.1:1883, loopback only; use
    /// 0.0.0.0:1883 to serve the network].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Shorthand for --listen 127.0.0.1:PORT.
    #[arg(short, long, value_name = "PORT")]
    port: Option<u16>,
    /// Configuration file: our TOML (any of the settings below) or a Mosquitto configuration
    /// file, told apart by content; flags override it. Re-read on SIGHUP.
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration (file and flags), print its errors and warnings, and exit: 0 if
    /// it is valid, 1 if not.
    #[arg(short = 't', long)]
    test_config: bool,
    /// Number of shard threads [default: the number of cores].
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Pin shard i to core i (see README: helps on dedicated machines, hurts when shared).
    #[arg(long)]
    pin_cores: bool,
    /// Maximum simultaneous connections [default: 100000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Maximum packet size accepted, bytes; 0 = none but the protocol's [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_packet_size: Option<u32>,
    /// Outgoing QoS 1/2 in-flight window per client (MQTT 5: min with its Receive Maximum)
    /// [default: 4096].
    #[arg(long, value_name = "N")]
    max_inflight: Option<u16>,
    /// Incoming QoS 2 messages awaiting PUBREL per client; advertised as Receive Maximum
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    receive_maximum: Option<u16>,
    /// Messages queued per session (offline or window full) [default: 1000].
    #[arg(long, value_name = "N")]
    max_queued_messages: Option<usize>,
    /// Also queue QoS 0 messages for offline sessions [default: off].
    #[arg(long)]
    queue_qos0: bool,
    /// Maximum subscriptions per client [default: 1000].
    #[arg(long, value_name = "N")]
    max_subscriptions_per_client: Option<usize>,
    /// Maximum levels of a topic name or filter [default: 128].
    #[arg(long, value_name = "N")]
    max_topic_levels: Option<usize>,
    /// Per-connection outgoing buffer limit, bytes; QoS 0 is dropped over it, QoS 1/2 wait
    /// queued, the client is not read while it is full [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_outgoing_bytes: Option<usize>,
    /// Seconds allowed between TCP accept and CONNECT [default: 10].
    #[arg(long, value_name = "SECS")]
    handshake_timeout: Option<u64>,
    /// Largest keep-alive accepted, seconds (MQTT 5 clients get Server Keep Alive) [default: 65535].
    #[arg(long, value_name = "SECS")]
    max_keep_alive: Option<u16>,
    /// Maximum retained messages [default: 100000].
    #[arg(long, value_name = "N")]
    max_retained_messages: Option<usize>,
    /// Maximum sessions, online and offline [default: 1000000].
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Capacity of each shard-to-shard channel, messages [default: 4096].
    #[arg(long, value_name = "N")]
    mesh_channel_capacity: Option<usize>,
    /// Milliseconds a congested QoS 1/2 subscriber may keep its publishers paused before it is
    /// stalled (publishers resume, its excess is dropped) [default: 2000].
    #[arg(long, value_name = "MS")]
    congestion_timeout_ms: Option<u64>,
    /// QoS 0 backpressure: publishers feeding a subscriber whose outgoing buffer is over half
    /// of --max-outgoing-bytes are paused too (at most --congestion-timeout-ms per episode);
    /// false keeps pure dropping at the limit [default: true].
    #[arg(long, value_name = "BOOL")]
    qos0_backpressure: Option<bool>,
    /// Bound on buffered message data (outgoing buffers and session queues) over the whole
    /// broker, bytes, split over the shards [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    max_buffered_bytes: Option<usize>,
    /// Milliseconds allowed for graceful shutdown [default: 2000].
    #[arg(long, value_name = "MS")]
    shutdown_timeout: Option<u64>,
    /// Shared subscription strategy: round_robin, random, sticky or hash (by publisher client
    /// id) [default: round_robin].
    #[arg(long, value_name = "STRATEGY")]
    shared_subscription_strategy: Option<shardmq::broker::config::SharedStrategy>,
    /// Topic Alias Maximum advertised to MQTT 5 clients, 0 = none [default: 10].
    #[arg(long, value_name = "N")]
    topic_alias_maximum: Option<u16>,
    /// Highest QoS accepted from publishers, 0..=2 (MQTT 5 Maximum QoS) [default: 2].
    #[arg(long, value_name = "QOS")]
    max_qos: Option<u8>,
    /// Whether retained messages are supported (MQTT 5 Retain Available) [default: true].
    #[arg(long, value_name = "BOOL")]
    retain_available: Option<bool>,
    /// Issue 11: milliseconds a client has to complete a started packet, per 64 KiB of its
    /// length, 0 = no limit [default: 5000].
    #[arg(long, value_name = "MS")]
    partial_packet_timeout_ms: Option<u64>,
    /// Issue 11: milliseconds a subscriber's full outgoing buffer may go unwritten before it is
    /// disconnected as a slow consumer [default: 60000].
    #[arg(long, value_name = "MS")]
    slow_consumer_timeout_ms: Option<u64>,
    /// Issue 11: bytes queued per session at most (as Mosquitto's max_queued_bytes)
    /// [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    max_queued_bytes: Option<usize>,
    /// Bytes of QoS 1/2 messages in flight (written, not yet acknowledged) per subscriber at
    /// most, as Mosquitto's max_inflight_bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    max_inflight_bytes: Option<usize>,
    /// Issue 11: retained messages one SUBSCRIBE sends at most [default: 100000].
    #[arg(long, value_name = "N")]
    max_retained_per_subscribe: Option<usize>,
    /// Issue 11: bytes of retained messages one SUBSCRIBE sends at most [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    max_retained_bytes_per_subscribe: Option<usize>,
    /// Mosquitto password file (`user:$7$...`, from mosquitto_passwd or shardmq-passwd): plain
    /// CONNECTs must log in as one of its users. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// SCRAM-SHA-256 stored keys (from `shardmq-passwd --scram`) for MQTT 5 enhanced
    /// authentication. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    scram_users: Option<PathBuf>,
    /// Mosquitto ACL file, checked on publish, subscribe, delivery and wills. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Admit clients without user name and password [default: true unless a password file or
    /// JWT is configured].
    #[arg(long, value_name = "BOOL")]
    allow_anonymous: Option<bool>,
    /// JWT logins (token as password): the algorithm, RS256, ES256 or HS256 (needs
    /// --jwt-key-file; the config file's [jwt] table has the other settings).
    #[arg(long, value_name = "ALG", requires = "jwt_key_file")]
    jwt_algorithm: Option<shardmq::auth::JwtAlgorithm>,
    /// JWT verification key: PEM public key (RS256, ES256) or shared secret (HS256).
    #[arg(long, value_name = "FILE", requires = "jwt_algorithm")]
    jwt_key_file: Option<PathBuf>,
    /// Keep-alive cap for MQTT 5 clients (Server Keep Alive); 3.x clients unaffected.
    #[arg(long, value_name = "SECS")]
    server_keep_alive: Option<u16>,
    /// Response Information prefix for MQTT 5 clients requesting it ({PREFIX}{client id}).
    #[arg(long, value_name = "PREFIX")]
    response_information: Option<String>,
    /// Answer every CONNECT with 0x9C Use another server and this Server Reference.
    #[arg(long, value_name = "HOST")]
    server_reference: Option<String>,
    /// MQTT over TLS listener, repeatable (needs --certfile and --keyfile). More settings per
    /// listener: `[[listener]]` sections in the --config file.
    #[arg(long, value_name = "ADDR:PORT")]
    tls_listen: Vec<SocketAddr>,
    /// MQTT over WebSocket listener, repeatable (upgrade path --ws-path).
    #[arg(long, value_name = "ADDR:PORT")]
    ws_listen: Vec<SocketAddr>,
    /// MQTT over secure WebSocket listener, repeatable (needs --certfile and --keyfile).
    #[arg(long, value_name = "ADDR:PORT")]
    wss_listen: Vec<SocketAddr>,
    /// PEM server certificate chain for --tls-listen and --wss-listen.
    #[arg(long, value_name = "FILE")]
    certfile: Option<PathBuf>,
    /// PEM private key for --tls-listen and --wss-listen.
    #[arg(long, value_name = "FILE")]
    keyfile: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    #[arg(long, value_name = "FILE")]
    cafile: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --cafile.
    #[arg(long)]
    require_certificate: bool,
    /// The client certificate's CN (or SAN) is the MQTT username and the login.
    #[arg(long)]
    use_identity_as_username: bool,
    /// WebSocket upgrade path for --ws-listen and --wss-listen [default: /mqtt].
    #[arg(long, value_name = "PATH")]
    ws_path: Option<String>,
    /// PROXY protocol v1/v2 header on the listeners given by flags: off, optional or required
    /// [default: off].
    #[arg(long, value_name = "MODE")]
    proxy_protocol: Option<shardmq::transport::ProxyProtocol>,
    /// Disk persistence: sync (fsync before PUBACK/PUBREC, batched per loop turn), periodic
    /// (fsync every --persistence-interval-ms) or off [default: off].
    #[arg(long, value_name = "MODE")]
    persistence: Option<shardmq::store::Durability>,
    /// Directory of the persistence logs [default: shardmq-data].
    #[arg(long, value_name = "DIR")]
    persistence_dir: Option<PathBuf>,
    /// Milliseconds between fsyncs in periodic mode [default: 1000].
    #[arg(long, value_name = "MS")]
    persistence_interval_ms: Option<u64>,
    /// Disk space the persistence logs may use, bytes [default: 4294967296].
    #[arg(long, value_name = "BYTES")]
    persistence_max_bytes: Option<u64>,
    /// Log level: off, error, warn, info, debug or trace; wins over the file's [default: the
    /// file's, else info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<log::LevelFilter>,
    /// Log lines as JSON objects (fields client_id, addr, shard, reason, ...) instead of text.
    #[arg(long)]
    log_json: bool,
    /// Append log lines to FILE instead of standard error; SIGUSR1 reopens it (logrotate).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Serve Prometheus /metrics and /healthz over HTTP on this address [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Seconds between $SYS publications, 0 = off [default: 10].
    #[arg(long, value_name = "SECS")]
    sys_interval: Option<u64>,
    /// Write the process id to FILE while running.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
}

impl Cli {
    /// The listeners given by flags: `--listen`/`-p` replace `listen`; `--tls-listen`,
    /// `--ws-listen` and `--wss-listen` add `[[listener]]` entries with the certificate flags.
    fn add_listeners(&self, config: &mut Config, listen: Vec<SocketAddr>) {
        use shardmq::transport::{ListenerConfig, ProxyProtocol, TransportKind};
        let proxy_protocol = self.proxy_protocol.unwrap_or(ProxyProtocol::Off);
        let mut added = Vec::new();
        if proxy_protocol == ProxyProtocol::Off {
            if !listen.is_empty() {
                config.listen = listen;
            }
        } else {
            added.extend(listen.iter().map(|a| (*a, TransportKind::Mqtt)));
        }
        added.extend(self.tls_listen.iter().map(|a| (*a, TransportKind::MqttTls)));
        added.extend(self.ws_listen.iter().map(|a| (*a, TransportKind::Ws)));
        added.extend(self.wss_listen.iter().map(|a| (*a, TransportKind::Wss)));
        for (address, transport) in added {
            let mut listener = ListenerConfig::new(address, transport);
            listener.proxy_protocol = proxy_protocol;
            if let Some(path) = &self.ws_path {
                listener.ws_path = path.clone();
            }
            if transport.is_tls() {
                listener.cert_file = self.certfile.clone();
                listener.key_file = self.keyfile.clone();
                listener.ca_file = self.cafile.clone();
                listener.require_certificate = self.require_certificate;
                listener.use_identity_as_username = self.use_identity_as_username;
            }
            config.listeners.push(listener);
        }
    }

    /// The configuration file (if any) with the flags over it, and the file's warnings; or
    /// every error found.
    fn to_config(&self) -> Result<(Config, Vec<String>), Vec<String>> {
        let (mut config, warnings) = match &self.config {
            Some(path) => {
                let loaded = shardmq::ops::load::load_file(path)?;
                (loaded.config, loaded.warnings)
            }
            None => (Config::default(), Vec::new()),
        };
        self.clone().apply_flags(&mut config).map_err(|e| vec![e])?;
        Ok((config, warnings))
    }

    fn apply_flags(mut self, config: &mut Config) -> Result<(), String> {
        let mut listen = std::mem::take(&mut self.listen);
        if let Some(port) = self.port {
            listen.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        self.add_listeners(config, listen);
        macro_rules! set {
            ($($field:ident = $value:expr),* $(,)?) => {
                $( if let Some(v) = $value { config.$field = v; } )*
            };
        }
        set! {
            shards = self.shards,
            max_connections = self.max_connections,
            max_packet_size = self.max_packet_size,
            max_inflight = self.max_inflight,
            receive_maximum = self.receive_maximum,
            max_queued_messages = self.max_queued_messages,
            max_subscriptions_per_client = self.max_subscriptions_per_client,
            max_topic_levels = self.max_topic_levels,
            max_outgoing_bytes = self.max_outgoing_bytes,
            handshake_timeout_ms = self.handshake_timeout.map(|s| s.saturating_mul(1000)),
            max_keep_alive_secs = self.max_keep_alive,
            max_retained_messages = self.max_retained_messages,
            max_sessions = self.max_sessions,
            mesh_channel_capacity = self.mesh_channel_capacity,
            shutdown_timeout_ms = self.shutdown_timeout,
            congestion_timeout_ms = self.congestion_timeout_ms,
            qos0_backpressure = self.qos0_backpressure,
            max_buffered_bytes = self.max_buffered_bytes,
            shared_subscription_strategy = self.shared_subscription_strategy,
            topic_alias_maximum = self.topic_alias_maximum,
            max_qos = self.max_qos,
            retain_available = self.retain_available,
            password_file = self.password_file.map(Some),
            scram_users_file = self.scram_users.map(Some),
            server_keep_alive_secs = self.server_keep_alive.map(Some),
            response_information = self.response_information.map(Some),
            server_reference = self.server_reference.map(Some),
            partial_packet_timeout_ms = self.partial_packet_timeout_ms,
            slow_consumer_timeout_ms = self.slow_consumer_timeout_ms,
            max_queued_bytes = self.max_queued_bytes,
            max_inflight_bytes = self.max_inflight_bytes,
            max_retained_per_subscribe = self.max_retained_per_subscribe,
            max_retained_bytes_per_subscribe = self.max_retained_bytes_per_subscribe,
            acl_file = self.acl_file.map(Some),
            allow_anonymous = self.allow_anonymous.map(Some),
            persistence = self.persistence,
            persistence_dir = self.persistence_dir,
            persistence_interval_ms = self.persistence_interval_ms,
            persistence_max_bytes = self.persistence_max_bytes,
        }
        if let (Some(algorithm), Some(key_file)) = (self.jwt_algorithm, self.jwt_key_file) {
            let settings = config.jwt.take();
            config.jwt = Some(match settings {
                Some(settings) => shardmq::auth::JwtSettings {
                    algorithm,
                    key_file,
                    ..settings
                },
                None => shardmq::auth::JwtSettings::new(algorithm, key_file),
            });
        }
        config.pin_cores |= self.pin_cores;
        config.queue_qos0 |= self.queue_qos0;
        let ops = &mut config.ops;
        if self.log_json {
            ops.log_format = shardmq::ops::config::LogFormat::Json;
        }
        if let Some(path) = self.log_file {
            ops.log_destination = shardmq::ops::config::LogDestination::File(path);
        }
        if let Some(addr) = self.metrics_listen {
            ops.metrics_listen = Some(addr);
        }
        if let Some(secs) = self.sys_interval {
            ops.sys_interval_secs = secs;
        }
        if let Some(path) = self.pid_file {
            ops.pid_file = Some(path);
        }
        config.validate()
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // One line: the first line of clap's message.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("shardmq: {}", line.trim_start_matches("error: "));
            return ExitCode::from(1);
        }
    };
    let (config, warnings) = match cli.to_config() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors {
                eprintln!("shardmq: {error}");
            }
            if cli.test_config {
                eprintln!("shardmq: configuration invalid");
            }
            return ExitCode::from(1);
        }
    };
    if cli.test_config {
        for warning in &warnings {
            eprintln!("shardmq: {warning}");
        }
        println!("shardmq: configuration OK");
        return ExitCode::SUCCESS;
    }
    let log = match shardmq::ops::logging::init(&config.ops, cli.log_level) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("shardmq: {e}");
            return ExitCode::from(1);
        }
    };
    for warning in &warnings {
        log::warn!("{warning}");
    }
    let reload_cli = cli.clone();
    let services = shardmq::ops::daemon::Services {
        reload: Box::new(move || reload_cli.to_config()),
        log,
        level_override: cli.log_level,
    };
    match shardmq::ops::daemon::run(config, services) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardmq: {e}");
            ExitCode::from(1)
        }
    }
}
