//! What `shardmq-pub` and `shardmq-sub` share: the connection flags (named as in
//! mosquitto_pub/mosquitto_sub), building the client from them, and the exit codes.

use bytes::Bytes;
use clap::Args;
use crossbeam_channel::Receiver;
use shardmq::client::{
    Client, ClientError, ClientOptions, ClientSession, ConnectOptions, Connection, Event,
    ScramSha256Auth,
};
use shardmq::codec::{ProtocolVersion, QoS};
use std::io::Write;
use std::thread::JoinHandle;
use std::time::Duration;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for a connection failure, a refusal, a protocol error or unreadable input.
pub const EXIT_ERROR: i32 = 1;
/// Notifications buffered between the I/O thread and the main thread.
const NOTIFICATION_CAPACITY: usize = 1024;

/// Writes one line to stderr, ignoring failures: a closed stderr must not kill the tool
/// (`eprintln!` panics then).
pub fn stderr_line(line: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Connection flags common to both tools.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// MQTT host to connect to.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub host: String,
    /// Network port to connect to.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    pub port: u16,
    /// Client id (default: the tool's name and the process id).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Client id prefix; the process id is appended.
    #[arg(short = 'I', long = "id-prefix", conflicts_with = "id")]
    pub id_prefix: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw")]
    pub password: Option<String>,
    /// Keep alive in seconds (0 disables it).
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub keepalive: u16,
    /// Protocol version: mqttv5 (or 5), mqttv311 (or 311), mqttv31 (or 31).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// Disable clean session (persistent session; needs -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub disable_clean_session: bool,
    /// MQTT 5 Session Expiry Interval in seconds, or -1 for never (default: -1 with -c, else 0).
    #[arg(short = 'x', long = "session-expiry", allow_negative_numbers = true)]
    pub session_expiry: Option<i64>,
    /// Topic of the will message.
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Payload of the will message (default empty).
    #[arg(long = "will-payload", requires = "will_topic")]
    pub will_payload: Option<String>,
    /// QoS of the will message.
    #[arg(long = "will-qos", default_value_t = 0, value_parser = parse_qos_u8, requires = "will_topic")]
    pub will_qos: u8,
    /// Retain the will message.
    #[arg(long = "will-retain", requires = "will_topic")]
    pub will_retain: bool,
    /// Authenticate with SCRAM-SHA-256 (MQTT 5 enhanced authentication) as -u with password -P,
    /// instead of sending them in CONNECT.
    #[arg(long = "scram", requires = "username")]
    pub scram: bool,
    /// Print debug messages (every notification) to stderr.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Do not print error messages.
    #[arg(long = "quiet")]
    pub quiet: bool,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

fn parse_version(value: &str) -> Result<ProtocolVersion, String> {
    match value {
        "mqttv5" | "5" => Ok(ProtocolVersion::V5),
        "mqttv311" | "311" => Ok(ProtocolVersion::V3_1_1),
        "mqttv31" | "31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!(
            "unknown protocol version {value:?}: use mqttv5, mqttv311 or mqttv31"
        )),
    }
}

/// Parses a QoS flag value (0, 1 or 2).
pub fn parse_qos_u8(value: &str) -> Result<u8, String> {
    match value {
        "0" => Ok(0),
        "1" => Ok(1),
        "2" => Ok(2),
        _ => Err(format!("QoS must be 0, 1 or 2, not {value:?}")),
    }
}

/// The QoS for a validated flag value.
pub fn qos(value: u8) -> QoS {
    QoS::from_u8(value).unwrap_or(QoS::AtMostOnce)
}

impl ConnectArgs {
    /// Builds the client options; `Err` carries a usage error message.
    pub fn client_options(&self, tool: &str) -> Result<ClientOptions, String> {
        let client_id = match (&self.id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) => format!("{tool}_{}", std::process::id()),
        };
        if self.disable_clean_session && self.id.is_none() && self.id_prefix.is_none() {
            return Err("you must provide a client id (-i) with -c".into());
        }
        let session_expiry_secs = match self.session_expiry {
            Some(-1) => u32::MAX,
            Some(secs) => u32::try_from(secs)
                .map_err(|_| format!("session expiry {secs} is out of range (-1..=4294967295)"))?,
            None if self.disable_clean_session => u32::MAX,
            None => 0,
        };
        let mut connect = ConnectOptions::new(client_id)
            .protocol(self.version)
            .keep_alive_secs(self.keepalive)
            .clean_start(!self.disable_clean_session)
            .session_expiry_secs(session_expiry_secs);
        if self.password.is_some() && self.username.is_none() {
            return Err("a password (-P) needs a user name (-u)".into());
        }
        if self.scram && self.version != ProtocolVersion::V5 {
            return Err("--scram needs MQTT 5 (-V 5)".into());
        }
        if !self.scram {
            connect.username = self.username.clone();
            connect.password = self.password.clone().map(Bytes::from);
        }
        if let Some(topic) = &self.will_topic {
            shardmq::topic::validate_topic_name(topic)
                .map_err(|e| format!("invalid will topic {topic:?}: {e}"))?;
            let payload = self.will_payload.clone().unwrap_or_default();
            connect = connect.will(
                topic.as_str(),
                Bytes::from(payload),
                qos(self.will_qos),
                self.will_retain,
            );
        }
        Ok(ClientOptions::from(connect))
    }

    /// Prints an error unless `--quiet`.
    pub fn error(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            stderr_line(format_args!("Error: {message}"));
        }
    }
}

/// A connected client: the handle, the notifications from the I/O thread, and the thread.
pub struct Session {
    pub client: Client,
    pub notifications: Receiver<Result<Event, ClientError>>,
    pub io_thread: JoinHandle<()>,
}

/// Creates the client and drives its connection on a new thread that forwards every
/// notification; waits for the first CONNACK. `Err` is the first connection error.
pub fn connect(
    args: &ConnectArgs,
    options: ClientOptions,
    connect_timeout: Duration,
) -> Result<Session, ClientError> {
    let mut session = ClientSession::new(options.connect.clone());
    if let (true, Some(username)) = (args.scram, &args.username) {
        let password = args.password.clone().unwrap_or_default();
        session = session.with_enhanced_auth(Box::new(ScramSha256Auth::new(username, password)));
    }
    let (client, connection) =
        Client::with_session(session, options, args.host.clone(), args.port)?;
    let (tx, notifications) = crossbeam_channel::bounded(NOTIFICATION_CAPACITY);
    let io_thread = std::thread::spawn(move || drive(connection, tx));
    let debug = args.debug;
    loop {
        match notifications.recv_timeout(connect_timeout) {
            Ok(Ok(Event::Connected(_) | Event::Reconnected(_))) => break,
            Ok(Ok(event)) if debug => stderr_line(format_args!("{event:?}")),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                let _ = client.disconnect();
                return Err(error);
            }
            Err(_) => {
                let _ = client.disconnect();
                return Err(ClientError::ConnectTimeout);
            }
        }
    }
    Ok(Session {
        client,
        notifications,
        io_thread,
    })
}

fn drive(mut connection: Connection, tx: crossbeam_channel::Sender<Result<Event, ClientError>>) {
    for notification in connection.iter() {
        if tx.send(notification).is_err() {
            break;
        }
    }
}
