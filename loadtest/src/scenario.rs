//! Scenarios: which connections a run opens, what each publishes or subscribes to, and how many
//! deliveries each message should produce.

use crate::cli::{Cli, Command, CommonArgs, MqttArg};
use crate::engine::{ConnSpec, Plan, Role};
use crate::payload::PAYLOAD_LEN_MIN;
use crate::session::MqttVersion;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most connections one run may open (a limit, not a target: one process drives 10,000+).
pub const CONNECTIONS_MAX: usize = 100_000;

/// Which scenario, with its counts and topics.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Conn {
        connections: usize,
    },
    Fanin {
        publishers: usize,
        subscribers: usize,
        topic: String,
        filter: String,
    },
    Fanout {
        publishers: usize,
        subscribers: usize,
        topic: String,
    },
    P2p {
        pairs: usize,
        topic: String,
    },
    Sharedsub {
        publishers: usize,
        subscribers: usize,
        topic: String,
        filter: String,
    },
    /// Issue 17: many topics, each message to its exact subscriber and one wildcard subscriber.
    Manytopics {
        publishers: usize,
        wildcard_subscribers: usize,
        prefix: String,
    },
}

/// A scenario with its common options, ready to build plans for any target and rate.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub kind: Kind,
    pub common: CommonArgs,
}

/// Replaces every `%i` in a topic pattern by `index`.
pub fn expand(pattern: &str, index: usize) -> String {
    pattern.replace("%i", &index.to_string())
}

impl Kind {
    /// The scenario's name as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Conn { .. } => "conn",
            Kind::Fanin { .. } => "fanin",
            Kind::Fanout { .. } => "fanout",
            Kind::P2p { .. } => "p2p",
            Kind::Sharedsub { .. } => "sharedsub",
            Kind::Manytopics { .. } => "manytopics",
        }
    }

    /// Publishing connections.
    pub fn publishers(&self) -> usize {
        match self {
            Kind::Conn { .. } => 0,
            Kind::Fanin { publishers, .. }
            | Kind::Fanout { publishers, .. }
            | Kind::Sharedsub { publishers, .. }
            | Kind::Manytopics { publishers, .. } => *publishers,
            Kind::P2p { pairs, .. } => *pairs,
        }
    }

    /// Subscribing connections.
    pub fn subscribers(&self) -> usize {
        match self {
            Kind::Conn { .. } => 0,
            Kind::Fanin { subscribers, .. }
            | Kind::Fanout { subscribers, .. }
            | Kind::Sharedsub { subscribers, .. } => *subscribers,
            Kind::P2p { pairs, .. } => *pairs,
            Kind::Manytopics {
                publishers,
                wildcard_subscribers,
                ..
            } => publishers + wildcard_subscribers,
        }
    }

    /// How many subscribers each message reaches.
    pub fn deliveries_per_message(&self) -> u64 {
        match self {
            Kind::Conn { .. } => 0,
            Kind::Fanin { subscribers, .. } | Kind::Fanout { subscribers, .. } => {
                *subscribers as u64
            }
            Kind::P2p { .. } | Kind::Sharedsub { .. } => 1,
            Kind::Manytopics {
                wildcard_subscribers,
                ..
            } => 1 + u64::from(*wildcard_subscribers > 0),
        }
    }

    /// Every connection: subscribers first, then publishers with ids `0..publishers`.
    fn connections(&self, run_id: u64) -> Vec<ConnSpec> {
        let prefix = format!("lt{}-{run_id}", std::process::id());
        let subscriber = |i: usize, filter: String| ConnSpec {
            client_id: format!("{prefix}-s{i}"),
            role: Role::Subscriber { filter },
        };
        let publisher = |i: usize, topic: String| ConnSpec {
            client_id: format!("{prefix}-p{i}"),
            role: Role::Publisher {
                publisher_id: i as u64,
                topic,
            },
        };
        match self {
            Kind::Conn { connections } => (0..*connections)
                .map(|i| ConnSpec {
                    client_id: format!("{prefix}-c{i}"),
                    role: Role::Idle,
                })
                .collect(),
            Kind::Fanin {
                publishers,
                subscribers,
                topic,
                filter,
            }
            | Kind::Sharedsub {
                publishers,
                subscribers,
                topic,
                filter,
            } => (0..*subscribers)
                .map(|i| subscriber(i, expand(filter, i)))
                .chain((0..*publishers).map(|i| publisher(i, expand(topic, i))))
                .collect(),
            Kind::Fanout {
                publishers,
                subscribers,
                topic,
            } => (0..*subscribers)
                .map(|i| subscriber(i, topic.clone()))
                .chain((0..*publishers).map(|i| publisher(i, topic.clone())))
                .collect(),
            Kind::P2p { pairs, topic } => (0..*pairs)
                .map(|i| subscriber(i, expand(topic, i)))
                .chain((0..*pairs).map(|i| publisher(i, expand(topic, i))))
                .collect(),
            Kind::Manytopics {
                publishers,
                wildcard_subscribers,
                prefix,
            } => {
                let groups = (*wildcard_subscribers).max(1);
                let topic = |i: usize| format!("{prefix}/{}/{i}", i % groups);
                (0..*wildcard_subscribers)
                    .map(|j| subscriber(j, format!("{prefix}/{j}/+")))
                    .chain((0..*publishers).map(|i| subscriber(groups + i, topic(i))))
                    .chain((0..*publishers).map(|i| publisher(i, topic(i))))
                    .collect()
            }
        }
    }
}

impl Scenario {
    /// The scenario a load command describes; `Err` gives back the other commands (boxed: they
    /// are rare and large).
    pub fn from_command(command: Command) -> Result<Scenario, Box<Command>> {
        let (kind, common) = match command {
            other @ (Command::Relay(_) | Command::Table(_) | Command::Soak(_)) => {
                return Err(Box::new(other))
            }
            Command::Conn(a) => (
                Kind::Conn {
                    connections: a.connections,
                },
                a.common,
            ),
            Command::Fanin(a) => (
                Kind::Fanin {
                    publishers: a.publishers,
                    subscribers: a.subscribers,
                    topic: a.topic,
                    filter: a.filter,
                },
                a.common,
            ),
            Command::Fanout(a) => (
                Kind::Fanout {
                    publishers: a.publishers,
                    subscribers: a.subscribers,
                    topic: a.topic,
                },
                a.common,
            ),
            Command::P2p(a) => (
                Kind::P2p {
                    pairs: a.pairs,
                    topic: a.topic,
                },
                a.common,
            ),
            Command::Sharedsub(a) => (
                Kind::Sharedsub {
                    publishers: a.publishers,
                    subscribers: a.subscribers,
                    topic: a.topic,
                    filter: a.filter,
                },
                a.common,
            ),
            Command::Manytopics(a) => (
                Kind::Manytopics {
                    publishers: a.publishers,
                    wildcard_subscribers: a.wildcard_subscribers,
                    prefix: a.prefix,
                },
                a.common,
            ),
        };
        Ok(Scenario { kind, common })
    }

    /// Parses command-line words (without the program name) into a scenario.
    pub fn parse(words: &[&str]) -> Result<Scenario, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("shardmq-loadtest").chain(words.iter().copied()))
                .map_err(|e| e.to_string())?;
        Scenario::from_command(cli.command).map_err(|_| "not a load scenario".to_string())
    }

    /// Checks the options that clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.common;
        if c.payload < PAYLOAD_LEN_MIN {
            return Err(format!(
                "--payload must be at least {PAYLOAD_LEN_MIN} bytes"
            ));
        }
        if !(c.duration > 0.0 && c.duration <= 3600.0) {
            return Err("--duration must be in (0, 3600] seconds".into());
        }
        if !(0.0..=600.0).contains(&c.warmup) {
            return Err("--warmup must be in [0, 600] seconds".into());
        }
        if !(c.rate >= 0.0 && c.rate.is_finite()) {
            return Err("--rate must be 0 or a positive number".into());
        }
        if c.inflight == 0 || c.inflight > 65_000 {
            return Err("--inflight must be in 1..=65000".into());
        }
        if c.repeat == 0 || c.repeat > 100 {
            return Err("--repeat must be in 1..=100".into());
        }
        if c.find_max && !(c.step_factor > 1.0 && c.start_rate > 0.0) {
            return Err("--find-max needs --start-rate > 0 and --step-factor > 1".into());
        }
        if c.find_max && matches!(self.kind, Kind::Conn { .. }) {
            return Err("--find-max does not apply to the conn scenario".into());
        }
        let total = self.kind.publishers() + self.kind.subscribers();
        let total = if let Kind::Conn { connections } = self.kind {
            connections
        } else {
            total
        };
        if total == 0 || total > CONNECTIONS_MAX {
            return Err(format!("a run needs 1..={CONNECTIONS_MAX} connections"));
        }
        if let Kind::Manytopics {
            publishers,
            wildcard_subscribers,
            ..
        } = self.kind
        {
            // Each wildcard subscriber's group must have a publisher, or it expects nothing.
            if wildcard_subscribers > publishers {
                return Err("--wildcard-subscribers must be at most --publishers".into());
            }
        }
        if !matches!(self.kind, Kind::Conn { .. }) && self.kind.publishers() == 0 {
            return Err("a run needs at least one publisher".into());
        }
        if let Some(ca) = &c.tls_ca {
            crate::tls::TlsClient::new(ca, &c.tls_server_name)?;
        }
        Ok(())
    }

    /// The plan for one run against `addr`, with `rate_per_publisher` messages per second.
    pub fn plan(&self, addr: SocketAddr, rate_per_publisher: f64, threads: usize) -> Plan {
        static RUN_ID: AtomicU64 = AtomicU64::new(0);
        let run_id = RUN_ID.fetch_add(1, Ordering::Relaxed);
        let c = &self.common;
        let is_conn = matches!(self.kind, Kind::Conn { .. });
        Plan {
            addr,
            version: match c.mqtt {
                MqttArg::V311 => MqttVersion::V3_1_1,
                MqttArg::V5 => MqttVersion::V5,
            },
            qos: c.qos,
            payload_len: c.payload,
            rate_per_publisher,
            inflight: c.inflight,
            connect_rate: c.connect_rate,
            max_handshakes: c.handshakes,
            broker_pid: None,
            keep_alive_secs: c.keep_alive,
            connections: self.kind.connections(run_id),
            publishers: self.kind.publishers(),
            run_tag: run_tag(run_id),
            track_per_worker: matches!(self.kind, Kind::Sharedsub { .. }),
            deliveries_per_message: self.kind.deliveries_per_message(),
            warmup: if is_conn {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(c.warmup)
            },
            duration: Duration::from_secs_f64(c.duration),
            setup_timeout: Duration::from_secs_f64(c.setup_timeout.max(1.0)),
            drain_timeout: Duration::from_secs(5),
            threads,
            pin_cores: c.pin_cores,
            progress: !c.quiet,
            // `validate` loaded the CA file once already, so this does not fail in practice.
            tls: c
                .tls_ca
                .as_ref()
                .and_then(|ca| crate::tls::TlsClient::new(ca, &c.tls_server_name).ok()),
        }
    }
}

/// A tag that differs between runs and between processes (pid, run counter, clock).
fn run_tag(run_id: u64) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(run_id);
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_every_marker() {
        assert_eq!(expand("a/%i/b/%i", 7), "a/7/b/7");
        assert_eq!(expand("plain", 7), "plain");
    }

    #[test]
    fn connections_put_subscribers_first() {
        let kind = Kind::P2p {
            pairs: 3,
            topic: "t/%i".into(),
        };
        let conns = kind.connections(0);
        assert_eq!(conns.len(), 6);
        assert!(matches!(&conns[0].role, Role::Subscriber { filter } if filter == "t/0"));
        assert!(
            matches!(&conns[5].role, Role::Publisher { publisher_id: 2, topic } if topic == "t/2")
        );
        let fanout = Kind::Fanout {
            publishers: 2,
            subscribers: 5,
            topic: "x".into(),
        };
        assert_eq!(fanout.deliveries_per_message(), 5);
        assert_eq!(fanout.connections(1).len(), 7);
    }

    #[test]
    fn many_topics_reach_one_exact_and_one_wildcard_subscriber() {
        let kind = Kind::Manytopics {
            publishers: 5,
            wildcard_subscribers: 2,
            prefix: "m".into(),
        };
        assert_eq!(kind.deliveries_per_message(), 2);
        assert_eq!((kind.publishers(), kind.subscribers()), (5, 7));
        let conns = kind.connections(0);
        let filters: Vec<&str> = conns
            .iter()
            .filter_map(|c| match &c.role {
                Role::Subscriber { filter } => Some(filter.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            filters,
            ["m/0/+", "m/1/+", "m/0/0", "m/1/1", "m/0/2", "m/1/3", "m/0/4"]
        );
        let topics: Vec<&str> = conns
            .iter()
            .filter_map(|c| match &c.role {
                Role::Publisher { topic, .. } => Some(topic.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(topics, ["m/0/0", "m/1/1", "m/0/2", "m/1/3", "m/0/4"]);
        // Client ids are distinct even though exact subscribers follow the wildcard ones.
        let mut ids: Vec<&str> = conns.iter().map(|c| c.client_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), conns.len());
        let too_many = Scenario::parse(&[
            "manytopics",
            "--publishers",
            "2",
            "--wildcard-subscribers",
            "3",
        ]);
        assert!(too_many.unwrap().validate().is_err());
    }
}
