//! Node's cluster protocol as the primary speaks it: classifying incoming
//! frames, the `NODE_HANDLE` envelope and its ACKs, and the `NODE_CLUSTER`
//! acts (`online`, `queryServer`, `listening`, `close`,
//! `exitedAfterDisconnect`, `newconn` replies).

use crate::core::balance::reuseport::ReusePort;
use crate::core::balance::sticky::client_key;
use crate::core::balance::{Balancer, Policy};
use crate::core::event::Event;
use crate::core::framing::{self, Serialization};
use crate::core::listen;
use crate::core::outbox::Frame;
use crate::core::poller::READ;
use crate::core::reactor::{listener_token, Reactor};
use crate::core::servers::{AcceptingServer, Conn, Entry, InFlightConn, Server, SharedServer};
use crate::core::value::Value;
use crate::core::{json, wire};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

/// How many connections one wake-up of a listener accepts before the loop
/// serves other descriptors.
const ACCEPT_BATCH: usize = 64;

/// JavaScript's `String(value)` for the scalar fields of a handle key.
fn js_string(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Undefined) => "undefined".into(),
        Some(Value::Null) => "null".into(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => {
            if n.fract() == 0.0 && n.abs() < 1e21 {
                format!("{}", *n as i64)
            } else {
                format!("{n}")
            }
        }
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

pub(crate) fn neg_errno(e: &io::Error) -> i64 {
    -(e.raw_os_error().unwrap_or(libc::EINVAL) as i64)
}

fn sockname_value(fd: &OwnedFd) -> Option<Value> {
    let addr = listen::sockname(fd.as_raw_fd())?;
    let family = if addr.is_ipv6() { "IPv6" } else { "IPv4" };
    Some(Value::object([
        ("address", Value::String(addr.ip().to_string())),
        ("family", family.into()),
        ("port", Value::Number(addr.port() as f64)),
    ]))
}

/// The JSON frame of a `newconn` handoff, byte for byte what
/// [`Reactor::send_cluster`] would encode for it.
fn newconn_json(key: &str, seq: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(112 + key.len());
    b.extend_from_slice(
        br#"{"cmd":"NODE_HANDLE","type":"net.Native","msg":{"cmd":"NODE_CLUSTER","act":"newconn","key":"#,
    );
    json::write_string(key, &mut b);
    b.extend_from_slice(br#","seq":"#);
    b.extend_from_slice(seq.to_string().as_bytes());
    b.extend_from_slice(b"}}\n");
    b
}

impl Reactor {
    /// One complete frame from a worker.
    pub(crate) fn on_frame(&mut self, id: u32, payload: Vec<u8>) {
        let Some(ser) = self.workers.get(&id).map(|w| w.ser) else {
            return;
        };
        if framing::may_be_internal(ser, &payload) {
            match framing::decode_value(ser, &payload) {
                Ok(v) if v.is_internal() => return self.on_internal(id, v, payload),
                Ok(_) => {}
                Err(e) if ser == Serialization::Json => {
                    self.events.push(Event::Error {
                        id,
                        code: "ERR_CLUSTER_BAD_MESSAGE",
                        message: format!("worker {id} sent a malformed message: {e}"),
                    });
                    return;
                }
                // Values the core does not model (Dates, Maps, Buffers...)
                // are user data: JavaScript decodes them. A handle envelope
                // around such data is still recognised by its head.
                Err(_) => {
                    let head = Value::Object(wire::leading_properties(&payload, 2));
                    if head.get("cmd").and_then(Value::as_str) == Some("NODE_HANDLE") {
                        return self.on_handle(id, head, payload);
                    }
                }
            }
        }
        let json = ser == Serialization::Json;
        if json && !json::is_self_contained(&payload) {
            // Not batchable: JavaScript decodes it alone and reports it.
            self.events.push(Event::Message {
                id,
                payload,
                fd: None,
                handle_type: None,
            });
            return;
        }
        Event::push_message(&mut self.events, id, json, &payload);
    }

    fn on_internal(&mut self, id: u32, msg: Value, payload: Vec<u8>) {
        match msg.get("cmd").and_then(Value::as_str) {
            Some("NODE_HANDLE_ACK") => self.ack(id, true),
            Some("NODE_HANDLE_NACK") => self.ack(id, false),
            Some("NODE_HANDLE") => self.on_handle(id, msg, payload),
            Some("NODE_CLUSTER") => self.on_cluster(id, &msg),
            // NODE_SOCKET_* and the like concern JavaScript objects (sent
            // sockets), so JavaScript answers them.
            _ => self.events.push(Event::Internal { id, payload }),
        }
    }

    fn send_handle_reply(&mut self, id: u32, cmd: &str) {
        let Some(ser) = self.workers.get(&id).map(|w| w.ser) else {
            return;
        };
        let frame = framing::encode_value(ser, &Value::object([("cmd", cmd.into())]));
        self.push_frame(id, Frame::plain(frame), true);
    }

    fn on_handle(&mut self, id: u32, msg: Value, payload: Vec<u8>) {
        let Some(fd) = self.take_fd(id) else {
            // The descriptor was lost in transit (MSG_CTRUNC): ask again.
            self.send_handle_reply(id, "NODE_HANDLE_NACK");
            return;
        };
        self.send_handle_reply(id, "NODE_HANDLE_ACK");
        let handle_type = msg.get("type").and_then(Value::as_str).map(str::to_string);
        self.events.push(Event::Message {
            id,
            payload,
            fd: Some(fd),
            handle_type,
        });
    }

    /// Sends `{cmd:'NODE_CLUSTER', ...msg, seq}`, wrapped in a `NODE_HANDLE`
    /// envelope when a descriptor goes with it. Returns the `seq` used.
    pub(crate) fn send_cluster(
        &mut self,
        id: u32,
        msg: Value,
        handle: Option<(Rc<OwnedFd>, &'static str)>,
    ) -> Option<u64> {
        let w = self.workers.get(&id)?;
        if !w.connected() {
            return None;
        }
        let ser = w.ser;
        let seq = self.next_seq();
        let mut pairs = vec![("cmd".to_string(), Value::from("NODE_CLUSTER"))];
        if let Value::Object(rest) = msg {
            pairs.extend(rest.into_iter().filter(|(k, _)| k != "cmd" && k != "seq"));
        }
        pairs.push(("seq".into(), Value::Number(seq as f64)));
        let inner = Value::Object(pairs);
        let (value, fd) = match handle {
            Some((fd, ty)) => (
                Value::object([
                    ("cmd", Value::from("NODE_HANDLE")),
                    ("type", Value::from(ty)),
                    ("msg", inner),
                ]),
                Some(fd),
            ),
            None => (inner, None),
        };
        let bytes = framing::encode_value(ser, &value);
        self.push_frame(id, Frame { bytes, fd }, false)
            .then_some(seq)
    }

    fn on_cluster(&mut self, id: u32, msg: &Value) {
        if let Some(ack) = msg.get("ack").filter(|v| **v != Value::Undefined) {
            if let Some(seq) = ack.as_i64() {
                if let Some(conn) = self.servers.in_flight.remove(&(seq as u64)) {
                    let accepted = msg.get("accepted").is_some_and(Value::truthy);
                    self.on_newconn_reply(conn, accepted);
                }
            }
            return;
        }
        match msg.get("act").and_then(Value::as_str) {
            Some("online") => self.events.push(Event::Online { id }),
            Some("queryServer") => self.query_server(id, msg),
            Some("listening") => {
                let info = Value::object([
                    (
                        "addressType",
                        msg.get("addressType").cloned().unwrap_or(Value::Undefined),
                    ),
                    (
                        "address",
                        msg.get("address").cloned().unwrap_or(Value::Undefined),
                    ),
                    ("port", msg.get("port").cloned().unwrap_or(Value::Undefined)),
                    ("fd", msg.get("fd").cloned().unwrap_or(Value::Undefined)),
                ]);
                let mut out = Vec::new();
                json::write(&info, &mut out);
                self.events.push(Event::Listening {
                    id,
                    info: String::from_utf8_lossy(&out).into_owned(),
                });
            }
            Some("close") => {
                if let Some(key) = msg.get("key").and_then(Value::as_str) {
                    let key = key.to_string();
                    self.servers.remove_worker(&key, id);
                    self.settle_departures();
                }
            }
            Some("exitedAfterDisconnect") => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.exited_after_disconnect = true;
                }
                let seq = msg.get("seq").cloned().unwrap_or(Value::Undefined);
                self.send_cluster(id, Value::object([("ack", seq)]), None);
                self.events.push(Event::ExitedAfterDisconnect { id });
            }
            other => self.events.push(Event::Error {
                id,
                code: "ERR_CLUSTER_UNKNOWN_ACT",
                message: format!(
                    "worker {id} sent a cluster message with unknown act {:?}",
                    other.unwrap_or("<none>")
                ),
            }),
        }
    }

    fn handle_key(&self, msg: &Value) -> String {
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

    fn query_server(&mut self, id: u32, msg: &Value) {
        let disconnecting = self
            .workers
            .get(&id)
            .is_none_or(|w| w.exited_after_disconnect);
        if disconnecting {
            return;
        }
        let key = self.handle_key(msg);
        // Node 22+ keys a server without the listen index (unless port 0); a
        // worker asking again for a key it already holds gets a new server,
        // which replaces the old one in the registry only if it binds.
        let replaces =
            !self.key_with_index && self.servers.by_key.get(&key).is_some_and(|e| e.has(id));
        let new_server = replaces || !self.servers.by_key.contains_key(&key);
        if new_server && self.listens_in_js(msg) {
            return self.start_js_listen(id, key, msg, replaces);
        }
        if let Some(Entry {
            server: Server::Binding(b),
            data,
            ..
        }) = self.servers.by_key.get_mut(&key)
        {
            if !data.truthy() {
                *data = msg.get("data").cloned().unwrap_or(Value::Undefined);
            }
            b.waiters.push((id, msg.clone()));
            return;
        }
        if replaces {
            let entry = self.create_server(&key, msg);
            let failed = entry.errno() != 0;
            if failed {
                let mut entry = entry;
                self.reply_query(id, &key, msg, &mut entry);
                return;
            }
            if let Some(old) = self.servers.by_key.insert(key.clone(), entry) {
                self.servers.orphans.push((key.clone(), old));
            }
        } else if !self.servers.by_key.contains_key(&key) {
            let entry = self.create_server(&key, msg);
            self.servers.by_key.insert(key.clone(), entry);
        }
        let Some(mut entry) = self.servers.by_key.remove(&key) else {
            return;
        };
        let errno = self.reply_query(id, &key, msg, &mut entry);
        // A failed bind is forgotten: other workers get a chance to retry.
        // (A reuseport server others already use stays.)
        if errno == 0 || !entry.is_unused() {
            self.servers.by_key.insert(key.clone(), entry);
            self.handoff(&key, id);
        }
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
            entry.data = msg.get("data").cloned().unwrap_or(Value::Undefined);
        }
        let ack = msg.get("seq").cloned().unwrap_or(Value::Undefined);
        let mut reply = vec![
            ("errno".to_string(), Value::Null),
            ("key".to_string(), Value::String(key.to_string())),
            ("ack".to_string(), ack),
            ("data".to_string(), entry.data.clone()),
        ];
        match &mut entry.server {
            Server::Accepting(s) => {
                s.balancer.add(id);
                if let Some(sn) = &s.sockname {
                    reply.push(("sockname".into(), sn.clone()));
                }
                self.send_cluster(id, Value::Object(reply), None);
                0
            }
            // Never answered from here: its waiters are answered once it
            // listens.
            Server::Binding(_) => 0,
            Server::ReusePort(s) => {
                let (handle, errno) = match self.reuseport_socket(s, id) {
                    Ok(fd) => (Some((fd, "net.Native")), 0),
                    Err(errno) => (None, errno),
                };
                reply[0].1 = Value::Number(errno as f64);
                self.send_cluster(id, Value::Object(reply), handle);
                errno
            }
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

    fn create_server(&mut self, key: &str, msg: &Value) -> Entry {
        let port = msg.get("port").and_then(Value::as_i64).unwrap_or(0);
        let fd = msg.get("fd").and_then(Value::as_i64).unwrap_or(-1);
        let flags = msg.get("flags").and_then(Value::as_i64).unwrap_or(0);
        let address_type = msg.get("addressType").cloned().unwrap_or(Value::Undefined);
        let udp = matches!(address_type.as_str(), Some("udp4") | Some("udp6"));
        let mut address = msg
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_string);
        // Unix socket paths: the shortest equivalent path, because of the
        // ~100 byte limit of sun_path.
        if port < 0 {
            if let (Some(a), Ok(cwd)) = (address.as_ref(), std::env::current_dir()) {
                if let Ok(rel) = std::path::Path::new(a).strip_prefix(&cwd) {
                    let rel = rel.to_string_lossy().into_owned();
                    if rel.len() < a.len() && !rel.is_empty() {
                        address = Some(rel);
                    }
                }
            }
        }
        let data = Value::Undefined;
        let tcp_port = is_tcp_on_port(msg);
        if self.policy == Policy::ReusePort && tcp_port {
            return Entry {
                server: Server::ReusePort(ReusePort::new(address, port as u16, flags & 1 != 0)),
                data,
                socket_path: None,
            };
        }
        // Unix sockets and descriptors under SCHED_REUSEPORT are accepted
        // by the primary, round-robin.
        if self.policy == Policy::Shared || udp {
            let result = if udp {
                if fd > 0 {
                    listen::adopt(fd as i32)
                } else if port != 0 || address.is_some() {
                    listen::bind_udp(
                        address.as_deref(),
                        port as u16,
                        address_type.as_str() == Some("udp6"),
                        flags,
                    )
                } else {
                    // dgram binds lazily; an unbound socket is still valid.
                    listen::bind_udp(None, 0, address_type.as_str() == Some("udp6"), flags)
                }
            } else if fd >= 0 {
                listen::adopt(fd as i32)
            } else if port == -1 && address_type.as_i64() == Some(-1) {
                address
                    .as_deref()
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
                    .and_then(listen::bind_pipe)
            } else {
                listen::bind_tcp(address.as_deref(), port.max(0) as u16, flags & 1 != 0)
            };
            let is_pipe = !udp && fd < 0 && port == -1;
            let (handle, errno) = match result {
                Ok(fd) => (Some(Rc::new(fd)), 0),
                Err(e) => (None, neg_errno(&e)),
            };
            let socket_path = if is_pipe && handle.is_some() {
                address.clone()
            } else {
                None
            };
            return Entry {
                server: Server::Shared(SharedServer {
                    handle,
                    handle_type: if udp { "dgram.Native" } else { "net.Native" },
                    errno,
                    workers: Vec::new(),
                }),
                data,
                socket_path,
            };
        }
        let backlog = msg
            .get("backlog")
            .and_then(Value::as_i64)
            .filter(|b| *b > 0)
            .unwrap_or(listen::DEFAULT_BACKLOG as i64) as i32;
        let is_pipe = fd < 0 && port < 0;
        let bound = if fd >= 0 {
            listen::adopt(fd as i32)
        } else if is_pipe {
            address
                .as_deref()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
                .and_then(listen::bind_pipe)
        } else {
            listen::bind_tcp(address.as_deref(), port as u16, flags & 1 != 0)
        };
        let listening = bound.and_then(|l| {
            listen::listen(l.as_raw_fd(), backlog)?;
            if is_pipe {
                if let Some(a) = address.as_deref() {
                    listen::chmod_pipe(
                        a,
                        msg.get("readableAll").is_some_and(Value::truthy),
                        msg.get("writableAll").is_some_and(Value::truthy),
                    )?;
                }
            }
            Ok(l)
        });
        match listening.and_then(|l| self.accepting_server(key, l, is_pipe)) {
            Ok(server) => Entry {
                server,
                data,
                socket_path: if is_pipe { address.clone() } else { None },
            },
            Err(e) => Self::failed_rr(neg_errno(&e)),
        }
    }

    /// Starts accepting on a listening socket for the server under `key`.
    pub(crate) fn accepting_server(
        &mut self,
        key: &str,
        listener: OwnedFd,
        is_pipe: bool,
    ) -> io::Result<Server> {
        let listener_id = self.servers.next_listener;
        self.servers.next_listener += 1;
        let sockname = if is_pipe {
            None
        } else {
            sockname_value(&listener)
        };
        self.poller()
            .add(listener.as_raw_fd(), READ, listener_token(listener_id))?;
        self.servers.listeners.insert(listener_id, key.to_string());
        Ok(Server::Accepting(AcceptingServer {
            listener,
            listener_id,
            balancer: Balancer::for_policy(self.policy),
            sockname,
        }))
    }

    /// A round-robin server whose bind failed answers like a shared one with
    /// an errno and no handle, which is what the worker sees from Node.
    pub(crate) fn failed_rr(errno: i64) -> Entry {
        Entry {
            server: Server::Shared(SharedServer {
                handle: None,
                handle_type: "net.Native",
                errno,
                workers: Vec::new(),
            }),
            data: Value::Undefined,
            socket_path: None,
        }
    }

    /// Gives `worker` its next queued connection, if any.
    pub(crate) fn handoff(&mut self, key: &str, worker: u32) {
        let conn = match self.servers.by_key.get_mut(key).map(|e| &mut e.server) {
            Some(Server::Accepting(s)) => s.balancer.handoff(worker),
            Some(Server::ReusePort(s)) => s.balancer.handoff(worker),
            _ => None,
        };
        if let Some(conn) = conn {
            self.send_newconn(key, worker, conn);
        }
    }

    pub(crate) fn send_newconn(&mut self, key: &str, worker: u32, conn: Conn) {
        let sent = match self.workers.get(&worker).map(|w| (w.ser, w.connected())) {
            // The hot path of SCHED_RR: the frame is written directly
            // rather than built as a value tree.
            Some((Serialization::Json, true)) => {
                let seq = self.next_seq();
                let frame = Frame {
                    bytes: newconn_json(key, seq),
                    fd: Some(conn.fd.clone()),
                };
                self.push_frame(worker, frame, false).then_some(seq)
            }
            _ => {
                let msg =
                    Value::object([("act", Value::from("newconn")), ("key", Value::from(key))]);
                self.send_cluster(worker, msg, Some((conn.fd.clone(), "net.Native")))
            }
        };
        match sent {
            Some(seq) => {
                self.servers.in_flight.insert(
                    seq,
                    InFlightConn {
                        key: key.to_string(),
                        worker,
                        conn,
                    },
                );
            }
            // The worker vanished between being picked and being written to:
            // the connection goes back into the queue for someone else.
            None => self.redistribute(key, conn, Some(worker)),
        }
    }

    /// Queues a connection; `refused_by`: the worker that refused it.
    fn redistribute(&mut self, key: &str, conn: Conn, refused_by: Option<u32>) {
        let next = match self.servers.by_key.get_mut(key).map(|e| &mut e.server) {
            Some(Server::Accepting(s)) => {
                let client = conn.client;
                s.balancer.distribute(conn, client, refused_by)
            }
            Some(Server::ReusePort(s)) => s.balancer.distribute(conn),
            _ => None,
        };
        if let Some((w, c)) = next {
            self.send_newconn(key, w, c);
        }
    }

    fn on_newconn_reply(&mut self, inflight: InFlightConn, accepted: bool) {
        let InFlightConn { key, worker, conn } = inflight;
        if !accepted {
            self.redistribute(&key, conn, Some(worker));
        }
        self.handoff(&key, worker);
    }

    pub(crate) fn on_listener(&mut self, listener_id: u64) {
        let Some(key) = self.servers.listeners.get(&listener_id).cloned() else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            let (fd, sticky) = match self.servers.by_key.get(&key).map(|e| &e.server) {
                Some(Server::Accepting(s)) if s.listener_id == listener_id => (
                    s.listener.as_raw_fd(),
                    matches!(s.balancer, Balancer::Sticky(_)),
                ),
                Some(Server::ReusePort(s)) => {
                    match s.vacant.iter().find(|(l, _)| *l == listener_id) {
                        Some((_, socket)) => (socket.as_raw_fd(), false),
                        None => return,
                    }
                }
                // A replaced server's listener: nobody new may join it, and
                // its connections are left to the kernel's backlog.
                _ => return,
            };
            match listen::accept(fd) {
                Ok((fd, peer)) => {
                    let client = if sticky { client_key(peer) } else { 0 };
                    let conn = Conn {
                        fd: Rc::new(fd),
                        client,
                    };
                    self.redistribute(&key, conn, None)
                }
                // WouldBlock: drained. Other errors (ECONNABORTED, EMFILE)
                // skip this connection, as Node does.
                Err(_) => return,
            }
        }
    }

    pub(crate) fn remove_worker_from_servers(&mut self, id: u32) {
        self.servers.remove_worker_everywhere(id);
        self.settle_departures();
        // Connections this worker never answered for are closed: it may have
        // taken them before leaving, and a second owner would be worse.
        self.servers.in_flight.retain(|_, c| c.worker != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_newconn_frame_matches_the_generic_encoding() {
        let key = "127.0.0.1:8000:4:undefined:0 \"quoted\"";
        let generic = Value::object([
            ("cmd", Value::from("NODE_HANDLE")),
            ("type", Value::from("net.Native")),
            (
                "msg",
                Value::object([
                    ("cmd", Value::from("NODE_CLUSTER")),
                    ("act", Value::from("newconn")),
                    ("key", Value::from(key)),
                    ("seq", Value::Number(42.0)),
                ]),
            ),
        ]);
        assert_eq!(
            newconn_json(key, 42),
            framing::encode_value(Serialization::Json, &generic)
        );
    }
}
