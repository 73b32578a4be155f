//! The broker process's main thread: starts the broker and the operations services, then waits
//! for signals and timers.
//!
//! - SIGINT, SIGTERM: graceful shutdown.
//! - SIGHUP: reload (re-read the configuration file and flags, validate it all, apply what can
//!   change while running, log the rest as needing a restart; a failed reload changes nothing).
//! - SIGUSR1: reopen the log file.
//! - every `sys_interval_secs`: publish the `$SYS` tree.
//! - systemd: `READY=1` once the listeners are bound, `WATCHDOG=1` every half watchdog period
//!   while every shard thread runs and has turned its loop since the last ping (the shards are
//!   woken once per period so that idle ones turn too), `RELOADING=1` / `STOPPING=1`.

use super::http::MetricsServer;
use super::logging::LogControl;
use super::observer::Observer;
use super::reload;
use super::sys::SysTree;
use crate::broker::{Broker, Config};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the main thread checks whether a broker thread failed (`broker::fault`).
const FAILURE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Reads the configuration again for a reload: the new configuration and its warnings, or
/// every error found.
pub type Reloader = Box<dyn FnMut() -> Result<(Config, Vec<String>), Vec<String>>>;

/// What `run` needs besides the configuration.
pub struct Services {
    pub reload: Reloader,
    pub log: Arc<LogControl>,
    /// `--log-level`, which wins over the file on every reload.
    pub level_override: Option<log::LevelFilter>,
}

/// Writes the pid file now and removes it when dropped.
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn create(path: Option<&std::path::Path>) -> io::Result<PidFile> {
        if let Some(path) = path {
            std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
                io::Error::new(e.kind(), format!("pid file {}: {e}", path.display()))
            })?;
        }
        Ok(PidFile(path.map(Into::into)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The systemd watchdog: pings only while every shard advances.
struct Watchdog {
    period: Duration,
    turns: Vec<u64>,
}

impl Watchdog {
    /// Half the period systemd asks for (`WATCHDOG_USEC`), when it asks. Read here rather
    /// than with `sd_notify::watchdog_enabled`, which needs `WATCHDOG_PID`: sd_watchdog_enabled(3)
    /// says an unset `WATCHDOG_PID` means this process, and a set one must be ours.
    fn from_env() -> Option<Watchdog> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        (usec > 0).then(|| Watchdog {
            period: Duration::from_micros(usec / 2).max(Duration::from_millis(100)),
            turns: Vec::new(),
        })
    }

    fn tick(&mut self, observer: &Observer) {
        let turns = observer.loop_turns();
        let advanced = self.turns.is_empty()
            || turns
                .iter()
                .zip(&self.turns)
                .all(|(now, before)| now > before);
        if observer.healthy() && advanced {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            log::error!("watchdog: a shard stopped or did not turn its loop; not pinging systemd");
        }
        self.turns = turns;
        observer.wake_shards();
    }
}

fn notify(state: &[sd_notify::NotifyState]) {
    // Outside systemd (no NOTIFY_SOCKET) this does nothing.
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!("systemd notify failed: {e}");
    }
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(config: Config, mut services: Services) -> io::Result<()> {
    use mio::{Events, Interest, Poll, Token};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    use signal_hook_mio::v1_0::Signals;

    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    poll.registry()
        .register(&mut signals, Token(0), Interest::READABLE)?;
    let pid_file = PidFile::create(config.ops.pid_file.as_deref())?;
    let mut handle = Broker::start(config.clone())?;
    let observer = handle.observer();
    let _metrics = match config.ops.metrics_listen {
        Some(addr) => Some(MetricsServer::start(addr, observer.clone())?),
        None => None,
    };
    notify(&[sd_notify::NotifyState::Ready]);
    let mut watchdog = Watchdog::from_env();
    let mut next_watchdog = Instant::now();
    let mut sys = SysTree::new();
    let mut running = config;
    let mut next_sys = Instant::now();
    let mut events = Events::with_capacity(4);
    'wait: loop {
        let now = Instant::now();
        if running.ops.sys_interval_secs > 0 && now >= next_sys {
            sys.publish(&observer, now);
            next_sys = now + Duration::from_secs(running.ops.sys_interval_secs);
        }
        if let Some(dog) = watchdog.as_mut() {
            if now >= next_watchdog {
                dog.tick(&observer);
                next_watchdog = now + dog.period;
            }
        }
        let mut deadline = None;
        if running.ops.sys_interval_secs > 0 {
            deadline = Some(next_sys);
        }
        if watchdog.is_some() {
            deadline = Some(deadline.map_or(next_watchdog, |d: Instant| d.min(next_watchdog)));
        }
        let timeout = deadline.map_or(FAILURE_CHECK_INTERVAL, |d| {
            d.saturating_duration_since(Instant::now())
                .min(FAILURE_CHECK_INTERVAL)
        });
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(failure) = handle.failure() {
            // Fault isolation policy (`broker::fault`): a bug outside a contained step stops
            // the broker; the process exits non-zero at once so that a supervisor restarts it.
            notify(&[sd_notify::NotifyState::Stopping]);
            eprintln!(
                "shardmq: fatal: {failure}; exiting with status {} so that a supervisor \
                 restarts the broker",
                crate::broker::fault::EXIT_STATUS_FAILURE
            );
            drop(pid_file);
            std::process::exit(i32::from(crate::broker::fault::EXIT_STATUS_FAILURE));
        }
        for signal in signals.pending() {
            match signal {
                SIGHUP => {
                    notify(&[sd_notify::NotifyState::Reloading]);
                    let (next, valid) = reload_once(&running, &mut services, &mut handle);
                    running = next;
                    if valid {
                        // Transport hook (src/transport): TLS listeners re-read their
                        // certificate and key files (renewed in place); a file that fails keeps
                        // the old one and is logged. Only after the configuration checked: a
                        // failed reload changes nothing.
                        let errors = handle.reload_tls();
                        if !errors.is_empty() {
                            log::error!(
                                "reload: {} TLS listener(s) kept their old certificates",
                                errors.len()
                            );
                        }
                        // Access control (issue 13): the password, SCRAM and ACL files are
                        // re-read (renewed in place); one that fails keeps its previous version.
                        let errors = observer.reload_auth();
                        if !errors.is_empty() {
                            log::error!(
                                "reload: {} access-control file(s) kept their previous version",
                                errors.len()
                            );
                        }
                    }
                    if running.ops.sys_interval_secs > 0 {
                        next_sys = next_sys.min(
                            Instant::now() + Duration::from_secs(running.ops.sys_interval_secs),
                        );
                    }
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                SIGUSR1 => match services.log.reopen() {
                    Ok(()) => log::info!("log file reopened"),
                    Err(e) => log::error!("cannot reopen the log file: {e}"),
                },
                _ => {
                    log::info!("signal {signal}: shutting down");
                    break 'wait;
                }
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    handle.shutdown();
    let stats = handle.stats();
    handle.join();
    log::debug!("final counters: {stats:?}");
    drop(pid_file);
    Ok(())
}

/// One reload: the configuration the broker runs afterwards (`running` unchanged on failure)
/// and whether the new configuration was applied (then the files it names are re-read too).
pub fn reload_once(
    running: &Config,
    services: &mut Services,
    handle: &mut crate::broker::BrokerHandle,
) -> (Config, bool) {
    let failed = |errors: &[String]| {
        for error in errors {
            log::error!("reload: {error}");
        }
        log::error!("reload failed: configuration unchanged");
    };
    let (new, warnings) = match (services.reload)() {
        Ok(loaded) => loaded,
        Err(errors) => {
            failed(&errors);
            return (running.clone(), false);
        }
    };
    for warning in &warnings {
        log::warn!("reload: {warning}");
    }
    // Broker side first: it is the part that can still fail (a port that cannot be bound, a
    // listener's certificate that does not load), and then nothing changed.
    let (next, listeners) = match handle.reconfigure(&new) {
        Ok(done) => done,
        Err(error) => {
            failed(&[error]);
            return (running.clone(), false);
        }
    };
    let changes = reload::diff(running, &new);
    if changes.is_empty() {
        log::info!("reload: no change");
    }
    for change in &changes {
        if change.live {
            log::info!(
                "reload: {} changed from {} to {} (applied)",
                change.field,
                change.old,
                change.new
            );
        } else {
            log::warn!(
                "reload: {} changed from {} to {}: needs a restart (not applied)",
                change.field,
                change.old,
                change.new
            );
        }
    }
    for (what, addresses) in [
        ("started", &listeners.added),
        ("switched to new settings", &listeners.changed),
        ("stopped (its connections stay)", &listeners.removed),
    ] {
        for address in addresses {
            log::info!("reload: listener {address} {what}");
        }
    }
    services.log.apply(&next.ops, services.level_override);
    if !changes.is_empty() {
        log::info!(
            "reload done: {} applied, {} need a restart",
            changes.iter().filter(|c| c.live).count(),
            changes.iter().filter(|c| !c.live).count()
        );
    }
    (next, true)
}
