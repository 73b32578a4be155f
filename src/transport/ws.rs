//! MQTT over WebSocket (MQTT 5 spec section 6, RFC 6455) with tungstenite.
//!
//! The HTTP upgrade is parsed with tungstenite's `Request` parser and answered with its
//! `create_response`; after it, tungstenite's stream-less `WebSocketContext` reads and writes
//! frames through whatever is below (the socket, or TLS for `wss`), which is passed in for each
//! call, so the layer holds no socket and runs inside the shard loop like TLS. MQTT bytes travel
//! in binary messages; nothing assumes one packet per message ([MQTT-6.0.0-2]): a message's
//! payload is handed on as bytes, and what does not fit the caller's buffer waits in `pending`.

use bytes::Bytes;
use std::io::{self, Read, Write};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

/// The longest upgrade request accepted, bytes (browsers send cookies and user agents; 8 KiB is
/// what common HTTP servers allow for a request head).
pub const HANDSHAKE_BYTES_MAX: usize = 8 * 1024;
/// tungstenite's read buffer per connection, bytes: allocated for the life of the connection,
/// so kept small; a frame larger than it grows it up to the frame size limit.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// The most outgoing bytes put into one WebSocket message (one `write` call).
pub const MESSAGE_OUT_BYTES_MAX: usize = 64 * 1024;
/// tungstenite's outgoing frame buffer limit: two messages plus room for control frames. When
/// it is full, writes report `WouldBlock` and the broker's own outgoing buffer keeps the bytes.
pub const WRITE_BUFFER_BYTES_MAX: usize = 2 * MESSAGE_OUT_BYTES_MAX + 1024;
/// The largest MQTT packet the protocol can express (a 4-byte remaining length and its header).
const PROTOCOL_PACKET_BYTES_MAX: usize = 268_435_460;
/// The smallest frame and message size limit, whatever smaller maximum packet size is set.
pub const FRAME_BYTES_MIN: usize = 64 * 1024;

/// The subprotocols accepted, in order of preference: `mqtt` ([MQTT-6.0.0-4]) and the
/// `mqttv3.1` name that MQTT 3.1 clients offer.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// One connection's WebSocket state.
pub struct WsLayer {
    state: WsState,
    /// The expected upgrade path.
    path: Box<str>,
    /// Frame and message size limit, bytes.
    frame_bytes_max: usize,
    /// Bytes of the last binary message not handed to the caller yet.
    pending: Bytes,
    /// The upgrade response bytes the socket did not take yet.
    raw_out: Vec<u8>,
    /// tungstenite holds frames its last flush could not write.
    unflushed: bool,
}

enum WsState {
    /// Reading the HTTP upgrade request.
    Handshake(Vec<u8>),
    Open(Box<WebSocketContext>),
}

impl WsLayer {
    /// A layer expecting an upgrade on `path`, with frames up to `max_packet_size` bytes (at
    /// least [`FRAME_BYTES_MIN`]): a frame header announcing more closes the connection before
    /// anything is allocated for it.
    pub fn new(path: &str, max_packet_size: u32) -> WsLayer {
        WsLayer {
            state: WsState::Handshake(Vec::new()),
            path: path.into(),
            // 0 = no limit but the protocol's (268,435,460 bytes, a 4-byte remaining length).
            frame_bytes_max: match max_packet_size {
                0 => PROTOCOL_PACKET_BYTES_MAX,
                limit => (limit as usize).max(FRAME_BYTES_MIN),
            },
            pending: Bytes::new(),
            raw_out: Vec::new(),
            unflushed: false,
        }
    }

    /// Whether bytes wait to be written (upgrade response or frames).
    pub fn wants_write(&self) -> bool {
        !self.raw_out.is_empty() || self.unflushed
    }

    /// Reads MQTT bytes into `buf`; short only when `io` would block or closed, `Ok(0)` when
    /// the peer closed (a Close frame or the end of the stream).
    pub fn read<S: Read + Write>(&mut self, io: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if let WsState::Handshake(_) = self.state {
            match self.handshake(io)? {
                Some(()) => {}
                None => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        let WsState::Open(ctx) = &mut self.state else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let mut filled = take_pending(&mut self.pending, buf);
        loop {
            if filled == buf.len() {
                return Ok(filled);
            }
            match ctx.read(io) {
                Ok(Message::Binary(data)) => {
                    self.pending = data;
                    filled += take_pending(&mut self.pending, &mut buf[filled..]);
                }
                // tungstenite queued the Pong (or the Close reply); the next `read` or
                // `flush` writes it.
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {
                    self.unflushed = true;
                }
                Ok(Message::Close(_)) => {
                    self.unflushed = true;
                    return Ok(filled);
                }
                // [MQTT-6.0.0-1]: MQTT travels in binary frames only.
                Ok(Message::Text(_)) => return Err(invalid("WebSocket text frame".into())),
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(Error::Io(e)) => return Err(e),
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(filled),
                Err(e) => return Err(invalid(format!("WebSocket: {e}"))),
            }
        }
    }

    /// Sends `buf` (at most [`MESSAGE_OUT_BYTES_MAX`] of it) as one binary message.
    pub fn write<S: Read + Write>(&mut self, io: &mut S, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(MESSAGE_OUT_BYTES_MAX);
        self.send(io, Bytes::copy_from_slice(&buf[..len]))?;
        Ok(len)
    }

    /// Sends the slices (at most [`MESSAGE_OUT_BYTES_MAX`] of them together) as one message.
    pub fn write_vectored<S: Read + Write>(
        &mut self,
        io: &mut S,
        bufs: &[io::IoSlice<'_>],
    ) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut message = Vec::with_capacity(total.min(MESSAGE_OUT_BYTES_MAX));
        for slice in bufs {
            let room = MESSAGE_OUT_BYTES_MAX - message.len();
            message.extend_from_slice(&slice[..slice.len().min(room)]);
            if message.len() == MESSAGE_OUT_BYTES_MAX {
                break;
            }
        }
        let len = message.len();
        self.send(io, Bytes::from(message))?;
        Ok(len)
    }

    fn send<S: Read + Write>(&mut self, io: &mut S, data: Bytes) -> io::Result<()> {
        if !self.flush_raw(io)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let WsState::Open(ctx) = &mut self.state else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match ctx.write(io, Message::Binary(data)) {
            Ok(()) => {}
            Err(Error::WriteBufferFull(_)) => return Err(io::ErrorKind::WouldBlock.into()),
            // The frame is in tungstenite's buffer; the flush below or a later one writes it.
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(to_io(e)),
        }
        self.unflushed = true;
        self.flush(io).map(|_| ())
    }

    /// Writes what waits until done (`Ok(true)`) or `io` would block (`Ok(false)`).
    pub fn flush<S: Read + Write>(&mut self, io: &mut S) -> io::Result<bool> {
        if !self.flush_raw(io)? {
            return Ok(false);
        }
        let WsState::Open(ctx) = &mut self.state else {
            return Ok(true);
        };
        match ctx.flush(io) {
            Ok(()) => {
                self.unflushed = false;
                Ok(true)
            }
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                self.unflushed = false;
                Ok(true)
            }
            Err(e) => Err(to_io(e)),
        }
    }

    /// Queues a Close frame (1000, normal closure) and writes what it can.
    pub fn close<S: Read + Write>(&mut self, io: &mut S) {
        if let WsState::Open(ctx) = &mut self.state {
            let _ = ctx.close(io, None);
        }
    }

    fn flush_raw<S: Write>(&mut self, io: &mut S) -> io::Result<bool> {
        while !self.raw_out.is_empty() {
            match io.write(&self.raw_out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.raw_out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.raw_out.capacity() > 0 {
            self.raw_out = Vec::new();
        }
        Ok(true)
    }

    /// Reads the upgrade request; answers it. `Ok(None)`: more bytes are needed.
    fn handshake<S: Read + Write>(&mut self, io: &mut S) -> io::Result<Option<()>> {
        let WsState::Handshake(request) = &mut self.state else {
            return Ok(Some(()));
        };
        let mut chunk = [0u8; 1024];
        let (head_len, parsed) = loop {
            let n = match io.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            request.extend_from_slice(&chunk[..n]);
            match Request::try_parse(request) {
                Ok(Some((len, parsed))) => break (len, parsed),
                Ok(None) if request.len() < HANDSHAKE_BYTES_MAX => {}
                Ok(None) => {
                    let status = "431 Request Header Fields Too Large";
                    return Err(refuse(&mut self.raw_out, io, status, status));
                }
                Err(e) => {
                    return Err(refuse(
                        &mut self.raw_out,
                        io,
                        "400 Bad Request",
                        &e.to_string(),
                    ))
                }
            }
        };
        if parsed.uri().path() != &*self.path {
            let why = format!("WebSocket upgrade on path {:?}", parsed.uri().path());
            return Err(refuse(&mut self.raw_out, io, "404 Not Found", &why));
        }
        let Some(subprotocol) = choose_subprotocol(&parsed) else {
            return Err(refuse(
                &mut self.raw_out,
                io,
                "400 Bad Request",
                "WebSocket upgrade without the mqtt subprotocol",
            ));
        };
        let mut response = match create_response(&parsed) {
            Ok(response) => response,
            Err(e) => {
                return Err(refuse(
                    &mut self.raw_out,
                    io,
                    "400 Bad Request",
                    &e.to_string(),
                ))
            }
        };
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            tungstenite::http::HeaderValue::from_static(subprotocol),
        );
        let mut raw = Vec::with_capacity(256);
        write_response(&mut raw, &response).map_err(to_io)?;
        let tail = request.split_off(head_len);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_write_buffer_size(WRITE_BUFFER_BYTES_MAX)
            .max_frame_size(Some(self.frame_bytes_max))
            .max_message_size(Some(self.frame_bytes_max));
        self.state = WsState::Open(Box::new(WebSocketContext::from_partially_read(
            tail,
            Role::Server,
            Some(config),
        )));
        self.raw_out = raw;
        self.flush_raw(io)?;
        Ok(Some(()))
    }
}

/// Answers a refused upgrade with an HTTP status (best effort) and returns the error that
/// closes the connection.
fn refuse<S: Write>(raw_out: &mut Vec<u8>, io: &mut S, status: &str, why: &str) -> io::Error {
    *raw_out =
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").into_bytes();
    while !raw_out.is_empty() {
        match io.write(raw_out) {
            Ok(n) if n > 0 => {
                raw_out.drain(..n);
            }
            _ => break,
        }
    }
    invalid(format!("WebSocket upgrade refused ({status}): {why}"))
}

/// The subprotocol to answer with: the first of [`SUBPROTOCOLS`] the client offers.
fn choose_subprotocol(request: &Request) -> Option<&'static str> {
    let offered: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|name| offered.iter().any(|o| o.eq_ignore_ascii_case(name)))
}

/// Moves as much of `pending` as fits into `buf`.
fn take_pending(pending: &mut Bytes, buf: &mut [u8]) -> usize {
    let n = pending.len().min(buf.len());
    if n > 0 {
        buf[..n].copy_from_slice(&pending[..n]);
        if n == pending.len() {
            // Free the message as soon as it is consumed.
            *pending = Bytes::new();
        } else {
            let _ = pending.split_to(n);
        }
    }
    n
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        other => invalid(format!("WebSocket: {other}")),
    }
}
