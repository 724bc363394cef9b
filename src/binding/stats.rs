//! `stats()` for JavaScript: the core's counters and `/proc` figures of the
//! primary and every worker, as plain objects (milliseconds, bytes).

use super::{core_err, state};
use crate::core::io::procfs::Usage;
use napi::bindgen_prelude::*;
use napi_derive::napi;

#[napi(object)]
pub struct ProcessUsage {
    pub user_ms: f64,
    pub system_ms: f64,
    pub rss: f64,
}

#[napi(object)]
pub struct WorkerFigures {
    pub id: u32,
    pub pid: Option<i32>,
    /// Connections handed to it that it accepted.
    pub connections: f64,
    /// Connections handed to it not yet answered.
    pub in_flight: f64,
    pub messages_in: f64,
    pub messages_out: f64,
    pub usage: Option<ProcessUsage>,
}

#[napi(object)]
pub struct Figures {
    pub primary: Option<ProcessUsage>,
    pub workers: Vec<WorkerFigures>,
    /// Connections handed to a worker whose channel closed before it
    /// acknowledged them, handed to another worker instead.
    pub rerouted: f64,
}

fn usage(u: Usage) -> ProcessUsage {
    ProcessUsage {
        user_ms: u.user_ms as f64,
        system_ms: u.system_ms as f64,
        rss: u.rss_bytes as f64,
    }
}

/// Gathered on the I/O thread; waits for it at most `timeout_ms`.
/// `with_usage: false` skips the `/proc` reads (counters only).
#[napi]
pub fn stats(timeout_ms: u32, with_usage: bool) -> Result<Figures, String> {
    let report = state()?
        .primary
        .stats(
            with_usage,
            std::time::Duration::from_millis(timeout_ms.into()),
        )
        .map_err(core_err)?;
    Ok(Figures {
        primary: report.primary.map(usage),
        rerouted: report.rerouted as f64,
        workers: report
            .workers
            .into_iter()
            .map(|w| WorkerFigures {
                id: w.counters.id,
                pid: w.pid,
                connections: w.counters.counters.connections as f64,
                in_flight: w.counters.in_flight as f64,
                messages_in: w.counters.counters.messages_in as f64,
                messages_out: w.counters.counters.messages_out as f64,
                usage: w.usage.map(usage),
            })
            .collect(),
    })
}
