//! Command-line options (clap). Scenario names follow the open MQTT benchmark: `conn`, `fanin`,
//! `fanout`, `p2p`, `sharedsub`, plus `manytopics` (issue 17); `relay` runs the raw relay.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Load generator for MQTT brokers on this machine (loopback only).
#[derive(Parser, Debug, Clone)]
#[command(name = "shardmq-loadtest", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// N connections opened at R per second and held; connect-to-CONNACK percentiles.
    Conn(ConnArgs),
    /// P publishers on distinct topics to S subscribers on one wildcard filter.
    Fanin(FaninArgs),
    /// P publishers to S subscribers, all on one topic.
    Fanout(FanoutArgs),
    /// N publisher/subscriber pairs, each pair on its own topic.
    P2p(P2pArgs),
    /// P publishers to S subscribers sharing one `$share` subscription.
    Sharedsub(SharedsubArgs),
    /// P publishers each on its own topic, one exact subscriber per topic and W wildcard
    /// subscribers: every message reaches its exact subscriber and one wildcard subscriber.
    Manytopics(ManytopicsArgs),
    /// Bounded soak: well-behaved QoS 0 and QoS 1 pairs next to hostile clients; reports the
    /// broker's RSS and the well-behaved delivery every interval.
    Soak(SoakArgs),
    /// Runs the raw relay: a byte-copying forwarder that fakes CONNACK/SUBACK (the ceiling).
    Relay(RelayArgs),
    /// Prints a markdown table of the target summaries in JSON reports (used by compare.sh).
    Table(TableArgs),
}

/// Which MQTT stack the connections use.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `shardmq::client::ClientSession`, the project's client engine.
    Client,
    /// Fixed-layout frames, no validation: the load generator's own overhead floor.
    Raw,
}

/// MQTT protocol versions.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttArg {
    #[value(name = "3.1.1")]
    V311,
    #[value(name = "5")]
    V5,
}

/// Options every load scenario shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Broker host (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// NAME=HOST:PORT, repeated: run against each target in alternation (A B A B ...).
    #[arg(long = "target", value_name = "NAME=HOST:PORT")]
    pub targets: Vec<String>,
    /// NAME=PID, repeated: the broker process behind target NAME ("broker" without --target).
    /// Its CPU time (utime + stime from /proc/PID/stat) over the measurement window is
    /// reported, with deliveries per broker CPU-second.
    #[arg(long = "pid", value_name = "NAME=PID")]
    pub pids: Vec<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin worker k to core k (helps on a dedicated machine, hurts when the broker shares it).
    #[arg(long)]
    pub pin_cores: bool,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 24: publisher id, sequence, timestamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Messages per second per publisher (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// QoS 1/2 publishes in flight per publisher.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// MQTT version.
    #[arg(long, value_enum, default_value = "3.1.1")]
    pub mqtt: MqttArg,
    /// Write the results as JSON to FILE.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Runs per target (the summary reports medians).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Search for the highest offered rate the broker delivers in full.
    #[arg(long)]
    pub find_max: bool,
    /// First total offered rate of the search (messages per second over all publishers).
    #[arg(long, default_value_t = 1000.0)]
    pub start_rate: f64,
    /// Factor between search steps.
    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,
    /// Latency bound of the search: a step passes only with p99 under it.
    #[arg(long, default_value_t = 50.0)]
    pub p99_bound_ms: f64,
    /// Most steps of the search.
    #[arg(long, default_value_t = 16)]
    pub max_steps: usize,
    /// Reruns of a failing search step before it counts as failed.
    #[arg(long, default_value_t = 1)]
    pub step_retries: usize,
    /// MQTT stack of the connections.
    #[arg(long, value_enum, default_value = "client")]
    pub engine: EngineKind,
    /// Keep-alive in seconds.
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,
    /// Seconds connection setup may take.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout: f64,
    /// New connections per second during setup (0 = unpaced).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// MQTT handshakes (TCP connect to CONNACK) in progress at most, over all threads
    /// (0 = only the per-thread limit of 256 TCP handshakes).
    #[arg(long, default_value_t = 0)]
    pub handshakes: usize,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Connect over TLS 1.2/1.3, trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server certificate is verified against with --tls-ca.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub tls_server_name: String,
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
}

#[derive(Args, Debug, Clone)]
pub struct FaninArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, default_value_t = 100)]
    pub publishers: usize,
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Publisher topic; %i is the publisher index.
    #[arg(long, default_value = "bench/fanin/%i")]
    pub topic: String,
    /// Subscriber filter.
    #[arg(long, default_value = "bench/fanin/#")]
    pub filter: String,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// The one topic of publishers and subscribers.
    #[arg(long, default_value = "bench/fanout")]
    pub topic: String,
}

#[derive(Args, Debug, Clone)]
pub struct P2pArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publisher/subscriber pairs.
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Topic of pair %i.
    #[arg(long, default_value = "bench/p2p/%i")]
    pub topic: String,
}

#[derive(Args, Debug, Clone)]
pub struct SharedsubArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Publisher topic; %i is the publisher index.
    #[arg(long, default_value = "bench/shared/%i")]
    pub topic: String,
    /// Shared subscription filter of every subscriber.
    #[arg(long, default_value = "$share/bench/bench/shared/#")]
    pub filter: String,
}

#[derive(Args, Debug, Clone)]
pub struct ManytopicsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Publishers, each on its own topic `{prefix}/{i % W}/{i}` with one subscriber on exactly
    /// that topic.
    #[arg(long, default_value_t = 10_000)]
    pub publishers: usize,
    /// Wildcard subscribers W: subscriber j takes `{prefix}/{j}/+` (1..=publishers).
    #[arg(long, default_value_t = 100)]
    pub wildcard_subscribers: usize,
    /// First topic levels of every topic.
    #[arg(long, default_value = "bench/many")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Broker host (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Total seconds (required: every load of the soak stops by itself).
    #[arg(long)]
    pub duration: f64,
    /// Seconds between reports (each interval is one measured run of the well-behaved pairs).
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// NAME=PID of the broker: its RSS (VmRSS) is reported every interval.
    #[arg(long = "pid", value_name = "NAME=PID")]
    pub pid: Option<String>,
    /// Well-behaved publisher/subscriber pairs per QoS (0 and 1).
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// Messages per second per well-behaved publisher.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Messages per second of the hostile publisher (QoS 1, to the busy topic, the offline
    /// sessions and the `$share` group).
    #[arg(long, default_value_t = 500.0)]
    pub hostile_rate: f64,
    /// Payload bytes of the hostile publisher.
    #[arg(long, default_value_t = 4096)]
    pub hostile_payload: usize,
    /// Persistent offline sessions whose queues fill.
    #[arg(long, default_value_t = 20)]
    pub offline_sessions: usize,
    /// Worker threads of the well-behaved runs.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// No progress lines of the well-behaved runs.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Loopback address to listen on (port 0 picks a free port and prints it).
    #[arg(long, default_value = "127.0.0.1:1884")]
    pub listen: String,
    /// Relay threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// JSON reports written with --json.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Target the ratios are relative to (default: the first target of each report).
    #[arg(long)]
    pub baseline: Option<String>,
}

/// Resolves `host:port` and insists that every address is a loopback address: this tool is for
/// benchmarking brokers on this machine, never for loading someone else's server.
pub fn resolve_loopback(host_port: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(format!("{host_port} resolves to no address"));
    };
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing {host_port} ({bad}): shardmq-loadtest only targets loopback addresses \
             (127.0.0.0/8, ::1); it is a tool for local benchmarking"
        ));
    }
    Ok(first)
}

/// Joins a host and a port, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `NAME=PID`.
pub fn parse_pid(spec: &str) -> Result<(String, u32), String> {
    let Some((name, pid)) = spec.split_once('=') else {
        return Err(format!("--pid {spec}: expected NAME=PID"));
    };
    let pid = pid
        .parse::<u32>()
        .map_err(|_| format!("--pid {spec}: {pid} is not a process id"))?;
    Ok((name.to_owned(), pid))
}

/// Parses `NAME=HOST:PORT`.
pub fn parse_target(spec: &str) -> Result<(String, SocketAddr), String> {
    let Some((name, addr)) = spec.split_once('=') else {
        return Err(format!("--target {spec}: expected NAME=HOST:PORT"));
    };
    if name.is_empty() {
        return Err(format!("--target {spec}: the name is empty"));
    }
    Ok((name.to_owned(), resolve_loopback(addr)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(resolve_loopback("127.0.0.1:1883").is_ok());
        assert!(resolve_loopback("[::1]:1883").is_ok());
        assert!(resolve_loopback("localhost:1883").is_ok());
        let err = resolve_loopback("10.1.2.3:1883").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        assert!(resolve_loopback("192.168.0.1:1883").is_err());
    }

    #[test]
    fn targets_parse() {
        let (name, addr) = parse_target("mosquitto=127.0.0.1:1884").unwrap();
        assert_eq!((name.as_str(), addr.port()), ("mosquitto", 1884));
        assert!(parse_target("127.0.0.1:1884").is_err());
        assert_eq!(parse_pid("shardmq=42").unwrap(), ("shardmq".into(), 42));
        assert!(parse_pid("shardmq=x").is_err());
        assert!(parse_pid("42").is_err());
        assert!(parse_target("x=8.8.8.8:53").is_err());
        assert_eq!(host_port("::1", 5), "[::1]:5");
    }

    #[test]
    fn cli_parses_scenarios() {
        let cli = Cli::try_parse_from([
            "shardmq-loadtest",
            "p2p",
            "--pairs",
            "4",
            "--qos",
            "1",
            "--mqtt",
            "5",
            "--target",
            "a=127.0.0.1:1",
            "--target",
            "b=127.0.0.1:2",
        ])
        .unwrap();
        match cli.command {
            Command::P2p(args) => {
                assert_eq!(args.pairs, 4);
                assert_eq!(args.common.qos, 1);
                assert_eq!(args.common.mqtt, MqttArg::V5);
                assert_eq!(args.common.targets.len(), 2);
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["shardmq-loadtest", "p2p", "--qos", "3"]).is_err());
    }
}
