//! Topic trie benchmarks: matching against 100,000 filters, and insert + remove on a full trie.
//!
//! Run briefly on the shared machine:
//! `cargo bench --bench trie -- --warm-up-time 1 --measurement-time 3`.
//! Criterion reports `thrpt` in elements/s: topics matched per second for `match`, and
//! insert+remove pairs per second for `insert_remove`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardmq::topic::{RetainedTree, TopicTrie};

const FILTER_COUNT: usize = 100_000;
const SITE_COUNT: u64 = 1_000;
const DEVICE_COUNT: u64 = 100;
const METRICS: [&str; 4] = ["temp", "humidity", "pressure", "co2"];
const TOPIC_BATCH: usize = 1_000;

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    }

    fn metric(&mut self) -> &'static str {
        METRICS[self.below(METRICS.len() as u64) as usize]
    }
}

/// 70% literal, 20% with one `+`, 10% ending in `#`.
fn make_filters(rng: &mut Rng) -> Vec<String> {
    (0..FILTER_COUNT)
        .map(|_| {
            let site = rng.below(SITE_COUNT);
            let device = rng.below(DEVICE_COUNT);
            match rng.below(10) {
                0..=6 => format!("site/{site}/device/{device}/{}", rng.metric()),
                7 => format!("site/{site}/device/+/{}", rng.metric()),
                8 => format!("site/+/device/{device}/{}", rng.metric()),
                _ if device % 2 == 0 => format!("site/{site}/device/{device}/#"),
                _ => format!("site/{site}/#"),
            }
        })
        .collect()
}

fn make_topics(rng: &mut Rng, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let site = rng.below(SITE_COUNT);
            let device = rng.below(DEVICE_COUNT);
            format!("site/{site}/device/{device}/{}", rng.metric())
        })
        .collect()
}

fn trie_benches(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let filters = make_filters(&mut rng);
    let mut trie = TopicTrie::new();
    for (index, filter) in filters.iter().enumerate() {
        trie.insert(filter, index as u32);
    }
    let stream = make_topics(&mut rng, 10 * TOPIC_BATCH);
    let matched: usize = stream
        .iter()
        .map(|topic| {
            let mut count = 0;
            trie.for_each_match(topic, |_| count += 1);
            count
        })
        .sum();
    eprintln!(
        "trie: {} filters, {} nodes, {:.2} matching filters per topic",
        trie.len(),
        trie.node_count(),
        matched as f64 / stream.len() as f64
    );

    let mut group = c.benchmark_group("trie");
    group.throughput(Throughput::Elements(TOPIC_BATCH as u64));
    let mut offset = 0;
    group.bench_function("match_100k_filters", |b| {
        b.iter(|| {
            let mut count = 0u32;
            for topic in &stream[offset..offset + TOPIC_BATCH] {
                trie.for_each_match(topic, |&value| count = count.wrapping_add(value));
            }
            offset = (offset + TOPIC_BATCH) % stream.len();
            black_box(count)
        })
    });

    let churn = make_topics(&mut rng, TOPIC_BATCH);
    group.throughput(Throughput::Elements(TOPIC_BATCH as u64));
    group.bench_function("insert_remove_100k_filters", |b| {
        b.iter(|| {
            for (index, filter) in churn.iter().enumerate() {
                trie.insert(filter, u32::MAX - index as u32);
            }
            for (index, filter) in churn.iter().enumerate() {
                black_box(trie.remove(filter, &(u32::MAX - index as u32)));
            }
        })
    });

    let mut retained = RetainedTree::new();
    for (index, topic) in make_topics(&mut rng, FILTER_COUNT).iter().enumerate() {
        retained.insert(topic, index as u32);
    }
    let probes = make_filters(&mut Rng(7));
    group.throughput(Throughput::Elements(TOPIC_BATCH as u64));
    let mut offset = 0;
    group.bench_function("retained_match_100k_topics", |b| {
        b.iter(|| {
            let mut count = 0u32;
            for filter in &probes[offset..offset + TOPIC_BATCH] {
                retained.for_each_matching(filter, |_, &value| count = count.wrapping_add(value));
            }
            offset = (offset + TOPIC_BATCH) % probes.len();
            black_box(count)
        })
    });
    group.finish();
}

criterion_group!(benches, trie_benches);
criterion_main!(benches);
