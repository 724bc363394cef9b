//! Opening the sockets the protocol asks for (`Output::Open`), with the
//! same choices Node's `net`/`dgram` make.

use crate::core::io::sockets;
use crate::core::protocol::{OpenSpec, SockName};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// An opened socket and, for a Unix socket file we bound, its path.
pub struct OpenedSocket {
    pub fd: OwnedFd,
    pub unlink: Option<PathBuf>,
}

/// Node's negative errno for an error.
pub fn neg_errno(e: &io::Error) -> i64 {
    -(e.raw_os_error().unwrap_or(libc::EINVAL) as i64)
}

/// The bound address of an IP socket.
pub fn sockname(fd: RawFd) -> Option<SockName> {
    let addr = sockets::sockname(fd)?;
    Some(SockName {
        address: addr.ip().to_string(),
        ipv6: addr.is_ipv6(),
        port: addr.port(),
    })
}

/// The shortest equivalent path: `sun_path` holds only about 100 bytes.
fn short_path(path: &str) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = std::path::Path::new(path).strip_prefix(&cwd) {
            let rel = rel.to_string_lossy().into_owned();
            if rel.len() < path.len() && !rel.is_empty() {
                return rel;
            }
        }
    }
    path.to_string()
}

fn listen(fd: &OwnedFd, backlog: Option<i32>) -> io::Result<()> {
    match backlog {
        Some(b) => sockets::listen(fd.as_raw_fd(), b),
        None => Ok(()),
    }
}

/// Opens what `spec` describes. `OpenSpec::Js` is not for here (the
/// primary's JavaScript opens those).
pub fn open(spec: &OpenSpec) -> io::Result<OpenedSocket> {
    let plain = |fd| OpenedSocket { fd, unlink: None };
    match spec {
        OpenSpec::Js { .. } => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        OpenSpec::Tcp {
            address,
            port,
            ipv6_only,
            reuse_port,
            listen: backlog,
        } => {
            let fd = if *reuse_port {
                sockets::bind_tcp_reuseport(address.as_deref(), *port, *ipv6_only)?
            } else {
                sockets::bind_tcp(address.as_deref(), *port, *ipv6_only)?
            };
            listen(&fd, *backlog)?;
            Ok(plain(fd))
        }
        OpenSpec::Pipe {
            path,
            listen: backlog,
            readable_all,
            writable_all,
        } => {
            if path.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let path = short_path(path);
            let fd = sockets::bind_pipe(&path)?;
            let opened = OpenedSocket {
                fd,
                unlink: Some(PathBuf::from(&path)),
            };
            // From here on a failure drops `opened`, but the file stays:
            // remove it, as a failed listen leaves nothing behind.
            let ready = listen(&opened.fd, *backlog).and_then(|_| {
                if backlog.is_some() {
                    sockets::chmod_pipe(&path, *readable_all, *writable_all)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = ready {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            Ok(opened)
        }
        OpenSpec::Udp {
            address,
            port,
            ipv6,
            flags,
        } => Ok(plain(sockets::bind_udp(
            address.as_deref(),
            *port,
            *ipv6,
            *flags,
        )?)),
        OpenSpec::Adopt {
            fd,
            listen: backlog,
        } => {
            let own = sockets::adopt(*fd)?;
            listen(&own, *backlog)?;
            Ok(plain(own))
        }
    }
}
