//! The I/O layer: a `current_thread` tokio runtime on its own thread drives
//! the protocol state machine ([`crate::core::protocol`]) with real
//! descriptors — worker channels (`sendmsg`/`recvmsg` with `SCM_RIGHTS`),
//! listening sockets, pidfds — and spawns the workers. It decides nothing:
//! it reads, feeds the protocol, and does what the protocol says.
//!
//! The I/O thread is the only thread that reads or writes a worker's
//! channel. JavaScript reaches it only through [`Command`]s, queued in the
//! order it sends them (so frames reach a worker in that order), and hears
//! from it only through the batches of events handed to the [`Sink`] (so
//! events reach JavaScript in the order the channels delivered them).
//!
//! This module is its public face: [`Primary`] starts the thread and feeds
//! it [`Command`]s from JavaScript. `driver` is the loop: one future under
//! `block_on` that owns and polls every source itself, no spawned tasks;
//! `source` names the sources and gives each a waker, so a turn polls only
//! those that woke; `timers` holds the protocol's timers behind one tokio
//! `Sleep`; `channel` reads and writes a worker's channel, `accept` accepts
//! on a listening socket; `fds` is the table of descriptor tokens
//! (listening sockets hold their acceptor there); `activation` the sockets
//! a service manager passed; `procfs` the `/proc` figures of `stats()`;
//! `sockets`/`scm`/`sys` are the syscalls, `spawn` the fork/exec path.

mod accept;
mod activation;
pub mod batch;
mod channel;
mod driver;
mod error;
mod fds;
mod launches;
mod open;
pub mod procfs;
pub mod scm;
pub mod sockets;
mod source;
pub mod spawn;
pub mod stats;
pub mod sys;
mod timers;

use crate::core::codec::framing::Serialization;
use crate::core::hash::IdMap;
use crate::core::protocol::Input;
pub use batch::Batch;
pub use error::{errno_name, lock, CoreError};
use launches::Launches;
use spawn::{ChildEnds, Prepared, SpawnSpec};
pub use stats::StatsReport;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

/// Receives each batch of events, on the I/O thread.
pub type Sink = Box<dyn FnMut(Batch) + Send>;

/// Exit-notification descriptors, shared with the JavaScript thread so it can
/// signal a worker without racing the reaper.
pub type PidFds = Arc<Mutex<IdMap<u32, Arc<OwnedFd>>>>;

#[derive(Debug)]
pub enum Command {
    /// Take over a channel and exit notification (tests: a fake worker).
    #[cfg(test)]
    Adopt {
        id: u32,
        pid: i32,
        pidfd: OwnedFd,
        channel: OwnedFd,
        serialization: Serialization,
    },
    /// Fork and exec a worker whose descriptors are already laid out, then
    /// adopt it. Done here so that `fork()` in JavaScript does not wait.
    Launch {
        id: u32,
        spec: Box<SpawnSpec>,
        channel: OwnedFd,
        child: ChildEnds,
        serialization: Serialization,
    },
    /// A complete frame from JavaScript, optionally carrying a descriptor
    /// (then the frame is a `NODE_HANDLE` envelope).
    Send {
        id: u32,
        frame: Vec<u8>,
        fd: Option<OwnedFd>,
        /// JavaScript waits for `Event::Written` for it.
        callback: bool,
    },
    /// A call that is a protocol input as it stands (`Disconnect`,
    /// `CloseChannel`, `Configure`, `Gate`): fed to the protocol in command
    /// order.
    Protocol(Input<'static>),
    /// JavaScript has the last batch handed with `ack` (see [`Batch`]).
    Taken,
    /// Counters of every worker and, with `usage`, `/proc` readings of the
    /// primary and every worker.
    Stats {
        usage: bool,
        reply: crossbeam_channel::Sender<StatsReport>,
    },
    /// Sockets a service manager passed (socket activation), by number.
    Activate {
        fds: Vec<i32>,
    },
    /// JavaScript listened for [`Event::Listen`] `bind`: the listening
    /// socket (a copy, ours to keep) or Node's negative errno.
    Listened {
        bind: u32,
        result: Result<OwnedFd, i64>,
    },
    /// Write out everything queued so far, then answer (the process is
    /// about to exit and queued frames would otherwise be lost).
    Flush(crossbeam_channel::Sender<()>),
    Shutdown,
}

pub struct Primary {
    tx: UnboundedSender<Command>,
    pidfds: PidFds,
    launches: Launches,
    thread: Option<JoinHandle<()>>,
}

impl Primary {
    /// Starts the I/O thread; `sink` receives the batches of events.
    /// `paced`: the consumer acknowledges each batch with `ack`
    /// (`Command::Taken`); else each counts as delivered when handed.
    pub fn start(
        sink: impl FnMut(Batch) + Send + 'static,
        paced: bool,
    ) -> Result<Primary, CoreError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pidfds = PidFds::default();
        let launches = Launches::default();
        // The driver holds non-Send state (descriptor tables, the protocol),
        // so it is built on its own thread; startup errors come back over
        // `ready`.
        let (ready_tx, ready_rx) = crossbeam_channel::bounded::<io::Result<()>>(1);
        let (p, l) = (pidfds.clone(), launches.clone());
        let thread = std::thread::Builder::new()
            .name("native-cluster-io".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = ready_tx.send(Ok(()));
                        driver::run(&runtime, rx, Box::new(sink), p, l, paced);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| CoreError::io("cannot start the cluster I/O thread", e))?;
        ready_rx
            .recv()
            .map_err(|_| CoreError::Stopped)?
            .map_err(|e| CoreError::io("cannot start the cluster I/O runtime", e))?;
        Ok(Primary {
            tx,
            pidfds,
            launches,
            thread: Some(thread),
        })
    }

    pub fn command(&self, cmd: Command) -> Result<(), CoreError> {
        self.tx.send(cmd).map_err(|_| CoreError::Stopped)
    }

    /// The workers' counters and, with `usage`, the primary's and the
    /// workers' `/proc` figures, gathered on the I/O thread (at most
    /// `timeout`).
    pub fn stats(
        &self,
        usage: bool,
        timeout: std::time::Duration,
    ) -> Result<StatsReport, CoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(Command::Stats { usage, reply: tx })?;
        answer(rx, timeout, "gather stats")
    }

    /// Waits (at most `timeout`) until the I/O thread has written every
    /// frame queued before this call, as far as the sockets take them.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), CoreError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.command(Command::Flush(tx))?;
        answer(rx, timeout, "flush")
    }

    /// Lays out a worker's descriptors here and has the I/O thread fork it:
    /// returns the parent's pipe ends at once; [`Self::pid`] waits for the
    /// outcome, and a failure also arrives as `Event::SpawnFailed`.
    pub fn launch(
        &self,
        id: u32,
        spec: SpawnSpec,
        serialization: Serialization,
    ) -> Result<Vec<Option<OwnedFd>>, CoreError> {
        let Prepared {
            channel,
            pipes,
            child,
        } = spawn::prepare(&spec).map_err(CoreError::Spawn)?;
        self.command(Command::Launch {
            id,
            spec: Box::new(spec),
            channel,
            child,
            serialization,
        })?;
        Ok(pipes)
    }

    /// The pid of a launched worker (`None`: the launch failed, and
    /// `Event::SpawnFailed` says why); waits (at most `timeout`) for the
    /// I/O thread to have forked it. Answers once.
    pub fn pid(&self, id: u32, timeout: std::time::Duration) -> Result<Option<i32>, CoreError> {
        self.launches.wait(id, timeout)
    }

    /// Signals a live worker. `ESRCH` once it has been reaped.
    pub fn kill(&self, id: u32, signal: i32) -> Result<(), CoreError> {
        let pidfd = lock(&self.pidfds)
            .get(&id)
            .cloned()
            .ok_or_else(|| CoreError::io("kill", io::Error::from_raw_os_error(libc::ESRCH)))?;
        sys::pidfd_send_signal(&pidfd, signal).map_err(|e| CoreError::io("kill", e))
    }
}

/// The I/O thread's answer to a request, or why there is none.
fn answer<T>(
    rx: crossbeam_channel::Receiver<T>,
    timeout: std::time::Duration,
    what: &'static str,
) -> Result<T, CoreError> {
    rx.recv_timeout(timeout).map_err(|e| match e {
        crossbeam_channel::RecvTimeoutError::Timeout => CoreError::TimedOut { what },
        crossbeam_channel::RecvTimeoutError::Disconnected => CoreError::Stopped,
    })
}

impl Drop for Primary {
    fn drop(&mut self) {
        if self.command(Command::Shutdown).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::framing::FrameDecoder;
    use crate::core::protocol::event::Event;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// A primary whose worker 1 is the far end of a socketpair held by the
    /// test, so the test can misbehave exactly as a broken peer would.
    fn primary_with_fake_worker() -> (Primary, OwnedFd, crossbeam_channel::Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let primary = Primary::start(
            move |batch: Batch| {
                for ev in batch.events {
                    let _ = tx.send(ev);
                }
            },
            false,
        )
        .expect("start");
        let (ours, theirs) = sys::socketpair().expect("socketpair");
        // SAFETY: getpid cannot fail.
        let pidfd = sys::pidfd_open(std::process::id() as i32).expect("pidfd");
        primary
            .command(Command::Adopt {
                id: 1,
                pid: 0,
                pidfd,
                channel: ours,
                serialization: Serialization::Json,
            })
            .expect("adopt");
        (primary, theirs, rx)
    }

    /// A request the I/O thread does not answer in time says it timed out;
    /// one it can no longer answer says it stopped.
    #[test]
    fn a_late_answer_is_a_timeout_and_a_lost_one_a_stop() {
        let (_tx, rx) = crossbeam_channel::bounded::<()>(1);
        let late = answer(rx, Duration::from_millis(1), "flush").unwrap_err();
        assert_eq!(late.code(), "ERR_NATIVE_CLUSTER_TIMEOUT");
        assert_eq!(
            late.to_string(),
            "the cluster I/O thread did not flush in time"
        );
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        drop(tx);
        let lost = answer(rx, Duration::from_secs(5), "flush").unwrap_err();
        assert_eq!(lost.code(), "ERR_NATIVE_CLUSTER_STOPPED");
        let (primary, _peer, _rx) = primary_with_fake_worker();
        let unknown = primary.pid(99, Duration::from_millis(1)).unwrap_err();
        assert_eq!(unknown.code(), "ERR_NATIVE_CLUSTER_TIMEOUT");
        assert_eq!(primary.kill(99, 0).unwrap_err().code(), "ESRCH");
    }

    /// Many frames queued from another thread in a burst all reach the
    /// worker end, in order.
    #[test]
    fn a_burst_of_sends_arrives_complete_and_in_order() {
        let (primary, theirs, _events) = primary_with_fake_worker();
        const N: usize = 200_000;
        let reader = std::thread::spawn(move || {
            let mut dec = FrameDecoder::new(Serialization::Json);
            let mut buf = vec![0u8; 65536];
            let mut seen = 0usize;
            while seen < N {
                let n = sys::read(theirs.as_raw_fd(), &mut buf).expect("read");
                assert!(n > 0, "channel closed after {seen} frames");
                dec.push(&buf[..n]);
                while let Some(frame) = dec.next_frame().expect("frame") {
                    assert_eq!(frame, seen.to_string().into_bytes());
                    seen += 1;
                }
            }
            seen
        });
        for i in 0..N {
            let frame = format!("{i}\n").into_bytes();
            primary
                .command(Command::Send {
                    id: 1,
                    frame,
                    fd: None,
                    callback: false,
                })
                .expect("send");
        }
        assert_eq!(reader.join().expect("reader"), N);
    }

    fn next(rx: &crossbeam_channel::Receiver<Event>) -> Event {
        rx.recv_timeout(Duration::from_secs(5)).expect("an event")
    }

    #[test]
    fn a_stray_descriptor_is_reported_and_closed() {
        let (_primary, peer, rx) = primary_with_fake_worker();
        let (stray, stray_peer) = sys::socketpair().expect("socketpair");
        scm::send(peer.as_raw_fd(), b"\"plain\"\n", Some(stray.as_raw_fd())).expect("send");
        drop(stray);
        let mut codes = Vec::new();
        for _ in 0..2 {
            match next(&rx) {
                Event::Error { code, .. } => codes.push(code),
                Event::Messages { data, .. } => assert_eq!(data, b"\"plain\""),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(codes, vec!["ERR_CLUSTER_STRAY_HANDLE"]);
        // The primary's copy was closed: the other end sees end of stream.
        let mut buf = [0u8; 1];
        sys::set_nonblocking(stray_peer.as_raw_fd(), false).expect("blocking");
        assert_eq!(
            sys::read(stray_peer.as_raw_fd(), &mut buf).expect("read"),
            0
        );
    }

    #[test]
    fn bad_input_is_reported_and_the_channel_keeps_working() {
        let (_primary, peer, rx) = primary_with_fake_worker();
        let lines: &[&[u8]] = &[
            b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"noSuchAct\",\"seq\":1}\n",
            b"{\"cmd\":\"NODE_CLUSTER\",oops}\n",
            b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{}}\n",
            b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":2}\n",
        ];
        for l in lines {
            scm::send(peer.as_raw_fd(), l, None).expect("send");
        }
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match next(&rx) {
                Event::Error { code, .. } => seen.push(code.to_string()),
                Event::Online { id } => seen.push(format!("online {id}")),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seen,
            vec![
                "ERR_CLUSTER_UNKNOWN_ACT",
                "ERR_CLUSTER_BAD_MESSAGE",
                "online 1"
            ]
        );
        // A handle envelope without a descriptor is answered with a NACK.
        sys::set_nonblocking(peer.as_raw_fd(), false).expect("blocking");
        let mut buf = [0u8; 256];
        let n = sys::read(peer.as_raw_fd(), &mut buf).expect("read");
        assert_eq!(&buf[..n], b"{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
    }

    /// Reads frames from the fake worker's end until one satisfies `pick`;
    /// returns it with the descriptors that came along.
    fn read_frame_until(
        peer: &OwnedFd,
        dec: &mut FrameDecoder,
        fds: &mut Vec<OwnedFd>,
        pick: impl Fn(&str) -> bool,
    ) -> String {
        sys::set_nonblocking(peer.as_raw_fd(), false).expect("blocking");
        let mut buf = [0u8; 4096];
        loop {
            while let Some(frame) = dec.next_frame().expect("frame") {
                let text = String::from_utf8(frame).expect("utf-8");
                if pick(&text) {
                    return text;
                }
            }
            let n = scm::recv(peer.as_raw_fd(), &mut buf, fds).expect("recv");
            assert!(n > 0, "channel closed");
            dec.push(&buf[..n]);
        }
    }

    const QUERY: &[u8] = b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"seq\":7,\"address\":\"127.0.0.1\",\"port\":0,\"addressType\":4,\"fd\":-1,\"flags\":0,\"backlog\":127,\"index\":0}\n";

    fn expect_listen(rx: &crossbeam_channel::Receiver<Event>) -> (u32, String) {
        match next(rx) {
            Event::Listen { bind, options } => (bind, options),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A new round-robin TCP server is listened on by JavaScript; the core
    /// answers the worker with the socket's address and hands it accepted
    /// connections from its own thread.
    #[test]
    fn round_robin_listen_waits_for_javascript_then_accepts_natively() {
        let (primary, peer, rx) = primary_with_fake_worker();
        scm::send(peer.as_raw_fd(), QUERY, None).expect("send");
        let (bind, options) = expect_listen(&rx);
        assert_eq!(
            options,
            r#"{"port":0,"host":"127.0.0.1","ipv6Only":false,"backlog":127}"#
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        primary
            .command(Command::Listened {
                bind,
                result: Ok(OwnedFd::from(listener)),
            })
            .expect("listened");
        let mut dec = FrameDecoder::new(Serialization::Json);
        let mut fds = Vec::new();
        let reply = read_frame_until(&peer, &mut dec, &mut fds, |t| t.contains("\"ack\":7"));
        assert!(reply.contains("\"errno\":null"), "{reply}");
        assert!(
            reply.contains(&format!(
                "\"sockname\":{{\"address\":\"127.0.0.1\",\"family\":\"IPv4\",\"port\":{port}}}"
            )),
            "{reply}"
        );
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let newconn = read_frame_until(&peer, &mut dec, &mut fds, |t| t.contains("newconn"));
        assert!(newconn.contains("\"cmd\":\"NODE_HANDLE\""), "{newconn}");
        assert_eq!(fds.len(), 1, "the connection travels with the handoff");
    }

    /// A listen that failed in JavaScript reaches the worker as its errno,
    /// and the key is free again for the next query.
    #[test]
    fn round_robin_listen_failure_is_the_workers_errno_and_is_forgotten() {
        let (primary, peer, rx) = primary_with_fake_worker();
        scm::send(peer.as_raw_fd(), QUERY, None).expect("send");
        let (bind, _) = expect_listen(&rx);
        primary
            .command(Command::Listened {
                bind,
                result: Err(-98),
            })
            .expect("listened");
        let mut dec = FrameDecoder::new(Serialization::Json);
        let mut fds = Vec::new();
        let reply = read_frame_until(&peer, &mut dec, &mut fds, |t| t.contains("\"ack\":7"));
        assert!(reply.contains("\"errno\":-98"), "{reply}");
        assert!(fds.is_empty());
        scm::send(peer.as_raw_fd(), QUERY, None).expect("send");
        let (again, _) = expect_listen(&rx);
        assert_ne!(again, bind);
    }
}
