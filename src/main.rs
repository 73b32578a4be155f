//! `shardmq`: the broker binary. Command line -> `Config`, logging, signals -> graceful shutdown.

use clap::Parser;
use shardmq::broker::{Broker, Config};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// A thread-per-core MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Parser, Debug)]
#[command(name = "shardmq", version, about)]
struct Cli {
    /// Address to listen on, repeatable [default: 127.0.0.1:1883, loopback only; use
    /// 0.0.0.0:1883 to serve the network].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Shorthand for --listen 127.0.0.1:PORT.
    #[arg(short, long, value_name = "PORT")]
    port: Option<u16>,
    /// TOML file with any of the settings below (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// [default: 32].
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
    /// Per-connection outgoing buffer limit, bytes; QoS 0 is dropped over it, the client is
    /// disconnected at twice it [default: 1048576].
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
    /// File of `user:password` lines: plain CONNECTs must log in as one of them.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// File of `user:password` lines offered with SCRAM-SHA-256 enhanced authentication (MQTT 5).
    #[arg(long, value_name = "FILE")]
    scram_users: Option<PathBuf>,
    /// Keep-alive cap for MQTT 5 clients (Server Keep Alive); 3.x clients unaffected.
    #[arg(long, value_name = "SECS")]
    server_keep_alive: Option<u16>,
    /// Response Information prefix for MQTT 5 clients requesting it ({PREFIX}{client id}).
    #[arg(long, value_name = "PREFIX")]
    response_information: Option<String>,
    /// Answer every CONNECT with 0x9C Use another server and this Server Reference.
    #[arg(long, value_name = "HOST")]
    server_reference: Option<String>,
    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: log::LevelFilter,
}

impl Cli {
    fn into_config(self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Config::from_toml_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        let mut listen = self.listen;
        if let Some(port) = self.port {
            listen.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        if !listen.is_empty() {
            config.listen = listen;
        }
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
        }
        config.pin_cores |= self.pin_cores;
        config.queue_qos0 |= self.queue_qos0;
        config.validate()?;
        Ok(config)
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
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .format_target(false)
        .init();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("shardmq: {e}");
            return ExitCode::from(1);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardmq: {e}");
            ExitCode::from(1)
        }
    }
}

/// Starts the broker and waits for SIGINT or SIGTERM.
fn run(config: Config) -> std::io::Result<()> {
    use mio::{Events, Interest, Poll, Token};
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook_mio::v1_0::Signals;

    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    poll.registry()
        .register(&mut signals, Token(0), Interest::READABLE)?;
    let handle = Broker::start(config)?;
    let mut events = Events::with_capacity(4);
    'wait: loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(signal) = signals.pending().next() {
            log::info!("signal {signal}: shutting down");
            break 'wait;
        }
    }
    handle.shutdown();
    let stats = handle.stats();
    handle.join();
    log::debug!("final counters: {stats:?}");
    Ok(())
}
