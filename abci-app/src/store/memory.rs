//! An in-memory [`Store`] for tests, simulations and benchmarks.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use compute_proto::pb;

use super::{Delta, KvRead, Snapshot, Store};

/// A [`Store`] in a `BTreeMap`; it forgets everything when dropped.
#[derive(Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    info: Option<pb::CommitInfo>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock means a writer panicked mid-commit: halt.
        self.inner.read().expect("memory store lock poisoned")
    }
}

impl Inner {
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        self.data
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl KvRead for MemStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read().data.get(key).cloned()
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.read().scan(prefix, after, limit)
    }
}

/// A read view that holds the store's read lock: a commit waits for it, so
/// what it shows cannot change under it.
struct MemSnapshot<'a>(std::sync::RwLockReadGuard<'a, Inner>);

impl KvRead for MemSnapshot<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.data.get(key).cloned()
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0.scan(prefix, after, limit)
    }
}

impl Snapshot for MemSnapshot<'_> {
    fn commit_info(&self) -> Option<pb::CommitInfo> {
        self.0.info.clone()
    }
}

impl Store for MemStore {
    fn commit(&self, writes: &Delta, info: &pb::CommitInfo) {
        let mut inner = self.inner.write().expect("memory store lock poisoned");
        for (k, v) in writes.iter() {
            match v {
                Some(v) => inner.data.insert(k.to_vec(), v.to_vec()),
                None => inner.data.remove(k),
            };
        }
        inner.info = Some(info.clone());
    }

    fn commit_info(&self) -> Option<pb::CommitInfo> {
        self.read().info.clone()
    }

    fn snapshot(&self) -> Box<dyn Snapshot + '_> {
        Box::new(MemSnapshot(self.read()))
    }
}
