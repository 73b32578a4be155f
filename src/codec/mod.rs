//! Sans-IO MQTT codec for MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (level 4) and 5.0 (level 5).
//!
//! The codec never touches a socket or a clock. Bytes come in through [`decode`], which frames a
//! packet (checking the remaining length against the maximum packet size *before* buffering the
//! body), splits the frame off the caller's `BytesMut`, and parses it with one [`reader::Reader`].
//! Packets go out through [`Packet::encode`] into a caller-owned `BytesMut`;
//! [`Packet::encoded_len`] computes the exact wire size without encoding.
//!
//! Zero-copy: every string and binary field of a decoded packet is a `Bytes` slice of the frame, so a
//! decoded PUBLISH shares its topic and payload with the read buffer and fan-out shares it further.
//!
//! Folder guide:
//! - `mod.rs`: the packet types (this file) and the top-level `decode`/`encode` entry points.
//! - `error.rs`: [`DecodeError`], each variant mapped to its MQTT 5 reason code.
//! - `reason.rs`: [`ReasonCode`] and the MQTT 3.1.1 CONNACK return codes.
//! - `properties.rs`: [`Properties`], every MQTT 5 property, which packet may carry which.
//! - `reader.rs` / `writer.rs`: the only places that consume and produce primitive wire types.
//! - one file per packet family (`connect.rs`, `publish.rs`, `subscribe.rs`, ...).

mod error;
mod properties;
mod reason;
mod types;

pub use error::DecodeError;
pub use properties::{Properties, PropertyId};
pub use reason::{ConnectReturnCode, ReasonCode};
pub use types::*;

use bytes::{Bytes, BytesMut};

/// Default maximum packet size the broker accepts (1 MiB), overridable by `--max-packet-size`.
pub const MAX_PACKET_SIZE_DEFAULT: u32 = 1024 * 1024;
/// The largest remaining length the four-byte variable byte integer can express.
pub const REMAINING_LENGTH_MAX: u32 = 268_435_455;

/// Tries to split one complete packet off the front of `buf` and decode it.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is consumed then), and
/// `Err(DecodeError::PacketTooLarge)` as soon as the fixed header announces a packet larger than
/// `max_packet_size` (total size: fixed header + remaining length), before the body is buffered.
/// `version` is the protocol version negotiated by CONNECT; a CONNECT itself is parsed by its own
/// protocol level whatever `version` says.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    Err(DecodeError::Malformed("codec not implemented yet"))
}

impl Packet {
    /// Appends this packet's exact wire bytes for `version` to `out`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let _ = (version, out);
    }

    /// The number of bytes [`Packet::encode`] writes for `version`, computed without encoding.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let _ = version;
        0
    }
}

/// Keeps `Bytes` in the public API surface visible for docs.
#[doc(hidden)]
pub type Payload = Bytes;
