//! Byte I/O on the IPC socket with `SCM_RIGHTS` descriptor passing: one
//! `sendmsg` carries a frame's first bytes together with its descriptor, and
//! `recvmsg` hands back whatever descriptors arrived with a chunk.

use crate::core::io::sys;
use rustix::fd::BorrowedFd;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{OwnedFd, RawFd};

/// Most descriptors one `recvmsg` accepts; Node never sends more than one per
/// message, so extra room only guards against a misbehaving peer.
const MAX_FDS: usize = 8;

/// `cmsg_space!` reserves `align_of::<cmsghdr>()` bytes of slack so that
/// rustix can align an arbitrary buffer; an already aligned one keeps it.
const CMSG_ALIGN: usize = std::mem::align_of::<libc::cmsghdr>();
const _: () = assert!(CMSG_ALIGN <= 8);

/// Exactly `CMSG_SPACE(MAX_FDS * sizeof(int))` on the stack, pre-aligned so
/// rustix uses all of it and no more: room for `MAX_FDS` descriptors.
const RECV_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS)) - CMSG_ALIGN;
#[repr(C, align(8))]
struct RecvSpace([MaybeUninit<u8>; RECV_SPACE]);

/// Writes as much of `buf` as the socket takes, attaching `fd` (if any) to
/// the first byte. Returns the bytes written; `WouldBlock` when none fit.
pub fn send(sock: RawFd, buf: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
    let sock = sys::borrow_fd(sock)?;
    let passed: Option<BorrowedFd<'_>> = fd.map(sys::borrow_fd).transpose()?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(passed) = &passed {
        if !control.push(SendAncillaryMessage::ScmRights(std::slice::from_ref(
            passed,
        ))) {
            // Unreachable: `space` is sized for exactly one descriptor.
            return Err(io::Error::from_raw_os_error(libc::ENOBUFS));
        }
    }
    let iov = [IoSlice::new(buf)];
    sys::retry(|| sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL))
}

/// Reads one chunk into `buf`, appending received descriptors (made
/// close-on-exec) to `fds`. `Ok(0)` is end of stream.
pub fn recv(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let sock = sys::borrow_fd(sock)?;
    let mut space = RecvSpace([MaybeUninit::uninit(); RECV_SPACE]);
    let mut control = RecvAncillaryBuffer::new(&mut space.0);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = sys::retry(|| recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::sys;
    use std::os::fd::AsRawFd;

    #[test]
    fn passes_a_descriptor_with_the_bytes() {
        let (a, b) = sys::socketpair().expect("socketpair");
        let (x, _y) = sys::socketpair().expect("socketpair");
        assert_eq!(
            send(a.as_raw_fd(), b"hello", Some(x.as_raw_fd())).expect("send"),
            5
        );
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv(b.as_raw_fd(), &mut buf, &mut fds).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0].as_raw_fd(), x.as_raw_fd());
    }

    #[test]
    fn end_of_stream_reads_zero() {
        let (a, b) = sys::socketpair().expect("socketpair");
        drop(a);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        assert_eq!(recv(b.as_raw_fd(), &mut buf, &mut fds).expect("recv"), 0);
        assert!(fds.is_empty());
    }
}
