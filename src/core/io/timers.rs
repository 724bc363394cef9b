//! The protocol's timers (`Output::Timer`, `Output::CancelTimer`): their
//! deadlines in order, and one tokio `Sleep` for the earliest, polled by
//! the driver as a source of its own ([`Source::Timer`]). No thread per
//! timer, and a cancelled timer is simply gone.
//!
//! [`Source::Timer`]: super::source::Source::Timer

use crate::core::hash::IdMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub struct Timers {
    /// Running timers by deadline (the id breaks ties).
    deadlines: BTreeSet<(Instant, u64)>,
    /// Each running timer's deadline, to cancel it.
    by_id: IdMap<u64, Instant>,
    /// Sleeps until the earliest deadline; `None` while no timer runs.
    sleep: Option<Pin<Box<Sleep>>>,
    waker: Waker,
}

impl Timers {
    /// `waker` wakes the driver for the timer source.
    pub fn new(waker: Waker) -> Timers {
        Timers {
            deadlines: BTreeSet::new(),
            by_id: IdMap::default(),
            sleep: None,
            waker,
        }
    }

    /// Starts `timer`, expiring `after` from now. The caller polls the
    /// source next (the earliest deadline may have changed).
    pub fn start(&mut self, timer: u64, after: Duration) {
        let at = Instant::now() + after;
        if let Some(old) = self.by_id.insert(timer, at) {
            self.deadlines.remove(&(old, timer));
        }
        self.deadlines.insert((at, timer));
    }

    /// Forgets `timer`. If it was the earliest, the sleep still wakes the
    /// driver once at its deadline, and [`Timers::poll`] finds nothing due.
    pub fn cancel(&mut self, timer: u64) {
        if let Some(at) = self.by_id.remove(&timer) {
            self.deadlines.remove(&(at, timer));
        }
    }

    /// Pushes the timers whose deadline passed onto `expired`, in deadline
    /// order, and arms the sleep for the next one.
    pub fn poll(&mut self, expired: &mut Vec<u64>) {
        loop {
            let now = Instant::now();
            while let Some(&(at, timer)) = self.deadlines.first() {
                if at > now {
                    break;
                }
                self.deadlines.pop_first();
                self.by_id.remove(&timer);
                expired.push(timer);
            }
            let Some(&(next, _)) = self.deadlines.first() else {
                self.sleep = None;
                return;
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
            if sleep.deadline() != next {
                sleep.as_mut().reset(next);
            }
            let mut cx = Context::from_waker(&self.waker);
            if sleep.as_mut().poll(&mut cx).is_pending() {
                return;
            }
            // It passed while we looked: collect it too.
        }
    }

    /// How many timers run.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn timers_expire_in_deadline_order_and_a_cancelled_one_never_does() {
        let rt = runtime();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mut timers = Timers::new(Waker::from(count.clone()));
        let mut expired = Vec::new();
        rt.block_on(async {
            timers.start(1, Duration::from_millis(60));
            timers.start(2, Duration::from_millis(20));
            timers.start(3, Duration::from_millis(40));
            timers.cancel(3);
            timers.poll(&mut expired);
            assert!(expired.is_empty());
            tokio::time::sleep(Duration::from_millis(30)).await;
            timers.poll(&mut expired);
            assert_eq!(expired, vec![2]);
            tokio::time::sleep(Duration::from_millis(50)).await;
            timers.poll(&mut expired);
        });
        assert_eq!(expired, vec![2, 1]);
        assert_eq!(timers.len(), 0);
        assert!(timers.sleep.is_none(), "nothing left to sleep for");
        assert!(count.0.load(Ordering::SeqCst) >= 1, "the sleep woke us");
    }
}
