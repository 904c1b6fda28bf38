//! The traits `#[derive(Events)]` implements.

use serde::{Serialize, Serializer, de::DeserializeOwned};

/// An enum of events: what clients send (`In`) or what the server sends (`Out`).
///
/// Implemented by `#[derive(Events)]`; implementing it by hand is possible but
/// the derive also checks names and writes the per-variant keys.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an enum of events",
    label = "`Events` is not implemented for `{Self}`",
    note = "add `#[derive(liweb::Events)]` to the enum"
)]
pub trait Events: Sized + Send + 'static {
    /// The wire names of the events, by index.
    const NAMES: &'static [&'static str];

    /// One message per event, used when an exhaustive handler list misses it.
    #[doc(hidden)]
    const MISSING_HANDLER: &'static [&'static str];

    /// The dense index of this event (its position in [`Events::NAMES`]).
    fn index(&self) -> usize;

    /// The wire name of this event.
    fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The index of the event with this wire name, if there is one.
    fn index_of(name: &str) -> Option<usize>;

    /// Decodes the payload of the event at `index` straight into its variant.
    ///
    /// Returns `None` when `index` is not an event of this enum.
    fn decode<D: PayloadDecoder>(index: usize, payload: D) -> Option<Result<Self, D::Error>>;

    /// Serializes the payload alone (not the event name).
    fn serialize_payload<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

/// One event of an [`Events`] enum, named in a type.
///
/// `#[derive(Events)]` writes one key per variant in the enum's companion
/// module: `ChatIn::Message` has the key `chat_in::Message`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the key of an event",
    note = "event keys live in the companion module `#[derive(Events)]` writes: `ChatIn::Message` has the key `chat_in::Message`"
)]
pub trait EventKey: Send + Sync + 'static {
    /// The enum this event belongs to.
    type Events: Events;
    /// The payload type: the newtype field, `()` for unit variants, the key
    /// itself for struct variants.
    type Payload: Serialize + DeserializeOwned + Send + 'static;
    /// The wire name.
    const NAME: &'static str;
    /// The dense index in [`Events::NAMES`].
    const INDEX: usize;
    /// Wraps a payload into its event.
    fn into_event(payload: Self::Payload) -> Self::Events;
}

/// A payload in some wire format, waiting to be decoded into a concrete type.
///
/// Each codec provides one; the generated [`Events::decode`] asks it for the
/// variant's payload type, so no intermediate value tree is built.
pub trait PayloadDecoder {
    /// What goes wrong.
    type Error;
    /// Decodes the payload as `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<T, Self::Error>;
}

/// Serializes an event's payload through [`Events::serialize_payload`].
pub(crate) struct PayloadOf<'a, E>(pub(crate) &'a E);

impl<E: Events> Serialize for PayloadOf<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    use super::*;
    use crate::codec::{CodecKind, JsonPayload, RawPayload};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Point {
        x: i32,
        y: i32,
    }

    #[derive(Debug, PartialEq, crate::Events)]
    #[event(rename_all = "camelCase")]
    pub(crate) enum Sample {
        UnitEvent,
        #[event(name = "point:moved")]
        Moved(Point),
        Labelled {
            #[serde(rename = "txt")]
            text: String,
            count: u8,
        },
        Count(u64),
    }

    fn decode(name: &str, json: &str) -> Option<Result<Sample, crate::DecodeError>> {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        Sample::decode(
            Sample::index_of(name)?,
            RawPayload::Json(JsonPayload::new(&raw)),
        )
    }

    fn encode(event: &Sample) -> String {
        let frame = CodecKind::Json.encode(event).unwrap();
        String::from_utf8(frame.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn names_follow_rename_all_and_explicit_names() {
        assert_eq!(
            Sample::NAMES,
            ["unitEvent", "point:moved", "labelled", "count"]
        );
        assert_eq!(Sample::index_of("point:moved"), Some(1));
        assert_eq!(Sample::index_of("Moved"), None);
        assert_eq!(Sample::Count(3).index(), 3);
        assert_eq!(Sample::Count(3).name(), "count");
        assert_eq!(<sample::Labelled as EventKey>::NAME, "labelled");
        assert_eq!(<sample::Moved as EventKey>::INDEX, 1);
    }

    #[test]
    fn payloads_decode_straight_into_each_shape() {
        assert_eq!(
            decode("unitEvent", "null").unwrap().unwrap(),
            Sample::UnitEvent
        );
        assert_eq!(
            decode("point:moved", r#"{"x":1,"y":-2}"#).unwrap().unwrap(),
            Sample::Moved(Point { x: 1, y: -2 })
        );
        assert_eq!(
            decode("labelled", r#"{"txt":"hi","count":2}"#)
                .unwrap()
                .unwrap(),
            Sample::Labelled {
                text: "hi".into(),
                count: 2
            }
        );
        let err = decode("labelled", r#"{"txt":"hi","count":300}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(err.path(), Some("count"));
        assert!(decode("unitEvent", "1").unwrap().is_err());
        assert!(decode("nope", "null").is_none());
        let raw = RawValue::from_string("null".into()).unwrap();
        assert!(Sample::decode(99, RawPayload::Json(JsonPayload::new(&raw))).is_none());
    }

    #[test]
    fn events_encode_as_event_and_payload() {
        assert_eq!(
            encode(&Sample::UnitEvent),
            r#"{"event":"unitEvent","payload":null}"#
        );
        assert_eq!(
            encode(&Sample::Moved(Point { x: 3, y: 4 })),
            r#"{"event":"point:moved","payload":{"x":3,"y":4}}"#
        );
        assert_eq!(
            encode(&Sample::Labelled {
                text: "a\"b".into(),
                count: 1
            }),
            r#"{"event":"labelled","payload":{"txt":"a\"b","count":1}}"#
        );
    }

    #[test]
    fn from_impls_wrap_payloads_and_struct_keys() {
        assert_eq!(
            Sample::from(Point { x: 0, y: 0 }),
            Sample::Moved(Point { x: 0, y: 0 })
        );
        assert_eq!(Sample::from(7u64), Sample::Count(7));
        let key = sample::Labelled {
            text: "k".into(),
            count: 9,
        };
        assert_eq!(
            Sample::from(key),
            Sample::Labelled {
                text: "k".into(),
                count: 9
            }
        );
    }
}
