//! Connections the primary accepts (round-robin, sticky, and vacated
//! reuseport sockets): each goes to a worker as a `newconn` carrying the
//! descriptor, one in flight per worker; a refusal re-routes it.

use crate::core::codec::framing::Serialization;
use crate::core::codec::json;
use crate::core::codec::value::Value;
use crate::core::protocol::balance::sticky::client_key;
use crate::core::protocol::fd::{FdId, Handle};
use crate::core::protocol::outbox::Frame;
use crate::core::protocol::servers::{Conn, InFlightConn, Server};
use crate::core::protocol::Protocol;
use std::net::IpAddr;

/// The JSON frame of a `newconn` handoff, byte for byte what
/// [`Protocol::send_cluster`] would encode for it.
pub(crate) fn newconn_json(key: &str, seq: u64) -> Vec<u8> {
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

impl Protocol {
    /// A connection accepted on one of our listening sockets.
    pub(crate) fn on_accepted(&mut self, listener: FdId, conn: Handle, peer: Option<IpAddr>) {
        // A listener we no longer accept on: the connection is closed.
        let Some(key) = self.servers.listeners.get(&listener).cloned() else {
            return;
        };
        let ours = match self.servers.by_key.get(&key).map(|e| &e.server) {
            Some(Server::Accepting(s)) => s.listener.id() == listener,
            Some(Server::ReusePort(s)) => s.vacant.iter().any(|h| h.id() == listener),
            _ => false,
        };
        if !ours {
            return;
        }
        let client = client_key(peer);
        self.redistribute(&key, Conn { fd: conn, client }, None);
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

    pub(crate) fn on_newconn_reply(&mut self, inflight: InFlightConn, accepted: bool) {
        let InFlightConn { key, worker, conn } = inflight;
        if !accepted {
            self.redistribute(&key, conn, Some(worker));
        }
        self.handoff(&key, worker);
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
    use crate::core::codec::framing;

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
