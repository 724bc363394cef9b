//! Primary-accepted (round-robin or sticky) TCP servers whose listening
//! socket the primary's JavaScript creates with `net.Server#listen`, exactly
//! as Node's primary does (same options, same bind errors, same hooks on
//! `listen`). The I/O thread asks for the socket with [`Event::Listen`],
//! holds the workers' queries until [`Command::Listened`] brings the socket
//! or the errno, and from then on accepts on it itself.
//!
//! [`Command::Listened`]: crate::core::event::Command::Listened

use crate::core::event::Event;
use crate::core::json;
use crate::core::protocol::{is_tcp_on_port, neg_errno};
use crate::core::reactor::Reactor;
use crate::core::servers::{BindingServer, Entry, Server};
use crate::core::value::Value;
use std::os::fd::OwnedFd;

impl Reactor {
    /// Whether a new server for this `queryServer` is listened on by
    /// JavaScript: a primary-accepted (round-robin or sticky) TCP server on
    /// a port. Unix sockets and inherited descriptors are bound here,
    /// because closing a JavaScript pipe server unlinks its path and closing
    /// an adopted descriptor closes the user's.
    pub(crate) fn listens_in_js(&self, msg: &Value) -> bool {
        self.policy.primary_accepts() && is_tcp_on_port(msg)
    }

    /// Registers a server in the making with its first waiter and asks
    /// JavaScript to listen.
    pub(crate) fn start_js_listen(&mut self, id: u32, key: String, msg: &Value, replaces: bool) {
        let bind_id = self.servers.next_bind;
        self.servers.next_bind = self.servers.next_bind.wrapping_add(1);
        let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
        let flags = msg.get("flags").and_then(Value::as_i64).unwrap_or(0);
        let mut options = vec![
            ("port".to_string(), Value::Number(port as f64)),
            (
                "host".to_string(),
                msg.get("address").cloned().unwrap_or(Value::Undefined),
            ),
            // Node's primary maps only UV_TCP_IPV6ONLY from `flags`.
            ("ipv6Only".to_string(), Value::Bool(flags & 1 != 0)),
        ];
        if let Some(backlog) = msg.get("backlog") {
            options.push(("backlog".to_string(), backlog.clone()));
        }
        let entry = Entry {
            server: Server::Binding(BindingServer {
                bind_id,
                waiters: vec![(id, msg.clone())],
            }),
            data: msg.get("data").cloned().unwrap_or(Value::Undefined),
            socket_path: None,
        };
        if replaces {
            self.servers.replacing.insert(bind_id, (key, entry));
        } else {
            self.servers.by_key.insert(key, entry);
        }
        let options = String::from_utf8_lossy(&json::to_vec(&Value::Object(options))).into_owned();
        self.events.push(Event::Listen {
            bind: bind_id,
            options,
        });
    }

    /// JavaScript's answer: the listening socket, or Node's negative errno.
    pub(crate) fn on_listened(&mut self, bind_id: u32, result: Result<OwnedFd, i64>) {
        let (key, mut entry, replaces) = match self.servers.replacing.remove(&bind_id) {
            Some((key, entry)) => (key, entry, true),
            None => {
                let key = self
                    .servers
                    .by_key
                    .iter()
                    .find_map(|(k, e)| match &e.server {
                        Server::Binding(b) if b.bind_id == bind_id => Some(k.clone()),
                        _ => None,
                    });
                // Unknown (already settled): the socket is closed on drop.
                let Some((key, entry)) = key.and_then(|k| self.servers.by_key.remove_entry(&k))
                else {
                    return;
                };
                (key, entry, false)
            }
        };
        let waiters = match &mut entry.server {
            Server::Binding(b) => std::mem::take(&mut b.waiters),
            _ => return,
        };
        // Workers that left while JavaScript was listening are not answered,
        // and nobody left means nobody accepts: the socket is just closed.
        let waiters: Vec<(u32, Value)> = waiters
            .into_iter()
            .filter(|(w, _)| self.workers.contains_key(w))
            .collect();
        if waiters.is_empty() {
            return;
        }
        let server = result.and_then(|listener| {
            self.accepting_server(&key, listener, false)
                .map_err(|e| neg_errno(&e))
        });
        match server {
            Ok(server) => {
                entry.server = server;
                for (w, msg) in &waiters {
                    self.reply_query(*w, &key, msg, &mut entry);
                }
                if let Some(old) = self.servers.by_key.insert(key.clone(), entry) {
                    if replaces {
                        self.servers.orphans.push((key.clone(), old));
                    }
                }
                for (w, _) in waiters {
                    self.handoff(&key, w);
                }
            }
            Err(errno) => {
                // A failed listen is forgotten, so that a later query retries.
                let mut failed = Self::failed_rr(errno);
                failed.data = entry.data.clone();
                for (w, msg) in &waiters {
                    self.reply_query(*w, &key, msg, &mut failed);
                }
            }
        }
    }
}
