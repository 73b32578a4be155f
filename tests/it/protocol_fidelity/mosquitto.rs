//! Debian's Mosquitto 2.0 (installed by `.ci/test`) as the reference broker: started on a free
//! loopback port with its default limits, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let dir = std::env::temp_dir().join(format!(
                "shardmq-fidelity-{}-{attempt}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let config = dir.join("mosquitto.conf");
            std::fs::write(
                &config,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
            )
            .expect("write mosquitto.conf");
            let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("mosquitto");
            let child = Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn mosquitto (.ci/test installs it)");
            let mut mosquitto = Mosquitto { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = mosquitto.child.try_wait() {
                    break; // the port was taken meanwhile
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return mosquitto;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("mosquitto did not start");
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
