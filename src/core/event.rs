//! The two message types crossing the I/O thread's boundary: commands in
//! (from the binding) and events out (to JavaScript).

use crate::core::balance::Policy;
use crate::core::framing::Serialization;
use crate::core::sys::ExitStatus;
use std::os::fd::OwnedFd;

#[derive(Debug)]
pub enum Command {
    /// Take over a freshly spawned worker's channel and exit notification.
    Adopt {
        id: u32,
        pid: i32,
        pidfd: OwnedFd,
        channel: OwnedFd,
        serialization: Serialization,
    },
    /// A complete frame from JavaScript, optionally carrying a descriptor
    /// (then the frame is a `NODE_HANDLE` envelope).
    Send {
        id: u32,
        frame: Vec<u8>,
        fd: Option<OwnedFd>,
    },
    /// `worker.disconnect()`: ask the worker to close its servers and leave.
    Disconnect {
        id: u32,
    },
    /// `worker.process.disconnect()`: close the channel once queued frames
    /// are out.
    CloseChannel {
        id: u32,
    },
    /// Scheduling policy and handle-key style, fixed at the first fork.
    Configure {
        policy: Policy,
        key_with_index: bool,
    },
    Shutdown,
}

#[derive(Debug)]
pub enum Event {
    Online {
        id: u32,
    },
    /// The worker's `listening` act; `info` is the JSON of
    /// `{addressType, address, port, fd}`.
    Listening {
        id: u32,
        info: String,
    },
    /// A user message, exactly as framed by the worker (JSON text without
    /// the newline, or V8 bytes). With a descriptor, it is the whole
    /// `NODE_HANDLE` envelope and `handle_type` is its `type`.
    Message {
        id: u32,
        payload: Vec<u8>,
        fd: Option<OwnedFd>,
        handle_type: Option<String>,
    },
    /// An internal message the core has no part in (`NODE_SOCKET_*` socket
    /// list bookkeeping, ...): JavaScript emits it as `internalMessage`.
    Internal {
        id: u32,
        payload: Vec<u8>,
    },
    /// The worker announced a voluntary exit (`exitedAfterDisconnect`).
    ExitedAfterDisconnect {
        id: u32,
    },
    /// The channel closed.
    Disconnect {
        id: u32,
    },
    Exit {
        id: u32,
        status: ExitStatus,
    },
    /// Something the worker sent was unusable; nothing else is affected.
    Error {
        id: u32,
        code: &'static str,
        message: String,
    },
    Warning {
        id: u32,
        code: &'static str,
        message: String,
    },
}
