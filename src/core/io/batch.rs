//! Events on their way to JavaScript: gathered during a turn (a worker's
//! messages joining its messages just before them, as if they had arrived
//! together) and handed at the end of the turn as a [`Batch`] of at most
//! [`BATCH_BYTES`] of messages. A batch carrying workers' data waits for
//! JavaScript's acknowledgement (`Command::Taken`) before the next is
//! handed, so a busy JavaScript thread faces one large batch, not a queue
//! of small ones; the acknowledgement is what the protocol hears as
//! `Input::Delivered` (the read backlog shrinks, reading may resume).

use crate::core::protocol::event::Event;

/// Most message bytes in one batch for JavaScript: it decodes a batch at
/// once, so a larger one would only make its heap grow after a busy spell
/// (the rest waits here, within the read backlog's bound).
pub const BATCH_BYTES: usize = 64 * 1024;

/// What the I/O thread hands JavaScript.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The consumer answers `Command::Taken` once it has these events:
    /// they carry workers' data, and nothing more is handed until then.
    pub ack: bool,
}

pub struct Pending {
    events: Vec<Event>,
    /// Whether the consumer acknowledges batches; without, each counts as
    /// delivered when handed.
    paced: bool,
    /// Bytes per worker of the batch handed and not yet acknowledged.
    out: Option<Vec<(u32, usize)>>,
    /// A batch was cut short and no acknowledgement will ask for the rest:
    /// hand it next turn.
    again: bool,
}

impl Pending {
    pub fn new(paced: bool) -> Pending {
        Pending {
            events: Vec::new(),
            paced,
            out: None,
            again: false,
        }
    }

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

    /// The batch to hand JavaScript now, if any, with the bytes per worker
    /// it delivers at once (an unpaced consumer's).
    pub fn hand(&mut self) -> Option<(Batch, Vec<(u32, usize)>)> {
        if self.events.is_empty() || self.out.is_some() {
            return None;
        }
        let mut total = 0;
        let mut bytes: Vec<(u32, usize)> = Vec::new();
        let mut cut = self.events.len();
        for (i, e) in self.events.iter().enumerate() {
            let n = e.data_len();
            if let (Some(id), true) = (e.worker(), n > 0) {
                match bytes.iter_mut().find(|(w, _)| *w == id) {
                    Some((_, b)) => *b += n,
                    None => bytes.push((id, n)),
                }
            }
            total += n;
            if total >= BATCH_BYTES {
                cut = i + 1;
                break;
            }
        }
        let rest = self.events.split_off(cut);
        let events = std::mem::replace(&mut self.events, rest);
        let ack = self.paced && !bytes.is_empty();
        // The rest goes once JavaScript has acknowledged this part, or
        // next turn if it will not.
        self.again = !self.events.is_empty() && !ack;
        if ack {
            self.out = Some(bytes);
            return Some((Batch { events, ack }, Vec::new()));
        }
        Some((Batch { events, ack }, bytes))
    }

    /// JavaScript acknowledged the batch handed: the bytes per worker it
    /// delivered.
    pub fn taken(&mut self) -> Vec<(u32, usize)> {
        self.out.take().unwrap_or_default()
    }

    /// Whether the next turn must hand the rest of a cut batch.
    pub fn take_again(&mut self) -> bool {
        std::mem::take(&mut self.again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(id: u32, n: usize) -> Event {
        Event::Messages {
            id,
            json: true,
            data: vec![b'1'; n],
            lengths: Vec::new(),
        }
    }

    #[test]
    fn a_batch_with_data_waits_for_its_acknowledgement() {
        let mut p = Pending::new(true);
        p.push(Event::Online { id: 1 });
        let (b, now) = p.hand().expect("a batch");
        assert!(!b.ack && now.is_empty(), "no data: nothing to acknowledge");
        p.push(lines(1, 10));
        p.push(lines(2, 5));
        let (b, now) = p.hand().expect("a batch");
        assert!(b.ack && now.is_empty());
        p.push(lines(1, 3));
        assert!(p.hand().is_none(), "held until acknowledged");
        assert_eq!(p.taken(), vec![(1, 11), (2, 6)]);
        let (b, _) = p.hand().expect("the held events");
        assert_eq!(b.events.len(), 1);
    }

    #[test]
    fn an_unpaced_consumer_takes_each_batch_as_handed() {
        let mut p = Pending::new(false);
        p.push(lines(1, BATCH_BYTES));
        p.push(lines(2, 1));
        let (b, now) = p.hand().expect("a batch");
        assert!(!b.ack);
        assert_eq!(now, vec![(1, BATCH_BYTES + 1)]);
        assert!(p.take_again(), "the rest goes next turn");
        let (_, now) = p.hand().expect("the rest");
        assert_eq!(now, vec![(2, 2)]);
    }
}
