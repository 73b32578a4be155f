//! The one place that names the runtime's socket type.
//!
//! The core never sees it: it takes bytes in (`ShardCore::handle_bytes`) and writes its
//! outgoing buffers into anything that is `std::io::Write`. A transport (TLS, WebSocket) that
//! is `Read + Write`, nonblocking (`WouldBlock` when it has nothing) and `mio::event::Source`
//! replaces this alias with an enum over the kinds of stream, and nothing else changes.

/// A client connection's socket as the runtime owns it.
pub type Stream = mio::net::TcpStream;

/// A freshly accepted socket, handed from an acceptor to a shard's runtime.
#[derive(Debug)]
pub struct Accepted {
    pub stream: Stream,
    pub peer: std::net::SocketAddr,
}
