//! The load generator's TLS option (`--tls-ca FILE`): rustls clients (ring provider, TLS 1.2 and
//! 1.3) driven in the workers' poll loops with the broker's own non-blocking TLS helpers
//! (`shardmq::transport::tls`), so TLS handshakes and TLS throughput can be measured against
//! any broker (shardmq, Mosquitto) configured the same way.

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConnection;
use shardmq::transport::tls;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// What the workers need to open TLS connections.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the CA certificates in `ca_file`; verifies the server as `server_name`.
    pub fn new(ca_file: &Path, server_name: &str) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
        }
        // The broker's provider: ring, X25519 first (as OpenSSL clients and browsers offer).
        let provider = Arc::new(tls::provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("server name {server_name:?}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A client TLS state machine for a new connection.
    pub fn connect(&self) -> Result<Box<ClientConnection>, String> {
        ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map(Box::new)
            .map_err(|e| format!("TLS: {e}"))
    }
}

/// Reads from the socket, through TLS when `tls` is set. As for a plain socket, a short count
/// means the socket was drained.
pub fn read(
    stream: &mut TcpStream,
    tls: &mut Option<Box<ClientConnection>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match tls {
        None => stream.read(buf),
        Some(conn) => tls::read(&mut ***conn, stream, buf),
    }
}

/// Writes as much of `buf` as the socket (or TLS) takes.
pub fn write(
    stream: &mut TcpStream,
    tls: &mut Option<Box<ClientConnection>>,
    buf: &[u8],
) -> io::Result<usize> {
    match tls {
        None => stream.write(buf),
        Some(conn) => tls::write(&mut ***conn, stream, buf),
    }
}

/// Writes the TLS records still held; `Ok(false)` when the socket is full.
pub fn flush(stream: &mut TcpStream, tls: &mut Option<Box<ClientConnection>>) -> io::Result<bool> {
    match tls {
        None => Ok(true),
        Some(conn) => tls::flush(&mut ***conn, stream),
    }
}
