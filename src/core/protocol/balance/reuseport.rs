//! `SCHED_REUSEPORT`: every worker that asks gets a socket of its own bound
//! with `SO_REUSEPORT` to the same address and port, and accepts from it
//! itself; the kernel spreads connections over the group.
//!
//! The primary keeps a copy of each worker's socket. When a worker leaves,
//! its socket stays open and listening ("vacant"): the connections already
//! queued on it, and those the kernel still sends it, are accepted by the
//! primary and handed round-robin to the remaining workers, so a rolling
//! restart loses none. The next worker to ask takes a vacant socket over
//! instead of growing the group.

use crate::core::codec::value::Value;
use crate::core::protocol::balance::round_robin::RoundRobin;
use crate::core::protocol::fd::Handle;

pub struct ReusePort<C> {
    pub address: Option<String>,
    /// The port asked for; once the first socket is bound, the one it got.
    pub port: u16,
    pub ipv6_only: bool,
    /// Each member worker's socket.
    pub sockets: Vec<(u32, Handle)>,
    /// Sockets whose worker left, accepted from by the primary.
    pub vacant: Vec<Handle>,
    /// The open request of the next member's socket, if one is on its way;
    /// sockets are opened one at a time, so that with port 0 the first one
    /// picks the port the others join.
    pub opening: Option<u32>,
    /// Workers (with their `queryServer`) waiting for a socket, in order.
    pub waiting: Vec<(u32, Value)>,
    /// Hands out what the primary accepts from vacant sockets.
    pub balancer: RoundRobin<C>,
}

/// What a worker's leaving asks of the I/O thread.
pub enum Left {
    /// It was not a member.
    NotMember,
    /// Its socket is now vacant: start accepting from it.
    Vacated(Handle),
    /// It was the last member: the server closes; stop accepting from
    /// these vacant sockets before they are closed.
    Closed(Vec<Handle>),
}

impl<C> ReusePort<C> {
    pub fn new(address: Option<String>, port: u16, ipv6_only: bool) -> Self {
        ReusePort {
            address,
            port,
            ipv6_only,
            sockets: Vec::new(),
            vacant: Vec::new(),
            opening: None,
            waiting: Vec::new(),
            balancer: RoundRobin::default(),
        }
    }

    pub fn contains(&self, worker: u32) -> bool {
        self.sockets.iter().any(|(w, _)| *w == worker)
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    pub fn is_waiting(&self, worker: u32) -> bool {
        self.waiting.iter().any(|(w, _)| *w == worker)
    }

    pub fn is_opening(&self) -> bool {
        self.opening.is_some()
    }

    /// A vacant socket for a new member, if there is one.
    pub fn take_vacant(&mut self) -> Option<Handle> {
        self.vacant.pop()
    }

    pub fn join(&mut self, worker: u32, socket: Handle) {
        if !self.contains(worker) {
            self.sockets.push((worker, socket));
            self.balancer.add(worker);
        }
    }

    pub fn leave(&mut self, worker: u32) -> Left {
        let waited = self.is_waiting(worker);
        self.waiting.retain(|(w, _)| *w != worker);
        let Some(pos) = self.sockets.iter().position(|(w, _)| *w == worker) else {
            // Only waiting: the server closes if that was all it had.
            if waited && self.sockets.is_empty() && self.waiting.is_empty() {
                return Left::Closed(std::mem::take(&mut self.vacant));
            }
            return Left::NotMember;
        };
        let (_, socket) = self.sockets.remove(pos);
        self.balancer.remove(worker);
        if self.sockets.is_empty() && self.waiting.is_empty() {
            self.balancer.drain().for_each(drop);
            Left::Closed(std::mem::take(&mut self.vacant))
        } else {
            Left::Vacated(socket)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::fd::{FdId, Released};

    #[test]
    fn a_leaver_vacates_its_socket_and_the_last_closes_the_vacant_ones() {
        let released = Released::default();
        let mut rp: ReusePort<()> = ReusePort::new(None, 0, false);
        let (a, b) = (
            Handle::new(FdId(1), &released),
            Handle::new(FdId(2), &released),
        );
        rp.join(1, a);
        rp.join(2, b);
        assert!(matches!(rp.leave(3), Left::NotMember));
        match rp.leave(1) {
            Left::Vacated(s) => {
                assert_eq!(s.id(), FdId(1));
                rp.vacant.push(s);
            }
            _ => panic!("worker 1's socket should be vacant"),
        }
        match rp.leave(2) {
            Left::Closed(v) => assert_eq!(v.iter().map(Handle::id).collect::<Vec<_>>(), [FdId(1)]),
            _ => panic!("the last leaver closes the server"),
        }
        assert!(rp.is_empty());
    }

    #[test]
    fn a_new_member_takes_a_vacant_socket_over() {
        let released = Released::default();
        let mut rp: ReusePort<()> = ReusePort::new(None, 0, false);
        rp.vacant.push(Handle::new(FdId(3), &released));
        let taken = rp.take_vacant().expect("vacant");
        assert_eq!(taken.id(), FdId(3));
        assert!(rp.take_vacant().is_none());
    }
}
