//! `shardmq-loadtest`: see `shardmq-loadtest --help`.

use clap::Parser;
use shardmq_loadtest::cli::{Cli, Command, TableArgs};
use shardmq_loadtest::scenario::Scenario;
use shardmq_loadtest::{bench, relay, table};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let scenario = match Scenario::from_command(cli.command) {
        Ok(scenario) => scenario,
        Err(other) => match *other {
            Command::Relay(args) => return run_relay(&args),
            Command::Table(args) => return print_table(&args),
            Command::Soak(args) => {
                return match shardmq_loadtest::soak::run(&args) {
                    Ok(report) if report.well_behaved_complete() => ExitCode::SUCCESS,
                    Ok(_) => {
                        eprintln!("shardmq-loadtest soak: well-behaved clients lost messages");
                        ExitCode::from(3)
                    }
                    Err(e) => {
                        eprintln!("shardmq-loadtest soak: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            _ => return ExitCode::from(1),
        },
    };
    let report = match bench::execute(&scenario) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("shardmq-loadtest: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &scenario.common.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("shardmq-loadtest: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let broken = report.runs.iter().any(|r| r.guarantee_broken.is_some())
        || report
            .searches
            .iter()
            .flat_map(|s| &s.steps)
            .any(|s| s.run.guarantee_broken.is_some());
    if broken {
        eprintln!("shardmq-loadtest: the broker broke a QoS guarantee (see above)");
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn run_relay(args: &shardmq_loadtest::cli::RelayArgs) -> ExitCode {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let relay = match relay::Relay::start(&args.listen, threads) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("shardmq-loadtest relay: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "relay listening on {} with {threads} threads",
        relay.local_addr()
    );
    relay.join();
    ExitCode::SUCCESS
}

fn print_table(args: &TableArgs) -> ExitCode {
    match table::markdown(&args.files, args.baseline.as_deref()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardmq-loadtest table: {e}");
            ExitCode::from(1)
        }
    }
}
