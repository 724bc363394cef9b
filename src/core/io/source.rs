//! The driver's event sources and how they wake it. The driver is one
//! future; every source it polls (the command queue, a worker's channel,
//! its writability while a write is blocked, its exit, a listening socket,
//! the timers)
//! is polled with a waker of its own, which records the [`Source`] in a
//! shared list ([`Woken`]) before waking the driver. A turn then polls only
//! the sources that woke, however many there are.
//!
//! Also here: registering a descriptor with tokio's reactor ([`watch`]).

use crate::core::protocol::fd::FdId;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// What woke. Worker ids and descriptor tokens are never reused, so a
/// source that outlived its owner is simply not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Commands,
    /// Worker `id`'s channel may be readable.
    Channel(u32),
    /// Worker `id`'s channel may take the rest of a blocked write.
    Writable(u32),
    /// Worker `id`'s pidfd: the process may have ended.
    Exit(u32),
    /// A listening socket may have connections to accept.
    Accept(FdId),
    /// The earliest protocol timer may have expired.
    Timer,
}

#[derive(Default)]
struct List {
    sources: Vec<Source>,
    /// The driver's own waker (`block_on`'s), as of its last turn.
    driver: Option<Waker>,
}

/// The sources woken since the driver's last turn. Wakers run on the I/O
/// thread (the reactor) and on JavaScript's (commands), hence the mutex;
/// it is held for a push or a swap, never across a poll.
#[derive(Clone, Default)]
pub struct Woken(Arc<Mutex<List>>);

impl Woken {
    /// A waker that reports `source`. Made once per source and kept, so
    /// tokio's `will_wake` check spares a clone on every poll.
    pub fn waker(&self, source: Source) -> Waker {
        Waker::from(Arc::new(SourceWaker {
            source,
            woken: self.clone(),
        }))
    }

    /// A turn starts: the sources woken so far move into `into` (which
    /// must be empty; the two vectors swap, so neither reallocates), and
    /// `driver` is the waker to use from now on.
    pub fn take(&self, driver: &Waker, into: &mut Vec<Source>) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !list.driver.as_ref().is_some_and(|w| w.will_wake(driver)) {
            list.driver = Some(driver.clone());
        }
        std::mem::swap(&mut list.sources, into);
    }
}

struct SourceWaker {
    source: Source,
    woken: Woken,
}

impl Wake for SourceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut list = self.woken.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A non-empty list has already woken the driver, which has not
        // taken it yet (taking empties it).
        let first = list.sources.is_empty();
        list.sources.push(self.source);
        if first {
            if let Some(driver) = &list.driver {
                driver.wake_by_ref();
            }
        }
    }
}

/// Registers a descriptor with the reactor.
pub fn watch<T: AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: every `T` used here owns the descriptor (or a counted share
    // of it), or is a number whose owner drops the `AsyncFd` before closing
    // it (`accept::Listening`), so it stays open and names the same file
    // description for as long as the `AsyncFd` holds it.
    Ok(unsafe { AsyncFd::register_with_interest(inner, interest) }?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn wakes_the_driver_once_per_turn_and_reports_every_source() {
        let woken = Woken::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let driver = Waker::from(count.clone());
        let mut got = Vec::new();
        woken.take(&driver, &mut got);
        woken.waker(Source::Channel(1)).wake_by_ref();
        woken.waker(Source::Exit(1)).wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        woken.take(&driver, &mut got);
        assert_eq!(got, vec![Source::Channel(1), Source::Exit(1)]);
        got.clear();
        woken.waker(Source::Commands).wake();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }
}
