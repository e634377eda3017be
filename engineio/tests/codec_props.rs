//! Property tests for the Engine.IO packet and payload codec.
//!
//! These run the same properties as the `engineio_packet` fuzz target
//! (`fuzz/fuzz_targets/engineio_packet.rs`), but quickly and
//! deterministically enough for CI: 2,000 cases per property, a fixed RNG
//! seed and no failure-persistence files. Override with the usual proptest
//! variables, e.g. `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=7 cargo test -p
//! engineio --test codec_props`.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use engineio::packet::{DecodeError, SEPARATOR, decode_payload, encode_payload, v3};
use engineio::{Frame, Message, Packet, Str};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// 2,000 cases, a fixed seed, no `proptest-regressions/` files; the
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED` variables still win.
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2_000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5317_c4b0_a2d0_0001);
    }
    config.failure_persistence = None;
    config
}

/// Characters that matter to the codec: type digits, the `b` of binary
/// packets, the separator, base64 letters and padding, multi-byte UTF-8.
fn interesting_char() -> impl Strategy<Value = char> {
    prop::sample::select(vec![
        '0', '1', '2', '3', '4', '5', '6', '7', '9', 'b', 'A', 'Q', 'g', 'z', '+', '/', '=', ' ',
        '\u{1e}', '\0', '\n', 'é', '€', '😀', '\u{feff}',
    ])
}

fn interesting_string() -> impl Strategy<Value = String> {
    prop::collection::vec(interesting_char(), 0..48).prop_map(|v| v.into_iter().collect())
}

/// Any string, favouring codec-relevant ones.
fn text_input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), interesting_string()]
}

/// Any bytes: random ones, codec-relevant text, and text with a byte that
/// breaks its UTF-8 somewhere.
fn bytes_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        interesting_string().prop_map(String::into_bytes),
        (
            interesting_string(),
            any::<prop::sample::Index>(),
            0x80u8..=0xff
        )
            .prop_map(|(s, at, bad)| {
                let mut bytes = s.into_bytes();
                let at = at.index(bytes.len() + 1);
                bytes.insert(at, bad);
                bytes
            }),
    ]
}

/// The reference model of `Packet::decode_text`.
fn model_decode_text(s: &str) -> Result<Packet, DecodeError> {
    let data = || Str::from(&s[1..]);
    match s.chars().next() {
        None => Err(DecodeError::Empty),
        Some('0') => Ok(Packet::Open),
        Some('1') => Ok(Packet::Close),
        Some('2') => Ok(Packet::Ping(data())),
        Some('3') => Ok(Packet::Pong(data())),
        Some('4') => Ok(Packet::Message(Message::Text(data()))),
        Some('5') => Ok(Packet::Upgrade),
        Some('6') => Ok(Packet::Noop),
        Some(c) => Err(DecodeError::UnknownType(c)),
    }
}

/// The reference model of `decode_payload`: split on the separator, decode
/// each part, stop at the first error.
fn model_decode_payload(bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Utf8)?;
    s.split(SEPARATOR as char)
        .map(|part| match part.strip_prefix('b') {
            Some(b64) => BASE64_STANDARD
                .decode(b64)
                .map(|raw| Packet::Message(Message::Binary(Bytes::from(raw))))
                .map_err(|_| DecodeError::Base64),
            None => model_decode_text(part),
        })
        .collect()
}

/// One outbound packet: the frame the server would queue and the packet a
/// decoder must read back from it.
#[derive(Debug, Clone)]
enum Spec {
    Open,
    Close,
    Ping(String),
    Pong(String),
    Text(String),
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

/// Text that may travel in a polling payload: anything but the separator.
fn payload_text() -> impl Strategy<Value = String> {
    text_input().prop_map(|s| s.replace(SEPARATOR as char, ""))
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        1 => Just(Spec::Open),
        1 => Just(Spec::Close),
        1 => Just(Spec::Upgrade),
        1 => Just(Spec::Noop),
        1 => payload_text().prop_map(Spec::Ping),
        1 => payload_text().prop_map(Spec::Pong),
        4 => payload_text().prop_map(Spec::Text),
        4 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Spec::Binary),
    ]
}

impl Spec {
    fn frame(&self) -> Frame {
        let text = |s: String| Frame::Text(Str::from(s));
        match self {
            Spec::Open => text("0".into()),
            Spec::Close => Frame::CLOSE,
            Spec::Ping(s) if s == "probe" => text("2probe".into()),
            Spec::Ping(s) if s.is_empty() => Frame::PING,
            Spec::Ping(s) => text(format!("2{s}")),
            Spec::Pong(s) if s == "probe" => Frame::PROBE_PONG,
            Spec::Pong(s) => text(format!("3{s}")),
            Spec::Text(s) => Frame::message(s),
            Spec::Binary(b) => Frame::binary(Bytes::from(b.clone())),
            Spec::Upgrade => text("5".into()),
            Spec::Noop => Frame::NOOP,
        }
    }

    fn packet(&self) -> Packet {
        match self {
            Spec::Open => Packet::Open,
            Spec::Close => Packet::Close,
            Spec::Ping(s) => Packet::Ping(Str::from(s.as_str())),
            Spec::Pong(s) => Packet::Pong(Str::from(s.as_str())),
            Spec::Text(s) => Packet::Message(Message::Text(Str::from(s.as_str()))),
            Spec::Binary(b) => Packet::Message(Message::Binary(Bytes::from(b.clone()))),
            Spec::Upgrade => Packet::Upgrade,
            Spec::Noop => Packet::Noop,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// `decode_text` never panics and agrees with the model on every string.
    #[test]
    fn decode_text_is_total_and_exact(s in text_input()) {
        let got = Packet::decode_text(Str::from(s.as_str()));
        prop_assert_eq!(got, model_decode_text(&s));
    }

    /// `decode_payload` never panics on any bytes and agrees with the model.
    #[test]
    fn decode_payload_is_total_and_exact(bytes in bytes_input()) {
        let got = decode_payload(Bytes::from(bytes.clone()));
        if let Ok(packets) = &got {
            let separators = bytes.iter().filter(|b| **b == SEPARATOR).count();
            prop_assert_eq!(packets.len(), separators + 1);
        }
        prop_assert_eq!(got, model_decode_payload(&bytes));
    }

    /// `Str::from_utf8` accepts exactly the valid UTF-8 inputs, unchanged.
    #[test]
    fn str_from_utf8_is_exact(bytes in bytes_input()) {
        match (Str::from_utf8(Bytes::from(bytes.clone())), std::str::from_utf8(&bytes)) {
            (Ok(s), Ok(t)) => prop_assert_eq!(s.as_str(), t),
            (Err(e), Err(_)) => prop_assert_eq!(e, DecodeError::Utf8),
            (got, want) => prop_assert!(false, "from_utf8 {:?} but std says {:?}", got, want),
        }
    }

    /// Frames → polling payload → packets gives back what was sent, and the
    /// payload is exactly as long as `payload_len` announced.
    #[test]
    fn payload_round_trip(specs in prop::collection::vec(spec(), 1..16)) {
        let frames: Vec<Frame> = specs.iter().map(Spec::frame).collect();
        let body = encode_payload(&frames);
        let announced: usize = frames.iter().map(Frame::payload_len).sum::<usize>() + frames.len() - 1;
        prop_assert_eq!(body.len(), announced);
        let expected: Vec<Packet> = specs.iter().map(Spec::packet).collect();
        prop_assert_eq!(decode_payload(body), Ok(expected));
    }

    /// Each text frame is also one WebSocket text frame: `decode_text` reads
    /// it back (binary frames travel as raw WebSocket binary frames).
    #[test]
    fn websocket_frame_round_trip(spec in spec()) {
        if let Frame::Text(s) = spec.frame() {
            prop_assert_eq!(Packet::decode_text(s), Ok(spec.packet()));
        }
    }

    /// Whatever a payload decodes to, re-encoding those packets and decoding
    /// again gives the same packets (the fuzz target's property).
    #[test]
    fn decoded_payloads_reencode(bytes in bytes_input()) {
        if let Ok(packets) = decode_payload(Bytes::from(bytes)) {
            let frames: Vec<Frame> = packets.iter().map(Frame::from).collect();
            prop_assert_eq!(decode_payload(encode_payload(&frames)), Ok(packets));
        }
    }

    /// Any well-formed payload with one part corrupted still decodes to a
    /// result (never a panic), and to an error when the part is bad.
    #[test]
    fn corrupted_payloads_are_rejected_or_decoded(
        specs in prop::collection::vec(spec(), 1..8),
        at in any::<prop::sample::Index>(),
        junk in bytes_input(),
    ) {
        let frames: Vec<Frame> = specs.iter().map(Spec::frame).collect();
        let mut body = encode_payload(&frames).to_vec();
        let at = at.index(body.len() + 1);
        body.splice(at..at, junk);
        let got = decode_payload(Bytes::from(body.clone()));
        prop_assert_eq!(got, model_decode_payload(&body));
    }

    /// v3: frames → payload (either form) → packets gives back what was
    /// sent; the XHR2 form only when asked for and a frame is binary.
    #[test]
    fn v3_payload_round_trip(specs in prop::collection::vec(spec(), 1..16), b64 in any::<bool>()) {
        let frames: Vec<Frame> = specs.iter().map(Spec::frame).collect();
        let (body, content_type) = v3::encode_payload(&frames, b64);
        let binary = content_type == v3::BINARY_CONTENT_TYPE;
        prop_assert_eq!(binary, !b64 && specs.iter().any(|s| matches!(s, Spec::Binary(_))));
        let expected: Vec<Packet> = specs.iter().map(Spec::packet).collect();
        prop_assert_eq!(v3::decode_payload(body, binary), Ok(expected));
    }

    /// v3: any bytes decode to a result, never a panic, in either form;
    /// what decodes re-encodes to the same packets.
    #[test]
    fn v3_decoded_payloads_reencode(bytes in bytes_input(), binary in any::<bool>()) {
        if let Ok(packets) = v3::decode_payload(Bytes::from(bytes), binary) {
            let frames: Vec<Frame> = packets.iter().map(Frame::from).collect();
            let (body, content_type) = v3::encode_payload(&frames, !binary);
            prop_assert_eq!(content_type == v3::BINARY_CONTENT_TYPE, binary && frames.iter().any(|f| matches!(f, Frame::Binary(_))));
            let again = v3::decode_payload(body, content_type == v3::BINARY_CONTENT_TYPE);
            prop_assert_eq!(again, Ok(packets));
        }
    }

    /// v3: a well-formed payload with junk spliced in (lengths then cut
    /// packets, surrogate pairs, XHR2 digits) decodes or is refused,
    /// never panics, and a truncated one is refused.
    #[test]
    fn v3_corrupted_payloads_never_panic(
        specs in prop::collection::vec(spec(), 1..8),
        b64 in any::<bool>(),
        at in any::<prop::sample::Index>(),
        junk in bytes_input(),
    ) {
        let frames: Vec<Frame> = specs.iter().map(Spec::frame).collect();
        let (body, content_type) = v3::encode_payload(&frames, b64);
        let binary = content_type == v3::BINARY_CONTENT_TYPE;
        let mut spliced = body.to_vec();
        let at = at.index(spliced.len() + 1);
        spliced.splice(at..at, junk);
        let _ = v3::decode_payload(Bytes::from(spliced), binary);
        let cut = body.slice(..body.len() - 1);
        // Cutting the last byte leaves a packet shorter than its length,
        // unless that byte was a whole zero-length remainder (never here).
        prop_assert!(v3::decode_payload(cut, binary).is_err() || body.len() == 1);
    }
}
