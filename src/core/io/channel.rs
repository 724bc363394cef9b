//! One worker as the driver watches it ([`WorkerIo`]: its channel, the
//! writability watch while a write is blocked, its pidfd, their wakers),
//! and the two things done on a channel: reading it into the protocol
//! ([`read`]) and writing the protocol's pending frames to it ([`write`]).
//! Both leave the protocol's outputs queued, for the driver to perform once
//! it no longer borrows the worker.

use crate::core::io::fds::Fds;
use crate::core::io::source::{watch, Source, Woken};
use crate::core::io::{scm, sys};
use crate::core::protocol::{Input, Protocol};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::task::Waker;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How many full reads of one channel before the other sources get their
/// turn.
pub const READ_BATCH: usize = 16;

pub const READ_BUFFER: usize = 64 * 1024;

pub struct WorkerIo {
    pub pid: i32,
    /// `None` once closed.
    pub channel: Option<AsyncFd<OwnedFd>>,
    /// A copy of the channel's descriptor, watched for writability only
    /// while a write is blocked: watched all the time, every read by the
    /// worker would wake the thread for nothing.
    pub writable: Option<AsyncFd<OwnedFd>>,
    /// `None` if the reactor failed it (then no exit is ever seen).
    pub exit: Option<AsyncFd<Arc<OwnedFd>>>,
    /// Reading waits: too much of this worker's data waits for JavaScript
    /// (the kernel holds the rest and, once full, throttles the worker).
    pub paused: bool,
    pub read_waker: Waker,
    pub write_waker: Waker,
    pub exit_waker: Waker,
}

impl WorkerIo {
    /// Watches worker `id`'s channel (made non-blocking) and pidfd.
    pub fn new(
        id: u32,
        pid: i32,
        channel: OwnedFd,
        pidfd: Arc<OwnedFd>,
        woken: &Woken,
    ) -> io::Result<WorkerIo> {
        sys::set_nonblocking(channel.as_raw_fd(), true)?;
        Ok(WorkerIo {
            pid,
            channel: Some(watch(channel, Interest::READABLE)?),
            writable: None,
            exit: Some(watch(pidfd, Interest::READABLE)?),
            paused: false,
            read_waker: woken.waker(Source::Channel(id)),
            write_waker: woken.waker(Source::Writable(id)),
            exit_waker: woken.waker(Source::Exit(id)),
        })
    }

    /// Stops reading and writing; the channel closes.
    pub fn close(&mut self) {
        self.writable = None;
        self.channel = None;
    }

    /// A write found the channel full: watch a copy of it for writability.
    pub fn watch_writable(&mut self) -> io::Result<()> {
        let Some(ch) = &self.channel else {
            return Ok(());
        };
        let copy = sys::dup_cloexec(ch.as_raw_fd())?;
        self.writable = Some(watch(copy, Interest::WRITABLE)?);
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Nothing more to read now.
    Drained,
    /// Stopped after a batch; more may be waiting.
    More,
    /// End of stream or an error; the protocol has been told.
    Closed,
}

/// Reads worker `id`'s channel `fd` into the protocol; `drain`: to the end
/// (the worker exited).
pub fn read(
    protocol: &mut Protocol,
    fds: &mut Fds,
    id: u32,
    fd: RawFd,
    buf: &mut [u8],
    drain: bool,
) -> Read {
    let mut reads = 0;
    while drain || reads < READ_BATCH {
        reads += 1;
        let mut received = Vec::new();
        match scm::recv(fd, buf, &mut received) {
            Ok(0) => {
                protocol.handle(Input::ChannelClosed { id });
                return Read::Closed;
            }
            Ok(n) => {
                let got_fds = !received.is_empty();
                let fds = received.into_iter().map(|f| fds.insert(f)).collect();
                protocol.handle(Input::Received {
                    id,
                    bytes: &buf[..n],
                    fds,
                });
                // A short read without descriptors means the socket was
                // empty (a read stops early only after a message that
                // carried descriptors), which saves the EAGAIN round trip.
                if n < buf.len() && !got_fds && !drain {
                    return Read::Drained;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                protocol.handle(Input::ChannelClosed { id });
                return Read::Closed;
            }
        }
    }
    Read::More
}

#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Everything that may go now is written.
    Done,
    /// The socket is full.
    Blocked,
    /// The channel is unusable; the caller tells the protocol.
    Failed,
}

/// Writes the protocol's pending frames for worker `id` to its channel
/// `fd` until done or the socket is full.
pub fn write(protocol: &mut Protocol, fds: &Fds, id: u32, fd: RawFd) -> Write {
    protocol.transmitting(id);
    while let Some((bytes, token)) = protocol.transmit(id) {
        let raw = match token {
            Some(token) => match fds.raw(token) {
                Some(raw) => Some(raw),
                // Cannot happen while the outbox holds the token; sending
                // the frame without it would desynchronise the worker, so
                // give up on it.
                None => return Write::Failed,
            },
            None => None,
        };
        match scm::send(fd, bytes, raw) {
            Ok(n) => protocol.written(id, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Write::Blocked,
            // EPIPE/ECONNRESET: the worker is gone; its exit follows.
            Err(_) => return Write::Failed,
        }
    }
    Write::Done
}
