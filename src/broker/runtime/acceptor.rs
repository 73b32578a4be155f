//! One acceptor thread per listen address. It accepts until `WouldBlock`, enforces
//! `max_connections`, and hands connection k (counted over all listeners) to shard k % N through
//! that shard's control channel, waking the shard if it may be asleep.

use super::inbox::ShardSignal;
use super::stream::Accepted;
use super::{stats::bump, Global, WAKER_TOKEN};
use crossbeam_channel::{SendTimeoutError, Sender};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Listen backlog: deep enough for a storm of connections arriving at once (the kernel caps it
/// at `net.core.somaxconn`, 4,096 on many systems; raise that sysctl for deeper bursts).
const LISTEN_BACKLOG: i32 = 65_535;
const LISTENER_TOKEN: Token = Token(0);

/// Binds a non-blocking listener with SO_REUSEADDR and a deep backlog.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// What a reload changes in a running acceptor (issue 15).
pub struct AcceptorControl {
    /// The listener (src/transport) whose settings new connections get: a reload that changes a
    /// listener's settings but not its address switches it, the socket stays bound.
    pub listener_id: std::sync::atomic::AtomicU16,
    /// Set by a reload that removes the listener: the acceptor exits and its socket closes;
    /// the connections it accepted stay.
    stop: std::sync::atomic::AtomicBool,
    waker: Arc<Waker>,
}

impl AcceptorControl {
    /// Stops the acceptor (a reload removed its listener); returns at once.
    pub fn retire(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake an acceptor to stop it: {e}");
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// An acceptor: its poll, listener and the shards' control channels.
pub struct Acceptor {
    poll: Poll,
    listener: TcpListener,
    /// Which of the broker's listeners this is (src/transport), and the reload's stop flag.
    control: Arc<AcceptorControl>,
    waker: Arc<Waker>,
    global: Arc<Global>,
    targets: Vec<Sender<Accepted>>,
    signals: Arc<[Arc<ShardSignal>]>,
    next_connection: Arc<AtomicUsize>,
}

impl Acceptor {
    pub fn new(
        listener: std::net::TcpListener,
        listener_id: crate::transport::ListenerId,
        global: Arc<Global>,
        targets: Vec<Sender<Accepted>>,
        signals: Arc<[Arc<ShardSignal>]>,
        next_connection: Arc<AtomicUsize>,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER_TOKEN, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let control = Arc::new(AcceptorControl {
            listener_id: std::sync::atomic::AtomicU16::new(listener_id),
            stop: std::sync::atomic::AtomicBool::new(false),
            waker: waker.clone(),
        });
        Ok(Acceptor {
            poll,
            listener,
            control,
            waker,
            global,
            targets,
            signals,
            next_connection,
        })
    }

    /// The waker that interrupts this acceptor (for shutdown).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// What a reload changes in it (issue 15).
    pub fn control(&self) -> Arc<AcceptorControl> {
        self.control.clone()
    }

    fn stopping(&self) -> bool {
        self.global.shutdown.load(Ordering::SeqCst) || self.control.stopped()
    }

    /// Accepts until shutdown. `Err` says why it stopped otherwise: the broker's failure
    /// (`broker::fault`, an acceptor never stops silently).
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(16);
        loop {
            // Checked before sleeping too: an acceptor a reload started may see the shutdown
            // flag set before its waker was known to the stopper.
            if self.stopping() {
                return Ok(());
            }
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll failed: {e}"));
                }
            }
            if self.stopping() {
                return Ok(());
            }
            self.accept_all()?;
        }
    }

    /// Accepts until `WouldBlock` (or shutdown).
    fn accept_all(&mut self) -> Result<(), String> {
        loop {
            let (stream, peer): (mio::net::TcpStream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and back off briefly rather than spin.
                    log::warn!("acceptor: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return Ok(());
                }
            };
            let max = self.global.live.max_connections();
            if !self.global.admit_connection() {
                bump(&self.global.acceptor_counters.connections_rejected);
                log::info!("refused connection from {peer}: max_connections ({max}) reached");
                drop(stream);
                continue;
            }
            // Listener hook (src/transport): the listener's own max_connections.
            let listener_id = self.control.listener_id.load(Ordering::SeqCst);
            let Some(listener) = self.global.listeners.get(listener_id) else {
                self.global.connections_open.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            if !listener.try_open() {
                self.global.connections_open.fetch_sub(1, Ordering::SeqCst);
                bump(&self.global.acceptor_counters.connections_rejected);
                log::info!(
                    "refused connection from {peer}: listener {} max_connections reached",
                    listener.config.address
                );
                continue;
            }
            bump(&self.global.acceptor_counters.connections_accepted);
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("set_nodelay failed for {peer}: {e}");
            }
            let k = self.next_connection.fetch_add(1, Ordering::Relaxed);
            crate::broker::fault::inject_accept(k);
            let target = k % self.targets.len();
            self.hand_over(
                target,
                Accepted {
                    stream,
                    peer,
                    listener: listener_id,
                },
            )?;
            if self.stopping() {
                return Ok(());
            }
        }
    }

    /// Sends to a shard, waiting while its control channel is full (this is backpressure on
    /// accepting, never on a shard). `Err` when the shard is gone while the broker runs.
    fn hand_over(&self, target: usize, mut msg: Accepted) -> Result<(), String> {
        loop {
            match self.targets[target].send_timeout(msg, Duration::from_millis(50)) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.global.shutdown.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    msg = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    if self.global.shutdown.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    return Err(format!("shard {target} is gone"));
                }
            }
        }
        if let Err(e) = self.signals[target].notify() {
            log::error!("acceptor: cannot wake shard {target}: {e}");
        }
        Ok(())
    }
}
