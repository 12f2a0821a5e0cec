//! The app hash, phase 1: a SHA3 chain over each block's sorted write set.
//!
//! `app_hash(h) = H("compute/state/v1", app_hash(h-1), h, writes(h))` where
//! `writes(h)` is every key the block set or deleted, in key order, each
//! length-prefixed. Because every state change of every block enters the
//! chain, two replicas with equal app hashes at a height hold equal states
//! (up to a hash collision). Genesis is height `initial_height - 1` over the
//! zero hash.

use compute_proto::hash::{Hasher, Tag};

use crate::store::Delta;

/// The last committed height and app hash, as `Info` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCommit {
    /// 0 before the first block is committed.
    pub height: i64,
    /// The app hash after that height (the genesis hash at height 0).
    pub app_hash: [u8; 32],
}

/// The app hash after applying `writes` at `height` on top of `prev`.
pub fn next(prev: &[u8; 32], height: u64, writes: &Delta) -> [u8; 32] {
    let mut h = Hasher::new(Tag::State);
    h.update(prev);
    h.update_u64(height);
    h.update_u64(writes.len() as u64);
    for (key, value) in writes.iter() {
        h.update_u64(key.len() as u64);
        h.update(key);
        match value {
            Some(value) => {
                h.update(&[1]);
                h.update_u64(value.len() as u64);
                h.update(value);
            }
            None => h.update(&[0]),
        }
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_write_set_matters() {
        let mut a = Delta::new();
        a.put(b"k".to_vec(), b"v".to_vec());
        let base = next(&[0; 32], 1, &a);
        assert_ne!(base, next(&[1; 32], 1, &a), "previous hash");
        assert_ne!(base, next(&[0; 32], 2, &a), "height");
        let mut b = Delta::new();
        b.put(b"k".to_vec(), b"w".to_vec());
        assert_ne!(base, next(&[0; 32], 1, &b), "value");
        let mut c = Delta::new();
        c.delete(b"k".to_vec());
        assert_ne!(base, next(&[0; 32], 1, &c), "delete");
        // Length prefixes: moving a byte between key and value changes the hash.
        let mut d = Delta::new();
        d.put(b"kv".to_vec(), Vec::new());
        let mut e = Delta::new();
        e.put(b"k".to_vec(), b"v".to_vec());
        assert_ne!(next(&[0; 32], 1, &d), next(&[0; 32], 1, &e));
        assert_eq!(base, next(&[0; 32], 1, &a), "deterministic");
    }
}
