//! The I/O thread's loop: a `current_thread` tokio runtime with one task per
//! worker channel (reading), per worker exit (its pidfd), per listening
//! socket accepted on, and one for JavaScript's commands. Every task feeds
//! what it read into the protocol and performs what the protocol outputs;
//! a last task runs after the others' turn and writes the channels that
//! have frames pending, then hands JavaScript the turn's events in one
//! batch. Writes that do not fit wait for writability in a per-worker
//! writer task.
//!
//! No `tokio::process`/`tokio::signal` (libuv owns `SIGCHLD` in this
//! process and does not chain handlers): exits are seen on pidfds. No
//! `TcpListener`: accepted connections are only passed on, so they are
//! never registered with the reactor.

use crate::core::codec::framing::Serialization;
use crate::core::io::activation::Activation;
use crate::core::io::fds::Fds;
use crate::core::io::open::{neg_errno, open, sockname};
use crate::core::io::spawn;
use crate::core::io::{
    procfs, scm, sockets, sys, Command, Flow, Launches, PidFds, Sink, StatsReport, WorkerReport,
};
use crate::core::protocol::event::{Event, ExitStatus};
use crate::core::protocol::fd::FdId;
use crate::core::protocol::{Input, OpenSpec, Opened, Output, Protocol};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, LocalSet};

/// How many connections one wake-up of a listener accepts before other
/// tasks get their turn.
const ACCEPT_BATCH: usize = 64;

/// How many full reads of one channel before other tasks get their turn.
const READ_BATCH: usize = 16;

const READ_BUFFER: usize = 64 * 1024;

/// Most message bytes in one batch for JavaScript: it decodes a batch at
/// once, so a larger one would only make its heap grow after a busy spell
/// (the rest waits here, within the read backlog's bound).
const BATCH_BYTES: usize = 64 * 1024;

/// Registers a descriptor with the reactor.
fn watch<T: AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: every `T` used here owns the descriptor (or a counted share
    // of it), so it stays open and names the same file description for as
    // long as the `AsyncFd` holds it.
    Ok(unsafe { AsyncFd::register_with_interest(inner, interest) }?)
}

/// One worker's channel and the tasks that read and write it (the exit
/// watcher ends by itself).
struct WorkerIo {
    channel: RefCell<Option<Rc<AsyncFd<OwnedFd>>>>,
    /// Wakes the writer task after a write found the socket full.
    blocked: Notify,
    /// Reading waits: too much of this worker's data waits for JavaScript.
    paused: Cell<bool>,
    resumed: Notify,
    tasks: RefCell<Vec<JoinHandle<()>>>,
}

impl WorkerIo {
    fn channel(&self) -> Option<Rc<AsyncFd<OwnedFd>>> {
        self.channel.borrow().clone()
    }

    /// Stops reading and writing; the channel closes once the aborted
    /// tasks have let go of it.
    fn close(&self) {
        self.channel.borrow_mut().take();
        for t in self.tasks.borrow_mut().drain(..) {
            t.abort();
        }
    }
}

#[derive(PartialEq, Eq)]
enum Read {
    /// Nothing more to read now.
    Drained,
    /// Stopped after a batch; more may be waiting.
    More,
    Closed,
}

#[derive(PartialEq, Eq)]
enum Write {
    Done,
    Blocked,
}

struct Driver {
    protocol: RefCell<Protocol>,
    fds: RefCell<Fds>,
    workers: RefCell<HashMap<u32, Rc<WorkerIo>>>,
    /// Events for JavaScript, sent at the end of the turn.
    batch: RefCell<Vec<Event<OwnedFd>>>,
    /// Workers with frames to write at the end of the turn.
    dirty: RefCell<Vec<u32>>,
    turn_end: Notify,
    sink: RefCell<Sink>,
    pidfds: PidFds,
    launches: Launches,
    flow: Flow,
    /// Each live worker's pid, for its `/proc` figures.
    pids: RefCell<HashMap<u32, i32>>,
    /// Sockets passed by a service manager, used instead of binding.
    activation: RefCell<Activation>,
    /// Where timer threads send their expiry.
    timers: UnboundedSender<Command>,
    shutdown: Cell<bool>,
}

/// Runs the I/O thread until `Command::Shutdown` or until every sender of
/// commands is gone.
pub fn run(
    runtime: &Runtime,
    commands: UnboundedReceiver<Command>,
    sink: Sink,
    pidfds: PidFds,
    launches: Launches,
    flow: Flow,
    timers: UnboundedSender<Command>,
) {
    let driver = Rc::new(Driver {
        protocol: RefCell::new(Protocol::new()),
        fds: RefCell::default(),
        workers: RefCell::default(),
        batch: RefCell::default(),
        dirty: RefCell::default(),
        turn_end: Notify::new(),
        sink: RefCell::new(sink),
        pidfds,
        launches,
        flow,
        activation: RefCell::default(),
        pids: RefCell::default(),
        timers,
        shutdown: Cell::new(false),
    });
    let local = LocalSet::new();
    let d = driver.clone();
    local.spawn_local(async move {
        loop {
            d.turn_end.notified().await;
            d.end_turn();
        }
    });
    local.block_on(runtime, driver.clone().commands(commands));
    // Tasks hold the driver; dropping the set drops them and it.
    drop(local);
}

impl Driver {
    async fn commands(self: Rc<Self>, mut rx: UnboundedReceiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            self.command(cmd);
            // Everything already queued joins this turn.
            while let Ok(cmd) = rx.try_recv() {
                self.command(cmd);
            }
            if self.shutdown.get() {
                self.end_turn();
                break;
            }
            self.write_dirty();
        }
    }

    fn command(self: &Rc<Self>, cmd: Command) {
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
                        self.event(Event::SpawnFailed {
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
            Command::Send {
                id,
                frame,
                fd,
                callback,
            } => {
                let fd = fd.map(|fd| self.fds.borrow_mut().insert(fd));
                self.input(Input::Send {
                    id,
                    frame,
                    fd,
                    callback,
                });
            }
            Command::Resume { id } => {
                if let Some(w) = self.workers.borrow().get(&id) {
                    w.paused.set(false);
                    w.resumed.notify_one();
                }
            }
            Command::Disconnect { id } => self.input(Input::Disconnect { id }),
            Command::CloseChannel { id } => self.input(Input::CloseChannel { id }),
            Command::Configure {
                policy,
                key_with_index,
                listen_grace_ms,
            } => self.input(Input::Configure {
                policy,
                key_with_index,
                listen_grace_ms,
            }),
            Command::Listened { bind, result } => {
                let result = result.map(|fd| self.opened(fd, None));
                self.input(Input::Opened { bind, result });
            }
            Command::Flush(done) => {
                self.write_dirty();
                let _ = done.send(());
            }
            Command::Timer { timer } => self.input(Input::Timer { timer }),
            Command::Gate { id, open } => self.input(Input::Gate { id, open }),
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Activate { fds } => {
                self.activation.borrow_mut().adopt(&fds);
            }
            Command::Deliver => self.turn_end.notify_one(),
            Command::Shutdown => self.shutdown.set(true),
        }
    }

    /// The protocol's counters with each worker's `/proc` figures.
    fn stats(&self) -> StatsReport {
        let pids = self.pids.borrow();
        let workers = self
            .protocol
            .borrow()
            .counters()
            .into_iter()
            .map(|counters| {
                let pid = pids.get(&counters.id).copied();
                WorkerReport {
                    usage: pid.and_then(|p| procfs::usage(Some(p))),
                    pid,
                    counters,
                }
            })
            .collect();
        StatsReport {
            primary: procfs::usage(None),
            workers,
        }
    }

    /// Registers an opened socket and describes it for the protocol.
    fn opened(&self, fd: OwnedFd, unlink: Option<std::path::PathBuf>) -> Opened {
        let sockname = sockname(fd.as_raw_fd());
        let fd = self.fds.borrow_mut().insert_bound(fd, unlink);
        Opened { fd, sockname }
    }

    fn adopt(
        self: &Rc<Self>,
        id: u32,
        pid: i32,
        pidfd: OwnedFd,
        channel: OwnedFd,
        ser: Serialization,
    ) {
        let pidfd = Arc::new(pidfd);
        if let Ok(mut map) = self.pidfds.lock() {
            map.insert(id, pidfd.clone());
        }
        // Registration fails only when the kernel is out of memory; the
        // worker is then unusable and reported as such.
        if let Err(e) = sys::set_nonblocking(channel.as_raw_fd(), true) {
            return self.watch_failed(id, e);
        }
        let channel = match watch(channel, Interest::READABLE) {
            Ok(c) => Rc::new(c),
            Err(e) => return self.watch_failed(id, e),
        };
        let exit = match watch(pidfd, Interest::READABLE) {
            Ok(e) => e,
            Err(e) => return self.watch_failed(id, e),
        };
        let w = Rc::new(WorkerIo {
            channel: RefCell::new(Some(channel)),
            blocked: Notify::new(),
            paused: Cell::new(false),
            resumed: Notify::new(),
            tasks: RefCell::default(),
        });
        self.workers.borrow_mut().insert(id, w.clone());
        self.pids.borrow_mut().insert(id, pid);
        self.input(Input::Adopted {
            id,
            serialization: ser,
        });
        let tasks = [
            tokio::task::spawn_local(self.clone().reader(id, w.clone())),
            tokio::task::spawn_local(self.clone().writer(id, w.clone())),
        ];
        w.tasks.borrow_mut().extend(tasks);
        tokio::task::spawn_local(self.clone().exit_watch(id, pid, exit));
    }

    fn watch_failed(&self, id: u32, e: io::Error) {
        self.event(Event::Error {
            id,
            code: "ERR_CLUSTER_REACTOR",
            message: format!("cannot watch worker {id}: {e}"),
        });
    }

    /// Feeds one input to the protocol and performs what follows from it.
    fn input(self: &Rc<Self>, input: Input<'_>) {
        self.protocol.borrow_mut().handle(input);
        self.drain();
    }

    /// An event for JavaScript, sent at the end of the turn (or once
    /// JavaScript has taken the batch before). A worker's messages join its
    /// messages before them when nothing came between.
    fn event(&self, e: Event<OwnedFd>) {
        if let Some(id) = e.worker() {
            if self.flow.waiting(id, e.data_len()) {
                if let Some(w) = self.workers.borrow().get(&id) {
                    w.paused.set(true);
                }
            }
        }
        let mut batch = self.batch.borrow_mut();
        let e = match batch.last_mut().filter(|l| l.data_len() < BATCH_BYTES) {
            Some(last) => match last.merge(e) {
                Ok(()) => return self.turn_end.notify_one(),
                Err(e) => e,
            },
            None => e,
        };
        batch.push(e);
        drop(batch);
        self.turn_end.notify_one();
    }

    fn drain(self: &Rc<Self>) {
        loop {
            let out = self.protocol.borrow_mut().poll_output();
            let Some(out) = out else {
                return;
            };
            self.perform(out);
        }
    }

    fn perform(self: &Rc<Self>, out: Output) {
        match out {
            Output::Event(e) => {
                let e = e.map_fd(|fd| self.fds.borrow_mut().take(fd));
                self.event(e);
            }
            Output::Transmit { id } => {
                let mut dirty = self.dirty.borrow_mut();
                if !dirty.contains(&id) {
                    dirty.push(id);
                }
            }
            Output::CloseChannel { id } => {
                self.flow.closed(id);
                let w = self.workers.borrow().get(&id).cloned();
                if let Some(w) = w {
                    w.close();
                }
            }
            Output::Timer { timer, after_ms } => {
                // Timers are rare (a listen grace): a sleeping thread each
                // keeps the runtime free of a time driver, which would read
                // the clock at every turn.
                let tx = self.timers.clone();
                let _ = std::thread::Builder::new()
                    .name("native-cluster-timer".into())
                    .spawn(move || {
                        std::thread::sleep(std::time::Duration::from_millis(after_ms));
                        let _ = tx.send(Command::Timer { timer });
                    });
            }
            Output::Open { bind, spec } => self.open(bind, spec),
            Output::Accept { listener, peer } => self.accept_on(listener, peer),
            Output::StopAccept { listener } => self.fds.borrow_mut().stop_acceptor(listener),
            Output::Close { fd } => {
                self.fds.borrow_mut().close(fd);
            }
        }
    }

    /// Opens a server's socket: a passed one (socket activation) if it
    /// matches, else JavaScript listens (Node's round-robin way) or we bind.
    fn open(self: &Rc<Self>, bind: u32, spec: OpenSpec) {
        let passed = self.activation.borrow().find(&spec);
        let result = match (passed, spec) {
            (Some(found), _) => found
                .map(|fd| self.opened(fd, None))
                .map_err(|e| neg_errno(&e)),
            (None, OpenSpec::Js { options }) => {
                return self.event(Event::Listen { bind, options });
            }
            (None, spec) => open(&spec)
                .map(|o| self.opened(o.fd, o.unlink))
                .map_err(|e| neg_errno(&e)),
        };
        self.protocol
            .borrow_mut()
            .handle(Input::Opened { bind, result });
    }

    /// The end of a turn: write what is pending, then hand JavaScript the
    /// turn's events.
    fn end_turn(self: &Rc<Self>) {
        self.write_dirty();
        if self.batch.borrow().is_empty() || !self.flow.may_hand() {
            return;
        }
        let batch = {
            let mut held = self.batch.borrow_mut();
            let mut bytes = 0;
            let cut = held
                .iter()
                .position(|e| {
                    bytes += e.data_len();
                    bytes >= BATCH_BYTES
                })
                .map_or(held.len(), |i| i + 1);
            let rest = held.split_off(cut);
            // The rest goes once JavaScript has taken this part.
            if !rest.is_empty() && !self.flow.hold() {
                self.turn_end.notify_one();
            }
            std::mem::replace(&mut *held, rest)
        };
        (self.sink.borrow_mut())(batch);
    }

    fn write_dirty(self: &Rc<Self>) {
        loop {
            let ids = std::mem::take(&mut *self.dirty.borrow_mut());
            if ids.is_empty() {
                return;
            }
            for id in ids {
                if self.write(id) == Write::Blocked {
                    if let Some(w) = self.workers.borrow().get(&id) {
                        w.blocked.notify_one();
                    }
                }
            }
        }
    }

    /// Writes worker `id`'s pending frames until done or the socket is full.
    fn write(self: &Rc<Self>, id: u32) -> Write {
        let Some(ch) = self.workers.borrow().get(&id).and_then(|w| w.channel()) else {
            return Write::Done;
        };
        let mut failed = false;
        let mut status = Write::Done;
        {
            let mut p = self.protocol.borrow_mut();
            p.transmitting(id);
            let fds = self.fds.borrow();
            while let Some((bytes, fd)) = p.transmit(id) {
                let raw = match fd {
                    Some(token) => match fds.raw(token) {
                        Some(raw) => Some(raw),
                        None => {
                            // Cannot happen while the outbox holds the
                            // token; sending the frame without it would
                            // desynchronise the worker, so give up on it.
                            failed = true;
                            break;
                        }
                    },
                    None => None,
                };
                match scm::send(ch.as_raw_fd(), bytes, raw) {
                    Ok(n) => self.flow.written(id, p.written(id, n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        status = Write::Blocked;
                        break;
                    }
                    // EPIPE/ECONNRESET: the worker is gone; its exit follows.
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            self.input(Input::ChannelClosed { id });
        } else {
            self.drain();
        }
        status
    }

    /// Reads a worker's channel; `drain`: to the end (the worker exited).
    fn read(self: &Rc<Self>, id: u32, fd: RawFd, buf: &mut [u8], drain: bool) -> Read {
        let mut reads = 0;
        while drain || reads < READ_BATCH {
            reads += 1;
            let mut received = Vec::new();
            match scm::recv(fd, buf, &mut received) {
                Ok(0) => {
                    self.input(Input::ChannelClosed { id });
                    return Read::Closed;
                }
                Ok(n) => {
                    let got_fds = !received.is_empty();
                    let fds = {
                        let mut table = self.fds.borrow_mut();
                        received.into_iter().map(|f| table.insert(f)).collect()
                    };
                    self.input(Input::Received {
                        id,
                        bytes: &buf[..n],
                        fds,
                    });
                    // A short read without descriptors means the socket was
                    // empty (a read stops early only after a message that
                    // carried descriptors), which saves the EAGAIN round
                    // trip.
                    if n < buf.len() && !got_fds && !drain {
                        return Read::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.input(Input::ChannelClosed { id });
                    return Read::Closed;
                }
            }
        }
        Read::More
    }

    async fn reader(self: Rc<Self>, id: u32, w: Rc<WorkerIo>) {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            if w.paused.get() {
                // Until JavaScript catches up; the kernel holds the rest
                // and, once its buffer is full, throttles the worker.
                w.resumed.notified().await;
                continue;
            }
            let Some(ch) = w.channel() else {
                return;
            };
            let mut guard = match ch.readable().await {
                Ok(g) => g,
                Err(_) => {
                    self.input(Input::ChannelClosed { id });
                    return;
                }
            };
            let read = self.read(id, ch.as_raw_fd(), &mut buf, false);
            self.write_dirty();
            match read {
                Read::Drained => guard.clear_ready(),
                Read::More => {
                    drop(guard);
                    tokio::task::yield_now().await;
                }
                Read::Closed => return,
            }
        }
    }

    /// Waits for writability after a write found the socket full. The
    /// channel is watched for it only meanwhile, through a copy of its
    /// descriptor: watched all the time, every read by the worker would
    /// wake the thread for nothing.
    async fn writer(self: Rc<Self>, id: u32, w: Rc<WorkerIo>) {
        loop {
            w.blocked.notified().await;
            let Some(ch) = w.channel() else {
                return;
            };
            let copy = sys::dup_cloexec(ch.as_raw_fd());
            drop(ch);
            let Ok(afd) = copy.and_then(|fd| watch(fd, Interest::WRITABLE)) else {
                // Out of descriptors: the frames could never be written.
                self.input(Input::ChannelClosed { id });
                return;
            };
            loop {
                let Ok(mut guard) = afd.writable().await else {
                    return;
                };
                if self.write(id) == Write::Done {
                    break;
                }
                guard.clear_ready();
            }
            drop(afd);
        }
    }

    async fn exit_watch(self: Rc<Self>, id: u32, pid: i32, exit: AsyncFd<Arc<OwnedFd>>) {
        let status = loop {
            let Ok(mut guard) = exit.readable().await else {
                return;
            };
            match sys::try_reap(pid) {
                Ok(Some(status)) => break status,
                Ok(None) => guard.clear_ready(),
                // ECHILD: someone else reaped it (a stray waitpid(-1) in the
                // process). It is gone and its status is lost; report it as
                // killed rather than keep the worker alive forever.
                Err(_) => break ExitStatus::Signal(libc::SIGKILL),
            }
        };
        drop(exit);
        if let Ok(mut map) = self.pidfds.lock() {
            map.remove(&id);
        }
        self.pids.borrow_mut().remove(&id);
        // Everything the worker wrote before dying is already in the socket:
        // deliver it, then the disconnect, then the exit.
        let w = self.workers.borrow_mut().remove(&id);
        if let Some(w) = w {
            if let Some(ch) = w.channel() {
                let mut buf = vec![0u8; READ_BUFFER];
                self.read(id, ch.as_raw_fd(), &mut buf, true);
            }
            w.close();
        }
        self.input(Input::Exited { id, status });
        self.write_dirty();
    }

    fn accept_on(self: &Rc<Self>, listener: FdId, peer: bool) {
        let fd = {
            let fds = self.fds.borrow();
            if fds.accepting(listener) {
                return;
            }
            match fds.shared(listener) {
                Some(fd) => fd,
                None => return,
            }
        };
        // A socket nobody listened on (a reuseport worker left before it
        // listened) has nothing to accept; polling it would spin.
        if !sockets::is_listening(fd.as_raw_fd()) {
            return;
        }
        let Ok(afd) = watch(fd, Interest::READABLE) else {
            return;
        };
        let task = tokio::task::spawn_local(self.clone().acceptor(listener, afd, peer));
        self.fds.borrow_mut().set_acceptor(listener, task);
    }

    async fn acceptor(self: Rc<Self>, listener: FdId, afd: AsyncFd<Rc<OwnedFd>>, peer: bool) {
        loop {
            let Ok(mut guard) = afd.readable().await else {
                return;
            };
            let mut accepted = 0;
            while accepted < ACCEPT_BATCH {
                match sockets::accept(afd.as_raw_fd(), peer) {
                    Ok((conn, peer)) => {
                        accepted += 1;
                        let conn = self.fds.borrow_mut().insert(conn);
                        self.input(Input::Accepted {
                            listener,
                            conn,
                            peer,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        guard.clear_ready();
                        break;
                    }
                    // The client gave up before we took it: next one.
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                    // EMFILE and the like: this connection is skipped, as
                    // Node does; the next arrival wakes us again.
                    Err(_) => {
                        guard.clear_ready();
                        break;
                    }
                }
            }
            self.write_dirty();
            if accepted == ACCEPT_BATCH {
                drop(guard);
                tokio::task::yield_now().await;
            }
        }
    }
}
