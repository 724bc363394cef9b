//! Accepting on a listening socket of the primary's: its registration with
//! the reactor, its waker, and one wake-up's worth of `accept` calls. The
//! [`Acceptor`] lives in the descriptor's slot of the token table
//! (`fds`), which drops it before it closes the descriptor.

use crate::core::io::sockets;
use crate::core::io::source::watch;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How many connections one wake-up of a listener accepts before the
/// other sources get their turn.
pub const ACCEPT_BATCH: usize = 64;

/// A connection just accepted, with the client's address when asked for.
pub type Conn = (OwnedFd, Option<IpAddr>);

/// A listening descriptor by number: the table slot that owns it also owns
/// the acceptor, and drops the acceptor (deregistering it) first.
struct Listening(RawFd);

impl AsRawFd for Listening {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

pub struct Acceptor {
    afd: AsyncFd<Listening>,
    waker: Waker,
    /// The protocol wants each client's address (sticky balancing).
    peer: bool,
}

/// What one poll of an acceptor left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepting {
    /// Nothing more to accept; its waker is registered.
    Idle,
    /// Stopped after [`ACCEPT_BATCH`]; more may be waiting.
    More,
    /// The reactor failed it; it will not wake again.
    Gone,
}

impl Acceptor {
    /// Watches `fd`, which the caller keeps open for the acceptor's life.
    pub fn new(fd: RawFd, peer: bool, waker: Waker) -> io::Result<Acceptor> {
        Ok(Acceptor {
            afd: watch(Listening(fd), Interest::READABLE)?,
            waker,
            peer,
        })
    }

    /// Accepts what is waiting into `conns`, up to [`ACCEPT_BATCH`].
    pub fn poll(&self, conns: &mut Vec<Conn>) -> Accepting {
        let mut cx = Context::from_waker(&self.waker);
        let mut accepted = 0;
        loop {
            let mut guard = match self.afd.poll_read_ready(&mut cx) {
                Poll::Pending => return Accepting::Idle,
                Poll::Ready(Err(_)) => return Accepting::Gone,
                Poll::Ready(Ok(guard)) => guard,
            };
            // Ends by clearing readiness; the next poll registers the waker.
            while accepted < ACCEPT_BATCH {
                match sockets::accept(self.afd.as_raw_fd(), self.peer) {
                    Ok(conn) => {
                        accepted += 1;
                        conns.push(conn);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // The client gave up before we took it: next one.
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                    // EMFILE and the like: this connection is skipped, as
                    // Node does; the next arrival wakes us again.
                    Err(_) => {
                        guard.clear_ready();
                        break;
                    }
                }
            }
            if accepted == ACCEPT_BATCH {
                return Accepting::More;
            }
        }
    }
}
