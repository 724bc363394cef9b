//! Node's IPC wire formats, in plain Rust: the two framings (`json` lines and
//! `advanced` length-prefixed V8 values), a JSON parser and writer that match
//! `JSON.parse`/`JSON.stringify`, a byte matcher for the two frames every
//! round-robin connection brings (`hot`), and the subset of V8's serializer
//! that Node's internal messages use. No I/O; the protocol and the benches
//! use it.

pub mod framing;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod hot;
pub mod json;
pub mod value;
pub mod wire;
