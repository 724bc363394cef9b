//! The I/O thread: one epoll loop owning every worker channel, exit
//! notification and listening socket. Commands arrive through a channel plus
//! an eventfd wake-up; events leave in one batch per loop turn.

use crate::core::balance::Policy;
use crate::core::event::{Command, Event};
use crate::core::framing::{FrameDecoder, Serialization};
use crate::core::outbox::{AckOutcome, Frame, Outbox};
use crate::core::poller::{Poller, Ready, READ, WRITE};
use crate::core::servers::Servers;
use crate::core::waker::Waker;
use crate::core::{scm, spawn, sys};
use crossbeam_channel::Receiver;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};

const KIND_WAKER: u64 = 1;
const KIND_CHANNEL: u64 = 2;
const KIND_PIDFD: u64 = 3;
const KIND_LISTENER: u64 = 4;

pub fn token(kind: u64, n: u64) -> u64 {
    (kind << 56) | n
}

pub fn listener_token(n: u64) -> u64 {
    token(KIND_LISTENER, n)
}

/// Receives each batch of events, on the I/O thread.
pub type Sink = Box<dyn FnMut(Vec<Event>) + Send>;

/// Exit-notification descriptors, shared with the JavaScript thread so it can
/// signal a worker without racing the reaper.
pub type PidFds = Arc<Mutex<HashMap<u32, Arc<OwnedFd>>>>;

/// How each launch ended (pid, or errno), until the JavaScript thread has
/// asked; the condvar wakes a thread waiting for a pid.
pub type Launches = Arc<(Mutex<HashMap<u32, Result<i32, i32>>>, Condvar)>;

pub struct WorkerConn {
    pub pid: i32,
    pub ser: Serialization,
    channel: Option<OwnedFd>,
    decoder: FrameDecoder,
    pub outbox: Outbox,
    interest: u32,
    fds_in: VecDeque<OwnedFd>,
    pidfd: Option<Arc<OwnedFd>>,
    /// Set by `worker.disconnect()` or the worker's own announcement; a
    /// disconnecting worker's `queryServer` is ignored, as in Node.
    pub exited_after_disconnect: bool,
    closing: bool,
}

impl WorkerConn {
    pub fn connected(&self) -> bool {
        self.channel.is_some() && !self.closing
    }
}

pub struct Reactor {
    poller: Poller,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    sink: Sink,
    pidfds: PidFds,
    launches: Launches,
    pub workers: HashMap<u32, WorkerConn>,
    pub servers: Servers,
    pub events: Vec<Event>,
    pub policy: Policy,
    pub key_with_index: bool,
    seq: u64,
    dirty: Vec<u32>,
    shutdown: bool,
    buf: Vec<u8>,
}

impl Reactor {
    pub fn new(
        waker: Arc<Waker>,
        commands: Receiver<Command>,
        sink: Sink,
        pidfds: PidFds,
        launches: Launches,
    ) -> io::Result<Reactor> {
        let poller = Poller::new()?;
        poller.add(waker.as_raw_fd(), READ, token(KIND_WAKER, 0))?;
        Ok(Reactor {
            poller,
            waker,
            commands,
            sink,
            pidfds,
            launches,
            workers: HashMap::new(),
            servers: Servers::default(),
            events: Vec::new(),
            policy: Policy::RoundRobin,
            key_with_index: true,
            seq: 0,
            dirty: Vec::new(),
            shutdown: false,
            buf: vec![0u8; 64 * 1024],
        })
    }

    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    pub fn run(mut self) {
        while !self.shutdown {
            let ready = match self.poller.wait(-1) {
                Ok(r) => r,
                // epoll_wait fails only on a broken epoll fd: nothing can be
                // served any more, so stop the thread instead of spinning.
                Err(_) => break,
            };
            for r in ready {
                self.dispatch(r);
            }
            self.flush_dirty();
            if !self.events.is_empty() {
                let batch = std::mem::take(&mut self.events);
                (self.sink)(batch);
            }
        }
    }

    fn dispatch(&mut self, r: Ready) {
        let kind = r.token >> 56;
        let n = r.token & ((1 << 56) - 1);
        match kind {
            KIND_WAKER => {
                self.waker.reset();
                while let Ok(cmd) = self.commands.try_recv() {
                    self.command(cmd);
                }
            }
            KIND_CHANNEL => {
                let id = n as u32;
                if r.readable || r.hangup {
                    self.read_channel(id, false);
                }
                if r.writable {
                    self.mark_dirty(id);
                }
            }
            KIND_PIDFD => self.on_pidfd(n as u32),
            KIND_LISTENER => self.on_listener(n),
            _ => {}
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Adopt {
                id,
                pid,
                pidfd,
                channel,
                serialization,
            } => self.adopt(id, pid, pidfd, channel, serialization),
            Command::Launch {
                id,
                spec,
                channel,
                child,
                serialization,
            } => {
                let outcome = match spawn::launch(&spec, child) {
                    Ok(l) => {
                        self.adopt(id, l.pid, l.pidfd, channel, serialization);
                        Ok(l.pid)
                    }
                    Err(e) => {
                        let errno = e.errno().unwrap_or(libc::EINVAL);
                        self.events.push(Event::SpawnFailed {
                            id,
                            errno,
                            message: e.to_string(),
                        });
                        Err(errno)
                    }
                };
                let (map, ready) = &*self.launches;
                if let Ok(mut m) = map.lock() {
                    m.insert(id, outcome);
                }
                ready.notify_all();
            }
            Command::Send { id, frame, fd } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    if w.channel.is_some() {
                        w.outbox.push(Frame {
                            bytes: frame,
                            fd: fd.map(Rc::new),
                        });
                        self.mark_dirty(id);
                    }
                }
            }
            Command::Disconnect { id } => {
                let connected = match self.workers.get_mut(&id) {
                    Some(w) => {
                        w.exited_after_disconnect = true;
                        w.connected()
                    }
                    None => false,
                };
                if connected {
                    let msg = crate::core::value::Value::object([("act", "disconnect".into())]);
                    self.send_cluster(id, msg, None);
                }
                self.remove_worker_from_servers(id);
            }
            Command::CloseChannel { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.closing = true;
                }
                self.mark_dirty(id);
            }
            Command::Configure {
                policy,
                key_with_index,
            } => {
                self.policy = policy;
                self.key_with_index = key_with_index;
            }
            Command::Listened { bind, result } => self.on_listened(bind, result),
            Command::Flush(done) => {
                self.flush_dirty();
                let _ = done.send(());
            }
            Command::Shutdown => self.shutdown = true,
        }
    }

    fn adopt(&mut self, id: u32, pid: i32, pidfd: OwnedFd, channel: OwnedFd, ser: Serialization) {
        let pidfd = Arc::new(pidfd);
        if let Ok(mut map) = self.pidfds.lock() {
            map.insert(id, pidfd.clone());
        }
        // Registration fails only when the kernel is out of memory; the
        // worker is then unusable and reported as such.
        let reg = self
            .poller
            .add(channel.as_raw_fd(), READ, token(KIND_CHANNEL, id as u64))
            .and_then(|_| {
                self.poller
                    .add(pidfd.as_raw_fd(), READ, token(KIND_PIDFD, id as u64))
            });
        if let Err(e) = reg {
            self.events.push(Event::Error {
                id,
                code: "ERR_CLUSTER_REACTOR",
                message: format!("cannot watch worker {id}: {e}"),
            });
        }
        self.workers.insert(
            id,
            WorkerConn {
                pid,
                ser,
                channel: Some(channel),
                decoder: FrameDecoder::new(ser),
                outbox: Outbox::default(),
                interest: READ,
                fds_in: VecDeque::new(),
                pidfd: Some(pidfd),
                exited_after_disconnect: false,
                closing: false,
            },
        );
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    pub fn mark_dirty(&mut self, id: u32) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }

    /// Queues an internal frame (already encoded) for a worker.
    pub fn push_frame(&mut self, id: u32, frame: Frame, priority: bool) -> bool {
        let Some(w) = self.workers.get_mut(&id) else {
            return false;
        };
        if w.channel.is_none() {
            return false;
        }
        if priority {
            w.outbox.push_priority(frame);
        } else {
            w.outbox.push(frame);
        }
        self.mark_dirty(id);
        true
    }

    fn flush_dirty(&mut self) {
        while let Some(id) = self.dirty.pop() {
            let Some(w) = self.workers.get_mut(&id) else {
                continue;
            };
            let Some(ch) = w.channel.as_ref() else {
                continue;
            };
            let fd = ch.as_raw_fd();
            if let Err(e) = w.outbox.flush(fd) {
                // EPIPE/ECONNRESET: the worker is gone; its exit follows.
                let _ = e;
                self.close_channel(id);
                continue;
            }
            if w.closing && w.outbox.is_idle() {
                self.close_channel(id);
                continue;
            }
            let want = if w.outbox.wants_write() {
                READ | WRITE
            } else {
                READ
            };
            if want != w.interest {
                w.interest = want;
                let _ = self.poller.modify(fd, want, token(KIND_CHANNEL, id as u64));
            }
        }
    }

    /// Reads what the worker wrote. A short read usually means the socket is
    /// drained, and level-triggered epoll reports anything that is not, so
    /// the loop stops there and saves the EAGAIN round trip, unless `drain`
    /// asks for everything now (the worker has exited).
    fn read_channel(&mut self, id: u32, drain: bool) {
        let mut eof = false;
        loop {
            let Some(w) = self.workers.get_mut(&id) else {
                return;
            };
            let Some(ch) = w.channel.as_ref() else {
                return;
            };
            let mut fds = Vec::new();
            match scm::recv(ch.as_raw_fd(), &mut self.buf, &mut fds) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    w.decoder.push(&self.buf[..n]);
                    w.fds_in.extend(fds);
                    self.process_frames(id);
                    if n < self.buf.len() && !drain {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            self.close_channel(id);
        }
    }

    fn process_frames(&mut self, id: u32) {
        loop {
            let Some(w) = self.workers.get_mut(&id) else {
                return;
            };
            match w.decoder.next_frame() {
                Ok(Some(payload)) => self.on_frame(id, payload),
                Ok(None) => break,
                Err(e) => {
                    // The stream can no longer be split into frames: report
                    // it and stop reading this worker rather than guess.
                    self.events.push(Event::Error {
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
                self.events.push(Event::Error {
                    id,
                    code: "ERR_CLUSTER_STRAY_HANDLE",
                    message: format!(
                        "worker {id} sent {n} file descriptor(s) outside a NODE_HANDLE message; closed"
                    ),
                });
            }
        }
    }

    /// Takes the oldest descriptor received from the worker.
    pub fn take_fd(&mut self, id: u32) -> Option<OwnedFd> {
        self.workers.get_mut(&id)?.fds_in.pop_front()
    }

    pub fn ack(&mut self, id: u32, ok: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        match w.outbox.on_ack(ok) {
            AckOutcome::GaveUp => self.events.push(Event::Warning {
                id,
                code: "SentHandleNotReceivedWarning",
                message: "Handle did not reach the receiving process correctly".into(),
            }),
            AckOutcome::Unexpected => self.events.push(Event::Error {
                id,
                code: "ERR_CLUSTER_UNEXPECTED_ACK",
                message: format!("worker {id} acknowledged a handle that was never sent"),
            }),
            AckOutcome::Acked | AckOutcome::Retransmitting => {}
        }
        self.mark_dirty(id);
    }

    /// Closes a worker's channel (idempotent) and drops what it held.
    pub fn close_channel(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(ch) = w.channel.take() else {
            return;
        };
        self.poller.remove(ch.as_raw_fd());
        drop(ch);
        w.fds_in.clear();
        w.outbox = Outbox::default();
        self.remove_worker_from_servers(id);
        self.events.push(Event::Disconnect { id });
        self.forget_if_done(id);
    }

    fn on_pidfd(&mut self, id: u32) {
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        let pid = w.pid;
        let status = match sys::try_reap(pid) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            // ECHILD: someone else reaped it (a stray waitpid(-1) in the
            // process). It is gone and its status is lost; report it as
            // killed rather than keep the worker alive forever.
            Err(_) => sys::ExitStatus::Signal(libc::SIGKILL),
        };
        if let Some(w) = self.workers.get_mut(&id) {
            if let Some(p) = w.pidfd.take() {
                self.poller.remove(p.as_raw_fd());
            }
        }
        if let Ok(mut map) = self.pidfds.lock() {
            map.remove(&id);
        }
        // Everything the worker wrote before dying is already in the socket:
        // deliver it, then the disconnect, then the exit.
        self.read_channel(id, true);
        self.close_channel(id);
        self.events.push(Event::Exit { id, status });
        self.forget_if_done(id);
    }

    fn forget_if_done(&mut self, id: u32) {
        if let Some(w) = self.workers.get(&id) {
            if w.channel.is_none() && w.pidfd.is_none() {
                self.workers.remove(&id);
            }
        }
    }
}
