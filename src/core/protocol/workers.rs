//! The protocol's view of one worker: its channel's framing, what it sent
//! that is not yet a whole frame, the descriptors that came with it, the
//! outbox, the connections handed to it and not yet answered, and where it
//! is in its life.

use crate::core::codec::framing::{FrameDecoder, Serialization};
use crate::core::protocol::counters::Counters;
use crate::core::protocol::fd::Handle;
use crate::core::protocol::outbox::Outbox;
use crate::core::protocol::servers::InFlightConn;
use std::collections::VecDeque;

pub struct WorkerState {
    pub ser: Serialization,
    pub decoder: FrameDecoder,
    pub outbox: Outbox,
    /// Descriptors received and not yet claimed by a `NODE_HANDLE` frame.
    pub fds_in: VecDeque<Handle>,
    /// The channel is open (until end of stream, an error, or our close).
    pub open: bool,
    /// The process has not been seen to exit.
    pub alive: bool,
    /// Set by `worker.disconnect()` or the worker's own announcement; a
    /// disconnecting worker's `queryServer` is ignored, as in Node.
    pub exited_after_disconnect: bool,
    /// `worker.process.disconnect()`: close once the outbox is idle.
    pub closing: bool,
    /// An `Output::Transmit` is out and the driver has not started on it.
    pub transmit_asked: bool,
    /// JavaScript closed its gate: it gets no new connections (see
    /// [`crate::core::protocol::gate`]).
    pub gated: bool,
    pub counters: Counters,
    /// Connections handed to this worker and not yet answered: at most one
    /// per server it shares (see `Protocol::handoff`), so a few slots
    /// searched in place. Only this worker's reply can settle them.
    pub handoffs: Vec<InFlightConn>,
    /// Bytes of JavaScript's frames written (or dropped with a closing
    /// channel) that no `Event::Written` has reported yet.
    pub js_unreported: usize,
}

impl WorkerState {
    pub fn new(ser: Serialization) -> WorkerState {
        WorkerState {
            ser,
            decoder: FrameDecoder::new(ser),
            outbox: Outbox::default(),
            fds_in: VecDeque::new(),
            open: true,
            alive: true,
            exited_after_disconnect: false,
            closing: false,
            transmit_asked: false,
            gated: false,
            counters: Counters::default(),
            handoffs: Vec::new(),
            js_unreported: 0,
        }
    }

    /// Frames may still be sent to it.
    pub fn connected(&self) -> bool {
        self.open && !self.closing
    }
}
