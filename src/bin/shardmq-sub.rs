//! `shardmq-sub`: subscribe and print messages, with the flags of mosquitto_sub.
//!
//! Exit codes: 0 success (`-C` count reached, `-E`, or stdout closed);
//! 1 connection failure, refusal or every subscription denied; 2 bad command line (from clap);
//! 27 the `-W` timeout expired (as mosquitto_sub).

mod common;

use clap::Parser;
use common::{ConnectArgs, EXIT_ERROR, EXIT_OK};
use shardmq::client::{ClientError, Event};
use shardmq::codec::{MqttString, Publish, RetainHandling, SubscriptionOptions};
use std::io::Write;
use std::time::{Duration, Instant};

/// Subscribe to MQTT topics and print the messages (flags as in mosquitto_sub).
#[derive(Parser, Debug)]
#[command(
    name = "shardmq-sub",
    disable_help_flag = true,
    after_help = "Exit codes: 0 success (-C count reached, -E); 1 connection refused, server refusal, all subscriptions denied; 2 bad command line; 27 the -W timeout expired."
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic filter to subscribe to; may be repeated.
    #[arg(short = 't', long = "topic", required_unless_present = "unsubscribe")]
    topics: Vec<String>,
    /// Topic filter whose matching messages are not printed; may be repeated.
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Topic filter to unsubscribe from (useful with -c); may be repeated.
    #[arg(short = 'U', long = "unsubscribe")]
    unsubscribe: Vec<String>,
    /// Quality of service of the subscriptions.
    #[arg(short = 'q', long = "qos", default_value_t = 0, value_parser = common::parse_qos_u8)]
    qos: u8,
    /// Exit after receiving this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Print "topic payload" instead of the payload alone.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Exit with code 27 after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Do not print stale (retained) messages.
    #[arg(short = 'R', long = "no-stale")]
    no_stale: bool,
    /// Do not print a newline after each payload.
    #[arg(short = 'N', long = "no-eol")]
    no_eol: bool,
    /// Exit once every subscription has been acknowledged.
    #[arg(short = 'E', long = "exit-after-sub")]
    exit_after_sub: bool,
}

/// Exit code when `-W` expires (the value mosquitto_sub uses).
const EXIT_TIMEOUT: i32 = 27;

fn main() {
    let args = Args::parse();
    std::process::exit(run(&args));
}

fn run(args: &Args) -> i32 {
    let started = Instant::now();
    let deadline = args.timeout.map(|secs| started + Duration::from_secs(secs));
    for filter in args.filter_out.iter().chain(&args.unsubscribe) {
        if let Err(e) = shardmq::topic::validate_topic_filter(filter) {
            args.connect
                .error(format!("invalid topic filter {filter:?}: {e}"));
            return EXIT_ERROR;
        }
    }
    let mut filters = Vec::with_capacity(args.topics.len());
    for topic in &args.topics {
        if let Err(e) = shardmq::topic::validate_topic_filter(topic) {
            args.connect
                .error(format!("invalid subscription topic {topic:?}: {e}"));
            return EXIT_ERROR;
        }
        let options = SubscriptionOptions {
            qos: common::qos(args.qos),
            retain_handling: RetainHandling::SendAtSubscribe,
            ..SubscriptionOptions::default()
        };
        filters.push((MqttString::from(topic.as_str()), options));
    }
    let options = match args.connect.client_options("shardmq_sub") {
        Ok(options) => options,
        Err(message) => {
            args.connect.error(message);
            return EXIT_ERROR;
        }
    };
    let connect_timeout = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::from_secs(30));
    let session = match common::connect(&args.connect, options, connect_timeout) {
        Ok(session) => session,
        Err(ClientError::ConnectTimeout) if deadline.is_some() => {
            args.connect.error("timed out");
            return EXIT_TIMEOUT;
        }
        Err(error) => {
            args.connect.error(error);
            return EXIT_ERROR;
        }
    };
    if !args.unsubscribe.is_empty() {
        let unsubscribe = args
            .unsubscribe
            .iter()
            .map(|filter| MqttString::from(filter.as_str()))
            .collect();
        if let Err(error) = session.client.unsubscribe(unsubscribe) {
            args.connect.error(error);
            return EXIT_ERROR;
        }
    }
    if !filters.is_empty() {
        if let Err(error) = session.client.subscribe_many(filters) {
            args.connect.error(error);
            return EXIT_ERROR;
        }
    }
    let code = receive(args, &session, deadline);
    let _ = session.client.disconnect();
    // Give the I/O thread a moment to send DISCONNECT; it ends by itself.
    let until = Instant::now() + Duration::from_secs(2);
    while !session.io_thread.is_finished() && Instant::now() < until {
        // Keep draining so that the I/O thread never blocks on a full channel.
        let _ = session
            .notifications
            .recv_timeout(Duration::from_millis(10));
    }
    code
}

fn receive(args: &Args, session: &common::Session, deadline: Option<Instant>) -> i32 {
    let mut received = 0u64;
    let stdout = std::io::stdout();
    loop {
        let notification = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match session.notifications.recv_timeout(left) {
                    Ok(notification) => notification,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        args.connect.error("timed out");
                        return EXIT_TIMEOUT;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return EXIT_ERROR,
                }
            }
            None => match session.notifications.recv() {
                Ok(notification) => notification,
                Err(_) => return EXIT_ERROR,
            },
        };
        let event = match notification {
            Ok(event) => event,
            Err(error) => {
                // The connection reconnects by itself; say why it dropped.
                args.connect.error(error);
                continue;
            }
        };
        if args.connect.debug {
            common::stderr_line(format_args!("{event:?}"));
        }
        match event {
            Event::Publish(publish) => {
                if args.no_stale && publish.retain {
                    continue;
                }
                let topic = publish.topic.as_str();
                if args
                    .filter_out
                    .iter()
                    .any(|filter| shardmq::topic::filter_matches(filter, topic))
                {
                    continue;
                }
                if print(args, &mut stdout.lock(), &publish).is_err() {
                    // stdout closed (a pipe reader went away): nothing more to do.
                    return EXIT_OK;
                }
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    return EXIT_OK;
                }
            }
            Event::SubAck(suback) => {
                if suback.reason_codes.iter().all(|code| code.is_error()) {
                    args.connect.error("all subscription requests were denied");
                    return EXIT_ERROR;
                }
                if args.exit_after_sub {
                    return EXIT_OK;
                }
            }
            Event::UnsubAck(_) if args.topics.is_empty() => return EXIT_OK,
            _ => {}
        }
    }
}

fn print(args: &Args, out: &mut impl Write, publish: &Publish) -> std::io::Result<()> {
    if args.verbose {
        out.write_all(publish.topic.as_str().as_bytes())?;
        out.write_all(b" ")?;
    }
    out.write_all(&publish.payload)?;
    if !args.no_eol {
        out.write_all(b"\n")?;
    }
    out.flush()
}
