//! The registry of servers shared with workers, keyed the way Node's primary
//! keys them, and the kinds of server: primary-accepted (round-robin or
//! sticky), shared (the primary only binds and sends the socket), reuseport
//! (a socket of its own per worker), and a server whose socket the driver
//! (or the primary's JavaScript) is still opening.

use crate::core::codec::value::Value;
use crate::core::hash::IdMap;
use crate::core::protocol::balance::reuseport::{Left, ReusePort};
use crate::core::protocol::balance::Balancer;
use crate::core::protocol::fd::{FdId, Handle};
use std::collections::HashMap;
use std::rc::Rc;

/// A primary-accepted server's handle key as the per-connection path holds
/// it (the listener's entry, each connection in flight): shared, so that
/// a connection costs no copy of it.
pub type Key = Rc<str>;

pub enum Server {
    Accepting(AcceptingServer),
    Shared(SharedServer),
    Opening(OpeningServer),
    ReusePort(ReusePort<Conn>),
}

/// What an opening server becomes once its socket is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Becomes {
    /// Primary-accepted; `pipe`: a Unix socket (no `sockname` in replies).
    Accepting { pipe: bool },
    /// Bound here, listened on by the workers.
    Shared { handle_type: &'static str },
}

/// A server whose socket is being opened; the queries of the workers that
/// asked for it wait here, in order.
pub struct OpeningServer {
    pub bind_id: u32,
    pub becomes: Becomes,
    /// Worker id and its `queryServer` message.
    pub waiters: Vec<(u32, Value)>,
}

/// An accepted connection and its client's stickiness key.
#[derive(Clone, Debug)]
pub struct Conn {
    pub fd: Handle,
    pub client: u64,
}

/// A server whose connections the primary accepts (round-robin or sticky).
pub struct AcceptingServer {
    pub listener: Handle,
    pub balancer: Balancer<Conn>,
    /// `{address, family, port}` for TCP; `None` for a Unix socket.
    pub sockname: Option<Value>,
    /// While the server outlives its last worker (listen grace): the timer
    /// that ends it. Its socket is not accepted on meanwhile; connections
    /// wait in the kernel's backlog, and those already accepted in its
    /// queue, for the next worker.
    pub grace: Option<u64>,
    /// Not accepted on while [`MAX_QUEUED`] connections wait for a worker:
    /// the rest waits in the kernel's backlog.
    pub throttled: bool,
}

/// Most connections a primary-accepted server holds for busy workers
/// before it leaves the rest in the kernel's backlog (each one is a
/// descriptor of the primary's). Far above what healthy workers let pile
/// up between two handoffs, and a small share of the descriptor limit Node
/// raises itself to.
pub const MAX_QUEUED: usize = 1024;

pub struct SharedServer {
    pub handle: Option<Handle>,
    /// `net.Native` or `dgram.Native`.
    pub handle_type: &'static str,
    /// Node's negative errno of the bind, 0 on success.
    pub errno: i64,
    pub workers: Vec<u32>,
}

pub struct Entry {
    pub server: Server,
    /// Names this server among all that ever had its key (Node 22+
    /// re-listen replaces a server under the same key): a worker has at
    /// most one connection of each server in flight.
    pub serial: u32,
    /// Custom server data (TLS ticket keys) from the first worker that had any.
    pub data: Value,
}

/// A connection handed to a worker and not yet answered, in that worker's
/// slots ([`WorkerState::handoffs`](super::workers::WorkerState)).
#[derive(Debug)]
pub struct InFlightConn {
    /// The `seq` of the `newconn` frame, which the worker's reply names.
    pub seq: u64,
    pub key: Key,
    /// The [`Entry::serial`] of the server that handed it out.
    pub server: u32,
    pub conn: Conn,
}

/// Where an open request's answer goes.
pub enum OpenFor {
    /// The opening server under this key (registered, or replacing the
    /// registered one when `replaces`).
    Server { key: String, replaces: bool },
    /// A reuseport server's next member socket.
    ReusePort { key: String },
}

#[derive(Default)]
pub struct Servers {
    /// std's hasher: keys are built from workers' frames (see `core::hash`).
    pub by_key: HashMap<String, Entry>,
    /// Listening sockets accepted on → their server's key.
    pub listeners: IdMap<FdId, Key>,
    /// Servers replaced under their key (Node 22+ re-listen) that workers
    /// still hold.
    pub orphans: Vec<(String, Entry)>,
    /// Node 22+: new servers for a key a worker already holds, still being
    /// opened; they replace the registered one once listening.
    pub replacing: IdMap<u32, (String, Entry)>,
    /// Open requests not yet answered.
    pub opens: IdMap<u32, OpenFor>,
    pub next_bind: u32,
    pub next_serial: u32,
    /// What workers' leaving left to do.
    pub departures: Departures,
}

/// Work a worker's leaving leaves behind, done once the registry is
/// consistent again.
#[derive(Default)]
pub struct Departures {
    /// Connections queued for the leaver, re-homed to a worker that must be
    /// sent them now (sticky servers): key, server serial, worker.
    pub rehomed: Vec<(String, u32, u32, Conn)>,
    /// Reuseport sockets the leaver vacated: the primary accepts from them.
    pub vacated: Vec<(String, Handle)>,
    /// Listening sockets no longer accepted on (closed servers).
    pub retired: Vec<Handle>,
    /// Servers whose last worker left, kept for the listen grace.
    pub graced: Vec<String>,
}

impl Entry {
    pub fn has(&self, worker: u32) -> bool {
        match &self.server {
            Server::Accepting(s) => s.balancer.contains(worker),
            Server::Shared(s) => s.workers.contains(&worker),
            Server::Opening(s) => s.waiters.iter().any(|(w, _)| *w == worker),
            Server::ReusePort(s) => s.contains(worker),
        }
    }

    /// Removes a worker; `true` when it was the last and the server closes.
    /// `grace`: a primary-accepted server stays past its last worker.
    fn remove(&mut self, worker: u32, key: &str, out: &mut Departures, grace: bool) -> bool {
        let serial = self.serial;
        match &mut self.server {
            Server::Accepting(s) => {
                if !s.balancer.contains(worker) {
                    return false;
                }
                let (last, now) = s.balancer.remove(worker);
                out.rehomed.extend(
                    now.into_iter()
                        .map(|(w, c)| (key.to_string(), serial, w, c)),
                );
                if last && grace {
                    out.graced.push(key.to_string());
                    return false;
                }
                if last {
                    // Connections nobody will take are closed with the server.
                    drop(s.balancer.drain());
                    out.retired.push(s.listener.clone());
                }
                last
            }
            Server::Shared(SharedServer { workers, .. }) => {
                let Some(pos) = workers.iter().position(|w| *w == worker) else {
                    return false;
                };
                workers.remove(pos);
                workers.is_empty()
            }
            Server::ReusePort(s) => match s.leave(worker) {
                Left::NotMember => false,
                Left::Vacated(socket) => {
                    out.vacated.push((key.to_string(), socket));
                    false
                }
                Left::Closed(vacant) => {
                    out.retired.extend(vacant);
                    true
                }
            },
            // The server stays registered until its open settles, so that
            // a worker asking meanwhile joins it rather than binding twice.
            Server::Opening(s) => {
                s.waiters.retain(|(w, _)| *w != worker);
                false
            }
        }
    }

    /// Whether no worker uses the server any more.
    pub fn is_unused(&self) -> bool {
        match &self.server {
            Server::Shared(s) => s.workers.is_empty(),
            Server::ReusePort(s) => s.is_empty() && !s.is_opening(),
            _ => false,
        }
    }
}

impl Servers {
    /// Removes a worker from one server; `true` when the server closed.
    /// `grace`: a primary-accepted server outlives its last worker.
    pub fn remove_worker(&mut self, key: &str, worker: u32, grace: bool) -> bool {
        let Some(entry) = self.by_key.get_mut(key) else {
            return false;
        };
        if !entry.remove(worker, key, &mut self.departures, grace) {
            return false;
        }
        if let Some(entry) = self.by_key.remove(key) {
            if let Server::Accepting(s) = &entry.server {
                self.listeners.remove(&s.listener.id());
            }
        }
        true
    }

    /// Removes a worker from every server it shares, replaced ones included.
    pub fn remove_worker_everywhere(&mut self, worker: u32, grace: bool) {
        for key in self.keys() {
            self.remove_worker(&key, worker, grace);
        }
        let out = &mut self.departures;
        self.orphans
            .retain_mut(|(k, e)| !e.remove(worker, k, out, false));
        for (k, e) in self.replacing.values_mut() {
            e.remove(worker, k, out, false);
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.by_key.keys().cloned().collect()
    }

    /// A serial for a new server ([`Entry::serial`]).
    pub fn next_serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    pub fn next_bind_id(&mut self) -> u32 {
        let id = self.next_bind;
        self.next_bind = self.next_bind.wrapping_add(1);
        id
    }
}
