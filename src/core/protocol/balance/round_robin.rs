//! Round-robin distribution (`SCHED_RR`): accepted connections wait in one
//! queue and each goes to the longest-idle worker; a worker gets its next
//! connection only after it has answered the previous one.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct RoundRobin<C> {
    /// Workers sharing this server, in the order they joined.
    all: Vec<u32>,
    /// Workers with no connection in flight, longest idle first.
    free: VecDeque<u32>,
    /// Accepted connections no worker has taken yet.
    pending: VecDeque<C>,
}

impl<C> Default for RoundRobin<C> {
    fn default() -> Self {
        RoundRobin {
            all: Vec::new(),
            free: VecDeque::new(),
            pending: VecDeque::new(),
        }
    }
}

impl<C> RoundRobin<C> {
    pub fn contains(&self, worker: u32) -> bool {
        self.all.contains(&worker)
    }

    pub fn add(&mut self, worker: u32) -> bool {
        if self.contains(worker) {
            return false;
        }
        self.all.push(worker);
        true
    }

    /// Drops a worker; `true` when it was the last one (the server closes and
    /// [`Self::drain`] yields the connections nobody will take).
    pub fn remove(&mut self, worker: u32) -> bool {
        let Some(pos) = self.all.iter().position(|w| *w == worker) else {
            return false;
        };
        self.all.remove(pos);
        self.free.retain(|w| *w != worker);
        self.all.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = C> + '_ {
        self.pending.drain(..)
    }

    /// The worker gets nothing more until it is handed off to again: it
    /// leaves the idle list.
    pub fn gate(&mut self, worker: u32) {
        self.free.retain(|w| *w != worker);
    }

    /// Queues a new (or refused) connection; if a worker is idle, returns it
    /// with the connection it must be sent now.
    pub fn distribute(&mut self, conn: C) -> Option<(u32, C)> {
        self.pending.push_back(conn);
        let worker = self.free.pop_front()?;
        self.handoff(worker).map(|c| (worker, c))
    }

    /// [`Self::distribute`] ahead of the queue: for a connection that was
    /// already handed out once (it is older than all queued ones).
    pub fn distribute_first(&mut self, conn: C) -> Option<(u32, C)> {
        self.pending.push_front(conn);
        let worker = self.free.pop_front()?;
        self.handoff(worker).map(|c| (worker, c))
    }

    /// The worker is ready for a connection: the next queued one, or `None`
    /// (it then waits in the idle list).
    pub fn handoff(&mut self, worker: u32) -> Option<C> {
        if !self.contains(worker) {
            return None;
        }
        match self.pending.pop_front() {
            Some(c) => Some(c),
            None => {
                if !self.free.contains(&worker) {
                    self.free.push_back(worker);
                }
                None
            }
        }
    }

    /// Connections waiting for a worker.
    pub fn queued(&self) -> impl Iterator<Item = &C> {
        self.pending.iter()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_between_idle_workers() {
        let mut rr = RoundRobin::default();
        rr.add(1);
        rr.add(2);
        assert_eq!(rr.handoff(1), None);
        assert_eq!(rr.handoff(2), None);
        assert_eq!(rr.distribute("a"), Some((1, "a")));
        assert_eq!(rr.distribute("b"), Some((2, "b")));
        // Both busy: the third waits until a worker answers.
        assert_eq!(rr.distribute("c"), None);
        assert_eq!(rr.handoff(2), Some("c"));
        assert_eq!(rr.handoff(1), None);
        assert_eq!(rr.distribute("d"), Some((1, "d")));
    }

    #[test]
    fn refused_connection_goes_to_another_worker() {
        let mut rr = RoundRobin::default();
        rr.add(1);
        rr.add(2);
        rr.handoff(1);
        rr.handoff(2);
        assert_eq!(rr.distribute("a"), Some((1, "a")));
        // Worker 1 refuses (closing): the connection is re-queued.
        assert_eq!(rr.distribute("a"), Some((2, "a")));
    }

    #[test]
    fn removed_worker_gets_nothing_and_last_removal_drains() {
        let mut rr = RoundRobin::default();
        rr.add(1);
        rr.add(2);
        rr.handoff(1);
        assert!(!rr.remove(1));
        assert_eq!(rr.distribute("a"), None);
        assert_eq!(rr.handoff(1), None);
        assert!(rr.remove(2));
        assert_eq!(rr.drain().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn gated_worker_leaves_the_idle_list() {
        let mut rr = RoundRobin::default();
        rr.add(1);
        rr.add(2);
        rr.handoff(1);
        rr.handoff(2);
        rr.gate(1);
        assert_eq!(rr.distribute("a"), Some((2, "a")));
        assert_eq!(rr.distribute("b"), None);
        // Opened again: the next handoff takes the queue.
        assert_eq!(rr.handoff(1), Some("b"));
    }

    #[test]
    fn adding_twice_is_refused() {
        let mut rr: RoundRobin<()> = RoundRobin::default();
        assert!(rr.add(7));
        assert!(!rr.add(7));
    }
}
