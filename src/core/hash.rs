//! A fast hasher for maps keyed by identifiers we allocate ourselves:
//! worker ids, descriptor tokens, sequence numbers, timer and bind ids.
//! std's default (SipHash) resists collision attacks on keys an attacker
//! chooses, at a cost that shows on the I/O thread's per-connection path;
//! these keys are small integers handed out by us (or by JavaScript's
//! `cluster`), so an Fx-style multiply-rotate hash (rustc's) is enough.
//!
//! Never use it for keys that arrive from workers or clients, such as
//! server handle keys (`"4:127.0.0.1:80"`): a multiplicative hash is easy
//! to collide on purpose, which would let a peer degrade a map to a list
//! (HashDoS). Those maps keep std's `RandomState`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Knuth's multiplicative constant as rustc's `FxHasher` uses it (an odd
/// number, so the multiply is a bijection on the low bits).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A map keyed by our own integer ids (see the module doc for when not).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        // hashbrown picks buckets from the low bits and tags from the top 7.
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for id in 0u32..128 {
            let mut h = FxHasher::default();
            h.write_u32(id);
            low.insert(h.finish() & 127);
            top.insert(h.finish() >> 57);
        }
        assert_eq!(low.len(), 128);
        // A random function would fill about 81 of the 128 tags.
        assert!(top.len() > 48, "{}", top.len());
    }

    #[test]
    fn a_map_works_as_a_map() {
        let mut m: IdMap<u64, u32> = IdMap::default();
        for i in 0..1000u64 {
            m.insert(i << 20, i as u32);
        }
        assert!((0..1000u64).all(|i| m.get(&(i << 20)) == Some(&(i as u32))));
        assert_eq!(m.remove(&(5 << 20)), Some(5));
        assert_eq!(m.len(), 999);
    }
}
