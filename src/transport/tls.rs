//! TLS with rustls (ring provider), driven inside the shard loop: rustls is sans-IO, so a
//! connection's TLS state is a `ServerConnection` fed from and drained into its non-blocking
//! socket by [`read()`], [`write()`] and [`flush()`]. No thread per connection, no blocking handshake.
//!
//! Certificates are read from PEM files when the broker starts and again on [`TlsAcceptor::reload`]:
//! new handshakes use the new configuration, established connections keep theirs (each holds an
//! `Arc` of the configuration it started with), and a file that cannot be loaded leaves the old
//! configuration in place.

use super::listener::ListenerConfig;
use parking_lot::RwLock;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ConnectionCommon, RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The longest certificate identity kept (a CN is at most 64 characters by RFC 5280; SANs can
/// be longer, and the identity may become an MQTT username).
const IDENTITY_LEN_MAX: usize = 256;

/// A listener's TLS configuration, replaceable while the broker runs.
pub struct TlsAcceptor {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

/// Where a listener's TLS configuration comes from.
struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_file: Option<PathBuf>,
    require_certificate: bool,
}

impl TlsAcceptor {
    /// Loads the listener's certificate, key and CA files.
    pub fn new(listener: &ListenerConfig) -> Result<TlsAcceptor, String> {
        let (Some(cert_file), Some(key_file)) = (&listener.cert_file, &listener.key_file) else {
            return Err("cert_file and key_file are needed".into());
        };
        let files = TlsFiles {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            ca_file: listener.ca_file.clone(),
            require_certificate: listener.require_certificate,
        };
        let config = files.load()?;
        Ok(TlsAcceptor {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again. On success new handshakes use them; on failure the configuration
    /// in use stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let config = self.files.load()?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// A server-side TLS state machine for a new connection, with the current configuration.
    pub fn accept(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self.current.read().clone();
        ServerConnection::new(config)
    }

    /// Whether clients may present certificates (so their identity is worth extracting).
    pub fn asks_client_certificates(&self) -> bool {
        self.files.ca_file.is_some()
    }
}

impl TlsFiles {
    fn load(&self) -> Result<ServerConfig, String> {
        let certs = load_certs(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| format!("{}: no usable private key: {e}", self.key_file.display()))?;
        let provider = Arc::new(provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs(ca_file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_certificate {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "{} / {}: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })
    }
}

/// The ring provider, as the issue asks (no C toolchain beyond ring's own, fast handshakes).
/// rustls 0.23.48 deprecated it because it lacks post-quantum key exchange (X25519MLKEM768,
/// which only the aws-lc-rs provider has); TLS 1.3 with X25519 and TLS 1.2 work as before.
///
/// Key exchange groups in the order X25519, P-256, P-384: this rustls lists P-384 first, and
/// ring's P-384 has no assembly, so a handshake cost the broker about 0.95 ms of CPU against
/// 0.1-0.2 ms with X25519 (BENCHMARKS.md, TLS). OpenSSL, browsers and MQTT.js offer X25519
/// first too.
pub fn provider() -> rustls::crypto::CryptoProvider {
    #[allow(deprecated)]
    let mut provider = ring::default_provider();
    provider.kx_groups = vec![
        ring::kx_group::X25519,
        ring::kx_group::SECP256R1,
        ring::kx_group::SECP384R1,
    ];
    provider
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The client certificate's identity: its subject CN, else its first DNS name, email or URI
/// SAN. `None` without a certificate or with none of these.
pub fn certificate_identity(conn: &ServerConnection) -> Option<Box<str>> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    let identity = common_name.or_else(|| {
        let san = cert.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| {
            use x509_parser::extensions::GeneralName;
            match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some(*s)
                }
                _ => None,
            }
        })
    })?;
    (!identity.is_empty() && identity.len() <= IDENTITY_LEN_MAX).then(|| identity.into())
}

/// These functions serve both sides (`ServerConnection` and `ClientConnection` deref to
/// `ConnectionCommon`): the load generator's TLS option uses them too.
///
/// Reads decrypted bytes into `buf`, feeding rustls from `socket` until `buf` is full or the
/// socket would block. A short count therefore means the socket was drained (the shard's
/// edge-triggered reading relies on that); `Ok(0)` means the peer closed. Handshake messages
/// and alerts rustls produces are written as they come.
pub fn read<D, S: Read + Write>(
    conn: &mut ConnectionCommon<D>,
    socket: &mut S,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    loop {
        match conn.reader().read(&mut buf[filled..]) {
            // A close_notify arrived (or `buf` is empty).
            Ok(0) => return Ok(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The TCP connection ended without close_notify: closed all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
            Err(e) => return Err(e),
        }
        if filled == buf.len() {
            return Ok(filled);
        }
        match conn.read_tls(socket) {
            Ok(0) => return Ok(filled),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // Send the alert rustls queued for this error, then fail the connection.
                    let _ = flush(conn, socket);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TLS: {e}"),
                    ));
                }
                flush(conn, socket)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return if filled > 0 { Ok(filled) } else { Err(e) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Encrypts `buf` (as much as rustls' buffer limit takes) and writes what the socket accepts.
/// `WouldBlock` when nothing was taken: rustls' buffer is full of bytes the socket refused.
pub fn write<D, S: Read + Write>(
    conn: &mut ConnectionCommon<D>,
    socket: &mut S,
    buf: &[u8],
) -> io::Result<usize> {
    flush(conn, socket)?;
    let taken = conn.writer().write(buf)?;
    if taken == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    flush(conn, socket)?;
    Ok(taken)
}

/// [`write()`] for several slices: rustls encrypts them into as few records as fit.
pub fn write_vectored<D, S: Read + Write>(
    conn: &mut ConnectionCommon<D>,
    socket: &mut S,
    bufs: &[io::IoSlice<'_>],
) -> io::Result<usize> {
    flush(conn, socket)?;
    let taken = conn.writer().write_vectored(bufs)?;
    if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    flush(conn, socket)?;
    Ok(taken)
}

/// Writes pending TLS records until none is left (`Ok(true)`) or the socket would block
/// (`Ok(false)`).
pub fn flush<D, S: Write>(conn: &mut ConnectionCommon<D>, socket: &mut S) -> io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(socket) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A connection's TLS state and its socket as one `Read + Write`, for the WebSocket layer of
/// `wss` (tungstenite is given this for each call; nothing is stored).
pub struct TlsIo<'a, S> {
    pub conn: &'a mut ServerConnection,
    pub socket: &'a mut S,
}

impl<S: Read + Write> Read for TlsIo<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read(&mut **self.conn, self.socket, buf)
    }
}

impl<S: Read + Write> Write for TlsIo<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write(&mut **self.conn, self.socket, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        if flush(&mut **self.conn, self.socket)? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}
