//! Events on their way to JavaScript: gathered during a turn (a worker's
//! messages joining its messages just before them, as if they had arrived
//! together) and handed at the end of the turn in one batch of at most
//! [`BATCH_BYTES`] of messages; with a paced consumer, one batch at a time
//! (later events wait here and join the next).

use crate::core::io::Flow;
use crate::core::protocol::event::Event;

/// Most message bytes in one batch for JavaScript: it decodes a batch at
/// once, so a larger one would only make its heap grow after a busy spell
/// (the rest waits here, within the read backlog's bound).
pub const BATCH_BYTES: usize = 64 * 1024;

#[derive(Default)]
pub struct Batch {
    events: Vec<Event>,
    /// The last batch was cut short and nobody will ask for the rest:
    /// hand it next turn.
    again: bool,
}

impl Batch {
    pub fn push(&mut self, e: Event) {
        let e = match self
            .events
            .last_mut()
            .filter(|l| l.data_len() < BATCH_BYTES)
        {
            Some(last) => match last.merge(e) {
                Ok(()) => return,
                Err(e) => e,
            },
            None => e,
        };
        self.events.push(e);
    }

    /// The events to hand JavaScript now, if any and if `flow` allows.
    pub fn next(&mut self, flow: &Flow) -> Option<Vec<Event>> {
        if self.events.is_empty() || !flow.may_hand() {
            return None;
        }
        let mut bytes = 0;
        let cut = self
            .events
            .iter()
            .position(|e| {
                bytes += e.data_len();
                bytes >= BATCH_BYTES
            })
            .map_or(self.events.len(), |i| i + 1);
        let rest = self.events.split_off(cut);
        // The rest goes once JavaScript has taken this part.
        if !rest.is_empty() && !flow.hold() {
            self.again = true;
        }
        Some(std::mem::replace(&mut self.events, rest))
    }

    /// Whether the next turn must hand the rest of a cut batch.
    pub fn take_again(&mut self) -> bool {
        std::mem::take(&mut self.again)
    }
}
