//! Connection distribution policies for servers shared by workers.

pub mod round_robin;

/// How TCP servers opened by workers are shared (UDP is always shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_NONE`: one bound socket sent to every worker; they accept.
    Shared,
    /// `SCHED_RR`: the primary accepts and hands connections out.
    RoundRobin,
}
