//! MQTT 5 properties (spec section 2.2.2): one struct holding every property, the identifier table
//! with wire types, the rule of which packet may carry which, and their decoding and encoding.
//!
//! Layout: a PUBLISH is cloned once per destination shard, so [`Properties`] is small (24 bytes).
//! The three scalar properties a PUBLISH commonly carries are inline fields; every other property
//! lives in [`MoreProperties`], boxed and allocated only when one of them is set. `Properties`
//! dereferences to `MoreProperties`, so every property is read and written by its field name:
//! `props.message_expiry_interval` (inline) and `props.session_expiry_interval` (boxed) alike.
//! Writing through `DerefMut` allocates the box on first use; reading never allocates.

use super::limits::{check_varint, FIELD_LEN_MAX};
use super::reader::Reader;
use super::writer::{binary_len, put_binary, put_varint, varint_len};
use super::{DecodeError, EncodeError, MqttString};
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::{Deref, DerefMut};

/// Every MQTT 5 property. Absent properties are `None` or empty. Only User Property and
/// Subscription Identifier may appear more than once (2.2.2.2); decoding rejects any other
/// duplicate as a protocol error.
///
/// Build one with `Properties::new()` and assign fields (`p.session_expiry_interval = Some(60)`),
/// or from a struct literal of [`MoreProperties`]:
/// `Properties::from(MoreProperties { session_expiry_interval: Some(60), ..Default::default() })`.
/// (After `Properties::default()`, clippy's `field_reassign_with_default` suggests a struct literal
/// of `Properties` that cannot name the boxed fields; `new()` or `From<MoreProperties>` avoid it.)
#[derive(Clone, Debug, Default)]
pub struct Properties {
    /// 0x01, byte: 0 = unspecified bytes, 1 = UTF-8 payload.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, four-byte integer, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x23, two-byte integer, non-zero ([MQTT-3.3.2-8]).
    pub topic_alias: Option<u16>,
    /// Every other property; `None` while none is set. Usually reached through `Deref`; public so
    /// that struct-literal syntax works (`Properties { topic_alias: Some(1), ..Default::default() }`).
    pub more: Option<Box<MoreProperties>>,
}

/// The properties other than the three inline ones of [`Properties`]; reached through its `Deref`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MoreProperties {
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

impl MoreProperties {
    /// No property set.
    pub const EMPTY: MoreProperties = MoreProperties {
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

static EMPTY_MORE: MoreProperties = MoreProperties::EMPTY;

impl Deref for Properties {
    type Target = MoreProperties;

    fn deref(&self) -> &MoreProperties {
        self.more.as_deref().unwrap_or(&EMPTY_MORE)
    }
}

impl DerefMut for Properties {
    /// Allocates the box of the non-inline properties on first use.
    fn deref_mut(&mut self) -> &mut MoreProperties {
        self.more.get_or_insert_with(Box::default)
    }
}

impl From<MoreProperties> for Properties {
    fn from(more: MoreProperties) -> Properties {
        Properties {
            more: Some(Box::new(more)),
            ..Properties::default()
        }
    }
}

impl PartialEq for Properties {
    /// Equality by value: an allocated but empty box equals no box.
    fn eq(&self, other: &Properties) -> bool {
        self.payload_format_indicator == other.payload_format_indicator
            && self.message_expiry_interval == other.message_expiry_interval
            && self.topic_alias == other.topic_alias
            && **self == **other
    }
}

impl Eq for Properties {}

impl Properties {
    /// No property set (the same as `Properties::default()`); allocates nothing.
    pub const fn new() -> Properties {
        Properties {
            payload_format_indicator: None,
            message_expiry_interval: None,
            topic_alias: None,
            more: None,
        }
    }

    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && match self.more.as_deref() {
                None => true,
                Some(more) => *more == EMPTY_MORE,
            }
    }
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

/// The wire type of a property value (2.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyType {
    Byte,
    TwoByteInteger,
    FourByteInteger,
    VariableByteInteger,
    BinaryData,
    Utf8String,
    Utf8StringPair,
}

/// The places a property list appears; each allows its own set of properties (table 2-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    Connect,
    /// The Will Properties inside a CONNECT payload.
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyId {
    /// Every property identifier, in ascending order (the order the encoder writes them in).
    pub const ALL: [PropertyId; 27] = [
        PropertyId::PayloadFormatIndicator,
        PropertyId::MessageExpiryInterval,
        PropertyId::ContentType,
        PropertyId::ResponseTopic,
        PropertyId::CorrelationData,
        PropertyId::SubscriptionIdentifier,
        PropertyId::SessionExpiryInterval,
        PropertyId::AssignedClientIdentifier,
        PropertyId::ServerKeepAlive,
        PropertyId::AuthenticationMethod,
        PropertyId::AuthenticationData,
        PropertyId::RequestProblemInformation,
        PropertyId::WillDelayInterval,
        PropertyId::RequestResponseInformation,
        PropertyId::ResponseInformation,
        PropertyId::ServerReference,
        PropertyId::ReasonString,
        PropertyId::ReceiveMaximum,
        PropertyId::TopicAliasMaximum,
        PropertyId::TopicAlias,
        PropertyId::MaximumQoS,
        PropertyId::RetainAvailable,
        PropertyId::UserProperty,
        PropertyId::MaximumPacketSize,
        PropertyId::WildcardSubscriptionAvailable,
        PropertyId::SubscriptionIdentifierAvailable,
        PropertyId::SharedSubscriptionAvailable,
    ];

    /// Parses an identifier; `None` for one the spec does not define.
    pub fn from_u8(value: u8) -> Option<PropertyId> {
        use PropertyId::*;
        Some(match value {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// The identifier's wire type (table 2-4).
    pub fn wire_type(self) -> PropertyType {
        use PropertyId::*;
        use PropertyType::*;
        match self {
            PayloadFormatIndicator
            | RequestProblemInformation
            | RequestResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => Byte,
            ServerKeepAlive | ReceiveMaximum | TopicAliasMaximum | TopicAlias => TwoByteInteger,
            MessageExpiryInterval
            | SessionExpiryInterval
            | WillDelayInterval
            | MaximumPacketSize => FourByteInteger,
            SubscriptionIdentifier => VariableByteInteger,
            CorrelationData | AuthenticationData => BinaryData,
            ContentType
            | ResponseTopic
            | AssignedClientIdentifier
            | AuthenticationMethod
            | ResponseInformation
            | ServerReference
            | ReasonString => Utf8String,
            UserProperty => Utf8StringPair,
        }
    }

    /// Whether the property may appear in `context` (table 2-4).
    pub fn allowed_in(self, context: PropertyContext) -> bool {
        use PropertyContext as C;
        use PropertyId::*;
        match self {
            PayloadFormatIndicator
            | MessageExpiryInterval
            | ContentType
            | ResponseTopic
            | CorrelationData => matches!(context, C::Publish | C::Will),
            SubscriptionIdentifier => matches!(context, C::Publish | C::Subscribe),
            SessionExpiryInterval => matches!(context, C::Connect | C::ConnAck | C::Disconnect),
            AssignedClientIdentifier
            | ServerKeepAlive
            | ResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => context == C::ConnAck,
            AuthenticationMethod | AuthenticationData => {
                matches!(context, C::Connect | C::ConnAck | C::Auth)
            }
            RequestProblemInformation | RequestResponseInformation => context == C::Connect,
            WillDelayInterval => context == C::Will,
            ServerReference => matches!(context, C::ConnAck | C::Disconnect),
            ReasonString => !matches!(
                context,
                C::Connect | C::Will | C::Publish | C::Subscribe | C::Unsubscribe
            ),
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => {
                matches!(context, C::Connect | C::ConnAck)
            }
            TopicAlias => context == C::Publish,
            UserProperty => true,
        }
    }

    /// Whether the property may appear more than once in `context`: User Property anywhere,
    /// Subscription Identifier only in PUBLISH (3.3.2.3.8; once in SUBSCRIBE, 3.8.2.1.2).
    fn may_repeat(self, context: PropertyContext) -> bool {
        match self {
            PropertyId::UserProperty => true,
            PropertyId::SubscriptionIdentifier => context == PropertyContext::Publish,
            _ => false,
        }
    }
}

fn protocol(rule: &'static str) -> DecodeError {
    DecodeError::Protocol(rule)
}

/// Reads a byte property that must be 0 or 1.
fn read_flag(r: &mut Reader, rule: &'static str) -> Result<Option<u8>, DecodeError> {
    match r.u8()? {
        value @ (0 | 1) => Ok(Some(value)),
        _ => Err(protocol(rule)),
    }
}

/// Reads a two-byte property that must not be 0.
fn read_nonzero_u16(r: &mut Reader, rule: &'static str) -> Result<Option<u16>, DecodeError> {
    match r.u16()? {
        0 => Err(protocol(rule)),
        value => Ok(Some(value)),
    }
}

impl Properties {
    /// Decodes a property list (its variable-byte length, then the properties) for `context`.
    /// Unknown identifiers and a property not allowed in `context` are malformed (2.2.2.2); a
    /// duplicate or a value out of range is a protocol error, as each property's section says;
    /// Topic Alias 0 is Topic Alias invalid (0x94), as Mosquitto answers it.
    pub(crate) fn decode(
        r: &mut Reader,
        context: PropertyContext,
    ) -> Result<Properties, DecodeError> {
        let len = r.varint()?;
        let mut props = Properties::default();
        if len == 0 {
            return Ok(props);
        }
        let mut r = r.sub(len as usize)?;
        let mut seen: u64 = 0;
        while !r.is_empty() {
            // The identifier is a variable byte integer (2.2.2.2); every defined one is < 0x80.
            let raw = r.varint()?;
            let id = u8::try_from(raw).ok().and_then(PropertyId::from_u8).ok_or(
                DecodeError::Malformed("unknown property identifier (2.2.2.2)"),
            )?;
            // 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for
            // its packet type ... is a Malformed Packet" (0x81), unlike a duplicate or a value
            // out of range, which each property's section calls a Protocol Error (0x82).
            if !id.allowed_in(context) {
                return Err(DecodeError::Malformed(
                    "property not allowed on this packet (2.2.2.2, table 2-4)",
                ));
            }
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 && !id.may_repeat(context) {
                return Err(protocol(
                    "property included more than once (2.2.2.2; only User Property and \
                     Subscription Identifier may repeat)",
                ));
            }
            seen |= bit;
            props.read_value(id, &mut r)?;
        }
        Ok(props)
    }

    fn read_value(&mut self, id: PropertyId, r: &mut Reader) -> Result<(), DecodeError> {
        use PropertyId::*;
        match id {
            PayloadFormatIndicator => {
                self.payload_format_indicator =
                    read_flag(r, "Payload Format Indicator other than 0 or 1 (3.3.2.3.2)")?
            }
            MessageExpiryInterval => self.message_expiry_interval = Some(r.u32()?),
            TopicAlias => {
                // [MQTT-3.3.2-8] forbids alias 0 without naming the consequence; 0x94 (Topic
                // Alias invalid) says exactly what is wrong, and it is what Mosquitto sends.
                self.topic_alias = match r.u16()? {
                    0 => {
                        return Err(DecodeError::TopicAliasInvalid(
                            "[MQTT-3.3.2-8] Topic Alias 0",
                        ))
                    }
                    alias => Some(alias),
                };
            }
            ContentType => self.content_type = Some(r.string()?),
            ResponseTopic => {
                let topic = r.string()?;
                if topic.is_empty() || super::topic_rules::has_wildcard(topic.as_bytes()) {
                    return Err(protocol(
                        "[MQTT-3.3.2-14] Response Topic is not a valid topic name",
                    ));
                }
                self.response_topic = Some(topic);
            }
            CorrelationData => self.correlation_data = Some(r.binary()?),
            SubscriptionIdentifier => {
                let value = r.varint()?;
                if value == 0 {
                    return Err(protocol("Subscription Identifier 0 (3.8.2.1.2)"));
                }
                self.subscription_identifiers.push(value);
            }
            SessionExpiryInterval => self.session_expiry_interval = Some(r.u32()?),
            AssignedClientIdentifier => self.assigned_client_identifier = Some(r.string()?),
            ServerKeepAlive => self.server_keep_alive = Some(r.u16()?),
            AuthenticationMethod => self.authentication_method = Some(r.string()?),
            AuthenticationData => self.authentication_data = Some(r.binary()?),
            RequestProblemInformation => {
                self.request_problem_information = read_flag(
                    r,
                    "Request Problem Information other than 0 or 1 (3.1.2.11.7)",
                )?
            }
            WillDelayInterval => self.will_delay_interval = Some(r.u32()?),
            RequestResponseInformation => {
                self.request_response_information = read_flag(
                    r,
                    "Request Response Information other than 0 or 1 (3.1.2.11.6)",
                )?
            }
            ResponseInformation => self.response_information = Some(r.string()?),
            ServerReference => self.server_reference = Some(r.string()?),
            ReasonString => self.reason_string = Some(r.string()?),
            ReceiveMaximum => {
                self.receive_maximum =
                    read_nonzero_u16(r, "Receive Maximum 0 (3.1.2.11.3, 3.2.2.3.3)")?
            }
            TopicAliasMaximum => self.topic_alias_maximum = Some(r.u16()?),
            MaximumQoS => {
                self.maximum_qos = read_flag(r, "Maximum QoS other than 0 or 1 (3.2.2.3.4)")?
            }
            RetainAvailable => {
                self.retain_available =
                    read_flag(r, "Retain Available other than 0 or 1 (3.2.2.3.5)")?
            }
            UserProperty => {
                let name = r.string()?;
                let value = r.string()?;
                self.user_properties.push((name, value));
            }
            MaximumPacketSize => {
                let value = r.u32()?;
                if value == 0 {
                    return Err(protocol("Maximum Packet Size 0 (3.1.2.11.4, 3.2.2.3.6)"));
                }
                self.maximum_packet_size = Some(value);
            }
            WildcardSubscriptionAvailable => {
                self.wildcard_subscription_available = read_flag(
                    r,
                    "Wildcard Subscription Available other than 0 or 1 (3.2.2.3.11)",
                )?
            }
            SubscriptionIdentifierAvailable => {
                self.subscription_identifier_available = read_flag(
                    r,
                    "Subscription Identifier Available other than 0 or 1 (3.2.2.3.12)",
                )?
            }
            SharedSubscriptionAvailable => {
                self.shared_subscription_available = read_flag(
                    r,
                    "Shared Subscription Available other than 0 or 1 (3.2.2.3.13)",
                )?
            }
        }
        Ok(())
    }

    /// The length of the encoded properties for `context`, without the property-length prefix.
    /// Properties not allowed in `context` are not written and not counted.
    pub(crate) fn body_len(&self, context: PropertyContext) -> usize {
        let mut len = 0;
        self.for_each_field(context, |field| len += field.len());
        len
    }

    /// The length of the property list including its variable-byte length prefix.
    pub(crate) fn encoded_len(&self, context: PropertyContext) -> usize {
        let body = self.body_len(context);
        varint_len(body) + body
    }

    /// Checks the properties written in `context` against the wire format's limits: string and
    /// binary values of at most 65,535 bytes, Subscription Identifiers and the list's length of
    /// at most 268,435,455 (`limits.rs`).
    pub(crate) fn check(&self, context: PropertyContext) -> Result<(), EncodeError> {
        let mut result = Ok(());
        let mut body_len = 0;
        self.for_each_field(context, |field| {
            body_len += field.len();
            if result.is_ok() {
                result = field.check();
            }
        });
        result?;
        check_varint("property length", body_len)
    }

    /// Appends the property list (length prefix, then the properties in identifier order).
    pub(crate) fn encode(&self, context: PropertyContext, out: &mut BytesMut) {
        self.encode_with_body_len(context, self.body_len(context), out);
    }

    /// [`Properties::encode`] for a caller that has computed `body_len` (= `body_len(context)`).
    pub(crate) fn encode_with_body_len(
        &self,
        context: PropertyContext,
        body_len: usize,
        out: &mut BytesMut,
    ) {
        debug_assert_eq!(body_len, self.body_len(context));
        put_varint(out, body_len);
        self.for_each_field(context, |field| field.write(out));
    }

    /// Calls `f` for every set property allowed in `context`, in identifier order. The one walk
    /// behind both the length and the encoding, so they cannot disagree.
    fn for_each_field(&self, context: PropertyContext, mut f: impl FnMut(Field<'_>)) {
        use PropertyId::*;
        let mut emit = |id: PropertyId, value: Value<'_>| {
            if id.allowed_in(context) {
                f(Field { id, value });
            }
        };
        if let Some(v) = self.payload_format_indicator {
            emit(PayloadFormatIndicator, Value::Byte(v));
        }
        if let Some(v) = self.message_expiry_interval {
            emit(MessageExpiryInterval, Value::Four(v));
        }
        let Some(more) = self.more.as_deref() else {
            if let Some(v) = self.topic_alias {
                emit(TopicAlias, Value::Two(v));
            }
            return;
        };
        if let Some(v) = &more.content_type {
            emit(ContentType, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.response_topic {
            emit(ResponseTopic, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.correlation_data {
            emit(CorrelationData, Value::Binary(v));
        }
        for &v in &more.subscription_identifiers {
            emit(SubscriptionIdentifier, Value::Varint(v));
        }
        if let Some(v) = more.session_expiry_interval {
            emit(SessionExpiryInterval, Value::Four(v));
        }
        // CONNACK properties go in Mosquitto 2.0's order (Topic Alias Maximum, Server Keep
        // Alive, Assigned Client Identifier, authentication, then Retain Available, Maximum
        // Packet Size, Receive Maximum, Maximum QoS), so that a CONNACK with the same values is
        // byte-identical to Mosquitto's (issue 16). The order means nothing to the protocol.
        if let Some(v) = more.topic_alias_maximum {
            emit(TopicAliasMaximum, Value::Two(v));
        }
        if let Some(v) = more.server_keep_alive {
            emit(ServerKeepAlive, Value::Two(v));
        }
        if let Some(v) = &more.assigned_client_identifier {
            emit(AssignedClientIdentifier, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.authentication_method {
            emit(AuthenticationMethod, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.authentication_data {
            emit(AuthenticationData, Value::Binary(v));
        }
        if let Some(v) = more.request_problem_information {
            emit(RequestProblemInformation, Value::Byte(v));
        }
        if let Some(v) = more.will_delay_interval {
            emit(WillDelayInterval, Value::Four(v));
        }
        if let Some(v) = more.request_response_information {
            emit(RequestResponseInformation, Value::Byte(v));
        }
        if let Some(v) = &more.response_information {
            emit(ResponseInformation, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.server_reference {
            emit(ServerReference, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = &more.reason_string {
            emit(ReasonString, Value::Binary(v.as_bytes()));
        }
        if let Some(v) = more.retain_available {
            emit(RetainAvailable, Value::Byte(v));
        }
        if let Some(v) = more.maximum_packet_size {
            emit(MaximumPacketSize, Value::Four(v));
        }
        if let Some(v) = more.receive_maximum {
            emit(ReceiveMaximum, Value::Two(v));
        }
        if let Some(v) = self.topic_alias {
            emit(TopicAlias, Value::Two(v));
        }
        if let Some(v) = more.maximum_qos {
            emit(MaximumQoS, Value::Byte(v));
        }
        for (name, value) in &more.user_properties {
            emit(UserProperty, Value::Pair(name.as_bytes(), value.as_bytes()));
        }
        if let Some(v) = more.wildcard_subscription_available {
            emit(WildcardSubscriptionAvailable, Value::Byte(v));
        }
        if let Some(v) = more.subscription_identifier_available {
            emit(SubscriptionIdentifierAvailable, Value::Byte(v));
        }
        if let Some(v) = more.shared_subscription_available {
            emit(SharedSubscriptionAvailable, Value::Byte(v));
        }
    }
}

/// One property on its way to the wire.
struct Field<'a> {
    id: PropertyId,
    value: Value<'a>,
}

enum Value<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Varint(u32),
    /// Binary data or a UTF-8 string: both are two-byte-length-prefixed bytes.
    Binary(&'a [u8]),
    Pair(&'a [u8], &'a [u8]),
}

impl Field<'_> {
    fn check(&self) -> Result<(), EncodeError> {
        let too_long = |bytes: &[u8]| bytes.len() > FIELD_LEN_MAX;
        match self.value {
            Value::Binary(b) if too_long(b) => Err(EncodeError::PropertyTooLong {
                property: self.id,
                len: b.len(),
            }),
            Value::Pair(a, b) if too_long(a) || too_long(b) => Err(EncodeError::PropertyTooLong {
                property: self.id,
                len: a.len().max(b.len()),
            }),
            Value::Varint(v) => check_varint("Subscription Identifier", v as usize),
            _ => Ok(()),
        }
    }

    fn len(&self) -> usize {
        1 + match self.value {
            Value::Byte(_) => 1,
            Value::Two(_) => 2,
            Value::Four(_) => 4,
            Value::Varint(v) => varint_len(v as usize),
            Value::Binary(b) => binary_len(b),
            Value::Pair(a, b) => binary_len(a) + binary_len(b),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.id as u8);
        match self.value {
            Value::Byte(v) => out.put_u8(v),
            Value::Two(v) => out.put_u16(v),
            Value::Four(v) => out.put_u32(v),
            Value::Varint(v) => put_varint(out, v as usize),
            Value::Binary(b) => put_binary(out, b),
            Value::Pair(a, b) => {
                put_binary(out, a);
                put_binary(out, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_u8_agrees_with_the_discriminants() {
        for value in 0..=255u8 {
            let expected = PropertyId::ALL.into_iter().find(|id| *id as u8 == value);
            assert_eq!(PropertyId::from_u8(value), expected, "0x{value:02X}");
        }
    }

    #[test]
    fn properties_stay_small() {
        assert!(std::mem::size_of::<Properties>() <= 32);
    }
}
