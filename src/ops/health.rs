//! Which broker threads are running: a flag per shard and per acceptor, set while its thread
//! runs and cleared when it exits, normally or by a panic (the guard's `Drop`). `/healthz`
//! and the systemd watchdog read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Running flags of the broker's threads.
#[derive(Debug)]
pub struct Liveness {
    shards: Vec<AtomicBool>,
    acceptors: Vec<AtomicBool>,
}

/// Holds a thread's flag up while alive; clears it when dropped (thread exit or unwind).
#[derive(Debug)]
pub struct AliveGuard {
    liveness: Arc<Liveness>,
    shard: Option<usize>,
    acceptor: Option<usize>,
}

impl Liveness {
    /// Flags for `shards` shard threads and `acceptors` acceptor threads, all down.
    pub fn new(shards: usize, acceptors: usize) -> Arc<Liveness> {
        Arc::new(Liveness {
            shards: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            acceptors: (0..acceptors).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Marks shard `id` running until the guard is dropped. Called before its thread starts,
    /// so that a broker that just started counts as healthy.
    pub fn shard_guard(self: &Arc<Liveness>, id: usize) -> AliveGuard {
        self.shards[id].store(true, Ordering::SeqCst);
        AliveGuard {
            liveness: self.clone(),
            shard: Some(id),
            acceptor: None,
        }
    }

    /// Marks acceptor `id` running until the guard is dropped.
    pub fn acceptor_guard(self: &Arc<Liveness>, id: usize) -> AliveGuard {
        self.acceptors[id].store(true, Ordering::SeqCst);
        AliveGuard {
            liveness: self.clone(),
            shard: None,
            acceptor: Some(id),
        }
    }

    /// Whether every shard and acceptor thread runs.
    pub fn all_running(&self) -> bool {
        self.shards
            .iter()
            .chain(self.acceptors.iter())
            .all(|f| f.load(Ordering::SeqCst))
    }

    /// Running flag of each shard, by id.
    pub fn shards_running(&self) -> Vec<bool> {
        self.shards
            .iter()
            .map(|f| f.load(Ordering::SeqCst))
            .collect()
    }

    /// The number of acceptor threads running.
    pub fn acceptors_running(&self) -> usize {
        self.acceptors
            .iter()
            .filter(|f| f.load(Ordering::SeqCst))
            .count()
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        if let Some(id) = self.shard {
            self.liveness.shards[id].store(false, Ordering::SeqCst);
        }
        if let Some(id) = self.acceptor {
            self.liveness.acceptors[id].store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_or_a_panicking_thread_clears_its_flag() {
        let liveness = Liveness::new(2, 1);
        assert!(!liveness.all_running());
        let a = liveness.shard_guard(0);
        let guard = liveness.shard_guard(1);
        let _c = liveness.acceptor_guard(0);
        assert!(liveness.all_running());
        let thread = std::thread::spawn(move || {
            let _guard = guard;
            panic!("test panic");
        });
        assert!(thread.join().is_err());
        assert_eq!(liveness.shards_running(), vec![true, false]);
        drop(a);
        assert!(!liveness.all_running());
    }
}
