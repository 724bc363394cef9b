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

use crate::core::balance::round_robin::RoundRobin;
use std::os::fd::OwnedFd;
use std::rc::Rc;

pub struct ReusePort<C> {
    pub address: Option<String>,
    /// The port asked for; once the first socket is bound, the one it got.
    pub port: u16,
    pub ipv6_only: bool,
    /// Each member worker's socket.
    pub sockets: Vec<(u32, Rc<OwnedFd>)>,
    /// Sockets whose worker left, by listener id, accepted from by the primary.
    pub vacant: Vec<(u64, Rc<OwnedFd>)>,
    /// Hands out what the primary accepts from vacant sockets.
    pub balancer: RoundRobin<C>,
}

/// What a worker's leaving asks of the I/O thread.
pub enum Left {
    /// It was not a member.
    NotMember,
    /// Its socket is now vacant: start accepting from it.
    Vacated(Rc<OwnedFd>),
    /// It was the last member: the server closes; stop accepting from
    /// these vacant sockets (listener ids) before they are closed.
    Closed(Vec<(u64, Rc<OwnedFd>)>),
}

impl<C> ReusePort<C> {
    pub fn new(address: Option<String>, port: u16, ipv6_only: bool) -> Self {
        ReusePort {
            address,
            port,
            ipv6_only,
            sockets: Vec::new(),
            vacant: Vec::new(),
            balancer: RoundRobin::default(),
        }
    }

    pub fn contains(&self, worker: u32) -> bool {
        self.sockets.iter().any(|(w, _)| *w == worker)
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// A vacant socket for a new member, if there is one (listener id too).
    pub fn take_vacant(&mut self) -> Option<(u64, Rc<OwnedFd>)> {
        self.vacant.pop()
    }

    pub fn join(&mut self, worker: u32, socket: Rc<OwnedFd>) {
        if !self.contains(worker) {
            self.sockets.push((worker, socket));
            self.balancer.add(worker);
        }
    }

    pub fn leave(&mut self, worker: u32) -> Left {
        let Some(pos) = self.sockets.iter().position(|(w, _)| *w == worker) else {
            return Left::NotMember;
        };
        let (_, socket) = self.sockets.remove(pos);
        self.balancer.remove(worker);
        if self.sockets.is_empty() {
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
    use crate::core::sys;

    fn socket() -> Rc<OwnedFd> {
        Rc::new(sys::socketpair().expect("socketpair").0)
    }

    #[test]
    fn a_leaver_vacates_its_socket_and_the_last_closes_the_vacant_ones() {
        let mut rp: ReusePort<()> = ReusePort::new(None, 0, false);
        let (a, b) = (socket(), socket());
        rp.join(1, a.clone());
        rp.join(2, b);
        assert!(matches!(rp.leave(3), Left::NotMember));
        match rp.leave(1) {
            Left::Vacated(s) => assert!(Rc::ptr_eq(&s, &a)),
            _ => panic!("worker 1's socket should be vacant"),
        }
        rp.vacant.push((7, a));
        match rp.leave(2) {
            Left::Closed(v) => assert_eq!(v.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [7]),
            _ => panic!("the last leaver closes the server"),
        }
        assert!(rp.is_empty());
    }

    #[test]
    fn a_new_member_takes_a_vacant_socket_over() {
        let mut rp: ReusePort<()> = ReusePort::new(None, 0, false);
        let s = socket();
        rp.vacant.push((3, s.clone()));
        let (id, taken) = rp.take_vacant().expect("vacant");
        assert_eq!(id, 3);
        assert!(Rc::ptr_eq(&taken, &s));
        assert!(rp.take_vacant().is_none());
    }
}
