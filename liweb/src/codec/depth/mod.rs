//! The nesting limit of inbound payloads, one for every codec.
//!
//! Decoding a nested value recurses once per level, so a small frame nested
//! deep enough overflows a thread's stack (a debug build's first). JSON is
//! held to [`MAX_PAYLOAD_DEPTH`] by serde_json, whose fixed limit it is.
//! rmp-serde counts only arrays and maps (not enums, so a recursive enum
//! went unbounded) and bincode counts nothing, so their decoders are
//! wrapped in [`Limited`], which counts the levels on the way down and
//! refuses the one past the limit before recursing into it.

#[cfg(any(feature = "msgpack", feature = "bincode"))]
mod limited;

#[cfg(any(feature = "msgpack", feature = "bincode"))]
pub(crate) use self::limited::Limited;
#[cfg(feature = "bincode")]
pub(crate) use self::limited::LimitedSeed;

/// How deep an inbound payload may nest, in every codec: a payload is
/// refused (`bad_payload`) when decoding it would enter its
/// `MAX_PAYLOAD_DEPTH`-th nested level, so at most `MAX_PAYLOAD_DEPTH - 1`
/// levels decode. JSON counts arrays and objects (serde_json's own fixed
/// limit is this number); MessagePack and bincode count what their decoders
/// recurse into: sequences, maps, structs, tuples and enum variants, and
/// options and newtypes too (which bincode, unlike the self-describing
/// formats, can nest a level per byte).
///
/// A value in a field the type ignores is skipped without recursing in
/// JSON, so there its depth does not matter; rmp-serde recurses to skip it,
/// so in MessagePack it counts like any other.
pub const MAX_PAYLOAD_DEPTH: usize = 128;

#[cfg(test)]
mod tests {
    #[cfg(any(feature = "msgpack", feature = "bincode"))]
    use serde::{Deserialize, Serialize};

    use super::MAX_PAYLOAD_DEPTH;
    use crate::{codec::JsonPayload, event::PayloadDecoder};

    /// A payload type that recurses, as a user's tree might.
    #[cfg(any(feature = "msgpack", feature = "bincode"))]
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    /// A payload with a field the type does not name.
    #[cfg(feature = "msgpack")]
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Named {
        room: String,
    }

    fn json_arrays(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    fn json(text: &str) -> Result<serde_json::Value, crate::DecodeError> {
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(text).expect("the envelope skips any depth");
        JsonPayload::new(&raw).decode()
    }

    /// K4: JSON decodes `MAX_PAYLOAD_DEPTH - 1` levels and refuses one more
    /// (serde_json's own limit is the constant).
    #[test]
    fn k4_json_is_held_to_the_depth_limit() {
        assert!(json(&json_arrays(MAX_PAYLOAD_DEPTH - 1)).is_ok());
        assert!(json(&json_arrays(MAX_PAYLOAD_DEPTH)).is_err());
        assert!(json(&json_arrays(10_000)).is_err());
    }

    #[cfg(feature = "msgpack")]
    fn msgpack_arrays(levels: usize) -> Vec<u8> {
        // fixarray of one element, levels times, around an empty fixarray.
        let mut bytes = vec![0x91; levels - 1];
        bytes.push(0x90);
        bytes
    }

    /// K4: MessagePack is held to the same limit as JSON, in a field the
    /// type ignores too: before the limit, a debug build overflowed its
    /// stack at about 700 levels.
    #[cfg(feature = "msgpack")]
    #[test]
    fn k4_msgpack_is_held_to_the_depth_limit() {
        use crate::codec::MsgPackPayload;
        let decode = |bytes: &[u8]| MsgPackPayload::new(bytes).decode::<serde_json::Value>();
        assert!(decode(&msgpack_arrays(MAX_PAYLOAD_DEPTH - 1)).is_ok());
        assert!(decode(&msgpack_arrays(MAX_PAYLOAD_DEPTH)).is_err());
        assert!(decode(&msgpack_arrays(10_000)).is_err());

        // {"room": "r", "junk": [[[...]]]}
        let named = |levels: usize| {
            let mut bytes = vec![0x82, 0xa4, b'r', b'o', b'o', b'm', 0xa1, b'r'];
            bytes.extend_from_slice(&[0xa4, b'j', b'u', b'n', b'k']);
            bytes.extend(msgpack_arrays(levels));
            MsgPackPayload::new(&bytes).decode::<Named>()
        };
        assert!(named(MAX_PAYLOAD_DEPTH - 2).is_ok());
        let err = named(10_000).unwrap_err();
        assert!(err.to_string().starts_with("invalid payload"), "{err}");
    }

    /// K4: a recursive enum in MessagePack, which rmp-serde's own limit
    /// does not count, is held to the limit too.
    #[cfg(feature = "msgpack")]
    #[test]
    fn k4_a_msgpack_recursive_enum_is_held_to_the_depth_limit() {
        use crate::codec::MsgPackPayload;
        let tree = |levels: usize| {
            // {"Node": {"Node": ... "Leaf"}}
            let mut bytes = Vec::new();
            for _ in 1..levels {
                bytes.extend_from_slice(&[0x81, 0xa4, b'N', b'o', b'd', b'e']);
            }
            bytes.extend_from_slice(&[0xa4, b'L', b'e', b'a', b'f']);
            bytes
        };
        let decode = |bytes: &[u8]| MsgPackPayload::new(bytes).decode::<Tree>();
        assert!(decode(&tree(MAX_PAYLOAD_DEPTH - 1)).is_ok());
        assert!(decode(&tree(MAX_PAYLOAD_DEPTH)).is_err());
        let err = decode(&tree(10_000)).unwrap_err();
        assert!(err.to_string().starts_with("invalid payload"), "{err}");
    }

    /// K4: bincode, which has no limit of its own, is held to the same one
    /// through its target type: a recursive enum 10,000 levels deep is
    /// 10,001 bytes.
    #[cfg(feature = "bincode")]
    #[test]
    fn k4_bincode_is_held_to_the_depth_limit() {
        use crate::codec::BincodePayload;
        let tree = |levels: usize| {
            // Each `Node` is its variant index, 1; the `Leaf` is 0.
            let mut bytes = vec![1u8; levels - 1];
            bytes.push(0);
            bytes
        };
        let decode = |bytes: &[u8]| BincodePayload::new(bytes).decode::<Tree>();
        let deepest = decode(&tree(MAX_PAYLOAD_DEPTH - 1)).expect("just under the limit");
        let mut levels = 1;
        let mut node = &deepest;
        while let Tree::Node(next) = node {
            levels += 1;
            node = next;
        }
        assert_eq!(levels, MAX_PAYLOAD_DEPTH - 1);
        assert!(decode(&tree(MAX_PAYLOAD_DEPTH)).is_err());
        let err = decode(&tree(10_000)).unwrap_err();
        assert!(err.to_string().starts_with("invalid payload"), "{err}");
        assert!(err.to_string().contains("levels deep"), "{err}");

        // Ordinary payloads decode as before.
        let bytes = bincode::serde::encode_to_vec(
            (vec![vec![1u8, 2]], Some(("x".to_owned(), 3u64))),
            bincode::config::standard(),
        )
        .unwrap();
        type Nested = (Vec<Vec<u8>>, Option<(String, u64)>);
        assert_eq!(
            BincodePayload::new(&bytes).decode::<Nested>().unwrap(),
            (vec![vec![1, 2]], Some(("x".to_owned(), 3)))
        );
    }
}
