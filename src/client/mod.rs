//! The client engine: a sans-IO MQTT 3.1 / 3.1.1 / 5.0 client session and a synchronous,
//! mio-based client built on it. No async runtime.
//!
//! Folder guide:
//! - `options.rs`: [`ConnectOptions`], what goes into CONNECT and the session's limits.
//! - `error.rs`: [`ClientError`].
//! - `session.rs`: [`ClientSession`], the protocol state of one client: CONNECT/CONNACK, packet
//!   identifiers, the outgoing in-flight window, QoS 1 and 2 flows in both directions, keep-alive,
//!   resend after reconnect. No sockets, no clock: bytes and `now` are passed in, bytes and
//!   [`Event`]s come out, as in quinn-proto. `session/incoming.rs` handles each packet from the
//!   server; `session/tests.rs` drives the session against a scripted fake server.
//! - `auth.rs`: [`EnhancedAuth`], MQTT 5 enhanced authentication, and [`ScramSha256Auth`].
//! - `throttle.rs`: [`TokenBucket`], a sans-IO rate limiter.
//! - `blocking.rs`: [`Client`] and [`Connection`], a rumqttc-like synchronous API over one mio TCP
//!   connection with backpressure, throttling and automatic reconnect.

mod auth;
mod blocking;
mod error;
mod options;
mod session;
mod throttle;

pub use auth::{EnhancedAuth, ScramSha256Auth};
pub use blocking::{Client, ClientOptions, Connection, Iter};
pub use error::ClientError;
pub use options::ConnectOptions;
pub use session::{ClientSession, Event, SessionState, SessionStats};
pub use throttle::TokenBucket;
