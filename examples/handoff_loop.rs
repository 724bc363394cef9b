//! The protocol state machine's share of SCHED_RR connections, in a loop
//! with no I/O and no timing: for counting instructions per connection
//! reproducibly with callgrind, where `cargo bench`'s wall-clock figures
//! are too noisy on a shared machine.
//!
//! ```text
//! cargo build --release --example handoff_loop
//! valgrind --tool=callgrind target/*/release/examples/handoff_loop 100000 [WORKERS]
//! valgrind --tool=callgrind target/*/release/examples/handoff_loop 0 [WORKERS]
//! ```
//!
//! (difference of the two totals) / 100000 = instructions per connection:
//! accepted, handed off as `newconn` to the longest-idle of WORKERS (2 by
//! default) JSON workers, written, the worker's `NODE_HANDLE_ACK` and
//! `{ack, accepted: true}` reply parsed, the primary's copy released.

use native_cluster::core::codec::framing::Serialization;
use native_cluster::core::protocol::fd::FdId;
use native_cluster::core::protocol::{Input, Protocol};
use std::hint::black_box;

#[path = "../benches/support/in_memory.rs"]
mod in_memory;
use in_memory::drive;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let workers: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let mut p = Protocol::new();
    for id in 1..=workers {
        p.handle(Input::Adopted {
            id,
            serialization: Serialization::Json,
        });
        p.handle(Input::Received {
            id,
            bytes: in_memory::QUERY,
            fds: Vec::new(),
        });
        drive(&mut p);
    }
    // The query replies took seqs 0..workers; each newconn takes the next,
    // and round-robin hands them to the workers in turn.
    let mut reply = Vec::with_capacity(128);
    let mut next_worker = 1;
    for conn in 1..=n {
        let seq = u64::from(workers) + conn - 1;
        p.handle(Input::Accepted {
            listener: FdId(0),
            conn: FdId(conn),
            peer: None,
        });
        drive(&mut p);
        in_memory::accept_reply(seq, &mut reply);
        p.handle(Input::Received {
            id: next_worker,
            bytes: &reply,
            fds: Vec::new(),
        });
        assert_eq!(drive(&mut p), 1, "the primary's copy is released");
        next_worker = next_worker % workers + 1;
    }
    black_box(p.footprint());
}
