//! The I/O thread's loop: one future, run by a `current_thread` tokio
//! runtime's `block_on`, that owns every source of events — JavaScript's
//! commands, each worker's channel and pidfd, a channel's writability while
//! a write is blocked, each listening socket accepted on, the protocol's
//! timers ([`Timers`], on tokio's time driver) — and polls them itself.
//! Each source has its own waker ([`source`](super::source)), so a turn
//! polls only the sources that woke: it feeds what they read into the
//! protocol and performs what the protocol outputs, then writes the
//! channels that have frames pending and hands JavaScript the turn's
//! events ([`Pending`]). A source that used up its budget (`READ_BATCH`,
//! `ACCEPT_BATCH`) is polled again next turn, after the reactor has run.
//!
//! One future instead of a task per descriptor: tokio's task machinery
//! (scheduling, wakers, `Notify`, a `LocalSet`) cost more than the work.
//! No `tokio::process`/`tokio::signal` (libuv owns `SIGCHLD` in this
//! process and does not chain handlers): exits are seen on pidfds. No
//! `TcpListener`: accepted connections are only passed on, so they are
//! never registered with the reactor.

use crate::core::codec::framing::Serialization;
use crate::core::hash::IdMap;
use crate::core::io::accept::{Accepting, Acceptor, Conn};
use crate::core::io::activation::Activation;
use crate::core::io::batch::Pending;
use crate::core::io::channel::{self, Read, WorkerIo, Write, READ_BUFFER};
use crate::core::io::fds::Fds;
use crate::core::io::launches::Launches;
use crate::core::io::open::{neg_errno, open, sockname};
use crate::core::io::source::{Source, Woken};
use crate::core::io::timers::Timers;
use crate::core::io::{lock, sockets, spawn, stats, sys, Command, PidFds, Sink};
use crate::core::protocol::event::{Descriptor, Event, ExitStatus};
use crate::core::protocol::fd::FdId;
use crate::core::protocol::{Input, OpenSpec, Opened, Output, Protocol};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

struct Driver {
    commands: UnboundedReceiver<Command>,
    commands_waker: Waker,
    woken: Woken,
    /// This turn's sources to poll: those woken, then any that were
    /// created or resumed during the turn.
    queue: Vec<Source>,
    /// Sources that used up their budget, for the next turn.
    again: Vec<Source>,
    protocol: Protocol,
    fds: Fds,
    workers: IdMap<u32, WorkerIo>,
    read_buf: Vec<u8>,
    /// Connections accepted by an acceptor, until the protocol gets them.
    accepted: Vec<Conn>,
    /// Events for JavaScript, sent at the end of the turn.
    to_js: Pending,
    /// Workers with frames to write at the end of the turn.
    dirty: Vec<u32>,
    /// `dirty`'s spare allocation while it is being written.
    writing: Vec<u32>,
    sink: Sink,
    pidfds: PidFds,
    launches: Launches,
    /// Sockets passed by a service manager, used instead of binding.
    activation: Activation,
    /// The protocol's timers.
    timers: Timers,
    /// Timers found expired, until the protocol hears of them.
    expired: Vec<u64>,
    shutdown: bool,
}

/// Runs the I/O thread until `Command::Shutdown` or until every sender of
/// commands is gone.
pub fn run(
    runtime: &Runtime,
    commands: UnboundedReceiver<Command>,
    sink: Sink,
    pidfds: PidFds,
    launches: Launches,
    paced: bool,
) {
    let woken = Woken::default();
    let timers = Timers::new(woken.waker(Source::Timer));
    let mut driver = Driver {
        commands,
        commands_waker: woken.waker(Source::Commands),
        woken,
        queue: Vec::new(),
        again: Vec::new(),
        protocol: Protocol::new(),
        fds: Fds::default(),
        workers: IdMap::default(),
        read_buf: vec![0u8; READ_BUFFER],
        accepted: Vec::new(),
        to_js: Pending::new(paced),
        dirty: Vec::new(),
        writing: Vec::new(),
        sink,
        pidfds,
        launches,
        activation: Activation::default(),
        timers,
        expired: Vec::new(),
        shutdown: false,
    };
    // The first turn polls the commands (registering their waker).
    driver.commands_waker.wake_by_ref();
    runtime.block_on(std::future::poll_fn(|cx| driver.turn(cx)));
    // Dropped while the runtime (its reactor) is still there.
    drop(driver);
}

impl Driver {
    /// One turn: polls the sources that woke, then ends the turn.
    fn turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // `queue` is empty between turns.
        self.woken.take(cx.waker(), &mut self.queue);
        // Then the sources that used up their budget last turn (rare).
        self.queue.append(&mut self.again);
        loop {
            let mut i = 0;
            // Polling a source may queue more (a new worker, a resumed one).
            while let Some(&source) = self.queue.get(i) {
                i += 1;
                self.poll(source);
                if self.shutdown {
                    self.end_turn();
                    return Poll::Ready(());
                }
            }
            self.queue.clear();
            self.end_turn();
            // Writing may have blocked a channel, whose watch needs a poll.
            if self.queue.is_empty() {
                break;
            }
        }
        if !self.again.is_empty() || self.to_js.take_again() {
            // Returning lets the reactor run before the rest.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn poll(&mut self, source: Source) {
        match source {
            Source::Commands => self.poll_commands(),
            Source::Channel(id) => self.poll_channel(id),
            Source::Writable(id) => self.poll_writable(id),
            Source::Exit(id) => self.poll_exit(id),
            Source::Accept(listener) => self.poll_acceptor(listener),
            Source::Timer => self.poll_timers(),
        }
    }

    fn poll_timers(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.poll(&mut expired);
        for timer in expired.drain(..) {
            self.input(Input::Timer { timer });
        }
        self.expired = expired;
    }

    fn poll_commands(&mut self) {
        // tokio's cooperative budget ends this loop with `Pending` (and a
        // wake) after a while, so a flood of commands cannot starve the
        // other sources.
        loop {
            let mut cx = Context::from_waker(&self.commands_waker);
            match self.commands.poll_recv(&mut cx) {
                Poll::Ready(Some(cmd)) => {
                    self.command(cmd);
                    if self.shutdown {
                        return;
                    }
                }
                Poll::Ready(None) => {
                    self.shutdown = true;
                    return;
                }
                Poll::Pending => return,
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            #[cfg(test)]
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
                self.launches.record(id, outcome);
            }
            Command::Send {
                id,
                frame,
                fd,
                callback,
            } => {
                let fd = fd.map(|fd| self.fds.insert(fd));
                self.input(Input::Send {
                    id,
                    frame,
                    fd,
                    callback,
                });
            }
            // The turn's end hands what waited for this.
            Command::Taken => {
                let bytes = self.to_js.taken();
                self.delivered(bytes);
            }
            Command::Protocol(input) => self.input(input),
            Command::Listened { bind, result } => {
                let result = result.map(|fd| self.opened(fd, None));
                self.input(Input::Opened { bind, result });
            }
            Command::Flush(done) => {
                self.write_dirty();
                let _ = done.send(());
            }
            Command::Stats { usage, reply } => {
                let _ = reply.send(stats::gather(&self.protocol, &self.workers, usage));
            }
            Command::Activate { fds } => {
                self.activation.adopt(&fds);
            }
            Command::Shutdown => self.shutdown = true,
        }
    }

    /// Registers an opened socket and describes it for the protocol.
    fn opened(&mut self, fd: OwnedFd, unlink: Option<std::path::PathBuf>) -> Opened {
        let sockname = sockname(fd.as_raw_fd());
        let fd = self.fds.insert_bound(fd, unlink);
        Opened { fd, sockname }
    }

    fn adopt(&mut self, id: u32, pid: i32, pidfd: OwnedFd, channel: OwnedFd, ser: Serialization) {
        let pidfd = Arc::new(pidfd);
        lock(&self.pidfds).insert(id, pidfd.clone());
        // Registration fails only when the kernel is out of memory; the
        // worker is then unusable and reported as such.
        let w = match WorkerIo::new(id, pid, channel, pidfd, &self.woken) {
            Ok(w) => w,
            Err(e) => {
                return self.event(Event::Error {
                    id,
                    code: "ERR_CLUSTER_REACTOR",
                    message: format!("cannot watch worker {id}: {e}"),
                })
            }
        };
        self.workers.insert(id, w);
        self.input(Input::Adopted {
            id,
            serialization: ser,
        });
        // First polls register the wakers.
        self.queue.push(Source::Channel(id));
        self.queue.push(Source::Exit(id));
    }

    /// Feeds one input to the protocol and performs what follows from it.
    fn input(&mut self, input: Input<'_>) {
        self.protocol.handle(input);
        self.drain();
    }

    /// An event for JavaScript, sent at the end of the turn (or once
    /// JavaScript has taken the batch before). A worker's messages join its
    /// messages before them when nothing came between.
    fn event(&mut self, e: Event) {
        self.to_js.push(e);
    }

    /// JavaScript has these bytes of each worker's data.
    fn delivered(&mut self, bytes: Vec<(u32, usize)>) {
        for (id, bytes) in bytes {
            self.input(Input::Delivered { id, bytes });
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.protocol.poll_output() {
            self.perform(out);
        }
    }

    fn perform(&mut self, out: Output) {
        match out {
            Output::Event(mut e) => {
                if let Event::Message { fd, .. } = &mut e {
                    // From here on the event carries the descriptor itself.
                    *fd = match fd.take() {
                        Some(Descriptor::Token(t)) => self.fds.take(t).map(Descriptor::Owned),
                        owned => owned,
                    };
                }
                self.event(e);
            }
            Output::Transmit { id } => {
                if !self.dirty.contains(&id) {
                    self.dirty.push(id);
                }
            }
            Output::PauseRead { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.paused = true;
                }
            }
            Output::ResumeRead { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    if std::mem::take(&mut w.paused) {
                        self.queue.push(Source::Channel(id));
                    }
                }
            }
            Output::CloseChannel { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.close();
                }
            }
            Output::Timer { timer, after_ms } => {
                self.timers.start(timer, Duration::from_millis(after_ms));
                self.queue.push(Source::Timer);
            }
            Output::CancelTimer { timer } => self.timers.cancel(timer),
            Output::Open { bind, spec } => self.open(bind, spec),
            Output::Accept { listener, peer } => self.accept_on(listener, peer),
            Output::StopAccept { listener } => self.fds.stop_acceptor(listener),
            Output::Close { fd } => {
                self.fds.close(fd);
            }
        }
    }

    /// Opens a server's socket: a passed one (socket activation) if it
    /// matches, else JavaScript listens (Node's round-robin way) or we bind.
    fn open(&mut self, bind: u32, spec: OpenSpec) {
        let passed = self.activation.find(&spec);
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
        self.protocol.handle(Input::Opened { bind, result });
    }

    /// The end of a turn: write what is pending, then hand JavaScript the
    /// turn's events.
    fn end_turn(&mut self) {
        self.write_dirty();
        if let Some((batch, delivered)) = self.to_js.hand() {
            (self.sink)(batch);
            self.delivered(delivered);
        }
    }

    fn write_dirty(&mut self) {
        while !self.dirty.is_empty() {
            let mut ids = std::mem::replace(&mut self.dirty, std::mem::take(&mut self.writing));
            for &id in &ids {
                self.write(id);
            }
            ids.clear();
            self.writing = ids;
        }
    }

    /// Writes worker `id`'s pending frames, unless a write is already
    /// waiting for the channel to take more (that one writes them all).
    fn write(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(ch) = &w.channel else {
            return;
        };
        if w.writable.is_some() {
            return;
        }
        match channel::write(&mut self.protocol, &self.fds, id, ch.as_raw_fd()) {
            Write::Done => self.drain(),
            Write::Blocked => {
                if w.watch_writable().is_ok() {
                    self.queue.push(Source::Writable(id));
                    self.drain();
                } else {
                    // Out of descriptors: the frames could never be written.
                    self.input(Input::ChannelClosed { id });
                }
            }
            Write::Failed => self.input(Input::ChannelClosed { id }),
        }
    }

    fn poll_channel(&mut self, id: u32) {
        loop {
            let Some(w) = self.workers.get(&id) else {
                return;
            };
            let Some(ch) = w.channel.as_ref().filter(|_| !w.paused) else {
                return;
            };
            let mut cx = Context::from_waker(&w.read_waker);
            let read = match ch.poll_read_ready(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(Err(_)) => {
                    self.input(Input::ChannelClosed { id });
                    return;
                }
                Poll::Ready(Ok(mut guard)) => {
                    let fd = ch.as_raw_fd();
                    let buf = &mut self.read_buf;
                    let read = channel::read(&mut self.protocol, &mut self.fds, id, fd, buf, false);
                    if read == Read::Drained {
                        guard.clear_ready();
                    }
                    read
                }
            };
            self.drain();
            match read {
                // Again, to register the waker (or stop if now paused).
                Read::Drained => {}
                Read::More => return self.again.push(Source::Channel(id)),
                Read::Closed => return,
            }
        }
    }

    fn poll_writable(&mut self, id: u32) {
        loop {
            let Some(w) = self.workers.get_mut(&id) else {
                return;
            };
            let (Some(afd), Some(ch)) = (&w.writable, &w.channel) else {
                return;
            };
            let mut cx = Context::from_waker(&w.write_waker);
            let status = match afd.poll_write_ready(&mut cx) {
                Poll::Pending => return,
                // Only when the reactor is gone.
                Poll::Ready(Err(_)) => Write::Failed,
                Poll::Ready(Ok(mut guard)) => {
                    let fd = ch.as_raw_fd();
                    let s = channel::write(&mut self.protocol, &self.fds, id, fd);
                    if s == Write::Blocked {
                        guard.clear_ready();
                    }
                    s
                }
            };
            match status {
                // Again, to register the waker.
                Write::Blocked => self.drain(),
                Write::Done => {
                    if let Some(w) = self.workers.get_mut(&id) {
                        w.writable = None;
                    }
                    return self.drain();
                }
                Write::Failed => return self.input(Input::ChannelClosed { id }),
            }
        }
    }

    fn poll_exit(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(exit) = &w.exit else {
            return;
        };
        let mut cx = Context::from_waker(&w.exit_waker);
        let status = loop {
            match exit.poll_read_ready(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(Err(_)) => {
                    w.exit = None;
                    return;
                }
                Poll::Ready(Ok(mut guard)) => match sys::try_reap(w.pid) {
                    Ok(Some(status)) => break status,
                    Ok(None) => guard.clear_ready(),
                    // ECHILD: someone else reaped it (a stray waitpid(-1) in
                    // the process). It is gone and its status is lost;
                    // report it as killed rather than keep the worker alive
                    // forever.
                    Err(_) => break ExitStatus::Signal(libc::SIGKILL),
                },
            }
        };
        self.exited(id, status);
    }

    fn exited(&mut self, id: u32, status: ExitStatus) {
        lock(&self.pidfds).remove(&id);
        // Everything the worker wrote before dying is already in the socket:
        // deliver it, then the disconnect, then the exit.
        if let Some(w) = self.workers.remove(&id) {
            if let Some(ch) = &w.channel {
                let (buf, fd) = (&mut self.read_buf, ch.as_raw_fd());
                channel::read(&mut self.protocol, &mut self.fds, id, fd, buf, true);
            }
        }
        self.drain();
        self.input(Input::Exited { id, status });
    }

    fn accept_on(&mut self, listener: FdId, peer: bool) {
        if self.fds.accepting(listener) {
            return;
        }
        let Some(fd) = self.fds.raw(listener) else {
            return;
        };
        // A socket nobody listened on (a reuseport worker left before it
        // listened) has nothing to accept; polling it would spin.
        if !sockets::is_listening(fd) {
            return;
        }
        let waker = self.woken.waker(Source::Accept(listener));
        let Ok(acceptor) = Acceptor::new(fd, peer, waker) else {
            return;
        };
        self.fds.set_acceptor(listener, acceptor);
        self.queue.push(Source::Accept(listener));
    }

    fn poll_acceptor(&mut self, listener: FdId) {
        let Some(acceptor) = self.fds.acceptor(listener) else {
            return;
        };
        let mut conns = std::mem::take(&mut self.accepted);
        let state = acceptor.poll(&mut conns);
        for (conn, peer) in conns.drain(..) {
            let conn = self.fds.insert(conn);
            self.input(Input::Accepted {
                listener,
                conn,
                peer,
            });
        }
        self.accepted = conns;
        match state {
            Accepting::Idle => {}
            Accepting::More => self.again.push(Source::Accept(listener)),
            Accepting::Gone => self.fds.stop_acceptor(listener),
        }
    }
}
