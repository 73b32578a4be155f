//! Reload (issue 15): a new configuration applied to a running broker without dropping a
//! client.
//!
//! All or nothing: every listener to add is bound and its certificates and access files are
//! loaded before anything changes, so a port that cannot be bound or a file that does not load
//! fails the reload with the running configuration untouched. Then, in this order:
//!
//! - listeners: a listener whose settings are unchanged keeps running; one whose address stays
//!   but whose settings changed keeps its bound socket and switches to the new settings (new
//!   connections get them, open ones keep theirs); a new one starts accepting; a removed one
//!   stops accepting (its socket closes) while its open connections stay;
//! - the live limits (`max_connections`, `max_sessions`, `max_retained_messages`);
//! - the configuration itself (`Global::set_config`): each shard takes it at the start of its
//!   next turn (`ShardCore::set_config` says which settings reach existing connections).
//!
//! Settings that need a restart (`ops::reload::RESTART_FIELDS`) keep their running values.

use super::{spawn_acceptor, BrokerHandle, Config, RunningAcceptor};
use crate::transport::{Listener, ListenerConfig};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// What a reload does to one listener of the new configuration.
enum Step {
    /// Unchanged: the running acceptor `index` (into `BrokerHandle::acceptors`).
    Keep(usize),
    /// Same address, new settings: acceptor `index` switches to the new listener.
    Switch(usize, Box<Listener>),
    /// New: bound here, started on commit.
    Start(Box<Listener>, std::net::TcpListener, SocketAddr),
}

/// What a reload did to the listeners, for its log lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenerChanges {
    /// Bound addresses of the listeners started.
    pub added: Vec<SocketAddr>,
    /// Bound addresses of the listeners whose settings changed.
    pub changed: Vec<SocketAddr>,
    /// Bound addresses of the listeners stopped.
    pub removed: Vec<SocketAddr>,
}

impl BrokerHandle {
    /// Applies `new` to the running broker (a reload): see the module docs. Returns the
    /// configuration now in force (`new` with the restart-only settings as they run) and what
    /// changed in the listeners; on error nothing changed.
    pub fn reconfigure(&mut self, new: &Config) -> Result<(Config, ListenerChanges), String> {
        new.validate()?;
        let running = self.global.config();
        let next = crate::ops::reload::apply_live(&running, new);
        let steps = self.plan_listeners(&next)?;
        let changes = self.commit_listeners(steps)?;
        self.global.live.apply(&next);
        self.global.retained.set_max(next.max_retained_messages);
        self.global.set_config(next.clone());
        for signal in self.signals.iter() {
            if let Err(e) = signal.notify() {
                log::error!("reload: cannot wake a shard: {e}");
            }
        }
        Ok((next, changes))
    }

    /// Matches the new listeners to the running acceptors, loads and binds what is new. Fails
    /// (having changed nothing; sockets bound here close when dropped) on the first listener
    /// that cannot be loaded or bound.
    fn plan_listeners(&self, next: &Config) -> Result<Vec<Step>, String> {
        let wanted = next.effective_listeners();
        let mut taken = vec![false; self.acceptors.len()];
        let mut steps = Vec::with_capacity(wanted.len());
        let find = |test: &dyn Fn(&RunningAcceptor) -> bool, taken: &mut Vec<bool>| {
            let index = (0..self.acceptors.len()).find(|&i| !taken[i] && test(&self.acceptors[i]));
            if let Some(i) = index {
                taken[i] = true;
            }
            index
        };
        for config in wanted {
            if let Some(i) = find(&|a| a.config == config, &mut taken) {
                steps.push(Step::Keep(i));
                continue;
            }
            // The address as configured (port 0 included: the port it got stays).
            let same_address = |a: &RunningAcceptor| a.config.address == config.address;
            let opened = Box::new(open(next, config.clone())?);
            if let Some(i) = find(&same_address, &mut taken) {
                steps.push(Step::Switch(i, opened));
                continue;
            }
            let socket =
                super::runtime::acceptor::bind(config.address).map_err(|e| e.to_string())?;
            let address = socket.local_addr().map_err(|e| e.to_string())?;
            steps.push(Step::Start(opened, socket, address));
        }
        let new_ids = steps.iter().filter(|s| !matches!(s, Step::Keep(_))).count();
        if new_ids > self.global.listeners.free() {
            return Err(format!(
                "{new_ids} new listener(s), but only {} listener ids are left over the broker's \
                 life: restart it",
                self.global.listeners.free()
            ));
        }
        Ok(steps)
    }

    /// Carries out a plan. Cannot fail but for a thread that cannot be started (an operating
    /// error: what was done until then stays, the error says so).
    fn commit_listeners(&mut self, steps: Vec<Step>) -> Result<ListenerChanges, String> {
        let mut old: Vec<Option<RunningAcceptor>> = self.acceptors.drain(..).map(Some).collect();
        let mut changes = ListenerChanges::default();
        let mut next = Vec::with_capacity(steps.len());
        let mut failure = None;
        for step in steps {
            match step {
                Step::Keep(i) => next.extend(old[i].take()),
                Step::Switch(i, mut listener) => {
                    let Some(mut running) = old[i].take() else {
                        continue;
                    };
                    let config = listener.config.clone();
                    // The connections accepted before count against the new limit too.
                    let previous = running.control.listener_id.load(Ordering::SeqCst);
                    if let Some(old_listener) = self.global.listeners.get(previous) {
                        listener.connections_open = old_listener.connections_open.clone();
                    }
                    let id = self.global.listeners.add(*listener)?;
                    let previous = running.control.listener_id.swap(id, Ordering::SeqCst);
                    self.stop_accepting(previous);
                    running.config = config;
                    changes.changed.push(running.address);
                    next.push(running);
                }
                Step::Start(listener, socket, address) => {
                    let config = listener.config.clone();
                    let id = self.global.listeners.add(*listener)?;
                    let started = spawn_acceptor(
                        &self.global,
                        &self.kit,
                        &self.signals,
                        &self.liveness,
                        socket,
                        id,
                        address,
                    );
                    match started {
                        Ok((thread, running, waker)) => {
                            if let Some(stopper) = self.global.stopper.get() {
                                stopper.acceptor_wakers.lock().push(waker);
                            }
                            self.threads.push(thread);
                            changes.added.push(address);
                            next.push(RunningAcceptor { config, ..running });
                        }
                        Err(e) => {
                            self.stop_accepting(id);
                            failure = Some(format!("cannot start the acceptor of {address}: {e}"));
                        }
                    }
                }
            }
        }
        for running in old.into_iter().flatten() {
            self.stop_accepting(running.control.listener_id.load(Ordering::SeqCst));
            self.liveness.retire_acceptor(running.liveness_id);
            running.control.retire();
            changes.removed.push(running.address);
        }
        self.local_addrs = next.iter().map(|a| a.address).collect();
        self.acceptors = next;
        // The shutdown may have begun while acceptors were starting: make them see it.
        if self.global.shutdown.load(Ordering::SeqCst) {
            self.global.stop();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(changes),
        }
    }

    /// Marks listener `id` as no longer accepting (its TLS files are not reloaded any more).
    fn stop_accepting(&self, id: crate::transport::ListenerId) {
        if let Some(listener) = self.global.listeners.get(id) {
            listener.accepting.store(false, Ordering::SeqCst);
        }
    }
}

/// A listener of `config` loaded (certificates, own access control), as an error line.
fn open(config: &Config, listener: ListenerConfig) -> Result<Listener, String> {
    super::open_listener(config, listener).map_err(|e| e.to_string())
}
