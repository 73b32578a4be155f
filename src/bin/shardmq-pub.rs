//! `shardmq-pub`: publish messages, with the flags of mosquitto_pub.
//!
//! Exit codes: 0 success; 1 connection failure, refusal, lost connection or unreadable input;
//! 2 bad command line (from clap).

mod common;

use bytes::Bytes;
use clap::Parser;
use common::{ConnectArgs, EXIT_ERROR, EXIT_OK};
use shardmq::client::{ClientError, Event};
use std::collections::HashSet;
use std::io::BufRead;
use std::time::Duration;

/// Publish MQTT messages (flags as in mosquitto_pub).
#[derive(Parser, Debug)]
#[command(
    name = "shardmq-pub",
    disable_help_flag = true,
    after_help = "Exit codes: 0 success; 1 connection refused or lost, server refusal, unreadable input; 2 bad command line."
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to publish to.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Message payload.
    #[arg(short = 'm', long = "message", group = "source")]
    message: Option<String>,
    /// Send the contents of a file as the message.
    #[arg(short = 'f', long = "file", group = "source")]
    file: Option<std::path::PathBuf>,
    /// Read messages from stdin, one per line.
    #[arg(short = 'l', long = "stdin-line", group = "source")]
    stdin_line: bool,
    /// Read stdin until end of file and send it as one message.
    #[arg(short = 's', long = "stdin-file", group = "source")]
    stdin_file: bool,
    /// Send a null (zero-length) message.
    #[arg(short = 'n', long = "null-message", group = "source")]
    null_message: bool,
    /// Quality of service of the messages.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = common::parse_qos_u8)]
    qos: u8,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message this many times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u64,
    /// Seconds to wait between repeats (fractions allowed).
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
    /// In-flight window for QoS 1/2 messages.
    #[arg(short = 'M', long = "max-inflight", default_value_t = 20)]
    max_inflight: u16,
    /// Publish rate limit in messages per second.
    #[arg(long = "rate")]
    rate: Option<f64>,
}

fn main() {
    let args = Args::parse();
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    if args.message.is_none()
        && args.file.is_none()
        && !args.stdin_line
        && !args.stdin_file
        && !args.null_message
    {
        args.connect
            .error("nothing to publish: give one of -m, -f, -l, -s or -n");
        return EXIT_ERROR;
    }
    if let Err(e) = shardmq::topic::validate_topic_name(&args.topic) {
        args.connect
            .error(format!("invalid topic {:?}: {e}", args.topic));
        return EXIT_ERROR;
    }
    if !(args.repeat_delay.is_finite() && args.repeat_delay >= 0.0) {
        args.connect
            .error("--repeat-delay must be a non-negative number");
        return EXIT_ERROR;
    }
    let single = match single_payload(args) {
        Ok(payload) => payload,
        Err(message) => {
            args.connect.error(message);
            return EXIT_ERROR;
        }
    };
    let mut options = match args.connect.client_options("shardmq_pub") {
        Ok(options) => options,
        Err(message) => {
            args.connect.error(message);
            return EXIT_ERROR;
        }
    };
    options.connect = options.connect.inflight_window(args.max_inflight);
    // mosquitto_pub does not reconnect: a lost connection is an error.
    options.reconnect = false;
    options.max_rate_per_sec = args.rate;
    let session = match common::connect(&args.connect, options, Duration::from_secs(30)) {
        Ok(session) => session,
        Err(error) => {
            args.connect.error(error);
            return EXIT_ERROR;
        }
    };
    let mut publisher = Publisher {
        args,
        session,
        pending: HashSet::new(),
    };
    let result = match single {
        Some(payload) => publisher.publish_repeated(payload),
        None => publisher.publish_lines(),
    };
    let result = result.and_then(|()| publisher.finish());
    match result {
        Ok(()) => EXIT_OK,
        Err(error) => {
            args.connect.error(error);
            EXIT_ERROR
        }
    }
}

/// The payload for every source but `-l` (`None` then).
fn single_payload(args: &Args) -> Result<Option<Bytes>, String> {
    if let Some(message) = &args.message {
        return Ok(Some(Bytes::from(message.clone())));
    }
    if let Some(path) = &args.file {
        return std::fs::read(path)
            .map(|data| Some(Bytes::from(data)))
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    if args.stdin_file {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(Some(Bytes::from(data)));
    }
    if args.null_message {
        return Ok(Some(Bytes::new()));
    }
    Ok(None)
}

struct Publisher<'a> {
    args: &'a Args,
    session: common::Session,
    /// Packet ids of QoS 1/2 messages not yet complete.
    pending: HashSet<u16>,
}

impl Publisher<'_> {
    fn publish(&mut self, payload: Bytes) -> Result<(), ClientError> {
        self.drain_notifications()?;
        let packet_id = self.session.client.publish(
            self.args.topic.as_str(),
            common::qos(self.args.qos),
            self.args.retain,
            payload,
        )?;
        if let Some(packet_id) = packet_id {
            self.pending.insert(packet_id);
        }
        Ok(())
    }

    fn publish_repeated(&mut self, payload: Bytes) -> Result<(), ClientError> {
        let delay = Duration::from_secs_f64(self.args.repeat_delay);
        for i in 0..self.args.repeat.max(1) {
            if i > 0 && !delay.is_zero() {
                std::thread::sleep(delay);
            }
            self.publish(payload.clone())?;
        }
        Ok(())
    }

    fn publish_lines(&mut self) -> Result<(), ClientError> {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.map_err(ClientError::Io)?;
            self.publish(Bytes::from(line))?;
        }
        Ok(())
    }

    /// Handles what the connection reported so far without waiting.
    fn drain_notifications(&mut self) -> Result<(), ClientError> {
        while let Ok(notification) = self.session.notifications.try_recv() {
            self.handle(notification)?;
        }
        Ok(())
    }

    fn handle(&mut self, notification: Result<Event, ClientError>) -> Result<(), ClientError> {
        let event = notification?;
        if self.args.connect.debug {
            common::stderr_line(format_args!("{event:?}"));
        }
        match event {
            Event::PubAck(packet_id) | Event::PubComp(packet_id) => {
                self.pending.remove(&packet_id);
            }
            Event::Disconnected(Some(disconnect)) => {
                return Err(ClientError::ServerDisconnected(Some(
                    disconnect.reason_code,
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Waits for every QoS 1/2 message to complete, then disconnects cleanly.
    fn finish(mut self) -> Result<(), ClientError> {
        while !self.pending.is_empty() {
            match self.session.notifications.recv() {
                Ok(notification) => self.handle(notification)?,
                Err(_) => return Err(ClientError::ConnectionClosed),
            }
        }
        self.session.client.disconnect()?;
        // The I/O thread ends once DISCONNECT is written.
        while let Ok(notification) = self.session.notifications.recv() {
            match notification {
                Ok(Event::Disconnected(None)) => {}
                other => self.handle(other)?,
            }
        }
        let _ = self.session.io_thread.join();
        Ok(())
    }
}
