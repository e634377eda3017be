//! Fuzzes the Engine.IO codec: the input is one WebSocket text frame (when
//! it is UTF-8) and one HTTP long-polling payload.
//!
//! Checks: no decoder panics; whatever decodes re-encodes to frames that
//! decode to the same packets, over both transports; `encode_payload`
//! writes exactly the length `Frame::payload_len` announces.

#![no_main]

use bytes::Bytes;
use engineio::packet::{SEPARATOR, decode_payload, encode_payload};
use engineio::{Frame, Packet, Str};
use libfuzzer_sys::fuzz_target;

/// Encodes `frames` as a polling payload and decodes it back.
fn payload_round_trip(packets: &[Packet]) {
    let frames: Vec<Frame> = packets.iter().map(Frame::from).collect();
    let body = encode_payload(&frames);
    let announced = frames.iter().map(Frame::payload_len).sum::<usize>() + frames.len() - 1;
    assert_eq!(body.len(), announced, "payload_len of {frames:?}");
    let again = decode_payload(body.clone())
        .unwrap_or_else(|e| panic!("re-encoded payload {body:?} does not decode: {e}"));
    assert_eq!(again, packets, "payload {body:?}");
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);

    // WebSocket: the input as one text frame.
    if let Ok(text) = Str::from_utf8(bytes.clone())
        && let Ok(packet) = Packet::decode_text(text)
        && let Frame::Text(s) = Frame::from(&packet)
    {
        // Text frames are sent as they are: decode_text reads them back.
        assert_eq!(
            Packet::decode_text(s.clone()).as_ref(),
            Ok(&packet),
            "frame {s:?}"
        );
        // The same packet in a polling payload, unless its text holds the
        // separator (which only WebSocket can carry).
        if !s.as_bytes().contains(&SEPARATOR) {
            payload_round_trip(std::slice::from_ref(&packet));
        }
    }

    // Polling: the input as one payload.
    if let Ok(packets) = decode_payload(bytes) {
        assert!(!packets.is_empty());
        let separators = data.iter().filter(|b| **b == SEPARATOR).count();
        assert_eq!(packets.len(), separators + 1);
        payload_round_trip(&packets);
    }
});
