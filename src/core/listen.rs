//! Creating the server sockets the primary shares with workers, with the
//! same choices Node's `net`/`dgram` make: `SO_REUSEADDR` on TCP, dual-stack
//! `::` falling back to `0.0.0.0` for a wildcard address, `IPV6_V6ONLY` only
//! when asked, Unix socket paths, and descriptors handed in by number.

use crate::core::sys::{self, cvt};
use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Node's default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 511;

fn socket(domain: i32, ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) })?;
    // SAFETY: the kernel just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    cvt(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(())
}

/// Parses an IP literal; IPv6 scope suffixes (`%eth0`) are accepted and a
/// numeric one is kept.
pub fn parse_ip(s: &str) -> Option<(IpAddr, u32)> {
    let (ip, scope) = match s.split_once('%') {
        Some((ip, scope)) => (ip, scope.parse().unwrap_or(0)),
        None => (s, 0),
    };
    ip.parse().ok().map(|ip| (ip, scope))
}

fn socket_addr(ip: IpAddr, scope: u32, port: u16) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        IpAddr::V6(v6) => SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, scope)),
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// A bound (not yet listening) TCP socket. `None` address: `::` with
/// dual-stack, or `0.0.0.0` where IPv6 is unavailable.
pub fn bind_tcp(address: Option<&str>, port: u16, ipv6_only: bool) -> io::Result<OwnedFd> {
    bind_tcp_with(address, port, ipv6_only, false)
}

/// [`bind_tcp`] with `SO_REUSEPORT`: every socket bound this way to the same
/// address and port joins one group, and the kernel spreads incoming
/// connections over the group's listening sockets.
pub fn bind_tcp_reuseport(
    address: Option<&str>,
    port: u16,
    ipv6_only: bool,
) -> io::Result<OwnedFd> {
    bind_tcp_with(address, port, ipv6_only, true)
}

fn bind_tcp_with(
    address: Option<&str>,
    port: u16,
    ipv6_only: bool,
    reuse_port: bool,
) -> io::Result<OwnedFd> {
    match address {
        None => match bind_tcp_at(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            0,
            port,
            ipv6_only,
            reuse_port,
        ) {
            Err(e) if e.raw_os_error() != Some(libc::EADDRINUSE) => bind_tcp_at(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                port,
                false,
                reuse_port,
            ),
            other => other,
        },
        Some(a) => {
            let (ip, scope) = parse_ip(a).ok_or_else(einval)?;
            bind_tcp_at(ip, scope, port, ipv6_only, reuse_port)
        }
    }
}

fn bind_tcp_at(
    ip: IpAddr,
    scope: u32,
    port: u16,
    ipv6_only: bool,
    reuse_port: bool,
) -> io::Result<OwnedFd> {
    let domain = if ip.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let fd = socket(domain, libc::SOCK_STREAM)?;
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuse_port {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if ip.is_ipv6() {
        setsockopt_int(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            ipv6_only as i32,
        )?;
    }
    bind(fd.as_raw_fd(), &socket_addr(ip, scope, port))?;
    Ok(fd)
}

/// A bound Unix stream socket at `path`.
pub fn bind_pipe(path: &str) -> io::Result<OwnedFd> {
    let fd = socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
    // SAFETY: zeroed sockaddr_un is valid; we copy at most sun_path.len()-1 bytes.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= sun.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: `sun` is a valid sockaddr_un of `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sun as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Opens a Unix socket file to everyone, as `readableAll`/`writableAll` do.
pub fn chmod_pipe(path: &str, readable_all: bool, writable_all: bool) -> io::Result<()> {
    if !readable_all && !writable_all {
        return Ok(());
    }
    let mut mode: libc::mode_t = 0;
    if readable_all {
        mode |= libc::S_IRUSR | libc::S_IRGRP | libc::S_IROTH;
    }
    if writable_all {
        mode |= libc::S_IWUSR | libc::S_IWGRP | libc::S_IWOTH;
    }
    let c = CString::new(path).map_err(|_| einval())?;
    // SAFETY: `c` is a valid NUL-terminated path.
    cvt(unsafe { libc::chmod(c.as_ptr(), mode) })?;
    Ok(())
}

/// A bound UDP socket. `flags` are dgram's: 1 = IPv6-only, 4 = reuseaddr.
pub fn bind_udp(address: Option<&str>, port: u16, udp6: bool, flags: i64) -> io::Result<OwnedFd> {
    let (ip, scope) = match address {
        Some(a) => parse_ip(a).ok_or_else(einval)?,
        None if udp6 => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    let domain = if ip.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let fd = socket(domain, libc::SOCK_DGRAM)?;
    if flags & 4 != 0 {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if ip.is_ipv6() {
        setsockopt_int(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (flags & 1 != 0) as i32,
        )?;
    }
    bind(fd.as_raw_fd(), &socket_addr(ip, scope, port))?;
    Ok(fd)
}

pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::listen(fd, backlog) })?;
    Ok(())
}

/// `SO_TYPE` of a descriptor given by the user (`listen({fd})`).
pub fn socket_type(fd: RawFd) -> io::Result<i32> {
    let mut ty: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: out-pointers to a live i32 and its length.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut i32).cast(),
            &mut len,
        )
    })?;
    Ok(ty)
}

/// Whether a socket is listening (`SO_ACCEPTCONN`).
pub fn is_listening(fd: RawFd) -> bool {
    let mut on: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: out-pointers to a live i32 and its length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut on as *mut i32).cast(),
            &mut len,
        )
    };
    r == 0 && on != 0
}

/// The local address of an IP socket, as Node's `getsockname` reports it.
pub fn sockname(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: zeroed storage is a valid out-buffer.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: out-pointers to live storage and its length.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    socket_addr_of(&storage)
}

fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
    socket_addr_of(storage).map(|a| a.ip())
}

fn socket_addr_of(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Accepts one connection, non-blocking and close-on-exec (libuv does not set
/// `O_NONBLOCK` on a received socket; a blocking one would stall a worker),
/// with the client's IP address (`None` on a Unix socket).
pub fn accept(fd: RawFd) -> io::Result<(OwnedFd, Option<IpAddr>)> {
    loop {
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: storage and len are valid for writes of len bytes.
        let c = unsafe {
            libc::accept4(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if c >= 0 {
            // SAFETY: the kernel just returned this descriptor.
            let conn = unsafe { OwnedFd::from_raw_fd(c) };
            return Ok((conn, ip_of(&storage)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A private copy of a descriptor the user named by number.
pub fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    let own = sys::dup_cloexec(fd)?;
    sys::set_nonblocking(own.as_raw_fd(), true)?;
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_bind_is_dual_stack_and_reports_sockname() {
        let fd = bind_tcp(None, 0, false).expect("bind");
        listen(fd.as_raw_fd(), DEFAULT_BACKLOG).expect("listen");
        let addr = sockname(fd.as_raw_fd()).expect("sockname");
        assert!(addr.port() > 0);
        let c = std::net::TcpStream::connect(("127.0.0.1", addr.port())).expect("connect v4");
        drop(c);
    }

    #[test]
    fn second_listener_on_same_port_is_eaddrinuse() {
        let a = bind_tcp(Some("127.0.0.1"), 0, false).expect("bind");
        listen(a.as_raw_fd(), 16).expect("listen");
        let port = sockname(a.as_raw_fd()).expect("sockname").port();
        let err = bind_tcp(Some("127.0.0.1"), port, false)
            .and_then(|b| listen(b.as_raw_fd(), 16).map(|_| b))
            .expect_err("must fail");
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn bad_address_is_einval() {
        let err = bind_tcp(Some("not-an-ip"), 0, false).expect_err("must fail");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn udp_reuseaddr_lets_two_sockets_share_a_port() {
        let a = bind_udp(Some("127.0.0.1"), 0, false, 4).expect("bind");
        let port = sockname(a.as_raw_fd()).expect("sockname").port();
        bind_udp(Some("127.0.0.1"), port, false, 4).expect("second bind");
    }
}
