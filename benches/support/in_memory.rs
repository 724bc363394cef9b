//! The protocol state machine driven in memory, as the I/O driver drives
//! it but with no I/O: shared by the criterion bench (`benches/core.rs`)
//! and the callgrind loop (`examples/handoff_loop.rs`), so that both
//! measure the same work.

use native_cluster::core::protocol::fd::FdId;
use native_cluster::core::protocol::{Input, Opened, Output, Protocol, SockName};
use std::hint::black_box;

/// A worker's `queryServer` for 127.0.0.1:8000 under SCHED_RR.
pub const QUERY: &[u8] = br#"{"cmd":"NODE_CLUSTER","act":"queryServer","seq":1,"address":"127.0.0.1","port":8000,"addressType":4,"fd":-1,"flags":0,"backlog":511,"index":0,"data":null}
"#;

/// Performs the protocol's outputs as a driver would: writes every frame
/// at once and opens a server's socket (token 0, 127.0.0.1:8000). Returns
/// how many descriptor tokens it was told to close.
pub fn drive(p: &mut Protocol) -> usize {
    let mut closed = 0;
    while let Some(out) = p.poll_output() {
        match out {
            Output::Transmit { id } => {
                p.transmitting(id);
                while let Some((bytes, _)) = p.transmit(id) {
                    let n = black_box(bytes).len();
                    p.written(id, n);
                }
            }
            Output::Close { .. } => closed += 1,
            Output::Open { bind, .. } => p.handle(Input::Opened {
                bind,
                result: Ok(Opened {
                    fd: FdId(0),
                    sockname: Some(SockName {
                        address: "127.0.0.1".into(),
                        ipv6: false,
                        port: 8000,
                    }),
                }),
            }),
            other => {
                black_box(other);
            }
        }
    }
    closed
}

/// What a JSON worker answers to the `newconn` with `seq`: its
/// `NODE_HANDLE_ACK` and `{ack, accepted: true}`, written into `out`.
pub fn accept_reply(seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_CLUSTER\",\"ack\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"accepted\":true,\"seq\":7}\n");
}
