//! Engine choice measurement for issue 14: per-turn group commit of 64 records (~130 B each,
//! a QoS 1 message to a persistent session) plus 64 deletes of older ones, fsynced per turn.
use std::io::Write;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const RUN: Duration = Duration::from_secs(3);

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("sensors/device-{i:08}/temperature").into_bytes();
    v.resize(130, b'x');
    v
}

fn raw_fsync(dir: &std::path::Path) {
    let mut f = std::fs::File::create(dir.join("raw")).unwrap();
    let buf = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let s = start.elapsed().as_secs_f64();
    println!("raw 4KiB write+fdatasync: {:.0} fsyncs/s", n as f64 / s);
}

fn log(dir: &std::path::Path) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).unwrap();
    let start = Instant::now();
    let (mut turns, mut recs) = (0u64, 0u64);
    let mut buf = Vec::new();
    while start.elapsed() < RUN {
        buf.clear();
        for _ in 0..BATCH {
            let v = value(recs);
            buf.extend_from_slice(&(v.len() as u32 + 9).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&v).to_le_bytes());
            buf.push(1);
            buf.extend_from_slice(&recs.to_le_bytes());
            buf.extend_from_slice(&v);
            // the matching "done" record of an older message
            buf.extend_from_slice(&9u32.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.push(2);
            buf.extend_from_slice(&recs.saturating_sub(BATCH as u64).to_le_bytes());
            recs += 1;
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        turns += 1;
    }
    let s = start.elapsed().as_secs_f64();
    println!("append log: {:.0} commits/s, {:.0} msgs/s", turns as f64 / s, recs as f64 / s);
}

fn redb(dir: &std::path::Path) {
    use redb::{Database, TableDefinition};
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("m");
    let db = Database::create(dir.join("redb")).unwrap();
    let start = Instant::now();
    let (mut turns, mut recs) = (0u64, 0u64);
    while start.elapsed() < RUN {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for _ in 0..BATCH {
                t.insert(recs, value(recs).as_slice()).unwrap();
                if recs >= BATCH as u64 {
                    t.remove(recs - BATCH as u64).unwrap();
                }
                recs += 1;
            }
        }
        tx.commit().unwrap();
        turns += 1;
    }
    let s = start.elapsed().as_secs_f64();
    println!("redb: {:.0} commits/s, {:.0} msgs/s, file {} KiB", turns as f64 / s, recs as f64 / s,
        std::fs::metadata(dir.join("redb")).unwrap().len() / 1024);
}

fn fjall(dir: &std::path::Path) {
    use fjall::{Config, PartitionCreateOptions, PersistMode};
    let ks = Config::new(dir.join("fjall")).open().unwrap();
    let p = ks.open_partition("m", PartitionCreateOptions::default()).unwrap();
    let start = Instant::now();
    let (mut turns, mut recs) = (0u64, 0u64);
    while start.elapsed() < RUN {
        let mut b = ks.batch();
        for _ in 0..BATCH {
            b.insert(&p, recs.to_be_bytes(), value(recs));
            if recs >= BATCH as u64 {
                b.remove(&p, (recs - BATCH as u64).to_be_bytes());
            }
            recs += 1;
        }
        b.commit().unwrap();
        ks.persist(PersistMode::SyncData).unwrap();
        turns += 1;
    }
    let s = start.elapsed().as_secs_f64();
    println!("fjall: {:.0} commits/s, {:.0} msgs/s, threads now {}", turns as f64 / s, recs as f64 / s,
        std::fs::read_dir("/proc/self/task").unwrap().count());
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or("/tmp/enginebench/data".into()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    raw_fsync(&dir);
    log(&dir);
    redb(&dir);
    fjall(&dir);
}
