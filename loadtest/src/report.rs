//! Results as numbers: one [`RunReport`] per run, summaries per target, the printed table and
//! the JSON document.

use crate::engine::RunResult;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    /// From a histogram in microseconds.
    pub fn from_us(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One run, as printed and as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub target: String,
    pub address: String,
    /// Offered rate over all publishers in messages per second (0 = unpaced).
    pub offered_rate: f64,
    pub qos: u8,
    pub duration_s: f64,
    pub connections: usize,
    pub connections_ready: usize,
    pub connection_errors: u64,
    pub setup_s: f64,
    /// Connections made per second during setup.
    pub connect_per_s: f64,
    pub sent: u64,
    /// QoS 1/2 completions over the whole run (warmup included).
    pub acked_total: u64,
    /// Deliveries expected: sent times subscribers per message.
    pub expected: u64,
    /// Messages received (duplicates included).
    pub received: u64,
    /// First deliveries.
    pub unique: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Arrivals too far behind to classify (counted as first deliveries).
    pub late: u64,
    /// Payloads without this run's stamp.
    pub foreign: u64,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    /// unique / expected, 1.0 when nothing was expected.
    pub delivered_fraction: f64,
    pub latency_ms: Percentiles,
    pub connect_ms: Percentiles,
    /// The QoS guarantee the broker broke, if any ("loss at QoS 1", "duplicates at QoS 2").
    pub guarantee_broken: Option<String>,
    pub errors: Vec<String>,
    /// The broker's CPU seconds over the window (`--pid`), null when not measured.
    pub broker_cpu_s: Option<f64>,
    /// Broker CPU seconds per second of the window (1.0 = one core busy).
    pub broker_cores: Option<f64>,
    /// First deliveries in the window per broker CPU-second.
    pub received_per_broker_cpu_s: Option<f64>,
    /// The broker's largest resident set seen during the run, in bytes (`--pid`).
    pub broker_rss_max_bytes: Option<u64>,
}

impl RunReport {
    pub fn new(
        target: &str,
        address: &str,
        offered_rate: f64,
        qos: u8,
        r: &RunResult,
    ) -> RunReport {
        let t = &r.tally;
        let lost = r.lost();
        let guarantee_broken = match qos {
            1 if lost > 0 => Some(format!("{lost} messages lost at QoS 1")),
            2 if lost > 0 || t.duplicates > 0 => Some(format!(
                "{lost} messages lost and {} duplicated at QoS 2",
                t.duplicates
            )),
            _ => None,
        };
        RunReport {
            target: target.to_owned(),
            address: address.to_owned(),
            offered_rate,
            qos,
            duration_s: r.measured.as_secs_f64(),
            connections: r.connections,
            connections_ready: r.connections_ready,
            connection_errors: t.connection_errors,
            setup_s: r.setup.as_secs_f64(),
            connect_per_s: if r.setup.is_zero() {
                0.0
            } else {
                r.connections_ready as f64 / r.setup.as_secs_f64()
            },
            sent: t.sent,
            acked_total: t.acked,
            expected: r.expected,
            received: t.received,
            unique: t.unique,
            lost,
            duplicates: t.duplicates,
            reordered: t.reordered,
            late: t.late,
            foreign: t.foreign,
            sent_per_s: r.sent_rate(),
            received_per_s: r.received_rate(),
            delivered_fraction: if r.expected == 0 {
                1.0
            } else {
                t.unique as f64 / r.expected as f64
            },
            latency_ms: Percentiles::from_us(&t.latency_us),
            connect_ms: Percentiles::from_us(&t.connect_us),
            guarantee_broken,
            errors: t.errors.clone(),
            broker_cpu_s: r.broker_cpu_s,
            broker_cores: r
                .broker_cpu_s
                .filter(|_| !r.measured.is_zero())
                .map(|cpu| cpu / r.measured.as_secs_f64()),
            received_per_broker_cpu_s: r
                .broker_cpu_s
                .filter(|&cpu| cpu > 0.0)
                .map(|cpu| t.unique as f64 / cpu),
            broker_rss_max_bytes: r.broker_rss_max_bytes,
        }
    }

    /// Prints the run's summary table, and a loud line if a QoS guarantee was broken.
    pub fn print(&self) {
        println!("── {} ({}) ──", self.target, self.address);
        let l = &self.latency_ms;
        let rows = [
            (
                "connections",
                format!(
                    "{} ready of {}, {} errors, setup {:.2} s ({:.0}/s)",
                    self.connections_ready,
                    self.connections,
                    self.connection_errors,
                    self.setup_s,
                    self.connect_per_s
                ),
            ),
            (
                "sent",
                format!(
                    "{} ({:.0}/s), acked {} (whole run)",
                    self.sent, self.sent_per_s, self.acked_total
                ),
            ),
            (
                "received",
                format!(
                    "{} of {} expected ({:.0}/s, {:.3}%)",
                    self.unique,
                    self.expected,
                    self.received_per_s,
                    self.delivered_fraction * 100.0
                ),
            ),
            (
                "lost / dup / reordered",
                format!(
                    "{} / {} / {} (late {}, foreign {})",
                    self.lost, self.duplicates, self.reordered, self.late, self.foreign
                ),
            ),
            (
                "latency ms",
                format!(
                    "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                    l.p50, l.p90, l.p99, l.p999, l.max
                ),
            ),
            (
                "connect ms",
                format!(
                    "p50 {:.3}  p99 {:.3}  max {:.3}",
                    self.connect_ms.p50, self.connect_ms.p99, self.connect_ms.max
                ),
            ),
        ];
        // A run without publishers (conn) has only the connection rows to show.
        let without_messages = self.sent == 0 && self.expected == 0 && self.received == 0;
        for (name, value) in rows {
            let message_row = !matches!(name, "connections" | "connect ms");
            if !(without_messages && message_row) {
                println!("  {name:<24} {value}");
            }
        }
        if let (Some(cpu), Some(cores)) = (self.broker_cpu_s, self.broker_cores) {
            let per_cpu = self
                .received_per_broker_cpu_s
                .map_or("-".to_string(), |m| format!("{m:.0}"));
            println!(
                "  {:<24} {cpu:.2} s ({cores:.2} cores), {per_cpu} deliveries per CPU-second",
                "broker CPU"
            );
        }
        if let Some(rss) = self.broker_rss_max_bytes {
            println!(
                "  {:<24} {:.1} MiB (largest seen, sampled every second)",
                "broker RSS",
                rss as f64 / (1024.0 * 1024.0)
            );
        }
        for error in &self.errors {
            println!("  error: {error}");
        }
        if let Some(broken) = &self.guarantee_broken {
            println!();
            println!("!!!!!! THE BROKER BROKE ITS QoS GUARANTEE: {broken} !!!!!!");
            println!();
        }
    }
}

/// The median of some values (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The median of the values there are, None when there are none.
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| median(&v))
}

/// One step of a capacity search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchStep {
    pub offered_rate: f64,
    pub passed: bool,
    /// Why the step failed, empty when it passed.
    pub reason: String,
    pub run: RunReport,
}

/// A capacity search against one target.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    pub target: String,
    pub steps: Vec<SearchStep>,
    /// Highest offered rate that passed (0 if none).
    pub max_offered_rate: f64,
    /// Deliveries per second received at that step.
    pub max_received_per_s: f64,
    /// p99 at that step, milliseconds.
    pub p99_ms_at_max: f64,
    /// Whether a step failed: false means the search ran out of steps and the maximum is
    /// only a lower bound.
    pub bounded: bool,
}

/// Medians of one target's runs.
#[derive(Clone, Debug, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub address: String,
    pub runs: usize,
    pub median_sent_per_s: f64,
    pub median_received_per_s: f64,
    pub median_p50_ms: f64,
    pub median_p99_ms: f64,
    pub median_connect_p99_ms: f64,
    /// Median of the capacity searches' maxima (received per second), when searching.
    pub median_max_received_per_s: Option<f64>,
    /// Whether every search found a failing step (else the maximum is a lower bound).
    pub max_bounded: bool,
    pub lost_total: u64,
    pub duplicates_total: u64,
    pub guarantee_broken: bool,
    /// Median broker CPU cores busy and deliveries per broker CPU-second (`--pid`).
    pub median_broker_cores: Option<f64>,
    pub median_received_per_broker_cpu_s: Option<f64>,
}

/// The ratio of one metric between two targets.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub metric: String,
    pub numerator: String,
    pub denominator: String,
    pub ratio: f64,
}

/// The whole JSON document.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: String,
    pub qos: u8,
    pub payload_bytes: usize,
    pub mqtt: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rate_per_publisher: f64,
    pub runs: Vec<RunReport>,
    pub searches: Vec<SearchReport>,
    pub summary: Vec<TargetSummary>,
    pub ratios: Vec<Ratio>,
}

impl TargetSummary {
    /// The medians of `runs`; `maxima` are the capacity searches' results, `max_bounded` whether
    /// every search found a failing step.
    pub fn new(
        target: &str,
        address: &str,
        runs: &[&RunReport],
        maxima: &[f64],
        max_bounded: bool,
    ) -> TargetSummary {
        let m = |f: fn(&RunReport) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        TargetSummary {
            target: target.to_owned(),
            address: address.to_owned(),
            runs: runs.len(),
            median_sent_per_s: m(|r| r.sent_per_s),
            median_received_per_s: m(|r| r.received_per_s),
            median_p50_ms: m(|r| r.latency_ms.p50),
            median_p99_ms: m(|r| r.latency_ms.p99),
            median_connect_p99_ms: m(|r| r.connect_ms.p99),
            median_max_received_per_s: (!maxima.is_empty()).then(|| median(maxima)),
            max_bounded,
            lost_total: runs.iter().map(|r| r.lost).sum(),
            duplicates_total: runs.iter().map(|r| r.duplicates).sum(),
            guarantee_broken: runs.iter().any(|r| r.guarantee_broken.is_some()),
            median_broker_cores: median_of(runs.iter().filter_map(|r| r.broker_cores)),
            median_received_per_broker_cpu_s: median_of(
                runs.iter().filter_map(|r| r.received_per_broker_cpu_s),
            ),
        }
    }
}

/// Ratios of every target's medians to the first target's.
pub fn ratios(summaries: &[TargetSummary]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let Some(base) = summaries.first() else {
        return out;
    };
    for other in &summaries[1..] {
        let mut push = |metric: &str, a: f64, b: f64| {
            if b > 0.0 {
                out.push(Ratio {
                    metric: metric.to_owned(),
                    numerator: other.target.clone(),
                    denominator: base.target.clone(),
                    ratio: a / b,
                });
            }
        };
        push(
            "received_per_s",
            other.median_received_per_s,
            base.median_received_per_s,
        );
        push("p99_ms", other.median_p99_ms, base.median_p99_ms);
        if let (Some(a), Some(b)) = (
            other.median_max_received_per_s,
            base.median_max_received_per_s,
        ) {
            push("max_received_per_s", a, b);
        }
    }
    out
}

/// Prints the side-by-side table of target medians and the ratios.
pub fn print_summaries(summaries: &[TargetSummary], ratios: &[Ratio]) {
    println!();
    println!(
        "{:<14} {:>5} {:>14} {:>14} {:>10} {:>10} {:>14} {:>8} {:>13}",
        "target",
        "runs",
        "sent/s",
        "received/s",
        "p50 ms",
        "p99 ms",
        "max recv/s",
        "lost",
        "recv/CPU-s"
    );
    for s in summaries {
        let max = s
            .median_max_received_per_s
            .map_or("-".to_string(), |m| format!("{m:.0}"));
        let per_cpu = s
            .median_received_per_broker_cpu_s
            .map_or("-".to_string(), |m| format!("{m:.0}"));
        println!(
            "{:<14} {:>5} {:>14.0} {:>14.0} {:>10.3} {:>10.3} {:>14} {:>8} {:>13}",
            s.target,
            s.runs,
            s.median_sent_per_s,
            s.median_received_per_s,
            s.median_p50_ms,
            s.median_p99_ms,
            max,
            s.lost_total,
            per_cpu
        );
    }
    for r in ratios {
        println!(
            "ratio {} {} / {} = {:.2}",
            r.metric, r.numerator, r.denominator, r.ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn percentiles_in_milliseconds() {
        let mut h = crate::stats::latency_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let p = Percentiles::from_us(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 0.5).abs() < 0.01, "{p:?}");
        assert!((p.max - 1.0).abs() < 0.01, "{p:?}");
    }
}
