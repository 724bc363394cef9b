//! `cluster.stats()` on the I/O thread: the protocol's per-worker counters
//! and, when asked, the `/proc` figures of the primary and every worker.

use crate::core::hash::IdMap;
use crate::core::io::channel::WorkerIo;
use crate::core::io::procfs;
use crate::core::protocol::counters::WorkerCounters;
use crate::core::protocol::Protocol;

/// What `cluster.stats()` asks of the core.
#[derive(Debug)]
pub struct StatsReport {
    pub primary: Option<procfs::Usage>,
    pub workers: Vec<WorkerReport>,
    /// Connections handed to a worker whose channel closed before it
    /// acknowledged them, handed to another worker instead.
    pub rerouted: u64,
}

#[derive(Debug)]
pub struct WorkerReport {
    pub counters: WorkerCounters,
    pub pid: Option<i32>,
    /// `None` once the process is gone (or before it started).
    pub usage: Option<procfs::Usage>,
}

/// The protocol's counters, with (`usage`) each process's `/proc` figures.
pub fn gather(protocol: &Protocol, workers: &IdMap<u32, WorkerIo>, usage: bool) -> StatsReport {
    let workers = protocol
        .counters()
        .into_iter()
        .map(|counters| {
            let pid = workers.get(&counters.id).map(|w| w.pid);
            WorkerReport {
                usage: pid.filter(|_| usage).and_then(|p| procfs::usage(Some(p))),
                pid,
                counters,
            }
        })
        .collect();
    StatsReport {
        primary: if usage { procfs::usage(None) } else { None },
        workers,
        rerouted: protocol.rerouted(),
    }
}
