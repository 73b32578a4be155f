//! Shared by the interop integration tests: runs the Python conformance scripts of
//! `tests/interop/` against a broker on 127.0.0.1 with a time limit, and starts a Mosquitto to
//! prove the scripts themselves.
//!
//! A missing `python3`, `paho-mqtt` 2.x or `mosquitto` makes the test fail with a message that
//! says what to install (`.ci/test` installs all three); it never skips.

use crate::support::mosquitto::Mosquitto;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a single script may run: the slowest (paho_v5.py) takes about 90 s.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// What a script run produced.
pub struct ScriptRun {
    pub script: String,
    /// The exit code; `None` when the script was killed at the time limit.
    pub code: Option<i32>,
    pub output: String,
}

impl ScriptRun {
    pub fn passed(&self) -> bool {
        self.code == Some(0)
    }

    /// Lines starting with `FAIL `.
    pub fn failures(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|line| line.starts_with("FAIL "))
            .collect()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.output
            .lines()
            .filter(|line| line.starts_with(prefix))
            .count()
    }

    /// The run reached its summary line (the script did not crash or hang).
    pub fn completed(&self) -> bool {
        self.output.lines().any(|line| line.starts_with("SUMMARY "))
    }

    /// Panics with the whole output unless every scenario passed.
    pub fn assert_passed(&self) {
        assert!(
            self.passed() && self.completed() && self.count("PASS ") > 0,
            "{} failed (exit {:?}); failing scenarios:\n{}\n--- full output ---\n{}",
            self.script,
            self.code,
            self.failures().join("\n"),
            self.output
        );
        println!("{}", self.output);
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// Fails the test unless `python3` (and, with `need_paho`, paho-mqtt 2.x) is installed.
pub fn require_python(need_paho: bool) {
    let check = if need_paho {
        "import sys, paho.mqtt, paho.mqtt.client as c; \
         sys.exit(0 if hasattr(c, 'CallbackAPIVersion') else 3)"
    } else {
        "import sys; sys.exit(0 if sys.version_info >= (3, 8) else 3)"
    };
    let status = Command::new("python3")
        .args(["-c", check])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(_) if need_paho => panic!(
            "paho-mqtt 2.x is missing for python3: run .ci/test, or \
             `python3 -m pip install 'paho-mqtt>=2,<3'`"
        ),
        Ok(_) => panic!("python3 >= 3.8 is required by the interop tests"),
        Err(err) => panic!("python3 is required by the interop tests (run .ci/test): {err}"),
    }
}

/// Runs `tests/interop/<script>` against `addr`, killing it at `SCRIPT_TIMEOUT`.
pub fn run_script(script: &str, addr: SocketAddr, shards_hint: usize, extra: &[&str]) -> ScriptRun {
    let path = interop_dir().join(script);
    assert!(path.is_file(), "missing script {}", path.display());
    let port = addr.port().to_string();
    let shards = shards_hint.to_string();
    let mut child = Command::new("python3")
        .arg(&path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--shards-hint",
            &shards,
        ])
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start python3 {}: {err}", path.display()));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let code = wait_with_timeout(&mut child, SCRIPT_TIMEOUT);
    let mut output = stdout.join().expect("stdout reader");
    let errors = stderr.join().expect("stderr reader");
    if !errors.trim().is_empty() {
        output.push_str("--- stderr ---\n");
        output.push_str(&errors);
    }
    if code.is_none() {
        output.push_str(&format!("--- killed after {SCRIPT_TIMEOUT:?} ---\n"));
    }
    ScriptRun {
        script: script.to_string(),
        code,
        output,
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.code().unwrap_or(-1)),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Scenarios Mosquitto 2.0.11 is known to fail (documented deviations from the specification,
/// see SCENARIOS.md); the Mosquitto runs pass them as `--known-deviation`.
pub fn mosquitto_deviations(script: &str) -> Vec<&'static str> {
    let names: &[&str] = match script {
        "paho_v311.py" => &["overlapping_subscriptions"],
        "paho_v5.py" => &[
            "flow_control_server_to_client",
            "flow_control_client_to_server",
            "session_takeover",
            "shared_subscription_no_local_is_error",
            "shared_subscription_invalid_names",
            "message_expiry_behind_flow_control",
            // What client_test5.py asserts beyond the specification: Mosquitto fails it too.
            "paho_suite_server_topic_alias",
            "paho_suite_server_keep_alive",
            "paho_suite_nosubscribe_topic",
        ],
        "raw_protocol.py" => &[
            "server_only_packets_from_client",
            "publish_v5_subscription_identifier_from_client",
            "publish_v5_wildcard_response_topic",
            "reserved_fixed_header_flags",
        ],
        _ => &[],
    };
    names.to_vec()
}

/// Runs `script` against a fresh Mosquitto and asserts that everything but the documented
/// deviations passed.
pub fn run_against_mosquitto(script: &str, extra: &[&str]) {
    // A bounded Maximum Packet Size: the Mosquitto setting the scripts were proved with.
    let mosquitto = Mosquitto::start_with("max_packet_size 65536\n");
    let mut args: Vec<&str> = extra.to_vec();
    for name in mosquitto_deviations(script) {
        args.push("--known-deviation");
        args.push(name);
    }
    let run = run_script(script, mosquitto.addr(), 1, &args);
    run.assert_passed();
}

/// Shards of the broker the interop tests start: two, so that consecutive connections land on
/// different shards (round-robin in accept order) and cross-shard paths are exercised.
pub const SHARDMQ_SHARDS: usize = 2;

/// Starts shardmq in-process: two shards, 127.0.0.1 port 0, default limits otherwise, except
/// Server Keep Alive 60 s for MQTT 5 clients: the Paho test broker's setting, which
/// client_test5.py `test_server_keep_alive` expects (a v5-only cap; MQTT 3.x clients are not
/// affected).
pub fn start_shardmq() -> shardmq::broker::BrokerHandle {
    let config = shardmq::broker::Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        shards: SHARDMQ_SHARDS,
        server_keep_alive_secs: Some(60),
        ..shardmq::broker::Config::default()
    };
    shardmq::broker::Broker::start(config).expect("start shardmq")
}

/// Runs `script` against a fresh in-process shardmq.
pub fn run_against_shardmq(script: &str, extra: &[&str]) -> ScriptRun {
    let broker = start_shardmq();
    let addr = broker.local_addrs()[0];
    let run = run_script(script, addr, SHARDMQ_SHARDS, extra);
    broker.shutdown();
    broker.join();
    run
}
