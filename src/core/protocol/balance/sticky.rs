//! Sticky distribution (`SCHED_STICKY`): like round-robin the primary
//! accepts, but every connection from one client address goes to the same
//! live worker, which is what session protocols (socket.io polling) need.
//! The owner is chosen by rendezvous hashing, so when a worker leaves only
//! its own clients move, and a new worker takes over only about 1/n of them.
//! Each worker still has at most one connection in flight; the others wait
//! in that worker's own queue.

use crate::core::hash::IdMap;
use std::collections::VecDeque;
use std::net::IpAddr;

#[derive(Debug)]
struct Lane<C> {
    in_flight: bool,
    /// Closed to new connections: its clients go to others meanwhile.
    gated: bool,
    queue: VecDeque<(u64, C)>,
}

#[derive(Debug)]
pub struct Sticky<C> {
    /// Workers sharing this server, in the order they joined.
    all: Vec<u32>,
    lanes: IdMap<u32, Lane<C>>,
    /// Connections that arrived while no worker was there.
    unassigned: VecDeque<(u64, C)>,
}

impl<C> Default for Sticky<C> {
    fn default() -> Self {
        Sticky {
            all: Vec::new(),
            lanes: IdMap::default(),
            unassigned: VecDeque::new(),
        }
    }
}

/// The stickiness key of a client: its IP address (an IPv4 client of a
/// dual-stack server counts as that IPv4 address), port excluded.
pub fn client_key(ip: Option<IpAddr>) -> u64 {
    let fnv = |bytes: &[u8]| {
        // FNV-1a: stable across processes and runs, unlike std's seeded hasher.
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    match ip {
        None => 0,
        Some(IpAddr::V4(v4)) => fnv(&v4.octets()),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => fnv(&v4.octets()),
            None => fnv(&v6.octets()),
        },
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: spreads nearby keys and ids over the range.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn score(client: u64, worker: u32) -> u64 {
    mix(client ^ u64::from(worker).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

impl<C> Sticky<C> {
    pub fn contains(&self, worker: u32) -> bool {
        self.lanes.contains_key(&worker)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn add(&mut self, worker: u32) -> bool {
        if self.contains(worker) {
            return false;
        }
        self.all.push(worker);
        self.lanes.insert(
            worker,
            Lane {
                // Busy until its first handoff, as a round-robin worker is
                // not idle before it has been handed off to.
                in_flight: true,
                gated: false,
                queue: VecDeque::new(),
            },
        );
        true
    }

    fn open(&self, worker: u32) -> bool {
        self.lanes.get(&worker).is_some_and(|l| !l.gated)
    }

    /// The open worker that owns `client`, other than `exclude` when there
    /// is another.
    pub fn owner(&self, client: u64, exclude: Option<u32>) -> Option<u32> {
        self.all
            .iter()
            .copied()
            .filter(|w| Some(*w) != exclude && self.open(*w))
            .max_by_key(|w| score(client, *w))
            .or_else(|| exclude.filter(|w| self.open(*w)))
    }

    /// Closes (or opens) a worker's lane to new connections. Closing
    /// re-homes its queue: returned are those to send now. An opened lane
    /// gets its next connection with the next [`Self::handoff`].
    pub fn gate(&mut self, worker: u32, closed: bool) -> Vec<(u32, C)> {
        let Some(lane) = self.lanes.get_mut(&worker) else {
            return Vec::new();
        };
        lane.gated = closed;
        if !closed {
            return Vec::new();
        }
        let queue = std::mem::take(&mut lane.queue);
        let mut now = Vec::new();
        for (client, conn) in queue {
            if let Some(sent) = self.distribute(conn, client, None) {
                now.push(sent);
            }
        }
        now
    }

    /// Queues a connection for its owner; returns it with that worker if the
    /// worker is idle and must be sent it now. `exclude`: a worker that just
    /// refused it.
    pub fn distribute(&mut self, conn: C, client: u64, exclude: Option<u32>) -> Option<(u32, C)> {
        self.place(conn, client, exclude, false)
    }

    /// [`Self::distribute`] ahead of its owner's queue: for a connection
    /// already handed out once.
    pub fn distribute_first(
        &mut self,
        conn: C,
        client: u64,
        exclude: Option<u32>,
    ) -> Option<(u32, C)> {
        self.place(conn, client, exclude, true)
    }

    fn place(
        &mut self,
        conn: C,
        client: u64,
        exclude: Option<u32>,
        first: bool,
    ) -> Option<(u32, C)> {
        let Some(worker) = self.owner(client, exclude) else {
            if first {
                self.unassigned.push_front((client, conn));
            } else {
                self.unassigned.push_back((client, conn));
            }
            return None;
        };
        let lane = self.lanes.get_mut(&worker)?;
        if lane.in_flight {
            if first {
                lane.queue.push_front((client, conn));
            } else {
                lane.queue.push_back((client, conn));
            }
            None
        } else {
            lane.in_flight = true;
            Some((worker, conn))
        }
    }

    /// The worker answered its last connection (or just joined): its next
    /// queued one, else one that arrived while nobody was there, else it is
    /// idle.
    pub fn handoff(&mut self, worker: u32) -> Option<C> {
        let lane = self.lanes.get_mut(&worker)?;
        let next = lane
            .queue
            .pop_front()
            .or_else(|| self.unassigned.pop_front());
        lane.in_flight = next.is_some();
        next.map(|(_, c)| c)
    }

    /// Drops a worker. Returns whether it was the last, and its queued
    /// connections re-homed to their new owners: those to send now.
    pub fn remove(&mut self, worker: u32) -> (bool, Vec<(u32, C)>) {
        let Some(lane) = self.lanes.remove(&worker) else {
            return (false, Vec::new());
        };
        self.all.retain(|w| *w != worker);
        let mut now = Vec::new();
        for (client, conn) in lane.queue {
            if let Some(sent) = self.distribute(conn, client, None) {
                now.push(sent);
            }
        }
        (self.all.is_empty(), now)
    }

    /// Connections waiting for a worker.
    pub fn queued(&self) -> impl Iterator<Item = &C> {
        self.lanes
            .values()
            .flat_map(|l| l.queue.iter())
            .chain(self.unassigned.iter())
            .map(|(_, c)| c)
    }

    pub fn drain(&mut self) -> Vec<C> {
        let mut out: Vec<C> = self.unassigned.drain(..).map(|(_, c)| c).collect();
        for lane in self.lanes.values_mut() {
            out.extend(lane.queue.drain(..).map(|(_, c)| c));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(workers: &[u32]) -> Sticky<&'static str> {
        let mut s = Sticky::default();
        for w in workers {
            s.add(*w);
            assert_eq!(s.handoff(*w), None);
        }
        s
    }

    #[test]
    fn one_client_always_reaches_the_same_worker() {
        let mut s = ready(&[1, 2, 3]);
        let client = client_key(Some("10.0.0.7".parse().expect("ip")));
        let (w, _) = s.distribute("a", client, None).expect("idle owner");
        assert_eq!(s.handoff(w), None);
        for _ in 0..10 {
            let (again, _) = s.distribute("b", client, None).expect("idle owner");
            assert_eq!(again, w);
            s.handoff(w);
        }
    }

    #[test]
    fn a_gated_owner_is_skipped_until_opened() {
        let mut s = ready(&[1, 2]);
        let client = client_key(Some("10.0.0.9".parse().expect("ip")));
        let (owner, _) = s.distribute("a", client, None).expect("idle owner");
        // Busy owner: the next one waits in its lane, until the gate closes.
        assert_eq!(s.distribute("b", client, None), None);
        let other = 3 - owner;
        assert_eq!(s.gate(owner, true), vec![(other, "b")]);
        assert_eq!(s.owner(client, None), Some(other));
        s.gate(owner, false);
        assert_eq!(s.owner(client, None), Some(owner));
        // Every lane closed: connections wait unassigned.
        s.gate(1, true);
        s.gate(2, true);
        assert_eq!(s.distribute("c", client, None), None);
        s.gate(owner, false);
        assert_eq!(s.handoff(owner), Some("c"));
    }

    #[test]
    fn clients_spread_over_workers() {
        let s = ready(&[1, 2, 3, 4]);
        let mut per = std::collections::HashMap::new();
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            *per.entry(s.owner(client_key(Some(ip)), None)).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 4);
        assert!(per.values().all(|n| (150..350).contains(n)), "{per:?}");
    }

    #[test]
    fn ipv4_mapped_clients_count_as_ipv4() {
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(client_key(Some(v4)), client_key(Some(mapped)));
    }

    #[test]
    fn a_busy_owner_queues_rather_than_spilling_to_another_worker() {
        let mut s = ready(&[1, 2]);
        let client = 42;
        let (w, _) = s.distribute("a", client, None).expect("idle owner");
        assert_eq!(s.distribute("b", client, None), None);
        assert_eq!(s.distribute("c", client, None), None);
        assert_eq!(s.handoff(w), Some("b"));
        assert_eq!(s.handoff(w), Some("c"));
        assert_eq!(s.handoff(w), None);
    }

    #[test]
    fn leaving_moves_only_the_leavers_clients() {
        let s3 = ready(&[1, 2, 3]);
        let mut s2 = ready(&[1, 2, 3]);
        s2.remove(3);
        for client in 0..500u64 {
            let before = s3.owner(client, None);
            let after = s2.owner(client, None);
            if before != Some(3) {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn queued_connections_of_a_leaver_go_to_their_new_owners() {
        let mut s = ready(&[1, 2]);
        let client = (0..)
            .find(|c| s.owner(*c, None) == Some(1))
            .expect("a client of 1");
        assert_eq!(s.distribute("a", client, None), Some((1, "a")));
        assert_eq!(s.distribute("b", client, None), None);
        let (last, now) = s.remove(1);
        assert!(!last);
        assert_eq!(now, vec![(2, "b")]);
    }

    #[test]
    fn a_refusal_goes_to_another_worker_when_there_is_one() {
        let mut s = ready(&[1, 2]);
        let client = (0..)
            .find(|c| s.owner(*c, None) == Some(1))
            .expect("a client of 1");
        assert_eq!(s.distribute("a", client, None), Some((1, "a")));
        assert_eq!(s.distribute("a", client, Some(1)), Some((2, "a")));
        let mut alone = ready(&[1]);
        assert_eq!(alone.distribute("x", client, None), Some((1, "x")));
        assert_eq!(alone.distribute("x", client, Some(1)), None);
        assert_eq!(alone.handoff(1), Some("x"));
    }

    #[test]
    fn connections_wait_for_the_first_worker() {
        let mut s: Sticky<&str> = Sticky::default();
        assert_eq!(s.distribute("a", 5, None), None);
        s.add(9);
        assert_eq!(s.handoff(9), Some("a"));
        let (last, now) = s.remove(9);
        assert!(last && now.is_empty());
    }
}
