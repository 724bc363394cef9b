//! The two JSON frames a worker sends for every round-robin connection,
//! recognised by their bytes: `{"cmd":"NODE_HANDLE_ACK"}` and the `newconn`
//! reply `{"cmd":"NODE_CLUSTER","ack":N,"accepted":B,"seq":M}`, exactly as
//! Node's `JSON.stringify` writes them (`sendHelper` puts the keys in that
//! order). Parsing them into a [`Value`](super::value::Value) tree costs
//! more than the rest of the primary's share of a connection, so the
//! protocol asks here first; any other frame, including every variation of
//! these (spacing, key order, a number that is not a plain integer), gets
//! `None` and goes through the general parser, which decides what it means.

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

/// Most digits read as an integer here: 15 are always below 2^53, so the
/// number means the same as the general parser's `f64` does.
const MAX_DIGITS: usize = 15;

/// What `payload` (one JSON frame without its newline) is, when it has
/// one of the hot path's exact shapes.
pub fn recognise(payload: &[u8]) -> Option<Hot> {
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
    use crate::core::codec::json;
    use crate::core::codec::value::Value;
    use proptest::prelude::{any, prop, Strategy};
    use proptest::{prop_assert_eq, prop_oneof, proptest};

    #[test]
    fn recognises_what_node_writes() {
        assert_eq!(recognise(HANDLE_ACK), Some(Hot::HandleAck));
        assert_eq!(
            recognise(br#"{"cmd":"NODE_CLUSTER","ack":42,"accepted":true,"seq":7}"#),
            Some(Hot::NewconnReply {
                ack: 42,
                accepted: true
            })
        );
        assert_eq!(
            recognise(br#"{"cmd":"NODE_CLUSTER","ack":0,"accepted":false,"seq":0}"#),
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
            assert_eq!(recognise(frame), None, "{}", String::from_utf8_lossy(frame));
        }
    }

    /// What the general path makes of a frame: the ack and `accepted`'s
    /// truthiness of a NODE_CLUSTER reply, or whether it is a handle ACK.
    fn general(payload: &[u8]) -> Option<Hot> {
        let v = json::parse(payload).ok()?;
        match v.get("cmd").and_then(Value::as_str)? {
            "NODE_HANDLE_ACK" => Some(Hot::HandleAck),
            "NODE_CLUSTER" => Some(Hot::NewconnReply {
                ack: u64::try_from(v.get("ack")?.as_i64()?).ok()?,
                accepted: v.get("accepted").is_some_and(Value::truthy),
            }),
            _ => None,
        }
    }

    /// Replies as Node writes them, then bytes changed, cut or inserted.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        let reply = (0u64..1 << 53, any::<bool>(), 0u64..1 << 53).prop_map(|(a, b, s)| {
            format!(r#"{{"cmd":"NODE_CLUSTER","ack":{a},"accepted":{b},"seq":{s}}}"#).into_bytes()
        });
        let base = prop_oneof![reply, proptest::strategy::Just(HANDLE_ACK.to_vec())];
        (
            base,
            prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 0..3),
        )
            .prop_map(|(mut f, edits)| {
                let alphabet = b"0123456789-.eE,:{}\"tfx ";
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

        /// Whatever the fast path recognises, the general parser reads the
        /// same way.
        #[test]
        fn fuzz_hot_frames_mean_what_the_general_parser_says(f in frames()) {
            if let Some(hot) = recognise(&f) {
                prop_assert_eq!(Some(hot), general(&f), "{}", String::from_utf8_lossy(&f));
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
            prop_assert_eq!(recognise(f.as_bytes()), Some(Hot::NewconnReply { ack: a, accepted: b }));
        }
    }
}
