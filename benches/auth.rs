//! Access-control costs (issue 13): one password check per Mosquitto format, and one ACL
//! decision against a 100-rule file, uncached and from a session's decision cache.
//!
//! Run briefly on the shared machine:
//! `cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardmq::auth::{AclCache, AclFile, PasswordHash, ACL_WRITE, PBKDF2_ITERATIONS_DEFAULT};

/// 99 rules that do not match the benchmark's topics, then the one that does: the worst case
/// of a first-match scan.
fn hundred_rules() -> String {
    let mut text = String::new();
    for i in 0..99 {
        text.push_str(&format!("topic readwrite site/{i}/+/telemetry/#\n"));
    }
    text.push_str("topic readwrite bench/#\n");
    text
}

fn password_checks(c: &mut Criterion) {
    let pbkdf2 = PasswordHash::pbkdf2(b"secret", b"0123456789ab", PBKDF2_ITERATIONS_DEFAULT);
    c.bench_function("password $7$ 101 iterations", |b| {
        b.iter(|| pbkdf2.matches(black_box(b"secret")))
    });
    let sha512 = PasswordHash::sha512(b"secret", b"0123456789ab");
    c.bench_function("password $6$", |b| {
        b.iter(|| sha512.matches(black_box(b"secret")))
    });
}

fn acl_decisions(c: &mut Criterion) {
    let acl = AclFile::parse(&hundred_rules()).expect("rules");
    let rules = acl.rules_for(None, "client");
    c.bench_function("acl 100 rules uncached", |b| {
        b.iter(|| rules.allows(black_box("bench/p2p/7"), ACL_WRITE))
    });
    let mut cache = AclCache::default();
    cache.check("bench/p2p/7", ACL_WRITE, || true);
    cache.check("bench/p2p/8", ACL_WRITE, || true);
    c.bench_function("acl cached, same topic as last", |b| {
        b.iter(|| cache.check(black_box("bench/p2p/8"), ACL_WRITE, || unreachable!()))
    });
    let topics = ["bench/p2p/7", "bench/p2p/8"];
    let mut turn = 0;
    c.bench_function("acl cached, alternating topics", |b| {
        b.iter(|| {
            turn ^= 1;
            cache.check(black_box(topics[turn]), ACL_WRITE, || unreachable!())
        })
    });
}

criterion_group!(benches, password_checks, acl_decisions);
criterion_main!(benches);
