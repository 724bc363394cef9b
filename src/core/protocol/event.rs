//! What the primary tells JavaScript: lifecycle events, user messages in
//! batches, errors a worker caused, and requests (`Listen`). One type on
//! both sides of the I/O thread: a message's descriptor is a token
//! ([`Descriptor::Token`]) as the protocol emits it, and the descriptor
//! itself ([`Descriptor::Owned`]) once the driver has swapped it in.

use crate::core::protocol::fd::FdId;
use std::os::fd::OwnedFd;

/// The descriptor travelling with a user message.
#[derive(Debug)]
pub enum Descriptor {
    /// As the protocol names it: a token of the driver's table.
    Token(FdId),
    /// Taken out of the table: the receiver owns it.
    Owned(OwnedFd),
}

/// Written bytes gathered before an [`Event::Written`] reports them
/// without a callback: JavaScript's count of unwritten bytes (what
/// `send()`'s return value compares with 128 KiB) runs at most this much
/// above the truth.
pub const REPORT_WRITTEN: usize = 32 * 1024;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
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
    /// Consecutive user messages from one worker, in one buffer (one
    /// crossing into JavaScript for the lot). `json`: `data` is the lines
    /// `m1\nm2\n...mN` exactly as the worker framed them (a frame never
    /// holds a newline), and `lengths` is empty: JavaScript parses one line
    /// at a time, as Node does, so only the message being handled is alive
    /// in its heap. Otherwise the V8 payloads back to back, and `lengths`
    /// gives each one's byte length.
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
        fd: Option<Descriptor>,
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
    /// `callbacks` more of JavaScript's `worker.send()` frames (those with
    /// a callback) were written, or will never be (channel closed), and
    /// `bytes` more bytes of its frames (with or without a callback): what
    /// JavaScript subtracts from its count of unwritten bytes. Reported
    /// with each callback, else once [`REPORT_WRITTEN`] bytes have
    /// gathered, so a stream of sends does not wake JavaScript per write.
    Written {
        id: u32,
        callbacks: u32,
        bytes: usize,
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
    /// `Command::Listened`.
    Listen {
        bind: u32,
        options: String,
    },
}

impl Event {
    /// The worker this event is about (a `Listen` request is about none).
    pub fn worker(&self) -> Option<u32> {
        match self {
            Event::Listen { .. } => None,
            Event::Online { id }
            | Event::Listening { id, .. }
            | Event::Messages { id, .. }
            | Event::Message { id, .. }
            | Event::Internal { id, .. }
            | Event::ExitedAfterDisconnect { id }
            | Event::Written { id, .. }
            | Event::Disconnect { id }
            | Event::Exit { id, .. }
            | Event::Error { id, .. }
            | Event::SpawnFailed { id, .. }
            | Event::Warning { id, .. } => Some(*id),
        }
    }

    /// Appends `next` to this event when both are batches of one worker's
    /// messages in the same framing (as if they had arrived together);
    /// otherwise gives it back.
    pub fn merge(&mut self, next: Event) -> Result<(), Event> {
        match (self, next) {
            (
                Event::Messages {
                    id,
                    json,
                    data,
                    lengths,
                },
                Event::Messages {
                    id: next_id,
                    json: next_json,
                    data: next_data,
                    lengths: next_lengths,
                },
            ) if *id == next_id && *json == next_json => {
                if *json {
                    data.push(b'\n');
                }
                data.extend_from_slice(&next_data);
                lengths.extend(next_lengths);
                Ok(())
            }
            (_, next) => Err(next),
        }
    }

    /// Bytes of a worker's own data this event carries to JavaScript (what
    /// the read backlog counts). A JSON line counts with its newline, so
    /// that batches joined later weigh what their parts did.
    pub fn data_len(&self) -> usize {
        match self {
            Event::Messages { data, json, .. } => data.len() + usize::from(*json),
            Event::Message { payload, .. } | Event::Internal { payload, .. } => payload.len(),
            _ => 0,
        }
    }

    /// A plain user message: joined to `last` when that is a batch from the
    /// same worker (then `None`), else a new batch event.
    pub fn append_message(
        last: Option<&mut Event>,
        id: u32,
        json: bool,
        payload: &[u8],
    ) -> Option<Event> {
        if let Some(Event::Messages {
            id: last,
            data,
            lengths,
            ..
        }) = last
        {
            if *last == id {
                if json {
                    data.push(b'\n');
                } else {
                    lengths.push(payload.len() as u32);
                }
                data.extend_from_slice(payload);
                return None;
            }
        }
        Some(Event::Messages {
            id,
            json,
            data: payload.to_vec(),
            lengths: if json {
                Vec::new()
            } else {
                vec![payload.len() as u32]
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_messages_of_one_worker_share_a_batch() {
        let mut ev: Vec<Event> = Vec::new();
        let push = |ev: &mut Vec<Event>, id, json, payload: &[u8]| {
            if let Some(e) = Event::append_message(ev.last_mut(), id, json, payload) {
                ev.push(e);
            }
        };
        push(&mut ev, 1, true, b"{\"a\":1}");
        push(&mut ev, 1, true, b"2");
        push(&mut ev, 2, true, b"3");
        ev.push(Event::Online { id: 1 });
        push(&mut ev, 1, false, b"xy");
        push(&mut ev, 1, false, b"z");
        assert_eq!(ev.len(), 4);
        match &ev[0] {
            Event::Messages {
                id,
                json,
                data,
                lengths,
            } => {
                assert_eq!((*id, *json), (1, true));
                assert_eq!(data, b"{\"a\":1}\n2");
                assert!(lengths.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(&ev[3], Event::Messages { id: 1, json: false, data, lengths }
                if data == b"xyz" && lengths == &[2, 1])
        );
    }

    #[test]
    fn merged_batches_keep_their_separators() {
        let batch = |json, data: &[u8], lengths: Vec<u32>| Event::Messages {
            id: 1,
            json,
            data: data.to_vec(),
            lengths,
        };
        let mut lines = batch(true, b"1\n2", Vec::new());
        assert!(lines.merge(batch(true, b"3", Vec::new())).is_ok());
        assert!(matches!(&lines, Event::Messages { data, .. } if data == b"1\n2\n3"));
        let mut v8 = batch(false, b"ab", vec![1, 1]);
        assert!(v8.merge(batch(false, b"c", vec![1])).is_ok());
        assert!(
            matches!(&v8, Event::Messages { data, lengths, .. } if data == b"abc" && lengths == &[1, 1, 1])
        );
        // Never across serializations or workers.
        assert!(lines.merge(batch(false, b"x", vec![1])).is_err());
    }
}
