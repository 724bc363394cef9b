//! The two frames a worker sends for every round-robin connection,
//! recognised by their bytes: `{"cmd":"NODE_HANDLE_ACK"}` and the `newconn`
//! reply `{"cmd":"NODE_CLUSTER","ack":N,"accepted":B,"seq":M}`, exactly as
//! Node writes them — `JSON.stringify`, or V8's serializer (format version
//! 15, Node 20 to 24) for `advanced` — with `sendHelper`'s key order.
//! Parsing them into a [`Value`](super::value::Value) tree costs more than
//! the rest of the primary's share of a connection, so the protocol asks
//! here first; any other frame, including every variation of these
//! (spacing, key order, a number that is not a small non-negative integer,
//! another V8 version), gets `None` and goes through the general decoder,
//! which decides what it means.

use super::framing::Serialization;

/// A frame of the round-robin hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    /// `{"cmd":"NODE_HANDLE_ACK"}`.
    HandleAck,
    /// The reply to the `newconn` whose `seq` was `ack`.
    NewconnReply { ack: u64, accepted: bool },
}

const HANDLE_ACK: &[u8] = br#"{"cmd":"NODE_HANDLE_ACK"}"#;
const REPLY_HEAD: &[u8] = br#"{"cmd":"NODE_CLUSTER","ack":"#;

/// V8: header (version 15), object, one-byte strings (`"` + length), the
/// Smi tag `I` before `ack` and `seq`, `T`/`F`, and the object's end `{`
/// with its property count.
const V8_HANDLE_ACK: &[u8] = b"\xff\x0f\x6f\x22\x03cmd\x22\x0fNODE_HANDLE_ACK\x7b\x01";
const V8_REPLY_HEAD: &[u8] = b"\xff\x0f\x6f\x22\x03cmd\x22\x0cNODE_CLUSTER\x22\x03ack\x49";

/// Most digits read as an integer here: 15 are always below 2^53, so the
/// number means the same as the general parser's `f64` does.
const MAX_DIGITS: usize = 15;

/// What `payload` (one frame without its newline or length prefix) is,
/// when it has one of the hot path's exact shapes.
pub fn recognise(ser: Serialization, payload: &[u8]) -> Option<Hot> {
    match ser {
        Serialization::Json => recognise_json(payload),
        Serialization::Advanced => recognise_v8(payload),
    }
}

fn recognise_v8(payload: &[u8]) -> Option<Hot> {
    if payload == V8_HANDLE_ACK {
        return Some(Hot::HandleAck);
    }
    let rest = payload.strip_prefix(V8_REPLY_HEAD)?;
    let (ack, rest) = smi(rest)?;
    let rest = rest.strip_prefix(b"\x22\x08accepted")?;
    let (accepted, rest) = match rest.split_first()? {
        (b'T', r) => (true, r),
        (b'F', r) => (false, r),
        _ => return None,
    };
    let rest = rest.strip_prefix(b"\x22\x03seq\x49")?;
    let (_, rest) = smi(rest)?;
    (rest == b"\x7b\x04").then_some(Hot::NewconnReply { ack, accepted })
}

/// A non-negative Smi as V8 writes it (zigzag, then a base-128 varint of
/// at most 5 bytes, without trailing zero groups) and what follows it.
fn smi(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let len = bytes.iter().position(|b| b & 0x80 == 0)? + 1;
    if len > 5 || (len > 1 && bytes[len - 1] == 0) {
        return None;
    }
    let (varint, rest) = bytes.split_at(len);
    let zigzag = varint
        .iter()
        .enumerate()
        .fold(0u64, |n, (i, b)| n | u64::from(b & 0x7f) << (7 * i));
    // Odd: negative, which no newconn has.
    if zigzag > u64::from(u32::MAX) || zigzag & 1 == 1 {
        return None;
    }
    Some((zigzag >> 1, rest))
}

fn recognise_json(payload: &[u8]) -> Option<Hot> {
    if payload == HANDLE_ACK {
        return Some(Hot::HandleAck);
    }
    let rest = payload.strip_prefix(REPLY_HEAD)?;
    let (ack, rest) = integer(rest)?;
    let rest = rest.strip_prefix(br#","accepted":"#)?;
    let (accepted, rest) = if let Some(r) = rest.strip_prefix(b"true") {
        (true, r)
    } else {
        (false, rest.strip_prefix(b"false")?)
    };
    let rest = rest.strip_prefix(br#","seq":"#)?;
    let (_, rest) = integer(rest)?;
    (rest == b"}").then_some(Hot::NewconnReply { ack, accepted })
}

/// A JSON integer literal as `JSON.stringify` writes a non-negative safe
/// integer (no sign, no leading zero, no fraction or exponent) and what
/// follows it.
fn integer(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > MAX_DIGITS || (len > 1 && bytes[0] == b'0') {
        return None;
    }
    let (digits, rest) = bytes.split_at(len);
    // A fraction or an exponent makes it another number: the general path.
    if matches!(rest.first(), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((n, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::fuzz::config;
    use crate::core::codec::value::Value;
    use crate::core::codec::{json, wire};
    use proptest::prelude::{any, prop, Strategy};
    use proptest::{prop_assert_eq, prop_oneof, proptest};

    #[test]
    fn recognises_what_node_writes() {
        assert_eq!(recognise_json(HANDLE_ACK), Some(Hot::HandleAck));
        assert_eq!(
            recognise_json(br#"{"cmd":"NODE_CLUSTER","ack":42,"accepted":true,"seq":7}"#),
            Some(Hot::NewconnReply {
                ack: 42,
                accepted: true
            })
        );
        assert_eq!(
            recognise_json(br#"{"cmd":"NODE_CLUSTER","ack":0,"accepted":false,"seq":0}"#),
            Some(Hot::NewconnReply {
                ack: 0,
                accepted: false
            })
        );
    }

    #[test]
    fn leaves_every_variation_to_the_general_parser() {
        for frame in [
            &br#"{"cmd":"NODE_HANDLE_ACK" }"#[..],
            br#"{"cmd":"NODE_HANDLE_ACK"}x"#,
            br#"{"cmd":"NODE_CLUSTER","ack":042,"accepted":true,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":-1,"accepted":true,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1.5,"accepted":true,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1e3,"accepted":true,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1234567890123456,"accepted":true,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":1,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":7.0}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":7,"x":1}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true,"seq":7}}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":1,"accepted":true}"#,
            br#"{"cmd":"NODE_CLUSTER","accepted":true,"ack":1,"seq":7}"#,
            br#"{"cmd":"NODE_CLUSTER","ack":,"accepted":true,"seq":7}"#,
            b"",
        ] {
            assert_eq!(
                recognise_json(frame),
                None,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn recognises_what_nodes_v8_serializer_writes() {
        // `v8.Serializer` output of Node 20 for the two frames and for a
        // reply whose ack is past the Smi range (a double: general path).
        let ack = hex("ff0f6f2203636d64220f4e4f44455f48414e444c455f41434b7b01");
        let reply = hex(concat!(
            "ff0f6f2203636d64220c4e4f44455f434c5553544552220361636b4954",
            "22086163636570746564542203736571490e7b04"
        ));
        let double = hex(concat!(
            "ff0f6f2203636d64220c4e4f44455f434c5553544552220361636b4e000000c00b5ae641",
            "2208616363657074656446220373657149007b04"
        ));
        let v8 = Serialization::Advanced;
        assert_eq!(recognise(v8, &ack), Some(Hot::HandleAck));
        let expected = Hot::NewconnReply {
            ack: 42,
            accepted: true,
        };
        assert_eq!(recognise(v8, &reply), Some(expected));
        assert_eq!(general(v8, &reply), Some(expected));
        assert_eq!(recognise(v8, &double), None);
        assert_eq!(recognise(Serialization::Json, &reply), None);
    }

    /// What the general path makes of a frame: the ack and `accepted`'s
    /// truthiness of a NODE_CLUSTER reply, or whether it is a handle ACK.
    fn general(ser: Serialization, payload: &[u8]) -> Option<Hot> {
        let v = match ser {
            Serialization::Json => json::parse(payload).ok()?,
            Serialization::Advanced => wire::decode(payload).ok()?,
        };
        match v.get("cmd").and_then(Value::as_str)? {
            "NODE_HANDLE_ACK" => Some(Hot::HandleAck),
            "NODE_CLUSTER" => Some(Hot::NewconnReply {
                ack: u64::try_from(v.get("ack")?.as_i64()?).ok()?,
                accepted: v.get("accepted").is_some_and(Value::truthy),
            }),
            _ => None,
        }
    }

    /// Replies as Node writes them in `ser`, then bytes changed, cut or
    /// inserted.
    fn frames(ser: Serialization) -> impl Strategy<Value = Vec<u8>> {
        let reply = (0u64..1 << 53, any::<bool>(), 0u64..1 << 53).prop_map(move |(a, b, s)| {
            let v = Value::object([
                ("cmd", Value::str("NODE_CLUSTER")),
                ("ack", Value::Number(a as f64)),
                ("accepted", Value::Bool(b)),
                ("seq", Value::Number(s as f64)),
            ]);
            match ser {
                Serialization::Json => json::to_vec(&v),
                Serialization::Advanced => wire::encode(&v),
            }
        });
        let ack = match ser {
            Serialization::Json => HANDLE_ACK,
            Serialization::Advanced => V8_HANDLE_ACK,
        };
        let base = prop_oneof![reply, proptest::strategy::Just(ack.to_vec())];
        (
            base,
            prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 0..3),
        )
            .prop_map(|(mut f, edits)| {
                let alphabet = b"0123456789-.eE,:{}\"tfx \x00\x01\x49\x4e\x54\x46\x7b\x80\xff";
                for (at, byte, kind) in edits {
                    let i = usize::from(at) % (f.len() + 1);
                    let b = alphabet[usize::from(byte) % alphabet.len()];
                    match kind {
                        0 if i < f.len() => f[i] = b,
                        1 if i < f.len() => {
                            f.remove(i);
                        }
                        2 => f.insert(i, b),
                        _ => f.truncate(i),
                    }
                }
                f
            })
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// Whatever the fast path recognises, the general decoder reads
        /// the same way.
        #[test]
        fn fuzz_hot_frames_mean_what_the_general_parser_says(f in frames(Serialization::Json)) {
            if let Some(hot) = recognise(Serialization::Json, &f) {
                prop_assert_eq!(Some(hot), general(Serialization::Json, &f), "{}", String::from_utf8_lossy(&f));
            }
        }

        #[test]
        fn fuzz_hot_frames_v8_mean_what_the_general_decoder_says(f in frames(Serialization::Advanced)) {
            if let Some(hot) = recognise(Serialization::Advanced, &f) {
                prop_assert_eq!(Some(hot), general(Serialization::Advanced, &f), "{:02x?}", f);
            }
        }

        /// Every reply Node writes (seqs below 10^15) takes the fast path.
        #[test]
        fn fuzz_hot_frames_node_writes_are_recognised(
            a in 0u64..1_000_000_000_000_000,
            b in any::<bool>(),
            s in 0u64..1_000_000_000_000_000,
        ) {
            let f = format!(r#"{{"cmd":"NODE_CLUSTER","ack":{a},"accepted":{b},"seq":{s}}}"#);
            prop_assert_eq!(recognise_json(f.as_bytes()), Some(Hot::NewconnReply { ack: a, accepted: b }));
        }

        /// And every one V8 writes with Smi seqs (below 2^30 on 32-bit
        /// pointer-compressed builds, 2^31 otherwise).
        #[test]
        fn fuzz_hot_frames_v8_node_writes_are_recognised(
            a in 0u64..1 << 30,
            b in any::<bool>(),
            s in 0u64..1 << 30,
        ) {
            let v = Value::object([
                ("cmd", Value::str("NODE_CLUSTER")),
                ("ack", Value::Number(a as f64)),
                ("accepted", Value::Bool(b)),
                ("seq", Value::Number(s as f64)),
            ]);
            let f = wire::encode(&v);
            prop_assert_eq!(recognise(Serialization::Advanced, &f), Some(Hot::NewconnReply { ack: a, accepted: b }));
        }
    }
}
