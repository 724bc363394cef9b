//! Servers waiting for their socket. Every new server but a reuseport one
//! starts as [`Server::Opening`]: the driver (or, for round-robin TCP, the
//! primary's JavaScript, exactly as Node's primary listens) opens the
//! socket, and the queries that arrived meanwhile are answered, in order,
//! once `Input::Opened` brings it or Node's errno.

use crate::core::codec::value::Value;
use crate::core::protocol::balance::{Balancer, Policy};
use crate::core::protocol::fd::Handle;
use crate::core::protocol::servers::{
    AcceptingServer, Becomes, Entry, Key, OpenFor, Server, SharedServer,
};
use crate::core::protocol::{Output, Protocol, SockName};

/// `{address, family, port}`, as Node's `getsockname` reports it.
pub(crate) fn sockname_value(s: &SockName) -> Value {
    Value::object([
        ("address", Value::String(s.address.clone())),
        ("family", Value::from(if s.ipv6 { "IPv6" } else { "IPv4" })),
        ("port", Value::Number(s.port as f64)),
    ])
}

impl Protocol {
    /// The answer to `Output::Open { bind }`.
    pub(crate) fn on_opened(&mut self, bind: u32, result: Result<(Handle, Option<SockName>), i64>) {
        // Unknown (already settled): a socket that came anyway is closed.
        let Some(target) = self.servers.opens.remove(&bind) else {
            return;
        };
        let (key, replaces) = match target {
            OpenFor::ReusePort { key } => return self.on_reuseport_opened(&key, bind, result),
            OpenFor::Server { key, replaces } => (key, replaces),
        };
        // Where the opening server is: registered, replacing the registered
        // one, or itself replaced meanwhile (then it settles as an orphan).
        let mut orphaned = false;
        let entry = if replaces {
            self.servers.replacing.remove(&bind).map(|(_, e)| e)
        } else {
            match self.servers.by_key.get(&key).map(|e| &e.server) {
                Some(Server::Opening(o)) if o.bind_id == bind => self.servers.by_key.remove(&key),
                _ => {
                    let pos = self.servers.orphans.iter().position(
                        |(_, e)| matches!(&e.server, Server::Opening(o) if o.bind_id == bind),
                    );
                    orphaned = pos.is_some();
                    pos.map(|i| self.servers.orphans.swap_remove(i).1)
                }
            }
        };
        let Some(mut entry) = entry else {
            return;
        };
        let (becomes, waiters) = match &mut entry.server {
            Server::Opening(o) => (o.becomes, std::mem::take(&mut o.waiters)),
            _ => return,
        };
        // Workers that left while the socket was opening are not answered,
        // and nobody left means nobody uses it: the socket is just closed.
        let waiters: Vec<(u32, Value)> = waiters
            .into_iter()
            .filter(|(w, _)| self.workers.contains_key(w))
            .collect();
        if waiters.is_empty() {
            return;
        }
        match result {
            Ok((fd, sockname)) => {
                entry.server = self.opened_server(&key, becomes, fd, sockname);
                for (w, msg) in &waiters {
                    self.reply_query(*w, &key, msg, &mut entry);
                }
                if orphaned {
                    return self.orphan(&key, entry);
                }
                if let Some(old) = self.servers.by_key.insert(key.clone(), entry) {
                    if replaces {
                        self.orphan(&key, old);
                    }
                }
                let key = Key::from(key);
                for (w, _) in waiters {
                    self.handoff(&key, w);
                }
            }
            Err(errno) => {
                // A failed open is forgotten, so that a later query retries,
                // as Node's primary forgets a handle whose bind failed.
                let handle_type = match becomes {
                    Becomes::Shared { handle_type } => handle_type,
                    Becomes::Accepting { .. } => "net.Native",
                };
                let mut failed = Entry {
                    server: Server::Shared(SharedServer {
                        handle: None,
                        handle_type,
                        errno,
                        workers: Vec::new(),
                    }),
                    serial: entry.serial,
                    data: entry.data.clone(),
                };
                for (w, msg) in &waiters {
                    self.reply_query(*w, &key, msg, &mut failed);
                }
            }
        }
    }

    fn opened_server(
        &mut self,
        key: &str,
        becomes: Becomes,
        fd: Handle,
        sockname: Option<SockName>,
    ) -> Server {
        match becomes {
            Becomes::Accepting { pipe } => {
                self.servers.listeners.insert(fd.id(), Key::from(key));
                self.emit(Output::Accept {
                    listener: fd.id(),
                    peer: self.policy == Policy::Sticky,
                });
                Server::Accepting(AcceptingServer {
                    listener: fd,
                    balancer: Balancer::for_policy(self.policy),
                    sockname: if pipe {
                        None
                    } else {
                        sockname.as_ref().map(sockname_value)
                    },
                    grace: None,
                    throttled: false,
                })
            }
            Becomes::Shared { handle_type } => Server::Shared(SharedServer {
                handle: Some(fd),
                handle_type,
                errno: 0,
                workers: Vec::new(),
            }),
        }
    }
}
