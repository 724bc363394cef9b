//! native-cluster: a native `node:cluster` primary.
//!
//! `core` is the primary itself (plain Rust); `binding` exposes it to
//! JavaScript through N-API.

pub mod binding;
pub mod core;
