//! The cluster primary in plain Rust: spawning workers, their IPC channels,
//! Node's cluster protocol and connection distribution, all on one I/O
//! thread. Knows nothing about N-API.

pub mod balance;
pub mod event;
pub mod framing;
pub mod js_listen;
pub mod json;
pub mod listen;
pub mod outbox;
pub mod poller;
pub mod primary;
pub mod protocol;
pub mod reactor;
pub mod reuseport_sockets;
pub mod scm;
pub mod servers;
pub mod spawn;
pub mod sys;
pub mod value;
pub mod waker;
pub mod wire;
