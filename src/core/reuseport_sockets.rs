//! The I/O thread's side of `SCHED_REUSEPORT` (see
//! [`crate::core::balance::reuseport`]): a socket for each worker that asks,
//! and accepting from the sockets leavers vacated. Also settles the other
//! work a worker's leaving leaves behind.

use crate::core::balance::reuseport::ReusePort;
use crate::core::listen;
use crate::core::poller::READ;
use crate::core::protocol::neg_errno;
use crate::core::reactor::{listener_token, Reactor};
use crate::core::servers::{Conn, Server};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

impl Reactor {
    /// A socket for worker `id`: a vacant one taken over, or a new one in
    /// the group. Err: Node's negative errno of the bind.
    pub(crate) fn reuseport_socket(
        &mut self,
        s: &mut ReusePort<Conn>,
        id: u32,
    ) -> Result<Rc<OwnedFd>, i64> {
        if let Some(socket) = s.sockets.iter().find(|(w, _)| *w == id).map(|(_, fd)| fd) {
            return Ok(socket.clone());
        }
        let socket = match s.take_vacant() {
            Some((listener_id, socket)) => {
                self.poller().remove(socket.as_raw_fd());
                self.servers.listeners.remove(&listener_id);
                socket
            }
            None => {
                let fd = listen::bind_tcp_reuseport(s.address.as_deref(), s.port, s.ipv6_only)
                    .map_err(|e| neg_errno(&e))?;
                if s.port == 0 {
                    // Port 0: the first socket picks the port the others join.
                    s.port = listen::sockname(fd.as_raw_fd()).map_or(0, |a| a.port());
                }
                Rc::new(fd)
            }
        };
        s.join(id, socket.clone());
        Ok(socket)
    }

    /// Does what workers' leaving asked for: send re-homed connections,
    /// accept from vacated sockets, stop polling those of closed servers.
    pub(crate) fn settle_departures(&mut self) {
        let out = std::mem::take(&mut self.servers.departures);
        for (listener_id, socket) in out.retired {
            // Explicitly: a copy still open in a departing worker would keep
            // the registration alive after our close.
            self.poller().remove(socket.as_raw_fd());
            self.servers.listeners.remove(&listener_id);
        }
        for (key, socket) in out.vacated {
            self.accept_vacant(&key, socket);
        }
        for (key, worker, conn) in out.rehomed {
            self.send_newconn(&key, worker, conn);
        }
    }

    fn accept_vacant(&mut self, key: &str, socket: Rc<OwnedFd>) {
        let registered = matches!(
            self.servers.by_key.get(key).map(|e| &e.server),
            Some(Server::ReusePort(_))
        );
        // Its server was replaced or closed meanwhile, or the worker never
        // listened on it (nothing to accept; polling it would spin): the
        // socket just closes.
        if !registered || !listen::is_listening(socket.as_raw_fd()) {
            return;
        }
        let listener_id = self.servers.next_listener;
        self.servers.next_listener += 1;
        if self
            .poller()
            .add(socket.as_raw_fd(), READ, listener_token(listener_id))
            .is_err()
        {
            return;
        }
        self.servers.listeners.insert(listener_id, key.to_string());
        if let Some(Server::ReusePort(s)) = self.servers.by_key.get_mut(key).map(|e| &mut e.server)
        {
            s.vacant.push((listener_id, socket));
        }
    }
}
