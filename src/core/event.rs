//! The two message types crossing the I/O thread's boundary: commands in
//! (from the binding) and events out (to JavaScript).

use crate::core::balance::Policy;
use crate::core::framing::Serialization;
use crate::core::spawn::{ChildEnds, SpawnSpec};
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
    /// Fork and exec a worker whose descriptors are already laid out, then
    /// adopt it. Done here so that `fork()` in JavaScript does not wait.
    Launch {
        id: u32,
        spec: Box<SpawnSpec>,
        channel: OwnedFd,
        child: ChildEnds,
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
    /// JavaScript listened for [`Event::Listen`] `bind`: the listening
    /// socket (a copy, ours to keep) or Node's negative errno.
    Listened {
        bind: u32,
        result: Result<OwnedFd, i64>,
    },
    /// Write out everything queued so far, then answer (the process is
    /// about to exit and queued frames would otherwise be lost).
    Flush(crossbeam_channel::Sender<()>),
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
    /// Consecutive user messages from one worker, in one buffer so that
    /// JavaScript decodes a whole batch at once. `json`: `data` is a JSON
    /// array text `[m1,m2,...]`, each `mN` exactly as the worker framed it;
    /// otherwise the V8 payloads back to back. `lengths` gives each message's
    /// byte length (JSON: separated by one comma, after the `[`).
    Messages {
        id: u32,
        json: bool,
        data: Vec<u8>,
        lengths: Vec<u32>,
    },
    /// A user message on its own: one carrying a descriptor (then the whole
    /// `NODE_HANDLE` envelope as framed by the worker; `handle_type` is its
    /// `type`), or JSON text that cannot join a batch.
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
    /// The worker could not be started (`errno` is positive).
    SpawnFailed {
        id: u32,
        errno: i32,
        message: String,
    },
    Warning {
        id: u32,
        code: &'static str,
        message: String,
    },
    /// Workers asked for a new round-robin TCP server: JavaScript listens
    /// with `net.Server#listen(options)` (JSON text) and answers with
    /// [`Command::Listened`].
    Listen {
        bind: u32,
        options: String,
    },
}

impl Event {
    /// Appends a plain user message, joining it to the previous event when
    /// that is a batch from the same worker.
    pub fn push_message(events: &mut Vec<Event>, id: u32, json: bool, payload: &[u8]) {
        if let Some(Event::Messages {
            id: last,
            data,
            lengths,
            ..
        }) = events.last_mut()
        {
            if *last == id {
                if json {
                    data.push(b',');
                }
                data.extend_from_slice(payload);
                lengths.push(payload.len() as u32);
                return;
            }
        }
        let mut data = Vec::with_capacity(payload.len() + 2);
        if json {
            data.push(b'[');
        }
        data.extend_from_slice(payload);
        events.push(Event::Messages {
            id,
            json,
            data,
            lengths: vec![payload.len() as u32],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_messages_of_one_worker_share_a_batch() {
        let mut ev = Vec::new();
        Event::push_message(&mut ev, 1, true, b"{\"a\":1}");
        Event::push_message(&mut ev, 1, true, b"2");
        Event::push_message(&mut ev, 2, true, b"3");
        ev.push(Event::Online { id: 1 });
        Event::push_message(&mut ev, 1, false, b"xy");
        assert_eq!(ev.len(), 4);
        match &ev[0] {
            Event::Messages {
                id,
                json,
                data,
                lengths,
            } => {
                assert_eq!((*id, *json), (1, true));
                assert_eq!(data, b"[{\"a\":1},2");
                assert_eq!(lengths, &vec![7, 1]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(&ev[3], Event::Messages { id: 1, json: false, data, .. } if data == b"xy")
        );
    }
}
