//! Orchestration: repeated runs, targets in alternation (A B A B ...), capacity searches,
//! medians and ratios.

use crate::cli::{host_port, parse_pid, parse_target, resolve_loopback, EngineKind};
use crate::engine::{self, Plan, RunResult};
use crate::report::{
    print_summaries, ratios, Report, RunReport, SearchReport, SearchStep, TargetSummary,
};
use crate::scenario::Scenario;
use crate::session::RawSession;
use std::net::SocketAddr;

/// A named broker address.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    /// The broker's process, for its CPU time (`--pid`).
    pub pid: Option<u32>,
}

/// The targets of a scenario: every `--target`, or `--host:--port` named "broker".
pub fn targets(scenario: &Scenario) -> Result<Vec<Target>, String> {
    let c = &scenario.common;
    let mut out: Vec<Target> = Vec::new();
    if c.targets.is_empty() {
        let addr = resolve_loopback(&host_port(&c.host, c.port))?;
        out.push(Target {
            name: "broker".into(),
            addr,
            pid: None,
        });
    }
    for spec in &c.targets {
        let (name, addr) = parse_target(spec)?;
        if out.iter().any(|t| t.name == name) {
            return Err(format!("--target name {name} given twice"));
        }
        out.push(Target {
            name,
            addr,
            pid: None,
        });
    }
    for spec in &c.pids {
        let (name, pid) = parse_pid(spec)?;
        let Some(target) = out.iter_mut().find(|t| t.name == name) else {
            return Err(format!("--pid {spec}: no target named {name}"));
        };
        target.pid = Some(pid);
    }
    Ok(out)
}

/// The worker threads to use: `--threads`, or one per core.
pub fn threads(scenario: &Scenario) -> usize {
    scenario.common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Runs one plan with the chosen MQTT stack.
pub fn run_plan(engine: EngineKind, plan: &Plan) -> Result<RunResult, String> {
    match engine {
        EngineKind::Raw => engine::run::<RawSession>(plan),
        EngineKind::Client => engine::run::<crate::client_session::ClientLoadSession>(plan),
    }
}

/// Total offered rate over all publishers for `--rate` (0 = unpaced).
fn offered(scenario: &Scenario, rate_per_publisher: f64) -> f64 {
    rate_per_publisher * scenario.kind.publishers() as f64
}

/// Runs the scenario as the options say (repeats, targets, search) and prints as it goes.
pub fn execute(scenario: &Scenario) -> Result<Report, String> {
    scenario.validate()?;
    let targets = targets(scenario)?;
    let threads = threads(scenario);
    let c = &scenario.common;
    let mut runs: Vec<RunReport> = Vec::new();
    let mut searches: Vec<SearchReport> = Vec::new();
    for round in 0..c.repeat {
        for target in &targets {
            if c.repeat > 1 || targets.len() > 1 {
                println!("== {} round {} of {} ==", target.name, round + 1, c.repeat);
            }
            if c.find_max {
                let search = find_max(scenario, target, threads)?;
                searches.push(search);
            } else {
                let mut plan = scenario.plan(target.addr, c.rate, threads);
                plan.broker_pid = target.pid;
                let result = run_plan(c.engine, &plan)?;
                let report = RunReport::new(
                    &target.name,
                    &target.addr.to_string(),
                    offered(scenario, c.rate),
                    c.qos,
                    &result,
                );
                report.print();
                runs.push(report);
            }
        }
    }
    let summary: Vec<TargetSummary> = targets
        .iter()
        .map(|t| {
            let mine: Vec<&RunReport> = if c.find_max {
                searches
                    .iter()
                    .filter(|s| s.target == t.name)
                    .filter_map(best_step)
                    .collect()
            } else {
                runs.iter().filter(|r| r.target == t.name).collect()
            };
            let maxima: Vec<f64> = searches
                .iter()
                .filter(|s| s.target == t.name)
                .map(|s| s.max_received_per_s)
                .collect();
            let bounded = searches
                .iter()
                .filter(|s| s.target == t.name)
                .all(|s| s.bounded);
            TargetSummary::new(&t.name, &t.addr.to_string(), &mine, &maxima, bounded)
        })
        .collect();
    let ratios = ratios(&summary);
    if targets.len() > 1 || c.repeat > 1 || c.find_max {
        print_summaries(&summary, &ratios);
    }
    Ok(Report {
        tool: "shardmq-loadtest",
        version: env!("CARGO_PKG_VERSION"),
        scenario: scenario.kind.name().to_owned(),
        qos: c.qos,
        payload_bytes: c.payload,
        mqtt: format!("{:?}", c.mqtt),
        publishers: scenario.kind.publishers(),
        subscribers: scenario.kind.subscribers(),
        threads,
        duration_s: c.duration,
        warmup_s: c.warmup,
        rate_per_publisher: c.rate,
        runs,
        searches,
        summary,
        ratios,
    })
}

/// The run of the highest passing step of a search.
fn best_step(search: &SearchReport) -> Option<&RunReport> {
    search
        .steps
        .iter()
        .filter(|s| s.passed)
        .max_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate))
        .map(|s| &s.run)
}

/// Whether a step delivered in full: at least 99 % of the offered deliveries arrived, nothing
/// was lost, no connection failed, and p99 stayed under the bound. Returns the failure reason.
pub fn judge(run: &RunReport, deliveries_per_message: u64, p99_bound_ms: f64) -> Option<String> {
    let offered_deliveries = run.offered_rate * run.duration_s * deliveries_per_message as f64;
    if (run.unique as f64) < 0.99 * offered_deliveries {
        return Some(format!(
            "delivered {} of {:.0} offered deliveries (< 99 %)",
            run.unique, offered_deliveries
        ));
    }
    if run.lost > 0 {
        return Some(format!("{} deliveries lost", run.lost));
    }
    if run.duplicates > 0 && run.qos == 2 {
        return Some(format!("{} duplicates at QoS 2", run.duplicates));
    }
    if run.connection_errors > 0 {
        return Some(format!("{} connection errors", run.connection_errors));
    }
    if run.latency_ms.p99 > p99_bound_ms {
        return Some(format!(
            "p99 {:.2} ms over the bound {p99_bound_ms} ms",
            run.latency_ms.p99
        ));
    }
    None
}

/// Raises the offered rate by `--step-factor` until a step fails, then bisects twice between
/// the last pass and the first failure.
pub fn find_max(
    scenario: &Scenario,
    target: &Target,
    threads: usize,
) -> Result<SearchReport, String> {
    let c = &scenario.common;
    let publishers = scenario.kind.publishers().max(1) as f64;
    let deliveries = scenario.kind.deliveries_per_message();
    let mut steps: Vec<SearchStep> = Vec::new();
    let mut rate = c.start_rate;
    let mut pass: Option<f64> = None;
    let mut fail: Option<f64> = None;
    let mut refinements = 0;
    for _ in 0..c.max_steps {
        let mut attempt = 0;
        let (run, reason) = loop {
            let mut plan = scenario.plan(target.addr, rate / publishers, threads);
            plan.broker_pid = target.pid;
            let result = run_plan(c.engine, &plan)?;
            let run = RunReport::new(&target.name, &target.addr.to_string(), rate, c.qos, &result);
            let reason = judge(&run, deliveries, c.p99_bound_ms);
            // On a shared machine one descheduling can push a step's p99 over the bound; a
            // step fails only if it fails `--step-retries` + 1 times in a row.
            if reason.is_none() || attempt >= c.step_retries {
                break (run, reason);
            }
            attempt += 1;
            println!(
                "find-max {}: offered {rate:.0}/s failed ({}), retrying",
                target.name,
                reason.as_deref().unwrap_or("")
            );
        };
        println!(
            "find-max {}: offered {:.0}/s -> received {:.0}/s, p99 {:.2} ms: {}",
            target.name,
            rate,
            run.received_per_s,
            run.latency_ms.p99,
            reason.as_deref().unwrap_or("pass")
        );
        if let Some(broken) = &run.guarantee_broken {
            println!("!!!!!! THE BROKER BROKE ITS QoS GUARANTEE: {broken} !!!!!!");
        }
        let passed = reason.is_none();
        steps.push(SearchStep {
            offered_rate: rate,
            passed,
            reason: reason.unwrap_or_default(),
            run,
        });
        if passed {
            pass = Some(pass.map_or(rate, |p: f64| p.max(rate)));
        } else {
            fail = Some(fail.map_or(rate, |f: f64| f.min(rate)));
        }
        rate = match (pass, fail) {
            (_, None) => rate * c.step_factor,
            (None, Some(f)) => f / c.step_factor.powi(2),
            (Some(p), Some(f)) => {
                if refinements == 2 || f <= p {
                    break;
                }
                refinements += 1;
                (p + f) / 2.0
            }
        };
        if pass.is_none() && fail.is_some_and(|f| f < c.start_rate / 100.0) {
            break;
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.passed)
        .max_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    Ok(SearchReport {
        target: target.name.clone(),
        max_offered_rate: best.map_or(0.0, |s| s.offered_rate),
        max_received_per_s: best.map_or(0.0, |s| s.run.received_per_s),
        p99_ms_at_max: best.map_or(0.0, |s| s.run.latency_ms.p99),
        bounded: steps.iter().any(|s| !s.passed),
        steps,
    })
}
