//! Creating the server sockets the primary shares with workers, with the
//! same choices Node's `net`/`dgram` make: `SO_REUSEADDR` on TCP, dual-stack
//! `::` falling back to `0.0.0.0` for a wildcard address, `IPV6_V6ONLY` only
//! when asked, Unix socket paths, and descriptors handed in by number.

use crate::core::io::sys::{self, borrow_fd};
use rustix::fs::Mode;
use rustix::net::{
    self, sockopt, AddressFamily, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Node's default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 511;

fn socket(domain: AddressFamily, ty: SocketType) -> io::Result<OwnedFd> {
    Ok(net::socket_with(
        domain,
        ty,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

fn ip_family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    }
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
    let fd = socket(ip_family(ip), SocketType::STREAM)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if reuse_port {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    if ip.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, ipv6_only)?;
    }
    net::bind(&fd, &socket_addr(ip, scope, port))?;
    Ok(fd)
}

/// Size of `sun_path`; a path must fit with a NUL after it.
const SUN_PATH_LEN: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>();

/// A bound Unix stream socket at `path`.
pub fn bind_pipe(path: &str) -> io::Result<OwnedFd> {
    let fd = socket(AddressFamily::UNIX, SocketType::STREAM)?;
    net::bind(&fd, &unix_addr(path)?)?;
    Ok(fd)
}

/// The address that `path`'s bytes followed by a NUL spell in `sun_path`.
fn unix_addr(path: &str) -> io::Result<SocketAddrUnix> {
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes.len() >= SUN_PATH_LEN {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    match bytes.split_first() {
        // A leading NUL names an abstract socket, whose name runs to the
        // end of the address: the rest of the path and the NUL after it.
        // (libuv leaves that NUL out; this keeps the earlier behaviour.)
        Some((0, rest)) => {
            let mut name = [0u8; SUN_PATH_LEN];
            name[..rest.len()].copy_from_slice(rest);
            Ok(SocketAddrUnix::new_abstract_name(&name[..=rest.len()])?)
        }
        // The kernel reads a filesystem path up to its first NUL.
        _ => {
            let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
            Ok(SocketAddrUnix::new(&path[..end])?)
        }
    }
}

/// Opens a Unix socket file to everyone, as `readableAll`/`writableAll` do.
pub fn chmod_pipe(path: &str, readable_all: bool, writable_all: bool) -> io::Result<()> {
    if !readable_all && !writable_all {
        return Ok(());
    }
    let mut mode = Mode::empty();
    if readable_all {
        mode |= Mode::RUSR | Mode::RGRP | Mode::ROTH;
    }
    if writable_all {
        mode |= Mode::WUSR | Mode::WGRP | Mode::WOTH;
    }
    // A path with a NUL inside is EINVAL.
    Ok(rustix::fs::chmod(path, mode)?)
}

/// A bound UDP socket. `flags` are dgram's: 1 = IPv6-only, 4 = reuseaddr.
pub fn bind_udp(address: Option<&str>, port: u16, udp6: bool, flags: i64) -> io::Result<OwnedFd> {
    let (ip, scope) = match address {
        Some(a) => parse_ip(a).ok_or_else(einval)?,
        None if udp6 => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    };
    let fd = socket(ip_family(ip), SocketType::DGRAM)?;
    if flags & 4 != 0 {
        sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    if ip.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, flags & 1 != 0)?;
    }
    net::bind(&fd, &socket_addr(ip, scope, port))?;
    Ok(fd)
}

pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    Ok(net::listen(borrow_fd(fd)?, backlog)?)
}

/// `SO_TYPE` of a descriptor given by the user (`listen({fd})`).
pub fn socket_type(fd: RawFd) -> io::Result<i32> {
    Ok(sockopt::socket_type(borrow_fd(fd)?)?.as_raw() as i32)
}

/// Whether a socket is listening (`SO_ACCEPTCONN`).
pub fn is_listening(fd: RawFd) -> bool {
    borrow_fd(fd).is_ok_and(|fd| sockopt::socket_acceptconn(fd).unwrap_or(false))
}

/// The user id of the process at the other end of a Unix stream socket
/// (`SO_PEERCRED`).
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    Ok(sockopt::socket_peercred(borrow_fd(fd)?)?.uid.as_raw())
}

/// The local address of an IP socket, as Node's `getsockname` reports it.
pub fn sockname(fd: RawFd) -> Option<SocketAddr> {
    net::getsockname(borrow_fd(fd).ok()?)
        .ok()
        .and_then(ip_socket_addr)
}

/// An IP address and port (without flow info or scope id); `None` for other
/// families.
fn ip_socket_addr(addr: SocketAddrAny) -> Option<SocketAddr> {
    SocketAddr::try_from(addr)
        .ok()
        .map(|a| SocketAddr::new(a.ip(), a.port()))
}

/// Accepts one connection, non-blocking and close-on-exec (libuv does not set
/// `O_NONBLOCK` on a received socket; a blocking one would stall a worker),
/// and, when `peer` asks for it, the client's IP address (`None` on a Unix
/// socket); without, the kernel copies no address.
pub fn accept(fd: RawFd, peer: bool) -> io::Result<(OwnedFd, Option<IpAddr>)> {
    let fd = borrow_fd(fd)?;
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    if !peer {
        return Ok((sys::retry(|| net::accept_with(fd, flags))?, None));
    }
    let (conn, addr) = sys::retry(|| net::acceptfrom_with(fd, flags))?;
    Ok((conn, addr.and_then(ip_socket_addr).map(|a| a.ip())))
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
