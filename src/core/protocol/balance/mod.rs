//! Connection distribution policies for servers shared by workers, and the
//! balancer a primary-accepted server uses (round-robin or sticky).

pub mod reuseport;
pub mod round_robin;
pub mod sticky;

use round_robin::RoundRobin;
use sticky::Sticky;

/// How TCP servers opened by workers are shared (UDP is always shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_NONE`: one bound socket sent to every worker; they accept.
    Shared,
    /// `SCHED_RR`: the primary accepts and hands connections out.
    RoundRobin,
    /// `SCHED_REUSEPORT`: each worker gets its own `SO_REUSEPORT` socket on
    /// the same port and accepts itself; the kernel balances.
    ReusePort,
    /// `SCHED_STICKY`: the primary accepts; one client address, one worker.
    Sticky,
}

impl Policy {
    /// Whether the primary accepts connections itself for TCP servers.
    pub fn primary_accepts(self) -> bool {
        matches!(self, Policy::RoundRobin | Policy::Sticky)
    }
}

/// The balancer of a server whose connections the primary accepts.
#[derive(Debug)]
pub enum Balancer<C> {
    RoundRobin(RoundRobin<C>),
    Sticky(Sticky<C>),
}

impl<C> Balancer<C> {
    pub fn for_policy(policy: Policy) -> Self {
        match policy {
            Policy::Sticky => Balancer::Sticky(Sticky::default()),
            _ => Balancer::RoundRobin(RoundRobin::default()),
        }
    }

    pub fn contains(&self, worker: u32) -> bool {
        match self {
            Balancer::RoundRobin(b) => b.contains(worker),
            Balancer::Sticky(b) => b.contains(worker),
        }
    }

    /// No worker shares the server.
    pub fn is_empty(&self) -> bool {
        match self {
            Balancer::RoundRobin(b) => b.is_empty(),
            Balancer::Sticky(b) => b.is_empty(),
        }
    }

    pub fn add(&mut self, worker: u32) -> bool {
        match self {
            Balancer::RoundRobin(b) => b.add(worker),
            Balancer::Sticky(b) => b.add(worker),
        }
    }

    /// A new or refused connection from `client` (see
    /// [`sticky::client_key`]); `refused_by`: the worker that refused it.
    /// Returns the worker to send it to now, if one is ready.
    pub fn distribute(
        &mut self,
        conn: C,
        client: u64,
        refused_by: Option<u32>,
    ) -> Option<(u32, C)> {
        match self {
            // The refusing worker is not idle, so round-robin skips it anyway.
            Balancer::RoundRobin(b) => b.distribute(conn),
            Balancer::Sticky(b) => b.distribute(conn, client, refused_by),
        }
    }

    /// [`Self::distribute`] ahead of the queue, for a connection handed out
    /// before (to a worker that left without answering).
    pub fn distribute_first(
        &mut self,
        conn: C,
        client: u64,
        left: Option<u32>,
    ) -> Option<(u32, C)> {
        match self {
            Balancer::RoundRobin(b) => b.distribute_first(conn),
            Balancer::Sticky(b) => b.distribute_first(conn, client, left),
        }
    }

    /// Closes (or opens) a worker to new connections; returns connections
    /// re-homed to other workers that must be sent now. An opened worker
    /// gets its next connection with its next [`Self::handoff`].
    pub fn gate(&mut self, worker: u32, closed: bool) -> Vec<(u32, C)> {
        match self {
            Balancer::RoundRobin(b) => {
                if closed {
                    b.gate(worker);
                }
                Vec::new()
            }
            Balancer::Sticky(b) => b.gate(worker, closed),
        }
    }

    /// The worker is ready for its next connection.
    pub fn handoff(&mut self, worker: u32) -> Option<C> {
        match self {
            Balancer::RoundRobin(b) => b.handoff(worker),
            Balancer::Sticky(b) => b.handoff(worker),
        }
    }

    /// Drops a worker: whether it was the last, and connections re-homed to
    /// other workers that must be sent now.
    pub fn remove(&mut self, worker: u32) -> (bool, Vec<(u32, C)>) {
        match self {
            Balancer::RoundRobin(b) => (b.remove(worker), Vec::new()),
            Balancer::Sticky(b) => b.remove(worker),
        }
    }

    /// How many connections wait for a worker.
    pub fn queued_len(&self) -> usize {
        match self {
            Balancer::RoundRobin(b) => b.pending_len(),
            Balancer::Sticky(b) => b.queued().count(),
        }
    }

    /// Connections waiting for a worker.
    pub fn queued(&self) -> Box<dyn Iterator<Item = &C> + '_> {
        match self {
            Balancer::RoundRobin(b) => Box::new(b.queued()),
            Balancer::Sticky(b) => Box::new(b.queued()),
        }
    }

    /// Connections nobody took, when the server closes.
    pub fn drain(&mut self) -> Vec<C> {
        match self {
            Balancer::RoundRobin(b) => b.drain().collect(),
            Balancer::Sticky(b) => b.drain(),
        }
    }
}
