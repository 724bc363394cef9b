//! How much of each worker's data waits for the primary's JavaScript, and
//! when to stop reading that worker's channel. Stock Node reads a channel
//! only when its event loop is free, so a worker writing faster than the
//! primary's JavaScript consumes is throttled by the kernel (its socket
//! buffer fills, its writes queue in its own memory). The I/O thread reads
//! whatever arrives; without a bound a flooding worker would grow the
//! primary without limit while its JavaScript is busy.
//!
//! The bound is [`PAUSE_ABOVE`] (2 MiB) per worker: far above what waits
//! when JavaScript keeps up (one batch, at most 64 KiB of messages, is on
//! its way to it at a time), so a worker that only bursts is never paused,
//! and small enough that a handful of flooding workers cost tens of MiB,
//! not hundreds. Reading resumes below
//! [`RESUME_BELOW`] (512 KiB), so that a paused channel is not resumed and
//! paused again for every batch JavaScript takes.
//!
//! The protocol counts each event it emits for JavaScript
//! ([`Backlog::queued`], then `Output::PauseRead`) and what JavaScript took
//! (`Input::Delivered`, [`Backlog::delivered`], then `Output::ResumeRead`).

use crate::core::hash::IdMap;

pub const PAUSE_ABOVE: usize = 2 << 20;
pub const RESUME_BELOW: usize = 512 << 10;

#[derive(Debug, Default)]
struct Waiting {
    bytes: usize,
    paused: bool,
}

#[derive(Debug, Default)]
pub struct Backlog {
    workers: IdMap<u32, Waiting>,
}

impl Backlog {
    /// `bytes` of worker `id`'s messages were handed to JavaScript; `true`
    /// when reading its channel must pause now.
    pub fn queued(&mut self, id: u32, bytes: usize) -> bool {
        let w = self.workers.entry(id).or_default();
        w.bytes += bytes;
        if !w.paused && w.bytes > PAUSE_ABOVE {
            w.paused = true;
            return true;
        }
        false
    }

    /// JavaScript took `bytes` of worker `id`'s messages; `true` when
    /// reading its channel must resume now.
    pub fn delivered(&mut self, id: u32, bytes: usize) -> bool {
        let Some(w) = self.workers.get_mut(&id) else {
            return false;
        };
        w.bytes = w.bytes.saturating_sub(bytes);
        if w.paused && w.bytes < RESUME_BELOW {
            w.paused = false;
            return true;
        }
        false
    }

    #[cfg(test)]
    pub fn is_paused(&self, id: u32) -> bool {
        self.workers.get(&id).is_some_and(|w| w.paused)
    }

    /// The worker is gone.
    pub fn forget(&mut self, id: u32) {
        self.workers.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_above_the_bound_and_resumes_well_below_it() {
        let mut b = Backlog::default();
        assert!(!b.queued(1, PAUSE_ABOVE));
        assert!(b.queued(1, 1), "one byte over pauses");
        assert!(!b.queued(1, 1000), "already paused");
        assert!(!b.queued(2, 10), "other workers are not affected");
        assert!(!b.delivered(1, PAUSE_ABOVE - RESUME_BELOW));
        assert!(b.is_paused(1));
        assert!(b.delivered(1, 1002), "below the resume mark");
        assert!(!b.is_paused(1));
        b.forget(1);
        assert!(!b.delivered(1, 5), "a forgotten worker resumes nothing");
    }
}
