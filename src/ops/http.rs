//! A small blocking HTTP/1.1 server for `/metrics` and `/healthz`, on std threads (the broker
//! has no async runtime, and the well-kept HTTP server crates bring one; what is needed here is
//! one GET with no body, so it is written out).
//!
//! It cannot hurt the broker: one accept thread hands sockets to [`HTTP_WORKERS`] worker
//! threads through a bounded queue ([`HTTP_QUEUE_MAX`]; a socket finding it full is closed at
//! once), a request head is read within [`HTTP_REQUEST_TIMEOUT_MS`] in total and at most
//! [`HTTP_HEADER_BYTES_MAX`] bytes (else 408 / 431), and every response closes the connection.

use super::metrics;
use super::observer::Observer;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest request head accepted (request line and headers), in bytes.
pub const HTTP_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Time allowed to send the whole request head, in milliseconds.
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Worker threads answering requests.
pub const HTTP_WORKERS: usize = 2;
/// Accepted connections waiting for a worker; more are closed at once.
pub const HTTP_QUEUE_MAX: usize = 16;

/// The HTTP server's own counters (exported with the broker's metrics).
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Connections closed at once because `HTTP_QUEUE_MAX` were waiting for a worker.
    pub refused_busy: AtomicU64,
    /// Requests answered 400, 408 or 431 (malformed, too slow, head too large).
    pub bad_requests: AtomicU64,
}

/// A running metrics server. Dropping it stops it.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and starts serving `observer`'s metrics and health.
    pub fn start(addr: SocketAddr, observer: Observer) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(HTTP_QUEUE_MAX);
        let counters = Arc::new(HttpCounters::default());
        let mut threads = Vec::new();
        for i in 0..HTTP_WORKERS {
            let rx = rx.clone();
            let observer = observer.clone();
            let counters = counters.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("metrics-{i}"))
                    .spawn(move || {
                        for stream in rx {
                            serve(stream, &observer, &counters);
                        }
                    })?,
            );
        }
        let accept_stop = stop.clone();
        let accept_counters = counters.clone();
        threads.push(
            std::thread::Builder::new()
                .name("metrics-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if accept_stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match stream {
                            // A full queue: the socket is dropped (closed) at once.
                            Ok(stream) => {
                                if tx.try_send(stream).is_err() {
                                    accept_counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                                    log::debug!("metrics: busy, connection closed");
                                }
                            }
                            Err(e) => {
                                log::warn!("metrics: accept failed: {e}");
                                std::thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                })?,
        );
        log::info!("metrics listening on {local_addr} (/metrics, /healthz)");
        Ok(MetricsServer {
            local_addr,
            stop,
            threads,
        })
    }

    /// The bound address (with the real port for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblocks the accept call; the accept thread then drops the queue's sender, which
        // ends the workers.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_millis(500));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What a request head asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Get { path: String, head_only: bool },
    BadMethod,
    Malformed,
}

/// Reads the request head; `Err(status)` when it is too large or too slow.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, u16> {
    let deadline = Instant::now() + Duration::from_millis(HTTP_REQUEST_TIMEOUT_MS);
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(408);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(400),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(408),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > HTTP_HEADER_BYTES_MAX {
            return Err(431);
        }
    }
}

fn parse(head: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Malformed;
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Malformed;
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    match method {
        "GET" => Request::Get {
            path,
            head_only: false,
        },
        "HEAD" => Request::Get {
            path,
            head_only: true,
        },
        _ => Request::BadMethod,
    }
}

fn serve(mut stream: TcpStream, observer: &Observer, counters: &HttpCounters) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(HTTP_REQUEST_TIMEOUT_MS)));
    let (status, content_type, body, head_only) = match read_head(&mut stream).map(|h| parse(&h)) {
        Err(status) => (status, "text/plain", reason(status).to_string(), false),
        Ok(Request::Malformed) => (400, "text/plain", "bad request\n".into(), false),
        Ok(Request::BadMethod) => (405, "text/plain", "method not allowed\n".into(), false),
        Ok(Request::Get { path, head_only }) => match path.as_str() {
            "/metrics" => (
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics::render_with(observer, Some(counters)),
                head_only,
            ),
            "/healthz" => {
                let (status, body) = health(observer);
                (status, "text/plain", body, head_only)
            }
            _ => (404, "text/plain", "not found\n".into(), head_only),
        },
    };
    if matches!(status, 400 | 408 | 431) {
        counters.bad_requests.fetch_add(1, Ordering::Relaxed);
    }
    let header = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    if !head_only {
        let _ = stream.write_all(body.as_bytes());
    }
    let _ = stream.flush();
}

/// 200 while every shard and acceptor thread runs and no shutdown has begun, else 503 with
/// what is wrong.
fn health(observer: &Observer) -> (u16, String) {
    if observer.healthy() {
        return (200, "ok\n".into());
    }
    let down: Vec<String> = observer
        .liveness()
        .shards_running()
        .iter()
        .enumerate()
        .filter(|(_, up)| !**up)
        .map(|(i, _)| format!("shard {i} stopped"))
        .collect();
    let mut body = if down.is_empty() {
        "shutting down or a listener stopped".to_string()
    } else {
        down.join(", ")
    };
    body.push('\n');
    (503, body)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Request::Get {
                path: "/metrics".into(),
                head_only: false
            }
        );
        assert_eq!(parse(b"POST /metrics HTTP/1.1"), Request::BadMethod);
        assert_eq!(parse(b"GET /metrics"), Request::Malformed);
        assert_eq!(parse(b"\xff\xfe"), Request::Malformed);
    }
}
