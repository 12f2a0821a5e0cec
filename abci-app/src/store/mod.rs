//! Raw key-value storage: a read trait, a write buffer, and the backends.
//!
//! The state machine reads through [`KvRead`] and writes into [`Delta`]
//! buffers stacked on top of the committed store ([`Layered`], [`StateTx`]).
//! Only [`Store::commit`] writes to a backend, once a block, atomically.
//!
//! A storage failure (disk error, corruption) is not a transaction error: the
//! node cannot go on safely, so the backends halt it with a panic that names
//! the cause, as a broken invariant does.

mod memory;
mod rocks;

use std::collections::BTreeMap;
use std::ops::Bound;

pub use memory::MemStore;
pub use rocks::{RocksStore, StoreError};

use compute_proto::pb;

/// Reading raw state.
pub trait KvRead {
    /// The value under `key`, if any.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;

    /// Up to `limit` entries whose keys start with `prefix` and sort after
    /// `after` (when given), in key order.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// A committed store: a [`KvRead`] that takes one atomic batch a block.
pub trait Store: KvRead + Send + Sync + 'static {
    /// Writes `writes` and `info` in one atomic batch.
    fn commit(&self, writes: &Delta, info: &pb::CommitInfo);

    /// The height and app hash of the last commit, if any.
    fn commit_info(&self) -> Option<pb::CommitInfo>;

    /// A read view of the last commit that later commits do not change:
    /// what queries read, so that they never wait for a block and never see
    /// half of one.
    fn snapshot(&self) -> Box<dyn Snapshot + '_>;
}

/// A consistent read view of one commit (see [`Store::snapshot`]).
pub trait Snapshot: KvRead {
    /// The height and app hash of the commit this view shows, if any.
    fn commit_info(&self) -> Option<pb::CommitInfo>;
}

/// A buffer of writes: `Some(value)` sets a key, `None` deletes it. Sorted,
/// so that its iteration order (which reaches the app hash) is fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Delta {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            writes: BTreeMap::new(),
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// How many keys were written.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// The buffered write of `key`: `Some(None)` is a buffered delete.
    pub fn lookup(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.writes.get(key).map(|v| v.as_deref())
    }

    /// Applies `later` on top of this buffer.
    pub fn merge(&mut self, later: Delta) {
        if self.writes.is_empty() {
            self.writes = later.writes;
        } else {
            self.writes.extend(later.writes);
        }
    }

    /// The writes in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.writes
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// Buffered writes under `prefix` after `after`, in key order.
    pub fn range<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        self.writes
            .range((start, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }
}

/// Merges a scan of `base` with the buffered writes of `delta`.
fn scan_through(
    base: &dyn KvRead,
    delta: &Delta,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if limit == 0 {
        return Vec::new();
    }
    // Every buffered delete in range may hide one base entry, so ask the base
    // for that many more; the result is then cut to `limit`.
    let deletes = delta
        .range(prefix, after)
        .filter(|(_, v)| v.is_none())
        .count();
    let below = base.scan(prefix, after, limit.saturating_add(deletes));
    let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
        below.into_iter().map(|(k, v)| (k, Some(v))).collect();
    let horizon = merged.keys().next_back().cloned();
    let base_was_cut = merged.len() >= limit.saturating_add(deletes);
    for (k, v) in delta.range(prefix, after) {
        merged.insert(k.clone(), v.clone());
    }
    let mut out = Vec::with_capacity(limit.min(merged.len()));
    for (k, v) in merged {
        if out.len() >= limit {
            break;
        }
        if base_was_cut {
            if let Some(h) = &horizon {
                if &k > h {
                    // Past the horizon of a cut base scan an unseen base key
                    // could sort before this one. Up to the horizon at least
                    // `limit` entries are live (each delete hides at most
                    // one), so stopping here never returns too few.
                    break;
                }
            }
        }
        if let Some(v) = v {
            out.push((k, v));
        }
    }
    out
}

/// A read view of `base` with `top` applied.
pub struct Layered<'a> {
    base: &'a dyn KvRead,
    top: &'a Delta,
}

impl<'a> Layered<'a> {
    /// `base` as modified by `top`.
    pub fn new(base: &'a dyn KvRead, top: &'a Delta) -> Self {
        Self { base, top }
    }
}

/// Reads `key` from `delta`, falling back to `base`.
fn get_through(base: &dyn KvRead, delta: &Delta, key: &[u8]) -> Option<Vec<u8>> {
    match delta.lookup(key) {
        Some(v) => v.map(<[u8]>::to_vec),
        None => base.get(key),
    }
}

impl KvRead for Layered<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        get_through(self.base, self.top, key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        scan_through(self.base, self.top, prefix, after, limit)
    }
}

/// A writable buffer over a read view: a transaction, or a part of one,
/// applied by its owner on success and dropped on error.
pub struct StateTx<'a> {
    base: &'a dyn KvRead,
    delta: Delta,
}

impl<'a> StateTx<'a> {
    /// An empty buffer over `base`.
    pub fn new(base: &'a dyn KvRead) -> Self {
        Self {
            base,
            delta: Delta::new(),
        }
    }

    /// Sets `key`.
    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.delta.put(key, value);
    }

    /// Deletes `key`.
    pub fn delete_raw(&mut self, key: Vec<u8>) {
        self.delta.delete(key);
    }

    /// Applies the writes of a nested buffer that succeeded.
    pub fn absorb(&mut self, nested: Delta) {
        self.delta.merge(nested);
    }

    /// The writes buffered so far.
    pub fn delta(&self) -> &Delta {
        &self.delta
    }

    /// The buffered writes.
    pub fn into_delta(self) -> Delta {
        self.delta
    }
}

impl KvRead for StateTx<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        get_through(self.base, &self.delta, key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        scan_through(self.base, &self.delta, prefix, after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (k.to_vec(), v.to_vec())
    }

    #[test]
    fn layers_shadow_and_delete() {
        let store = MemStore::new();
        let mut base = Delta::new();
        base.put(b"a/1".to_vec(), b"x".to_vec());
        base.put(b"a/2".to_vec(), b"y".to_vec());
        store.commit(&base, &pb::CommitInfo::default());
        let mut tx = StateTx::new(&store);
        tx.delete_raw(b"a/1".to_vec());
        tx.put_raw(b"a/3".to_vec(), b"z".to_vec());
        assert_eq!(tx.get(b"a/1"), None);
        assert_eq!(tx.get(b"a/2"), Some(b"y".to_vec()));
        assert_eq!(
            tx.scan(b"a/", None, 10),
            vec![kv(b"a/2", b"y"), kv(b"a/3", b"z")]
        );
        assert_eq!(tx.scan(b"a/", Some(b"a/2"), 10), vec![kv(b"a/3", b"z")]);
        assert_eq!(
            store.get(b"a/1"),
            Some(b"x".to_vec()),
            "the store is untouched"
        );
    }

    proptest! {
        /// A scan through any stack of buffers equals a scan of the flattened state.
        #[test]
        fn layered_scans_match_a_flat_model(
            base in proptest::collection::btree_map(0u8..40, 0u8..4, 0..30),
            top in proptest::collection::btree_map(0u8..40, proptest::option::of(0u8..4), 0..30),
            after in proptest::option::of(0u8..40),
            limit in 0usize..12,
        ) {
            let key = |k: u8| vec![b'p', k];
            let store = MemStore::new();
            let mut d = Delta::new();
            for (k, v) in &base { d.put(key(*k), vec![*v]); }
            // An entry outside the prefix must never show up.
            d.put(b"q".to_vec(), b"other".to_vec());
            store.commit(&d, &pb::CommitInfo::default());
            let mut delta = Delta::new();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = base.iter().map(|(k, v)| (key(*k), vec![*v])).collect();
            for (k, v) in &top {
                match v {
                    Some(v) => { delta.put(key(*k), vec![*v]); model.insert(key(*k), vec![*v]); }
                    None => { delta.delete(key(*k)); model.remove(&key(*k)); }
                }
            }
            let view = Layered::new(&store, &delta);
            let after_key = after.map(key);
            let got = view.scan(b"p", after_key.as_deref(), limit);
            let want: Vec<_> = model.into_iter()
                .filter(|(k, _)| after_key.as_ref().is_none_or(|a| k > a))
                .take(limit)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
