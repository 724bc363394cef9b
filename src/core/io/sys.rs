//! Thin, checked wrappers around the syscalls the core needs (fds, sockets,
//! pidfd), mostly through `rustix`. The few raw `libc` calls left
//! are those rustix cannot express faithfully.

use rustix::fd::BorrowedFd;
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Runs `f` again while it fails with `EINTR`.
pub(crate) fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Borrows a descriptor the caller names by number, for the length of one
/// call. A negative number is `EBADF`, as the kernel would answer.
pub(crate) fn borrow_fd<'a>(fd: RawFd) -> io::Result<BorrowedFd<'a>> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is non-negative, so not the `-1` niche, and the borrow is
    // only used for syscalls made while the caller holds the descriptor
    // (the same contract the raw syscalls had; a closed number is EBADF).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// A pid for rustix; a pid that is not positive is EINVAL, as the kernel
/// answers it (rustix's `Pid::from_raw` would panic on a negative one).
fn positive_pid(pid: libc::pid_t) -> io::Result<Pid> {
    (pid > 0)
        .then(|| Pid::from_raw(pid))
        .flatten()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A connected `AF_UNIX`/`SOCK_STREAM` pair, both ends close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sets `FD_CLOEXEC`: the descriptor is not inherited by spawned workers.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    let fd = borrow_fd(fd)?;
    let flags = rustix::io::fcntl_getfd(fd)?;
    Ok(rustix::io::fcntl_setfd(
        fd,
        flags | rustix::io::FdFlags::CLOEXEC,
    )?)
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    let fd = borrow_fd(fd)?;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let mut new = flags;
    new.set(OFlags::NONBLOCK, on);
    if new != flags {
        rustix::fs::fcntl_setfl(fd, new)?;
    }
    Ok(())
}

/// Duplicates `fd` (close-on-exec) so the core owns a copy independent of
/// whoever owns the original.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(borrow_fd(fd)?, 3)?)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when the process exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    let pid = positive_pid(pid)?;
    // pidfd_open sets O_CLOEXEC already; nothing else to do.
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd names, so a
/// recycled pid can never be hit.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    if let Some(sig) = Signal::from_named_raw(signal) {
        return Ok(rustix::process::pidfd_send_signal(pidfd, sig)?);
    }
    // rustix's `Signal` has no value for 0 (`kill(sig = 0)`: an existence
    // check) nor a checked one for real-time signals, and out-of-range
    // numbers must still reach the kernel for its EINVAL.
    // SAFETY: raw syscall on a live pidfd; the siginfo pointer may be null
    // by contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub use crate::core::protocol::event::ExitStatus;

/// Reaps `pid` if it has exited (`WNOHANG`); `None` while it still runs.
pub fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let pid = positive_pid(pid)?;
    let status = retry(|| {
        rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        )
    })?;
    Ok(status.map(|s| match s.exit_status() {
        Some(code) => ExitStatus::Code(code),
        // Only exits are waited for, so anything else was a signal.
        None => ExitStatus::Signal(s.terminating_signal().unwrap_or(0)),
    }))
}

/// `read(2)` into `buf`, retrying on EINTR.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let fd = borrow_fd(fd)?;
    retry(|| rustix::io::read(fd, &mut *buf))
}

/// Asks the kernel to send this process `signal` when its parent dies
/// (`PR_SET_PDEATHSIG`). Returns whether the parent is still the one it
/// was (`expected_parent`): if it died before the call, no signal comes.
pub fn parent_death_signal(signal: i32, expected_parent: i32) -> io::Result<bool> {
    let sig = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    rustix::process::set_parent_process_death_signal(Some(sig))?;
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    Ok(parent == expected_parent)
}
