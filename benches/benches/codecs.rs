//! Encode and decode of one typical chat message in each codec.
//!
//! The message is the event `chat:message` with the payload
//! `{"id", "text", "room": "general", "ts"}`, the shape the chat example
//! broadcasts. For each codec (JSON, MessagePack, bincode) the group
//! `codecs` has:
//!
//! - `<codec>_encode`: [`Codec::encode`] of the envelope and payload into a
//!   frame's bytes, what a broadcast does once per codec in use;
//! - `<codec>_decode`: [`Codec::decode_frame`] then the payload decoded
//!   straight into `ChatMessage`, what the server does for each inbound frame.
//!
//! Before timing, each codec's frame is decoded back and compared with the
//! message, and the frame sizes are printed.
//!
//! Run with `cargo bench -p liweb-benches --bench codecs`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use liweb::{BincodeCodec, Codec, Input, JsonCodec, MsgPackCodec, PayloadDecoder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ChatMessage {
    id: u64,
    text: String,
    room: String,
    ts: u64,
}

const EVENT: &str = "chat:message";

fn message() -> ChatMessage {
    ChatMessage {
        id: 48_213,
        text: "hello everyone, the build is green again".to_owned(),
        room: "general".to_owned(),
        ts: 1_795_490_000_000,
    }
}

fn input<C: Codec>(bytes: &[u8]) -> Input<'_> {
    if C::TEXT {
        Input::Text(std::str::from_utf8(bytes).expect("a text codec writes UTF-8"))
    } else {
        Input::Binary(bytes)
    }
}

fn decode<C: Codec>(bytes: &[u8]) -> ChatMessage {
    let frame = C::decode_frame(input::<C>(bytes)).expect("a valid frame");
    assert_eq!(frame.event, EVENT);
    frame.payload.decode().expect("a valid payload")
}

fn bench_codec<C: Codec>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
) {
    let chat = message();
    let frame = C::encode(EVENT, None, &chat).expect("the message encodes");
    assert_eq!(
        decode::<C>(&frame),
        chat,
        "{name}: the frame does not decode back"
    );
    println!("{name}: frame of {} bytes", frame.len());

    c.bench_function(format!("{name}_encode"), |b| {
        b.iter(|| C::encode(black_box(EVENT), None, black_box(&chat)).expect("encodes"));
    });
    c.bench_function(format!("{name}_decode"), |b| {
        b.iter(|| decode::<C>(black_box(&frame)));
    });
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codecs");
    bench_codec::<JsonCodec>(&mut group, "json");
    bench_codec::<MsgPackCodec>(&mut group, "msgpack");
    bench_codec::<BincodeCodec>(&mut group, "bincode");
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
