//! Property tests for the Socket.IO packet codec, binary attachments
//! included.
//!
//! These run the same properties as the `socketio_packet` fuzz target
//! (`fuzz/fuzz_targets/socketio_packet.rs`), but quickly and
//! deterministically enough for CI: 2,000 cases per property, a fixed RNG
//! seed and no failure-persistence files. Override with the usual proptest
//! variables, e.g. `PROPTEST_CASES=100000 PROPTEST_RNG_SEED=7 cargo test -p
//! socketio --test codec_props`.

use bytes::Bytes;
use engineio::{Frame, Str};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::Value;
use socketio::packet::{
    Args, DecodeError, Decoded, Decoder, Encoded, Packet, PacketType, Payload, RESERVED_EVENTS,
};

/// What the server allows per packet (the fuzz target uses the same).
const MAX_ATTACHMENTS: usize = 10;
/// The largest ack id the decoder accepts (a JavaScript safe integer).
const MAX_ACK_ID: u64 = 1 << 53;

/// 2,000 cases, a fixed seed, no `proptest-regressions/` files; the
/// `PROPTEST_CASES` and `PROPTEST_RNG_SEED` variables still win.
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2_000;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x5317_c4b0_a2d0_0002);
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------- strategies

/// Strings with unicode, escapes-to-be, control characters and the codec's
/// own delimiters.
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec![
                'a', 'Z', '0', '9', ' ', '"', '\\', '/', ',', '-', '[', ']', '{', '}', ':', '\n',
                '\t', '\0', '\u{1e}', '\u{7f}', 'é', 'ß', '€', '中', '😀', '\u{2028}', '\u{feff}',
            ]),
            0..24,
        )
        .prop_map(|v| v.into_iter().collect()),
    ]
}

/// Numbers that serde_json prints and parses back exactly.
fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (any::<i32>(), 0u32..20)
            .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e))),
    ]
}

/// Nested JSON: arrays, objects, strings with unicode, numbers, literals.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One argument: JSON, or binary data sent as an attachment.
#[derive(Debug, Clone)]
enum Arg {
    Json(Value),
    Binary(Vec<u8>),
}

fn args() -> impl Strategy<Value = Vec<Arg>> {
    let arg = prop_oneof![
        3 => json_value().prop_map(Arg::Json),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Arg::Binary),
    ];
    prop::collection::vec(arg, 0..6).prop_filter("at most MAX_ATTACHMENTS binaries", |args| {
        args.iter().filter(|a| matches!(a, Arg::Binary(_))).count() <= MAX_ATTACHMENTS
    })
}

/// Builds `Args` and the values `Args::values` must give back (binary
/// arguments stay placeholders).
fn build_args(spec: &[Arg]) -> (Args, Vec<Value>) {
    let mut args = Args::new();
    let mut values = Vec::new();
    let mut attachments = 0;
    for arg in spec {
        match arg {
            Arg::Json(v) => {
                args.push(v);
                // What serde_json reads back from the text it wrote: without
                // its `float_roundtrip` feature a float may come back one ULP
                // off (e.g. 3786.0762939453125 → 3786.076293945313).
                values.push(
                    serde_json::from_str(&v.to_string()).expect("serde_json reads its output"),
                );
            }
            Arg::Binary(b) => {
                args.push_binary(Bytes::from(b.clone()));
                values.push(serde_json::json!({"_placeholder": true, "num": attachments}));
                attachments += 1;
            }
        }
    }
    (args, values)
}

/// Event names a client may send: any string but the reserved ones.
fn event_name() -> impl Strategy<Value = String> {
    json_string().prop_filter("reserved event name", |n| {
        !RESERVED_EVENTS.contains(&n.as_str())
    })
}

/// `/` or a namespace path (no `,`, which ends the namespace on the wire).
fn nsp() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        "/[a-zA-Z0-9_./~é中-]{0,12}",
        "/[0-9]{1,4}",
    ]
}

fn ack_id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0..=MAX_ACK_ID, Just(MAX_ACK_ID)]
}

// ------------------------------------------------------------------- helpers

/// Feeds an encoded packet to a fresh decoder as the client would send it:
/// the text frame without its Engine.IO `4` prefix, then each attachment.
/// Every frame but the last must leave the decoder pending.
fn feed(encoded: &Encoded) -> Result<Packet, TestCaseError> {
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    let mut result = None;
    for (i, frame) in encoded.frames.iter().enumerate() {
        let last = i + 1 == encoded.frames.len();
        let decoded = match (i, frame) {
            (0, Frame::Text(text)) => {
                let body = text.as_str().strip_prefix('4');
                prop_assert!(body.is_some(), "text frame without '4' prefix: {:?}", text);
                decoder.text(body.unwrap_or_default())
            }
            (0, Frame::Binary(_)) => return Err(TestCaseError::fail("first frame is binary")),
            (_, Frame::Binary(data)) => decoder.binary(data.clone()),
            (_, Frame::Text(_)) => return Err(TestCaseError::fail("attachment is text")),
        };
        match decoded {
            Ok(Decoded::Packet(p)) if last => result = Some(p),
            Ok(Decoded::Pending) if !last => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "frame {i} of {:?}: {other:?}",
                    encoded.frames
                )));
            }
        }
    }
    result.ok_or_else(|| TestCaseError::fail("no frames"))
}

fn event_parts(packet: &Packet) -> Option<(&str, &Args)> {
    match &packet.payload {
        Payload::Event(name, args) => Some((name, args)),
        _ => None,
    }
}

/// Feeds a sequence of messages to one decoder; never panics, and the
/// decoder's answers follow its state machine.
fn feed_all(messages: &[Msg]) -> Result<(), TestCaseError> {
    let mut decoder = Decoder::new(MAX_ATTACHMENTS);
    // Attachments still expected by the decoder, as far as we can tell.
    let mut pending = false;
    for msg in messages {
        let result = match msg {
            Msg::Text(s) => decoder.text(s),
            Msg::Binary(b) => decoder.binary(Bytes::from(b.clone())),
        };
        match (msg, &result, pending) {
            (Msg::Text(_), Err(DecodeError::UnexpectedText), true) => {}
            (Msg::Text(_), _, true) => {
                return Err(TestCaseError::fail(format!(
                    "text while pending: {result:?}"
                )));
            }
            (Msg::Text(_), Err(DecodeError::UnexpectedText), false) => {
                return Err(TestCaseError::fail("UnexpectedText while idle"));
            }
            (Msg::Binary(_), Err(DecodeError::UnexpectedBinary), false) => {}
            (Msg::Binary(_), _, false) => {
                return Err(TestCaseError::fail(format!(
                    "binary while idle: {result:?}"
                )));
            }
            // The last attachment completes the packet, whose placeholders
            // must then name attachments that exist.
            (Msg::Binary(_), Err(DecodeError::IllegalAttachments), true) => {
                pending = false;
                continue;
            }
            (Msg::Binary(_), Err(e), true) => {
                return Err(TestCaseError::fail(format!("attachment refused: {e:?}")));
            }
            _ => {}
        }
        match result {
            Ok(Decoded::Pending) => pending = true,
            Ok(Decoded::Packet(p)) => {
                pending = false;
                check_packet(&p)?;
                reencode_and_compare(&p)?;
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Invariants of every decoded packet.
fn check_packet(p: &Packet) -> Result<(), TestCaseError> {
    prop_assert!(p.nsp.starts_with('/'), "namespace {:?}", p.nsp);
    prop_assert!(!p.nsp.contains(','), "namespace {:?}", p.nsp);
    if let Some(id) = p.id {
        prop_assert!(id <= MAX_ACK_ID);
    }
    match (&p.payload, p.kind) {
        (Payload::Event(name, args), PacketType::Event | PacketType::BinaryEvent) => {
            prop_assert!(!RESERVED_EVENTS.contains(&name.as_str()));
            prop_assert!(args.attachments().len() <= MAX_ATTACHMENTS);
            if p.kind == PacketType::Event {
                prop_assert!(args.attachments().is_empty());
            }
            // Raw args are the elements of a JSON array.
            let array = args.to_json_array();
            if let Err(e) = serde_json::from_str::<Vec<&serde_json::value::RawValue>>(&array) {
                return Err(TestCaseError::fail(format!(
                    "args {args:?} not an array: {e}"
                )));
            }
        }
        (Payload::Ack(args), PacketType::Ack | PacketType::BinaryAck) => {
            prop_assert!(args.attachments().len() <= MAX_ATTACHMENTS);
            if p.kind == PacketType::Ack {
                prop_assert!(args.attachments().is_empty());
            }
        }
        (
            Payload::None,
            PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError,
        ) => {}
        (Payload::Json(raw), PacketType::Connect) => {
            prop_assert!(raw.get().starts_with('{'), "CONNECT data {}", raw.get());
        }
        (Payload::Json(raw), PacketType::ConnectError) => {
            let ok = raw.get().starts_with('{') || raw.get().starts_with('"');
            prop_assert!(ok, "CONNECT_ERROR data {}", raw.get());
        }
        (payload, kind) => {
            return Err(TestCaseError::fail(format!("{kind:?} with {payload:?}")));
        }
    }
    Ok(())
}

/// Re-encodes a decoded EVENT or ACK and decodes it again: same namespace,
/// id, name, raw arguments and attachments.
fn reencode_and_compare(p: &Packet) -> Result<(), TestCaseError> {
    match &p.payload {
        Payload::Event(name, args) => {
            let again = feed(&Encoded::event(&p.nsp, name, args, p.id))?;
            prop_assert_eq!(&again.nsp, &p.nsp);
            prop_assert_eq!(again.id, p.id);
            let (name2, args2) =
                event_parts(&again).ok_or_else(|| TestCaseError::fail("not an event"))?;
            prop_assert_eq!(name2, name.as_str());
            prop_assert_eq!(args2.raw(), args.raw());
            prop_assert_eq!(args2.attachments(), args.attachments());
        }
        Payload::Ack(args) => {
            // The server only answers acks with an id; re-encode one with 0
            // when the client left it out.
            let id = p.id.unwrap_or(0);
            let again = feed(&Encoded::ack(&p.nsp, id, args))?;
            prop_assert_eq!(&again.nsp, &p.nsp);
            prop_assert_eq!(again.id, Some(id));
            match &again.payload {
                Payload::Ack(args2) => {
                    prop_assert_eq!(args2.raw(), args.raw());
                    prop_assert_eq!(args2.attachments(), args.attachments());
                }
                other => return Err(TestCaseError::fail(format!("not an ack: {other:?}"))),
            }
        }
        _ => {}
    }
    Ok(())
}

/// One Engine.IO message as a client would send it.
#[derive(Debug, Clone)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

/// Packet-shaped text: a type, maybe an attachment count, maybe a
/// namespace, maybe an ack id, maybe JSON — each part valid or not.
fn packet_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        12 => (b'0'..=b'6').prop_map(|b| (b as char).to_string()),
        1 => json_string(),
    ];
    let count = prop_oneof![
        6 => Just(String::new()),
        6 => (0usize..=MAX_ATTACHMENTS).prop_map(|n| format!("{n}-")),
        1 => (MAX_ATTACHMENTS + 1..1000).prop_map(|n| format!("{n}-")),
        1 => prop::sample::select(vec!["-", "x-", "1", "-1-", "99999999999999999999999-"])
            .prop_map(str::to_owned),
    ];
    let nsp = prop_oneof![
        2 => Just(String::new()),
        2 => nsp().prop_map(|n| format!("{n},")),
        1 => nsp(),
    ];
    let id = prop_oneof![
        6 => Just(String::new()),
        6 => ack_id().prop_map(|id| id.to_string()),
        1 => prop::sample::select(vec!["9007199254740993", "99999999999999999999999", "007"])
            .prop_map(str::to_owned),
    ];
    let data = prop_oneof![
        2 => Just(String::new()),
        6 => (event_name(), args()).prop_map(|(name, spec)| {
            let (args, _) = build_args(&spec);
            let text = Encoded::event("/", &name, &args, None).text().to_owned();
            // Keep the JSON array: drop "42" / "45" and any "N-".
            text[2..]
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_owned()
        }),
        2 => json_value().prop_map(|v| v.to_string()),
        2 => prop::sample::select(vec![
            "[\"connect\"]", "[\"x\",{\"_placeholder\":true,\"num\":0}]", "[1]", "[1.5e3]",
            "[-0]", "[\"a\"", "{}", "\"x\"", "[]", " [ \"a\" , 1 ] ", "[\"\\ud800\"]",
            "[\"a\",\"\\ud800\"]", "[1e400]", "null", "[\"a\"]]", "{\"token\":\"abc\"}",
        ])
        .prop_map(str::to_owned),
        1 => json_string(),
    ];
    (kind, count, nsp, id, data).prop_map(|(k, c, n, i, d)| format!("{k}{c}{n}{i}{d}"))
}

/// A well-formed EVENT or ACK as the client sends it: the text message
/// (without the Engine.IO prefix) and its attachments.
fn encoded_messages() -> impl Strategy<Value = Vec<Msg>> {
    (
        nsp(),
        event_name(),
        args(),
        prop::option::of(ack_id()),
        any::<bool>(),
    )
        .prop_map(|(nsp, name, spec, id, ack)| {
            let (args, _) = build_args(&spec);
            let encoded = match (ack, id) {
                (true, Some(id)) => Encoded::ack(&nsp, id, &args),
                _ => Encoded::event(&nsp, &name, &args, id),
            };
            encoded
                .frames
                .iter()
                .map(|frame| match frame {
                    Frame::Text(s) => Msg::Text(s.as_str()[1..].to_owned()),
                    Frame::Binary(b) => Msg::Binary(b.to_vec()),
                })
                .collect()
        })
}

/// A client's messages: well-formed packets with their attachments,
/// packet-shaped text, any text, stray binary data.
fn messages() -> impl Strategy<Value = Vec<Msg>> {
    let group = prop_oneof![
        3 => encoded_messages(),
        4 => packet_like().prop_map(|s| vec![Msg::Text(s)]),
        1 => any::<String>().prop_map(|s| vec![Msg::Text(s)]),
        2 => prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| vec![Msg::Binary(b)]),
    ];
    prop::collection::vec(group, 0..12).prop_map(|groups| groups.concat())
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    /// Any string is decoded to a packet, a pending packet or an error.
    #[test]
    fn text_decoding_is_total(s in prop_oneof![any::<String>(), packet_like()]) {
        let mut decoder = Decoder::new(MAX_ATTACHMENTS);
        match decoder.text(&s) {
            Ok(Decoded::Packet(p)) => {
                check_packet(&p)?;
                reencode_and_compare(&p)?;
            }
            Ok(Decoded::Pending) => {
                prop_assert!(matches!(s.as_bytes()[0], b'5' | b'6'));
                prop_assert!(matches!(decoder.text("2[\"a\"]"), Err(DecodeError::UnexpectedText)));
            }
            Err(_) => {}
        }
    }

    /// Any sequence of text and binary messages to one decoder: no panic,
    /// the state machine holds, and every packet re-encodes to itself.
    #[test]
    fn message_sequences_never_panic(messages in messages()) {
        feed_all(&messages)?;
    }

    /// EVENT: name, args (JSON and binary), namespace and ack id survive
    /// encoding and decoding.
    #[test]
    fn event_round_trip(
        nsp in nsp(),
        name in event_name(),
        spec in args(),
        id in prop::option::of(ack_id()),
    ) {
        let (args, values) = build_args(&spec);
        let encoded = Encoded::event(&nsp, &name, &args, id);
        prop_assert_eq!(encoded.frames.len(), 1 + args.attachments().len());
        let p = feed(&encoded)?;
        let kind = if args.attachments().is_empty() { PacketType::Event } else { PacketType::BinaryEvent };
        prop_assert_eq!(p.kind, kind);
        prop_assert_eq!(&p.nsp, &nsp);
        prop_assert_eq!(p.id, id);
        let (name2, args2) = event_parts(&p).ok_or_else(|| TestCaseError::fail("not an event"))?;
        prop_assert_eq!(name2, name.as_str());
        prop_assert_eq!(args2.raw(), args.raw());
        prop_assert_eq!(args2.attachments(), args.attachments());
        prop_assert_eq!(args2.values(), values.clone());
        if let Some(first) = values.first() {
            prop_assert_eq!(&args2.first::<Value>().map_err(|e| TestCaseError::fail(e.to_string()))?, first);
        }
        prop_assert_eq!(args2, &args);
    }

    /// ACK: args, attachments, namespace and id survive.
    #[test]
    fn ack_round_trip(nsp in nsp(), spec in args(), id in ack_id()) {
        let (args, values) = build_args(&spec);
        let p = feed(&Encoded::ack(&nsp, id, &args))?;
        let kind = if args.attachments().is_empty() { PacketType::Ack } else { PacketType::BinaryAck };
        prop_assert_eq!(p.kind, kind);
        prop_assert_eq!(&p.nsp, &nsp);
        prop_assert_eq!(p.id, Some(id));
        match &p.payload {
            Payload::Ack(args2) => {
                prop_assert_eq!(args2.raw(), args.raw());
                prop_assert_eq!(args2.attachments(), args.attachments());
                prop_assert_eq!(args2.values(), values);
            }
            other => return Err(TestCaseError::fail(format!("not an ack: {other:?}"))),
        }
    }

    /// CONNECT, CONNECT_ERROR and DISCONNECT survive too.
    #[test]
    fn control_round_trip(
        nsp in nsp(),
        auth in prop::option::of(prop::collection::btree_map(json_string(), json_value(), 0..4)),
        message in json_string(),
    ) {
        let auth = auth.map(|m| Value::Object(m.into_iter().collect()).to_string());
        let p = feed(&Encoded::connect(&nsp, auth.as_deref().unwrap_or("")))?;
        prop_assert_eq!((p.kind, &p.nsp, p.id), (PacketType::Connect, &nsp, None));
        match (&p.payload, &auth) {
            (Payload::None, None) => {}
            (Payload::Json(raw), Some(auth)) => prop_assert_eq!(raw.get(), auth.as_str()),
            (other, _) => return Err(TestCaseError::fail(format!("connect gave {other:?}"))),
        }

        let object = serde_json::json!({ "message": message }).to_string();
        let string = Value::String(message).to_string();
        for data in [object, string] {
            let p = feed(&Encoded::connect_error(&nsp, &data))?;
            prop_assert_eq!((p.kind, &p.nsp), (PacketType::ConnectError, &nsp));
            match &p.payload {
                Payload::Json(raw) => prop_assert_eq!(raw.get(), data.as_str()),
                other => return Err(TestCaseError::fail(format!("connect_error gave {other:?}"))),
            }
        }

        let p = feed(&Encoded::disconnect(&nsp))?;
        prop_assert_eq!((p.kind, &p.nsp), (PacketType::Disconnect, &nsp));
        prop_assert!(matches!(p.payload, Payload::None));
    }

    /// More attachments than allowed are refused before any is buffered.
    #[test]
    fn too_many_attachments_are_refused(n in MAX_ATTACHMENTS + 1..1000, binary_ack in any::<bool>()) {
        let kind = if binary_ack { '6' } else { '5' };
        let text = format!("{kind}{n}-[\"a\"]");
        prop_assert_eq!(
            Decoder::new(MAX_ATTACHMENTS).text(&text).err(),
            Some(DecodeError::TooManyAttachments)
        );
    }

    /// Every encoded text frame is valid UTF-8 text starting with the
    /// Engine.IO message type, as `Str` guarantees.
    #[test]
    fn encoded_frames_are_engineio_messages(nsp in nsp(), name in event_name(), spec in args()) {
        let (args, _) = build_args(&spec);
        let encoded = Encoded::event(&nsp, &name, &args, None);
        match encoded.frames.first() {
            Some(Frame::Text(s)) => {
                prop_assert!(s.as_str().starts_with('4'));
                prop_assert!(Str::from_utf8(s.as_bytes().clone()).is_ok());
                prop_assert_eq!(encoded.text(), s.as_str());
            }
            other => return Err(TestCaseError::fail(format!("first frame {other:?}"))),
        }
    }
}
