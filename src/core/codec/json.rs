//! The JSON codec of the `serialization: 'json'` IPC channel: parses what a
//! Node peer's `JSON.stringify` wrote and writes the exact bytes it would
//! write, so a worker cannot tell a native primary from a JavaScript one.
//! The parser stays hand-written because serde_json cannot reproduce
//! `JSON.parse`'s key order (integer-like keys first), its numbers (correct
//! rounding, out-of-range literals as `Infinity`) or its lone surrogates;
//! number output uses `ryu_js`, which matches `Number.prototype.toString`.

use crate::core::codec::value::Value;
use std::collections::HashMap;
use std::fmt;

/// Deeper nesting than any cluster message needs; bounded so that hostile
/// input cannot overflow the (possibly small) stack of the IO thread.
pub const MAX_DEPTH: usize = 512;

/// Objects with more keys than this get a hash index for duplicate-key
/// lookup; below it a linear scan is cheaper than hashing.
const LINEAR_KEY_SCAN: usize = 16;

/// Why a payload is not JSON that `JSON.parse` would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// The input is not valid UTF-8; `offset` is the first bad byte.
    InvalidUtf8 { offset: usize },
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that the grammar does not allow at this point.
    UnexpectedByte { byte: u8, offset: usize },
    /// A malformed `\` escape inside a string.
    InvalidEscape { offset: usize },
    /// A malformed number literal.
    InvalidNumber { offset: usize },
    /// A complete value followed by something other than whitespace.
    TrailingData { offset: usize },
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            JsonError::UnexpectedEnd => f.write_str("unexpected end of JSON input"),
            JsonError::UnexpectedByte { byte, offset } => {
                write!(
                    f,
                    "unexpected byte 0x{byte:02x} in JSON at position {offset}"
                )
            }
            JsonError::InvalidEscape { offset } => {
                write!(f, "invalid escape in JSON string at position {offset}")
            }
            JsonError::InvalidNumber { offset } => {
                write!(f, "invalid number in JSON at position {offset}")
            }
            JsonError::TrailingData { offset } => {
                write!(f, "unexpected data after JSON value at position {offset}")
            }
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON text, as `JSON.parse` would.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    // Validating once up front lets string contents be sliced out of `text`
    // directly: every delimiter the parser stops at is ASCII, hence a char
    // boundary.
    let text = std::str::from_utf8(bytes).map_err(|e| JsonError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut p = Parser {
        text,
        bytes,
        pos: 0,
    };
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != bytes.len() {
        return Err(JsonError::TrailingData { offset: p.pos });
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, JsonError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(JsonError::UnexpectedEnd)
    }

    fn unexpected(&self) -> JsonError {
        match self.bytes.get(self.pos) {
            Some(&byte) => JsonError::UnexpectedByte {
                byte,
                offset: self.pos,
            },
            None => JsonError::UnexpectedEnd,
        }
    }

    fn expect_word(&mut self, word: &[u8], value: Value) -> Result<Value, JsonError> {
        for &w in word {
            if self.peek()? != w {
                return Err(self.unexpected());
            }
            self.pos += 1;
        }
        Ok(value)
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Value::String),
            b't' => self.expect_word(b"true", Value::Bool(true)),
            b'f' => self.expect_word(b"false", Value::Bool(false)),
            b'n' => self.expect_word(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.unexpected()),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.pos += 1; // '{'
        let mut props = Props::default();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Object(props.finish()));
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return Err(self.unexpected());
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return Err(self.unexpected());
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            props.insert(key, value);
            self.skip_ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Object(props.finish()));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn slice(&self, start: usize, end: usize) -> Result<&str, JsonError> {
        self.text
            .get(start..end)
            .ok_or(JsonError::InvalidUtf8 { offset: start })
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    out.push_str(self.slice(run, self.pos)?);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(self.slice(run, self.pos)?);
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                0x00..=0x1f => return Err(self.unexpected()),
                _ => self.pos += 1,
            }
        }
    }

    /// Decodes one escape starting at the backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let start = self.pos;
        self.pos += 1;
        let c = self.peek()?;
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(start)?;
                match unit {
                    0xD800..=0xDBFF => {
                        // Only a directly following \uDC00-\uDFFF completes
                        // the pair; anything else leaves a lone surrogate,
                        // which a Rust string can only hold as U+FFFD.
                        if self.bytes.get(self.pos) == Some(&b'\\')
                            && self.bytes.get(self.pos + 1) == Some(&b'u')
                        {
                            let save = self.pos;
                            self.pos += 2;
                            let low = self.hex4(save)?;
                            if (0xDC00..=0xDFFF).contains(&low) {
                                let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
                            } else {
                                self.pos = save;
                                char::REPLACEMENT_CHARACTER
                            }
                        } else {
                            char::REPLACEMENT_CHARACTER
                        }
                    }
                    _ => char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                }
            }
            _ => return Err(JsonError::InvalidEscape { offset: start }),
        };
        out.push(ch);
        Ok(())
    }

    fn hex4(&mut self, escape_start: usize) -> Result<u32, JsonError> {
        let mut unit = 0u32;
        for _ in 0..4 {
            let b = self.peek()?;
            let digit = (b as char).to_digit(16).ok_or(JsonError::InvalidEscape {
                offset: escape_start,
            })?;
            unit = unit * 16 + digit;
            self.pos += 1;
        }
        Ok(unit)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        let invalid = JsonError::InvalidNumber { offset: start };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.bytes.get(int_start) == Some(&b'0')) {
            return Err(invalid);
        }
        let mut simple = int_digits <= 15;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(invalid);
            }
            simple = false;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(invalid);
            }
            simple = false;
        }
        let literal = self.slice(start, self.pos)?;
        if simple {
            // Up to 15 digits are exact in both i64 and f64; this skips the
            // general float parser for the sequence numbers and pids that
            // dominate cluster traffic.
            let magnitude = self.bytes[int_start..self.pos]
                .iter()
                .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
            let n = if int_start > start {
                -(magnitude as f64)
            } else {
                magnitude as f64
            };
            return Ok(Value::Number(n));
        }
        literal
            .parse::<f64>()
            .map(Value::Number)
            .map_err(|_| invalid)
    }
}

/// Object properties under construction with JavaScript's semantics: a
/// repeated key overwrites the value but keeps its first position.
#[derive(Default)]
pub(crate) struct Props {
    pairs: Vec<(String, Value)>,
    index: Option<HashMap<String, usize>>,
    has_index_key: bool,
}

impl Props {
    pub(crate) fn insert(&mut self, key: String, value: Value) {
        if self.index.is_none() && self.pairs.len() >= LINEAR_KEY_SCAN {
            let map = self
                .pairs
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            self.index = Some(map);
        }
        let existing = match &self.index {
            Some(map) => map.get(&key).copied(),
            None => self.pairs.iter().position(|(k, _)| *k == key),
        };
        if let Some(i) = existing {
            if let Some(slot) = self.pairs.get_mut(i) {
                slot.1 = value;
            }
            return;
        }
        self.has_index_key |= array_index(&key).is_some();
        if let Some(map) = &mut self.index {
            map.insert(key.clone(), self.pairs.len());
        }
        self.pairs.push((key, value));
    }

    pub(crate) fn finish(self) -> Vec<(String, Value)> {
        let mut pairs = self.pairs;
        if self.has_index_key {
            order_like_js(&mut pairs);
        }
        pairs
    }
}

/// The value of `key` as an array index (a canonical decimal below
/// 2^32 - 1), which JavaScript enumerates before all other keys.
pub(crate) fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok().filter(|&i| i != u32::MAX)
}

/// Puts array-index keys first in ascending order, keeping the others in
/// insertion order, as JavaScript's own-property order does.
fn order_like_js(pairs: &mut [(String, Value)]) {
    pairs.sort_by_key(|(k, _)| match array_index(k) {
        Some(i) => (0u8, i),
        None => (1u8, 0),
    });
}

/// Appends `JSON.stringify(value)`. Undefined has no JSON form: inside an
/// object the property is dropped, anywhere else it becomes `null` (at top
/// level `JSON.stringify` would return `undefined`, which cannot be framed).
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Undefined | Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_finite() {
                write_js_number(*n, out);
            } else {
                out.extend_from_slice(b"null");
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(pairs) => {
            out.push(b'{');
            let mut first = true;
            for (key, item) in pairs {
                if matches!(item, Value::Undefined) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_string(key, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Convenience wrapper around [`write`].
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// Writes `s` as a JSON string literal, escaped as JSON.stringify does.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Handle keys and the like need no escape: one check that vectorises
    // (no early exit) and one copy, rather than a branch per byte.
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\x0c' => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// `String(n)` as JavaScript's `Number.prototype.toString()` produces it.
pub fn js_number_to_string(n: f64) -> String {
    let mut out = Vec::new();
    write_js_number(n, &mut out);
    // Only ASCII is ever written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `String(n)`, via `ryu_js`, which implements ECMA-262
/// Number::toString (shortest round-trip digits, ties to even, JavaScript's
/// layout, `NaN`/`Infinity`, `-0` as `0`).
fn write_js_number(n: f64, out: &mut Vec<u8>) {
    // Safe integers, the usual case in cluster messages, print as an i64:
    // about twice as fast as the float formatter.
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", n as i64);
        return;
    }
    out.extend_from_slice(ryu_js::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs)
    }

    fn stringify(v: &Value) -> String {
        String::from_utf8(to_vec(v)).expect("writer emits UTF-8")
    }

    #[test]
    fn writes_cluster_message_byte_exact() {
        let v = obj(vec![
            ("cmd", Value::str("NODE_CLUSTER")),
            ("act", Value::str("online")),
            ("seq", Value::Number(0.0)),
        ]);
        assert_eq!(
            stringify(&v),
            r#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#
        );
    }

    #[test]
    fn undefined_handling_matches_stringify() {
        let v = obj(vec![
            ("a", Value::Undefined),
            ("b", Value::Array(vec![Value::Undefined, Value::Null])),
            ("c", Value::Number(f64::NAN)),
            ("d", Value::Number(f64::NEG_INFINITY)),
            ("e", Value::Undefined),
        ]);
        assert_eq!(stringify(&v), r#"{"b":[null,null],"c":null,"d":null}"#);
        assert_eq!(stringify(&Value::Undefined), "null");
        assert_eq!(stringify(&obj(vec![("x", Value::Undefined)])), "{}");
    }

    #[test]
    fn string_escapes_match_stringify() {
        // Expected text from JSON.stringify("\"\\\b\f\n\r\t\u0000\u001f\u007f/é€😀\u2028").
        let s = "\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}/é€😀\u{2028}";
        assert_eq!(
            stringify(&Value::str(s)),
            "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}/é€😀\u{2028}\""
        );
    }

    #[test]
    fn numbers_match_js_to_string() {
        // Pairs checked against `String(x)` in Node.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (3.0, "3"),
            (-42.0, "-42"),
            (1.5, "1.5"),
            (-0.1, "-0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (18446744073709551616.0, "18446744073709552000"),
            (9007199254740993.0, "9007199254740992"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (1e-6, "0.000001"),
            (0.000123, "0.000123"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-1.7e-300, "-1.7e-300"),
            (2147483648.5, "2147483648.5"),
            // Exact midpoints between two shortest candidates: even wins.
            // (exactly 0.179462432861328125, -1391848027706146.25, ...)
            (0.17946243286132812, "0.17946243286132812"),
            (-1391848027706146.2, "-1391848027706146.2"),
            (0.10350418090820312, "0.10350418090820312"),
        ];
        for &(n, want) in cases {
            assert_eq!(js_number_to_string(n), want, "for {n:e}");
        }
        assert_eq!(js_number_to_string(f64::NAN), "NaN");
        assert_eq!(js_number_to_string(f64::INFINITY), "Infinity");
        assert_eq!(stringify(&Value::Number(f64::INFINITY)), "null");
    }

    #[test]
    fn parses_all_value_kinds() {
        let v = parse(br#" {"a":[1,-2.5e3,true,false,null,"x"],"b":{},"c":[]} "#).unwrap();
        assert_eq!(
            v,
            obj(vec![
                (
                    "a",
                    Value::Array(vec![
                        Value::Number(1.0),
                        Value::Number(-2500.0),
                        Value::Bool(true),
                        Value::Bool(false),
                        Value::Null,
                        Value::str("x"),
                    ])
                ),
                ("b", Value::Object(vec![])),
                ("c", Value::Array(vec![])),
            ])
        );
    }

    #[test]
    fn parses_escapes_and_surrogates() {
        let v = parse(br#""\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00""#).unwrap();
        assert_eq!(v, Value::str("\"\\/\u{8}\u{c}\n\r\tAé€😀"));
        assert_eq!(parse(br#""\ud83d""#).unwrap(), Value::str("\u{fffd}"));
        assert_eq!(parse(br#""\ude00x""#).unwrap(), Value::str("\u{fffd}x"));
        assert_eq!(
            parse(br#""\ud83d\u0041""#).unwrap(),
            Value::str("\u{fffd}A")
        );
        assert_eq!(parse("\"é€😀\"".as_bytes()).unwrap(), Value::str("é€😀"));
    }

    #[test]
    fn parses_numbers_like_js() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("-0", -0.0),
            ("123456789012345", 123456789012345.0),
            ("12345678901234567890", 12345678901234567890.0),
            ("1e400", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
            ("1E-2", 0.01),
            ("2.5e+3", 2500.0),
            ("0.1", 0.1),
        ];
        for &(text, want) in cases {
            let got = parse(text.as_bytes()).unwrap().as_f64().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "for {text}");
        }
        for bad in [
            "01", "-", "1.", ".5", "1e", "+1", "1.e3", "0x10", "Infinity", "NaN",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn duplicate_keys_last_wins_first_position() {
        let v = parse(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(
            v,
            obj(vec![("a", Value::Number(3.0)), ("b", Value::Number(2.0))])
        );
        // Past the linear-scan threshold the hash index takes over.
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"k3\":\"x\"}");
        let v = parse(text.as_bytes()).unwrap();
        match &v {
            Value::Object(pairs) => {
                assert_eq!(pairs.len(), 40);
                assert_eq!(pairs[3], ("k3".to_string(), Value::str("x")));
            }
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn index_keys_are_ordered_like_js() {
        // JSON.stringify(JSON.parse('{"b":1,"2":2,"a":3,"1":4,"01":5}'))
        let v = parse(br#"{"b":1,"2":2,"a":3,"1":4,"01":5}"#).unwrap();
        assert_eq!(stringify(&v), r#"{"1":4,"2":2,"b":1,"a":3,"01":5}"#);
        assert_eq!(array_index("4294967294"), Some(4294967294));
        assert_eq!(array_index("4294967295"), None);
        assert_eq!(array_index("-1"), None);
    }

    #[test]
    fn rejects_malformed_input() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"{a:1}",
            b"[1 2]",
            b"\"abc",
            b"\"a\nb\"",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"tru",
            b"nul",
            b"{} x",
            b"1 2",
            b"'a'",
            b"\"\xff\"",
            b"\xc3",
        ];
        for &input in bad {
            assert!(parse(input).is_err(), "{:?} should fail", input);
        }
        assert_eq!(parse(b"{} x"), Err(JsonError::TrailingData { offset: 3 }));
        assert_eq!(
            parse(b"\"\xff\""),
            Err(JsonError::InvalidUtf8 { offset: 1 })
        );
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep));
        let hostile = "{\"a\":".repeat(100_000);
        assert_eq!(parse(hostile.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn round_trips() {
        let texts: &[&str] = &[
            r#"{"cmd":"NODE_CLUSTER","act":"queryServer","index":1,"data":null,"address":"0.0.0.0","port":8080,"addressType":4,"fd":-1,"flags":0,"args":[8080,"0.0.0.0",{"x":[1.5,-3,1e+21,true]}],"seq":7}"#,
            r#"[]"#,
            r#"{}"#,
            r#""\u0000\n é€😀""#,
            r#"[0.1,-0.000001,1e-7,123456789012345680000]"#,
        ];
        for &text in texts {
            let v = parse(text.as_bytes()).unwrap();
            assert_eq!(stringify(&v), text);
            assert_eq!(parse(&to_vec(&v)).unwrap(), v);
        }
    }

    #[test]
    fn error_display() {
        let e = parse(b"[x]").unwrap_err();
        assert_eq!(e.to_string(), "unexpected byte 0x78 in JSON at position 1");
        let _: &dyn std::error::Error = &e;
    }
}
