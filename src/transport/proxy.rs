//! PROXY protocol v1 and v2 headers (HAProxy, AWS NLB, ...), parsed with the `ppp` crate.
//!
//! The header is looked at with `peek` and then exactly its bytes are read, so nothing after it
//! (a TLS ClientHello, an HTTP upgrade, a CONNECT) is taken out of the socket early.

use super::listener::ProxyProtocol;
use ppp::PartialResult;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

/// The longest header accepted, bytes: v1 is at most 107; v2 is 16 plus the addresses (36 for
/// IPv6) plus TLVs, which load balancers keep to a few hundred bytes.
pub const HEADER_LEN_MAX: usize = 1024;
/// The longest v1 header, CRLF included (the PROXY protocol specification, section 2.1).
const V1_LEN_MAX: usize = 107;

/// What looking for a header found.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyRead {
    /// Not all of the header arrived yet.
    Pending,
    /// The peer closed before a header was complete.
    Closed,
    /// Done: the header's source address (`None`: no header on an optional listener, a
    /// `LOCAL` / `UNKNOWN` header, or a non-IP address family).
    Done(Option<SocketAddr>),
}

/// Reads the PROXY header at the start of `socket`, if `mode` calls for one. A malformed
/// header, one longer than [`HEADER_LEN_MAX`], or none on a `required` listener is an
/// `InvalidData` error.
pub fn read_header(socket: &mut mio::net::TcpStream, mode: ProxyProtocol) -> io::Result<ProxyRead> {
    let mut buf = [0u8; HEADER_LEN_MAX];
    let peeked = match socket.peek(&mut buf) {
        Ok(0) => return Ok(ProxyRead::Closed),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ProxyRead::Pending),
        Err(e) => return Err(e),
    };
    let (len, source) = match parse(&buf[..peeked], mode)? {
        Some(parsed) => parsed,
        None if peeked == HEADER_LEN_MAX => return Err(invalid("PROXY header too long")),
        None => return Ok(ProxyRead::Pending),
    };
    // The peeked bytes are in the socket's receive buffer: this read returns at least `len`.
    let mut header = [0u8; HEADER_LEN_MAX];
    let mut taken = 0;
    while taken < len {
        match socket.read(&mut header[taken..len]) {
            Ok(0) => return Ok(ProxyRead::Closed),
            Ok(n) => taken += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ProxyRead::Done(source))
}

/// The header's length and source address, `Ok(None)` while incomplete; `Ok(Some((0, None)))`
/// for no header on an optional listener.
fn parse(data: &[u8], mode: ProxyProtocol) -> io::Result<Option<(usize, Option<SocketAddr>)>> {
    match data.first() {
        // "PROXY ..." (v1) or "\r\n\r\n\0\r\nQUIT\n" (v2): no MQTT packet, TLS record or HTTP
        // request starts with either byte, so the first byte decides.
        Some(b'P') => {
            // ppp calls a line with missing fields incomplete even when its CRLF arrived; a
            // v1 header is one line of at most 107 bytes, so the CRLF decides.
            let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
                if data.len() >= V1_LEN_MAX {
                    return Err(invalid("PROXY v1 header without CRLF in 107 bytes"));
                }
                return Ok(None);
            };
            let header = ppp::v1::Header::try_from(&data[..end + 2]);
            let header = header.map_err(|e| invalid(&format!("PROXY v1 header: {e}")))?;
            let source = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some((header.header.len(), source)))
        }
        Some(b'\r') => {
            let header = ppp::v2::Header::try_from(data);
            if header.is_incomplete() {
                return Ok(None);
            }
            let header = header.map_err(|e| invalid(&format!("PROXY v2 header: {e}")))?;
            let source = match (header.command, header.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Ok(Some((header.header.len(), source)))
        }
        _ if mode == ProxyProtocol::Required => {
            Err(invalid("no PROXY header on a listener that requires one"))
        }
        _ => Ok(Some((0, None))),
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_give_the_source_address() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 1883\r\n\x10";
        let (len, source) = parse(v1, ProxyProtocol::Required).unwrap().unwrap();
        assert_eq!(len, v1.len() - 1);
        assert_eq!(source, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(parse(&v1[..20], ProxyProtocol::Required).unwrap(), None);

        let addresses: ppp::v2::Addresses = (
            "[2001:db8::5]:5000".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:1883".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let mut v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .build()
        .unwrap();
        let header_len = v2.len();
        v2.extend_from_slice(b"\x16\x03\x01");
        let (len, source) = parse(&v2, ProxyProtocol::Optional).unwrap().unwrap();
        assert_eq!(len, header_len);
        assert_eq!(source, Some("[2001:db8::5]:5000".parse().unwrap()));
        assert_eq!(parse(&v2[..10], ProxyProtocol::Optional).unwrap(), None);
    }

    #[test]
    fn missing_or_bad_headers() {
        let connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";
        assert_eq!(
            parse(connect, ProxyProtocol::Optional).unwrap(),
            Some((0, None))
        );
        assert!(parse(connect, ProxyProtocol::Required).is_err());
        assert!(parse(b"PROXY TCP9 a b c d\r\n", ProxyProtocol::Required).is_err());
        assert!(parse(b"PROXY TCP4 not-an-address\r\n", ProxyProtocol::Required).is_err());
        assert!(parse(&[b'P'; 200], ProxyProtocol::Required).is_err());
        assert!(parse(
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c",
            ProxyProtocol::Optional
        )
        .is_err());
    }
}
