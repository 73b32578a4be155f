//! The one place that names the runtime's socket type.
//!
//! The core never sees it: it takes bytes in (`ShardCore::handle_bytes`) and writes its
//! outgoing buffers into anything that is `std::io::Write`. A transport (TLS, WebSocket) that
//! is `Read + Write`, nonblocking (`WouldBlock` when it has nothing) and `mio::event::Source`
//! replaces this alias with an enum over the kinds of stream, and nothing else changes.

/// A client connection's socket as the runtime owns it: plain TCP, TLS, WebSocket or secure
/// WebSocket, with an optional PROXY header in front ([`crate::transport`]).
pub type Stream = crate::transport::Stream;

/// A freshly accepted socket, handed from an acceptor to a shard's runtime, which wraps it in
/// its listener's transport layers.
#[derive(Debug)]
pub struct Accepted {
    pub stream: mio::net::TcpStream,
    pub peer: std::net::SocketAddr,
    /// The listener it came from (index into `Global::listeners`).
    pub listener: crate::transport::ListenerId,
}
