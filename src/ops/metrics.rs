//! The Prometheus exposition of the broker's counters, rendered with `prometheus-client` on each
//! scrape from a snapshot of the per-shard counters (scrapes are rare; nothing is kept between
//! them). Every counter of [`crate::broker::Stats`] is exported per shard (label `shard`; the
//! acceptors' counters under `shard="acceptor"`), so `sum()` gives the broker's total.

use super::observer::Observer;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The label set of a per-shard metric.
type ShardLabel = Vec<(&'static str, String)>;

/// Counters of `Stats` that are gauges (a level now, not a running total).
const GAUGES: &[&str] = &[
    "connections_open",
    "buffered_bytes",
    "buffered_bytes_peak",
    "subscriptions",
    "clients_online",
    "queued_bytes",
    "queued_messages_distinct",
];

/// Exported names that differ from the `Stats` field, so that the unit comes last.
fn exported_name(field: &'static str) -> &'static str {
    match field {
        "buffered_bytes_peak" => "buffered_peak_bytes",
        other => other,
    }
}

/// A doc comment made into one line of help text.
fn help(doc: &str) -> String {
    // The encoder ends the help text with its own full stop.
    let text = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    text.trim_end_matches('.').to_string()
}

fn shard_label(shard: impl ToString) -> ShardLabel {
    vec![("shard", shard.to_string())]
}

/// The text exposition (OpenMetrics text format, which Prometheus reads) of every metric.
pub fn render(observer: &Observer) -> String {
    render_with(observer, None)
}

/// [`render`], with the metrics HTTP server's own counters when it is the caller.
pub fn render_with(observer: &Observer, http: Option<&super::http::HttpCounters>) -> String {
    let mut registry = Registry::with_prefix("shardmq");
    let shards = observer.shard_stats();
    let acceptor = observer.acceptor_stats();
    let values = |stats: &crate::broker::Stats| {
        let mut values = Vec::new();
        stats.for_each(|_, _, v| values.push(v));
        values
    };
    let per_shard: Vec<Vec<u64>> = shards.iter().map(values).collect();
    let acceptor_values = values(&acceptor);
    let mut fields = Vec::new();
    acceptor.for_each(|name, doc, _| fields.push((name, doc)));
    for (index, (name, doc)) in fields.into_iter().enumerate() {
        if GAUGES.contains(&name) {
            let family = Family::<ShardLabel, Gauge>::default();
            for (shard, row) in per_shard.iter().enumerate() {
                family
                    .get_or_create(&shard_label(shard))
                    .set(row[index] as i64);
            }
            registry.register(exported_name(name), help(doc), family);
        } else {
            let family = Family::<ShardLabel, Counter>::default();
            for (shard, row) in per_shard.iter().enumerate() {
                family.get_or_create(&shard_label(shard)).inc_by(row[index]);
            }
            if acceptor_values[index] > 0 {
                family
                    .get_or_create(&shard_label("acceptor"))
                    .inc_by(acceptor_values[index]);
            }
            registry.register(exported_name(name), help(doc), family);
        }
    }
    register_broker_gauges(&mut registry, observer);
    if let Some(http) = http {
        use std::sync::atomic::Ordering;
        let counter = |value: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            c
        };
        registry.register(
            "metrics_http_refused_busy",
            "Metrics HTTP connections closed at once because every worker was busy",
            counter(http.refused_busy.load(Ordering::Relaxed)),
        );
        registry.register(
            "metrics_http_bad_requests",
            "Metrics HTTP requests answered 400, 408 or 431 (malformed, too slow, too large)",
            counter(http.bad_requests.load(Ordering::Relaxed)),
        );
    }
    let mut text = String::new();
    if encode(&mut text, &registry).is_err() {
        // Writing into a String cannot fail; an encoder error would be a bug in the encoder.
        log::error!("metrics: encoding failed");
    }
    text
}

/// Broker-wide gauges that are not per-shard counters.
fn register_broker_gauges(registry: &mut Registry, observer: &Observer) {
    let gauge = |value: u64| {
        let g = Gauge::<i64>::default();
        g.set(value as i64);
        g
    };
    registry.register(
        "retained_messages",
        "Retained messages held (the $SYS tree's own included)",
        gauge(observer.retained_messages() as u64),
    );
    registry.register(
        "sessions",
        "Sessions held, with a connected client or not",
        gauge(observer.sessions() as u64),
    );
    registry.register_with_unit(
        "uptime",
        "Time since the broker started",
        Unit::Seconds,
        gauge(observer.uptime_secs()),
    );
    let up = Family::<ShardLabel, Gauge>::default();
    for (shard, running) in observer.liveness().shards_running().iter().enumerate() {
        up.get_or_create(&shard_label(shard))
            .set(i64::from(*running));
    }
    registry.register(
        "shard_up",
        "1 while the shard's thread runs, 0 after it stopped",
        up,
    );
    let congested = Family::<ShardLabel, Gauge>::default();
    for (shard, flag) in observer.shards_congested().iter().enumerate() {
        congested
            .get_or_create(&shard_label(shard))
            .set(i64::from(*flag));
    }
    registry.register(
        "shard_congested",
        "1 while the shard has congested sessions (its publishers are paused)",
        congested,
    );
    registry.register(
        "healthy",
        "1 while every shard and acceptor thread runs (what /healthz answers)",
        gauge(u64::from(observer.healthy())),
    );
}
