//! Property-based fuzzing of the codec (proptest, stable Rust): framing
//! split at arbitrary points, arbitrary bytes into every decoder, and
//! round trips of arbitrary [`Value`] trees through both encodings.
//!
//! Every property is named `fuzz_*`, so a long run is
//! `PROPTEST_CASES=<n> cargo test --release fuzz`. Without the variable each
//! property runs its own default number of cases, chosen to keep the debug
//! `cargo test` fast.

use super::framing::{self, FrameDecoder, FramingError, Serialization, MAX_FRAME_LEN};
use super::json::{self, JsonError};
use super::value::Value;
use super::wire::{self, WireError};
use proptest::collection::vec;
use proptest::prelude::{any, prop, Just, ProptestConfig, Strategy};
use proptest::{prop_assert, prop_assert_eq, prop_oneof, proptest};

/// `default_cases` unless `PROPTEST_CASES` says otherwise; failures are
/// reported, not written next to the sources.
pub(crate) fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Allocation accounting for the current thread, so that "never reserves
/// what a length prefix announces" is checked directly rather than
/// inferred. Only armed inside [`probe::measure`]; otherwise the global
/// allocator is the system one plus a thread-local flag read.
mod probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
        static TOTAL: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
                let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(size)));
            }
        });
    }

    struct Probe;

    // SAFETY: every call is forwarded unchanged to the system allocator;
    // the bookkeeping only touches const-initialised thread-locals, which
    // never allocate.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static GLOBAL: Probe = Probe;

    /// What `f` asked the allocator for on this thread.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Usage {
        /// The largest single allocation (or reallocation target).
        pub largest: usize,
        /// The sum of all allocation sizes (not net of frees).
        pub total: usize,
    }

    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
        LARGEST.with(|l| l.set(0));
        TOTAL.with(|t| t.set(0));
        ARMED.with(|a| a.set(true));
        let r = f();
        ARMED.with(|a| a.set(false));
        let usage = Usage {
            largest: LARGEST.with(Cell::get),
            total: TOTAL.with(Cell::get),
        };
        (r, usage)
    }
}

// ---------------------------------------------------------------------------
// Strategies

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        1 => any::<i64>().prop_map(|n| n as f64),
        1 => any::<i32>().prop_map(f64::from),
        1 => any::<u32>().prop_map(f64::from),
        // Tiny and huge magnitudes with short mantissas.
        1 => (any::<bool>(), 1u64..1_000_000, -330i32..310).prop_map(|(neg, m, e)| {
            let n = m as f64 * 10f64.powi(e);
            if neg { -n } else { n }
        }),
        2 => prop::sample::select(SPECIAL_NUMBERS),
    ]
}

const SPECIAL_NUMBERS: &[f64] = &[
    0.0,
    -0.0,
    f64::NAN,
    -f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    f64::EPSILON,
    5e-324,
    -5e-324,
    1e21,
    1e-7,
    1e-6,
    0.1,
    9_007_199_254_740_991.0,
    9_007_199_254_740_992.0,
    -9_007_199_254_740_992.0,
    9_007_199_254_740_994.0,
    2_147_483_647.0,
    2_147_483_648.0,
    -2_147_483_648.0,
    -2_147_483_649.0,
    4_294_967_295.0,
    1.5,
    -1.5,
];

fn character() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        2 => (0x20u8..0x7f).prop_map(char::from),
        2 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('?')),
        2 => prop::sample::select(&[
            '"', '\\', '/', '\u{7f}', '\u{80}', '\u{ff}', '\u{100}', 'é', '€', '😀',
            '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}', '\u{10ffff}', '\u{d7ff}',
            '\u{e000}',
        ][..]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(character(), 0..12).prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(&[
            "", "a", "b", "cmd", "act", "seq", "0", "1", "2", "10", "01", "-1", "-0",
            "1.5", "+1", "1e3", " 1", "2147483647", "2147483648", "4294967294",
            "4294967295", "4294967296", "__proto__", "NaN",
        ][..])
        .prop_map(String::from),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        2 => text(),
    ]
}

/// Arbitrary value trees, depth at most 6.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Undefined),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number().prop_map(Value::Number),
        3 => text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            // All-number arrays take V8's double-array path.
            vec(number().prop_map(Value::Number), 1..6).prop_map(Value::Array),
            vec((key(), inner), 0..8).prop_map(Value::Object),
        ]
    })
}

fn serialization() -> impl Strategy<Value = Serialization> {
    prop_oneof![Just(Serialization::Json), Just(Serialization::Advanced)]
}

/// Read sizes to cycle through when feeding a stream.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![4 => 0usize..8, 3 => 0usize..300, 1 => 0usize..100_000],
        1..6,
    )
}

/// Bytes that tend to look like JSON.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => prop::sample::select(&[
            "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud83d", "\\ude00", "\\n",
            "\\\"", "0", "1", "-", ".", "e", "E", "+", "9", "00", "1e400", "-0", "true",
            "false", "null", "tru", "\"a\"", "\"cmd\"", "\"NODE_", " ", "\n", "\t", "é",
            "€", "😀", "\u{2028}",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => prop::sample::select(&[0x80u8, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff, 0x00, 0x1f][..])
            .prop_map(|b| vec![b]),
    ];
    vec(token, 0..48).prop_map(|ts| ts.concat())
}

/// Valid JSON text with a few bytes changed, inserted or removed.
fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
    (value(), vec((any::<u16>(), 0u8..3, any::<u8>()), 1..4)).prop_map(|(v, edits)| {
        let mut bytes = json::to_vec(&v);
        mutate(&mut bytes, &edits);
        bytes
    })
}

/// Applies `(position, kind, byte)` edits: replace, insert, remove.
fn mutate(bytes: &mut Vec<u8>, edits: &[(u16, u8, u8)]) {
    for &(at, kind, b) in edits {
        let at = usize::from(at) % (bytes.len() + 1);
        match kind {
            0 if at < bytes.len() => bytes[at] = b,
            1 => bytes.insert(at, b),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.push(b),
        }
    }
}

fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..128),
        3 => json_soup(),
        2 => mutated_json(),
    ]
}

const LONG_VARINTS: &[&[u8]] = &[
    &[0x80, 0x80, 0x40],
    &[0x81, 0x80, 0x40],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x80, 0x01],
];

/// Bytes that tend to look like V8 serializer output.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => prop::sample::select(&[
            b'?', b'_', b'0', b'T', b'F', b'I', b'U', b'N', b'"', b'c', b'S', b'o', b'{',
            b'A', b'$', b'a', b'@', b'-', 0x00, 0x01, 0x02, 0x03, 0x04, 0x7f, 0x80, 0xff,
            b'D', b'^',
        ][..])
        .prop_map(|b| vec![b]),
        1 => any::<u8>().prop_map(|b| vec![b]),
        // Long varints, including 2^20 and 2^32-1.
        1 => prop::sample::select(LONG_VARINTS).prop_map(<[u8]>::to_vec),
    ];
    let soup =
        (prop::sample::select(&[13u8, 14, 15][..]), vec(token, 0..48)).prop_map(|(version, ts)| {
            let mut out = vec![0xff, version];
            out.extend(ts.concat());
            out
        });
    let mutated =
        (value(), vec((any::<u16>(), 0u8..3, any::<u8>()), 1..4)).prop_map(|(v, edits)| {
            let mut bytes = wire::encode(&v);
            mutate(&mut bytes, &edits);
            bytes
        });
    prop_oneof![
        1 => vec(any::<u8>(), 0..96),
        3 => soup,
        3 => mutated,
    ]
}

// ---------------------------------------------------------------------------
// Models

/// An array index key (canonical decimal below 2^32 - 1), computed without
/// the codec's own helper.
fn index_key(k: &str) -> Option<u32> {
    k.parse::<u32>()
        .ok()
        .filter(|&i| i != u32::MAX && i.to_string() == k)
}

/// An object as JavaScript builds it from these pairs in order: a repeated
/// key keeps its first position and takes the last value; index keys are
/// enumerated first, ascending.
fn js_object(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    let mut out: Vec<(String, Value)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(o, _)| *o == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out.sort_by_key(|(k, _)| match index_key(k) {
        Some(i) => (0u8, i),
        None => (1, 0),
    });
    Value::Object(out)
}

/// `JSON.parse(JSON.stringify(v))`: undefined is dropped from objects and
/// null elsewhere, non-finite numbers are null, -0 is written as 0.
fn json_expect(v: &Value) -> Value {
    match v {
        Value::Undefined | Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Number(n) if !n.is_finite() => Value::Null,
        Value::Number(n) if *n == 0.0 => Value::Number(0.0),
        Value::Number(n) => Value::Number(*n),
        Value::String(s) => Value::String(s.clone()),
        Value::Array(items) => Value::Array(items.iter().map(json_expect).collect()),
        Value::Object(pairs) => js_object(
            pairs
                .iter()
                .filter(|(_, v)| !matches!(v, Value::Undefined))
                .map(|(k, v)| (k.clone(), json_expect(v))),
        ),
    }
}

/// `v8.deserialize(v8.serialize(v))` for the modelled subset: only the
/// object key semantics change anything.
fn wire_expect(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(wire_expect).collect()),
        Value::Object(pairs) => js_object(pairs.iter().map(|(k, v)| (k.clone(), wire_expect(v)))),
        other => other.clone(),
    }
}

/// Structural equality with numbers compared bit for bit (so -0 is not 0)
/// and any NaN equal to any NaN.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// Number of nodes in a tree.
fn size(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Object(pairs) => 1 + pairs.iter().map(|(_, v)| size(v)).sum::<usize>(),
        _ => 1,
    }
}

/// How a reference splitter frames `stream`: the complete frames, the
/// error the stream reaches (if any) and the bytes they consumed.
fn reference_frames(
    ser: Serialization,
    stream: &[u8],
) -> (Vec<Vec<u8>>, Option<FramingError>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    match ser {
        Serialization::Json => {
            while let Some(i) = stream[pos..].iter().position(|&b| b == b'\n') {
                frames.push(stream[pos..pos + i].to_vec());
                pos += i + 1;
            }
            // Lines here are far below MAX_FRAME_LEN.
            (frames, None, pos)
        }
        Serialization::Advanced => loop {
            let Some(prefix) = stream.get(pos..pos + 4) else {
                return (frames, None, pos);
            };
            let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            if len > MAX_FRAME_LEN {
                let e = FramingError::FrameTooLarge {
                    len,
                    max: MAX_FRAME_LEN,
                };
                return (frames, Some(e), pos);
            }
            let Some(payload) = stream.get(pos + 4..pos + 4 + len) else {
                return (frames, None, pos);
            };
            frames.push(payload.to_vec());
            pos += 4 + len;
        },
    }
}

/// What feeding a decoder produced.
struct Fed {
    frames: Vec<Vec<u8>>,
    error: Option<FramingError>,
    /// Largest single allocation made inside the decoder's calls.
    largest_alloc: usize,
}

/// Feeds `stream` in chunks cycling through `sizes` (a 0 is an empty
/// read), draining after every push, checking `buffered()` as it goes.
fn feed(ser: Serialization, stream: &[u8], sizes: &[usize]) -> Result<Fed, String> {
    let mut dec = FrameDecoder::new(ser);
    let mut out = Fed {
        frames: Vec::new(),
        error: None,
        largest_alloc: 0,
    };
    let header = match ser {
        Serialization::Json => 1,
        Serialization::Advanced => 4,
    };
    let (mut fed, mut consumed, mut zeros) = (0usize, 0usize, 0usize);
    let mut cycle = sizes.iter().cycle();
    loop {
        let mut n = cycle.next().copied().unwrap_or(1).min(stream.len() - fed);
        if n == 0 && fed < stream.len() {
            zeros += 1;
            if zeros > sizes.len() {
                // Only empty reads in the cycle: make progress anyway.
                n = 1;
                zeros = 0;
            }
        }
        let chunk = &stream[fed..fed + n];
        let ((), usage) = probe::measure(|| dec.push(chunk));
        out.largest_alloc = out.largest_alloc.max(usage.largest);
        fed += n;
        loop {
            let (next, usage) = probe::measure(|| dec.next_frame());
            out.largest_alloc = out.largest_alloc.max(usage.largest);
            match next {
                Ok(Some(frame)) => {
                    consumed += frame.len() + header;
                    out.frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    if out.error.as_ref().is_some_and(|prev| *prev != e) {
                        return Err(format!("error changed from {:?} to {e:?}", out.error));
                    }
                    out.error = Some(e);
                    break;
                }
            }
        }
        if dec.buffered() > fed || dec.buffered() != fed - consumed {
            return Err(format!(
                "buffered {} after feeding {fed} and consuming {consumed}",
                dec.buffered()
            ));
        }
        if fed == stream.len() {
            break;
        }
    }
    // One more empty read changes nothing.
    dec.push(&[]);
    let last = dec.next_frame();
    match &out.error {
        Some(e) if last != Err(e.clone()) => return Err(format!("failed, then {last:?}")),
        None if last != Ok(None) => return Err(format!("an empty read gave {last:?}")),
        _ => {}
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Framing

#[derive(Debug, Clone)]
enum Payload {
    Value(Value),
    Raw(Vec<u8>),
    /// A large payload of one repeated byte (exercises compaction).
    Big(usize, u8),
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        4 => value().prop_map(Payload::Value),
        3 => vec(any::<u8>(), 0..64).prop_map(Payload::Raw),
        1 => (60_000usize..150_000, any::<u8>()).prop_map(|(n, b)| Payload::Big(n, b)),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Frames split at arbitrary points come out whole, in order, and
    /// decode to what was encoded.
    #[test]
    fn fuzz_framing_split_anywhere_round_trips(
        ser in serialization(),
        payloads in vec(payload(), 0..10),
        sizes in chunk_sizes(),
    ) {
        let mut stream = Vec::new();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for p in &payloads {
            match p {
                Payload::Value(v) => {
                    let frame = framing::encode_value(ser, v);
                    let payload = match ser {
                        Serialization::Json => {
                            prop_assert_eq!(frame.last(), Some(&b'\n'));
                            let body = frame[..frame.len() - 1].to_vec();
                            prop_assert!(!body.contains(&b'\n'), "newline inside JSON");
                            prop_assert_eq!(&body, &json::to_vec(v));
                            body
                        }
                        Serialization::Advanced => {
                            let body = frame[4..].to_vec();
                            prop_assert_eq!(&frame[..4], &(body.len() as u32).to_be_bytes());
                            // The 4-byte prefix keeps V8's padding parity.
                            prop_assert_eq!(&body, &wire::encode(v));
                            body
                        }
                    };
                    stream.extend_from_slice(&frame);
                    want.push(payload);
                }
                Payload::Raw(raw) => {
                    let mut raw = raw.clone();
                    if ser == Serialization::Json {
                        raw.retain(|&b| b != b'\n');
                    }
                    framing::encode_frame(ser, &raw, &mut stream);
                    want.push(raw);
                }
                Payload::Big(n, b) => {
                    let b = if ser == Serialization::Json && *b == b'\n' { b'x' } else { *b };
                    let raw = vec![b; *n];
                    framing::encode_frame(ser, &raw, &mut stream);
                    want.push(raw);
                }
            }
        }
        let fed = feed(ser, &stream, &sizes).map_err(proptest::test_runner::TestCaseError::fail)?;
        prop_assert_eq!(fed.error, None);
        prop_assert_eq!(fed.frames.len(), want.len());
        prop_assert!(fed.frames == want, "frames differ");
        for (p, frame) in payloads.iter().zip(&fed.frames) {
            if let Payload::Value(v) = p {
                let got = framing::decode_value(ser, frame);
                let expect = match ser {
                    Serialization::Json => json_expect(v),
                    Serialization::Advanced => wire_expect(v),
                };
                match got {
                    Ok(got) => prop_assert!(same(&got, &expect), "{:?}: got {:?}, expected {:?}", ser, got, expect),
                    Err(e) => prop_assert!(false, "{:?}: {:?} failed to decode: {}", ser, v, e),
                }
            }
        }
    }

    /// Arbitrary bytes in arbitrary reads: no panic, exactly the frames a
    /// reference splitter finds, a sticky error, `buffered()` never above
    /// what was fed, and no allocation beyond twice the bytes fed (so no
    /// reservation of what a length prefix announces).
    #[test]
    fn fuzz_framing_arbitrary_bytes(
        ser in serialization(),
        stream in prop_oneof![
            2 => vec(any::<u8>(), 0..600),
            2 => vec(prop_oneof![
                3 => vec(any::<u8>(), 0..12),
                1 => Just(vec![b'\n']),
                1 => prop::sample::select(&[
                    [0u8, 0, 0, 0],
                    [0, 0, 0, 3],
                    [0, 0, 1, 0],
                    [0x40, 0, 0, 0],
                    [0x40, 0, 0, 1],
                    [0x7f, 0xff, 0xff, 0xff],
                    [0x80, 0, 0, 0],
                    [0xff, 0xff, 0xff, 0xff],
                ][..]).prop_map(|p| p.to_vec()),
            ], 0..24).prop_map(|ps| ps.concat()),
        ],
        sizes in chunk_sizes(),
    ) {
        let (want, want_err, _) = reference_frames(ser, &stream);
        let fed = feed(ser, &stream, &sizes).map_err(proptest::test_runner::TestCaseError::fail)?;
        prop_assert_eq!(&fed.error, &want_err);
        prop_assert!(fed.frames == want, "frames differ from the reference splitter");
        prop_assert!(
            fed.largest_alloc <= 2 * stream.len() + 8,
            "allocated {} bytes at once after {} bytes", fed.largest_alloc, stream.len()
        );
    }

    /// Any length prefix, up to 4 GiB: an error above MAX_FRAME_LEN as soon
    /// as the prefix is complete, otherwise a wait without reserving.
    #[test]
    fn fuzz_framing_length_prefix(
        len in prop_oneof![
            any::<u32>(),
            (MAX_FRAME_LEN as u32 - 2)..=(MAX_FRAME_LEN as u32 + 2),
            0u32..80,
            Just(u32::MAX),
        ],
        tail in vec(any::<u8>(), 0..80),
        sizes in chunk_sizes(),
    ) {
        let mut stream = len.to_be_bytes().to_vec();
        stream.extend_from_slice(&tail);
        let fed = feed(Serialization::Advanced, &stream, &sizes)
            .map_err(proptest::test_runner::TestCaseError::fail)?;
        let len = len as usize;
        if len > MAX_FRAME_LEN {
            prop_assert_eq!(&fed.error, &Some(FramingError::FrameTooLarge { len, max: MAX_FRAME_LEN }));
            prop_assert!(fed.frames.is_empty());
        } else if tail.len() >= len {
            prop_assert_eq!(fed.frames.first().map(Vec::as_slice), Some(&tail[..len]));
        } else {
            prop_assert_eq!(&fed.error, &None);
            prop_assert!(fed.frames.is_empty());
        }
        // Whatever follows the first frame, as the reference splits it.
        let (want, want_err, _) = reference_frames(Serialization::Advanced, &stream);
        prop_assert_eq!(fed.error, want_err);
        prop_assert!(fed.frames == want);
        prop_assert!(fed.largest_alloc <= 2 * stream.len() + 8, "allocated {}", fed.largest_alloc);
    }
}

#[test]
fn fuzz_framing_four_gib_prefix_is_refused_without_reserving() {
    for prefix in [[0xffu8; 4], [0x40, 0, 0, 1], [0x80, 0, 0, 0]] {
        let mut dec = FrameDecoder::new(Serialization::Advanced);
        let (result, usage) = probe::measure(|| {
            dec.push(&prefix);
            dec.next_frame()
        });
        let len = u32::from_be_bytes(prefix) as usize;
        assert_eq!(
            result,
            Err(FramingError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN
            })
        );
        assert!(usage.largest < 64, "{usage:?}");
        assert_eq!(dec.buffered(), 4);
    }
    // Exactly the limit waits, byte by byte, without reserving 1 GiB.
    let mut dec = FrameDecoder::new(Serialization::Advanced);
    let ((), usage) = probe::measure(|| {
        dec.push(&[0x40, 0, 0, 0]);
        for _ in 0..1000 {
            dec.push(&[7]);
            assert_eq!(dec.next_frame(), Ok(None));
        }
    });
    assert!(usage.largest <= 2 * 1004 + 8, "{usage:?}");
    assert_eq!(dec.buffered(), 1004);
}

// ---------------------------------------------------------------------------
// JSON

/// One piece of a JSON string literal.
#[derive(Debug, Clone)]
enum Seg {
    Lit(char),
    /// `\uXXXX` of any UTF-16 unit, lone surrogates included.
    Unit(u16, bool),
    /// One of `\" \\ \/ \b \f \n \r \t`.
    Short(usize),
}

const SHORT: [(&str, char); 8] = [
    ("\\\"", '"'),
    ("\\\\", '\\'),
    ("\\/", '/'),
    ("\\b", '\u{8}'),
    ("\\f", '\u{c}'),
    ("\\n", '\n'),
    ("\\r", '\r'),
    ("\\t", '\t'),
];

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        3 => character().prop_map(Seg::Lit),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(u, up)| Seg::Unit(u, up)),
        2 => (0xd800u16..0xe000, any::<bool>()).prop_map(|(u, up)| Seg::Unit(u, up)),
        1 => (0usize..SHORT.len()).prop_map(Seg::Short),
    ]
}

/// The literal's text (quotes included) and the UTF-16 units it denotes.
fn render(segs: &[Seg]) -> (String, Vec<u16>) {
    let mut text = String::from("\"");
    let mut units = Vec::new();
    for s in segs {
        match *s {
            Seg::Lit(c) if c == '"' || c == '\\' || u32::from(c) < 0x20 => {
                text.push_str(&format!("\\u{:04x}", u32::from(c)));
                units.push(u32::from(c) as u16);
            }
            Seg::Lit(c) => {
                text.push(c);
                let mut buf = [0u16; 2];
                units.extend_from_slice(c.encode_utf16(&mut buf));
            }
            Seg::Unit(u, upper) => {
                if upper {
                    text.push_str(&format!("\\u{u:04X}"));
                } else {
                    text.push_str(&format!("\\u{u:04x}"));
                }
                units.push(u);
            }
            Seg::Short(i) => {
                let (esc, c) = SHORT[i];
                text.push_str(esc);
                units.push(u32::from(c) as u16);
            }
        }
    }
    text.push('"');
    (text, units)
}

/// A JSON number literal: sign, integer part, fraction, exponent.
fn number_literal() -> impl Strategy<Value = String> {
    let digits = |max: usize| {
        vec(0u8..10, 1..max)
            .prop_map(|ds| ds.iter().map(|d| char::from(b'0' + d)).collect::<String>())
    };
    let int = prop_oneof![
        Just("0".to_string()),
        (1u8..10, digits(26)).prop_map(|(d, rest)| format!("{d}{rest}")),
        (1u8..10).prop_map(|d| d.to_string()),
    ];
    let frac = proptest::option::of(digits(24));
    let exp = proptest::option::of((
        prop::sample::select(&["e", "E"][..]),
        prop::sample::select(&["", "+", "-"][..]),
        digits(5),
    ));
    (any::<bool>(), int, frac, exp).prop_map(|(neg, int, frac, exp)| {
        let mut s = String::new();
        if neg {
            s.push('-');
        }
        s.push_str(&int);
        if let Some(f) = frac {
            s.push('.');
            s.push_str(&f);
        }
        if let Some((e, sign, d)) = exp {
            s.push_str(e);
            s.push_str(sign);
            s.push_str(&d);
        }
        s
    })
}

fn check_json_error(bytes: &[u8], e: &JsonError) -> Result<(), String> {
    let ok = match *e {
        JsonError::InvalidUtf8 { offset } => {
            offset <= bytes.len() && std::str::from_utf8(&bytes[..offset]).is_ok()
        }
        JsonError::UnexpectedByte { byte, offset } => bytes.get(offset) == Some(&byte),
        JsonError::InvalidEscape { offset } => bytes.get(offset) == Some(&b'\\'),
        JsonError::InvalidNumber { offset } => {
            matches!(bytes.get(offset), Some(b'-' | b'0'..=b'9'))
        }
        JsonError::TrailingData { offset } => offset < bytes.len(),
        JsonError::UnexpectedEnd | JsonError::TooDeep => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{e:?} does not describe {bytes:?}"))
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// `JSON.parse(JSON.stringify(v))` for arbitrary trees, and the
    /// writer's output is a fixed point once parsed.
    #[test]
    fn fuzz_json_value_round_trip(v in value()) {
        let text = json::to_vec(&v);
        prop_assert!(std::str::from_utf8(&text).is_ok(), "writer emitted invalid UTF-8");
        prop_assert!(!text.contains(&b'\n'), "a raw newline would split the frame");
        let expect = json_expect(&v);
        match json::parse(&text) {
            Ok(got) => {
                prop_assert!(same(&got, &expect), "{}: got {:?}, expected {:?}", String::from_utf8_lossy(&text), got, expect);
                let again = json::to_vec(&got);
                let reparsed = json::parse(&again);
                prop_assert!(reparsed.as_ref().is_ok_and(|r| same(r, &got)));
                prop_assert_eq!(json::to_vec(&reparsed.unwrap_or(Value::Null)), again);
            }
            Err(e) => prop_assert!(false, "{} does not parse: {}", String::from_utf8_lossy(&text), e),
        }
    }

    /// String literals with every escape form, lone surrogates included
    /// (which become U+FFFD), as string values and as keys.
    #[test]
    fn fuzz_json_string_escapes(segs in vec(seg(), 0..16)) {
        let (text, units) = render(&segs);
        let expect = String::from_utf16_lossy(&units);
        prop_assert_eq!(json::parse(text.as_bytes()), Ok(Value::String(expect.clone())), "{}", text);
        let object = format!("{{{text}:1}}");
        let want = js_object([(expect, Value::Number(1.0))]);
        prop_assert_eq!(json::parse(object.as_bytes()), Ok(want), "{}", object);
    }

    /// Number literals parse to the correctly rounded double (Rust's
    /// parser as the reference; out of range is ±Infinity), and every
    /// finite double survives `String(n)`.
    #[test]
    fn fuzz_json_numbers(literal in number_literal(), n in number()) {
        let want: f64 = literal.parse().map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{literal}: {e}")))?;
        match json::parse(literal.as_bytes()) {
            Ok(Value::Number(got)) => prop_assert_eq!(got.to_bits(), want.to_bits(), "{} -> {:e}, want {:e}", literal, got, want),
            other => prop_assert!(false, "{}: {:?}", literal, other),
        }
        if n.is_finite() {
            let text = json::js_number_to_string(n);
            let want = if n == 0.0 { 0.0 } else { n };
            match json::parse(text.as_bytes()) {
                Ok(Value::Number(got)) => prop_assert_eq!(got.to_bits(), want.to_bits(), "{} for {:e}", text, n),
                other => prop_assert!(false, "{}: {:?}", text, other),
            }
        }
    }

    /// Arbitrary bytes: no panic; errors point at real input; what parses
    /// re-serializes and parses back the same.
    #[test]
    fn fuzz_json_arbitrary_bytes(bytes in json_bytes()) {
        let parsed = json::parse(&bytes);
        match &parsed {
            Ok(v) => {
                let again = json::parse(&json::to_vec(v));
                let expect = json_expect(v);
                prop_assert!(again.as_ref().is_ok_and(|a| same(a, &expect)), "{:?} -> {:?}", v, again);
            }
            Err(e) => check_json_error(&bytes, e).map_err(proptest::test_runner::TestCaseError::fail)?,
        }
    }

    /// Nesting: fine up to MAX_DEPTH, `TooDeep` past it (closed or not),
    /// never a stack overflow.
    #[test]
    fn fuzz_json_depth(
        openers in vec(any::<bool>(), 0..(3 * json::MAX_DEPTH)),
        closed in any::<bool>(),
    ) {
        let mut text = String::new();
        for &object in &openers {
            text.push_str(if object { "{\"k\":" } else { "[" });
        }
        text.push('1');
        if closed {
            for &object in openers.iter().rev() {
                text.push(if object { '}' } else { ']' });
            }
        }
        let got = json::parse(text.as_bytes());
        let depth = openers.len();
        if depth > json::MAX_DEPTH {
            prop_assert_eq!(got, Err(JsonError::TooDeep));
        } else if closed {
            prop_assert!(got.is_ok(), "depth {}: {:?}", depth, got);
        } else if depth > 0 {
            prop_assert_eq!(got, Err(JsonError::UnexpectedEnd));
        }
    }
}

// ---------------------------------------------------------------------------
// V8 wire

proptest! {
    #![proptest_config(config(256))]

    /// `v8.deserialize(v8.serialize(v))` for the modelled subset; the head
    /// of an object decodes on its own.
    #[test]
    fn fuzz_wire_value_round_trip(v in value(), head in 0usize..4) {
        let bytes = wire::encode(&v);
        let expect = wire_expect(&v);
        match wire::decode(&bytes) {
            Ok(got) => prop_assert!(same(&got, &expect), "{:?}: got {:?}, expected {:?}", bytes, got, expect),
            Err(e) => prop_assert!(false, "{:?} from {:?} does not decode: {}", bytes, v, e),
        }
        // Trailing bytes are ignored.
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"\x00\xffjunk");
        prop_assert!(wire::decode(&trailing).is_ok_and(|g| same(&g, &expect)));
        if let Value::Object(pairs) = &v {
            let want: Vec<(String, Value)> = pairs
                .iter()
                .take(head)
                .map(|(k, v)| (k.clone(), wire_expect(v)))
                .collect();
            let got = wire::leading_properties(&bytes, head);
            prop_assert!(same(&Value::Object(got.clone()), &Value::Object(want.clone())), "{:?} vs {:?}", got, want);
        }
    }

    /// Arbitrary bytes: no panic; errors point into the input; what decodes
    /// re-encodes and decodes back the same; and a message cannot make the
    /// decoder materialise more than one maximal sparse array's worth of
    /// holes beyond what its bytes spell out.
    #[test]
    fn fuzz_wire_arbitrary_bytes(bytes in wire_bytes()) {
        let (decoded, usage) = probe::measure(|| wire::decode(&bytes));
        let _ = wire::leading_properties(&bytes, 3);
        match decoded {
            Ok(v) => {
                // 2^20 holes (one maximal sparse array) of 32-byte values,
                // plus a generous allowance per input byte.
                prop_assert!(
                    size(&v) <= (1 << 20) + 8 * bytes.len(),
                    "{} bytes decoded to {} values", bytes.len(), size(&v)
                );
                if size(&v) <= 1 << 16 {
                    let again = wire::decode(&wire::encode(&v));
                    prop_assert!(again.as_ref().is_ok_and(|a| same(a, &v)), "{:?} -> {:?}", v, again);
                }
            }
            Err(WireError::Malformed { offset, .. }) => prop_assert!(offset <= bytes.len()),
            Err(_) => {}
        }
        prop_assert!(
            usage.total <= 40 * (1 << 20) + 64 * bytes.len(),
            "decoding {} bytes allocated {} bytes", bytes.len(), usage.total
        );
    }

    /// Nesting past MAX_DEPTH is an error, never a stack overflow.
    #[test]
    fn fuzz_wire_depth(openers in vec(0u8..3, 0..(3 * wire::MAX_DEPTH))) {
        let mut v = Value::Null;
        for &kind in openers.iter().rev() {
            v = match kind {
                0 => Value::Array(vec![v]),
                1 => Value::object([("k", v)]),
                _ => Value::Array(vec![Value::Undefined, v]),
            };
        }
        let bytes = wire::encode(&v);
        let got = wire::decode(&bytes);
        if openers.len() > wire::MAX_DEPTH {
            prop_assert_eq!(got, Err(WireError::TooDeep));
        } else {
            prop_assert!(got.is_ok_and(|g| same(&g, &v)));
        }
        // Cut short: an error, whatever the depth.
        prop_assert!(wire::decode(&bytes[..bytes.len() / 2]).is_err());
    }
}

// ---------------------------------------------------------------------------
// Findings: inputs that broke a property, kept as regression tests (both
// fixed: a budget of holes per message; arrays grow as elements decode).

/// `[new Array(2**20), new Array(2**20), new Array(2**20)]` as V8 writes
/// it: 36 bytes. Each sparse array is at the `MAX_SPARSE_LEN` limit and so
/// is materialised densely (2^20 `Value::Undefined`, 32 MiB); nothing
/// bounds how many a message holds, so ~300 bytes ask for 1 GiB and a few
/// KiB abort the primary. Expected: a budget of holes per message (past it,
/// `Unsupported(b'a')`, left to JavaScript like one oversized array).
#[test]
fn fuzz_finding_sparse_arrays_multiply_past_the_hole_limit() {
    let sparse = [b'a', 0x80, 0x80, 0x40, b'@', 0, 0x80, 0x80, 0x40];
    let mut bytes = vec![0xff, 15, b'A', 3];
    for _ in 0..3 {
        bytes.extend_from_slice(&sparse);
    }
    bytes.extend_from_slice(&[b'$', 0, 3]);
    let (decoded, usage) = probe::measure(|| wire::decode(&bytes));
    let values = decoded.as_ref().map_or(0, size);
    drop(decoded);
    assert!(
        usage.total <= 40 << 20,
        "{} input bytes: decoded to {values} values, allocating {} MiB",
        bytes.len(),
        usage.total >> 20
    );
}

/// Nested dense arrays each announcing as many elements as there are
/// bytes left: every level reserves 32 bytes per remaining input byte
/// before any element is read, so D levels over N bytes reserve about
/// 32·D·N (here 64 levels, 16 KB: 31 MiB; at MAX_DEPTH levels and 1 MiB,
/// 16 GiB) before failing as truncated. The comment in `dense_array`
/// ("bounds the allocation by the input size") holds per array, not per
/// message. Expected: allocation O(N) per message.
#[test]
fn fuzz_finding_nested_dense_arrays_reserve_per_level() {
    let (depth, len) = (64usize, 16_000usize);
    let mut bytes = vec![0xff, 15];
    for _ in 0..depth {
        // 'A' and the length as a two-byte varint.
        bytes.extend_from_slice(&[b'A', (len & 0x7f) as u8 | 0x80, (len >> 7) as u8]);
    }
    bytes.resize(bytes.len() + len, 0);
    let (decoded, usage) = probe::measure(|| wire::decode(&bytes));
    assert_eq!(decoded, Err(WireError::Truncated));
    assert!(
        usage.total <= 64 * bytes.len(),
        "{} input bytes allocated {} MiB while failing",
        bytes.len(),
        usage.total >> 20
    );
}
