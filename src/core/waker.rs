//! Waking the I/O thread from another thread: an eventfd written at most
//! once per batch of commands, so a burst of sends costs one syscall.

use crate::core::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Waker {
    fd: OwnedFd,
    /// A wake-up is already on its way and the I/O thread has not yet
    /// started draining commands.
    pending: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        Ok(Waker {
            fd: sys::eventfd()?,
            pending: AtomicBool::new(false),
        })
    }

    /// Call after queueing a command.
    pub fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        sys::eventfd_signal(self.fd.as_raw_fd())
    }

    /// Call on the I/O thread before draining the command queue: commands
    /// queued after this point wake it again. The counter is drained before
    /// the flag is cleared: the other order could swallow the signal of a
    /// sender that saw the flag clear, leaving its command unserved.
    pub fn reset(&self) {
        sys::eventfd_drain(self.fd.as_raw_fd());
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_burst_signals_once_and_reset_rearms() {
        let w = Waker::new().expect("eventfd");
        assert!(!readable(w.as_raw_fd()));
        w.wake().expect("wake");
        w.wake().expect("wake");
        assert!(readable(w.as_raw_fd()));
        w.reset();
        assert!(!readable(w.as_raw_fd()));
        w.wake().expect("wake");
        assert!(readable(w.as_raw_fd()));
    }
}
