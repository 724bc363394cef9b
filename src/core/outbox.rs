//! The sending half of one IPC channel: frames queued in order, partial
//! writes resumed, and Node's handle discipline — while a frame carrying a
//! descriptor waits for `NODE_HANDLE_ACK`, nothing but ACK/NACK frames may
//! pass; a NACK retransmits the handle, at most [`MAX_RETRANSMISSIONS`] times.

use crate::core::scm;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

pub const MAX_RETRANSMISSIONS: u32 = 3;

/// Largest write that small plain frames are merged into.
pub const MERGE_LIMIT: usize = 64 * 1024;

/// One complete frame on the wire, optionally with a descriptor.
#[derive(Debug, Clone)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Shared because the balancer may still own the same connection while
    /// the frame waits for its ACK.
    pub fd: Option<Rc<OwnedFd>>,
}

impl Frame {
    pub fn plain(bytes: Vec<u8>) -> Frame {
        Frame { bytes, fd: None }
    }
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
    pub fn wants_write(&self) -> bool {
        self.current.is_some()
            || !self.priority.is_empty()
            || (self.awaiting_ack.is_none() && !self.queue.is_empty())
    }

    pub fn queued_bytes(&self) -> usize {
        self.queue.iter().map(|f| f.bytes.len()).sum::<usize>()
            + self
                .current
                .as_ref()
                .map_or(0, |(f, off, _)| f.bytes.len() - off)
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

    /// Writes until the socket is full or nothing may be sent.
    pub fn flush(&mut self, sock: RawFd) -> io::Result<()> {
        loop {
            if self.current.is_none() {
                let next = if let Some(f) = self.priority.pop_front() {
                    Some((f, false))
                } else if self.awaiting_ack.is_none() {
                    self.queue.pop_front().map(|f| {
                        let gated = f.fd.is_some();
                        (f, gated)
                    })
                } else {
                    None
                };
                match next {
                    Some((f, gated)) => self.current = Some((f, 0, gated)),
                    None => return Ok(()),
                }
            }
            let Some((frame, off, gated)) = self.current.as_mut() else {
                return Ok(());
            };
            let fd = if *off == 0 {
                frame.fd.as_ref().map(|f| f.as_raw_fd())
            } else {
                None
            };
            match scm::send(sock, &frame.bytes[*off..], fd) {
                Ok(n) => {
                    *off += n;
                    if *off >= frame.bytes.len() {
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
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sys;

    fn read_all(fd: RawFd) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; 4096];
        let mut fds = Vec::new();
        let n = scm::recv(fd, &mut buf, &mut fds).expect("recv");
        buf.truncate(n);
        (buf, fds.len())
    }

    #[test]
    fn handle_gates_later_frames_until_ack() {
        let (a, b) = sys::socketpair().expect("socketpair");
        let (x, _y) = sys::socketpair().expect("socketpair");
        let mut out = Outbox::default();
        out.push(Frame {
            bytes: b"H\n".to_vec(),
            fd: Some(Rc::new(x)),
        });
        out.push(Frame::plain(b"after\n".to_vec()));
        out.flush(a.as_raw_fd()).expect("flush");
        assert_eq!(read_all(b.as_raw_fd()), (b"H\n".to_vec(), 1));
        assert!(!out.wants_write(), "plain frame must wait for the ACK");
        out.push_priority(Frame::plain(b"ACK\n".to_vec()));
        out.flush(a.as_raw_fd()).expect("flush");
        assert_eq!(read_all(b.as_raw_fd()).0, b"ACK\n".to_vec());
        assert_eq!(out.on_ack(true), AckOutcome::Acked);
        out.flush(a.as_raw_fd()).expect("flush");
        assert_eq!(read_all(b.as_raw_fd()).0, b"after\n".to_vec());
        assert!(out.is_idle());
    }

    #[test]
    fn plain_frames_merge_but_never_into_a_handle_frame() {
        let (a, b) = sys::socketpair().expect("socketpair");
        let (x, _y) = sys::socketpair().expect("socketpair");
        let mut out = Outbox::default();
        out.push(Frame::plain(b"1\n".to_vec()));
        out.push(Frame::plain(b"2\n".to_vec()));
        out.push(Frame {
            bytes: b"H\n".to_vec(),
            fd: Some(Rc::new(x)),
        });
        out.push(Frame::plain(b"3\n".to_vec()));
        assert_eq!(out.queue.len(), 3, "1 and 2 merged; H and 3 stay apart");
        out.flush(a.as_raw_fd()).expect("flush");
        let (mut bytes, mut fds) = (Vec::new(), 0);
        while bytes.len() < 6 {
            let (chunk, n) = read_all(b.as_raw_fd());
            bytes.extend(chunk);
            fds += n;
        }
        assert_eq!((bytes, fds), (b"1\n2\nH\n".to_vec(), 1));
        out.on_ack(true);
        out.flush(a.as_raw_fd()).expect("flush");
        assert_eq!(read_all(b.as_raw_fd()).0, b"3\n".to_vec());
    }

    #[test]
    fn nack_retransmits_three_times_then_gives_up() {
        let (a, b) = sys::socketpair().expect("socketpair");
        let (x, _y) = sys::socketpair().expect("socketpair");
        let mut out = Outbox::default();
        out.push(Frame {
            bytes: b"H\n".to_vec(),
            fd: Some(Rc::new(x)),
        });
        out.flush(a.as_raw_fd()).expect("flush");
        assert_eq!(read_all(b.as_raw_fd()), (b"H\n".to_vec(), 1));
        for _ in 0..MAX_RETRANSMISSIONS {
            assert_eq!(out.on_ack(false), AckOutcome::Retransmitting);
            out.flush(a.as_raw_fd()).expect("flush");
            assert_eq!(read_all(b.as_raw_fd()), (b"H\n".to_vec(), 1));
        }
        assert_eq!(out.on_ack(false), AckOutcome::GaveUp);
        assert!(out.is_idle());
        assert_eq!(out.on_ack(true), AckOutcome::Unexpected);
    }
}
