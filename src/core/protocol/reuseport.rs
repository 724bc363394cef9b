//! The protocol's side of `SCHED_REUSEPORT` (see [`ReusePort`]): a socket
//! for each worker that asks (a vacant one taken over, or a new one opened
//! into the group), and accepting from the sockets leavers vacated. Also
//! settles the other work a worker's leaving leaves behind.

use crate::core::codec::value::Value;
use crate::core::protocol::balance::reuseport::ReusePort;
use crate::core::protocol::fd::Handle;
use crate::core::protocol::servers::{Conn, Key, OpenFor, Server};
use crate::core::protocol::{OpenSpec, Output, Protocol, SockName, TimerFor};

impl Protocol {
    /// Answers worker `id`'s `queryServer` on a reuseport server with its
    /// socket, or parks it until a new socket is open. Returns the errno of
    /// the reply sent now (0 when parked).
    pub(crate) fn reuseport_query(
        &mut self,
        id: u32,
        key: &str,
        msg: &Value,
        s: &mut ReusePort<Conn>,
        mut reply: Vec<(String, Value)>,
    ) -> i64 {
        let socket = match s.sockets.iter().find(|(w, _)| *w == id) {
            Some((_, socket)) => Some(socket.clone()),
            None => s.take_vacant().inspect(|socket| {
                self.servers.listeners.remove(&socket.id());
                self.emit(Output::StopAccept {
                    listener: socket.id(),
                });
            }),
        };
        let Some(socket) = socket else {
            // Each query gets its own answer, even a worker's second one.
            s.waiting.push((id, msg.clone()));
            self.open_next_member(key, s);
            return 0;
        };
        s.join(id, socket.clone());
        reply[0].1 = Value::Number(0.0);
        self.send_cluster(id, Value::Object(reply), Some((socket, "net.Native")));
        0
    }

    /// Opens the next member's socket if workers wait and none is opening.
    fn open_next_member(&mut self, key: &str, s: &mut ReusePort<Conn>) {
        if s.opening.is_some() || s.waiting.is_empty() {
            return;
        }
        let bind = self.servers.next_bind_id();
        s.opening = Some(bind);
        self.servers.opens.insert(
            bind,
            OpenFor::ReusePort {
                key: key.to_string(),
            },
        );
        self.emit(Output::Open {
            bind,
            spec: OpenSpec::Tcp {
                address: s.address.clone(),
                port: s.port,
                ipv6_only: s.ipv6_only,
                reuse_port: true,
                listen: None,
            },
        });
    }

    pub(crate) fn on_reuseport_opened(
        &mut self,
        key: &str,
        bind: u32,
        result: Result<(Handle, Option<SockName>), i64>,
    ) {
        let Some(mut entry) = self.servers.by_key.remove(key) else {
            return;
        };
        let Server::ReusePort(s) = &mut entry.server else {
            self.servers.by_key.insert(key.to_string(), entry);
            return;
        };
        if s.opening != Some(bind) {
            self.servers.by_key.insert(key.to_string(), entry);
            return;
        }
        s.opening = None;
        s.waiting.retain(|(w, _)| self.workers.contains_key(w));
        let waiter = (!s.waiting.is_empty()).then(|| s.waiting.remove(0));
        let mut joined = None;
        if let Some((w, msg)) = waiter {
            let mut reply = Self::reply_head(key, &msg, &entry.data);
            match result {
                Ok((socket, sockname)) => {
                    if s.port == 0 {
                        // Port 0: the first socket picks the port the others join.
                        s.port = sockname.map_or(0, |a| a.port);
                    }
                    s.join(w, socket.clone());
                    reply[0].1 = Value::Number(0.0);
                    self.send_cluster(w, Value::Object(reply), Some((socket, "net.Native")));
                    joined = Some(w);
                }
                Err(errno) => {
                    reply[0].1 = Value::Number(errno as f64);
                    self.send_cluster(w, Value::Object(reply), None);
                }
            }
        }
        self.open_next_member(key, s);
        // A server nobody could join is forgotten, so that a later query
        // retries; sockets vacated meanwhile are no longer accepted on.
        if entry.is_unused() {
            if let Server::ReusePort(s) = &mut entry.server {
                self.servers.departures.retired.append(&mut s.vacant);
            }
            return self.settle_departures();
        }
        self.servers.by_key.insert(key.to_string(), entry);
        if let Some(w) = joined {
            self.handoff(&Key::from(key), w);
        }
    }

    /// Does what workers' leaving asked for: stop accepting on closed
    /// servers' sockets, accept from vacated ones, send re-homed
    /// connections.
    pub(crate) fn settle_departures(&mut self) {
        let out = std::mem::take(&mut self.servers.departures);
        for key in out.graced {
            self.start_grace(&key);
        }
        for socket in out.retired {
            self.servers.listeners.remove(&socket.id());
            self.emit(Output::StopAccept {
                listener: socket.id(),
            });
        }
        for (key, socket) in out.vacated {
            self.accept_vacant(&key, socket);
        }
        for (key, serial, worker, conn) in out.rehomed {
            self.send_newconn(&Key::from(key), serial, worker, conn);
        }
    }

    /// A primary-accepted server lost its last worker: it stops accepting
    /// and waits for the next one for the listen grace.
    fn start_grace(&mut self, key: &str) {
        let listener = match self.servers.by_key.get(key).map(|e| &e.server) {
            Some(Server::Accepting(s)) if s.grace.is_none() => s.listener.id(),
            _ => return,
        };
        self.emit(Output::StopAccept { listener });
        let timer = self.start_timer(
            TimerFor::Grace {
                key: key.to_string(),
            },
            self.listen_grace_ms,
        );
        if let Some(Server::Accepting(s)) = self.servers.by_key.get_mut(key).map(|e| &mut e.server)
        {
            s.grace = Some(timer);
        }
    }

    /// Accepts from a socket its worker left (the driver ignores one that
    /// was never listened on: there is nothing to accept).
    fn accept_vacant(&mut self, key: &str, socket: Handle) {
        let Some(Server::ReusePort(s)) = self.servers.by_key.get_mut(key).map(|e| &mut e.server)
        else {
            // Its server was replaced or closed meanwhile: the socket closes.
            return;
        };
        let listener = socket.id();
        s.vacant.push(socket);
        self.servers.listeners.insert(listener, Key::from(key));
        self.emit(Output::Accept {
            listener,
            peer: false,
        });
    }
}
