//! What subscribers receive: typed dispatches and lifecycle changes.

mod flattened;

use crate::{delivery::Credit, machine::Lifecycle};
use actix::Message;
use bytes::Bytes;
use discore_protocol::{EnvelopeError, ErrorChain, PayloadData, ShardId};
use serde::de::DeserializeSeed;
use serde_json::value::RawValue;
use std::{collections::HashSet, fmt, sync::Arc};
use twilight_model::gateway::event::{DispatchEvent, DispatchEventWithTypeDeserializer, EventType};

/// One dispatch of one shard, delivered to every subscribed actor.
///
/// The event itself is shared (`Arc`) between subscribers. Keeping the
/// message holds one of the shard's delivery credits (see
/// `docs/architecture.md`): keep `event` (the `Arc`) and drop the message to
/// hold on to an event without slowing the shard.
///
/// Beside the typed event it carries the event's data (`d`) exactly as the
/// gateway sent it ([`raw_data`](Self::raw_data)), unknown fields included:
/// a shared slice of the received frame, not a copy and not a second parse.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct GatewayEvent {
    /// The shard that received it.
    pub shard: ShardId,
    /// Its sequence number in the shard's session.
    pub sequence: u64,
    /// The event.
    pub event: Arc<Dispatch>,
    /// `d` as received: a reference-counted range of the frame.
    pub(crate) data: Option<Bytes>,
    /// Returned to the shard when this copy of the message is dropped; none
    /// for events that did not come from a local shard.
    pub(crate) _credit: Option<Credit>,
}

impl fmt::Debug for GatewayEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayEvent")
            .field("shard", &self.shard)
            .field("sequence", &self.sequence)
            .field("event", &self.event)
            .finish()
    }
}

impl GatewayEvent {
    /// An event that did not come from a shard of this process (a broker, a
    /// replay, a test). It holds no delivery credit.
    ///
    /// Its [`raw_data`](Self::raw_data) is the JSON of a
    /// [`Dispatch::Raw`] (copied once), and none for a typed event: attach
    /// the bytes it came from with [`with_raw_data`](Self::with_raw_data).
    pub fn new(shard: ShardId, sequence: u64, event: Arc<Dispatch>) -> Self {
        let data = match &*event {
            Dispatch::Raw(raw) => Some(Bytes::copy_from_slice(raw.data.get().as_bytes())),
            Dispatch::Known { .. } => None,
        };
        Self {
            shard,
            sequence,
            event,
            data,
            _credit: None,
        }
    }

    /// The same event carrying `data` as its data as received, such as the
    /// payload of a message that brought it over a broker.
    #[must_use]
    pub fn with_raw_data(mut self, data: Bytes) -> Self {
        self.data = Some(data);
        self
    }

    /// The event's data (`d`) exactly as the gateway sent it: the bytes of
    /// the JSON value, unknown fields, member order, escapes and number
    /// formats included (`null` when the payload had no data). Events a
    /// shard delivers always have it; one built with [`new`](Self::new)
    /// from a typed event has it only if attached with
    /// [`with_raw_data`](Self::with_raw_data).
    pub fn raw_data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// [`raw_data`](Self::raw_data) as a handle that shares the received
    /// buffer (a reference count, no copy), for whoever keeps or forwards
    /// the bytes, such as a publisher to a message bus.
    pub fn raw_data_shared(&self) -> Option<Bytes> {
        self.data.clone()
    }

    /// The event's name, such as `MESSAGE_CREATE`.
    pub fn name(&self) -> &str {
        self.event.name()
    }

    /// The typed event, if twilight-model knows it (see [`Dispatch::typed`]).
    pub fn typed(&self) -> Option<&DispatchEvent> {
        self.event.typed()
    }
}

/// A dispatch, typed when twilight-model knows it.
// Always behind an `Arc`, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Dispatch {
    /// An event twilight-model knows, deserialized.
    Known {
        /// The event name, such as `MESSAGE_CREATE`.
        name: &'static str,
        /// The typed event.
        event: DispatchEvent,
    },
    /// An event delivered as raw JSON: twilight-model does not know its name,
    /// or its payload did not match the model (see `reason`).
    Raw(RawDispatch),
}

impl Dispatch {
    /// The event's name, such as `MESSAGE_CREATE`.
    pub fn name(&self) -> &str {
        match self {
            Self::Known { name, .. } => name,
            Self::Raw(raw) => &raw.name,
        }
    }

    /// The typed event, if it is one.
    pub fn typed(&self) -> Option<&DispatchEvent> {
        match self {
            Self::Known { event, .. } => Some(event),
            Self::Raw(_) => None,
        }
    }

    /// Parses `data` as the event `name`. Never fails: an unknown or
    /// unparsable event becomes [`Dispatch::Raw`].
    pub fn parse(name: &str, kind: Option<EventType>, data: &RawValue) -> Self {
        let Some((kind, known_name)) = kind.and_then(|kind| Some((kind, kind.name()?))) else {
            return Self::Raw(RawDispatch::new(name, data, RawReason::UnknownEvent));
        };
        match parse_typed(kind, known_name, data.get()) {
            Ok(event) => Self::Known {
                name: known_name,
                event,
            },
            Err(error) => Self::mismatch(name, data, &error),
        }
    }

    /// Parses the data of a received payload as the event `name`, in one
    /// pass that also validates it.
    ///
    /// # Errors
    ///
    /// Only when the payload turns out not to be JSON
    /// ([`EnvelopeError::is_malformed`]); an unknown event or data of
    /// another shape than the model's becomes [`Dispatch::Raw`].
    pub fn from_data(
        name: &str,
        kind: Option<EventType>,
        data: Option<PayloadData<'_>>,
    ) -> Result<Self, EnvelopeError> {
        Self::from_data_exact(name, kind, data).map(|(dispatch, _)| dispatch)
    }

    /// As [`from_data`](Self::from_data), and also returns the exact text
    /// of `d` as received (a slice of the frame, or `null` when the payload
    /// had no data), found by the same pass.
    pub(crate) fn from_data_exact<'a>(
        name: &str,
        kind: Option<EventType>,
        data: Option<PayloadData<'a>>,
    ) -> Result<(Self, &'a str), EnvelopeError> {
        let Some((kind, known_name)) = kind.and_then(|kind| Some((kind, kind.name()?))) else {
            let raw = data.map_or(Ok(RawValue::NULL), |data| data.raw())?;
            let dispatch = Self::Raw(RawDispatch::new(name, raw, RawReason::UnknownEvent));
            return Ok((dispatch, raw.get()));
        };
        let Some(data) = data else {
            let dispatch = Self::parse(name, Some(kind), RawValue::NULL);
            return Ok((dispatch, RawValue::NULL.get()));
        };
        let parsed = data.parse_exact_with(|json| parse_typed(kind, known_name, json));
        match parsed {
            Ok((event, text)) => Ok((
                Self::Known {
                    name: known_name,
                    event,
                },
                text,
            )),
            Err(error) if error.is_malformed() => Err(error),
            Err(error) => {
                let raw = data.raw()?;
                Ok((Self::mismatch(name, raw, &error), raw.get()))
            }
        }
    }

    fn mismatch(name: &str, data: &RawValue, error: &(dyn std::error::Error + 'static)) -> Self {
        let error = ErrorChain(error);
        log::warn!("{name} did not match the model, delivered raw: {error}");
        Self::Raw(RawDispatch::new(
            name,
            data,
            RawReason::ModelMismatch(error.to_string()),
        ))
    }
}

/// The typed parse of one event's data, in one pass over `json`.
fn parse_typed(kind: EventType, name: &str, json: &str) -> serde_json::Result<DispatchEvent> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let event = match kind {
        // twilight-model's flattened wrappers, without serde's buffering.
        EventType::MessageCreate => {
            DispatchEvent::MessageCreate(Box::new(flattened::message_create(&mut deserializer)?))
        }
        EventType::MemberAdd => {
            DispatchEvent::MemberAdd(Box::new(flattened::member_add(&mut deserializer)?))
        }
        EventType::ThreadMemberUpdate => DispatchEvent::ThreadMemberUpdate(Box::new(
            flattened::thread_member_update(&mut deserializer)?,
        )),
        _ => DispatchEventWithTypeDeserializer::new(name).deserialize(&mut deserializer)?,
    };
    deserializer.end()?;
    Ok(event)
}

/// A dispatch delivered as JSON.
#[derive(Debug)]
pub struct RawDispatch {
    /// The event name.
    pub name: Box<str>,
    /// The event data (`d`), as received.
    pub data: Box<RawValue>,
    /// Why it is raw.
    pub reason: RawReason,
}

impl RawDispatch {
    fn new(name: &str, data: &RawValue, reason: RawReason) -> Self {
        Self {
            name: name.into(),
            data: data.to_owned(),
            reason,
        }
    }
}

/// Why a dispatch arrived as JSON.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RawReason {
    /// twilight-model does not know this event name.
    UnknownEvent,
    /// The payload did not deserialize into twilight-model's type.
    ModelMismatch(String),
}

/// Which dispatches a subscriber wants. Events nobody wants are not
/// deserialized at all.
#[derive(Clone, Debug)]
pub struct EventFilter {
    /// `None`: every known event.
    kinds: Option<Arc<HashSet<EventType, foldhash::fast::RandomState>>>,
    unknown: bool,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self::all()
    }
}

impl EventFilter {
    /// Every event, including ones twilight-model does not know.
    pub fn all() -> Self {
        Self {
            kinds: None,
            unknown: true,
        }
    }

    /// Only these event types.
    pub fn only(kinds: impl IntoIterator<Item = EventType>) -> Self {
        Self {
            kinds: Some(Arc::new(kinds.into_iter().collect())),
            unknown: false,
        }
    }

    /// Also deliver events twilight-model does not know, as raw JSON.
    #[must_use]
    pub fn with_unknown(mut self) -> Self {
        self.unknown = true;
        self
    }

    /// The events either filter selects.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let kinds = match (&self.kinds, &other.kinds) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(Arc::new(a.union(b).copied().collect())),
        };
        Self {
            kinds,
            unknown: self.unknown || other.unknown,
        }
    }

    /// The event types selected: `None` means every known type.
    pub fn kinds(&self) -> Option<impl Iterator<Item = EventType> + '_> {
        self.kinds.as_deref().map(|kinds| kinds.iter().copied())
    }

    /// Whether events twilight-model does not know are selected.
    pub const fn includes_unknown(&self) -> bool {
        self.unknown
    }

    /// Whether an event of this type is wanted (`None`: an unknown event).
    pub fn wants(&self, kind: Option<EventType>) -> bool {
        match (kind, &self.kinds) {
            (None, _) => self.unknown,
            (Some(_), None) => true,
            (Some(kind), Some(kinds)) => kinds.contains(&kind),
        }
    }
}

/// A lifecycle change of a shard, delivered to lifecycle subscribers.
#[derive(Clone, Debug, Eq, Message, PartialEq)]
#[rtype(result = "()")]
pub struct ShardLifecycle {
    /// The shard.
    pub shard: ShardId,
    /// What happened.
    pub event: Lifecycle,
}

#[cfg(test)]
mod tests {
    use super::{Dispatch, EventFilter, RawReason};
    use serde_json::value::RawValue;
    use twilight_model::gateway::event::{DispatchEvent, EventType};

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid json")
    }

    #[test]
    fn known_event_is_typed() {
        let data = raw(r#"{"channel_id":"1","guild_id":"2","user_id":"3","timestamp":1700000000}"#);
        let kind = EventType::try_from("TYPING_START").ok();
        let dispatch = Dispatch::parse("TYPING_START", kind, &data);
        assert!(matches!(
            dispatch.typed(),
            Some(DispatchEvent::TypingStart(_))
        ));
        assert_eq!(dispatch.name(), "TYPING_START");
    }

    #[test]
    fn unknown_event_is_raw_data() {
        let data = raw(r#"{"guild_id":"1","soundboard_sounds":[]}"#);
        let kind = EventType::try_from("SOUNDBOARD_SOUNDS").ok();
        let dispatch = Dispatch::parse("SOUNDBOARD_SOUNDS", kind, &data);
        let Dispatch::Raw(raw) = dispatch else {
            panic!("unknown events are raw");
        };
        assert_eq!(raw.reason, RawReason::UnknownEvent);
        assert_eq!(raw.data.get(), data.get());
    }

    #[test]
    fn mismatching_payload_is_raw_not_an_error() {
        let data = raw(r#"{"unexpected":true}"#);
        let kind = EventType::try_from("MESSAGE_CREATE").ok();
        let dispatch = Dispatch::parse("MESSAGE_CREATE", kind, &data);
        assert!(matches!(
            dispatch,
            Dispatch::Raw(ref raw) if matches!(raw.reason, RawReason::ModelMismatch(_))
        ));
    }

    #[test]
    fn filters() {
        let only = EventFilter::only([EventType::MessageCreate]);
        assert!(only.wants(Some(EventType::MessageCreate)));
        assert!(!only.wants(Some(EventType::TypingStart)));
        assert!(!only.wants(None));
        assert!(only.clone().with_unknown().wants(None));
        assert!(EventFilter::all().wants(Some(EventType::GuildCreate)));
        assert!(EventFilter::all().wants(None));
        let typing = EventFilter::only([EventType::TypingStart]);
        let both = only.union(&typing);
        assert!(
            both.wants(Some(EventType::MessageCreate)) && both.wants(Some(EventType::TypingStart))
        );
        assert!(!both.wants(Some(EventType::GuildCreate)) && !both.wants(None));
        assert_eq!(both.kinds().map(Iterator::count), Some(2));
        assert!(only.union(&EventFilter::all()).kinds().is_none());
    }
}
