//! The nesting limit of inbound payloads, one for every codec.
//!
//! Decoding a nested value recurses once per level, so a small frame nested
//! deep enough overflows a thread's stack (a debug build's first). JSON is
//! held to [`MAX_PAYLOAD_DEPTH`] by serde_json, whose fixed limit it is.
//! rmp-serde counts only arrays and maps (not enums, so a recursive enum
//! went unbounded) and bincode counts nothing, so their decoders are
//! wrapped in [`Limited`], which counts the levels on the way down and
//! refuses the one past the limit before recursing into it.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

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

fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!(
        "the payload nests more than {} levels deep",
        MAX_PAYLOAD_DEPTH - 1
    ))
}

/// A deserializer that refuses to nest [`MAX_PAYLOAD_DEPTH`] levels deep.
pub(crate) struct Limited<D> {
    de: D,
    /// Levels left, as serde_json counts them: entering a level when one is
    /// left fails.
    left: usize,
}

impl<D> Limited<D> {
    pub(crate) fn new(de: D) -> Self {
        Self {
            de,
            left: MAX_PAYLOAD_DEPTH,
        }
    }
}

/// Decodes `T` through [`Limited`]: for decoders that take a seed.
pub(crate) struct LimitedSeed<T>(std::marker::PhantomData<T>);

impl<T> LimitedSeed<T> {
    pub(crate) fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for LimitedSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        T::deserialize(Limited::new(de))
    }
}

/// The wrapped visitor, seed and accesses carry the levels left.
struct Wrap<X> {
    inner: X,
    left: usize,
}

impl<X> Wrap<X> {
    /// One level down, or the error when none is left.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        match self.left.checked_sub(1) {
            Some(left) if left > 0 => Ok(left),
            _ => Err(too_deep()),
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($($arg: $ty,)*)? visitor: V) -> Result<V::Value, D::Error> {
                self.de.$method($($($arg,)*)? Wrap { inner: visitor, left: self.left })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Limited<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any; deserialize_bool; deserialize_i8; deserialize_i16; deserialize_i32;
        deserialize_i64; deserialize_i128; deserialize_u8; deserialize_u16; deserialize_u32;
        deserialize_u64; deserialize_u128; deserialize_f32; deserialize_f64; deserialize_char;
        deserialize_str; deserialize_string; deserialize_bytes; deserialize_byte_buf;
        deserialize_option; deserialize_unit; deserialize_seq; deserialize_map;
        deserialize_identifier; deserialize_ignored_any;
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let left = self.enter()?;
        self.inner.visit_some(Limited { de, left })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let left = self.enter()?;
        self.inner.visit_newtype_struct(Limited { de, left })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let left = self.enter()?;
        self.inner.visit_seq(Wrap { inner: seq, left })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let left = self.enter()?;
        self.inner.visit_map(Wrap { inner: map, left })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let left = self.enter()?;
        self.inner.visit_enum(Wrap { inner: data, left })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Limited {
            de,
            left: self.left,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap {
            inner: seed,
            left: self.left,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Wrap {
            inner: seed,
            left: self.left,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<A> {
    type Error = A::Error;
    type Variant = Wrap<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Wrap<A::Variant>), A::Error> {
        let left = self.left;
        let (value, variant) = self.inner.variant_seed(Wrap { inner: seed, left })?;
        Ok((
            value,
            Wrap {
                inner: variant,
                left,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap {
            inner: seed,
            left: self.left,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                left: self.left,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                left: self.left,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::MAX_PAYLOAD_DEPTH;
    use crate::{codec::JsonPayload, event::PayloadDecoder};

    /// A payload type that recurses, as a user's tree might.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    /// A payload with a field the type does not name.
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
