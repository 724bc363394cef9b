//! Writes from the JavaScript thread straight to a worker's channel, when
//! nothing else is on its way there: `worker.send()` then costs one
//! `sendmsg` on the calling thread, as with stock Node, instead of a hop
//! through the I/O thread (a command, a wake-up, a turn).
//!
//! Order is what makes this safe. A channel's bytes come from two threads;
//! a frame may go directly only when
//! - no command of JavaScript's that can put bytes on a channel (a queued
//!   send, a disconnect, a listen result) is still unprocessed: `ordered`
//!   counts those sent and those done, and
//! - the channel's lane is idle: the I/O thread marks it busy whenever the
//!   protocol queues a frame for it, before JavaScript can hear of anything
//!   that followed, and idle once its outbox is empty again.
//!
//! The lane's lock is held across the direct `sendmsg`, so the two threads
//! never write at once. A frame the socket takes only in part leaves the
//! rest in the lane (`head`), marked busy: the I/O thread writes it before
//! anything else, and the worker sees whole frames in order.

use crate::core::hash::IdMap;
use crate::core::io::scm;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<IdMap<u32, Lane>>,
    /// Ordered commands JavaScript has sent, and the I/O thread has done.
    sent: AtomicU64,
    done: AtomicU64,
}

struct Lane {
    /// A copy of the channel: the I/O thread may close its own first.
    channel: OwnedFd,
    /// The I/O thread has (or may have) bytes for this channel.
    busy: bool,
    /// The rest of a frame JavaScript began, and whether its sender waits
    /// for a callback.
    head: Option<(Vec<u8>, bool)>,
    /// Frames written here, for `stats()`.
    messages: u64,
}

/// What became of a frame offered to [`Lanes::write`].
#[derive(Debug, PartialEq, Eq)]
pub enum Direct {
    /// Written whole.
    Written,
    /// Begun: the I/O thread writes the remaining `rest` bytes (and then
    /// reports the callback, if one was asked for). Wake it.
    Begun { rest: usize },
    /// Not now: queue the frame through the I/O thread.
    NotNow(Vec<u8>),
}

impl Lanes {
    /// I/O thread: worker `id`'s channel accepts direct writes (through
    /// `copy`, a duplicate of it).
    pub fn open(&self, id: u32, copy: OwnedFd) {
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.insert(
                id,
                Lane {
                    channel: copy,
                    busy: false,
                    head: None,
                    messages: 0,
                },
            );
        }
    }

    /// I/O thread: the channel closed; its remaining head, if any, is lost
    /// with it. Returns whether that head's sender waited for a callback.
    pub fn close(&self, id: u32) -> bool {
        self.lanes
            .lock()
            .ok()
            .and_then(|mut l| l.remove(&id))
            .and_then(|lane| lane.head)
            .is_some_and(|(_, callback)| callback)
    }

    /// JavaScript: a command that can put bytes on a channel is about to be
    /// sent (before it is, so no direct write can pass it).
    pub fn ordered_sent(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
    }

    /// I/O thread: such a command is done, its frames queued.
    pub fn ordered_done(&self) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    /// JavaScript: writes `frame` to worker `id` now if nothing is on its
    /// way there.
    pub fn write(&self, id: u32, frame: Vec<u8>, callback: bool) -> Direct {
        if self.sent.load(Ordering::SeqCst) != self.done.load(Ordering::SeqCst) {
            return Direct::NotNow(frame);
        }
        let Ok(mut lanes) = self.lanes.lock() else {
            return Direct::NotNow(frame);
        };
        let Some(lane) = lanes.get_mut(&id).filter(|l| !l.busy) else {
            return Direct::NotNow(frame);
        };
        match scm::send(lane.channel.as_raw_fd(), &frame, None) {
            Ok(n) if n == frame.len() => {
                lane.messages += 1;
                Direct::Written
            }
            Ok(n) => {
                lane.messages += 1;
                lane.busy = true;
                let rest = frame[n..].to_vec();
                let len = rest.len();
                lane.head = Some((rest, callback));
                Direct::Begun { rest: len }
            }
            // Full, or failing: the I/O thread's path handles both.
            Err(_) => Direct::NotNow(frame),
        }
    }

    /// I/O thread: the protocol queued a frame for worker `id`.
    pub fn busy(&self, id: u32) {
        if let Ok(mut lanes) = self.lanes.lock() {
            if let Some(lane) = lanes.get_mut(&id) {
                lane.busy = true;
            }
        }
    }

    /// I/O thread: the rest of a frame JavaScript began, to write first.
    pub fn take_head(&self, id: u32) -> Option<(Vec<u8>, bool)> {
        self.lanes.lock().ok()?.get_mut(&id)?.head.take()
    }

    /// I/O thread: everything queued for worker `id` is written. Returns
    /// false if JavaScript began a frame meanwhile (write again).
    pub fn idle(&self, id: u32) -> bool {
        let Ok(mut lanes) = self.lanes.lock() else {
            return true;
        };
        match lanes.get_mut(&id) {
            Some(lane) if lane.head.is_some() => false,
            Some(lane) => {
                lane.busy = false;
                true
            }
            None => true,
        }
    }

    /// Frames JavaScript wrote to worker `id` itself.
    pub fn messages(&self, id: u32) -> u64 {
        self.lanes
            .lock()
            .ok()
            .and_then(|l| l.get(&id).map(|lane| lane.messages))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::sys;

    fn pair() -> (Lanes, OwnedFd) {
        let (ours, theirs) = sys::socketpair().expect("socketpair");
        sys::set_nonblocking(ours.as_raw_fd(), true).expect("nonblocking");
        let lanes = Lanes::default();
        lanes.open(1, ours);
        (lanes, theirs)
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        sys::set_nonblocking(fd.as_raw_fd(), true).expect("nonblocking");
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = sys::read(fd.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn an_idle_lane_takes_the_frame_at_once() {
        let (lanes, theirs) = pair();
        assert_eq!(lanes.write(1, b"hello\n".to_vec(), false), Direct::Written);
        assert_eq!(read_all(&theirs), b"hello\n");
        assert_eq!(lanes.messages(1), 1);
    }

    #[test]
    fn a_busy_lane_or_an_unprocessed_command_refuses() {
        let (lanes, theirs) = pair();
        lanes.busy(1);
        assert_eq!(
            lanes.write(1, b"a".to_vec(), false),
            Direct::NotNow(b"a".to_vec())
        );
        assert!(lanes.idle(1));
        lanes.ordered_sent();
        assert_eq!(
            lanes.write(1, b"b".to_vec(), false),
            Direct::NotNow(b"b".to_vec())
        );
        lanes.ordered_done();
        assert_eq!(lanes.write(1, b"c".to_vec(), false), Direct::Written);
        assert_eq!(read_all(&theirs), b"c");
        // No lane (never opened, or closed): refused.
        lanes.close(1);
        assert_eq!(
            lanes.write(1, b"d".to_vec(), false),
            Direct::NotNow(b"d".to_vec())
        );
        assert_eq!(
            lanes.write(2, b"e".to_vec(), false),
            Direct::NotNow(b"e".to_vec())
        );
    }

    #[test]
    fn a_frame_taken_in_part_leaves_its_rest_first_in_line() {
        let (lanes, theirs) = pair();
        // Fill the socket until a frame goes in only in part.
        let frame = vec![7u8; 300_000];
        let mut written = 0;
        let rest = loop {
            match lanes.write(1, frame.clone(), true) {
                Direct::Written => written += frame.len(),
                Direct::Begun { rest } => break rest,
                Direct::NotNow(_) => panic!("refused before the socket filled"),
            }
        };
        written += frame.len() - rest;
        // Busy now: nothing may pass the rest.
        assert!(matches!(
            lanes.write(1, b"x".to_vec(), false),
            Direct::NotNow(_)
        ));
        assert!(!lanes.idle(1));
        let (head, callback) = lanes.take_head(1).expect("head");
        assert_eq!(head.len(), rest);
        assert!(callback);
        assert_eq!(read_all(&theirs).len(), written);
        assert!(lanes.idle(1));
    }
}
