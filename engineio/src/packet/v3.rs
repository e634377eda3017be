//! The Engine.IO v3 codec (socket.io 1.x/2.x clients, `allow_eio3`): the
//! length-prefixed polling payloads, in their text form
//! (`<UTF-16 length>:<packet>`, binaries as `b4<base64>`) and their XHR2
//! binary form, and the binary message framing (a leading type byte).
//!
//! Single text packets are the same as in v4 ([`Packet::decode_text`]);
//! only the way several are joined, and binaries, differ. Lengths in the
//! text form are JavaScript string lengths (UTF-16 code units), counted
//! over the whole encoded packet, type digit (and `b`) included — what the
//! reference's `engine.io/build/parser-v3` writes and checks.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::{BufMut, Bytes, BytesMut};

use super::{DecodeError, Frame, Message, Packet, Str};

/// `Content-Type` of a text payload.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=UTF-8";
/// `Content-Type` of an XHR2 binary payload; engine.io-client 3.x compares
/// it as a whole string, so it carries no parameter.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// The type byte of a binary `message` in v3 (a WebSocket binary frame's
/// first byte, the first byte after `0xFF` in an XHR2 payload).
pub const BINARY_MESSAGE_TYPE: u8 = 4;

/// Digits a length may have; more is a malformed payload (a `maxPayload`
/// fits in 10 decimal digits).
const MAX_LENGTH_DIGITS: usize = 10;

/// The length of `s` as JavaScript counts it: UTF-16 code units (a
/// character past U+FFFF counts two). One pass over the bytes: every
/// byte that starts a character counts one, a 4-byte lead one more.
pub fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        return s.len();
    }
    s.bytes()
        .map(|b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0))
        .sum()
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Appends `data` as base64.
pub(crate) fn put_base64(out: &mut BytesMut, data: &[u8]) {
    let start = out.len();
    out.resize(start + base64_len(data.len()), 0);
    let written = BASE64_STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// A binary message as v3 writes it in text: `b4<base64>`.
pub fn base64_message(data: &[u8]) -> Str {
    let mut out = BytesMut::with_capacity(2 + base64_len(data.len()));
    out.put_slice(b"b4");
    put_base64(&mut out, data);
    match Str::from_utf8(out.freeze()) {
        Ok(s) => s,
        // Base64 is ASCII.
        Err(_) => Str::from_static(""),
    }
}

/// Encodes frames as one v3 polling payload; returns the body and its
/// `Content-Type`. The XHR2 binary form is used only when the client can
/// read it (`b64` absent) and a frame is binary, as the reference does;
/// otherwise the text form. No frames give `0:`.
pub fn encode_payload(frames: &[Frame], b64: bool) -> (Bytes, &'static str) {
    if !b64 && frames.iter().any(|f| matches!(f, Frame::Binary(_))) {
        return (encode_binary_payload(frames), BINARY_CONTENT_TYPE);
    }
    if frames.is_empty() {
        return (Bytes::from_static(b"0:"), TEXT_CONTENT_TYPE);
    }
    let len: usize = frames.iter().map(|f| f.payload_len() + 12).sum();
    let mut out = BytesMut::with_capacity(len);
    let mut digits = itoa_buf();
    for frame in frames {
        match frame {
            Frame::Text(s) => {
                out.put_slice(fmt_len(&mut digits, utf16_len(s)));
                out.put_u8(b':');
                out.put_slice(s.as_bytes());
            }
            Frame::Binary(b) => {
                out.put_slice(fmt_len(&mut digits, 2 + base64_len(b.len())));
                out.put_slice(b":b4");
                put_base64(&mut out, b);
            }
        }
    }
    (out.freeze(), TEXT_CONTENT_TYPE)
}

/// The XHR2 form: per packet `00` (string) or `01` (binary), the length as
/// one byte per decimal digit, `FF`, then the packet: a string's UTF-8
/// bytes (type digit included), or the type byte `04` and the data.
fn encode_binary_payload(frames: &[Frame]) -> Bytes {
    let len: usize = frames.iter().map(|f| f.byte_len() + 13).sum();
    let mut out = BytesMut::with_capacity(len);
    let mut digits = itoa_buf();
    for frame in frames {
        let (kind, n) = match frame {
            Frame::Text(s) => (0u8, s.len()),
            Frame::Binary(b) => (1u8, b.len() + 1),
        };
        out.put_u8(kind);
        for d in fmt_len(&mut digits, n) {
            out.put_u8(d - b'0');
        }
        out.put_u8(0xFF);
        match frame {
            Frame::Text(s) => out.put_slice(s.as_bytes()),
            Frame::Binary(b) => {
                out.put_u8(BINARY_MESSAGE_TYPE);
                out.put_slice(b);
            }
        }
    }
    out.freeze()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `n` in decimal ASCII, written into `buf`.
fn fmt_len(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Decodes a v3 text packet: as v4 ([`Packet::decode_text`]), plus the
/// `b<type><base64>` form of a binary message (a polling payload's
/// binaries, and WebSocket text frames of a client with `forceBase64`).
pub fn decode_text(text: Str) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'b') {
        return Packet::decode_text(text);
    }
    match bytes.get(1) {
        Some(&b'4') => {}
        Some(_) => return Err(DecodeError::UnknownType('b')),
        None => return Err(DecodeError::Empty),
    }
    let raw = BASE64_STANDARD
        .decode(&bytes[2..])
        .map_err(|_| DecodeError::Base64)?;
    Ok(Packet::Message(Message::Binary(Bytes::from(raw))))
}

/// Decodes a v3 binary message (a WebSocket binary frame): its first byte
/// is the packet type, which must be `message`; the rest is the data.
pub fn decode_binary(data: Bytes) -> Result<Packet, DecodeError> {
    match data.first() {
        None => Err(DecodeError::Empty),
        Some(&BINARY_MESSAGE_TYPE) => Ok(Packet::Message(Message::Binary(data.slice(1..)))),
        Some(&other) => Err(DecodeError::UnknownType(char::from(other))),
    }
}

/// Decodes a v3 polling payload: the XHR2 binary form when the request
/// said `application/octet-stream` (`binary`), else the text form. Any
/// malformed part fails the whole payload, as in the reference; lengths
/// are checked against the bytes present, never used to reserve memory.
pub fn decode_payload(body: Bytes, binary: bool) -> Result<Vec<Packet>, DecodeError> {
    if binary {
        decode_binary_payload(body)
    } else {
        decode_text_payload(body)
    }
}

fn decode_text_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let body = Str::from_utf8(body)?;
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = body.as_str();
    let mut packets = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text.as_bytes()[at..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_LENGTH_DIGITS || rest.get(digits) != Some(&b':') {
            return Err(DecodeError::Length);
        }
        let units = parse_digits(rest[..digits].iter().map(|d| d - b'0'))?;
        let start = at + digits + 1;
        // Walk `units` UTF-16 code units: running out, or cutting a
        // surrogate pair in two, is a malformed payload.
        let mut end = start;
        let mut left = units;
        let mut chars = text[start..].chars();
        while left > 0 {
            let c = chars.next().ok_or(DecodeError::Length)?;
            let width = c.len_utf16();
            if width > left {
                return Err(DecodeError::Length);
            }
            left -= width;
            end += c.len_utf8();
        }
        at = end;
        if units == 0 {
            continue;
        }
        packets.push(decode_text(body.slice(start, end))?);
    }
    Ok(packets)
}

/// A length from its decimal digits (values 0-9); one too large for
/// memory is malformed anyway.
fn parse_digits(mut digits: impl Iterator<Item = u8>) -> Result<usize, DecodeError> {
    digits.try_fold(0usize, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d)))
            .ok_or(DecodeError::Length)
    })
}

fn decode_binary_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let is_binary = match body[at] {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Length),
        };
        let rest = &body[at + 1..];
        let digits = rest.iter().take_while(|&&b| b <= 9).count();
        if digits == 0 || digits > MAX_LENGTH_DIGITS || rest.get(digits) != Some(&0xFF) {
            return Err(DecodeError::Length);
        }
        let n = parse_digits(rest[..digits].iter().copied())?;
        let start = at + 1 + digits + 1;
        let end = start.checked_add(n).ok_or(DecodeError::Length)?;
        if end > body.len() {
            return Err(DecodeError::Length);
        }
        at = end;
        if n == 0 {
            continue;
        }
        let part = body.slice(start..end);
        packets.push(if is_binary {
            decode_binary(part)?
        } else {
            Packet::decode_text(Str::from_utf8(part)?)?
        });
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_payload(frames: &[Frame]) -> String {
        let (body, ct) = encode_payload(frames, true);
        assert_eq!(ct, TEXT_CONTENT_TYPE);
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn msg(s: &str) -> Packet {
        Packet::Message(Message::Text(Str::from(s)))
    }

    fn bin(b: &'static [u8]) -> Packet {
        Packet::Message(Message::Binary(Bytes::from_static(b)))
    }

    fn decode_text_form(s: &str) -> Result<Vec<Packet>, DecodeError> {
        decode_payload(Bytes::copy_from_slice(s.as_bytes()), false)
    }

    /// The vectors the reference's parser-v3 produced (research brief §1.4).
    #[test]
    fn encodes_text_payloads_as_the_reference() {
        let open = Frame::Text(Str::from(r#"0{"sid":"x"}"#));
        assert_eq!(text_payload(&[open]), r#"12:0{"sid":"x"}"#);
        assert_eq!(text_payload(&[]), "0:");
        assert_eq!(text_payload(&[Frame::message("héllo")]), "6:4héllo");
        assert_eq!(text_payload(&[Frame::message("€")]), "2:4€");
        assert_eq!(text_payload(&[Frame::message("𝕊")]), "3:4𝕊");
        assert_eq!(
            text_payload(&[Frame::message(r#"2["a"]"#), Frame::PONG, Frame::NOOP]),
            r#"7:42["a"]1:31:6"#
        );
        let frames = [
            Frame::message(r#"451-["b",{"_placeholder":true,"num":0}]"#),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(
            text_payload(&frames),
            r#"40:4451-["b",{"_placeholder":true,"num":0}]10:b4AQIDBA=="#
        );
    }

    /// §1.5: the XHR2 form, only when the client reads binary and a frame is binary.
    #[test]
    fn encodes_binary_payloads_as_the_reference() {
        let frames = [
            Frame::message("4é"),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        let (body, ct) = encode_payload(&frames, false);
        assert_eq!(ct, BINARY_CONTENT_TYPE);
        assert_eq!(
            &body[..],
            &[
                0x00, 0x04, 0xFF, 0x34, 0x34, 0xC3, 0xA9, 0x01, 0x05, 0xFF, 0x04, 1, 2, 3, 4
            ]
        );
        let frames = [
            Frame::message(&"x".repeat(12)),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        let (body, _) = encode_payload(&frames, false);
        let mut want = vec![0x00, 0x01, 0x03, 0xFF, 0x34];
        want.extend_from_slice(&[b'x'; 12]);
        want.extend_from_slice(&[0x01, 0x05, 0xFF, 0x04, 1, 2, 3, 4]);
        assert_eq!(&body[..], &want[..]);
        // Text only: the text form even for a client that reads binary.
        let (body, ct) = encode_payload(&[Frame::message("a")], false);
        assert_eq!((&body[..], ct), (&b"2:4a"[..], TEXT_CONTENT_TYPE));
    }

    #[test]
    fn decodes_text_payloads_as_the_reference() {
        assert_eq!(
            decode_text_form("2:401:2"),
            Ok(vec![msg("0"), Packet::Ping(Str::from(""))])
        );
        assert_eq!(decode_text_form("6:b4AQID"), Ok(vec![bin(&[1, 2, 3])]));
        assert_eq!(decode_text_form("2:4é"), Ok(vec![msg("é")]));
        assert_eq!(
            decode_text_form("3:4𝕊0:1:6"),
            Ok(vec![msg("𝕊"), Packet::Noop])
        );
        let body = text_payload(&[
            Frame::message("héllo €𝕊"),
            Frame::binary(Bytes::from_static(&[9, 8])),
            Frame::PING,
        ]);
        assert_eq!(
            decode_text_form(&body),
            Ok(vec![
                msg("héllo €𝕊"),
                bin(&[9, 8]),
                Packet::Ping(Str::from(""))
            ])
        );
    }

    #[test]
    fn rejects_malformed_text_payloads() {
        for bad in [
            "",
            "4:4ab",
            "x:",
            "12",
            "2:4a1",
            ":4",
            "3:4a",
            "2:4𝕊",
            "1:𝕊",
            "2:b5AQ",
            "6:b4!!!!",
            "99999999999:4",
            "18446744073709551616:4",
        ] {
            assert!(decode_text_form(bad).is_err(), "{bad:?} was accepted");
        }
        // A huge announced length walks only the bytes present.
        assert_eq!(decode_text_form("9999999999:4a"), Err(DecodeError::Length));
        assert_eq!(
            decode_payload(Bytes::from_static(b"2:4\xff"), false),
            Err(DecodeError::Utf8)
        );
    }

    #[test]
    fn decodes_binary_payloads_as_the_reference() {
        let body = Bytes::from_static(&[
            0x00, 0x02, 0xFF, 0x34, 0x61, 0x01, 0x04, 0xFF, 0x04, 0x09, 0x08, 0x07,
        ]);
        assert_eq!(
            decode_payload(body, true),
            Ok(vec![msg("a"), bin(&[9, 8, 7])])
        );
        let body = Bytes::from_static(&[0x00, 0x03, 0xFF, 0x34, 0xC3, 0xA9]);
        assert_eq!(decode_payload(body, true), Ok(vec![msg("é")]));
        let frames = [
            Frame::message("4é"),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::PING,
        ];
        let (body, _) = encode_payload(&frames, false);
        assert_eq!(
            decode_payload(body, true),
            Ok(vec![
                msg("4é"),
                bin(&[1, 2, 3, 4]),
                Packet::Ping(Str::from(""))
            ])
        );
    }

    #[test]
    fn rejects_malformed_binary_payloads() {
        let cases: [&[u8]; 9] = [
            &[],
            &[0x02, 0x01, 0xFF, 0x34],                      // unknown kind
            &[0x00, 0xFF, 0x34],                            // no digits
            &[0x00, 0x0A, 0xFF, 0x34],                      // a digit byte past 9
            &[0x00, 0x03, 0xFF, 0x34, 0x61],                // truncated
            &[0x00, 0x01],                                  // no 0xFF
            &[0x01, 0x02, 0xFF, 0x03, 0x01],                // binary of another type
            &[0x00, 0x02, 0xFF, 0x34, 0xFF],                // invalid UTF-8
            &[0x00, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0xFF, 0x34], // huge length, 1 byte
        ];
        for bad in cases {
            assert!(
                decode_payload(Bytes::from_static(bad), true).is_err(),
                "{bad:?} was accepted"
            );
        }
        let eleven_digits = [0x00, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0xFF];
        assert_eq!(
            decode_payload(Bytes::copy_from_slice(&eleven_digits), true),
            Err(DecodeError::Length)
        );
    }

    #[test]
    fn binary_messages_carry_their_type_byte() {
        assert_eq!(
            decode_binary(Bytes::from_static(&[4, 1, 2, 3])),
            Ok(bin(&[1, 2, 3]))
        );
        assert_eq!(decode_binary(Bytes::new()), Err(DecodeError::Empty));
        assert!(decode_binary(Bytes::from_static(&[1, 2])).is_err());
        assert_eq!(decode_text(Str::from("b4AQID")), Ok(bin(&[1, 2, 3])));
        assert_eq!(decode_text(Str::from("42")), Ok(msg("2")));
        assert_eq!(base64_message(&[1, 2, 3]).as_str(), "b4AQID");
    }

    #[test]
    fn utf16_lengths() {
        for s in ["", "abc", "é", "€", "𝕊", "a𝕊é€😀z"] {
            assert_eq!(utf16_len(s), s.encode_utf16().count(), "{s:?}");
        }
    }
}
