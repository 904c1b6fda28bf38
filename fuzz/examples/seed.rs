//! Writes the seed corpora: valid frames made by liweb's own encoders.
//!
//! `cargo run --example seed` in `fuzz/`; the fuzzers start from these.

use std::{fs, path::Path};

use bytes::{Bytes, BytesMut};
use liweb::{
    __fuzz::tcp::{Frame, FrameDecoder},
    BincodeCodec, Codec, CodecKind, ErrorCode, ErrorPayload, JsonCodec, MsgPackCodec,
};
use liweb_fuzz::{encode, sample_events};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
}

fn replies<C: Codec>() -> Vec<Vec<u8>> {
    let error = ErrorPayload {
        code: ErrorCode::NoHandler,
        message: "no handler".into(),
        event: Some("chat:message".into()),
    };
    vec![
        C::encode("__ack", Some(3), &"done").unwrap().to_vec(),
        C::encode_error_reply(4, &error).unwrap().to_vec(),
    ]
}

fn main() {
    for (target, kind, replies) in [
        ("json_frame", CodecKind::Json, replies::<JsonCodec>()),
        (
            "msgpack_frame",
            CodecKind::MessagePack,
            replies::<MsgPackCodec>(),
        ),
        (
            "bincode_frame",
            CodecKind::Bincode,
            replies::<BincodeCodec>(),
        ),
    ] {
        for (i, event) in sample_events().iter().enumerate() {
            write(target, &format!("{i}"), &encode(kind, event, None));
            write(
                target,
                &format!("{i}-ack"),
                &encode(kind, event, Some(1 << 40)),
            );
        }
        for (i, reply) in replies.iter().enumerate() {
            write(target, &format!("reply-{i}"), reply);
        }
    }
    // The TCP target: a limit byte, a piece-size byte, then a stream.
    let decoder = FrameDecoder::new(1024);
    let mut stream = BytesMut::from(&[255u8, 7][..]);
    let message = encode(CodecKind::Json, &sample_events()[2], Some(9));
    for frame in [
        Frame::Hello(Bytes::from_static(b"liweb.msgpack")),
        Frame::Message(Bytes::from(message)),
        Frame::Ping,
        Frame::Pong,
        Frame::Close(Some((1000, "bye".into()))),
    ] {
        decoder.encode(&frame, &mut stream).unwrap();
    }
    write("tcp_frame", "session", &stream);
    write(
        "tcp_frame",
        "too-large",
        &[1, 0, 0, 0, 0, 9, 2, 1, 2, 3, 4, 5, 6, 7, 8],
    );
}
