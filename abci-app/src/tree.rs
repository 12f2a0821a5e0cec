//! The authenticated state: a Jellyfish Merkle tree (`jmt`, SHA-256) over
//! every raw state key, versioned by height. Its root is the app hash.
//!
//! The tree lives in the same key-value store as the state, under keys that
//! start with `0xfe` (state keys start with a printable prefix), so that a
//! block's state writes and tree writes go to disk in one atomic batch, and
//! a view that layers a pending block over the store (genesis before the
//! first commit) reads the tree through the same layers.
//!
//! Layout (`BE` is big-endian; `!v` is `u64::MAX - v`, so that a forward
//! scan finds the newest version first):
//!
//! | key | value |
//! |---|---|
//! | `fe 'n' borsh(NodeKey)` | `borsh(Node)` |
//! | `fe 'v' key_hash(32) BE(!version)` | `01 value` set, `00` deleted |
//! | `fe 'p' key_hash(32)` | the raw key (preimage) |
//! | `fe 's' BE(stale_since) borsh(NodeKey)` | empty: a node stale since then |
//! | `fe 'x' BE(stale_since) key_hash(32) BE(!version)` | empty: a value stale since then |
//! | `fe 'b'` | `BE(genesis height)`: tree version 0 is that height |
//!
//! Tree version `v` holds the state after height `genesis_height + v`.
//! Versions older than the retention window are pruned (nodes and values
//! that no newer version needs); the newest version is always kept.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use borsh::BorshDeserialize;
use jmt::storage::{
    HasPreimage, LeafNode, Node, NodeKey, StaleNodeIndex, TreeReader, TreeUpdateBatch,
};
use jmt::{KeyHash, OwnedValue, Sha256Jmt, Version};
use sha2::{Digest, Sha256};

use crate::store::{Delta, KvRead};

pub use compute_proto::state::{leaf_value, raw_value, LEAF_TAG, PROOF_OP_TYPE};

/// The first byte of every tree key.
pub const TREE_PREFIX: u8 = 0xfe;
const NODE: u8 = b'n';
const VALUE: u8 = b'v';
const PREIMAGE: u8 = b'p';
const STALE_NODE: u8 = b's';
const STALE_VALUE: u8 = b'x';
const BASE: u8 = b'b';

/// The key of the genesis height (the height of tree version 0).
pub fn base_key() -> Vec<u8> {
    vec![TREE_PREFIX, BASE]
}

/// The genesis height stored in `store`, if genesis ran.
pub fn base_height(store: &dyn KvRead) -> Option<u64> {
    let raw = store.get(&base_key())?;
    let bytes: [u8; 8] = raw
        .as_slice()
        .try_into()
        .unwrap_or_else(|_| panic!("the tree's genesis height record is corrupt, halting"));
    Some(u64::from_be_bytes(bytes))
}

/// The tree's hash of a raw state key.
pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash(Sha256::digest(key).into())
}

fn node_key_bytes(key: &NodeKey) -> Vec<u8> {
    let mut out = vec![TREE_PREFIX, NODE];
    borsh::to_writer(&mut out, key).expect("a node key serialises into memory");
    out
}

fn value_prefix(hash: &KeyHash) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 32 + 8);
    out.extend([TREE_PREFIX, VALUE]);
    out.extend_from_slice(&hash.0);
    out
}

fn value_key(hash: &KeyHash, version: Version) -> Vec<u8> {
    let mut out = value_prefix(hash);
    out.extend_from_slice(&(!version).to_be_bytes());
    out
}

fn preimage_key(hash: &KeyHash) -> Vec<u8> {
    let mut out = vec![TREE_PREFIX, PREIMAGE];
    out.extend_from_slice(&hash.0);
    out
}

fn stale_node_key(since: Version, node: &NodeKey) -> Vec<u8> {
    let mut out = vec![TREE_PREFIX, STALE_NODE];
    out.extend_from_slice(&since.to_be_bytes());
    borsh::to_writer(&mut out, node).expect("a node key serialises into memory");
    out
}

fn stale_value_key(since: Version, hash: &KeyHash, version: Version) -> Vec<u8> {
    let mut out = vec![TREE_PREFIX, STALE_VALUE];
    out.extend_from_slice(&since.to_be_bytes());
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&(!version).to_be_bytes());
    out
}

/// The tree read through any [`KvRead`] view of the store.
pub struct TreeView<'a> {
    kv: &'a dyn KvRead,
}

impl<'a> TreeView<'a> {
    /// The tree as `kv` holds it.
    pub fn new(kv: &'a dyn KvRead) -> Self {
        Self { kv }
    }

    /// The newest stored entry of `hash` at or below `max_version`: its
    /// version and value (`None` when deleted).
    fn value_at(&self, max_version: Version, hash: &KeyHash) -> Option<(Version, Option<Vec<u8>>)> {
        let prefix = value_prefix(hash);
        // Keys carry !version: the first key at or after !max_version is
        // the newest version not above max_version.
        let after = (max_version < u64::MAX).then(|| {
            let mut k = prefix.clone();
            k.extend_from_slice(&(!max_version).saturating_sub(1).to_be_bytes());
            k
        });
        let (key, raw) = self.kv.scan(&prefix, after.as_deref(), 1).pop()?;
        let inverted: [u8; 8] = key[prefix.len()..]
            .try_into()
            .unwrap_or_else(|_| panic!("a tree value key has a corrupt version, halting"));
        let version = !u64::from_be_bytes(inverted);
        let value = match raw.split_first() {
            Some((1, value)) => Some(value.to_vec()),
            Some((0, [])) => None,
            _ => panic!("a tree value record is corrupt, halting"),
        };
        Some((version, value))
    }

    /// The root hash at `version`, if the tree holds it.
    ///
    /// # Errors
    /// When a stored node does not decode.
    pub fn root(&self, version: Version) -> anyhow::Result<Option<[u8; 32]>> {
        Ok(Sha256Jmt::new(self)
            .get_root_hash_option(version)?
            .map(|r| r.0))
    }

    /// The raw value of raw key `key` at `version` (`None` when absent).
    pub fn get(&self, key: &[u8], version: Version) -> Option<Vec<u8>> {
        let leaf = self
            .value_at(version, &key_hash(key))
            .and_then(|(_, v)| v)?;
        let raw =
            raw_value(&leaf).unwrap_or_else(|| panic!("a tree leaf value lacks its tag, halting"));
        Some(raw.to_vec())
    }

    /// The leaf value of `key` at `version` ([`leaf_value`] of the raw
    /// value) with an ICS-23 proof of it (of its absence when `None`)
    /// against the root of that version.
    ///
    /// # Errors
    /// When the version is not in the tree (pruned or in the future), or a
    /// stored node is corrupt.
    pub fn prove(
        &self,
        key: &[u8],
        version: Version,
    ) -> anyhow::Result<(Option<Vec<u8>>, ics23::CommitmentProof)> {
        Sha256Jmt::new(self).get_with_ics23_proof(key.to_vec(), version)
    }
}

impl TreeReader for TreeView<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        match self.kv.get(&node_key_bytes(node_key)) {
            None => Ok(None),
            Some(raw) => Ok(Some(Node::try_from_slice(&raw)?)),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value_at(max_version, &key_hash).and_then(|(_, v)| v))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("the tree is not restored leaf by leaf; it has no rightmost-leaf index")
    }
}

impl HasPreimage for TreeView<'_> {
    fn preimage(&self, key_hash: KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.kv.get(&preimage_key(&key_hash)))
    }
}

/// Applies a block's state writes to the tree at `version`, reading the
/// previous version through `kv`; returns the new root and the tree's own
/// writes, which must be committed with the state writes.
///
/// The insertions and updates go in as one batch, so that every new
/// internal node is hashed once per block rather than once per key below
/// it; jmt's batch path takes no deletions, so a block's deletions go in
/// first, one at a time, at the same version, and the batch reads their
/// result (see [`Layer`]). The root is the one a key-by-key update gives.
///
/// # Panics
/// When the tree cannot be read (the previous root is missing or a node is
/// corrupt): the state is broken and the node must halt.
pub fn apply(kv: &dyn KvRead, writes: &Delta, version: Version) -> ([u8; 32], Delta) {
    let view = TreeView::new(kv);
    // Tree keys never enter the tree: they are derived from it.
    let state_writes: Vec<(&[u8], Option<&[u8]>)> = writes
        .iter()
        .filter(|(k, _)| k.first() != Some(&TREE_PREFIX) && k.first() != Some(&0xff))
        .collect();
    let halt = |e: anyhow::Error| -> ! {
        panic!("the state tree cannot be updated at version {version}, halting: {e:#}")
    };
    let (deletes, puts): (Vec<_>, Vec<_>) = state_writes.iter().partition(|(_, v)| v.is_none());
    let mut update = Update::default();
    // Keys whose leaf the update read: they existed before this version.
    let existed;
    if version == 0 || puts.is_empty() {
        // Genesis (the batch path has no pre-genesis root to start from) or
        // deletions only: key by key.
        let hashed = state_writes
            .iter()
            .map(|(k, v)| (key_hash(k), v.map(leaf_value)));
        let (root, batch) = Sha256Jmt::new(&view)
            .put_value_set(hashed, version)
            .unwrap_or_else(|e| halt(e));
        update.absorb(batch, version);
        update.root = root.0;
        existed = None;
    } else {
        let below = if deletes.is_empty() {
            None
        } else {
            let hashed = deletes.iter().map(|(k, _)| (key_hash(k), None));
            let (_, batch) = Sha256Jmt::new(&view)
                .put_value_set(hashed, version)
                .unwrap_or_else(|e| halt(e));
            Some(batch)
        };
        let layer = Layer {
            base: &view,
            version,
            below: below.as_ref().map(|b| &b.node_batch),
            leaves: RefCell::new(HashSet::new()),
        };
        let hashed = puts
            .iter()
            .map(|(k, v)| (key_hash(k), leaf_value(v.unwrap_or_default())))
            .collect();
        let (roots, batch) = Sha256Jmt::new(&layer)
            .batch_put_value_sets(vec![hashed], None, version)
            .unwrap_or_else(|e| halt(e));
        existed = Some(layer.leaves.into_inner());
        if let Some(below) = below {
            update.absorb(below, version);
        }
        update.absorb(batch, version);
        update.root = roots
            .first()
            .map_or_else(|| halt(anyhow::anyhow!("the batch made no root")), |r| r.0);
    }
    let mut out = update.writes();
    for (key, value) in &state_writes {
        let hash = key_hash(key);
        // A key the batch found no old leaf of is created here: its
        // preimage is written now (and kept, for proofs of past versions),
        // and its entry replaces none that older versions read (a deletion
        // marker before it went stale when it was written).
        let created = value.is_some() && existed.as_ref().is_some_and(|e| !e.contains(&hash));
        if value.is_some() && (created || existed.is_none()) {
            out.put(preimage_key(&hash), key.to_vec());
        }
        // The entry this write replaces is needed only by older versions.
        if version > 0 && !created {
            if let Some((previous, _)) = view.value_at(version.saturating_sub(1), &hash) {
                out.put(stale_value_key(version, &hash, previous), Vec::new());
            }
        }
        // A deletion marker is needed only while older entries are kept.
        if value.is_none() {
            out.put(stale_value_key(version, &hash, version), Vec::new());
        }
    }
    (update.root, out)
}

/// The tree as a block's deletions left it at `version`, over the tree of
/// the version before: what the batch of its insertions reads.
///
/// jmt's batch starts from the root of `version - 1`; the layer answers
/// that key with the root the deletions made. The batch then rewrites or
/// marks stale some nodes of the deletions (all at `version`), which
/// [`Update::absorb`] reconciles. Every leaf read is noted.
struct Layer<'a> {
    base: &'a TreeView<'a>,
    version: Version,
    below: Option<&'a jmt::storage::NodeBatch>,
    leaves: RefCell<HashSet<KeyHash>>,
}

impl TreeReader for Layer<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let found = match self.below {
            Some(below) => {
                let previous_root = node_key.nibble_path().num_nibbles() == 0
                    && node_key.version().checked_add(1) == Some(self.version);
                let key = if previous_root {
                    NodeKey::new(self.version, node_key.nibble_path().clone())
                } else {
                    node_key.clone()
                };
                match below.nodes().get(&key) {
                    Some(node) => Some(node.clone()),
                    None => self.base.get_node_option(node_key)?,
                }
            }
            None => self.base.get_node_option(node_key)?,
        };
        if let Some(Node::Leaf(leaf)) = &found {
            self.leaves.borrow_mut().insert(leaf.key_hash());
        }
        Ok(found)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        self.base.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        self.base.get_rightmost_leaf()
    }
}

/// The nodes, values and stale-node records of one version's update, from
/// one or two jmt batches at that version.
#[derive(Default)]
struct Update {
    root: [u8; 32],
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(Version, KeyHash), Option<OwnedValue>>,
    stale: BTreeSet<StaleNodeIndex>,
}

impl Update {
    /// Adds a batch made at `version` after those already absorbed: its
    /// nodes replace theirs, and a node of theirs it made stale is dropped
    /// rather than recorded (it was never stored).
    fn absorb(&mut self, batch: TreeUpdateBatch, version: Version) {
        let TreeUpdateBatch {
            node_batch,
            stale_node_index_batch,
            ..
        } = batch;
        for stale in stale_node_index_batch {
            if stale.node_key.version() == version {
                self.nodes.remove(&stale.node_key);
            } else {
                self.stale.insert(stale);
            }
        }
        self.nodes.extend(
            node_batch
                .nodes()
                .iter()
                .map(|(k, n)| (k.clone(), n.clone())),
        );
        self.values
            .extend(node_batch.values().iter().map(|(k, v)| (*k, v.clone())));
    }

    /// The update as store writes.
    fn writes(&self) -> Delta {
        let mut out = Delta::new();
        for (key, node) in &self.nodes {
            let raw = borsh::to_vec(node).expect("a node serialises into memory");
            out.put(node_key_bytes(key), raw);
        }
        for ((version, hash), value) in &self.values {
            let raw = match value {
                Some(v) => {
                    let mut raw = Vec::with_capacity(v.len().saturating_add(1));
                    raw.push(1);
                    raw.extend_from_slice(v);
                    raw
                }
                None => vec![0],
            };
            out.put(value_key(hash, *version), raw);
        }
        for stale in &self.stale {
            out.put(
                stale_node_key(stale.stale_since_version, &stale.node_key),
                Vec::new(),
            );
        }
        out
    }
}

/// Deletes what only versions below `keep_from` needed: nodes and values
/// that became stale at or before it, at most `limit` records a call (the
/// rest waits for the next block). Returns the deletions.
pub fn prune(kv: &dyn KvRead, keep_from: Version, limit: usize) -> Delta {
    let mut out = Delta::new();
    let mut budget = limit;
    for kind in [STALE_NODE, STALE_VALUE] {
        let prefix = [TREE_PREFIX, kind];
        for (key, _) in kv.scan(&prefix, None, budget) {
            let since_bytes: [u8; 8] = key
                .get(2..10)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_else(|| panic!("a stale-tree record is corrupt, halting"));
            // Stale since `since`: only versions below it read the record.
            if u64::from_be_bytes(since_bytes) > keep_from {
                break;
            }
            let target = &key[10..];
            match kind {
                STALE_NODE => {
                    let mut node = vec![TREE_PREFIX, NODE];
                    node.extend_from_slice(target);
                    out.delete(node);
                }
                _ => {
                    let mut value = vec![TREE_PREFIX, VALUE];
                    value.extend_from_slice(target);
                    out.delete(value);
                }
            }
            out.delete(key);
            budget = budget.saturating_sub(1);
        }
    }
    out
}

/// Proof sizes and counts of one answer, for logs and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofStats {
    /// Keys proven.
    pub keys: usize,
    /// Bytes of encoded proofs.
    pub bytes: usize,
}

/// Every raw key a read touched, in order of first use.
#[derive(Default)]
pub struct ReadLog {
    keys: std::sync::Mutex<BTreeMap<Vec<u8>, usize>>,
}

impl ReadLog {
    /// Notes a key.
    pub fn note(&self, key: &[u8]) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let next = keys.len();
        keys.entry(key.to_vec()).or_insert(next);
    }

    /// The keys, in order of first use.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut ordered: Vec<(&Vec<u8>, &usize)> = keys.iter().collect();
        ordered.sort_by_key(|(_, i)| **i);
        ordered.into_iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The state as of a past tree version, read by key from the tree's value
/// history. It cannot list: a scan returns nothing and is noted, so that
/// the caller refuses the answer instead of serving an empty page.
pub struct PastView<'a> {
    tree: &'a TreeView<'a>,
    version: Version,
    scanned: std::sync::atomic::AtomicBool,
}

impl<'a> PastView<'a> {
    /// The state at `version` of `tree`.
    pub fn new(tree: &'a TreeView<'a>, version: Version) -> Self {
        Self {
            tree,
            version,
            scanned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a read tried to list records.
    pub fn scanned(&self) -> bool {
        self.scanned.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl KvRead for PastView<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.tree.get(key, self.version)
    }

    fn scan(
        &self,
        _prefix: &[u8],
        _after: Option<&[u8]>,
        _limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.scanned
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Vec::new()
    }
}

/// A read view that notes every raw key a read touched into a [`ReadLog`]:
/// the keys a query's answer rests on, to be proven.
pub struct Recording<'a> {
    inner: &'a dyn KvRead,
    log: &'a ReadLog,
}

impl<'a> Recording<'a> {
    /// Reads `inner`, noting keys into `log`.
    pub fn new(inner: &'a dyn KvRead, log: &'a ReadLog) -> Self {
        Self { inner, log }
    }
}

impl KvRead for Recording<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.log.note(key);
        self.inner.get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let entries = self.inner.scan(prefix, after, limit);
        for (key, _) in &entries {
            self.log.note(key);
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Store};
    use compute_proto::pb;
    use ics23::HostFunctionsManager;

    fn delta(writes: &[(&[u8], Option<&[u8]>)]) -> Delta {
        let mut d = Delta::new();
        for (k, v) in writes {
            match v {
                Some(v) => d.put(k.to_vec(), v.to_vec()),
                None => d.delete(k.to_vec()),
            }
        }
        d
    }

    /// Applies and commits `writes` at `version`; returns the root.
    fn commit(store: &MemStore, writes: Delta, version: Version) -> [u8; 32] {
        let (root, tree) = apply(store, &writes, version);
        let mut all = writes;
        all.merge(tree);
        store.commit(
            &all,
            &pb::CommitInfo {
                height: i64::try_from(version).unwrap(),
                app_hash: root.to_vec(),
            },
        );
        root
    }

    fn proves(store: &MemStore, key: &[u8], version: Version, root: [u8; 32]) -> Option<Vec<u8>> {
        let (value, proof) = TreeView::new(store).prove(key, version).unwrap();
        let spec = jmt::ics23_spec();
        match &value {
            Some(v) => assert!(
                ics23::verify_membership::<HostFunctionsManager>(
                    &proof,
                    &spec,
                    &root.to_vec(),
                    key,
                    v
                ),
                "membership of {key:?}"
            ),
            None => assert!(
                ics23::verify_non_membership::<HostFunctionsManager>(
                    &proof,
                    &spec,
                    &root.to_vec(),
                    key
                ),
                "non-membership of {key:?}"
            ),
        }
        value
    }

    #[test]
    fn the_root_depends_on_the_state_only_not_on_its_history() {
        let a = MemStore::new();
        let r0 = commit(
            &a,
            delta(&[(b"acct/1", Some(b"x")), (b"acct/2", Some(b"y"))]),
            0,
        );
        let r1 = commit(&a, delta(&[(b"acct/3", Some(b"z"))]), 1);
        assert_ne!(r0, r1);
        let r2 = commit(&a, delta(&[(b"acct/3", None)]), 2);
        assert_eq!(r2, r0, "deleting the key restores the root");
        let r3 = commit(&a, Delta::new(), 3);
        assert_eq!(r3, r2, "an empty block keeps the root");
        // Another replica reaching the same state another way.
        let b = MemStore::new();
        commit(&b, delta(&[(b"acct/2", Some(b"y"))]), 0);
        let other = commit(&b, delta(&[(b"acct/1", Some(b"x"))]), 1);
        assert_eq!(other, r0);
    }

    #[test]
    fn values_and_absences_are_proven_at_every_kept_version() {
        let store = MemStore::new();
        let r0 = commit(
            &store,
            delta(&[(b"k/a", Some(b"1")), (b"k/b", Some(b"2"))]),
            0,
        );
        let r1 = commit(&store, delta(&[(b"k/a", Some(b"3")), (b"k/b", None)]), 1);
        assert_eq!(proves(&store, b"k/a", 1, r1), Some(leaf_value(b"3")));
        assert_eq!(proves(&store, b"k/b", 1, r1), None);
        assert_eq!(proves(&store, b"k/zz", 1, r1), None);
        // The past version, read and proven against its own root.
        assert_eq!(proves(&store, b"k/a", 0, r0), Some(leaf_value(b"1")));
        assert_eq!(proves(&store, b"k/b", 0, r0), Some(leaf_value(b"2")));
        // Empty raw values (index keys, all-zero records) are provable.
        let r2 = commit(&store, delta(&[(b"k/empty", Some(b""))]), 2);
        assert_eq!(proves(&store, b"k/empty", 2, r2), Some(vec![LEAF_TAG]));
        assert_eq!(TreeView::new(&store).get(b"k/empty", 2), Some(Vec::new()));
        let tree = TreeView::new(&store);
        assert_eq!(tree.get(b"k/b", 0), Some(b"2".to_vec()));
        assert_eq!(tree.get(b"k/b", 1), None);
        assert_eq!(tree.root(0).unwrap(), Some(r0));
        assert_eq!(tree.root(1).unwrap(), Some(r1));
        // A proof of one root does not verify against another.
        let (value, proof) = tree.prove(b"k/a", 0).unwrap();
        assert!(!ics23::verify_membership::<HostFunctionsManager>(
            &proof,
            &jmt::ics23_spec(),
            &r1.to_vec(),
            b"k/a",
            &value.unwrap()
        ));
    }

    #[test]
    fn pruning_drops_old_versions_and_keeps_the_newest_whole() {
        let store = MemStore::new();
        let mut roots = Vec::new();
        for version in 0..20u64 {
            let key = format!("k/{}", version % 5);
            let value = version.to_be_bytes();
            let mut writes = delta(&[(key.as_bytes(), Some(&value))]);
            if version % 7 == 3 {
                writes.delete(b"k/1".to_vec());
            }
            roots.push(commit(&store, writes, version));
            if version >= 4 {
                let prune_writes = prune(&store, version - 3, usize::MAX);
                let root = roots[usize::try_from(version).unwrap()];
                store.commit(
                    &prune_writes,
                    &pb::CommitInfo {
                        height: i64::try_from(version).unwrap(),
                        app_hash: root.to_vec(),
                    },
                );
            }
        }
        let tree = TreeView::new(&store);
        // Versions 16..=19 stay provable; every key reads as it was.
        for version in 16..20u64 {
            let root = roots[usize::try_from(version).unwrap()];
            assert_eq!(tree.root(version).unwrap(), Some(root));
            for k in 0..5 {
                proves(&store, format!("k/{k}").as_bytes(), version, root);
            }
        }
        // Old versions are gone: no root, no old values.
        assert_eq!(tree.root(2).unwrap(), None);
        let stale = store.scan(&[TREE_PREFIX, STALE_NODE], None, usize::MAX);
        assert!(stale
            .iter()
            .all(|(k, _)| u64::from_be_bytes(k[2..10].try_into().unwrap()) > 16));
        let values = store.scan(&[TREE_PREFIX, VALUE], None, usize::MAX);
        assert!(
            values.len() < 20,
            "old values were pruned: {} left",
            values.len()
        );
    }

    /// The tree's records of one kind (nodes, stale-node index), as stored.
    fn records(store: &MemStore, kind: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.scan(&[TREE_PREFIX, kind], None, usize::MAX)
    }

    /// The key of the root node of `version`.
    fn root_key(version: Version) -> NodeKey {
        // borsh: the version, then an empty nibble path (count and bytes).
        let mut raw = version.to_le_bytes().to_vec();
        raw.extend([0; 12]);
        NodeKey::try_from_slice(&raw).unwrap()
    }

    /// Adds the stored keys of every node under `key` (itself included).
    fn reach(view: &TreeView<'_>, key: NodeKey, out: &mut BTreeSet<Vec<u8>>) {
        let node = view
            .get_node_option(&key)
            .unwrap()
            .unwrap_or_else(|| panic!("{key:?} is referenced but not stored"));
        if let Node::Internal(internal) = &node {
            for (nibble, child) in internal.children_sorted() {
                let path = key
                    .nibble_path()
                    .nibbles()
                    .chain(std::iter::once(nibble))
                    .collect();
                reach(view, NodeKey::new(child.version, path), out);
            }
        }
        if !matches!(node, Node::Null) {
            out.insert(node_key_bytes(&key));
        }
    }

    /// The value of each of `keys` in the state `store` holds.
    fn state_of(store: &MemStore, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        keys.iter().map(|k| store.get(k)).collect()
    }

    #[test]
    fn the_batched_update_builds_the_root_a_key_by_key_update_builds_and_prunes_cleanly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let batched = MemStore::new();
        let one_by_one = MemStore::new();
        let keys: Vec<Vec<u8>> = (0..48u8)
            .map(|i| format!("k/{i:02}").into_bytes())
            .collect();
        let mut states = Vec::new();
        for version in 0..60u64 {
            let mut writes = Delta::new();
            // Some blocks only delete, some only write, most do both.
            let (puts, deletes) = match version % 6 {
                0 if version > 0 => (0, 6),
                1 => (8, 0),
                _ => (rng.gen_range(1..12), rng.gen_range(0..6)),
            };
            for _ in 0..puts {
                let key = &keys[rng.gen_range(0..keys.len())];
                writes.put(key.clone(), vec![rng.gen(); rng.gen_range(0..4)]);
            }
            for _ in 0..deletes {
                writes.delete(keys[rng.gen_range(0..keys.len())].clone());
            }
            // The reference: every write in one key-by-key update.
            let view = TreeView::new(&one_by_one);
            let hashed: Vec<_> = writes
                .iter()
                .map(|(k, v)| (key_hash(k), v.map(leaf_value)))
                .collect();
            let (expected, batch) = Sha256Jmt::new(&view)
                .put_value_set(hashed, version)
                .unwrap();
            let mut reference = Update::default();
            reference.absorb(batch, version);
            let mut all = writes.clone();
            all.merge(reference.writes());
            let info = pb::CommitInfo {
                height: i64::try_from(version).unwrap(),
                app_hash: expected.0.to_vec(),
            };
            one_by_one.commit(&all, &info);

            let root = commit(&batched, writes, version);
            assert_eq!(root, expected.0, "root at version {version}");
            // Pruned to a window of three versions, the store holds
            // exactly the nodes those versions reach: none dangles, none
            // leaks.
            let keep_from = version.saturating_sub(2);
            let pruned = prune(&batched, keep_from, usize::MAX);
            batched.commit(&pruned, &info);
            let view = TreeView::new(&batched);
            let mut reached = BTreeSet::new();
            for kept in keep_from..=version {
                reach(&view, root_key(kept), &mut reached);
            }
            let stored: BTreeSet<Vec<u8>> = records(&batched, NODE)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert!(
                stored == reached,
                "stored nodes differ from reachable ones at version {version}"
            );
            // Every kept version still reads as the state was, and values
            // no kept version reads are gone.
            states.push(state_of(&batched, &keys));
            for kept in keep_from..=version {
                let state = &states[usize::try_from(kept).unwrap()];
                for (key, value) in keys.iter().zip(state) {
                    assert_eq!(&view.get(key, kept), value, "{key:?} at {kept}");
                }
            }
            assert!(records(&batched, VALUE).len() <= keys.len() * 4);
        }
        // Every key, present or not, is proven at the last version, and
        // every present key's preimage was written once, when created.
        for key in &keys {
            proves(
                &batched,
                key,
                59,
                TreeView::new(&batched).root(59).unwrap().unwrap(),
            );
            if batched.get(key).is_some() {
                assert_eq!(
                    batched.get(&preimage_key(&key_hash(key))),
                    Some(key.clone())
                );
            }
        }
    }

    #[test]
    fn the_worked_example_of_the_protocol_is_the_root_of_its_one_leaf_tree() {
        // docs/PROTOCOL.md, "State keys and values", "Worked example".
        let key = hex::decode(
            "616363742fd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap();
        let value = hex::decode("08e8071003").unwrap();
        let store = MemStore::new();
        let root = commit(&store, delta(&[(&key, Some(&value))]), 0);
        assert_eq!(
            hex::encode(root),
            "df21455328284ca924a2c9d9de11b74586a1643c07b13488b409dd915210b49d"
        );
    }

    #[test]
    fn tree_keys_never_enter_the_tree_and_state_keys_sort_before_them() {
        let store = MemStore::new();
        let r = commit(&store, delta(&[(b"acct/1", Some(b"x"))]), 0);
        let mut with_tree_key = delta(&[(b"acct/1", Some(b"x"))]);
        with_tree_key.put(base_key(), 7u64.to_be_bytes().to_vec());
        let other = MemStore::new();
        assert_eq!(commit(&other, with_tree_key, 0), r);
        assert_eq!(base_height(&other), Some(7));
    }
}
