//! Helpers shared by the load generator's tests: a Mosquitto started on a free loopback port.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto process on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

/// A port that was free a moment ago (the OS picks it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Waits until something accepts TCP on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> bool {
    let began = Instant::now();
    while began.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Mosquitto {
    /// Starts `/usr/sbin/mosquitto` (or `mosquitto` on the PATH) with a loopback listener.
    pub fn start() -> Mosquitto {
        let binary = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto".to_string()
        } else {
            "mosquitto".to_string()
        };
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "shardmq-loadtest-mosquitto-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
            )
            .expect("write mosquitto.conf");
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto (apt-get install mosquitto; .ci/test does)");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let mut mosquitto = Mosquitto { child, addr, dir };
            if wait_listening(addr, Duration::from_secs(10)) {
                return mosquitto;
            }
            // The port was taken between picking and binding: try another.
            mosquitto.stop();
        }
        panic!("mosquitto did not start listening");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}
