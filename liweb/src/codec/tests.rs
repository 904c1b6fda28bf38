//! The derived `Events` code read and written through the JSON codec.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CodecKind, JsonPayload, RawPayload};
use crate::event::{EventKey, Events};

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
