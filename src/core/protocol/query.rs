//! `queryServer`: the handle key Node would compute, the server it names
//! (an existing one, or a new one whose socket is to be opened), and the
//! reply each kind of server gives.

use crate::core::codec::json;
use crate::core::codec::value::Value;
use crate::core::protocol::balance::reuseport::ReusePort;
use crate::core::protocol::balance::Policy;
use crate::core::protocol::servers::{Becomes, Entry, Key, OpenFor, OpeningServer, Server};
use crate::core::protocol::{OpenSpec, Output, Protocol};

/// Node's default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 511;

/// JavaScript's `String(value)` for the scalar fields of a handle key.
fn js_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Undefined) => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => json::js_number_to_string(*n),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(_)) | Some(Value::Object(_)) => "[object Object]".into(),
    }
}

/// Whether a `queryServer` asks for a TCP server on a port: not UDP, not a
/// Unix socket path (port -1), not an inherited descriptor.
pub(crate) fn is_tcp_on_port(msg: &Value) -> bool {
    let udp = matches!(
        msg.get("addressType").and_then(Value::as_str),
        Some("udp4") | Some("udp6")
    );
    let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
    let fd = msg.get("fd").and_then(Value::as_i64).unwrap_or(-1);
    !udp && fd < 0 && port >= 0
}

/// Node's `EINVAL`, as a bind of nonsense would fail.
const EINVAL: i64 = -22;

/// Checks the fields of a `queryServer` that pick the socket, with the
/// types and ranges Node's worker sends (`net` and `dgram`); extra fields
/// (listen options) are allowed. The reason when one is wrong.
pub(crate) fn check_query(msg: &Value) -> Result<(), String> {
    let int_in = |v: &Value, lo: f64, hi: f64| {
        v.as_f64()
            .is_some_and(|n| n.fract() == 0.0 && n >= lo && n <= hi)
    };
    let absent = |v: Option<&Value>| matches!(v, None | Some(Value::Undefined) | Some(Value::Null));
    let bad = |name: &str, v: Option<&Value>| {
        let mut text = Vec::new();
        json::write(v.unwrap_or(&Value::Undefined), &mut text);
        Err(format!(
            "queryServer with {name} {}",
            String::from_utf8_lossy(&text)
        ))
    };
    let address = msg.get("address");
    if !absent(address) && address.and_then(Value::as_str).is_none() {
        return bad("address", address);
    }
    // `null` when listening on a descriptor (net and dgram).
    let port = msg.get("port");
    if !absent(port) && !port.is_some_and(|p| int_in(p, -1.0, 65535.0)) {
        return bad("port", port);
    }
    // `null` too when listening on a descriptor.
    let address_type = msg.get("addressType");
    let known_type = match address_type {
        None | Some(Value::Undefined) | Some(Value::Null) => true,
        Some(Value::String(t)) => t == "udp4" || t == "udp6",
        Some(v) => [4.0, 6.0, -1.0].contains(&v.as_f64().unwrap_or(0.0)),
    };
    if !known_type {
        return bad("addressType", address_type);
    }
    let fd = msg.get("fd");
    if !absent(fd) && !fd.is_some_and(|v| int_in(v, -1.0, i32::MAX as f64)) {
        return bad("fd", fd);
    }
    let flags = msg.get("flags");
    if !absent(flags) && !flags.is_some_and(|v| int_in(v, 0.0, u32::MAX as f64)) {
        return bad("flags", flags);
    }
    // `backlog` is not checked: net sends `false` for "none given", and
    // only a positive number is used.
    let index = msg.get("index");
    if !absent(index) && !index.is_some_and(|v| int_in(v, 0.0, u32::MAX as f64)) {
        return bad("index", index);
    }
    Ok(())
}

fn field(msg: &Value, name: &str) -> Value {
    msg.get(name).cloned().unwrap_or(Value::Undefined)
}

impl Protocol {
    pub(crate) fn handle_key(&self, msg: &Value) -> String {
        let mut key = format!(
            "{}:{}:{}:{}",
            js_string(msg.get("address")),
            js_string(msg.get("port")),
            js_string(msg.get("addressType")),
            js_string(msg.get("fd")),
        );
        let port_zero = msg.get("port").and_then(Value::as_f64) == Some(0.0);
        if self.key_with_index || port_zero {
            key.push(':');
            key.push_str(&js_string(msg.get("index")));
        }
        key
    }

    pub(crate) fn query_server(&mut self, id: u32, msg: &Value) {
        let disconnecting = self
            .workers
            .get(&id)
            .is_none_or(|w| w.exited_after_disconnect);
        if disconnecting {
            return;
        }
        let key = self.handle_key(msg);
        if let Err(why) = check_query(msg) {
            // Answered as a failed bind, so the worker's listen fails with
            // EINVAL instead of waiting; nothing is bound.
            let mut reply = Self::reply_head(&key, msg, &field(msg, "data"));
            reply[0].1 = Value::Number(EINVAL as f64);
            self.send_cluster(id, Value::Object(reply), None);
            self.bad_message(id, &format!("a {why}"));
            return;
        }
        // Node 22+ keys a server without the listen index (unless port 0); a
        // worker asking again for a key it already holds gets a new server,
        // which replaces the old one in the registry only if it opens.
        let replaces =
            !self.key_with_index && self.servers.by_key.get(&key).is_some_and(|e| e.has(id));
        if replaces || !self.servers.by_key.contains_key(&key) {
            if !self.create_server(id, &key, msg, replaces) {
                return;
            }
        } else if let Some(Entry {
            server: Server::Opening(o),
            data,
            ..
        }) = self.servers.by_key.get_mut(&key)
        {
            if !data.truthy() {
                *data = field(msg, "data");
            }
            o.waiters.push((id, msg.clone()));
            return;
        }
        let Some(mut entry) = self.servers.by_key.remove(&key) else {
            return;
        };
        let errno = self.reply_query(id, &key, msg, &mut entry);
        // A failed bind is forgotten: other workers get a chance to retry.
        if errno == 0 || !entry.is_unused() {
            self.servers.by_key.insert(key.clone(), entry);
            self.handoff(&Key::from(key.as_str()), id);
        }
    }

    /// A new server for `key`. A reuseport server is registered at once
    /// (`true`: answer the query from it); any other waits for its socket,
    /// with this query as its first waiter (`false`).
    fn create_server(&mut self, id: u32, key: &str, msg: &Value, replaces: bool) -> bool {
        if self.policy == Policy::ReusePort && is_tcp_on_port(msg) {
            let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
            let flags = msg.get("flags").and_then(Value::as_i64).unwrap_or(0);
            let address = msg
                .get("address")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut fresh = ReusePort::new(address, port as u16, flags & 1 != 0);
            if let Some(Entry {
                server: Server::ReusePort(old),
                ..
            }) = self.servers.by_key.get_mut(key)
            {
                // Vacated sockets stay in the group: the new server serves
                // them (their listener key is the same).
                fresh.vacant = std::mem::take(&mut old.vacant);
            }
            let entry = Entry {
                server: Server::ReusePort(fresh),
                serial: self.servers.next_serial(),
                data: Value::Undefined,
            };
            if let Some(old) = self.servers.by_key.insert(key.to_string(), entry) {
                if replaces {
                    self.orphan(key, old);
                }
            }
            return true;
        }
        let (spec, becomes) = self.plan(msg);
        let bind_id = self.servers.next_bind_id();
        let entry = Entry {
            server: Server::Opening(OpeningServer {
                bind_id,
                becomes,
                waiters: vec![(id, msg.clone())],
            }),
            serial: self.servers.next_serial(),
            data: field(msg, "data"),
        };
        if replaces {
            self.servers
                .replacing
                .insert(bind_id, (key.to_string(), entry));
        } else {
            self.servers.by_key.insert(key.to_string(), entry);
        }
        self.servers.opens.insert(
            bind_id,
            OpenFor::Server {
                key: key.to_string(),
                replaces,
            },
        );
        self.emit(Output::Open {
            bind: bind_id,
            spec,
        });
        false
    }

    /// The socket a new (non-reuseport) server needs, as Node's primary
    /// would open it, and what the server becomes.
    fn plan(&self, msg: &Value) -> (OpenSpec, Becomes) {
        let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
        let fd = msg.get("fd").and_then(Value::as_i64).unwrap_or(-1);
        let flags = msg.get("flags").and_then(Value::as_i64).unwrap_or(0);
        let address_type = field(msg, "addressType");
        let udp = matches!(address_type.as_str(), Some("udp4") | Some("udp6"));
        let address = msg
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pipe_path = || address.clone().unwrap_or_default();
        if udp {
            let spec = if fd > 0 {
                OpenSpec::Adopt {
                    fd: fd as i32,
                    listen: None,
                }
            } else {
                // dgram binds lazily; an unbound socket is still valid.
                OpenSpec::Udp {
                    address: address.clone(),
                    port: port as u16,
                    ipv6: address_type.as_str() == Some("udp6"),
                    flags,
                }
            };
            let becomes = Becomes::Shared {
                handle_type: "dgram.Native",
            };
            return (spec, becomes);
        }
        if self.policy == Policy::Shared {
            let spec = if fd >= 0 {
                OpenSpec::Adopt {
                    fd: fd as i32,
                    listen: None,
                }
            } else if port == -1 && address_type.as_i64() == Some(-1) {
                OpenSpec::Pipe {
                    path: pipe_path(),
                    listen: None,
                    readable_all: false,
                    writable_all: false,
                }
            } else {
                OpenSpec::Tcp {
                    address: address.clone(),
                    port: port.max(0) as u16,
                    ipv6_only: flags & 1 != 0,
                    reuse_port: false,
                    listen: None,
                }
            };
            let becomes = Becomes::Shared {
                handle_type: "net.Native",
            };
            return (spec, becomes);
        }
        if self.policy.primary_accepts() && is_tcp_on_port(msg) {
            return (
                OpenSpec::Js {
                    options: js_listen_options(msg),
                },
                Becomes::Accepting { pipe: false },
            );
        }
        // Unix sockets and inherited descriptors are bound here (closing a
        // JavaScript pipe server unlinks its path; closing an adopted
        // descriptor closes the user's), and accepted by the primary, also
        // under SCHED_REUSEPORT.
        let backlog = msg
            .get("backlog")
            .and_then(Value::as_i64)
            .filter(|b| *b > 0)
            .unwrap_or(DEFAULT_BACKLOG as i64) as i32;
        let pipe = fd < 0 && port < 0;
        let spec = if fd >= 0 {
            OpenSpec::Adopt {
                fd: fd as i32,
                listen: Some(backlog),
            }
        } else if pipe {
            OpenSpec::Pipe {
                path: pipe_path(),
                listen: Some(backlog),
                readable_all: msg.get("readableAll").is_some_and(Value::truthy),
                writable_all: msg.get("writableAll").is_some_and(Value::truthy),
            }
        } else {
            OpenSpec::Tcp {
                address,
                port: port as u16,
                ipv6_only: flags & 1 != 0,
                reuse_port: false,
                listen: Some(backlog),
            }
        };
        (spec, Becomes::Accepting { pipe })
    }

    /// The fields every `queryServer` reply starts with.
    pub(crate) fn reply_head(key: &str, msg: &Value, data: &Value) -> Vec<(String, Value)> {
        vec![
            ("errno".to_string(), Value::Null),
            ("key".to_string(), Value::String(key.to_string())),
            ("ack".to_string(), field(msg, "seq")),
            ("data".to_string(), data.clone()),
        ]
    }

    /// Adds the worker to a server and sends the `queryServer` reply;
    /// returns the bind errno.
    pub(crate) fn reply_query(
        &mut self,
        id: u32,
        key: &str,
        msg: &Value,
        entry: &mut Entry,
    ) -> i64 {
        if !entry.data.truthy() {
            entry.data = field(msg, "data");
        }
        let mut reply = Self::reply_head(key, msg, &entry.data);
        match &mut entry.server {
            Server::Accepting(s) => {
                if s.balancer.add(id) && self.gated(id) {
                    // A new lane has nothing queued to re-home.
                    let rehomed = s.balancer.gate(id, true);
                    debug_assert!(rehomed.is_empty());
                }
                self.resume_after_grace(s);
                if let Some(sn) = &s.sockname {
                    reply.push(("sockname".into(), sn.clone()));
                }
                self.send_cluster(id, Value::Object(reply), None);
                0
            }
            // Never answered from here: its waiters are answered once it
            // opens.
            Server::Opening(_) => 0,
            Server::ReusePort(s) => self.reuseport_query(id, key, msg, s, reply),
            Server::Shared(s) => {
                if !s.workers.contains(&id) {
                    s.workers.push(id);
                }
                let errno = s.errno;
                reply[0].1 = Value::Number(errno as f64);
                let handle = s.handle.clone().map(|h| (h, s.handle_type));
                self.send_cluster(id, Value::Object(reply), handle);
                errno
            }
        }
    }

    /// A server replaced under its key (Node 22+ re-listen) that workers
    /// still hold. Its listening socket, if the primary accepted on it, is
    /// no longer accepted on: its connections wait in the kernel's backlog.
    pub(crate) fn orphan(&mut self, key: &str, mut old: Entry) {
        match &mut old.server {
            Server::Accepting(s) => {
                self.servers.listeners.remove(&s.listener.id());
                self.emit(Output::StopAccept {
                    listener: s.listener.id(),
                });
                // In its listen grace nobody holds it: it just closes.
                if let Some(timer) = s.grace.take() {
                    self.cancel_timer(timer);
                }
                if s.balancer.is_empty() {
                    return;
                }
            }
            // Sockets its leavers vacated are served by the new server if
            // it is a reuseport one too (see `create_server`); any left
            // are no longer accepted on.
            Server::ReusePort(s) => {
                for socket in std::mem::take(&mut s.vacant) {
                    self.servers.listeners.remove(&socket.id());
                    self.emit(Output::StopAccept {
                        listener: socket.id(),
                    });
                }
            }
            _ => {}
        }
        self.servers.orphans.push((key.to_string(), old));
    }
}

/// `net.Server#listen` options for the primary's JavaScript, as Node's
/// primary builds them for a round-robin server.
fn js_listen_options(msg: &Value) -> String {
    let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
    let flags = msg.get("flags").and_then(Value::as_i64).unwrap_or(0);
    let mut options = vec![
        ("port".to_string(), Value::Number(port as f64)),
        ("host".to_string(), field(msg, "address")),
        // Node's primary maps only UV_TCP_IPV6ONLY from `flags`.
        ("ipv6Only".to_string(), Value::Bool(flags & 1 != 0)),
    ];
    if let Some(backlog) = msg.get("backlog") {
        options.push(("backlog".to_string(), backlog.clone()));
    }
    String::from_utf8_lossy(&json::to_vec(&Value::Object(options))).into_owned()
}
