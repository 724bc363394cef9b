//! How each launch ended, handed from the I/O thread (which forks) to the
//! JavaScript thread (which asks for the pid): `fork()` in JavaScript
//! returns before the process exists, and `worker.process.pid` waits for
//! it only when read first.

use crate::core::hash::IdMap;
use crate::core::io::{lock, CoreError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Per worker: its pid, or the positive errno its launch failed with.
type Outcomes = IdMap<u32, Result<i32, i32>>;

/// Outcomes until asked for; the condvar wakes a thread waiting for one.
#[derive(Clone, Default)]
pub struct Launches(Arc<(Mutex<Outcomes>, Condvar)>);

impl Launches {
    /// The I/O thread tried to start worker `id`.
    pub fn record(&self, id: u32, outcome: Result<i32, i32>) {
        let (map, ready) = &*self.0;
        lock(map).insert(id, outcome);
        ready.notify_all();
    }

    /// Worker `id`'s pid (`None`: the launch failed), waiting at most
    /// `timeout` for the I/O thread to have tried. Answers once.
    pub fn wait(&self, id: u32, timeout: Duration) -> Result<Option<i32>, CoreError> {
        let (map, ready) = &*self.0;
        // As `lock`: the map is updated in single inserts and removals.
        let (mut guard, _) = ready
            .wait_timeout_while(lock(map), timeout, |m| !m.contains_key(&id))
            .unwrap_or_else(PoisonError::into_inner);
        match guard.remove(&id) {
            Some(outcome) => Ok(outcome.ok()),
            None => Err(CoreError::TimedOut {
                what: "start the worker",
            }),
        }
    }
}
