//! The two stream framings of Node's IPC channel: newline-delimited JSON
//! (`serialization: 'json'`) and 4-byte big-endian length-prefixed V8
//! serializer payloads (`serialization: 'advanced'`), plus the glue between
//! frames and [`Value`]s.

use crate::core::codec::json::{self, JsonError};
use crate::core::codec::value::Value;
use crate::core::codec::wire::{self, WireError};
use std::fmt;

/// Upper bound for one frame. Node itself has none, but a corrupt length
/// prefix (or an endless line) must not make the primary buffer without
/// limit.
pub const MAX_FRAME_LEN: usize = 1 << 30;

/// Once this much of the buffer has been consumed, the rest is moved to the
/// front; below it, consumed bytes are cheaper to leave in place.
const COMPACT_MIN: usize = 64 * 1024;

/// A buffer that grew for one huge frame is given back once drained.
const SHRINK_ABOVE: usize = 1 << 20;

/// Which framing and payload encoding a channel uses (the child's
/// `serialization` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serialization {
    Json,
    Advanced,
}

impl Serialization {
    /// Parses the option value as Node spells it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Serialization::Json),
            "advanced" => Some(Serialization::Advanced),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Serialization::Json => "json",
            Serialization::Advanced => "advanced",
        }
    }
}

/// The stream cannot be split into frames any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// An advanced frame announced more than [`MAX_FRAME_LEN`] bytes.
    FrameTooLarge { len: usize, max: usize },
    /// A JSON line grew past [`MAX_FRAME_LEN`] without a newline.
    LineTooLong { max: usize },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::FrameTooLarge { len, max } => {
                write!(f, "IPC frame of {len} bytes exceeds the {max}-byte limit")
            }
            FramingError::LineTooLong { max } => {
                write!(f, "IPC JSON line exceeds the {max}-byte limit")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// A frame payload that is not a valid message of its serialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Json(JsonError),
    Wire(WireError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "invalid JSON message: {e}"),
            DecodeError::Wire(e) => write!(f, "invalid serialized message: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Json(e) => Some(e),
            DecodeError::Wire(e) => Some(e),
        }
    }
}

impl From<JsonError> for DecodeError {
    fn from(e: JsonError) -> Self {
        DecodeError::Json(e)
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::Wire(e)
    }
}

/// Splits a byte stream into frame payloads.
///
/// Consumed bytes are skipped with an offset rather than removed, so a read
/// that carries many small frames costs one pass, not one copy per frame.
#[derive(Debug)]
pub struct FrameDecoder {
    ser: Serialization,
    buf: Vec<u8>,
    /// Start of the first unconsumed byte in `buf`.
    start: usize,
    /// JSON only: `buf[start..scanned]` is known to hold no newline, so a
    /// long line arriving in many reads is scanned once overall.
    scanned: usize,
    /// A framing error leaves the stream unsynchronised for good.
    failed: Option<FramingError>,
}

impl FrameDecoder {
    pub fn new(ser: Serialization) -> Self {
        FrameDecoder {
            ser,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            failed: None,
        }
    }

    pub fn serialization(&self) -> Serialization {
        self.ser
    }

    /// Appends bytes read from the channel.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start >= COMPACT_MIN) {
            // Moving the tail is paid for by the at least as many bytes
            // consumed since the last compaction... unless the tail is
            // bigger, in which case wait until it has been consumed further.
            let tail = self.buf.len() - self.start;
            if tail <= self.start {
                self.buf.drain(..self.start);
                self.scanned = self.scanned.saturating_sub(self.start);
                self.start = 0;
                if self.buf.is_empty() && self.buf.capacity() > SHRINK_ABOVE {
                    self.buf.shrink_to(COMPACT_MIN);
                }
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as part of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame payload, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = match self.ser {
            Serialization::Json => self.next_line(),
            Serialization::Advanced => self.next_prefixed(),
        };
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The next complete frame's payload, if `f` makes something of it
    /// without a copy; then the frame is consumed. Otherwise (`None`, an
    /// incomplete frame, a failed stream) nothing is, and
    /// [`Self::next_frame`] returns it as usual.
    pub fn take_frame_if<T>(&mut self, f: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if self.failed.is_some() {
            return None;
        }
        let (payload, next) = match self.ser {
            Serialization::Json => {
                let from = self.scanned.max(self.start);
                let end = from + memchr::memchr(b'\n', self.buf.get(from..)?)?;
                (self.start..end, end + 1)
            }
            Serialization::Advanced => {
                let prefix = self.buf.get(self.start..)?.first_chunk::<4>()?;
                let end = (self.start + 4).checked_add(u32::from_be_bytes(*prefix) as usize)?;
                (self.start + 4..end, end)
            }
        };
        let taken = f(self.buf.get(payload)?)?;
        self.start = next;
        self.scanned = self.start;
        Some(taken)
    }

    fn next_line(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let from = self.scanned.max(self.start);
        let found = self
            .buf
            .get(from..)
            .and_then(|rest| memchr::memchr(b'\n', rest));
        match found {
            Some(i) => {
                let end = from + i;
                let line = self.buf.get(self.start..end).map(<[u8]>::to_vec);
                self.start = end + 1;
                self.scanned = self.start;
                Ok(line)
            }
            None => {
                self.scanned = self.buf.len();
                if self.buffered() > MAX_FRAME_LEN {
                    return Err(FramingError::LineTooLong { max: MAX_FRAME_LEN });
                }
                Ok(None)
            }
        }
    }

    fn next_prefixed(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some(prefix) = rest.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FramingError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let Some(payload) = rest.get(4..4 + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start += 4 + len;
        self.scanned = self.start;
        Ok(Some(payload))
    }
}

/// Appends `payload` framed for the channel.
pub fn encode_frame(ser: Serialization, payload: &[u8], out: &mut Vec<u8>) {
    match ser {
        Serialization::Json => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Serialization::Advanced => {
            // Payloads are built from in-memory Values, far below 4 GiB;
            // saturating keeps this total anyway.
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(payload);
        }
    }
}

/// A complete frame carrying `value`, as Node's `process.send` would write
/// it.
pub fn encode_value(ser: Serialization, value: &Value) -> Vec<u8> {
    match ser {
        Serialization::Json => {
            let mut out = Vec::new();
            json::write(value, &mut out);
            out.push(b'\n');
            out
        }
        Serialization::Advanced => {
            // Encoding after a placeholder prefix (as Node does) avoids
            // copying the payload; the prefix also keeps V8's padding parity.
            let mut out = vec![0; 4];
            wire::encode_into(value, &mut out);
            let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
            out[..4].copy_from_slice(&len.to_be_bytes());
            out
        }
    }
}

/// Decodes one frame payload.
pub fn decode_value(ser: Serialization, payload: &[u8]) -> Result<Value, DecodeError> {
    Ok(match ser {
        Serialization::Json => json::parse(payload)?,
        Serialization::Advanced => wire::decode(payload)?,
    })
}

/// Whether `payload` could be an internal (`NODE_...`) message. A `false`
/// is certain, so user messages skip the full parse; a `true` may still turn
/// out to be a user message after decoding.
pub fn may_be_internal(ser: Serialization, payload: &[u8]) -> bool {
    match ser {
        // JSON.stringify writes this key/value pair without spaces or
        // escapes, wherever the property sits in the object.
        Serialization::Json => contains(payload, br#""cmd":"NODE_"#),
        // The key and value are separate strings with length bytes between
        // them, so only the value's prefix is searched for: as one-byte
        // (or UTF-8) string data, or as UTF-16LE should V8 have chosen the
        // two-byte representation.
        Serialization::Advanced => {
            contains(payload, b"NODE_") || contains(payload, b"N\0O\0D\0E\0_\0")
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // SIMD substring search: this runs over every user message.
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(seq: f64) -> Value {
        Value::object([
            ("cmd", Value::str("NODE_CLUSTER")),
            ("act", Value::str("online")),
            ("seq", Value::Number(seq)),
        ])
    }

    fn drain(dec: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            frames.push(f);
        }
        frames
    }

    fn sample_stream(ser: Serialization) -> (Vec<u8>, Vec<Vec<u8>>) {
        let payloads: Vec<Vec<u8>> = match ser {
            Serialization::Json => vec![
                br#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#.to_vec(),
                b"".to_vec(),
                br#""user \u00e9 message""#.to_vec(),
                "[1,\"€\"]".as_bytes().to_vec(),
            ],
            Serialization::Advanced => vec![
                wire::encode(&online(0.0)),
                Vec::new(),
                wire::encode(&Value::str("héllo €")),
                vec![0x0a; 300],
            ],
        };
        let mut stream = Vec::new();
        for p in &payloads {
            encode_frame(ser, p, &mut stream);
        }
        (stream, payloads)
    }

    #[test]
    fn take_frame_if_consumes_only_a_whole_frame_it_is_given() {
        let mut dec = FrameDecoder::new(Serialization::Json);
        dec.push(b"abc\nde");
        assert_eq!(dec.take_frame_if(|_| None::<()>), None);
        assert_eq!(dec.take_frame_if(|l| (l == b"abc").then_some(1)), Some(1));
        // "de" is not a line yet: `f` is not even asked.
        assert_eq!(dec.take_frame_if(|_| Some(2)), None);
        dec.push(b"f\n");
        assert_eq!(dec.take_frame_if(|_| None::<()>), None);
        assert_eq!(drain(&mut dec), vec![b"def".to_vec()]);
        assert_eq!(dec.buffered(), 0);
        let mut adv = FrameDecoder::new(Serialization::Advanced);
        adv.push(b"\0\0\0\x02ab\0\0\0\x03c");
        assert_eq!(adv.take_frame_if(|p| (p == b"ab").then_some(3)), Some(3));
        assert_eq!(adv.take_frame_if(|_| Some(4)), None, "incomplete");
        adv.push(b"de");
        assert_eq!(adv.take_frame_if(|_| None::<()>), None);
        assert_eq!(drain(&mut adv), vec![b"cde".to_vec()]);
    }

    #[test]
    fn parse_serialization() {
        assert_eq!(Serialization::parse("json"), Some(Serialization::Json));
        assert_eq!(
            Serialization::parse("advanced"),
            Some(Serialization::Advanced)
        );
        assert_eq!(Serialization::parse("JSON"), None);
        assert_eq!(Serialization::Advanced.as_str(), "advanced");
    }

    #[test]
    fn split_at_every_boundary() {
        for ser in [Serialization::Json, Serialization::Advanced] {
            let (stream, payloads) = sample_stream(ser);
            for cut in 0..=stream.len() {
                let mut dec = FrameDecoder::new(ser);
                dec.push(&stream[..cut]);
                let mut got = drain(&mut dec);
                dec.push(&stream[cut..]);
                got.extend(drain(&mut dec));
                assert_eq!(got, payloads, "{ser:?} cut at {cut}");
                assert_eq!(dec.buffered(), 0);
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        for ser in [Serialization::Json, Serialization::Advanced] {
            let (stream, payloads) = sample_stream(ser);
            let mut dec = FrameDecoder::new(ser);
            let mut got = Vec::new();
            for b in &stream {
                dec.push(std::slice::from_ref(b));
                got.extend(drain(&mut dec));
            }
            assert_eq!(got, payloads, "{ser:?}");
        }
    }

    #[test]
    fn many_frames_coalesced() {
        for ser in [Serialization::Json, Serialization::Advanced] {
            let mut stream = Vec::new();
            let n = 20_000;
            for i in 0..n {
                stream.extend(encode_value(ser, &online(f64::from(i))));
            }
            // Deliver in uneven chunks so compaction happens mid-frame.
            let mut dec = FrameDecoder::new(ser);
            let mut got = Vec::new();
            for chunk in stream.chunks(70_001) {
                dec.push(chunk);
                for frame in drain(&mut dec) {
                    got.push(decode_value(ser, &frame).unwrap());
                }
            }
            assert_eq!(got.len(), n as usize);
            for (i, v) in got.iter().enumerate() {
                assert_eq!(*v, online(i as f64));
            }
            assert_eq!(dec.buffered(), 0);
            assert!(dec.buf.len() < stream.len(), "buffer was compacted");
        }
    }

    #[test]
    fn partial_frames_stay_buffered() {
        let mut dec = FrameDecoder::new(Serialization::Json);
        dec.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(dec.next_frame().unwrap(), Some(b"{\"a\":1}".to_vec()));
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 4);
        dec.push(b":2}\n");
        assert_eq!(dec.next_frame().unwrap(), Some(b"{\"b\":2}".to_vec()));

        let mut dec = FrameDecoder::new(Serialization::Advanced);
        dec.push(&[0, 0, 0, 3, 1, 2]);
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 6);
        dec.push(&[3, 0, 0]);
        assert_eq!(dec.next_frame().unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(dec.next_frame().unwrap(), None);
        assert_eq!(dec.buffered(), 2);
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut dec = FrameDecoder::new(Serialization::Advanced);
        dec.push(&[0x40, 0, 0, 1]);
        let err = dec.next_frame().unwrap_err();
        assert_eq!(
            err,
            FramingError::FrameTooLarge {
                len: (1 << 30) + 1,
                max: MAX_FRAME_LEN
            }
        );
        // The stream stays failed.
        dec.push(&[0, 0, 0, 0]);
        assert_eq!(dec.next_frame(), Err(err.clone()));
        assert_eq!(
            err.to_string(),
            "IPC frame of 1073741825 bytes exceeds the 1073741824-byte limit"
        );

        // Exactly the limit is allowed (and simply waits for the data).
        let mut dec = FrameDecoder::new(Serialization::Advanced);
        dec.push(&[0x40, 0, 0, 0]);
        assert_eq!(dec.next_frame(), Ok(None));
    }

    #[test]
    fn encode_frames() {
        let mut out = Vec::new();
        encode_frame(Serialization::Json, b"{}", &mut out);
        encode_frame(Serialization::Advanced, &[9, 8], &mut out);
        assert_eq!(out, b"{}\n\0\0\0\x02\x09\x08");

        assert_eq!(
            encode_value(Serialization::Json, &online(0.0)),
            b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n"
        );
        let framed = encode_value(Serialization::Advanced, &online(0.0));
        let payload = wire::encode(&online(0.0));
        assert_eq!(&framed[..4], &(payload.len() as u32).to_be_bytes());
        assert_eq!(&framed[4..], &payload[..]);
        // Padding inside a framed two-byte string matches the bare encoding.
        let v = Value::object([("ab", Value::str("€"))]);
        assert_eq!(
            &encode_value(Serialization::Advanced, &v)[4..],
            &wire::encode(&v)[..]
        );
    }

    #[test]
    fn decode_values() {
        for ser in [Serialization::Json, Serialization::Advanced] {
            let frame = encode_value(ser, &online(3.0));
            let mut dec = FrameDecoder::new(ser);
            dec.push(&frame);
            let payload = dec.next_frame().unwrap().unwrap();
            assert_eq!(decode_value(ser, &payload).unwrap(), online(3.0));
        }
        let e = decode_value(Serialization::Json, b"{").unwrap_err();
        assert!(matches!(e, DecodeError::Json(JsonError::UnexpectedEnd)));
        assert!(std::error::Error::source(&e).is_some());
        let e = decode_value(Serialization::Advanced, &[255, 15, b'D']).unwrap_err();
        assert_eq!(e, DecodeError::Wire(WireError::Unsupported(b'D')));
    }

    #[test]
    fn internal_precheck() {
        let json = Serialization::Json;
        let adv = Serialization::Advanced;
        assert!(may_be_internal(
            json,
            br#"{"cmd":"NODE_CLUSTER","act":"online","seq":0}"#
        ));
        assert!(may_be_internal(
            json,
            br#"{"act":"online","cmd":"NODE_HANDLE_ACK"}"#
        ));
        assert!(!may_be_internal(json, br#"{"cmd":"hello","NODE_":1}"#));
        assert!(!may_be_internal(json, br#"{"hello":"world"}"#));
        assert!(!may_be_internal(json, b""));

        assert!(may_be_internal(adv, &wire::encode(&online(0.0))));
        let two_byte = wire::encode(&Value::object([("cmd", Value::str("NODE_€"))]));
        assert!(may_be_internal(adv, &two_byte));
        assert!(!may_be_internal(
            adv,
            &wire::encode(&Value::object([("hello", Value::str("world"))]))
        ));
        assert!(!may_be_internal(adv, b"NODE"));
    }

    #[test]
    fn contains_finds_overlapping_prefixes() {
        assert!(contains(b"NNODE_", b"NODE_"));
        assert!(contains(b"xNODNODE_y", b"NODE_"));
        assert!(!contains(b"NODE", b"NODE_"));
        assert!(contains(b"abc", b""));
    }
}
