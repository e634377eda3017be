//! MessagePack as the Node adapter's parser, notepack.io 3, writes and
//! reads it: the bytes of each value in the smallest form notepack picks
//! (so that what we publish is what a Node node would publish for the same
//! value), and a decoder for anything a MessagePack writer may send,
//! bounded in depth and never trusting a length it has not got the bytes
//! for.
//!
//! notepack's choices, which [`Writer`] follows: strings as fixstr / str 8
//! / str 16 / str 32 by their UTF-8 length; integers in the smallest of
//! positive fixint, uint 8/16/32/64 or negative fixint, int 8/16/32/64;
//! every other number as float 64 (never float 32); Buffers as bin 8/16/32;
//! arrays and maps with fix / 16 / 32 headers.

use std::borrow::Cow;

/// Why bytes are not one MessagePack value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("truncated MessagePack value")]
    Truncated,
    #[error("MessagePack nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("unknown MessagePack type byte {0:#04x}")]
    UnknownType(u8),
    #[error("{0} trailing bytes after the MessagePack value")]
    Trailing(usize),
}

/// How deep arrays and maps may nest in what is decoded (serde_json's own
/// recursion limit is 128): deeper is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 128;

/// Appends MessagePack values to a buffer, in notepack's forms.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    pub fn bool(&mut self, value: bool) {
        self.buf.push(if value { 0xc3 } else { 0xc2 });
    }

    /// A non-negative integer.
    pub fn uint(&mut self, value: u64) {
        if value < 0x80 {
            self.buf.push(value as u8);
        } else if value < 0x100 {
            self.buf.extend_from_slice(&[0xcc, value as u8]);
        } else if value < 0x1_0000 {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(value as u16).to_be_bytes());
        } else if value < 0x1_0000_0000 {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(value as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// An integer; a non-negative one as [`uint`](Self::uint) does (as
    /// notepack, which looks at the sign first).
    pub fn int(&mut self, value: i64) {
        if value >= 0 {
            self.uint(value as u64);
        } else if value >= -0x20 {
            self.buf.push(value as u8);
        } else if value >= -0x80 {
            self.buf.extend_from_slice(&[0xd0, value as u8]);
        } else if value >= -0x8000 {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(value as i16).to_be_bytes());
        } else if value >= -0x8000_0000 {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(value as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// A JavaScript number: an integer (`Math.floor(v) === v`, finite) in
    /// the integer forms, anything else as float 64 — notepack's rule. An
    /// integral value beyond the 64-bit forms is written as float 64
    /// (notepack would write wrapped bits there).
    pub fn number(&mut self, value: f64) {
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        const TWO_64: f64 = 18_446_744_073_709_551_616.0;
        if value.is_finite() && value.trunc() == value {
            if (0.0..TWO_64).contains(&value) {
                return self.uint(value as u64);
            }
            if (-TWO_63..0.0).contains(&value) {
                return self.int(value as i64);
            }
        }
        self.f64(value);
    }

    pub fn f64(&mut self, value: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&value.to_be_bytes());
    }

    pub fn str(&mut self, value: &str) {
        let len = value.len();
        if len < 0x20 {
            self.buf.push(0xa0 | len as u8);
        } else if len < 0x100 {
            self.buf.extend_from_slice(&[0xd9, len as u8]);
        } else if len < 0x1_0000 {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(value.as_bytes());
    }

    pub fn bin(&mut self, value: &[u8]) {
        let len = value.len();
        if len < 0x100 {
            self.buf.extend_from_slice(&[0xc4, len as u8]);
        } else if len < 0x1_0000 {
            self.buf.push(0xc5);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xc6);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(value);
    }

    pub fn array(&mut self, len: usize) {
        self.header(len, 0x90, 0xdc, 0xdd);
    }

    pub fn map(&mut self, len: usize) {
        self.header(len, 0x80, 0xde, 0xdf);
    }

    fn header(&mut self, len: usize, fix: u8, b16: u8, b32: u8) {
        if len < 0x10 {
            self.buf.push(fix | len as u8);
        } else if len < 0x1_0000 {
            self.buf.push(b16);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(b32);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// A decoded value, borrowing strings and binaries from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Nil,
    /// notepack's old encoding of `undefined` (fixext 1, type 0), which
    /// notepack 3 still reads.
    Undefined,
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    F64(f64),
    /// A string (invalid UTF-8 replaced, as Node's `toString('utf8')` does).
    Str(Cow<'a, str>),
    Bin(&'a [u8]),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// A timestamp (extension type -1): milliseconds since the epoch, as
    /// notepack turns it into a `Date`.
    Date(f64),
    /// Another extension: its type and data.
    Ext(i8, &'a [u8]),
}

impl<'a> Value<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a map whose keys are strings (the last one, as
    /// a JavaScript object keeps).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether JavaScript would take it as true (`flags.volatile`).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil | Value::Undefined => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::UInt(u) => *u != 0,
            Value::F64(f) => *f != 0.0 && !f.is_nan(),
            Value::Str(s) => !s.is_empty(),
            _ => true,
        }
    }
}

/// Decodes exactly one value from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, MsgpackError> {
    let mut reader = Reader::new(bytes);
    let value = reader.value()?;
    reader.finish()?;
    Ok(value)
}

/// Reads values one after the other (the bus reads a message's first
/// element, the sender's uid, before deciding to read the rest).
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), MsgpackError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(MsgpackError::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let slice = self.buf.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize, MsgpackError> {
        Ok(self.byte()? as usize)
    }

    fn len16(&mut self) -> Result<usize, MsgpackError> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }

    fn len32(&mut self) -> Result<usize, MsgpackError> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// The length of an array header, if the next value is an array.
    pub fn array_len(&mut self) -> Result<Option<usize>, MsgpackError> {
        let Some(&first) = self.buf.get(self.pos) else {
            return Err(MsgpackError::Truncated);
        };
        let len = match first {
            0x90..=0x9f => {
                self.pos += 1;
                (first & 0x0f) as usize
            }
            0xdc => {
                self.pos += 1;
                self.len16()?
            }
            0xdd => {
                self.pos += 1;
                self.len32()?
            }
            _ => return Ok(None),
        };
        Ok(Some(len))
    }

    /// The next value.
    pub fn value(&mut self) -> Result<Value<'a>, MsgpackError> {
        let prefix = self.byte()?;
        Ok(match prefix {
            0x00..=0x7f => Value::UInt(prefix as u64),
            0x80..=0x8f => self.map((prefix & 0x0f) as usize)?,
            0x90..=0x9f => self.array((prefix & 0x0f) as usize)?,
            0xa0..=0xbf => self.str((prefix & 0x1f) as usize)?,
            0xe0..=0xff => Value::Int(prefix as i8 as i64),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Value::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Value::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Value::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = self.len8()?;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.len16()?;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.len32()?;
                self.ext(n)?
            }
            0xca => Value::F64(f32::from_be_bytes(self.be()?) as f64),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::UInt(self.byte()? as u64),
            0xcd => Value::UInt(u16::from_be_bytes(self.be()?) as u64),
            0xce => Value::UInt(u32::from_be_bytes(self.be()?) as u64),
            0xcf => Value::UInt(u64::from_be_bytes(self.be()?)),
            0xd0 => signed(self.byte()? as i8 as i64),
            0xd1 => signed(i16::from_be_bytes(self.be()?) as i64),
            0xd2 => signed(i32::from_be_bytes(self.be()?) as i64),
            0xd3 => signed(i64::from_be_bytes(self.be()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let n = self.len8()?;
                self.str(n)?
            }
            0xda => {
                let n = self.len16()?;
                self.str(n)?
            }
            0xdb => {
                let n = self.len32()?;
                self.str(n)?
            }
            0xdc => {
                let n = self.len16()?;
                self.array(n)?
            }
            0xdd => {
                let n = self.len32()?;
                self.array(n)?
            }
            0xde => {
                let n = self.len16()?;
                self.map(n)?
            }
            0xdf => {
                let n = self.len32()?;
                self.map(n)?
            }
            other => return Err(MsgpackError::UnknownType(other)),
        })
    }

    fn str(&mut self, n: usize) -> Result<Value<'a>, MsgpackError> {
        Ok(Value::Str(String::from_utf8_lossy(self.take(n)?)))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MsgpackError>,
    ) -> Result<T, MsgpackError> {
        if self.depth >= MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn array(&mut self, n: usize) -> Result<Value<'a>, MsgpackError> {
        self.nested(|r| {
            // Every element takes a byte at least: a header cannot make
            // us reserve more than the input could hold.
            let mut items = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                items.push(r.value()?);
            }
            Ok(Value::Array(items))
        })
    }

    fn map(&mut self, n: usize) -> Result<Value<'a>, MsgpackError> {
        self.nested(|r| {
            let mut entries = Vec::with_capacity(n.min(r.remaining() / 2));
            for _ in 0..n {
                let key = r.value()?;
                let value = r.value()?;
                entries.push((key, value));
            }
            Ok(Value::Map(entries))
        })
    }

    /// An extension of `n` data bytes, read as notepack 3 reads them.
    fn ext(&mut self, n: usize) -> Result<Value<'a>, MsgpackError> {
        let kind = self.byte()? as i8;
        let data = self.take(n)?;
        Ok(match (kind, n) {
            // The old notepack `undefined` (fixext 1) and ArrayBuffer (ext
            // 8/16/32 of type 0), kept readable by notepack 3.
            (0, 1) => Value::Undefined,
            (0, _) => Value::Bin(data),
            (-1, 4) => Value::Date(u32::from_be_bytes(be4(data)) as f64 * 1e3),
            (-1, 8) => {
                let hi = u32::from_be_bytes(be4(&data[..4])) as u64;
                let lo = u32::from_be_bytes(be4(&data[4..])) as u64;
                let secs = ((hi & 0x3) << 32) | lo;
                let nanos = hi >> 2;
                Value::Date(secs as f64 * 1e3 + nanos as f64 / 1e6)
            }
            (-1, 12) => {
                let nanos = u32::from_be_bytes(be4(&data[..4])) as f64;
                let mut secs = [0u8; 8];
                secs.copy_from_slice(&data[4..]);
                Value::Date(i64::from_be_bytes(secs) as f64 * 1e3 + nanos / 1e6)
            }
            _ => Value::Ext(kind, data),
        })
    }
}

/// A signed integer in the variant a non-negative one would have been read
/// into (another writer may use int 8 for 5).
fn signed(value: i64) -> Value<'static> {
    if value >= 0 {
        Value::UInt(value as u64)
    } else {
        Value::Int(value)
    }
}

/// Four bytes of a slice the caller knows to hold them.
fn be4(data: &[u8]) -> [u8; 4] {
    let mut out = [0u8; 4];
    for (o, b) in out.iter_mut().zip(data) {
        *o = *b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.buf
    }

    #[test]
    fn numbers_take_notepacks_smallest_form() {
        // Bytes as notepack.io 3.0.1 encodes each value.
        let cases: &[(f64, &[u8])] = &[
            (0.0, &[0x00]),
            (-0.0, &[0x00]),
            (127.0, &[0x7f]),
            (128.0, &[0xcc, 0x80]),
            (255.0, &[0xcc, 0xff]),
            (256.0, &[0xcd, 0x01, 0x00]),
            (65536.0, &[0xce, 0x00, 0x01, 0x00, 0x00]),
            (4294967296.0, &[0xcf, 0, 0, 0, 0x01, 0, 0, 0, 0]),
            (-1.0, &[0xff]),
            (-32.0, &[0xe0]),
            (-33.0, &[0xd0, 0xdf]),
            (-128.0, &[0xd0, 0x80]),
            (-129.0, &[0xd1, 0xff, 0x7f]),
            (-32769.0, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (
                -2147483649.0,
                &[0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
            ),
            (1.5, &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
        ];
        for (value, bytes) in cases {
            assert_eq!(&written(|w| w.number(*value)), bytes, "{value}");
        }
        assert_eq!(written(|w| w.number(f64::NAN))[0], 0xcb);
        assert_eq!(written(|w| w.number(f64::INFINITY))[0], 0xcb);
        assert_eq!(written(|w| w.number(1e300))[0], 0xcb);
    }

    #[test]
    fn strings_binaries_and_headers_switch_forms_at_notepacks_bounds() {
        assert_eq!(written(|w| w.str("")), [0xa0]);
        assert_eq!(written(|w| w.str(&"a".repeat(31)))[0], 0xbf);
        assert_eq!(written(|w| w.str(&"a".repeat(32)))[..2], [0xd9, 32]);
        assert_eq!(written(|w| w.str(&"a".repeat(256)))[..3], [0xda, 1, 0]);
        assert_eq!(
            written(|w| w.str(&"a".repeat(65536)))[..5],
            [0xdb, 0, 1, 0, 0]
        );
        // é is two bytes: the length is in bytes.
        assert_eq!(written(|w| w.str("é")), [0xa2, 0xc3, 0xa9]);
        assert_eq!(written(|w| w.bin(&[1, 2])), [0xc4, 2, 1, 2]);
        assert_eq!(written(|w| w.bin(&[0; 256]))[..3], [0xc5, 1, 0]);
        assert_eq!(written(|w| w.bin(&[0; 65536]))[..5], [0xc6, 0, 1, 0, 0]);
        assert_eq!(written(|w| w.array(15)), [0x9f]);
        assert_eq!(written(|w| w.array(16)), [0xdc, 0, 16]);
        assert_eq!(written(|w| w.map(0)), [0x80]);
        assert_eq!(written(|w| w.map(65536)), [0xdf, 0, 1, 0, 0]);
    }

    #[test]
    fn decodes_every_form_back() {
        let mut w = Writer::default();
        w.array(9);
        w.nil();
        w.bool(true);
        w.int(-200);
        w.uint(u64::MAX);
        w.f64(2.5);
        w.str("hé");
        w.bin(&[9, 8]);
        w.map(1);
        w.str("k");
        w.array(0);
        w.number(-1.0);
        let value = decode(&w.buf).unwrap();
        assert_eq!(
            value,
            Value::Array(vec![
                Value::Nil,
                Value::Bool(true),
                Value::Int(-200),
                Value::UInt(u64::MAX),
                Value::F64(2.5),
                Value::Str("hé".into()),
                Value::Bin(&[9, 8]),
                Value::Map(vec![(Value::Str("k".into()), Value::Array(vec![]))]),
                Value::Int(-1),
            ])
        );
        // Other writers' forms: float 32, a small number as int 8.
        assert_eq!(decode(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap(), Value::F64(1.5));
        assert_eq!(decode(&[0xd0, 0x05]).unwrap(), Value::UInt(5));
        // notepack 3's timestamps and its old undefined / ArrayBuffer.
        assert_eq!(
            decode(&[0xd6, 0xff, 0, 0, 0, 1]).unwrap(),
            Value::Date(1000.0)
        );
        assert_eq!(decode(&[0xd4, 0, 0]).unwrap(), Value::Undefined);
        assert_eq!(decode(&[0xc7, 2, 0, 7, 7]).unwrap(), Value::Bin(&[7, 7]));
        assert_eq!(decode(&[0xd5, 5, 1, 2]).unwrap(), Value::Ext(5, &[1, 2]));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for bad in [
            &[][..],
            &[0xc1],
            &[0xd9],
            &[0xd9, 5, b'a'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 0],
            &[0x92, 0x01],
            &[0x81, 0x01],
            &[0xd7, 0xff, 0, 0],
            &[0x01, 0x02],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let deep = vec![0x91u8; MAX_DEPTH + 1];
        assert_eq!(decode(&deep), Err(MsgpackError::TooDeep));
    }
}
