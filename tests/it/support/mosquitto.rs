//! A Mosquitto broker process on a free 127.0.0.1 port, for the tests that use Mosquitto as the
//! reference broker (our client against it, the interop scripts proved against it).
//!
//! A missing `mosquitto` makes the test fail with a message that says what to install
//! (`.ci/test` installs it); it never skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a starting or restarting Mosquitto may take to listen (loaded 2-core machines).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes each Mosquitto's configuration directory unique within this test process.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn mosquitto_binary() -> PathBuf {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
    // Otherwise rely on PATH; a missing binary fails the test with a clear message.
    .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// A Mosquitto process listening on 127.0.0.1:`port`, killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// Lines appended to the generated `mosquitto.conf` (kept for `restart`).
    extra_config: String,
    dir: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto with default settings on a free port.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// Starts Mosquitto on a free port (retrying if the port was taken meanwhile), with
    /// `extra_config` (whole `mosquitto.conf` lines) added to the listener and anonymous access.
    pub fn start_with(extra_config: &str) -> Mosquitto {
        for _ in 0..5 {
            if let Some(mosquitto) = Mosquitto::try_start_on(free_port(), extra_config) {
                return mosquitto;
            }
        }
        panic!("mosquitto did not start (is it installed? .ci/test installs it)");
    }

    /// Starts Mosquitto on this port; `None` if it does not come up.
    pub fn try_start_on(port: u16, extra_config: &str) -> Option<Mosquitto> {
        let dir = std::env::temp_dir().join(format!(
            "shardmq-test-mosquitto-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}"
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto (is it installed? .ci/test installs it)");
        let mut mosquitto = Mosquitto {
            child: Some(child),
            port,
            extra_config: extra_config.to_string(),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = mosquitto.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return None; // exited: the port was probably taken
                }
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(mosquitto);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the broker and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new broker on the same port (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(mut fresh) = Mosquitto::try_start_on(self.port, &self.extra_config) {
                self.child = fresh.child.take();
                return;
            }
            assert!(Instant::now() < deadline, "mosquitto did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
