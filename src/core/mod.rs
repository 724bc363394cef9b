//! The cluster primary in plain Rust, knowing nothing about N-API, in three
//! layers: `codec` (Node's IPC wire formats), `protocol` (every decision of
//! the primary, as a state machine without I/O) and `io` (the tokio driver
//! that owns the descriptors, performs the protocol's outputs and spawns
//! the workers). `hash` is the hasher for maps keyed by our own ids.

pub mod codec;
pub mod hash;
pub mod io;
pub mod protocol;
