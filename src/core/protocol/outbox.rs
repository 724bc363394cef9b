//! The sending half of one IPC channel: frames queued in order, partial
//! writes resumed, and Node's handle discipline — while a frame carrying a
//! descriptor waits for `NODE_HANDLE_ACK`, nothing but ACK/NACK frames may
//! pass; a NACK retransmits the handle, at most [`MAX_RETRANSMISSIONS`] times.
//!
//! No I/O here: the driver asks for the next bytes with
//! [`Outbox::transmit`], writes what the socket takes, and reports it with
//! [`Outbox::written`].

use crate::core::protocol::fd::{FdId, Handle};
use std::collections::VecDeque;

pub const MAX_RETRANSMISSIONS: u32 = 3;

/// Largest write that small plain frames are merged into.
pub const MERGE_LIMIT: usize = 64 * 1024;

/// One complete frame on the wire, optionally with a descriptor.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Shared because the balancer may still own the same connection while
    /// the frame waits for its ACK.
    pub fd: Option<Handle>,
    /// How many of the bytes JavaScript sent (`worker.send()`), reported
    /// once written so that JavaScript knows what is still queued.
    pub js_bytes: usize,
    /// How many JavaScript send callbacks wait for this frame.
    pub callbacks: u32,
}

impl Frame {
    pub fn plain(bytes: Vec<u8>) -> Frame {
        Frame::with_fd(bytes, None)
    }

    pub fn with_fd(bytes: Vec<u8>, fd: Option<Handle>) -> Frame {
        Frame {
            bytes,
            fd,
            js_bytes: 0,
            callbacks: 0,
        }
    }

    /// A frame of `worker.send()`; `callback`: JavaScript waits to hear it
    /// was written.
    pub fn from_js(bytes: Vec<u8>, fd: Option<Handle>, callback: bool) -> Frame {
        Frame {
            js_bytes: bytes.len(),
            callbacks: u32::from(callback),
            bytes,
            fd,
        }
    }
}

/// What one [`Outbox::written`] completed of JavaScript's frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub js_bytes: usize,
    pub callbacks: u32,
}

#[derive(Debug)]
struct InFlight {
    frame: Frame,
    retransmissions: u32,
}

#[derive(Debug, Default)]
pub struct Outbox {
    /// Frames in send order.
    queue: VecDeque<Frame>,
    /// ACK/NACK frames: they bypass the handle gate.
    priority: VecDeque<Frame>,
    /// The frame being written and how much of it is out.
    current: Option<(Frame, usize, bool)>,
    /// The handle frame sent and not yet acknowledged.
    awaiting_ack: Option<InFlight>,
    /// Retransmission count carried by the handle frame at the queue head.
    pending_retries: u32,
}

/// What an ACK/NACK did.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    Acked,
    Retransmitting,
    /// The peer NACKed too often: the handle is dropped.
    GaveUp,
    /// An ACK with nothing in flight.
    Unexpected,
}

impl Outbox {
    /// Queues a frame. Plain frames join the plain frame before them (up
    /// to [`MERGE_LIMIT`] bytes) so a burst of small messages leaves in a
    /// few large writes instead of one syscall each.
    pub fn push(&mut self, frame: Frame) {
        if frame.fd.is_none() {
            if let Some(last) = self.queue.back_mut() {
                if last.fd.is_none() && last.bytes.len() + frame.bytes.len() <= MERGE_LIMIT {
                    last.bytes.extend_from_slice(&frame.bytes);
                    last.js_bytes += frame.js_bytes;
                    last.callbacks += frame.callbacks;
                    return;
                }
            }
        }
        self.queue.push_back(frame);
    }

    pub fn push_priority(&mut self, frame: Frame) {
        self.priority.push_back(frame);
    }

    /// Nothing left to write and no handle awaiting its ACK.
    pub fn is_idle(&self) -> bool {
        self.current.is_none()
            && self.queue.is_empty()
            && self.priority.is_empty()
            && self.awaiting_ack.is_none()
    }

    /// Bytes are waiting for the socket to become writable.
    #[cfg(test)]
    pub fn wants_write(&self) -> bool {
        self.current.is_some()
            || !self.priority.is_empty()
            || (self.awaiting_ack.is_none() && !self.queue.is_empty())
    }

    pub fn on_ack(&mut self, ack: bool) -> AckOutcome {
        let Some(mut inflight) = self.awaiting_ack.take() else {
            return AckOutcome::Unexpected;
        };
        if ack {
            return AckOutcome::Acked;
        }
        if inflight.retransmissions >= MAX_RETRANSMISSIONS {
            return AckOutcome::GaveUp;
        }
        inflight.retransmissions += 1;
        let retries = inflight.retransmissions;
        // The retransmission goes out ahead of everything still queued.
        self.queue.push_front(inflight.frame);
        self.pending_retries = retries;
        AckOutcome::Retransmitting
    }

    /// The bytes to write next and, at the start of a frame, the descriptor
    /// that must travel with its first byte. `None`: nothing may be sent now.
    pub fn transmit(&mut self) -> Option<(&[u8], Option<FdId>)> {
        if self.current.is_none() {
            let next = if let Some(f) = self.priority.pop_front() {
                (f, false)
            } else if self.awaiting_ack.is_none() {
                let f = self.queue.pop_front()?;
                let gated = f.fd.is_some();
                (f, gated)
            } else {
                return None;
            };
            self.current = Some((next.0, 0, next.1));
        }
        let (frame, off, _) = self.current.as_ref()?;
        let fd = if *off == 0 {
            frame.fd.as_ref().map(Handle::id)
        } else {
            None
        };
        Some((&frame.bytes[*off..], fd))
    }

    /// `n` bytes of what [`Self::transmit`] returned were written; what of
    /// JavaScript's that completed (each frame counts once, even when a
    /// NACK has it written again).
    pub fn written(&mut self, n: usize) -> Completed {
        let Some((frame, off, gated)) = self.current.as_mut() else {
            return Completed::default();
        };
        *off += n;
        if *off < frame.bytes.len() {
            return Completed::default();
        }
        let done = Completed {
            js_bytes: std::mem::take(&mut frame.js_bytes),
            callbacks: std::mem::take(&mut frame.callbacks),
        };
        let gated = *gated;
        if let Some((frame, _, _)) = self.current.take() {
            if gated {
                let retransmissions = std::mem::take(&mut self.pending_retries);
                self.awaiting_ack = Some(InFlight {
                    frame,
                    retransmissions,
                });
            }
        }
        done
    }

    /// JavaScript's bytes and callbacks still queued (all lost when the
    /// channel closes).
    pub fn pending_js(&self) -> Completed {
        let mut c = Completed::default();
        let frames = self
            .queue
            .iter()
            .chain(self.current.as_ref().map(|(f, _, _)| f));
        for f in frames {
            c.js_bytes += f.js_bytes;
            c.callbacks += f.callbacks;
        }
        c
    }

    /// Frames and descriptors held, for bounds checks.
    pub fn frames(&self) -> usize {
        self.queue.len()
            + self.priority.len()
            + usize::from(self.current.is_some())
            + usize::from(self.awaiting_ack.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::fd::Released;

    /// Writes everything that may go now, `chunk` bytes at a time.
    fn drain(out: &mut Outbox, chunk: usize) -> (Vec<u8>, Vec<FdId>) {
        let (mut bytes, mut fds) = (Vec::new(), Vec::new());
        while let Some((b, fd)) = out.transmit() {
            let n = b.len().min(chunk);
            bytes.extend_from_slice(&b[..n]);
            fds.extend(fd);
            out.written(n);
        }
        (bytes, fds)
    }

    fn handle(id: u64, released: &Released) -> Option<Handle> {
        Some(Handle::new(FdId(id), released))
    }

    #[test]
    fn handle_gates_later_frames_until_ack() {
        let released = Released::default();
        let mut out = Outbox::default();
        out.push(Frame::with_fd(b"H\n".to_vec(), handle(9, &released)));
        out.push(Frame::plain(b"after\n".to_vec()));
        assert_eq!(drain(&mut out, 1), (b"H\n".to_vec(), vec![FdId(9)]));
        assert!(!out.wants_write(), "plain frame must wait for the ACK");
        out.push_priority(Frame::plain(b"ACK\n".to_vec()));
        assert_eq!(drain(&mut out, 64).0, b"ACK\n".to_vec());
        assert!(released.borrow().is_empty(), "kept until acknowledged");
        assert_eq!(out.on_ack(true), AckOutcome::Acked);
        assert_eq!(*released.borrow(), vec![FdId(9)]);
        assert_eq!(drain(&mut out, 64).0, b"after\n".to_vec());
        assert!(out.is_idle());
    }

    #[test]
    fn plain_frames_merge_but_never_into_a_handle_frame() {
        let released = Released::default();
        let mut out = Outbox::default();
        out.push(Frame::plain(b"1\n".to_vec()));
        out.push(Frame::plain(b"2\n".to_vec()));
        out.push(Frame::with_fd(b"H\n".to_vec(), handle(3, &released)));
        out.push(Frame::plain(b"3\n".to_vec()));
        assert_eq!(out.queue.len(), 3, "1 and 2 merged; H and 3 stay apart");
        assert_eq!(drain(&mut out, 5), (b"1\n2\nH\n".to_vec(), vec![FdId(3)]));
        out.on_ack(true);
        assert_eq!(drain(&mut out, 5).0, b"3\n".to_vec());
    }

    #[test]
    fn nack_retransmits_three_times_then_gives_up() {
        let released = Released::default();
        let mut out = Outbox::default();
        out.push(Frame::from_js(b"H\n".to_vec(), handle(4, &released), true));
        let sent = out.transmit().map(|(b, fd)| (b.to_vec(), fd));
        assert_eq!(sent, Some((b"H\n".to_vec(), Some(FdId(4)))));
        let once = Completed {
            js_bytes: 2,
            callbacks: 1,
        };
        assert_eq!(out.written(2), once);
        for _ in 0..MAX_RETRANSMISSIONS {
            assert_eq!(out.on_ack(false), AckOutcome::Retransmitting);
            let sent = out.transmit().map(|(b, fd)| (b.to_vec(), fd));
            assert_eq!(sent, Some((b"H\n".to_vec(), Some(FdId(4)))));
            // A retransmission is not JavaScript's frame written again.
            assert_eq!(out.written(2), Completed::default());
        }
        assert_eq!(out.on_ack(false), AckOutcome::GaveUp);
        assert!(out.is_idle());
        assert_eq!(*released.borrow(), vec![FdId(4)]);
        assert_eq!(out.on_ack(true), AckOutcome::Unexpected);
    }
}
