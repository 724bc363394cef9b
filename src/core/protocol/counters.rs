//! What the primary counts per worker for `cluster.stats()` and
//! `cluster.metrics()`: connections it accepted from the primary, and
//! messages each way. Counted where the protocol already handles each one,
//! so the figures cost an increment, and read on request.

use crate::core::protocol::Protocol;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Connections handed to the worker that it accepted.
    pub connections: u64,
    /// User messages from the worker (each one of a batch counts).
    pub messages_in: u64,
    /// Frames JavaScript sent to the worker (`worker.send()`).
    pub messages_out: u64,
}

/// One worker's counters, and the connections handed to it that it has not
/// answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCounters {
    pub id: u32,
    pub counters: Counters,
    pub in_flight: u64,
}

impl Protocol {
    pub(crate) fn count(&mut self, id: u32, f: impl FnOnce(&mut Counters)) {
        if let Some(w) = self.workers.get_mut(&id) {
            f(&mut w.counters);
        }
    }

    /// Every known worker's counters, by id.
    pub fn counters(&self) -> Vec<WorkerCounters> {
        let mut out: Vec<WorkerCounters> = self
            .workers
            .iter()
            .map(|(id, w)| WorkerCounters {
                id: *id,
                counters: w.counters,
                in_flight: w.handoffs.len() as u64,
            })
            .collect();
        out.sort_unstable_by_key(|c| c.id);
        out
    }
}
