//! V8 ValueSerializer bytes (what `v8.serialize` and the
//! `serialization: 'advanced'` IPC channel carry) for the plain-data subset
//! that cluster messages use. Anything richer is reported as unsupported so
//! the caller can hand the message to JavaScript to decode itself.
//! No crate handles Node's host objects (array buffer views, written by
//! Node's serializer delegate), hence our own V8 codec.

use crate::core::codec::json::{array_index, js_number_to_string, Props};
use crate::core::codec::value::Value;
use std::fmt;

/// Same bound as the JSON codec, for the same reason: hostile nesting must
/// not overflow the decoding thread's stack.
pub const MAX_DEPTH: usize = 512;

/// The format version written by the V8 of Node 20, 22 and 24.
pub const VERSION: u8 = 15;
const MIN_VERSION: u32 = 13;

/// Sparse arrays are materialised densely; past this many slots in one
/// message that would let a few input bytes demand gigabytes, so such
/// messages are left to JavaScript.
const MAX_SPARSE_LEN: u32 = 1 << 20;

mod tag {
    pub const VERSION: u8 = 0xFF;
    pub const PADDING: u8 = 0x00;
    pub const VERIFY_OBJECT_COUNT: u8 = b'?';
    pub const UNDEFINED: u8 = b'_';
    pub const NULL: u8 = b'0';
    pub const TRUE: u8 = b'T';
    pub const FALSE: u8 = b'F';
    pub const INT32: u8 = b'I';
    pub const UINT32: u8 = b'U';
    pub const DOUBLE: u8 = b'N';
    pub const ONE_BYTE_STRING: u8 = b'"';
    pub const TWO_BYTE_STRING: u8 = b'c';
    pub const UTF8_STRING: u8 = b'S';
    pub const BEGIN_OBJECT: u8 = b'o';
    pub const END_OBJECT: u8 = b'{';
    pub const BEGIN_DENSE_ARRAY: u8 = b'A';
    pub const END_DENSE_ARRAY: u8 = b'$';
    pub const BEGIN_SPARSE_ARRAY: u8 = b'a';
    pub const END_SPARSE_ARRAY: u8 = b'@';
    pub const HOLE: u8 = b'-';
}

/// Why bytes could not be decoded into a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Valid-looking data of a kind [`Value`] cannot represent (host
    /// objects, dates, maps, references, huge sparse arrays, ...): the tag
    /// byte that introduced it.
    Unsupported(u8),
    /// The input ended inside a value.
    Truncated,
    /// The first byte is not the version tag 0xFF.
    MissingHeader,
    /// A format version outside 13..=15.
    UnsupportedVersion(u32),
    /// Structurally invalid data at `offset` (bad key type, mismatched
    /// property count, odd two-byte string length, ...).
    Malformed { offset: usize, reason: &'static str },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Unsupported(t) => {
                write!(f, "unsupported serialized value tag 0x{t:02x}")?;
                if t.is_ascii_graphic() {
                    write!(f, " ('{}')", char::from(*t))?;
                }
                Ok(())
            }
            WireError::Truncated => f.write_str("serialized value is truncated"),
            WireError::MissingHeader => f.write_str("serialized value lacks the 0xFF header"),
            WireError::UnsupportedVersion(v) => {
                write!(f, "unsupported serialization format version {v}")
            }
            WireError::Malformed { offset, reason } => {
                write!(f, "malformed serialized value at byte {offset}: {reason}")
            }
            WireError::TooDeep => {
                write!(f, "serialized value nested deeper than {MAX_DEPTH} levels")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Decodes one header-prefixed value. Bytes after the value are ignored, as
/// Node's deserializer ignores them.
pub fn decode(bytes: &[u8]) -> Result<Value, WireError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        holes: 0,
    };
    match r.byte()? {
        tag::VERSION => {}
        _ => return Err(WireError::MissingHeader),
    }
    let version = r.varint()?;
    if !(MIN_VERSION..=u32::from(VERSION)).contains(&version) {
        return Err(WireError::UnsupportedVersion(version));
    }
    r.value(0)
}

/// The first `max` properties of a header-prefixed object, as far as they
/// decode: enough to recognise an envelope (`{cmd:'NODE_HANDLE', type, msg}`)
/// whose payload holds values this module does not model.
pub fn leading_properties(bytes: &[u8], max: usize) -> Vec<(String, Value)> {
    let mut r = Reader {
        bytes,
        pos: 0,
        holes: 0,
    };
    let mut out = Vec::new();
    let header_ok = r.byte() == Ok(tag::VERSION)
        && r.varint()
            .is_ok_and(|v| (MIN_VERSION..=u32::from(VERSION)).contains(&v))
        && r.tag() == Ok(tag::BEGIN_OBJECT);
    if !header_ok {
        return out;
    }
    while out.len() < max {
        let Ok(t) = r.tag() else { break };
        if t == tag::END_OBJECT {
            break;
        }
        let (Ok(key), Ok(value)) = (r.key(t), r.value(1)) else {
            break;
        };
        out.push((key.into_string(), value));
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Sparse-array slots allocated so far in this message: the
    /// [`MAX_SPARSE_LEN`] bound is for the whole message, or a few bytes
    /// per array could ask for any amount.
    holes: u32,
}

/// What a property key decoded to; array code needs the index form.
enum Key {
    Index(u32),
    Name(String),
}

impl Key {
    fn into_string(self) -> String {
        match self {
            Key::Index(i) => i.to_string(),
            Key::Name(s) => s,
        }
    }
}

impl Reader<'_> {
    fn malformed(&self, reason: &'static str) -> WireError {
        WireError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        let b = *self.bytes.get(self.pos).ok_or(WireError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(len).ok_or(WireError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    /// A base-128 little-endian varint. Like V8, bits beyond 32 are dropped
    /// rather than rejected.
    fn varint(&mut self) -> Result<u32, WireError> {
        let mut result = 0u32;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift < 32 {
                result |= u32::from(b & 0x7f) << shift;
                shift += 7;
            }
            if b & 0x80 == 0 {
                return Ok(result);
            }
        }
    }

    fn len(&mut self) -> Result<usize, WireError> {
        usize::try_from(self.varint()?).map_err(|_| self.malformed("length overflows usize"))
    }

    /// The next tag, skipping the alignment padding V8 may insert.
    fn tag(&mut self) -> Result<u8, WireError> {
        loop {
            let t = self.byte()?;
            if t != tag::PADDING {
                return Ok(t);
            }
        }
    }

    fn peek_tag(&mut self) -> Result<u8, WireError> {
        while self.bytes.get(self.pos) == Some(&tag::PADDING) {
            self.pos += 1;
        }
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(WireError::Truncated)
    }

    fn double(&mut self) -> Result<f64, WireError> {
        let raw = self.take(8)?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(raw);
        Ok(f64::from_le_bytes(buf))
    }

    fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        let t = self.tag()?;
        self.tagged_value(t, depth)
    }

    fn tagged_value(&mut self, t: u8, depth: usize) -> Result<Value, WireError> {
        Ok(match t {
            tag::VERIFY_OBJECT_COUNT => {
                // Legacy prefix carrying a count V8 itself no longer checks.
                self.varint()?;
                return self.value(depth);
            }
            tag::UNDEFINED => Value::Undefined,
            tag::NULL => Value::Null,
            tag::TRUE => Value::Bool(true),
            tag::FALSE => Value::Bool(false),
            tag::INT32 => Value::Number(f64::from(zigzag_decode(self.varint()?))),
            tag::UINT32 => Value::Number(f64::from(self.varint()?)),
            tag::DOUBLE => Value::Number(self.double()?),
            tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING => {
                Value::String(self.string_body(t)?)
            }
            tag::BEGIN_OBJECT => self.object(depth + 1)?,
            tag::BEGIN_DENSE_ARRAY => self.dense_array(depth + 1)?,
            tag::BEGIN_SPARSE_ARRAY => self.sparse_array(depth + 1)?,
            other => return Err(WireError::Unsupported(other)),
        })
    }

    fn string_body(&mut self, t: u8) -> Result<String, WireError> {
        let len = self.len()?;
        let start = self.pos;
        let raw = self.take(len)?;
        Ok(match t {
            tag::ONE_BYTE_STRING => raw.iter().map(|&b| char::from(b)).collect(),
            tag::TWO_BYTE_STRING => {
                if len % 2 != 0 {
                    return Err(WireError::Malformed {
                        offset: start,
                        reason: "odd two-byte string length",
                    });
                }
                let units = raw
                    .chunks_exact(2)
                    .map(|u| u16::from_le_bytes([u[0], u[1]]));
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect()
            }
            // V8 itself substitutes U+FFFD for invalid UTF-8 here.
            _ => String::from_utf8_lossy(raw).into_owned(),
        })
    }

    fn key(&mut self, t: u8) -> Result<Key, WireError> {
        let offset = self.pos;
        Ok(match t {
            tag::INT32 => {
                let n = zigzag_decode(self.varint()?);
                match u32::try_from(n) {
                    Ok(i) => Key::Index(i),
                    Err(_) => Key::Name(n.to_string()),
                }
            }
            tag::UINT32 => number_key(f64::from(self.varint()?)),
            tag::DOUBLE => number_key(self.double()?),
            tag::ONE_BYTE_STRING | tag::TWO_BYTE_STRING | tag::UTF8_STRING => {
                let s = self.string_body(t)?;
                match array_index(&s) {
                    Some(i) => Key::Index(i),
                    None => Key::Name(s),
                }
            }
            tag::VERIFY_OBJECT_COUNT => {
                self.varint()?;
                let t = self.tag()?;
                return self.key(t);
            }
            // V8 only accepts names and numbers as keys; other supported
            // kinds are broken data, everything else is left to JavaScript.
            tag::UNDEFINED
            | tag::NULL
            | tag::TRUE
            | tag::FALSE
            | tag::BEGIN_OBJECT
            | tag::BEGIN_DENSE_ARRAY
            | tag::BEGIN_SPARSE_ARRAY => {
                return Err(WireError::Malformed {
                    offset,
                    reason: "property key is not a string or number",
                })
            }
            other => return Err(WireError::Unsupported(other)),
        })
    }

    /// Reads `key value` pairs up to `end`, then the property count V8
    /// appends, which must match.
    fn properties(
        &mut self,
        end: u8,
        depth: usize,
        mut sink: impl FnMut(Key, Value),
    ) -> Result<(), WireError> {
        let mut count = 0u32;
        loop {
            let t = self.tag()?;
            if t == end {
                break;
            }
            let key = self.key(t)?;
            let value = self.value(depth)?;
            sink(key, value);
            count = count.saturating_add(1);
        }
        if self.varint()? != count {
            return Err(self.malformed("property count mismatch"));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        // A repeated key overwrites in place, as a JS assignment would.
        let mut props = Props::default();
        self.properties(tag::END_OBJECT, depth, |key, value| {
            props.insert(key.into_string(), value);
        })?;
        Ok(Value::Object(props.finish()))
    }

    fn dense_array(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        let len = self.len()?;
        // Every element takes at least one byte, so a length past the
        // input is a lie.
        if len > self.bytes.len().saturating_sub(self.pos) {
            return Err(WireError::Truncated);
        }
        // Grown as elements decode, not reserved from the claimed length:
        // nested arrays would each reserve the whole rest of the input.
        let mut items = Vec::with_capacity(len.min(64));
        for _ in 0..len {
            if self.peek_tag()? == tag::HOLE {
                self.pos += 1;
                items.push(Value::Undefined);
            } else {
                items.push(self.value(depth)?);
            }
        }
        // Extra named properties exist in JS but have no place in a
        // Value::Array, and JSON.stringify would drop them too.
        self.properties(tag::END_DENSE_ARRAY, depth, |_, _| {})?;
        if self.len()? != len {
            return Err(self.malformed("dense array length mismatch"));
        }
        Ok(Value::Array(items))
    }

    fn sparse_array(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        let len = self.varint()?;
        self.holes = self.holes.saturating_add(len);
        if self.holes > MAX_SPARSE_LEN {
            return Err(WireError::Unsupported(tag::BEGIN_SPARSE_ARRAY));
        }
        let mut items = vec![Value::Undefined; len as usize];
        self.properties(tag::END_SPARSE_ARRAY, depth, |key, value| {
            if let Key::Index(i) = key {
                if let Some(slot) = items.get_mut(i as usize) {
                    *slot = value;
                }
            }
        })?;
        if self.varint()? != len {
            return Err(self.malformed("sparse array length mismatch"));
        }
        Ok(Value::Array(items))
    }
}

fn zigzag_decode(n: u32) -> i32 {
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

fn zigzag_encode(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

fn number_key(n: f64) -> Key {
    if (0.0..4_294_967_295.0).contains(&n) && n.fract() == 0.0 {
        Key::Index(n as u32)
    } else {
        Key::Name(js_number_to_string(n))
    }
}

/// Serializes `value` with its header, byte for byte as V8 would.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the header and `value` to `out`. Padding parity is computed from
/// where the header starts, which matches V8's own buffer as long as the
/// bytes before it (Node's 4-byte length prefix) are of even length.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    let base = out.len();
    out.push(tag::VERSION);
    out.push(VERSION);
    Writer { out, base }.value(value);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
}

impl Writer<'_> {
    fn varint(&mut self, mut n: u32) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }

    fn len(&mut self, n: usize) {
        // A Value cannot hold 4 GiB of string or 2^32 elements in practice;
        // saturating keeps this total without a panic path.
        self.varint(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn number(&mut self, n: f64) {
        match smi(n) {
            Some(i) => {
                self.out.push(tag::INT32);
                self.varint(zigzag_encode(i));
            }
            None => self.double(n),
        }
    }

    fn double(&mut self, n: f64) {
        self.out.push(tag::DOUBLE);
        self.out.extend_from_slice(&n.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        if s.chars().all(|c| u32::from(c) <= 0xff) {
            self.out.push(tag::ONE_BYTE_STRING);
            self.len(s.chars().count());
            self.out.extend(s.chars().map(|c| u32::from(c) as u8));
        } else {
            let byte_len = s.encode_utf16().count() * 2;
            // V8 keeps two-byte payloads at even offsets.
            let header = 1 + varint_len(byte_len);
            if (self.out.len() - self.base + header) % 2 == 1 {
                self.out.push(tag::PADDING);
            }
            self.out.push(tag::TWO_BYTE_STRING);
            self.len(byte_len);
            for unit in s.encode_utf16() {
                self.out.extend_from_slice(&unit.to_le_bytes());
            }
        }
    }

    fn key(&mut self, key: &str) {
        // V8 enumerates index keys as numbers: Smis as int32, larger
        // indices as doubles.
        match array_index(key) {
            Some(i) => match i32::try_from(i) {
                Ok(small) => {
                    self.out.push(tag::INT32);
                    self.varint(zigzag_encode(small));
                }
                Err(_) => self.double(f64::from(i)),
            },
            None => self.string(key),
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Undefined => self.out.push(tag::UNDEFINED),
            Value::Null => self.out.push(tag::NULL),
            Value::Bool(true) => self.out.push(tag::TRUE),
            Value::Bool(false) => self.out.push(tag::FALSE),
            Value::Number(n) => self.number(*n),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push(tag::BEGIN_DENSE_ARRAY);
                self.len(items.len());
                // An all-number array holding any non-Smi is a
                // PACKED_DOUBLE_ELEMENTS array in V8 (whether built by a
                // literal, JSON.parse or push), whose elements are all
                // written as doubles.
                let doubles = !items.is_empty()
                    && items.iter().all(|v| matches!(v, Value::Number(_)))
                    && items
                        .iter()
                        .any(|v| matches!(v, Value::Number(n) if smi(*n).is_none()));
                for item in items {
                    match item {
                        Value::Number(n) if doubles => self.double(*n),
                        _ => self.value(item),
                    }
                }
                self.out.push(tag::END_DENSE_ARRAY);
                self.varint(0);
                self.len(items.len());
            }
            Value::Object(pairs) => {
                self.out.push(tag::BEGIN_OBJECT);
                for (key, item) in pairs {
                    self.key(key);
                    self.value(item);
                }
                self.out.push(tag::END_OBJECT);
                self.len(pairs.len());
            }
        }
    }
}

/// `n` as V8 would hold it in a Smi (int32 on 64-bit Node). -0 is not one:
/// as an int32 it would come back as +0.
fn smi(n: f64) -> Option<i32> {
    let as_int = n as i32;
    (f64::from(as_int) == n && !(n == 0.0 && n.is_sign_negative())).then_some(as_int)
}

fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut n = n >> 7;
    while n != 0 {
        len += 1;
        n >>= 7;
    }
    len
}

#[cfg(test)]
mod leading_tests {
    use super::*;

    #[test]
    fn envelope_head_decodes_even_when_the_payload_does_not() {
        // {cmd:'NODE_HANDLE', type:'net.Socket', msg:new Date(0)} from Node's
        // v8.serialize: the Date ('D') is outside the modelled subset.
        let mut bytes = vec![0xFF, 0x0F, b'o'];
        for s in ["cmd", "NODE_HANDLE", "type", "net.Socket", "msg"] {
            bytes.push(b'"');
            bytes.push(s.len() as u8);
            bytes.extend_from_slice(s.as_bytes());
        }
        bytes.push(b'D');
        bytes.extend_from_slice(&0f64.to_le_bytes());
        bytes.extend_from_slice(&[b'{', 3]);
        assert!(matches!(decode(&bytes), Err(WireError::Unsupported(b'D'))));
        let head = leading_properties(&bytes, 2);
        assert_eq!(
            head,
            vec![
                ("cmd".to_string(), Value::from("NODE_HANDLE")),
                ("type".to_string(), Value::from("net.Socket")),
            ]
        );
        assert!(leading_properties(b"not v8", 2).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs)
    }

    fn num(n: f64) -> Value {
        Value::Number(n)
    }

    /// Asserts both directions against bytes captured from
    /// `[...require('v8').serialize(x)]` in Node 20.
    fn exact(value: Value, bytes: &[u8]) {
        assert_eq!(encode(&value), bytes, "encode of {value:?}");
        assert_eq!(decode(bytes).unwrap(), value, "decode of {bytes:?}");
    }

    #[test]
    fn cluster_online_message() {
        exact(
            obj(vec![
                ("cmd", Value::str("NODE_CLUSTER")),
                ("act", Value::str("online")),
                ("seq", num(0.0)),
            ]),
            &[
                255, 15, 111, 34, 3, 99, 109, 100, 34, 12, 78, 79, 68, 69, 95, 67, 76, 85, 83, 84,
                69, 82, 34, 3, 97, 99, 116, 34, 6, 111, 110, 108, 105, 110, 101, 34, 3, 115, 101,
                113, 73, 0, 123, 3,
            ],
        );
    }

    #[test]
    fn scalars_in_object() {
        // {a:1,b:-1,c:2147483647,d:-2147483648,e:2147483648,f:1.5,g:-0,
        //  h:true,i:false,j:null,k:undefined,l:'x'}
        exact(
            obj(vec![
                ("a", num(1.0)),
                ("b", num(-1.0)),
                ("c", num(2147483647.0)),
                ("d", num(-2147483648.0)),
                ("e", num(2147483648.0)),
                ("f", num(1.5)),
                ("g", num(-0.0)),
                ("h", Value::Bool(true)),
                ("i", Value::Bool(false)),
                ("j", Value::Null),
                ("k", Value::Undefined),
                ("l", Value::str("x")),
            ]),
            &[
                255, 15, 111, 34, 1, 97, 73, 2, 34, 1, 98, 73, 1, 34, 1, 99, 73, 254, 255, 255,
                255, 15, 34, 1, 100, 73, 255, 255, 255, 255, 15, 34, 1, 101, 78, 0, 0, 0, 0, 0, 0,
                224, 65, 34, 1, 102, 78, 0, 0, 0, 0, 0, 0, 248, 63, 34, 1, 103, 78, 0, 0, 0, 0, 0,
                0, 0, 128, 34, 1, 104, 84, 34, 1, 105, 70, 34, 1, 106, 48, 34, 1, 107, 95, 34, 1,
                108, 34, 1, 120, 123, 12,
            ],
        );
        // decode keeps -0 distinct
        let v = decode(&[255, 15, 78, 0, 0, 0, 0, 0, 0, 0, 128]).unwrap();
        assert!(v.as_f64().unwrap().is_sign_negative());
    }

    #[test]
    fn nested_objects_and_arrays() {
        // {cmd:'NODE_CLUSTER',act:'queryServer',args:[1,'a',null],data:{x:{y:[]}}}
        exact(
            obj(vec![
                ("cmd", Value::str("NODE_CLUSTER")),
                ("act", Value::str("queryServer")),
                (
                    "args",
                    Value::Array(vec![num(1.0), Value::str("a"), Value::Null]),
                ),
                (
                    "data",
                    obj(vec![("x", obj(vec![("y", Value::Array(vec![]))]))]),
                ),
            ]),
            &[
                255, 15, 111, 34, 3, 99, 109, 100, 34, 12, 78, 79, 68, 69, 95, 67, 76, 85, 83, 84,
                69, 82, 34, 3, 97, 99, 116, 34, 11, 113, 117, 101, 114, 121, 83, 101, 114, 118,
                101, 114, 34, 4, 97, 114, 103, 115, 65, 3, 73, 2, 34, 1, 97, 48, 36, 0, 3, 34, 4,
                100, 97, 116, 97, 111, 34, 1, 120, 111, 34, 1, 121, 65, 0, 36, 0, 0, 123, 1, 123,
                1, 123, 4,
            ],
        );
        exact(
            Value::Array(vec![num(1.0), num(2.0), num(3.0)]),
            &[255, 15, 65, 3, 73, 2, 73, 4, 73, 6, 36, 0, 3],
        );
        exact(
            Value::Array(vec![Value::Undefined, Value::Null]),
            &[255, 15, 65, 2, 95, 48, 36, 0, 2],
        );
        exact(
            obj(vec![("a", Value::Array(vec![num(1.5), num(2.5)]))]),
            &[
                255, 15, 111, 34, 1, 97, 65, 2, 78, 0, 0, 0, 0, 0, 0, 248, 63, 78, 0, 0, 0, 0, 0,
                0, 4, 64, 36, 0, 2, 123, 1,
            ],
        );
        exact(Value::Object(vec![]), &[255, 15, 111, 123, 0]);
        // [1, -0] and [1, NaN] are double arrays; [1, 'x', 1.5] is not.
        exact(
            Value::Array(vec![num(1.0), num(-0.0)]),
            &[
                255, 15, 65, 2, 78, 0, 0, 0, 0, 0, 0, 240, 63, 78, 0, 0, 0, 0, 0, 0, 0, 128, 36, 0,
                2,
            ],
        );
        assert_eq!(
            encode(&Value::Array(vec![num(1.0), num(f64::NAN)])),
            [
                255, 15, 65, 2, 78, 0, 0, 0, 0, 0, 0, 240, 63, 78, 0, 0, 0, 0, 0, 0, 248, 127, 36,
                0, 2
            ]
        );
        exact(
            Value::Array(vec![num(1.0), Value::str("x"), num(1.5)]),
            &[
                255, 15, 65, 3, 73, 2, 34, 1, 120, 78, 0, 0, 0, 0, 0, 0, 248, 63, 36, 0, 3,
            ],
        );
    }

    #[test]
    fn scalars_at_top_level() {
        exact(Value::Undefined, &[255, 15, 95]);
        exact(Value::Null, &[255, 15, 48]);
        exact(
            num(0.1),
            &[255, 15, 78, 154, 153, 153, 153, 153, 153, 185, 63],
        );
        exact(
            num(1e21),
            &[255, 15, 78, 80, 239, 226, 214, 228, 26, 75, 68],
        );
        let nan = decode(&[255, 15, 78, 0, 0, 0, 0, 0, 0, 248, 127]).unwrap();
        assert!(nan.as_f64().unwrap().is_nan());
        assert_eq!(
            encode(&num(f64::NAN)),
            [255, 15, 78, 0, 0, 0, 0, 0, 0, 248, 127]
        );
    }

    #[test]
    fn strings() {
        exact(Value::str(""), &[255, 15, 34, 0]);
        exact(
            Value::str("héllo"),
            &[255, 15, 34, 5, 104, 233, 108, 108, 111],
        );
        exact(
            Value::str("héllo €"),
            &[
                255, 15, 99, 14, 104, 0, 233, 0, 108, 0, 108, 0, 111, 0, 32, 0, 172, 32,
            ],
        );
        exact(Value::str("😀"), &[255, 15, 99, 4, 61, 216, 0, 222]);
        let mut long = vec![255, 15, 34, 200, 1];
        long.extend(std::iter::repeat_n(b'a', 200));
        exact(Value::str("a".repeat(200)), &long);
        exact(
            Value::Array(vec![Value::str("x"), Value::str("é"), Value::str("ü€")]),
            &[
                255, 15, 65, 3, 34, 1, 120, 34, 1, 233, 99, 4, 252, 0, 172, 32, 36, 0, 3,
            ],
        );
    }

    #[test]
    fn two_byte_string_padding() {
        // {s:'héllo €'}: payload already even, no padding.
        exact(
            obj(vec![("s", Value::str("héllo €"))]),
            &[
                255, 15, 111, 34, 1, 115, 99, 14, 104, 0, 233, 0, 108, 0, 108, 0, 111, 0, 32, 0,
                172, 32, 123, 1,
            ],
        );
        // {ab:'€'}: V8 inserts a 0x00 before the 'c' tag.
        exact(
            obj(vec![("ab", Value::str("€"))]),
            &[255, 15, 111, 34, 2, 97, 98, 0, 99, 2, 172, 32, 123, 1],
        );
        exact(
            obj(vec![("x", Value::str("€€"))]),
            &[255, 15, 111, 34, 1, 120, 99, 4, 172, 32, 172, 32, 123, 1],
        );
        // Parity is relative to the header, so a 4-byte prefix changes nothing.
        let mut framed = vec![0, 0, 0, 0];
        encode_into(&obj(vec![("ab", Value::str("€"))]), &mut framed);
        assert_eq!(
            &framed[4..],
            &[255, 15, 111, 34, 2, 97, 98, 0, 99, 2, 172, 32, 123, 1]
        );
    }

    #[test]
    fn numeric_keys() {
        // {1:'a', b:2}
        exact(
            obj(vec![("1", Value::str("a")), ("b", num(2.0))]),
            &[255, 15, 111, 73, 2, 34, 1, 97, 34, 1, 98, 73, 4, 123, 2],
        );
        exact(
            obj(vec![("2147483647", num(1.0))]),
            &[255, 15, 111, 73, 254, 255, 255, 255, 15, 73, 2, 123, 1],
        );
        exact(
            obj(vec![("2147483648", num(1.0))]),
            &[255, 15, 111, 78, 0, 0, 0, 0, 0, 0, 224, 65, 73, 2, 123, 1],
        );
        exact(
            obj(vec![("4294967294", num(1.0))]),
            &[
                255, 15, 111, 78, 0, 0, 192, 255, 255, 255, 239, 65, 73, 2, 123, 1,
            ],
        );
        exact(
            obj(vec![("4294967295", num(1.0))]),
            &[
                255, 15, 111, 34, 10, 52, 50, 57, 52, 57, 54, 55, 50, 57, 53, 73, 2, 123, 1,
            ],
        );
        exact(
            obj(vec![("-1", num(1.0)), ("01", num(2.0))]),
            &[
                255, 15, 111, 34, 2, 45, 49, 73, 2, 34, 2, 48, 49, 73, 4, 123, 2,
            ],
        );
        // Non-index number keys become their JS string form.
        let v = decode(&[255, 15, 111, 78, 0, 0, 0, 0, 0, 0, 248, 63, 48, 123, 1]).unwrap();
        assert_eq!(v, obj(vec![("1.5", Value::Null)]));
        let v = decode(&[255, 15, 111, 73, 1, 48, 123, 1]).unwrap();
        assert_eq!(v, obj(vec![("-1", Value::Null)]));
        // Repeated key: last value, first position; index keys sort first.
        let v = decode(&[
            255, 15, 111, 34, 1, 97, 73, 2, 73, 6, 48, 34, 1, 97, 73, 4, 123, 3,
        ])
        .unwrap();
        assert_eq!(v, obj(vec![("3", Value::Null), ("a", num(2.0))]));
    }

    #[test]
    fn sparse_arrays_and_extra_properties() {
        // [1,,3]
        assert_eq!(
            decode(&[255, 15, 97, 3, 73, 0, 73, 2, 73, 4, 73, 6, 64, 2, 3]).unwrap(),
            Value::Array(vec![num(1.0), Value::Undefined, num(3.0)])
        );
        // const a = []; a[5] = 1
        let mut want = vec![Value::Undefined; 5];
        want.push(num(1.0));
        assert_eq!(
            decode(&[255, 15, 97, 6, 73, 10, 73, 2, 64, 1, 6]).unwrap(),
            Value::Array(want)
        );
        // const a = [1,2]; a.foo = 'bar'
        assert_eq!(
            decode(&[
                255, 15, 65, 2, 73, 2, 73, 4, 34, 3, 102, 111, 111, 34, 3, 98, 97, 114, 36, 1, 2
            ])
            .unwrap(),
            Value::Array(vec![num(1.0), num(2.0)])
        );
        // A hole inside a dense array.
        assert_eq!(
            decode(&[255, 15, 65, 2, 45, 73, 2, 36, 0, 2]).unwrap(),
            Value::Array(vec![Value::Undefined, num(1.0)])
        );
        // Array of length 2^32-1 with a few elements: valid, left to JS.
        let huge = [
            255, 15, 97, 255, 255, 255, 255, 15, 73, 0, 73, 2, 64, 1, 255, 255, 255, 255, 15,
        ];
        assert_eq!(decode(&huge), Err(WireError::Unsupported(b'a')));
    }

    #[test]
    fn unsupported_tags() {
        // new Date(0)
        assert_eq!(
            decode(&[255, 15, 68, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::Unsupported(b'D'))
        );
        // {a:o, b:o}: the second is a back-reference.
        assert_eq!(
            decode(&[255, 15, 111, 34, 1, 97, 111, 123, 0, 34, 1, 98, 94, 1, 123, 2]),
            Err(WireError::Unsupported(b'^'))
        );
        for t in [b'\\', b'B', b'R', b';', b'\'', b'Z', b'm'] {
            assert_eq!(decode(&[255, 15, t]), Err(WireError::Unsupported(t)));
        }
        assert_eq!(
            decode(&[255, 15, 111, 34, 1, 97, 92, 123, 1]),
            Err(WireError::Unsupported(b'\\'))
        );
    }

    #[test]
    fn header_and_padding() {
        assert_eq!(decode(&[]), Err(WireError::Truncated));
        assert_eq!(decode(&[15, 48]), Err(WireError::MissingHeader));
        assert_eq!(
            decode(&[255, 12, 48]),
            Err(WireError::UnsupportedVersion(12))
        );
        assert_eq!(
            decode(&[255, 16, 48]),
            Err(WireError::UnsupportedVersion(16))
        );
        assert_eq!(decode(&[255, 13, 48]).unwrap(), Value::Null);
        assert_eq!(decode(&[255, 14, 0, 0, 48]).unwrap(), Value::Null);
        // Trailing bytes after the value are ignored, as in Node.
        assert_eq!(decode(&[255, 15, 48, 1, 2]).unwrap(), Value::Null);
        // Legacy verify-object-count prefix.
        assert_eq!(decode(&[255, 15, 63, 1, 48]).unwrap(), Value::Null);
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let full = encode(&obj(vec![
            ("cmd", Value::str("NODE_CLUSTER")),
            ("s", Value::str("héllo €")),
            ("n", num(1.5)),
            ("i", num(300.0)),
            ("a", Value::Array(vec![Value::Null, num(-7.0)])),
        ]));
        assert!(decode(&full).is_ok());
        for len in 0..full.len() {
            assert!(decode(&full[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn malformed_input() {
        // property count mismatch
        assert!(matches!(
            decode(&[255, 15, 111, 123, 1]),
            Err(WireError::Malformed { .. })
        ));
        // dense array length mismatch
        assert!(matches!(
            decode(&[255, 15, 65, 1, 48, 36, 0, 2]),
            Err(WireError::Malformed { .. })
        ));
        // odd two-byte length
        assert!(matches!(
            decode(&[255, 15, 99, 3, 65, 0, 66]),
            Err(WireError::Malformed { .. })
        ));
        // null as a key
        assert!(matches!(
            decode(&[255, 15, 111, 48, 48, 123, 1]),
            Err(WireError::Malformed { .. })
        ));
        // claimed dense length larger than the input
        assert_eq!(
            decode(&[255, 15, 65, 255, 255, 255, 255, 15]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn invalid_utf16_and_utf8_become_replacement() {
        assert_eq!(
            decode(&[255, 15, 99, 4, 61, 216, 65, 0]).unwrap(),
            Value::str("\u{fffd}A")
        );
        assert_eq!(
            decode(&[255, 15, 83, 3, 0xe2, 0x82, 0xac]).unwrap(),
            Value::str("€")
        );
        assert_eq!(
            decode(&[255, 15, 83, 2, 0xff, b'a']).unwrap(),
            Value::str("\u{fffd}a")
        );
    }

    #[test]
    fn depth_limit() {
        let nest = |depth: usize| {
            let mut v = Value::Null;
            for _ in 0..depth {
                v = Value::Array(vec![v]);
            }
            encode(&v)
        };
        assert!(decode(&nest(MAX_DEPTH)).is_ok());
        assert_eq!(decode(&nest(MAX_DEPTH + 1)), Err(WireError::TooDeep));
        let mut hostile = vec![255, 15];
        for _ in 0..100_000 {
            hostile.extend_from_slice(&[111, 34, 1, 97]);
        }
        assert_eq!(decode(&hostile), Err(WireError::TooDeep));
    }

    #[test]
    fn round_trip_and_varints() {
        for n in [0i32, 1, -1, 63, -64, 64, 8191, -8192, i32::MAX, i32::MIN] {
            assert_eq!(zigzag_decode(zigzag_encode(n)), n);
            let v = num(f64::from(n));
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
        for n in [0usize, 127, 128, 16383, 16384, usize::from(u16::MAX)] {
            let mut out = Vec::new();
            Writer {
                out: &mut out,
                base: 0,
            }
            .len(n);
            assert_eq!(out.len(), varint_len(n));
        }
        let v = obj(vec![
            ("k", Value::Array(vec![Value::str("😀 ü"), num(-1e-7)])),
            ("u", Value::Undefined),
        ]);
        assert_eq!(decode(&encode(&v)).unwrap(), v);
        // Uint32 tag decodes too (V8 writes it for some host values).
        assert_eq!(
            decode(&[255, 15, 85, 255, 255, 255, 255, 15]).unwrap(),
            num(4294967295.0)
        );
        let _: &dyn std::error::Error = &WireError::Unsupported(b'D');
        assert_eq!(
            WireError::Unsupported(b'D').to_string(),
            "unsupported serialized value tag 0x44 ('D')"
        );
    }
}
