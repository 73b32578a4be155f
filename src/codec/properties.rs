//! MQTT 5 properties (spec section 2.2.2): one struct holding every property, the identifier
//! table with wire types, and the rule of which packet may carry which.

use super::MqttString;
use bytes::Bytes;

/// Every MQTT 5 property. Absent properties are `None` or empty. Only User Property and
/// Subscription Identifier may appear more than once ([MQTT-2.2.2-2] and 3.3.4); decoding
/// rejects any other duplicate as a protocol error.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, byte: 0 = unspecified bytes, 1 = UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, four-byte integer, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, UTF-8 string.
    pub content_type: Option<MqttString>,
    /// 0x08, UTF-8 string (a topic name, no wildcards).
    pub response_topic: Option<MqttString>,
    /// 0x09, binary data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, variable byte integer 1..=268,435,455; repeats on server-to-client PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, four-byte integer, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, UTF-8 string.
    pub assigned_client_identifier: Option<MqttString>,
    /// 0x13, two-byte integer, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, UTF-8 string.
    pub authentication_method: Option<MqttString>,
    /// 0x16, binary data.
    pub authentication_data: Option<Bytes>,
    /// 0x17, byte 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, four-byte integer, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, byte 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, UTF-8 string.
    pub response_information: Option<MqttString>,
    /// 0x1C, UTF-8 string.
    pub server_reference: Option<MqttString>,
    /// 0x1F, UTF-8 string.
    pub reason_string: Option<MqttString>,
    /// 0x21, two-byte integer, non-zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, two-byte integer.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, two-byte integer, non-zero.
    pub topic_alias: Option<u16>,
    /// 0x24, byte 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, byte 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, UTF-8 string pair; may repeat, order kept.
    pub user_properties: Vec<(MqttString, MqttString)>,
    /// 0x27, four-byte integer, non-zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, byte 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, byte 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, byte 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

/// Property identifiers (spec table 2-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}
