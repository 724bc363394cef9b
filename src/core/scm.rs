//! Byte I/O on the IPC socket with `SCM_RIGHTS` descriptor passing: one
//! `sendmsg` carries a frame's first bytes together with its descriptor, and
//! `recvmsg` hands back whatever descriptors arrived with a chunk.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Most descriptors one `recvmsg` accepts; Node never sends more than one per
/// message, so extra room only guards against a misbehaving peer.
const MAX_FDS: usize = 8;

/// Writes as much of `buf` as the socket takes, attaching `fd` (if any) to
/// the first byte. Returns the bytes written; `WouldBlock` when none fit.
pub fn send(sock: RawFd, buf: &[u8], fd: Option<RawFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: a zeroed msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes, enough for one
        // cmsghdr carrying one int, so CMSG_FIRSTHDR is non-null and the data
        // area is in bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: `msg` references `iov` and `cbuf`, both alive for the call.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads one chunk into `buf`, appending received descriptors (made
/// close-on-exec) to `fds`. `Ok(0)` is end of stream.
pub fn recv(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: pure computation.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid; we fill the fields we use.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: `msg` points at live buffers sized as declared.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* macros
    // walk only within that area, and each SCM_RIGHTS payload holds
    // (cmsg_len - CMSG_LEN(0)) / sizeof(int) descriptors now owned by us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sys;
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
