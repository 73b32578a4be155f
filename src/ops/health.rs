//! Which broker threads are running: a flag per shard and per acceptor, set while its thread
//! runs and cleared when it exits, normally or by a panic (the guard's `Drop`). `/healthz`
//! and the systemd watchdog read it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Running flags of the broker's threads.
#[derive(Debug)]
pub struct Liveness {
    shards: Vec<AtomicBool>,
    /// By acceptor number; a reload adds acceptors and retires some (issue 15).
    acceptors: parking_lot::Mutex<Vec<AcceptorState>>,
}

/// An acceptor thread's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcceptorState {
    Running,
    /// Exited while expected to run (or not started yet).
    Down,
    /// A reload removed its listener: it is not expected to run.
    Retired,
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
            acceptors: parking_lot::Mutex::new(vec![AcceptorState::Down; acceptors]),
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

    /// Marks acceptor `id` running until the guard is dropped (a new id: a reload added it).
    pub fn acceptor_guard(self: &Arc<Liveness>, id: usize) -> AliveGuard {
        let mut acceptors = self.acceptors.lock();
        if acceptors.len() <= id {
            acceptors.resize(id + 1, AcceptorState::Down);
        }
        acceptors[id] = AcceptorState::Running;
        drop(acceptors);
        AliveGuard {
            liveness: self.clone(),
            shard: None,
            acceptor: Some(id),
        }
    }

    /// The number of acceptors ever started (the next acceptor id).
    pub fn acceptors_started(&self) -> usize {
        self.acceptors.lock().len()
    }

    /// A reload removed acceptor `id`'s listener: it is no longer expected to run.
    pub fn retire_acceptor(&self, id: usize) {
        if let Some(state) = self.acceptors.lock().get_mut(id) {
            *state = AcceptorState::Retired;
        }
    }

    /// Whether every shard and every acceptor not retired runs.
    pub fn all_running(&self) -> bool {
        self.shards.iter().all(|f| f.load(Ordering::SeqCst))
            && !self.acceptors.lock().contains(&AcceptorState::Down)
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
            .lock()
            .iter()
            .filter(|s| **s == AcceptorState::Running)
            .count()
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        if let Some(id) = self.shard {
            self.liveness.shards[id].store(false, Ordering::SeqCst);
        }
        if let Some(id) = self.acceptor {
            if let Some(state) = self.liveness.acceptors.lock().get_mut(id) {
                if *state == AcceptorState::Running {
                    *state = AcceptorState::Down;
                }
            }
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

    #[test]
    fn a_retired_acceptor_is_not_expected_to_run() {
        let liveness = Liveness::new(1, 0);
        let _shard = liveness.shard_guard(0);
        let first = liveness.acceptor_guard(liveness.acceptors_started());
        let second = liveness.acceptor_guard(liveness.acceptors_started());
        assert_eq!(liveness.acceptors_running(), 2);
        assert!(liveness.all_running());
        // A reload removed the first listener: its thread exits, health stays.
        liveness.retire_acceptor(0);
        drop(first);
        assert!(liveness.all_running());
        assert_eq!(liveness.acceptors_running(), 1);
        // The second stops on its own: unhealthy.
        drop(second);
        assert!(!liveness.all_running());
    }
}
