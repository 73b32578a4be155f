//! Errors of the client session and the blocking client.

use crate::codec::{DecodeError, QoS, ReasonCode};
use std::fmt;
use std::io;

/// Why a client operation failed or a connection ended.
#[derive(Debug)]
pub enum ClientError {
    /// The outgoing in-flight window (min of our window and the server's Receive Maximum) is full;
    /// retry after a PUBACK/PUBCOMP frees a slot.
    WindowFull,
    /// The session's queue of packets not yet handed to `poll_transmit` is full; flush first.
    TransmitQueueFull,
    /// The publish rate limit allows no publish now (only from non-blocking calls).
    Throttled,
    /// The packet would exceed the server's Maximum Packet Size ([MQTT-3.1.2-24]).
    PacketTooLarge { size: usize, max: u32 },
    /// The server's Maximum QoS is below the requested QoS ([MQTT-3.2.2-11]).
    QoSNotSupported(QoS),
    /// The server announced Retain Available = 0 ([MQTT-3.2.2-14]).
    RetainNotSupported,
    /// A topic name or filter is not valid.
    InvalidTopic(&'static str),
    /// An argument is out of range (for example an empty SUBSCRIBE).
    InvalidArgument(&'static str),
    /// The server refused the connection with this reason code (MQTT 3.x return codes mapped).
    ConnectionRefused(ReasonCode),
    /// No CONNACK arrived within the connect timeout.
    ConnectTimeout,
    /// No PINGRESP arrived within the keep-alive interval after a PINGREQ.
    KeepAliveTimeout,
    /// The server sent bytes that do not decode.
    Decode(DecodeError),
    /// The server broke a protocol rule; the text names it.
    Protocol(&'static str),
    /// The server closed the connection (end of stream, or DISCONNECT with this reason code).
    ServerDisconnected(Option<ReasonCode>),
    /// An operating-system error on the socket or the poller.
    Io(io::Error),
    /// The host name did not resolve to any address.
    Resolve(String),
    /// Enhanced authentication failed on our side (for example a wrong server signature).
    Authentication(String),
    /// The connection was closed by [`crate::client::Client::disconnect`] or dropped.
    ConnectionClosed,
}

impl ClientError {
    /// Whether the error ends the current network connection (as opposed to refusing one call).
    pub fn is_connection_error(&self) -> bool {
        !matches!(
            self,
            ClientError::WindowFull
                | ClientError::TransmitQueueFull
                | ClientError::Throttled
                | ClientError::PacketTooLarge { .. }
                | ClientError::QoSNotSupported(_)
                | ClientError::RetainNotSupported
                | ClientError::InvalidTopic(_)
                | ClientError::InvalidArgument(_)
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::WindowFull => f.write_str("in-flight window full"),
            ClientError::TransmitQueueFull => f.write_str("transmit queue full"),
            ClientError::Throttled => f.write_str("publish rate limit reached"),
            ClientError::PacketTooLarge { size, max } => write!(
                f,
                "packet of {size} bytes exceeds the server's maximum packet size {max}"
            ),
            ClientError::QoSNotSupported(qos) => {
                write!(f, "the server does not support QoS {}", *qos as u8)
            }
            ClientError::RetainNotSupported => f.write_str("the server does not support retain"),
            ClientError::InvalidTopic(rule) => write!(f, "invalid topic: {rule}"),
            ClientError::InvalidArgument(rule) => write!(f, "invalid argument: {rule}"),
            ClientError::ConnectionRefused(code) => {
                write!(f, "connection refused: {code:?} (0x{:02X})", code.as_u8())
            }
            ClientError::ConnectTimeout => f.write_str("no CONNACK within the connect timeout"),
            ClientError::KeepAliveTimeout => {
                f.write_str("no PINGRESP within the keep-alive interval")
            }
            ClientError::Decode(e) => write!(f, "bad packet from server: {e}"),
            ClientError::Protocol(rule) => write!(f, "server protocol error: {rule}"),
            ClientError::ServerDisconnected(None) => f.write_str("server closed the connection"),
            ClientError::ServerDisconnected(Some(code)) => {
                write!(f, "server disconnected: {code:?} (0x{:02X})", code.as_u8())
            }
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Resolve(host) => write!(f, "cannot resolve host {host:?}"),
            ClientError::Authentication(why) => write!(f, "authentication failed: {why}"),
            ClientError::ConnectionClosed => f.write_str("connection closed"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            ClientError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

impl From<DecodeError> for ClientError {
    fn from(e: DecodeError) -> ClientError {
        ClientError::Decode(e)
    }
}
