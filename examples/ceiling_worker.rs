//! A fake cluster worker for the primary's ceiling bench
//! (`bench/ceiling.mjs`): no Node, no HTTP, just Node's worker half of the
//! cluster protocol, so that what limits the connection rate is the
//! primary. Any primary that speaks Node's protocol can fork it — stock
//! `node:cluster` and native-cluster alike — by pointing `process.execPath`
//! at this binary.
//!
//! It does what `internal/cluster/child.js` does for a round-robin TCP
//! server: sends `online`, then `queryServer` for `127.0.0.1:$CEILING_PORT`
//! and, once answered, `listening`. Then, for every `newconn` (a
//! `NODE_HANDLE` envelope with the connection's descriptor), it answers
//! `NODE_HANDLE_ACK` and `{ack, accepted: true}` at once and closes the
//! descriptor. It exits when the channel closes or the primary sends
//! `disconnect`.
//!
//! Build: `cargo build --release --example ceiling_worker`.

use native_cluster::core::codec::framing::{self, FrameDecoder, Serialization};
use native_cluster::core::codec::value::Value;
use native_cluster::core::io::scm;
use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling_worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Node's worker: the `NODE_CLUSTER` sequence numbers it sends.
struct Worker {
    channel: RawFd,
    ser: Serialization,
    seq: u64,
    out: Vec<u8>,
}

impl Worker {
    /// Queues `{cmd:'NODE_CLUSTER', ...msg, seq}` as `sendHelper` builds it.
    fn send(&mut self, msg: Vec<(&str, Value)>) {
        let mut pairs = vec![("cmd", Value::str("NODE_CLUSTER"))];
        pairs.extend(msg);
        pairs.push(("seq", Value::Number(self.seq as f64)));
        self.seq += 1;
        self.out
            .extend(framing::encode_value(self.ser, &Value::object(pairs)));
    }

    fn send_raw(&mut self, msg: Value) {
        self.out.extend(framing::encode_value(self.ser, &msg));
    }

    /// Writes everything queued (the channel is blocking).
    fn flush(&mut self) -> Result<(), String> {
        let mut off = 0;
        while off < self.out.len() {
            off += scm::send(self.channel, &self.out[off..], None)
                .map_err(|e| format!("write to the channel: {e}"))?;
        }
        self.out.clear();
        Ok(())
    }
}

/// Waits until the channel has bytes, as libuv does (epoll, `EPOLLIN`
/// only). Blocking in `recvmsg` instead would be woken each time the
/// primary reads one of our frames (the freed buffer space wakes the
/// socket's waiters), a context switch per connection that a Node worker
/// never has.
fn wait_readable(channel: RawFd) -> Result<(), String> {
    let mut pfd = libc::pollfd {
        fd: channel,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd that outlives the call.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("poll the channel: {e}"));
        }
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run me from a cluster primary)"))
}

/// The `queryServer` message for a TCP server on `127.0.0.1:port`, as
/// `net`'s `listenInCluster` and `cluster._getServer` build it.
fn server(act: &str, port: u16) -> Vec<(&str, Value)> {
    vec![
        ("act", Value::str(act)),
        ("index", Value::Number(0.0)),
        ("data", Value::Null),
        ("address", Value::str("127.0.0.1")),
        ("port", Value::Number(f64::from(port))),
        ("addressType", Value::Number(4.0)),
        ("backlog", Value::Number(511.0)),
    ]
}

fn run() -> Result<(), String> {
    let channel: RawFd = env("NODE_CHANNEL_FD")?
        .parse()
        .map_err(|_| "NODE_CHANNEL_FD is not a number".to_string())?;
    let ser = std::env::var("NODE_CHANNEL_SERIALIZATION_MODE")
        .ok()
        .and_then(|s| Serialization::parse(&s))
        .unwrap_or(Serialization::Json);
    let port: u16 = env("CEILING_PORT")?
        .parse()
        .map_err(|_| "CEILING_PORT is not a port".to_string())?;
    let mut w = Worker {
        channel,
        ser,
        seq: 0,
        out: Vec::new(),
    };
    w.send(vec![("act", Value::str("online"))]);
    let query_seq = w.seq;
    w.send(server("queryServer", port));
    w.flush()?;

    let mut decoder = FrameDecoder::new(ser);
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds: VecDeque<OwnedFd> = VecDeque::new();
    let mut received = Vec::new();
    let mut held: Option<OwnedFd> = None;
    loop {
        wait_readable(channel)?;
        let n = scm::recv(channel, &mut buf, &mut received)
            .map_err(|e| format!("read from the channel: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        fds.extend(received.drain(..));
        decoder.push(&buf[..n]);
        while let Some(payload) = decoder.next_frame().map_err(|e| e.to_string())? {
            let msg = framing::decode_value(ser, &payload).map_err(|e| e.to_string())?;
            match msg.get("cmd").and_then(Value::as_str) {
                Some("NODE_HANDLE") => {
                    // The descriptor came with the envelope's first byte. It
                    // is kept until the next one comes, by which time the
                    // primary has closed its copy (it closes on our reply,
                    // before handing us the next connection): as with a
                    // real worker, which serves the connection, the last
                    // close — the TCP teardown — is the worker's, not the
                    // primary's.
                    drop(std::mem::replace(&mut held, fds.pop_front()));
                    w.send_raw(Value::object([("cmd", Value::str("NODE_HANDLE_ACK"))]));
                    let inner = msg.get("msg");
                    if inner.and_then(|m| m.get("act")).and_then(Value::as_str) != Some("newconn") {
                        return Err(format!("unexpected handle message {msg:?}"));
                    }
                    let seq = inner.and_then(|m| m.get("seq")).cloned();
                    let seq = seq.ok_or("newconn without seq")?;
                    w.send(vec![("ack", seq), ("accepted", Value::Bool(true))]);
                }
                Some("NODE_CLUSTER") => {
                    let ack = msg.get("ack").and_then(Value::as_i64);
                    if ack == Some(query_seq as i64) {
                        let errno = msg.get("errno").and_then(Value::as_i64).unwrap_or(0);
                        if errno != 0 {
                            return Err(format!("queryServer failed: errno {errno}"));
                        }
                        w.send(server("listening", port));
                    } else if msg.get("act").and_then(Value::as_str) == Some("disconnect") {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        w.flush()?;
    }
}
