//! Fault isolation: what a bug (a panic) in a broker thread does. A bug must never leave a
//! half-alive broker, one whose process runs while a shard or an acceptor is gone.
//!
//! The policy:
//!
//! 1. **Contained to one connection, only where the shard's state provably stays
//!    consistent.** Today that is one step: decoding a frame (`codec::decode_frame`), a pure
//!    function of the frame's bytes that changes no shard state (the frame was split off the
//!    connection's read buffer before, and nothing is kept from a decode that did not return).
//!    A panic there is caught ([`contain`]), counted (`Stats::connection_panics`), logged at
//!    error level with the offending input (the frame's length and its first bytes in hex) and
//!    the panic's message and location, and that connection is closed (MQTT 5: DISCONNECT
//!    0x83). Every other connection, on that shard too, is unaffected.
//! 2. **Everywhere else the broker stops.** A panic while handling a packet, a timer, a mesh
//!    message or a socket may leave sessions, subscriptions, the routing replica or the byte
//!    accounting half-updated, shared with other shards: catching it would keep a broker whose
//!    state nobody can vouch for. The thread wrapper ([`run_thread`]) around every shard and
//!    acceptor thread records the first failure (thread name and cause, readable with
//!    `BrokerHandle::failure`), logs it at error level and stops the whole broker (acceptors
//!    close their listeners, the other shards disconnect their clients), so a library user
//!    sees a stopped broker with its cause, never a half-alive one. The `shardmq` binary exits
//!    with status 70 (`EX_SOFTWARE`) and the message `shardmq: fatal: ...` on stderr as soon as
//!    it sees the failure, so that a supervisor (systemd `Restart=on-failure`, Kubernetes, ...)
//!    restarts it.
//! 3. **An acceptor never stops silently.** An acceptor that returns for any reason but
//!    shutdown (its poll failed, the shard it hands connections to is gone) is a failure as in
//!    2, like a panic; so is a shard whose poll fails.
//!
//! Built with `panic = "abort"` (not this crate's profiles), every panic ends the process with
//! SIGABRT instead: still never a half-alive broker, but nothing is contained.
//!
//! Panics are the only bugs this covers; a peer's fault is a reason code (no `debug_assert!`
//! on what a peer controls), an operating error (`io::Error`) is handled where it occurs.
//!
//! Test-only fault injection ([`inject_decode`], [`inject_handle`], [`inject_accept`]): in
//! debug builds only (`cfg(debug_assertions)`), the environment variable
//! `SHARDMQ_FAULT_INJECT`, read once, makes the broker panic on purpose, so that tests can run
//! the real `shardmq` binary and show each outcome: `decode:MARKER` panics while decoding any
//! frame containing the bytes MARKER (contained), `handle:CLIENT_ID` panics while handling the
//! CONNECT of that client id (the broker stops, the binary exits 70), `accept:N` panics in the
//! acceptor on its N-th connection. Why this form: the tests must drive the real binary,
//! which cargo builds for integration tests in the test profile (debug) without `cfg(test)`,
//! and a cargo feature would have to be enabled by hand in every test run. Release builds,
//! what operators run, compile the hooks out entirely; in a debug build only whoever starts
//! the process (never a client) can set the variable.

use super::Global;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Once};

/// The exit status of the `shardmq` binary after a broker failure (`EX_SOFTWARE`, sysexits.h:
/// an internal software error).
pub const EXIT_STATUS_FAILURE: u8 = 70;

/// Bytes of the offending input shown in the log line of a contained panic.
const LOGGED_INPUT_BYTES_MAX: usize = 64;

thread_local! {
    /// Set while this thread runs a [`contain`]ed step.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
    /// The message and location of the panic of the contained step, left by the panic hook.
    static CONTAINED_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) the panic hook that keeps a contained panic out of stderr (it is
/// logged by whoever contained it, with its input) and passes every other panic to the hook
/// installed before, so that a host process's panics print as they did.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                // (The hook's argument type is not named: its name changed in Rust 1.81, after
                // this crate's minimum version.)
                let location = info
                    .location()
                    .map_or_else(|| "an unknown location".into(), ToString::to_string);
                let message = format!("{} at {location}", payload_text(info.payload()));
                CONTAINED_PANIC.with(|slot| *slot.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
}

/// The text of a panic's payload (`panic!` with a literal or a format).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Runs `step`, which must leave no shared state changed if it panics (policy 1): its panic is
/// caught and returned as its message and location. Inline: it wraps the decoding of every
/// packet, and an out-of-line copy (as codegen-unit partitioning may choose) cost ~150
/// instructions per packet in the issue 17 profile.
#[inline(always)]
pub fn contain<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.with(|flag| flag.set(true));
    // AssertUnwindSafe: the callers' steps are pure (they only read what they borrow, and a
    // buffer they split from is discarded with the connection), as the policy requires.
    let result = panic::catch_unwind(AssertUnwindSafe(step));
    CONTAINED.with(|flag| flag.set(false));
    result.map_err(|payload| {
        CONTAINED_PANIC
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| payload_text(payload.as_ref()).to_string())
    })
}

/// The offending input of a contained panic, for its log line: the length and the first
/// bytes in hex.
pub struct InputSample<'a>(pub &'a [u8]);

impl fmt::Display for InputSample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes:", self.0.len())?;
        for byte in self.0.iter().take(LOGGED_INPUT_BYTES_MAX) {
            write!(f, " {byte:02x}")?;
        }
        if self.0.len() > LOGGED_INPUT_BYTES_MAX {
            f.write_str(" ...")?;
        }
        Ok(())
    }
}

/// Why the broker stopped: the first broker thread that panicked or stopped abnormally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerFailure {
    /// The thread's name (`shard-0`, `acceptor-127.0.0.1:1883`).
    pub thread: String,
    /// The panic's message, or why the thread stopped.
    pub cause: String,
}

impl fmt::Display for BrokerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broker thread {} failed: {}", self.thread, self.cause)
    }
}

/// Runs a shard's or an acceptor's body (policy 2 and 3): a panic, or an `Err` (a stop other
/// than shutdown), records the broker's failure and stops the broker.
pub fn run_thread(global: &Arc<Global>, body: impl FnOnce() -> Result<(), String>) {
    let cause = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return,
        Ok(Err(cause)) => cause,
        Err(payload) => format!("panicked: {}", payload_text(payload.as_ref())),
    };
    let thread = std::thread::current()
        .name()
        .unwrap_or("a broker thread")
        .to_string();
    let failure = BrokerFailure { thread, cause };
    log::error!("{failure}; stopping the broker");
    global.failure.lock().get_or_insert(failure);
    global.stop();
}

/// What `SHARDMQ_FAULT_INJECT` asks for (debug builds only).
#[cfg(debug_assertions)]
enum Injection {
    Decode(Vec<u8>),
    Handle(String),
    Accept(usize),
}

#[cfg(debug_assertions)]
fn injection() -> Option<&'static Injection> {
    static INJECTION: std::sync::OnceLock<Option<Injection>> = std::sync::OnceLock::new();
    INJECTION
        .get_or_init(|| {
            let value = std::env::var("SHARDMQ_FAULT_INJECT").ok()?;
            let (site, argument) = value.split_once(':')?;
            let injection = match site {
                "decode" => Injection::Decode(argument.as_bytes().to_vec()),
                "handle" => Injection::Handle(argument.to_string()),
                "accept" => Injection::Accept(argument.parse().ok()?),
                _ => return None,
            };
            log::warn!("fault injection armed: SHARDMQ_FAULT_INJECT={value}");
            Some(injection)
        })
        .as_ref()
}

/// Test-only: panics while decoding a frame that contains the `decode:` marker.
#[inline]
pub fn inject_decode(_frame: &[u8]) {
    #[cfg(debug_assertions)]
    if let Some(Injection::Decode(marker)) = injection() {
        if !marker.is_empty() && _frame.windows(marker.len()).any(|w| w == marker.as_slice()) {
            panic!("injected fault: decoding a frame that contains the marker");
        }
    }
}

/// Test-only: panics while handling the CONNECT of the `handle:` client id.
#[inline]
pub fn inject_handle(_packet: &crate::codec::Packet) {
    #[cfg(debug_assertions)]
    if let (Some(Injection::Handle(client_id)), crate::codec::Packet::Connect(connect)) =
        (injection(), _packet)
    {
        if connect.client_id.as_str() == client_id {
            panic!("injected fault: handling the CONNECT of {client_id}");
        }
    }
}

/// Test-only: panics in the acceptor on its `accept:N`-th connection (counted from 1).
#[inline]
pub fn inject_accept(_accepted_so_far: usize) {
    #[cfg(debug_assertions)]
    if let Some(Injection::Accept(n)) = injection() {
        if _accepted_so_far + 1 == *n {
            panic!("injected fault: accepting connection {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_returns_its_message_and_location() {
        install_panic_hook();
        let result: Result<(), String> = contain(|| panic!("bad frame {}", 7));
        let message = result.expect_err("caught");
        assert!(message.starts_with("bad frame 7 at "), "{message}");
        assert!(message.contains("fault.rs"), "{message}");
        assert_eq!(contain(|| 5), Ok(5));
        assert!(!CONTAINED.with(Cell::get), "the flag is cleared");
    }

    /// What `BrokerHandle::failure` reports: the first failed thread and its cause; the broker
    /// is told to stop.
    #[test]
    fn a_failed_thread_records_the_failure_and_stops_the_broker() {
        install_panic_hook();
        let global = Global::new(crate::broker::Config::default(), 0).expect("global");
        let run = |name: &str, body: fn() -> Result<(), String>| {
            let global = global.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run_thread(&global, body))
                .expect("spawn")
                .join()
                .expect("run_thread returns");
        };
        run("shard-7", || Ok(()));
        assert!(global.failure.lock().is_none());
        assert!(!global.shutdown.load(std::sync::atomic::Ordering::SeqCst));
        run("shard-7", || panic!("a bug"));
        run("acceptor-x", || Err("poll failed".into()));
        assert_eq!(
            global.failure.lock().clone(),
            Some(BrokerFailure {
                thread: "shard-7".into(),
                cause: "panicked: a bug".into()
            }),
            "the first failure is kept"
        );
        assert!(global.shutdown.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn input_samples_are_cut() {
        assert_eq!(InputSample(&[0x30, 0x02]).to_string(), "2 bytes: 30 02");
        let long = InputSample(&[0xab; 100]).to_string();
        assert!(long.starts_with("100 bytes: ab ab") && long.ends_with(" ..."));
        assert_eq!(long.matches("ab").count(), LOGGED_INPUT_BYTES_MAX);
    }
}
