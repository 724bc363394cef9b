//! The primary's side of Node's cluster protocol as a state machine with no
//! I/O (the `quinn-proto`/`str0m` pattern): the driver feeds it [`Input`]s
//! — bytes and descriptor tokens read from a worker's channel, accepted
//! connections, opened sockets, exits, JavaScript's commands — and then
//! drains [`Protocol::poll_output`] until it returns `None`, doing what each
//! [`Output`] says: write a worker's pending frames (asked for with
//! [`Protocol::transmit`]), deliver events to JavaScript, open, accept on or
//! close descriptors. Descriptors are opaque [`FdId`] tokens the driver
//! owns; nothing here makes a syscall.
//!
//! Where each decision lives: `acts` (incoming frames and Node's cluster
//! acts), `query` (`queryServer` → a server), `opening` (servers waiting for
//! their socket), `handoff` (accepted connections → `newconn`), `reuseport`
//! (per-worker sockets and what a leaving worker leaves behind), `servers`
//! and `balance` (the registry and the policies), `outbox` (ordered frames
//! and the handle ACK gate), `workers` (the worker table), `gate` (which
//! workers get new connections), `counters` (per-worker figures for
//! `cluster.stats()`).

mod acts;
pub mod backlog;
pub mod balance;
pub mod counters;
pub mod event;
pub mod fd;
mod gate;
mod handoff;
mod opening;
pub mod outbox;
mod query;
mod reuseport;
pub mod servers;
pub mod workers;

#[cfg(test)]
mod tests;

use crate::core::codec::framing::Serialization;
use crate::core::hash::IdMap;
use backlog::Backlog;
use balance::Policy;
use event::{Event, ExitStatus};
use fd::{FdId, Handle, Released};
use outbox::Frame;
use servers::Servers;
use std::collections::VecDeque;
use std::net::IpAddr;
use workers::WorkerState;

/// Something that happened, for the protocol to act on.
#[derive(Debug)]
pub enum Input<'a> {
    /// The driver watches a new worker's channel.
    Adopted {
        id: u32,
        serialization: Serialization,
    },
    /// Bytes read from a worker's channel, with the descriptors that came
    /// along (now the protocol's).
    Received {
        id: u32,
        bytes: &'a [u8],
        fds: Vec<FdId>,
    },
    /// The channel reached end of stream or failed.
    ChannelClosed { id: u32 },
    /// The worker process ended (its channel's last bytes already received).
    Exited { id: u32, status: ExitStatus },
    /// A connection accepted on a listening socket of ours; `peer` only when
    /// asked for (`Output::Accept { peer: true }`).
    Accepted {
        listener: FdId,
        conn: FdId,
        peer: Option<IpAddr>,
    },
    /// The answer to `Output::Open`: the socket or Node's negative errno.
    Opened {
        bind: u32,
        result: Result<Opened, i64>,
    },
    /// JavaScript: a complete frame for a worker, optionally carrying a
    /// descriptor (then the frame is a `NODE_HANDLE` envelope); `callback`:
    /// JavaScript wants `Event::Written` for it.
    Send {
        id: u32,
        frame: Vec<u8>,
        fd: Option<FdId>,
        callback: bool,
    },
    /// JavaScript: `worker.disconnect()`.
    Disconnect { id: u32 },
    /// JavaScript: `worker.process.disconnect()`; the channel closes once
    /// what is queued is out.
    CloseChannel { id: u32 },
    /// JavaScript: scheduling policy, handle-key style (Node 20 keys with
    /// the listen index, Node 22+ only for port 0), and how long a
    /// primary-accepted server outlives its last worker (0: not at all, as
    /// in Node).
    Configure {
        policy: Policy,
        key_with_index: bool,
        listen_grace_ms: u64,
    },
    /// A timer asked for with `Output::Timer` expired.
    Timer { timer: u64 },
    /// JavaScript: whether worker `id` gets new connections (see
    /// [`gate`]).
    Gate { id: u32, open: bool },
    /// JavaScript took `bytes` of worker `id`'s data (as
    /// [`Event::data_len`] counts them): reading it may resume.
    Delivered { id: u32, bytes: usize },
}

/// An opened socket.
#[derive(Debug)]
pub struct Opened {
    pub fd: FdId,
    /// The bound address of an IP socket.
    pub sockname: Option<SockName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockName {
    pub address: String,
    pub ipv6: bool,
    pub port: u16,
}

/// A socket to open for a server, with Node's choices already made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenSpec {
    /// The primary's JavaScript listens with `net.Server#listen(options)`
    /// (JSON text), as Node's primary does for round-robin TCP servers.
    Js { options: String },
    /// A TCP socket; `address: None` is the dual-stack wildcard (falling
    /// back to `0.0.0.0`). `listen`: the backlog, or bind only.
    Tcp {
        address: Option<String>,
        port: u16,
        ipv6_only: bool,
        reuse_port: bool,
        listen: Option<i32>,
    },
    /// A Unix socket file; removed when its descriptor is closed.
    Pipe {
        path: String,
        listen: Option<i32>,
        readable_all: bool,
        writable_all: bool,
    },
    /// A UDP socket (`flags`: dgram's, 1 = IPv6-only, 4 = reuseaddr).
    Udp {
        address: Option<String>,
        port: u16,
        ipv6: bool,
        flags: i64,
    },
    /// A copy of a descriptor the user's code named by number.
    Adopt { fd: i32, listen: Option<i32> },
}

/// What the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Something for JavaScript.
    Event(Event),
    /// A worker's outbox has bytes: write what [`Protocol::transmit`] gives.
    Transmit { id: u32 },
    /// Close a worker's channel (the protocol no longer reads or writes it).
    CloseChannel { id: u32 },
    /// Open a socket and answer with `Input::Opened`.
    Open { bind: u32, spec: OpenSpec },
    /// Start accepting connections on a listening socket (`Input::Accepted`
    /// for each); `peer`: report the client address.
    Accept { listener: FdId, peer: bool },
    /// Stop accepting on it (the descriptor may stay open).
    StopAccept { listener: FdId },
    /// Close a descriptor token: nothing in the protocol refers to it.
    Close { fd: FdId },
    /// Answer with `Input::Timer { timer }` after `after_ms` milliseconds,
    /// unless cancelled first.
    Timer { timer: u64, after_ms: u64 },
    /// The timer is no longer needed: forget it (an `Input::Timer` for it
    /// that crossed this output is ignored).
    CancelTimer { timer: u64 },
    /// Too much of worker `id`'s data waits for JavaScript: stop reading
    /// its channel (the kernel then throttles the worker).
    PauseRead { id: u32 },
    /// JavaScript caught up: read worker `id`'s channel again.
    ResumeRead { id: u32 },
}

/// What a timer is for.
#[derive(Debug)]
pub(crate) enum TimerFor {
    /// The listen grace of the server under `key` ends.
    Grace { key: String },
}

pub struct Protocol {
    pub(crate) workers: IdMap<u32, WorkerState>,
    pub(crate) servers: Servers,
    pub(crate) policy: Policy,
    pub(crate) key_with_index: bool,
    pub(crate) listen_grace_ms: u64,
    pub(crate) timers: IdMap<u64, TimerFor>,
    next_timer: u64,
    /// Connections handed to a worker that left without answering, and
    /// passed on.
    pub(crate) rerouted: u64,
    /// Each worker's data emitted for JavaScript and not yet delivered.
    backlog: Backlog,
    seq: u64,
    outputs: VecDeque<Output>,
    released: Released,
}

impl Default for Protocol {
    fn default() -> Self {
        Self::new()
    }
}

impl Protocol {
    pub fn new() -> Protocol {
        Protocol {
            workers: IdMap::default(),
            servers: Servers::default(),
            policy: Policy::RoundRobin,
            key_with_index: true,
            listen_grace_ms: 0,
            timers: IdMap::default(),
            next_timer: 0,
            rerouted: 0,
            backlog: Backlog::default(),
            seq: 0,
            outputs: VecDeque::new(),
            released: Released::default(),
        }
    }

    pub fn handle(&mut self, input: Input<'_>) {
        match input {
            Input::Adopted { id, serialization } => {
                self.workers.insert(id, WorkerState::new(serialization));
            }
            Input::Received { id, bytes, fds } => {
                let fds: Vec<Handle> = fds.into_iter().map(|f| self.own(f)).collect();
                self.on_bytes(id, bytes, fds);
            }
            Input::ChannelClosed { id } => self.close_channel(id),
            Input::Exited { id, status } => self.on_exit(id, status),
            Input::Accepted {
                listener,
                conn,
                peer,
            } => {
                let conn = self.own(conn);
                self.on_accepted(listener, conn, peer);
            }
            Input::Opened { bind, result } => {
                let result = result.map(|o| (self.own(o.fd), o.sockname));
                self.on_opened(bind, result);
            }
            Input::Send {
                id,
                frame,
                fd,
                callback,
            } => {
                let fd = fd.map(|f| self.own(f));
                if self.workers.get(&id).is_some_and(|w| w.open) {
                    self.count(id, |c| c.messages_out += 1);
                    self.push_frame(id, Frame::from_js(frame, fd, callback), false);
                } else {
                    // Node calls it even when the write never happens.
                    self.event(Event::Written {
                        id,
                        callbacks: u32::from(callback),
                        bytes: frame.len(),
                    });
                }
            }
            Input::Disconnect { id } => self.disconnect(id),
            Input::CloseChannel { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.closing = true;
                }
                self.transmit_later(id);
            }
            Input::Configure {
                policy,
                key_with_index,
                listen_grace_ms,
            } => {
                self.policy = policy;
                self.key_with_index = key_with_index;
                self.listen_grace_ms = listen_grace_ms;
            }
            Input::Timer { timer } => {
                if let Some(TimerFor::Grace { key }) = self.timers.remove(&timer) {
                    self.end_grace(&key, timer);
                }
            }
            Input::Gate { id, open } => self.set_gate(id, open),
            Input::Delivered { id, bytes } => {
                if self.backlog.delivered(id, bytes) {
                    self.emit(Output::ResumeRead { id });
                }
            }
        }
    }

    /// Connections handed to a worker that left without answering them,
    /// and passed on to another.
    pub fn rerouted(&self) -> u64 {
        self.rerouted
    }

    pub(crate) fn start_timer(&mut self, what: TimerFor, after_ms: u64) -> u64 {
        let timer = self.next_timer;
        self.next_timer += 1;
        self.timers.insert(timer, what);
        self.emit(Output::Timer { timer, after_ms });
        timer
    }

    /// Forgets a timer started with [`Self::start_timer`].
    pub(crate) fn cancel_timer(&mut self, timer: u64) {
        if self.timers.remove(&timer).is_some() {
            self.emit(Output::CancelTimer { timer });
        }
    }

    /// The next thing to do, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(o) = self.outputs.pop_front() {
            return Some(o);
        }
        let fd = self.released.borrow_mut().pop()?;
        Some(Output::Close { fd })
    }

    /// The bytes to write next on worker `id`'s channel and the descriptor
    /// to attach to them; `None` when nothing may be written now (and then,
    /// for a channel closing after its queue, `Output::CloseChannel`).
    pub fn transmit(&mut self, id: u32) -> Option<(&[u8], Option<FdId>)> {
        let w = self.workers.get_mut(&id)?;
        if !w.open {
            return None;
        }
        if w.closing && w.outbox.is_idle() {
            self.close_channel(id);
            return None;
        }
        // Re-borrowed: the closing branch above needed `self` whole.
        self.workers.get_mut(&id)?.outbox.transmit()
    }

    /// `n` bytes of what [`Self::transmit`] returned were written.
    pub fn written(&mut self, id: u32, n: usize) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let done = w.outbox.written(n);
        w.js_unreported += done.js_bytes;
        if done.callbacks > 0 || w.js_unreported >= event::REPORT_WRITTEN {
            let bytes = std::mem::take(&mut w.js_unreported);
            self.event(Event::Written {
                id,
                callbacks: done.callbacks,
                bytes,
            });
        }
    }

    /// Takes ownership of a driver token.
    fn own(&self, fd: FdId) -> Handle {
        Handle::new(fd, &self.released)
    }

    pub(crate) fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    pub(crate) fn event(&mut self, event: Event) {
        let waiting = event.worker().map(|id| (id, event.data_len()));
        self.outputs.push_back(Output::Event(event));
        if let Some((id, bytes)) = waiting {
            self.waiting_for_js(id, bytes);
        }
    }

    /// `bytes` more of worker `id`'s data wait for JavaScript; above the
    /// bound, its channel is no longer read.
    fn waiting_for_js(&mut self, id: u32, bytes: usize) {
        if bytes > 0 && self.backlog.queued(id, bytes) {
            self.emit(Output::PauseRead { id });
        }
    }

    /// A plain user message, batched with the previous event when that is a
    /// batch from the same worker.
    pub(crate) fn message(&mut self, id: u32, json: bool, payload: &[u8]) {
        self.count(id, |c| c.messages_in += 1);
        let last = match self.outputs.back_mut() {
            Some(Output::Event(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = Event::append_message(last, id, json, payload) {
            self.outputs.push_back(Output::Event(e));
        }
        // As `Event::data_len` counts it: a JSON line with its newline.
        self.waiting_for_js(id, payload.len() + usize::from(json));
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Asks the driver to write worker `id`'s outbox (once until it does).
    pub(crate) fn transmit_later(&mut self, id: u32) {
        if let Some(w) = self.workers.get_mut(&id) {
            if !w.transmit_asked {
                w.transmit_asked = true;
                self.outputs.push_back(Output::Transmit { id });
            }
        }
    }

    /// The driver starts writing worker `id`'s outbox: later frames need a
    /// new `Output::Transmit`.
    pub fn transmitting(&mut self, id: u32) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.transmit_asked = false;
        }
    }

    /// Queues an internal frame (already encoded) for a worker.
    pub(crate) fn push_frame(&mut self, id: u32, frame: Frame, priority: bool) -> bool {
        let Some(w) = self.workers.get_mut(&id) else {
            return false;
        };
        if !w.open {
            return false;
        }
        if priority {
            w.outbox.push_priority(frame);
        } else {
            w.outbox.push(frame);
        }
        self.transmit_later(id);
        true
    }

    /// Closes a worker's channel (idempotent) and drops what it held.
    pub(crate) fn close_channel(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.open {
            return;
        }
        w.open = false;
        w.fds_in.clear();
        // Send callbacks of frames that will never be written still run,
        // as Node runs those of writes cancelled by the close.
        let lost = w.outbox.pending_js();
        let bytes = std::mem::take(&mut w.js_unreported) + lost.js_bytes;
        w.outbox = Default::default();
        w.decoder = crate::core::codec::framing::FrameDecoder::new(w.ser);
        let died = !w.exited_after_disconnect;
        if lost.callbacks > 0 || bytes > 0 {
            self.event(Event::Written {
                id,
                callbacks: lost.callbacks,
                bytes,
            });
        }
        self.emit(Output::CloseChannel { id });
        self.remove_worker_from_servers(id, died);
        self.reroute_unanswered(id);
        self.event(Event::Disconnect { id });
        self.forget_if_done(id);
    }

    fn on_exit(&mut self, id: u32, status: ExitStatus) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.alive {
            return;
        }
        w.alive = false;
        self.close_channel(id);
        self.event(Event::Exit { id, status });
        self.forget_if_done(id);
    }

    fn forget_if_done(&mut self, id: u32) {
        if self.workers.get(&id).is_some_and(|w| !w.open && !w.alive) {
            self.workers.remove(&id);
            self.backlog.forget(id);
        }
    }

    fn disconnect(&mut self, id: u32) {
        let connected = match self.workers.get_mut(&id) {
            Some(w) => {
                w.exited_after_disconnect = true;
                w.connected()
            }
            None => false,
        };
        if connected {
            let msg = crate::core::codec::value::Value::object([("act", "disconnect".into())]);
            self.send_cluster(id, msg, None);
        }
        self.remove_worker_from_servers(id, false);
    }

    /// What the protocol holds, for bounds and leak checks.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint {
            workers: self.workers.len(),
            servers: self.servers.by_key.len() + self.servers.orphans.len(),
            in_flight: self.workers.values().map(|w| w.handoffs.len()).sum(),
            queued_frames: self.workers.values().map(|w| w.outbox.frames()).sum(),
            held_fds: self.workers.values().map(|w| w.fds_in.len()).sum(),
            buffered_bytes: self.workers.values().map(|w| w.decoder.buffered()).sum(),
        };
        f.servers += self.servers.replacing.len();
        f
    }
}

impl Protocol {
    /// Checks what must hold between any two inputs; the first broken rule,
    /// if any. No connection is both in flight and queued, or queued twice;
    /// no connection is in flight to a worker whose channel closed; every listener
    /// accepted on names a registered server.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let mut lanes = std::collections::HashSet::new();
        let in_flight = self
            .workers
            .iter()
            .flat_map(|(id, w)| w.handoffs.iter().map(move |c| (*id, w, c)));
        for (worker, w, c) in in_flight {
            if !seen.insert(c.conn.fd.id()) {
                return Err(format!("connection {:?} in flight twice", c.conn.fd));
            }
            // Per server, not per key: a replaced server (Node 22+
            // re-listen) shares its key with its replacement.
            if !lanes.insert((worker, c.server)) {
                return Err(format!(
                    "worker {worker} has two newconns of {} in flight",
                    c.key
                ));
            }
            if !w.open {
                return Err(format!(
                    "newconn {} in flight to worker {worker}, whose channel is closed",
                    c.seq
                ));
            }
        }
        let entries = self
            .servers
            .by_key
            .values()
            .chain(self.servers.orphans.iter().map(|(_, e)| e));
        for entry in entries {
            let queued: Box<dyn Iterator<Item = &servers::Conn>> = match &entry.server {
                servers::Server::Accepting(s) => s.balancer.queued(),
                servers::Server::ReusePort(s) => Box::new(s.balancer.queued()),
                _ => Box::new(std::iter::empty()),
            };
            for c in queued {
                if !seen.insert(c.fd.id()) {
                    return Err(format!("connection {:?} both in flight and queued", c.fd));
                }
            }
        }
        for (listener, key) in &self.servers.listeners {
            if !self.servers.by_key.contains_key(&**key) {
                return Err(format!("listener {listener:?} for a closed server {key}"));
            }
        }
        // A running timer belongs to a server in its grace, and only to it.
        for (timer, what) in &self.timers {
            let TimerFor::Grace { key } = what;
            let graced = matches!(
                self.servers.by_key.get(key.as_str()).map(|e| &e.server),
                Some(servers::Server::Accepting(s)) if s.grace == Some(*timer)
            );
            if !graced {
                return Err(format!("timer {timer} runs for {key}, not in its grace"));
            }
        }
        Ok(())
    }
}

/// Sizes of what the protocol holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub workers: usize,
    pub servers: usize,
    pub in_flight: usize,
    pub queued_frames: usize,
    pub held_fds: usize,
    pub buffered_bytes: usize,
}
