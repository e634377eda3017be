//! Fuzzes the Socket.IO decoder with a sequence of WebSocket messages sent
//! to one connection, binary attachments included.
//!
//! Input format: messages separated by the byte `0xFF` (never part of
//! UTF-8 text). A message starting with `b` is a binary frame (the bytes
//! after the `b`); any other is a text frame, an Engine.IO packet
//! (invalid UTF-8 replaced), whose `message` text goes to the decoder:
//!
//! ```text
//! 451-["m",{"_placeholder":true,"num":0}] 0xFF b<attachment bytes>
//! ```
//!
//! Checks: no panics; the decoder's state machine (text while attachments
//! are pending is refused, stray binary is refused, an attachment is
//! accepted); every decoded packet is well formed; every EVENT and ACK
//! re-encoded with `Encoded::event` / `Encoded::ack` and decoded again has
//! the same namespace, id, name, raw arguments and attachments.

#![no_main]

use bytes::Bytes;
use engineio::{Frame, Message, Packet as EnginePacket, Str};
use libfuzzer_sys::fuzz_target;
use socketio::packet::{
    DecodeError, Decoded, Decoder, Encoded, Packet, PacketType, Payload, RESERVED_EVENTS,
};

const MAX_ATTACHMENTS: usize = 10;
const DELIMITER: u8 = 0xff;

/// Feeds an encoded packet to a fresh decoder the way a client sends it.
fn feed(encoded: &Encoded) -> Packet {
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    let n = encoded.frames.len();
    for (i, frame) in encoded.frames.iter().enumerate() {
        let decoded = match frame {
            Frame::Text(s) => {
                assert_eq!(i, 0, "text attachment in {encoded:?}");
                match EnginePacket::decode_text(s.clone()) {
                    Ok(EnginePacket::Message(Message::Text(body))) => decoder.text(&body),
                    other => panic!("encoded frame {s:?} is not a message: {other:?}"),
                }
            }
            Frame::Binary(b) => {
                assert!(i > 0, "binary first frame in {encoded:?}");
                decoder.binary(b.clone())
            }
        };
        match decoded {
            Ok(Decoded::Packet(p)) if i + 1 == n => return p,
            Ok(Decoded::Pending) if i + 1 < n => {}
            other => panic!("frame {i} of {encoded:?} decoded to {other:?}"),
        }
    }
    panic!("no frames in {encoded:?}")
}

fn check_packet(p: &Packet) {
    assert!(p.nsp.starts_with('/') && !p.nsp.contains(','), "{p:?}");
    assert!(p.id.is_none_or(|id| id <= 1 << 53), "{p:?}");
    match (&p.payload, p.kind) {
        (Payload::Event(name, args), PacketType::Event | PacketType::BinaryEvent) => {
            assert!(!RESERVED_EVENTS.contains(&name.as_str()), "{p:?}");
            assert!(args.attachments().len() <= MAX_ATTACHMENTS, "{p:?}");
            assert!(p.kind == PacketType::BinaryEvent || args.attachments().is_empty());
            let _ = args.values();
            let _ = args.first::<serde_json::Value>();
        }
        (Payload::Ack(args), PacketType::Ack | PacketType::BinaryAck) => {
            assert!(args.attachments().len() <= MAX_ATTACHMENTS, "{p:?}");
            assert!(p.kind == PacketType::BinaryAck || args.attachments().is_empty());
            let _ = args.values();
            let _ = args.first::<serde_json::Value>();
        }
        (
            Payload::None,
            PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError,
        ) => {}
        (Payload::Json(raw), PacketType::Connect) => assert!(raw.get().starts_with('{'), "{p:?}"),
        (Payload::Json(raw), PacketType::ConnectError) => {
            assert!(
                raw.get().starts_with('{') || raw.get().starts_with('"'),
                "{p:?}"
            );
        }
        _ => panic!("inconsistent packet {p:?}"),
    }
}

/// Re-encodes a decoded EVENT or ACK and checks it decodes to the same.
fn reencode(p: &Packet) {
    match &p.payload {
        Payload::Event(name, args) => {
            let encoded = Encoded::event(&p.nsp, name, args, p.id);
            let again = feed(&encoded);
            assert_eq!((&again.nsp, again.id), (&p.nsp, p.id), "{encoded:?}");
            match &again.payload {
                Payload::Event(name2, args2) => {
                    assert_eq!(name2, name, "{encoded:?}");
                    assert_eq!(args2.raw(), args.raw(), "{encoded:?}");
                    assert_eq!(args2.attachments(), args.attachments(), "{encoded:?}");
                }
                other => panic!("{encoded:?} decoded to {other:?}"),
            }
        }
        Payload::Ack(args) => {
            let id = p.id.unwrap_or(0);
            let encoded = Encoded::ack(&p.nsp, id, args);
            let again = feed(&encoded);
            assert_eq!((&again.nsp, again.id), (&p.nsp, Some(id)), "{encoded:?}");
            match &again.payload {
                Payload::Ack(args2) => {
                    assert_eq!(args2.raw(), args.raw(), "{encoded:?}");
                    assert_eq!(args2.attachments(), args.attachments(), "{encoded:?}");
                }
                other => panic!("{encoded:?} decoded to {other:?}"),
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    let mut pending = false;
    for chunk in data.split(|b| *b == DELIMITER) {
        let result = if let Some(binary) = chunk.strip_prefix(b"b") {
            let result = decoder.binary(Bytes::copy_from_slice(binary));
            if pending {
                assert!(result.is_ok(), "attachment refused: {result:?}");
            } else {
                assert_eq!(result.as_ref().err(), Some(&DecodeError::UnexpectedBinary));
            }
            result
        } else {
            let text = Str::from(String::from_utf8_lossy(chunk).into_owned());
            let Ok(EnginePacket::Message(Message::Text(body))) = EnginePacket::decode_text(text)
            else {
                continue;
            };
            let result = decoder.text(&body);
            assert_eq!(
                pending,
                matches!(result, Err(DecodeError::UnexpectedText)),
                "text {body:?} while pending={pending}: {result:?}"
            );
            result
        };
        match result {
            Ok(Decoded::Pending) => pending = true,
            Ok(Decoded::Packet(p)) => {
                pending = false;
                check_packet(&p);
                reencode(&p);
            }
            Err(_) => {}
        }
    }
});
