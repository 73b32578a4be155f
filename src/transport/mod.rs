//! Listeners and transports: the one socket type the broker's read/write path uses.
//!
//! ```text
//!  socket ─▶ [PROXY v1/v2 header] ─▶ [TLS (rustls)] ─▶ [WebSocket (tungstenite)] ─▶ MQTT bytes
//! ```
//!
//! [`Stream`] is a non-blocking `Read + Write` over an accepted socket and whichever layers its
//! listener configured. Plain MQTT over TCP has no layer: every call is one `match` on an empty
//! `Option` and then the socket's own `read`/`write`, so the plain path gains no copy and no
//! dynamic dispatch. Layers run inside the shard loop (rustls and tungstenite's
//! `WebSocketContext` are sans-IO), so a handshake never blocks a shard; it counts against the
//! broker's handshake timeout like a slow CONNECT.
//!
//! A layered stream keeps the semantics the shard's edge-triggered loop relies on: a `read`
//! returns fewer bytes than asked only when the socket would block or the peer closed, and
//! `Ok(0)` means closed. Bytes a layer still has to write (handshake messages, alerts, Pongs)
//! are reported by [`Stream::wants_write`] and written by [`Stream::write_pending`].
//!
//! Folder guide: `listener.rs` the `[[listener]]` configuration; `tls.rs` rustls, certificate
//! loading and reload, client certificate identity; `ws.rs` the WebSocket upgrade and frames;
//! `proxy.rs` PROXY protocol headers. (Mosquitto's TLS and WebSocket listener directives are
//! mapped in `src/ops/mosquitto/map.rs`.)

pub mod listener;
pub mod proxy;
pub mod tls;
pub mod ws;

pub use listener::{ListenerConfig, ProxyProtocol, TransportKind};

use mio::net::TcpStream;
use proxy::ProxyRead;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Index of a listener in the broker's listener list (`Config::listeners()` order).
pub type ListenerId = u16;

/// The most listeners a broker has (a connection stores its listener id in 16 bits).
pub const LISTENERS_MAX: usize = 1024;

/// An accepted connection's byte stream: the socket and, for TLS, WebSocket or PROXY
/// listeners, their state (boxed: plain connections pay 8 bytes for the `None`).
pub struct Stream {
    socket: TcpStream,
    listener: ListenerId,
    layers: Option<Box<Layers>>,
}

/// The state of a layered connection.
struct Layers {
    /// The PROXY header is still expected (`Off` once read or when none is configured).
    proxy: ProxyProtocol,
    tls: Option<rustls::ServerConnection>,
    /// Whether the client certificate's identity is still to be read (after the handshake).
    identity_pending: bool,
    ws: Option<ws::WsLayer>,
    /// The client certificate's identity (subject CN or SAN), once the handshake verified it.
    identity: Option<Box<str>>,
    /// The client's address from the PROXY header, until the connection takes it.
    proxied_peer: Option<SocketAddr>,
    /// `identity` was set and not handed on yet.
    identity_new: bool,
}

/// What a transport learned about its connection, handed to the core once
/// (`ShardCore::handle_transport_info`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TransportInfo {
    /// The client's real address, from a PROXY header.
    pub peer: Option<SocketAddr>,
    /// The verified client certificate's identity (subject CN or SAN).
    pub certificate_identity: Option<Box<str>>,
}

impl Stream {
    /// A plain TCP stream of listener `listener`.
    pub fn plain(socket: TcpStream, listener: ListenerId) -> Stream {
        Stream {
            socket,
            listener,
            layers: None,
        }
    }

    /// The listener this connection was accepted on.
    pub fn listener(&self) -> ListenerId {
        self.listener
    }

    /// The transport that carries this connection, for logs.
    pub fn transport(&self) -> TransportKind {
        match &self.layers {
            None => TransportKind::Mqtt,
            Some(layers) => match (layers.tls.is_some(), layers.ws.is_some()) {
                (false, false) => TransportKind::Mqtt,
                (true, false) => TransportKind::MqttTls,
                (false, true) => TransportKind::Ws,
                (true, true) => TransportKind::Wss,
            },
        }
    }

    /// The verified client certificate's identity: its subject CN, else its first DNS, email or
    /// URI SAN. `None` on non-TLS listeners, without a client certificate, or before the TLS
    /// handshake finished (it has finished once CONNECT arrives).
    pub fn certificate_identity(&self) -> Option<&str> {
        self.layers.as_ref()?.identity.as_deref()
    }

    /// What the layers learned since the last call (a PROXY header's address, a client
    /// certificate's identity), once. `None` on plain TCP without looking further.
    #[inline]
    pub fn take_info(&mut self) -> Option<TransportInfo> {
        let layers = self.layers.as_mut()?;
        if layers.proxied_peer.is_none() && !layers.identity_new {
            return None;
        }
        let certificate_identity = if std::mem::take(&mut layers.identity_new) {
            layers.identity.clone()
        } else {
            None
        };
        Some(TransportInfo {
            peer: layers.proxied_peer.take(),
            certificate_identity,
        })
    }

    /// Whether a layer holds bytes to write (TLS records, WebSocket frames or the upgrade
    /// response) that the socket did not take yet. Never true on plain TCP.
    pub fn wants_write(&self) -> bool {
        match &self.layers {
            None => false,
            Some(layers) => {
                layers.tls.as_ref().is_some_and(|t| t.wants_write())
                    || layers.ws.as_ref().is_some_and(|w| w.wants_write())
            }
        }
    }

    /// Writes what the layers hold until done (`Ok(true)`) or the socket would block.
    pub fn write_pending(&mut self) -> io::Result<bool> {
        let Some(layers) = &mut self.layers else {
            return Ok(true);
        };
        let socket = &mut self.socket;
        let ws_done = match (&mut layers.tls, &mut layers.ws) {
            (_, None) => true,
            (None, Some(ws)) => ws.flush(socket)?,
            (Some(conn), Some(ws)) => ws.flush(&mut tls::TlsIo { conn, socket })?,
        };
        let tls_done = match &mut layers.tls {
            None => true,
            Some(conn) => tls::flush(&mut **conn, socket)?,
        };
        Ok(ws_done && tls_done)
    }

    /// Ends the sending side: a WebSocket Close frame and a TLS close_notify where they apply
    /// (best effort), then a TCP FIN.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(layers) = &mut self.layers {
            let socket = &mut self.socket;
            match (&mut layers.tls, &mut layers.ws) {
                (None, Some(ws)) => ws.close(socket),
                (Some(conn), Some(ws)) => ws.close(&mut tls::TlsIo { conn, socket }),
                _ => {}
            }
            if let Some(conn) = &mut layers.tls {
                conn.send_close_notify();
                let _ = tls::flush(&mut **conn, socket);
            }
        }
        self.socket.shutdown(std::net::Shutdown::Write)
    }

    /// Shuts the socket down.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.socket.shutdown(how)
    }
}

impl Layers {
    fn read(&mut self, socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if self.proxy != ProxyProtocol::Off {
            match proxy::read_header(socket, self.proxy)? {
                ProxyRead::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                ProxyRead::Closed => return Ok(0),
                ProxyRead::Done(source) => {
                    self.proxy = ProxyProtocol::Off;
                    self.proxied_peer = source;
                }
            }
        }
        let n = match (&mut self.tls, &mut self.ws) {
            (None, None) => socket.read(buf)?,
            (Some(conn), None) => tls::read(&mut **conn, socket, buf)?,
            (None, Some(ws)) => ws.read(socket, buf)?,
            (Some(conn), Some(ws)) => ws.read(&mut tls::TlsIo { conn, socket }, buf)?,
        };
        if self.identity_pending {
            if let Some(conn) = self.tls.as_ref().filter(|c| !c.is_handshaking()) {
                self.identity_pending = false;
                self.identity = tls::certificate_identity(conn);
                self.identity_new = self.identity.is_some();
            }
        }
        Ok(n)
    }

    fn write(&mut self, socket: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        match (&mut self.tls, &mut self.ws) {
            (None, None) => socket.write(buf),
            (Some(conn), None) => tls::write(&mut **conn, socket, buf),
            (None, Some(ws)) => ws.write(socket, buf),
            (Some(conn), Some(ws)) => ws.write(&mut tls::TlsIo { conn, socket }, buf),
        }
    }

    fn write_vectored(
        &mut self,
        socket: &mut TcpStream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        match (&mut self.tls, &mut self.ws) {
            (None, None) => socket.write_vectored(bufs),
            (Some(conn), None) => tls::write_vectored(&mut **conn, socket, bufs),
            (None, Some(ws)) => ws.write_vectored(socket, bufs),
            (Some(conn), Some(ws)) => ws.write_vectored(&mut tls::TlsIo { conn, socket }, bufs),
        }
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.layers {
            None => self.socket.read(buf),
            Some(layers) => layers.read(&mut self.socket, buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.layers {
            None => self.socket.write(buf),
            Some(layers) => layers.write(&mut self.socket, buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.layers {
            None => self.socket.write_vectored(bufs),
            Some(layers) => layers.write_vectored(&mut self.socket, bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.write_pending()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

/// One running listener: its configuration, its TLS acceptor and its open connections.
pub struct Listener {
    pub config: ListenerConfig,
    pub tls: Option<tls::TlsAcceptor>,
    /// Connections open on this listener (for its `max_connections`). Shared with the listener
    /// it replaces when a reload changes a listener's settings at the same address (issue 15),
    /// so that the connections accepted before count against the new limit too.
    pub connections_open: std::sync::Arc<AtomicUsize>,
    /// Its own access control (`[listener.auth]`), when it has one (issue 13); set by the
    /// broker before the listener is added.
    pub access: Option<std::sync::Arc<crate::auth::AccessControl>>,
    /// False once a reload removed it (issue 15): it accepts nothing more, and its
    /// connections stay.
    pub accepting: std::sync::atomic::AtomicBool,
}

impl Listener {
    /// Loads the listener's certificates (when it uses TLS).
    pub fn new(config: ListenerConfig) -> Result<Listener, String> {
        let tls = if config.transport.is_tls() {
            Some(tls::TlsAcceptor::new(&config).map_err(|e| {
                format!(
                    "listener {} ({}): {e}",
                    config.address,
                    config.transport.name()
                )
            })?)
        } else {
            None
        };
        Ok(Listener {
            config,
            tls,
            connections_open: Default::default(),
            access: None,
            accepting: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Counts a connection accepted on this listener; false (nothing counted) when its
    /// `max_connections` is reached.
    pub fn try_open(&self) -> bool {
        let max = self.config.max_connections.unwrap_or(usize::MAX);
        if self.connections_open.fetch_add(1, Ordering::SeqCst) >= max {
            self.connections_open.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Counts a connection of this listener closed.
    pub fn closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wraps an accepted socket of this listener (`id`) in its layers. `max_packet_size`
    /// bounds WebSocket frames.
    pub fn wrap(
        &self,
        socket: TcpStream,
        id: ListenerId,
        max_packet_size: u32,
    ) -> Result<Stream, rustls::Error> {
        if !self.config.is_layered() {
            return Ok(Stream::plain(socket, id));
        }
        let tls = match &self.tls {
            Some(acceptor) => Some(acceptor.accept()?),
            None => None,
        };
        let identity_pending = self
            .tls
            .as_ref()
            .is_some_and(|acceptor| acceptor.asks_client_certificates());
        let ws = self
            .config
            .transport
            .is_websocket()
            .then(|| ws::WsLayer::new(&self.config.ws_path, max_packet_size));
        Ok(Stream {
            socket,
            listener: id,
            layers: Some(Box::new(Layers {
                proxy: self.config.proxy_protocol,
                tls,
                identity_pending,
                ws,
                identity: None,
                proxied_peer: None,
                identity_new: false,
            })),
        })
    }
}

/// Every listener of a broker, by [`ListenerId`]. Append-only (issue 15): a reload adds
/// listeners at new ids and marks removed ones as not accepting, but never frees an id, since
/// connections refer to their listener by id for as long as they live. At most
/// [`LISTENERS_MAX`] over the broker's life; a reload that would pass it fails.
pub struct Listeners {
    /// Slot `id` holds listener `id` once added; read without a lock.
    slots: Box<[std::sync::OnceLock<Box<Listener>>]>,
    /// Slots in use; held while adding.
    len: parking_lot::Mutex<usize>,
}

impl Listeners {
    /// Loads every listener's certificates; fails on the first that cannot be loaded.
    pub fn new(configs: Vec<ListenerConfig>) -> Result<Listeners, String> {
        if configs.len() > LISTENERS_MAX {
            return Err(format!("at most {LISTENERS_MAX} listeners"));
        }
        let listeners = Listeners {
            slots: (0..LISTENERS_MAX).map(|_| Default::default()).collect(),
            len: parking_lot::Mutex::new(0),
        };
        for config in configs {
            listeners.add(Listener::new(config)?)?;
        }
        Ok(listeners)
    }

    /// Adds a listener; its id, or an error when every id was used.
    pub fn add(&self, listener: Listener) -> Result<ListenerId, String> {
        let mut len = self.len.lock();
        let Some(slot) = self.slots.get(*len) else {
            return Err(format!(
                "at most {LISTENERS_MAX} listeners over the broker's life: restart it"
            ));
        };
        if slot.set(Box::new(listener)).is_err() {
            return Err("bug: a listener slot was set twice".into());
        }
        let id = *len as ListenerId;
        *len += 1;
        Ok(id)
    }

    /// Listener ids still free.
    pub fn free(&self) -> usize {
        LISTENERS_MAX - *self.len.lock()
    }

    /// The listener `id`.
    pub fn get(&self, id: ListenerId) -> Option<&Listener> {
        self.slots.get(usize::from(id))?.get().map(|b| &**b)
    }

    /// Every listener in id order, removed ones included.
    pub fn iter(&self) -> impl Iterator<Item = &Listener> {
        self.slots.iter().map_while(|slot| slot.get().map(|b| &**b))
    }

    /// Reloads the certificates of every TLS listener: new handshakes use the new files,
    /// established connections keep theirs; a listener whose files cannot be loaded keeps its
    /// old certificates and the error is logged and returned.
    pub fn reload_tls(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for listener in self.iter() {
            let Some(acceptor) = &listener.tls else {
                continue;
            };
            if !listener.accepting.load(Ordering::SeqCst) {
                continue;
            }
            let at = format!(
                "listener {} ({})",
                listener.config.address,
                listener.config.transport.name()
            );
            match acceptor.reload() {
                Ok(()) => log::info!("{at}: TLS certificates reloaded"),
                Err(e) => {
                    log::error!("{at}: TLS reload failed, keeping the old certificates: {e}");
                    errors.push(format!("{at}: {e}"));
                }
            }
        }
        errors
    }
}
