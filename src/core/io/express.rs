//! The JavaScript thread's own wake-up on worker channels, and the handover
//! of the batch the I/O thread makes of what it read there.
//!
//! With stock Node a worker's message wakes the primary's JavaScript thread
//! directly: the kernel wakes the thread whose event loop watches the
//! channel. Here the I/O thread reads the channel, so without this module a
//! message costs two wake-ups in a row: the I/O thread's, then (through a
//! thread-safe function's async handle) the JavaScript thread's, 5–8 µs
//! later.
//!
//! So every worker's channel is also in an edge-triggered epoll set
//! ([`Express::fd`]) that the JavaScript thread's event loop watches. A
//! worker's write then wakes both threads at once. The I/O thread reads and
//! decodes as always (it alone owns the protocol, so order and state stay
//! where they were), and the two meet at a handover slot, each waiting a
//! few microseconds for the other, spinning (sleeping would cost the very
//! wake-up this saves):
//! - the I/O thread waits before it reads ([`Express::await_js`]): epoll
//!   reports a descriptor only if it is still readable when the woken
//!   thread looks, so reading first would cancel JavaScript's wake-up. It
//!   waits only while JavaScript's event loop is idle ([`Express::set_idle`],
//!   from libuv's prepare and check hooks): a busy loop will not come soon,
//!   and then the thread-safe function delivers the batch as before;
//! - JavaScript, woken, waits ([`Express::wait`]) until the I/O thread
//!   offers a batch ([`Express::offer`]) or finishes a turn without one for
//!   it (a frame only the protocol cares about).
//!
//! The express path is for sparse messages. A worker the primary hands
//! connections to writes an answer for each one, and waking JavaScript for
//! every answer would cost it a wake-up per connection for nothing; a
//! worker that streams messages is better served by the larger batches the
//! I/O thread gathers while the thread-safe function wakes JavaScript. Such
//! a worker is quiet ([`Express::set_quiet`]: its writes wake only the I/O
//! thread) until, for [`QUIET_FOR`], no connection was handed to it and it
//! sent no more than [`STREAMING`] bytes, in at most [`STREAMING_READS`]
//! reads, without the primary having something for it in between.

use crate::core::hash::IdMap;
use crate::core::protocol::event::Event;
use rustix::event::epoll;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after its last handed connection, or its last streaming read,
/// a worker's writes wake JavaScript again.
pub const QUIET_FOR: Duration = Duration::from_millis(50);

/// More than this many bytes from a worker, read in one go or since the
/// primary last had something for it, are a stream, not messages: a few
/// small messages fit, a burst does not.
pub const STREAMING: usize = 4096;

/// More than this many reads of a worker's channel, each finding data,
/// since the primary last had something for it, are a stream too (of
/// messages small enough to stay under [`STREAMING`] for a while).
pub const STREAMING_READS: u32 = 8;

/// The longest JavaScript waits for a batch once woken. The I/O thread,
/// woken at the same moment, needs a few microseconds, or one turn if it
/// was busy; on a loaded machine it may first wait for a core, which its
/// short time slice (`IO_SLICE`) makes brief. Past this, the thread-safe
/// function delivers the batch.
pub const WAIT_AT_MOST: Duration = Duration::from_micros(500);

/// The longest the I/O thread waits for an idle JavaScript thread to come
/// before it reads a channel whose write woke both (JavaScript's loop may
/// be stuck in a callback after its last turn marked it idle).
pub const AWAIT_AT_MOST: Duration = Duration::from_micros(50);

type Batch = Vec<Event<OwnedFd>>;

pub struct Express {
    /// `None` if the kernel refused an epoll instance: then nothing is
    /// watched and every batch takes the thread-safe function.
    epoll: Option<OwnedFd>,
    /// Each watched channel's copy (the I/O thread may close its own
    /// first), by worker.
    watched: Mutex<IdMap<u32, OwnedFd>>,
    /// The batch handed over, while JavaScript waits.
    slot: Mutex<Option<Batch>>,
    /// A batch is in `slot`: read without the lock while JavaScript waits.
    filled: AtomicBool,
    /// JavaScript waits (changed under `slot`'s lock).
    waiting: AtomicBool,
    /// The I/O thread's turns: begun and ended.
    begun: AtomicU64,
    ended: AtomicU64,
    /// Batches JavaScript took here (the binding's `wokenBatches()`).
    taken: AtomicU64,
    /// JavaScript's event loop is about to wait for, or is waiting for,
    /// events (between libuv's prepare and check phases).
    idle: AtomicBool,
}

impl Default for Express {
    fn default() -> Express {
        Express {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC).ok(),
            watched: Mutex::default(),
            slot: Mutex::default(),
            filled: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            begun: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            idle: AtomicBool::new(false),
        }
    }
}

const EDGE: epoll::EventFlags = epoll::EventFlags::IN.union(epoll::EventFlags::ET);

/// A zero timeout: `poll`/`epoll_wait` report and return at once.
const NO_WAIT: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

impl Express {
    /// The epoll set JavaScript's event loop watches for readability.
    pub fn fd(&self) -> Option<RawFd> {
        self.epoll.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// I/O thread: worker `id`'s channel (a copy of it) wakes JavaScript.
    pub fn watch(&self, id: u32, copy: OwnedFd) -> io::Result<()> {
        let Some(ep) = &self.epoll else {
            return Ok(());
        };
        epoll::add(ep, &copy, epoll::EventData::new_u64(id.into()), EDGE)?;
        if let Ok(mut w) = self.watched.lock() {
            w.insert(id, copy);
        }
        Ok(())
    }

    /// I/O thread: worker `id`'s channel closed.
    pub fn unwatch(&self, id: u32) {
        let removed = self.watched.lock().ok().and_then(|mut w| w.remove(&id));
        if let (Some(ep), Some(w)) = (&self.epoll, removed) {
            // Closing the copy would not remove it while the I/O thread's
            // descriptor of the same socket is open.
            let _ = epoll::delete(ep, &w);
        }
    }

    /// I/O thread: worker `id`'s writes stop waking JavaScript (`quiet`),
    /// or wake it again.
    pub fn set_quiet(&self, id: u32, quiet: bool) {
        let (Some(ep), Ok(watched)) = (&self.epoll, self.watched.lock()) else {
            return;
        };
        if let Some(channel) = watched.get(&id) {
            let flags = if quiet { epoll::EventFlags::ET } else { EDGE };
            let _ = epoll::modify(ep, channel, epoll::EventData::new_u64(id.into()), flags);
        }
    }

    /// I/O thread: a turn begins.
    pub fn turn_begins(&self) {
        self.begun.fetch_add(1, Ordering::SeqCst);
    }

    /// I/O thread: a turn ended (its batch, if any, was offered).
    pub fn turn_ends(&self) {
        self.ended.fetch_add(1, Ordering::SeqCst);
    }

    /// JavaScript's event loop: about to poll for events (`true`), or done
    /// with them.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::SeqCst);
    }

    /// I/O thread, about to read a watched channel: waits, up to
    /// `at_most`, for an idle JavaScript thread to come. Its event loop
    /// sees the channel readable only while the data is still unread (epoll
    /// checks again before it reports), so reading first would cancel its
    /// wake-up.
    pub fn await_js(&self, at_most: Duration) {
        if !self.idle.load(Ordering::SeqCst) || self.is_waiting() || !self.pending() {
            return;
        }
        spin(at_most, || {
            !self.idle.load(Ordering::SeqCst) || self.is_waiting()
        });
    }

    /// Whether the set holds a wake-up JavaScript has not taken: only then
    /// is an idle JavaScript thread on its way (a channel read again after
    /// its earlier wake-up was taken would otherwise be waited on for
    /// nothing).
    fn pending(&self) -> bool {
        let Some(ep) = &self.epoll else {
            return false;
        };
        let mut fds = [rustix::event::PollFd::new(ep, rustix::event::PollFlags::IN)];
        rustix::event::poll(&mut fds, Some(&NO_WAIT)).is_ok_and(|n| n > 0)
    }

    /// I/O thread: hands `batch` to a JavaScript thread waiting for it, or
    /// gives it back for the thread-safe function.
    pub fn offer(&self, batch: Batch) -> Option<Batch> {
        let Ok(mut slot) = self.slot.lock() else {
            return Some(batch);
        };
        if !self.is_waiting() || slot.is_some() {
            return Some(batch);
        }
        *slot = Some(batch);
        self.filled.store(true, Ordering::SeqCst);
        None
    }

    fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// JavaScript, woken by [`Express::fd`]: takes the wake-ups (edge
    /// triggered: the set is quiet again until the next write). Returns
    /// whether any channel woke.
    pub fn woken(&self) -> bool {
        let Some(ep) = &self.epoll else {
            return false;
        };
        // On the stack: this runs at every wake-up.
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 64];
        let mut any = false;
        loop {
            let got = match epoll::wait(ep.as_fd(), &mut events, Some(&NO_WAIT)) {
                Ok((got, _)) => got.len(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return any,
            };
            any |= got > 0;
            if got < events.len() {
                return any;
            }
        }
    }

    /// JavaScript: waits (spinning: sleeping would cost the very wake-up
    /// this saves) until the I/O thread offers a batch, ends a turn that
    /// began after this call without one, or `at_most` passes.
    pub fn wait(&self, at_most: Duration) -> Option<Batch> {
        match self.slot.lock() {
            Ok(_slot) => self.waiting.store(true, Ordering::SeqCst),
            Err(_) => return None,
        }
        // The first turn to begin after this point reads what woke us (a
        // turn already under way may not), and it ends once `ended` passes
        // `begun` as read here.
        let begun = self.begun.load(Ordering::SeqCst);
        spin(at_most, || {
            self.filled.load(Ordering::SeqCst) || self.ended.load(Ordering::SeqCst) > begun
        });
        let mut slot = self.slot.lock().ok()?;
        self.waiting.store(false, Ordering::SeqCst);
        self.filled.store(false, Ordering::SeqCst);
        let batch = slot.take();
        if batch.is_some() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        batch
    }

    /// Batches JavaScript took without the thread-safe function.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }
}

/// Spins until `done` or `at_most` has passed (the clock is read every
/// few spins only). It never yields: under the kernel's fair scheduler a
/// yield on a core where a CPU-bound process waits hands that process a
/// whole slice (milliseconds), and on a loaded machine a worker's message
/// then reached JavaScript 2× later than with node:cluster. Both waits are
/// short ([`WAIT_AT_MOST`], [`AWAIT_AT_MOST`]), and while worker messages
/// wake JavaScript the I/O thread's short slice lets it preempt a
/// JavaScript thread spinning on the core it needs.
fn spin(at_most: Duration, mut done: impl FnMut() -> bool) {
    if done() {
        return;
    }
    let start = Instant::now();
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() >= at_most {
            return;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::{scm, sys};
    use std::sync::Arc;

    /// A set watching one channel (worker 1): the set, our end, the
    /// worker's end.
    fn watched() -> (Express, OwnedFd, OwnedFd) {
        let (ours, theirs) = sys::socketpair().expect("socketpair");
        sys::set_nonblocking(ours.as_raw_fd(), true).expect("nonblocking");
        let ex = Express::default();
        ex.watch(1, sys::dup_cloexec(ours.as_raw_fd()).expect("dup"))
            .expect("watch");
        (ex, ours, theirs)
    }

    #[test]
    fn a_write_to_a_watched_channel_wakes_the_set_once() {
        let (ex, _ours, theirs) = watched();
        assert!(!ex.woken());
        scm::send(theirs.as_raw_fd(), b"x", None).expect("write");
        assert!(ex.woken());
        // Edge triggered: unread data does not wake again.
        assert!(!ex.woken());
        scm::send(theirs.as_raw_fd(), b"y", None).expect("write");
        assert!(ex.woken());
        ex.unwatch(1);
        scm::send(theirs.as_raw_fd(), b"z", None).expect("write");
        assert!(!ex.woken());
    }

    #[test]
    fn a_quiet_channel_does_not_wake() {
        let (ex, _ours, theirs) = watched();
        ex.set_quiet(1, true);
        scm::send(theirs.as_raw_fd(), b"a", None).expect("write");
        assert!(!ex.woken());
        ex.set_quiet(1, false);
        scm::send(theirs.as_raw_fd(), b"b", None).expect("write");
        assert!(ex.woken());
    }

    #[test]
    fn an_offer_reaches_a_waiting_thread_only() {
        let ex = Arc::new(Express::default());
        // Nobody waits: the batch comes back.
        assert!(ex.offer(Vec::new()).is_some());
        let io = ex.clone();
        let offerer = std::thread::spawn(move || {
            // Offer once JavaScript waits.
            loop {
                io.turn_begins();
                let back = io.offer(vec![Event::Online { id: 7 }]);
                io.turn_ends();
                if back.is_none() {
                    return;
                }
                std::thread::yield_now();
            }
        });
        let mut got = None;
        while got.is_none() {
            got = ex.wait(Duration::from_secs(1));
        }
        offerer.join().expect("offerer");
        assert!(matches!(got.as_deref(), Some([Event::Online { id: 7 }])));
        assert_eq!(ex.taken(), 1);
        // Nobody waits any more.
        assert!(ex.offer(Vec::new()).is_some());
    }

    #[test]
    fn the_io_thread_waits_for_an_idle_javascript_thread_only() {
        let (ex, _ours, theirs) = watched();
        let ex = Arc::new(ex);
        // Idle, but no wake-up in the set: no wait.
        ex.set_idle(true);
        let t0 = Instant::now();
        ex.await_js(Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(4));
        // A worker wrote: busy, no wait either.
        scm::send(theirs.as_raw_fd(), b"x", None).expect("write");
        ex.set_idle(false);
        let t0 = Instant::now();
        ex.await_js(Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(4));
        // Idle: until it comes.
        ex.set_idle(true);
        let js = ex.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let got = js.wait(Duration::from_secs(5));
            js.set_idle(false);
            got
        });
        ex.await_js(Duration::from_secs(5));
        assert!(ex.is_waiting());
        assert!(ex.offer(vec![Event::Online { id: 3 }]).is_none());
        let got = t.join().expect("javascript");
        assert!(matches!(got.as_deref(), Some([Event::Online { id: 3 }])));
        // Idle but never coming: up to the bound.
        ex.set_idle(true);
        let t0 = Instant::now();
        ex.await_js(Duration::from_millis(5));
        assert!(t0.elapsed() >= Duration::from_millis(5));
    }

    #[test]
    fn a_turn_without_a_batch_ends_the_wait() {
        let ex = Arc::new(Express::default());
        let io = ex.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            io.turn_begins();
            io.turn_ends();
        });
        let t0 = Instant::now();
        assert!(ex.wait(Duration::from_secs(5)).is_none());
        assert!(t0.elapsed() < Duration::from_secs(4));
        t.join().expect("turn");
        // And the deadline ends it when no turn comes.
        let t0 = Instant::now();
        assert!(ex.wait(Duration::from_millis(5)).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(5));
    }
}
