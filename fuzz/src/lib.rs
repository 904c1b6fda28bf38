//! Shared pieces of the fuzz targets: an events enum with every payload shape
//! the derive supports, the frame checks the three codec targets run, and a
//! model of the room state operations.

use liweb::{
    __fuzz, BincodeCodec, Codec, CodecKind, Decoded, ErrorPayload, Events, Input, JsonCodec,
    MsgPackCodec, PayloadDecoder, RawPayload,
};
use serde::{Deserialize, Serialize, Serializer};

pub mod state;
pub mod tcp;

/// A nested struct payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub address: Address,
    pub tags: Vec<String>,
}

/// The struct inside [`Profile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub city: String,
    pub zip: Option<u32>,
}

/// An enum payload with a variant of each shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    Off,
    Level(u8),
    Range { lo: i16, hi: i16 },
    Pair(bool, char),
}

/// What a client of a realistic application sends: one variant per payload
/// shape.
#[derive(Debug, Clone, PartialEq, Events)]
pub enum FuzzIn {
    /// Unit.
    Ping,
    /// Newtype string, with an explicit wire name.
    #[event(name = "chat:message")]
    Say(String),
    /// Struct variant.
    Move {
        x: i32,
        y: i32,
        label: Option<String>,
    },
    /// Nested struct.
    Profile(Profile),
    /// Vec.
    Batch(Vec<u64>),
    /// Option.
    Maybe(Option<i64>),
    /// Enum.
    SetMode(Mode),
    /// Tuple and bytes.
    Blob((u16, Vec<u8>)),
}

/// Serializes an event's payload alone, as the server's encoder does.
struct PayloadOf<'a, E>(&'a E);

impl<E: Events> Serialize for PayloadOf<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

/// Encodes `event` with the codec of `kind`.
pub fn encode(kind: CodecKind, event: &FuzzIn, ack: Option<u64>) -> Vec<u8> {
    fn with<C: Codec>(event: &FuzzIn, ack: Option<u64>) -> Vec<u8> {
        C::encode(event.name(), ack, &PayloadOf(event))
            .unwrap_or_else(|err| panic!("encoding {event:?} failed: {err}"))
            .to_vec()
    }
    match kind {
        CodecKind::Json => with::<JsonCodec>(event, ack),
        CodecKind::MessagePack => with::<MsgPackCodec>(event, ack),
        CodecKind::Bincode => with::<BincodeCodec>(event, ack),
        other => unreachable!("no such codec in this build: {other:?}"),
    }
}

/// The input a transport hands the codec: text for JSON (only valid UTF-8
/// reaches it), binary for the others.
fn input(kind: CodecKind, bytes: &[u8]) -> Option<Input<'_>> {
    if kind.is_text() {
        std::str::from_utf8(bytes).ok().map(Input::Text)
    } else {
        Some(Input::Binary(bytes))
    }
}

/// What decoding one frame gave, compared across re-encodings.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub event: FuzzIn,
    pub ack: Option<u64>,
}

/// Runs one inbound frame through the path a connection takes: the reply
/// check, the envelope, the generated name lookup and payload decode. Returns
/// the event when it is one of [`FuzzIn`].
///
/// Checks, besides not panicking: a frame read as a reply is one the
/// connection loop would have recognised as a possible reply; the error of a
/// reply decodes or fails cleanly; a decoded event has the index of its
/// name.
pub fn read_frame(kind: CodecKind, bytes: &[u8]) -> Option<Outcome> {
    let input = input(kind, bytes)?;
    let may_be_reply = __fuzz::may_be_reply(kind, input);
    let Decoded {
        event,
        payload,
        ack,
        error,
    } = __fuzz::decode_frame(kind, input).ok()?;
    if event == "__ack" {
        assert!(
            may_be_reply,
            "{kind:?}: a reply the connection loop would queue behind its handler: {bytes:?}"
        );
    }
    if let Some(error) = error {
        let _ = error.decode::<ErrorPayload>();
    }
    let index = FuzzIn::index_of(&event)?;
    assert_eq!(FuzzIn::NAMES[index], event);
    let decoded = FuzzIn::decode::<RawPayload<'_>>(index, payload)
        .expect("an index from `index_of` is an event of the enum");
    let event = decoded.ok()?;
    assert_eq!(event.index(), index);
    Some(Outcome { event, ack })
}

/// The frame target: reads `bytes` as `kind` would and, for a frame that
/// decodes into an event, checks that the event survives re-encoding in every
/// codec, and that re-encoding is stable (a decoded frame re-encodes to the
/// same bytes).
pub fn check_frame(kind: CodecKind, bytes: &[u8]) {
    let Some(first) = read_frame(kind, bytes) else {
        return;
    };
    for &codec in CodecKind::ALL {
        let encoded = encode(codec, &first.event, first.ack);
        let again = read_frame(codec, &encoded).unwrap_or_else(|| {
            panic!(
                "{codec:?} cannot read back its encoding of {:?}: {encoded:?}",
                first.event
            )
        });
        assert_eq!(again, first, "{codec:?} changed the event on a round trip");
        assert_eq!(
            encode(codec, &again.event, again.ack),
            encoded,
            "{codec:?} encodes one event two ways"
        );
    }
}

/// A few events of every shape, for seed corpora and tests.
pub fn sample_events() -> Vec<FuzzIn> {
    vec![
        FuzzIn::Ping,
        FuzzIn::Say("hello \"world\" ✓".into()),
        FuzzIn::Move {
            x: -3,
            y: 7,
            label: Some("here".into()),
        },
        FuzzIn::Profile(Profile {
            name: "ada".into(),
            address: Address {
                city: "London".into(),
                zip: None,
            },
            tags: vec!["a".into(), "b".into()],
        }),
        FuzzIn::Batch(vec![0, 1, u64::MAX]),
        FuzzIn::Maybe(Some(i64::MIN)),
        FuzzIn::SetMode(Mode::Range { lo: -1, hi: 1 }),
        FuzzIn::SetMode(Mode::Pair(true, 'é')),
        FuzzIn::Blob((7, vec![0, 255])),
    ]
}
