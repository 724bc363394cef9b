//! Incoming frames and Node's cluster acts: classifying what a worker sent
//! (user message, handle envelope, ACK, cluster act), answering the acts
//! (`online`, `queryServer`, `listening`, `close`, `exitedAfterDisconnect`,
//! `newconn` replies), and framing what the primary sends.

use crate::core::codec::framing::{self, Serialization};
use crate::core::codec::hot::{self, Hot};
use crate::core::codec::value::Value;
use crate::core::codec::{json, wire};
use crate::core::protocol::event::{Descriptor, Event};
use crate::core::protocol::fd::Handle;
use crate::core::protocol::outbox::{AckOutcome, Frame};
use crate::core::protocol::Protocol;

impl Protocol {
    /// Bytes read from a worker's channel and the descriptors that came
    /// with them.
    pub(crate) fn on_bytes(&mut self, id: u32, bytes: &[u8], fds: Vec<Handle>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.open {
            return;
        }
        w.decoder.push(bytes);
        w.fds_in.extend(fds);
        loop {
            let Some(w) = self.workers.get_mut(&id) else {
                return;
            };
            if !w.open {
                return;
            }
            // The two frames of every round-robin connection, in the exact
            // shape Node writes them: no copy and no value tree. Anything
            // else, however close, takes the general path.
            let ser = w.ser;
            if let Some(hot) = w.decoder.take_frame_if(|p| hot::recognise(ser, p)) {
                match hot {
                    Hot::HandleAck => self.ack(id, true),
                    Hot::NewconnReply { ack, accepted } => self.on_newconn_reply(id, ack, accepted),
                }
                continue;
            }
            match w.decoder.next_frame() {
                Ok(Some(payload)) => self.on_frame(id, payload),
                Ok(None) => break,
                Err(e) => {
                    // The stream can no longer be split into frames: report
                    // it and stop reading this worker rather than guess.
                    self.event(Event::Error {
                        id,
                        code: "ERR_CLUSTER_BAD_FRAME",
                        message: format!("worker {id} sent an unreadable frame: {e}"),
                    });
                    self.close_channel(id);
                    return;
                }
            }
        }
        // A descriptor that arrived with no envelope to carry it, once every
        // complete frame is handled and nothing partial is buffered.
        if let Some(w) = self.workers.get_mut(&id) {
            if !w.fds_in.is_empty() && w.decoder.buffered() == 0 {
                let n = w.fds_in.len();
                w.fds_in.clear();
                self.event(Event::Error {
                    id,
                    code: "ERR_CLUSTER_STRAY_HANDLE",
                    message: format!(
                        "worker {id} sent {n} file descriptor(s) outside a NODE_HANDLE message; closed"
                    ),
                });
            }
        }
    }

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
                    self.event(Event::Error {
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
        self.message(id, ser == Serialization::Json, &payload);
    }

    fn on_internal(&mut self, id: u32, msg: Value, payload: Vec<u8>) {
        match msg.get("cmd").and_then(Value::as_str) {
            Some("NODE_HANDLE_ACK") => self.ack(id, true),
            Some("NODE_HANDLE_NACK") => self.ack(id, false),
            Some("NODE_HANDLE") => self.on_handle(id, msg, payload),
            Some("NODE_CLUSTER") => self.on_cluster(id, &msg),
            // NODE_SOCKET_* and the like concern JavaScript objects (sent
            // sockets), so JavaScript answers them.
            _ => self.event(Event::Internal { id, payload }),
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
        // A received descriptor has no other holder, so it can always go.
        self.count(id, |c| c.messages_in += 1);
        self.event(Event::Message {
            id,
            payload,
            fd: fd.transfer().map(Descriptor::Token),
            handle_type,
        });
    }

    /// Reports an unusable message of worker `id`; nothing else happens.
    pub(crate) fn bad_message(&mut self, id: u32, what: &str) {
        self.event(Event::Error {
            id,
            code: "ERR_CLUSTER_BAD_MESSAGE",
            message: format!("worker {id} sent {what}"),
        });
    }

    /// Takes the oldest descriptor received from the worker.
    fn take_fd(&mut self, id: u32) -> Option<Handle> {
        self.workers.get_mut(&id)?.fds_in.pop_front()
    }

    fn ack(&mut self, id: u32, ok: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        match w.outbox.on_ack(ok) {
            AckOutcome::GaveUp => self.event(Event::Warning {
                id,
                code: "SentHandleNotReceivedWarning",
                message: "Handle did not reach the receiving process correctly".into(),
            }),
            AckOutcome::Unexpected => self.event(Event::Error {
                id,
                code: "ERR_CLUSTER_UNEXPECTED_ACK",
                message: format!("worker {id} acknowledged a handle that was never sent"),
            }),
            AckOutcome::Acked | AckOutcome::Retransmitting => {}
        }
        self.transmit_later(id);
    }

    /// Sends `{cmd:'NODE_CLUSTER', ...msg, seq}`, wrapped in a `NODE_HANDLE`
    /// envelope when a descriptor goes with it. Returns the `seq` used.
    pub(crate) fn send_cluster(
        &mut self,
        id: u32,
        msg: Value,
        handle: Option<(Handle, &'static str)>,
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
        self.push_frame(id, Frame::with_fd(bytes, fd), false)
            .then_some(seq)
    }

    fn on_cluster(&mut self, id: u32, msg: &Value) {
        if let Some(ack) = msg.get("ack").filter(|v| **v != Value::Undefined) {
            if let Some(seq) = ack.as_i64().and_then(|s| u64::try_from(s).ok()) {
                let accepted = msg.get("accepted").is_some_and(Value::truthy);
                self.on_newconn_reply(id, seq, accepted);
            }
            return;
        }
        match msg.get("act").and_then(Value::as_str) {
            Some("online") => self.event(Event::Online { id }),
            Some("queryServer") => self.query_server(id, msg),
            Some("listening") => {
                let port = msg.get("port");
                let address = msg.get("address");
                let plausible = matches!(port, None | Some(Value::Undefined | Value::Number(_)))
                    && matches!(
                        address,
                        None | Some(Value::Undefined | Value::Null | Value::String(_))
                    );
                if !plausible {
                    return self.bad_message(id, "a listening message with a bad port or address");
                }
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
                self.event(Event::Listening {
                    id,
                    info: String::from_utf8_lossy(&out).into_owned(),
                });
            }
            Some("close") => match msg.get("key").and_then(Value::as_str) {
                Some(key) => {
                    let key = key.to_string();
                    self.servers.remove_worker(&key, id, false);
                    self.settle_departures();
                }
                None => self.bad_message(id, "a close message without a key"),
            },
            Some("exitedAfterDisconnect") => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.exited_after_disconnect = true;
                }
                let seq = msg.get("seq").cloned().unwrap_or(Value::Undefined);
                self.send_cluster(id, Value::object([("ack", seq)]), None);
                self.event(Event::ExitedAfterDisconnect { id });
            }
            other => self.event(Event::Error {
                id,
                code: "ERR_CLUSTER_UNKNOWN_ACT",
                message: format!(
                    "worker {id} sent a cluster message with unknown act {:?}",
                    other.unwrap_or("<none>")
                ),
            }),
        }
    }
}
