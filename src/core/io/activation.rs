//! Sockets handed to the primary by a service manager (systemd socket
//! activation: `LISTEN_PID`/`LISTEN_FDS`, descriptors 3, 4, ...). A server
//! a worker asks for whose address and port (or socket path) one of them is
//! bound to gets a copy of it instead of a socket of its own, under every
//! policy, so the service manager keeps the port open across restarts of
//! the whole cluster. The originals stay open here, close-on-exec, so no
//! worker inherits them and no copy we close ever closes the port.

use crate::core::codec::json;
use crate::core::codec::value::Value;
use crate::core::io::sockets;
use crate::core::io::sys::{self, borrow_fd};
use crate::core::protocol::OpenSpec;
use rustix::net::{self, sockopt, SocketAddrUnix, SocketType};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

enum Bound {
    Stream(SocketAddr),
    Datagram(SocketAddr),
    Unix(String),
}

struct Activated {
    fd: OwnedFd,
    bound: Bound,
}

#[derive(Default)]
pub struct Activation {
    sockets: Vec<Activated>,
}

impl Activation {
    /// Takes the passed descriptors: a copy of each is kept, the original
    /// made close-on-exec. Returns how many are usable sockets.
    pub fn adopt(&mut self, fds: &[RawFd]) -> usize {
        for &fd in fds {
            let Ok(bound) = describe(fd) else {
                continue;
            };
            let Ok(own) = sockets::adopt(fd) else {
                continue;
            };
            let _ = sys::set_cloexec(fd);
            self.sockets.push(Activated { fd: own, bound });
        }
        self.sockets.len()
    }

    /// A copy of the passed socket `spec` asks for, if one matches.
    pub fn find(&self, spec: &OpenSpec) -> Option<io::Result<OwnedFd>> {
        let found = self.sockets.iter().find(|s| matches(&s.bound, spec))?;
        Some(sys::dup_cloexec(found.fd.as_raw_fd()))
    }
}

fn describe(fd: RawFd) -> io::Result<Bound> {
    let b = borrow_fd(fd)?;
    let ty = sockopt::socket_type(b)?;
    let addr = net::getsockname(b)?;
    if let Ok(unix) = SocketAddrUnix::try_from(addr.clone()) {
        let path = unix
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        return Ok(Bound::Unix(path));
    }
    let ip = sockets::sockname(fd).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    match ty {
        SocketType::STREAM => Ok(Bound::Stream(ip)),
        SocketType::DGRAM => Ok(Bound::Datagram(ip)),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}

/// An asked-for address matches a bound one when the ports are equal (and
/// not 0, "any port") and it is a wildcard or the same address.
fn same_place(bound: &SocketAddr, address: Option<&str>, port: u16) -> bool {
    if port == 0 || bound.port() != port {
        return false;
    }
    match address.filter(|a| !a.is_empty()) {
        None => true,
        Some(a) => match sockets::parse_ip(a) {
            Some((ip, _)) if ip.is_unspecified() => true,
            Some((ip, _)) => ip == bound.ip(),
            None => false,
        },
    }
}

fn matches(bound: &Bound, spec: &OpenSpec) -> bool {
    match (bound, spec) {
        (Bound::Stream(b), OpenSpec::Tcp { address, port, .. }) => {
            same_place(b, address.as_deref(), *port)
        }
        (Bound::Stream(b), OpenSpec::Js { options }) => {
            let Ok(o) = json::parse(options.as_bytes()) else {
                return false;
            };
            let port = o.get("port").and_then(Value::as_i64).unwrap_or(0);
            let host = o.get("host").and_then(Value::as_str);
            u16::try_from(port).is_ok_and(|p| same_place(b, host, p))
        }
        (Bound::Datagram(b), OpenSpec::Udp { address, port, .. }) => {
            same_place(b, address.as_deref(), *port)
        }
        (Bound::Unix(p), OpenSpec::Pipe { path, .. }) => p == path,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: Option<&str>, port: u16) -> OpenSpec {
        OpenSpec::Tcp {
            address: address.map(str::to_string),
            port,
            ipv6_only: false,
            reuse_port: false,
            listen: Some(511),
        }
    }

    #[test]
    fn a_passed_listener_serves_its_port_and_nothing_else() {
        let fd = sockets::bind_tcp(Some("127.0.0.1"), 0, false).expect("bind");
        sockets::listen(fd.as_raw_fd(), 16).expect("listen");
        let port = sockets::sockname(fd.as_raw_fd()).expect("sockname").port();
        let mut a = Activation::default();
        assert_eq!(a.adopt(&[fd.as_raw_fd()]), 1);
        let copy = a
            .find(&tcp(Some("127.0.0.1"), port))
            .expect("matches")
            .expect("dup");
        assert_eq!(
            sockets::sockname(copy.as_raw_fd()).map(|s| s.port()),
            Some(port)
        );
        assert!(sockets::is_listening(copy.as_raw_fd()));
        assert!(a.find(&tcp(None, port)).is_some(), "wildcard host");
        assert!(a.find(&tcp(Some("::"), port)).is_some(), "wildcard v6");
        let js = format!(r#"{{"port":{port},"host":"127.0.0.1","backlog":511}}"#);
        assert!(a.find(&OpenSpec::Js { options: js }).is_some());
        assert!(a.find(&tcp(Some("127.0.0.2"), port)).is_none());
        assert!(a.find(&tcp(Some("127.0.0.1"), 0)).is_none(), "port 0");
        assert!(a
            .find(&OpenSpec::Udp {
                address: None,
                port,
                ipv6: false,
                flags: 0
            })
            .is_none());
        // The original is close-on-exec now: no worker inherits it.
        let flags = rustix::io::fcntl_getfd(&fd).expect("getfd");
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }

    #[test]
    fn what_is_not_a_socket_is_skipped() {
        let file = std::fs::File::open("/dev/null").expect("open");
        let mut a = Activation::default();
        assert_eq!(a.adopt(&[file.as_raw_fd(), -1]), 0);
    }
}
