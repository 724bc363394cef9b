//! Connections the primary accepts (round-robin, sticky, and vacated
//! reuseport sockets): each goes to a worker as a `newconn` carrying the
//! descriptor, one in flight per worker and server, kept in the worker's
//! slots until it answers; a refusal re-routes it.

use crate::core::codec::framing::Serialization;
use crate::core::codec::json;
use crate::core::codec::value::Value;
use crate::core::protocol::balance::sticky::client_key;
use crate::core::protocol::balance::Balancer;
use crate::core::protocol::fd::{FdId, Handle};
use crate::core::protocol::outbox::Frame;
use crate::core::protocol::servers::{
    AcceptingServer, Conn, InFlightConn, Key, Server, MAX_QUEUED,
};
use crate::core::protocol::{Output, Protocol};
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
    push_decimal(seq, &mut b);
    b.extend_from_slice(b"}}\n");
    b
}

/// The advanced (V8) frame of a `newconn` handoff, byte for byte what
/// [`Protocol::send_cluster`] would encode for it, when the key is ASCII
/// and shorter than 128 bytes (a one-byte string with a one-byte length,
/// as every TCP handle key is) and `seq` is a Smi; `None` otherwise.
pub(crate) fn newconn_v8(key: &str, seq: u64) -> Option<Vec<u8>> {
    let seq = u32::try_from(seq).ok().filter(|s| *s <= i32::MAX as u32)?;
    let key_len = u8::try_from(key.len()).ok().filter(|n| *n < 0x80)?;
    if !key.is_ascii() {
        return None;
    }
    let mut b = Vec::with_capacity(128 + key.len());
    // The length prefix, filled in at the end.
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(
        b"\xff\x0f\x6f\x22\x03cmd\x22\x0bNODE_HANDLE\x22\x04type\x22\x0anet.Native\x22\x03msg\
          \x6f\x22\x03cmd\x22\x0cNODE_CLUSTER\x22\x03act\x22\x07newconn\x22\x03key\x22",
    );
    b.push(key_len);
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(b"\x22\x03seq\x49");
    // Zigzag of a non-negative Smi, as a base-128 varint.
    let mut n = seq << 1;
    while n >= 0x80 {
        b.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    b.push(n as u8);
    // The end of `msg` (4 properties), then of the envelope (3).
    b.extend_from_slice(b"\x7b\x04\x7b\x03");
    let len = u32::try_from(b.len() - 4).ok()?;
    b[..4].copy_from_slice(&len.to_be_bytes());
    Some(b)
}

/// `n` in decimal, as `JSON.stringify` writes a safe integer: without the
/// formatting machinery, which showed in the per-connection profile.
fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl Protocol {
    /// A connection accepted on one of our listening sockets. Its server is
    /// looked up once (this runs for every connection).
    pub(crate) fn on_accepted(&mut self, listener: FdId, conn: Handle, peer: Option<IpAddr>) {
        // A listener we no longer accept on: the connection is closed.
        let Some(key) = self.servers.listeners.get(&listener).cloned() else {
            return;
        };
        let client = client_key(peer);
        let conn = Conn { fd: conn, client };
        let mut stop = None;
        let Some(entry) = self.servers.by_key.get_mut(&*key) else {
            return;
        };
        let serial = entry.serial;
        let next = match &mut entry.server {
            Server::Accepting(s) if s.listener.id() == listener => {
                let next = s.balancer.distribute(conn, client, None);
                if !s.throttled && s.balancer.queued_len() >= MAX_QUEUED {
                    s.throttled = true;
                    stop = Some(listener);
                }
                next
            }
            Server::ReusePort(s) if s.vacant.iter().any(|h| h.id() == listener) => {
                s.balancer.distribute(conn)
            }
            // Not (or no longer) accepted on for its server: closed.
            _ => return,
        };
        if let Some((w, c)) = next {
            self.send_newconn(&key, serial, w, c);
        }
        if let Some(listener) = stop {
            self.emit(Output::StopAccept { listener });
        }
    }

    /// Gives `worker` its next queued connection, if any. Never a second
    /// one while it has one of this server's in flight (it may have left
    /// and joined again before answering).
    pub(crate) fn handoff(&mut self, key: &Key, worker: u32) {
        if self.gated(worker) {
            return;
        }
        let busy = self
            .workers
            .get(&worker)
            .is_some_and(|w| w.handoffs.iter().any(|c| c.key == *key));
        if busy {
            return;
        }
        let mut resume = None;
        let Some(entry) = self.servers.by_key.get_mut(&**key) else {
            return;
        };
        let serial = entry.serial;
        let conn = match &mut entry.server {
            Server::Accepting(s) => {
                let conn = s.balancer.handoff(worker);
                // Accepting resumes once the queue is down to half.
                if s.throttled && s.balancer.queued_len() <= MAX_QUEUED / 2 {
                    s.throttled = false;
                    if s.grace.is_none() {
                        resume = Some(Output::Accept {
                            listener: s.listener.id(),
                            peer: matches!(s.balancer, Balancer::Sticky(_)),
                        });
                    }
                }
                conn
            }
            Server::ReusePort(s) => s.balancer.handoff(worker),
            _ => None,
        };
        if let Some(out) = resume {
            self.emit(out);
        }
        if let Some(conn) = conn {
            self.send_newconn(key, serial, worker, conn);
        }
    }

    /// Sends `conn` to `worker` for the server `server` ([`Entry::serial`])
    /// under `key`.
    ///
    /// [`Entry::serial`]: crate::core::protocol::servers::Entry::serial
    pub(crate) fn send_newconn(&mut self, key: &Key, server: u32, worker: u32, conn: Conn) {
        // The hot path of SCHED_RR: the frame is written directly rather
        // than built as a value tree (the seq it names is the next one).
        let direct = match self.workers.get(&worker).map(|w| (w.ser, w.connected())) {
            Some((Serialization::Json, true)) => Some(newconn_json(key, self.seq)),
            Some((Serialization::Advanced, true)) => newconn_v8(key, self.seq),
            _ => None,
        };
        let sent = match direct {
            Some(bytes) => {
                let seq = self.next_seq();
                let frame = Frame::with_fd(bytes, Some(conn.fd.clone()));
                self.push_frame(worker, frame, false).then_some(seq)
            }
            None => {
                let msg = Value::object([
                    ("act", Value::from("newconn")),
                    ("key", Value::from(&**key)),
                ]);
                self.send_cluster(worker, msg, Some((conn.fd.clone(), "net.Native")))
            }
        };
        let slots = self.workers.get_mut(&worker).map(|w| &mut w.handoffs);
        match (sent, slots) {
            (Some(seq), Some(slots)) => slots.push(InFlightConn {
                seq,
                key: key.clone(),
                server,
                conn,
            }),
            // The worker vanished between being picked and being written to:
            // the connection goes back into the queue for someone else.
            _ => self.redistribute(key, conn, Some(worker)),
        }
    }

    /// Queues a connection; `refused_by`: the worker that refused it.
    fn redistribute(&mut self, key: &Key, conn: Conn, refused_by: Option<u32>) {
        self.queue_conn(key, conn, refused_by, false);
    }

    /// Queues a connection for the server under `key` and sends it at once
    /// if a worker is idle; `first`: ahead of the queue (it was handed out
    /// before). With no such server left, the connection is closed.
    fn queue_conn(&mut self, key: &Key, conn: Conn, not_to: Option<u32>, first: bool) {
        let Some(entry) = self.servers.by_key.get_mut(&**key) else {
            return;
        };
        let serial = entry.serial;
        let next = match &mut entry.server {
            Server::Accepting(s) => {
                let client = conn.client;
                if first {
                    s.balancer.distribute_first(conn, client, not_to)
                } else {
                    s.balancer.distribute(conn, client, not_to)
                }
            }
            Server::ReusePort(s) if first => s.balancer.distribute_first(conn),
            Server::ReusePort(s) => s.balancer.distribute(conn),
            _ => None,
        };
        if let Some((w, c)) = next {
            self.send_newconn(key, serial, w, c);
        }
    }

    /// Worker `worker` answered the `newconn` whose `seq` was `ack`. A
    /// reply naming a connection that is not in flight to this worker
    /// (answered already, or another worker's) changes nothing.
    pub(crate) fn on_newconn_reply(&mut self, worker: u32, ack: u64, accepted: bool) {
        let Some(slots) = self.workers.get_mut(&worker).map(|w| &mut w.handoffs) else {
            return;
        };
        let Some(at) = slots.iter().position(|c| c.seq == ack) else {
            return;
        };
        let InFlightConn { key, conn, .. } = slots.swap_remove(at);
        if accepted {
            self.count(worker, |c| c.connections += 1);
        } else {
            self.redistribute(&key, conn, Some(worker));
        }
        self.handoff(&key, worker);
    }

    /// Takes a worker out of every server. Connections already handed to
    /// it stay in flight: it may still answer them (a disconnecting worker
    /// refuses them) until its channel closes. `died`: it left without
    /// being asked, so a server it was the last worker of keeps its socket
    /// for the listen grace, if one is set.
    pub(crate) fn remove_worker_from_servers(&mut self, id: u32, died: bool) {
        let grace = died && self.listen_grace_ms > 0;
        self.servers.remove_worker_everywhere(id, grace);
        self.settle_departures();
    }

    /// The first worker after a server's last one left: accepting resumes.
    pub(crate) fn resume_after_grace(&mut self, s: &mut AcceptingServer) {
        let Some(timer) = s.grace.take() else {
            return;
        };
        self.cancel_timer(timer);
        if !s.throttled {
            self.emit(Output::Accept {
                listener: s.listener.id(),
                peer: matches!(s.balancer, Balancer::Sticky(_)),
            });
        }
    }

    /// A server's listen grace ended: closed unless a worker came.
    pub(crate) fn end_grace(&mut self, key: &str, timer: u64) {
        let ended = matches!(
            self.servers.by_key.get(key).map(|e| &e.server),
            Some(Server::Accepting(s)) if s.grace == Some(timer) && s.balancer.is_empty()
        );
        if !ended {
            return;
        }
        if let Some(entry) = self.servers.by_key.remove(key) {
            if let Server::Accepting(s) = entry.server {
                self.servers.listeners.remove(&s.listener.id());
                self.emit(Output::StopAccept {
                    listener: s.listener.id(),
                });
            }
        }
    }

    /// The channel of worker `id` closed: the connections it never answered
    /// go to other workers, in the order they were handed off. Node's worker
    /// answers `newconn` before its server touches the socket (and the
    /// driver reads a dead worker's last bytes before reporting its exit),
    /// so an unanswered connection is untouched. With nobody left to take
    /// it, it is closed (or waits out the server's listen grace).
    pub(crate) fn reroute_unanswered(&mut self, id: u32) {
        let Some(mut unanswered) = self
            .workers
            .get_mut(&id)
            .map(|w| std::mem::take(&mut w.handoffs))
        else {
            return;
        };
        // Each goes ahead of the queue: the newest first, so that the
        // oldest ends up in front.
        unanswered.sort_unstable_by_key(|c| std::cmp::Reverse(c.seq));
        for InFlightConn { key, conn, .. } in unanswered {
            self.rerouted += 1;
            self.queue_conn(&key, conn, Some(id), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::framing;

    /// The `newconn` envelope as the generic encoder builds it.
    fn generic_newconn(key: &str, seq: u64) -> Value {
        Value::object([
            ("cmd", Value::from("NODE_HANDLE")),
            ("type", Value::from("net.Native")),
            (
                "msg",
                Value::object([
                    ("cmd", Value::from("NODE_CLUSTER")),
                    ("act", Value::from("newconn")),
                    ("key", Value::from(key)),
                    ("seq", Value::Number(seq as f64)),
                ]),
            ),
        ])
    }

    #[test]
    fn fast_v8_newconn_frame_matches_the_generic_encoding() {
        for (key, seq) in [
            ("127.0.0.1:8000:4:-1:0", 0),
            ("::1:80:6:-1", 63),
            ("0.0.0.0:3000:4:-1", 64),
            ("k", 12_345_678),
            ("x", i32::MAX as u64),
        ] {
            let generic = generic_newconn(key, seq);
            assert_eq!(
                newconn_v8(key, seq),
                Some(framing::encode_value(Serialization::Advanced, &generic)),
                "{key} {seq}"
            );
        }
        // Left to the generic encoder: not a one-byte key with a one-byte
        // length, or not a Smi.
        assert_eq!(newconn_v8("café", 1), None);
        assert_eq!(newconn_v8(&"k".repeat(128), 1), None);
        assert_eq!(newconn_v8("k", i32::MAX as u64 + 1), None);
    }

    #[test]
    fn decimals_as_javascript_writes_them() {
        for n in [0, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(n, &mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn fast_newconn_frame_matches_the_generic_encoding() {
        let key = "127.0.0.1:8000:4:undefined:0 \"quoted\"";
        let generic = generic_newconn(key, 42);
        assert_eq!(
            newconn_json(key, 42),
            framing::encode_value(Serialization::Json, &generic)
        );
    }
}
