//! Level-triggered epoll: the readiness source of the I/O thread.

use crate::core::sys::cvt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const READ: u32 = libc::EPOLLIN as u32;
pub const WRITE: u32 = libc::EPOLLOUT as u32;

pub struct Poller {
    epfd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// One readiness report: the token given at registration and what is ready.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Hang-up or error: the descriptor wants attention even if not readable.
    pub hangup: bool,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller {
            // SAFETY: the kernel just handed us this descriptor.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn add(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    pub fn modify(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    pub fn remove(&self, fd: RawFd) {
        // Removal fails only for descriptors that were never added or are
        // already closed; either way there is nothing left to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Waits for readiness (`timeout_ms < 0`: forever) and returns the reports.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<Vec<Ready>> {
        // SAFETY: `events` has `len` writable entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        Ok(self.events[..n as usize]
            .iter()
            .map(|ev| {
                let bits = ev.events;
                Ready {
                    token: ev.u64,
                    readable: bits & (libc::EPOLLIN as u32) != 0,
                    writable: bits & (libc::EPOLLOUT as u32) != 0,
                    hangup: bits & ((libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32)
                        != 0,
                }
            })
            .collect())
    }
}
