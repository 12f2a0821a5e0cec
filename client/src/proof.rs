//! Checking a query answer against the app hash: the ICS-23 proofs that
//! come with `abci_query` when it is asked with `prove = true`.
//!
//! The app hash is the root of a Jellyfish Merkle Tree (jmt 0.12, SHA-256)
//! over every raw state key, at version = block height. An answer read at
//! height `h` carries, in `ResponseQuery.proof_ops`, one [`ProofOp`] per
//! raw state key it rests on: `type` is [`PROOF_OP_TYPE`], `key` the raw
//! key, and `data` the protobuf encoding of an `ics23::CommitmentProof`,
//! of existence (with the value) or of absence, against the tree at
//! version `h`, whose root is the app hash in the header of block `h + 1`.
//!
//! **What this module checks**, for each op: that it is of our type and
//! within size bounds, that it decodes, that it is a single existence or
//! non-existence proof (not a batch, not compressed) for the op's own key,
//! that its leaf is built the way jmt builds leaves and its path is no
//! deeper than a 256-bit key hash allows, that it hashes up to the given
//! root, and that `ics23` accepts it under [`jmt::ics23_spec`] (for
//! absence: the two neighbours are adjacent leaves that bracket the key).
//! Then, where the caller claims values, that each claim is exactly what
//! was proven, and that no claim lacks a proof and no proof lacks a claim.
//!
//! **What it trusts**: the root it is given (it is only as good as the
//! header it came from: get that header from [`crate::light`]), SHA-256,
//! and the `ics23` crate's checks of the proof's shape. It does not know
//! what the keys mean: that an answer follows from the proven entries is
//! the caller's check.
//!
//! ICS-23 cannot prove an empty value present: such a proof is refused as
//! [`ProofError::Malformed`].

use std::collections::BTreeMap;
use std::fmt;

use ics23::commitment_proof::Proof;
use ics23::{CommitmentProof, ExistenceProof, HostFunctionsManager, NonExistenceProof};
use prost_ics23::Message as _;
use tendermint::merkle::proof::ProofOp;

pub use compute_proto::state::PROOF_OP_TYPE;

/// The most proof ops one answer may carry. A full page of a listing
/// ([`compute_proto::limits::QUERY_PAGE_ENTRIES_MAX`] records) rests on a
/// few keys per record; this leaves room for that and bounds the work.
pub const PROOF_OPS_MAX: usize = 4096;

/// The largest encoded proof accepted. A proof of absence carries two
/// neighbouring entries, each at most a transaction in size (a value is
/// written by one transaction), plus two paths of at most
/// [`PROOF_DEPTH_MAX`] steps of under 100 bytes each.
pub const PROOF_OP_BYTES_MAX: u64 =
    2 * compute_proto::limits::TX_BYTES_CEILING + 2 * PROOF_DEPTH_MAX as u64 * 100;

/// The deepest path a proof may have: the tree is keyed by 256-bit hashes,
/// so no leaf sits deeper than 256 internal nodes. (The spec's own
/// `max_depth` is not enforced by `ics23` while its `min_depth` is 0.)
pub const PROOF_DEPTH_MAX: usize = 256;

/// The root of the state tree: the app hash of a block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateRoot([u8; 32]);

impl StateRoot {
    /// The root with these bytes.
    #[must_use]
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The root a block header commits to as its app hash.
    ///
    /// # Errors
    /// [`ProofError::BadRoot`] when the app hash is not 32 bytes long.
    pub fn from_app_hash(app_hash: &tendermint::AppHash) -> Result<Self, ProofError> {
        let bytes = app_hash.as_bytes();
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| ProofError::BadRoot {
                length_bytes: bytes.len(),
            })
    }

    /// The root's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upper-case, as CometBFT shows app hashes.
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateRoot({self})")
    }
}

/// A raw state key, as the tree holds it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey(pub Vec<u8>);

impl StateKey {
    /// The key's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for StateKey {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl fmt::Display for StateKey {
    /// Printable ASCII as it is, other bytes escaped (`acct/\x1f...`):
    /// keys are a readable prefix and big-endian ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key in an error message is cut, so that a hostile node cannot
        // make the message huge.
        const SHOWN_BYTES_MAX: usize = 128;
        for byte in self.0.iter().take(SHOWN_BYTES_MAX) {
            write!(f, "{}", std::ascii::escape_default(*byte))?;
        }
        if self.0.len() > SHOWN_BYTES_MAX {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateKey(\"{self}\")")
    }
}

/// Why a proof did not establish what it was meant to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The app hash cannot be a root of the state tree.
    #[error("the app hash is {length_bytes} bytes long; a state root is 32")]
    BadRoot {
        /// Its length.
        length_bytes: usize,
    },
    /// The answer carries more proof ops than accepted.
    #[error("the answer carries {count} proof ops; at most {max} are accepted")]
    TooManyOps {
        /// How many.
        count: usize,
        /// [`PROOF_OPS_MAX`].
        max: usize,
    },
    /// A proof op is not of this chain's type.
    #[error("the proof of key '{key}' is of type '{found}', not '{PROOF_OP_TYPE}'")]
    WrongOpType {
        /// The op's key.
        key: StateKey,
        /// Its type (at most 64 characters of it).
        found: String,
    },
    /// A proof op is larger than any honest one.
    #[error("the proof of key '{key}' is {size_bytes} bytes; at most {max_bytes} are accepted")]
    OpTooLarge {
        /// The op's key.
        key: StateKey,
        /// Its size.
        size_bytes: u64,
        /// [`PROOF_OP_BYTES_MAX`].
        max_bytes: u64,
    },
    /// A proof op's data is not a `CommitmentProof`.
    #[error("the proof of key '{key}' does not decode: {detail}")]
    Undecodable {
        /// The op's key.
        key: StateKey,
        /// The decoder's complaint.
        detail: String,
    },
    /// The proof is not a single existence or non-existence proof.
    #[error(
        "the proof of key '{key}' is {kind}; a single existence or non-existence proof is expected"
    )]
    UnexpectedProofKind {
        /// The op's key.
        key: StateKey,
        /// What it is.
        kind: &'static str,
    },
    /// The proof is about another key than the one it is given for.
    #[error("the proof given for key '{key}' is about key '{proven_key}'")]
    KeyMismatch {
        /// The key the proof was given for.
        key: StateKey,
        /// The key it proves something about.
        proven_key: StateKey,
    },
    /// The proof is not built as this chain's tree builds proofs.
    #[error("the proof of key '{key}' is malformed: {detail}")]
    Malformed {
        /// The op's key.
        key: StateKey,
        /// What is wrong.
        detail: String,
    },
    /// The proof hashes up to another root than the app hash.
    #[error("the proof of key '{key}' leads to root {computed}, not to the app hash {expected}")]
    RootMismatch {
        /// The op's key.
        key: StateKey,
        /// The app hash.
        expected: StateRoot,
        /// What the proof hashes to.
        computed: String,
    },
    /// `ics23` refused the proof for a reason the checks above do not name
    /// (for absence: the neighbours are not adjacent, or do not bracket the key).
    #[error("the proof of key '{key}' is refused: {detail}")]
    Refused {
        /// The op's key.
        key: StateKey,
        /// Which check failed.
        detail: &'static str,
    },
    /// Two proof ops for one key.
    #[error("key '{key}' is proven twice")]
    DuplicateKey {
        /// The key.
        key: StateKey,
    },
    /// A key is claimed present, but the proof shows it absent.
    #[error("key '{key}' is claimed present but the proof shows it absent")]
    ClaimedPresentProvenAbsent {
        /// The key.
        key: StateKey,
    },
    /// A key is claimed absent, but the proof shows it present.
    #[error("key '{key}' is claimed absent but the proof shows it present")]
    ClaimedAbsentProvenPresent {
        /// The key.
        key: StateKey,
    },
    /// The value claimed is not the value proven.
    #[error("key '{key}' is claimed to hold a value with SHA-256 {claimed_sha256} but the proof shows one with SHA-256 {proven_sha256}")]
    ValueMismatch {
        /// The key.
        key: StateKey,
        /// The claimed value's hash (hex).
        claimed_sha256: String,
        /// The proven value's hash (hex).
        proven_sha256: String,
    },
    /// A claim comes without a proof.
    #[error("key '{key}' is claimed but no proof of it came with the answer")]
    MissingProof {
        /// The key.
        key: StateKey,
    },
    /// A proof comes without a claim: the answer and its proofs disagree on
    /// what the answer rests on.
    #[error("a proof of key '{key}' came with the answer, which claims nothing about it")]
    UnclaimedProof {
        /// The key.
        key: StateKey,
    },
}

/// What the tree holds under some keys, each proven against one root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvenState {
    entries: BTreeMap<StateKey, Option<Vec<u8>>>,
}

impl ProvenState {
    /// Whether `key` was proven, and if so its value (`None`: proven absent).
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries
            .get(&StateKey(key.to_vec()))
            .map(Option::as_deref)
    }

    /// Every proven key with its value (`None`: absent), in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&StateKey, Option<&[u8]>)> {
        self.entries.iter().map(|(k, v)| (k, v.as_deref()))
    }

    /// How many keys were proven.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key was proven.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The proven entries as a map (`None`: absent).
    #[must_use]
    pub fn into_entries(self) -> BTreeMap<StateKey, Option<Vec<u8>>> {
        self.entries
    }
}

#[cfg(test)]
impl ProvenState {
    /// A state proven to hold `entries`, for tests of what rests on one.
    pub(crate) fn of(entries: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) -> Self {
        Self {
            entries: entries.into_iter().map(|(k, v)| (StateKey(k), v)).collect(),
        }
    }
}

/// Proves what the tree under `root` holds at `op`'s key: its value, or
/// `None` for a proof of absence. The value is the one the proof carries.
///
/// # Errors
/// Every [`ProofError`] but the claim ones ([`ProofError::MissingProof`],
/// [`ProofError::UnclaimedProof`], [`ProofError::ClaimedPresentProvenAbsent`],
/// [`ProofError::ClaimedAbsentProvenPresent`], [`ProofError::ValueMismatch`],
/// [`ProofError::DuplicateKey`], [`ProofError::TooManyOps`]).
pub fn prove_entry(root: &StateRoot, op: &ProofOp) -> Result<Option<Vec<u8>>, ProofError> {
    let key = || StateKey(op.key.clone());
    if op.field_type != PROOF_OP_TYPE {
        return Err(ProofError::WrongOpType {
            key: key(),
            found: op.field_type.chars().take(64).collect(),
        });
    }
    let size_bytes = u64::try_from(op.data.len()).unwrap_or(u64::MAX);
    if size_bytes > PROOF_OP_BYTES_MAX {
        return Err(ProofError::OpTooLarge {
            key: key(),
            size_bytes,
            max_bytes: PROOF_OP_BYTES_MAX,
        });
    }
    let proof =
        CommitmentProof::decode(op.data.as_slice()).map_err(|e| ProofError::Undecodable {
            key: key(),
            detail: e.to_string(),
        })?;
    let spec = jmt::ics23_spec();
    match &proof.proof {
        Some(Proof::Exist(exist)) => {
            if exist.key != op.key {
                return Err(ProofError::KeyMismatch {
                    key: key(),
                    proven_key: StateKey(exist.key.clone()),
                });
            }
            check_leaf_and_path(&op.key, exist, &spec)?;
            check_root(&op.key, exist, root)?;
            if !ics23::verify_membership::<HostFunctionsManager>(
                &proof,
                &spec,
                &root.0.to_vec(),
                &op.key,
                &exist.value,
            ) {
                return Err(ProofError::Refused {
                    key: key(),
                    detail: "the existence proof does not follow the tree's proof spec",
                });
            }
            // The leaf holds the tag byte, then the raw value.
            match compute_proto::state::raw_value(&exist.value) {
                Some(raw) => Ok(Some(raw.to_vec())),
                None => Err(ProofError::Malformed {
                    key: key(),
                    detail: format!(
                        "the proven leaf value does not start with the tag byte {:#04x}",
                        compute_proto::state::LEAF_TAG
                    ),
                }),
            }
        }
        Some(Proof::Nonexist(absent)) => {
            if absent.key != op.key {
                return Err(ProofError::KeyMismatch {
                    key: key(),
                    proven_key: StateKey(absent.key.clone()),
                });
            }
            check_absence(&op.key, absent, &spec, root)?;
            if !ics23::verify_non_membership::<HostFunctionsManager>(
                &proof,
                &spec,
                &root.0.to_vec(),
                &op.key,
            ) {
                return Err(ProofError::Refused {
                    key: key(),
                    detail: "the neighbours in the proof of absence are not adjacent leaves on either side of the key",
                });
            }
            Ok(None)
        }
        Some(Proof::Batch(_)) => Err(ProofError::UnexpectedProofKind {
            key: key(),
            kind: "a batch proof",
        }),
        Some(Proof::Compressed(_)) => Err(ProofError::UnexpectedProofKind {
            key: key(),
            kind: "a compressed batch proof",
        }),
        None => Err(ProofError::UnexpectedProofKind {
            key: key(),
            kind: "empty",
        }),
    }
}

/// Checks that `op` proves `claimed` under `root`: the value when
/// `Some`, the key's absence when `None`.
///
/// # Errors
/// What [`prove_entry`] returns, and [`ProofError::ClaimedPresentProvenAbsent`],
/// [`ProofError::ClaimedAbsentProvenPresent`] or [`ProofError::ValueMismatch`]
/// when the proof shows something else than the claim.
pub fn verify_proof_op(
    root: &StateRoot,
    op: &ProofOp,
    claimed: Option<&[u8]>,
) -> Result<(), ProofError> {
    let proven = prove_entry(root, op)?;
    compare(&op.key, claimed, proven.as_deref())
}

/// Proves every op of an answer under `root`, one per key, taking the
/// values the proofs carry.
///
/// # Errors
/// [`ProofError::TooManyOps`], [`ProofError::DuplicateKey`], and the first
/// failure of [`prove_entry`].
pub fn proven_state(root: &StateRoot, ops: &[ProofOp]) -> Result<ProvenState, ProofError> {
    if ops.len() > PROOF_OPS_MAX {
        return Err(ProofError::TooManyOps {
            count: ops.len(),
            max: PROOF_OPS_MAX,
        });
    }
    let mut entries = BTreeMap::new();
    for op in ops {
        let value = prove_entry(root, op)?;
        let key = StateKey(op.key.clone());
        if entries.contains_key(&key) {
            return Err(ProofError::DuplicateKey { key });
        }
        entries.insert(key, value);
    }
    Ok(ProvenState { entries })
}

/// Checks that `ops` prove exactly `claims` under `root`: each claimed
/// key's value (`None`: absent), one op per claimed key and no other.
///
/// # Errors
/// What [`proven_state`] returns; [`ProofError::MissingProof`] and
/// [`ProofError::UnclaimedProof`] when the keys of the claims and of the
/// proofs differ; and the claim errors of [`verify_proof_op`].
pub fn verify_proof_ops(
    root: &StateRoot,
    ops: &[ProofOp],
    claims: &BTreeMap<StateKey, Option<Vec<u8>>>,
) -> Result<(), ProofError> {
    let proven = proven_state(root, ops)?;
    for (key, claimed) in claims {
        let Some(value) = proven.entries.get(key) else {
            return Err(ProofError::MissingProof { key: key.clone() });
        };
        compare(&key.0, claimed.as_deref(), value.as_deref())?;
    }
    if let Some(key) = proven.entries.keys().find(|k| !claims.contains_key(*k)) {
        return Err(ProofError::UnclaimedProof { key: key.clone() });
    }
    Ok(())
}

fn compare(key: &[u8], claimed: Option<&[u8]>, proven: Option<&[u8]>) -> Result<(), ProofError> {
    match (claimed, proven) {
        (Some(_), None) => Err(ProofError::ClaimedPresentProvenAbsent {
            key: StateKey(key.to_vec()),
        }),
        (None, Some(_)) => Err(ProofError::ClaimedAbsentProvenPresent {
            key: StateKey(key.to_vec()),
        }),
        (Some(claimed), Some(proven)) if claimed != proven => Err(ProofError::ValueMismatch {
            key: StateKey(key.to_vec()),
            claimed_sha256: sha256_hex(claimed),
            proven_sha256: sha256_hex(proven),
        }),
        _ => Ok(()),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The leaf must be exactly jmt's (ICS-23 alone would accept a longer
/// prefix), and the path no deeper than the tree can be.
fn check_leaf_and_path(
    key: &[u8],
    exist: &ExistenceProof,
    spec: &ics23::ProofSpec,
) -> Result<(), ProofError> {
    let malformed = |detail: String| ProofError::Malformed {
        key: StateKey(key.to_vec()),
        detail,
    };
    if exist.leaf.is_none() || exist.leaf != spec.leaf_spec {
        return Err(malformed(format!(
            "the leaf of entry '{}' is not built as the tree builds leaves",
            StateKey(exist.key.clone())
        )));
    }
    if exist.path.len() > PROOF_DEPTH_MAX {
        return Err(malformed(format!(
            "the path of entry '{}' has {} steps; the tree is at most {PROOF_DEPTH_MAX} deep",
            StateKey(exist.key.clone()),
            exist.path.len()
        )));
    }
    Ok(())
}

/// Hashes an existence proof up to its root and compares it with `root`,
/// so that a wrong root is named as such rather than as a refusal.
fn check_root(key: &[u8], exist: &ExistenceProof, root: &StateRoot) -> Result<(), ProofError> {
    let computed = ics23::calculate_existence_root::<HostFunctionsManager>(exist).map_err(|e| {
        ProofError::Malformed {
            key: StateKey(key.to_vec()),
            detail: format!(
                "the entry '{}' does not hash to a root: {e}",
                StateKey(exist.key.clone())
            ),
        }
    })?;
    if computed.as_slice() != root.0.as_slice() {
        return Err(ProofError::RootMismatch {
            key: StateKey(key.to_vec()),
            expected: *root,
            computed: hex::encode_upper(&computed),
        });
    }
    Ok(())
}

fn check_absence(
    key: &[u8],
    absent: &NonExistenceProof,
    spec: &ics23::ProofSpec,
    root: &StateRoot,
) -> Result<(), ProofError> {
    for neighbour in [&absent.left, &absent.right].into_iter().flatten() {
        check_leaf_and_path(key, neighbour, spec)?;
        check_root(key, neighbour, root)?;
    }
    if let (Some(left), Some(right)) = (&absent.left, &absent.right) {
        // `ics23` walks both paths down from the root until they part and
        // unwraps while doing so: paths that never part would panic it.
        // Under one root they always part (unless SHA-256 collides), but
        // this is checked here rather than left to that argument.
        let parted = left
            .path
            .iter()
            .rev()
            .zip(right.path.iter().rev())
            .any(|(l, r)| l.prefix != r.prefix || l.suffix != r.suffix);
        if !parted {
            return Err(ProofError::Malformed {
                key: StateKey(key.to_vec()),
                detail: "the paths of the two neighbours never part".to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jmt::mock::MockTreeStore;
    use jmt::{JellyfishMerkleTree, KeyHash};
    use sha2::Sha256;

    /// A tree with these entries at version 1, and its root.
    fn tree(entries: &[(&[u8], &[u8])]) -> (MockTreeStore, StateRoot) {
        let store = MockTreeStore::default();
        let tree = JellyfishMerkleTree::<_, Sha256>::new(&store);
        for (key, _) in entries {
            store.put_key_preimage(KeyHash::with::<Sha256>(key), &key.to_vec());
        }
        let (root, batch) = tree
            .put_value_set(
                entries.iter().map(|(k, v)| {
                    (
                        KeyHash::with::<Sha256>(k),
                        Some(compute_proto::state::leaf_value(v)),
                    )
                }),
                1,
            )
            .expect("the tree takes the entries");
        store
            .write_tree_update_batch(batch)
            .expect("the store takes the batch");
        (store, StateRoot::new(root.0))
    }

    fn op(store: &MockTreeStore, key: &[u8]) -> ProofOp {
        let tree = JellyfishMerkleTree::<_, Sha256>::new(store);
        let (_, proof) = tree
            .get_with_ics23_proof(key.to_vec(), 1)
            .expect("the tree proves the key");
        ProofOp {
            field_type: PROOF_OP_TYPE.to_owned(),
            key: key.to_vec(),
            data: prost_ics23::Message::encode_to_vec(&proof),
        }
    }

    const ENTRIES: &[(&[u8], &[u8])] = &[
        (b"acct/alice", b"100"),
        (b"acct/bob", b"7"),
        (b"job/\x00\x00\x00\x01", b"{\"status\":1}"),
        (b"mod/\xaa\xbb", b"module"),
        (b"wrk/carol", b"worker"),
    ];

    #[test]
    fn an_existing_key_is_proven_with_its_value() {
        let (store, root) = tree(ENTRIES);
        for (key, value) in ENTRIES {
            let op = op(&store, key);
            assert_eq!(prove_entry(&root, &op), Ok(Some(value.to_vec())));
            assert_eq!(verify_proof_op(&root, &op, Some(value)), Ok(()));
        }
    }

    #[test]
    fn an_absent_key_is_proven_absent() {
        let (store, root) = tree(ENTRIES);
        for key in [&b"acct/zed"[..], b"a", b"zzzz", b"job/\x00\x00\x00\x02"] {
            let op = op(&store, key);
            assert_eq!(prove_entry(&root, &op), Ok(None), "{key:?}");
            assert_eq!(verify_proof_op(&root, &op, None), Ok(()));
        }
    }

    #[test]
    fn a_tampered_value_is_refused() {
        let (store, root) = tree(ENTRIES);
        let op = op(&store, b"acct/alice");
        assert!(matches!(
            verify_proof_op(&root, &op, Some(b"1000000")),
            Err(ProofError::ValueMismatch { key, .. }) if key.as_bytes() == b"acct/alice"
        ));
        // The value inside the proof altered: it no longer hashes to the root.
        let mut proof = CommitmentProof::decode(op.data.as_slice()).expect("decodes");
        let Some(Proof::Exist(exist)) = &mut proof.proof else {
            panic!("an existence proof");
        };
        exist.value = b"1000000".to_vec();
        let forged = ProofOp {
            data: proof.encode_to_vec(),
            ..op
        };
        assert!(matches!(
            verify_proof_op(&root, &forged, Some(b"1000000")),
            Err(ProofError::RootMismatch { .. })
        ));
    }

    #[test]
    fn a_tampered_proof_byte_is_refused_without_panicking() {
        let (store, root) = tree(ENTRIES);
        for key in [&b"acct/bob"[..], b"acct/zed"] {
            let op = op(&store, key);
            let claimed = ENTRIES
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_vec());
            for index in 0..op.data.len() {
                for flip in [0x01_u8, 0x80, 0xff] {
                    let mut data = op.data.clone();
                    data[index] ^= flip;
                    let tampered = ProofOp { data, ..op.clone() };
                    assert!(
                        verify_proof_op(&root, &tampered, claimed.as_deref()).is_err(),
                        "byte {index} ^ {flip:#x} of the proof of {key:?} went unnoticed"
                    );
                }
            }
        }
    }

    #[test]
    fn a_proof_against_another_root_is_refused() {
        let (store, _) = tree(ENTRIES);
        let (_, other_root) = tree(&ENTRIES[..3]);
        let err = verify_proof_op(&other_root, &op(&store, b"acct/alice"), Some(b"100"));
        assert!(
            matches!(err, Err(ProofError::RootMismatch { expected, .. }) if expected == other_root)
        );
        let err = verify_proof_op(&other_root, &op(&store, b"acct/zed"), None);
        assert!(matches!(err, Err(ProofError::RootMismatch { .. })));
    }

    #[test]
    fn a_proof_for_another_key_is_refused() {
        let (store, root) = tree(ENTRIES);
        // Alice's proof presented as Bob's.
        let swapped = ProofOp {
            key: b"acct/bob".to_vec(),
            ..op(&store, b"acct/alice")
        };
        assert!(matches!(
            verify_proof_op(&root, &swapped, Some(b"100")),
            Err(ProofError::KeyMismatch { key, proven_key })
                if key.as_bytes() == b"acct/bob" && proven_key.as_bytes() == b"acct/alice"
        ));
        // A proof of absence of one key presented as the absence of another.
        let swapped = ProofOp {
            key: b"acct/alice".to_vec(),
            ..op(&store, b"acct/zed")
        };
        assert!(matches!(
            verify_proof_op(&root, &swapped, None),
            Err(ProofError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn a_proof_of_absence_does_not_prove_a_claimed_value() {
        let (store, root) = tree(ENTRIES);
        let op = op(&store, b"acct/zed");
        assert!(matches!(
            verify_proof_op(&root, &op, Some(b"5")),
            Err(ProofError::ClaimedPresentProvenAbsent { key }) if key.as_bytes() == b"acct/zed"
        ));
        let op = self::op(&store, b"acct/bob");
        assert!(matches!(
            verify_proof_op(&root, &op, None),
            Err(ProofError::ClaimedAbsentProvenPresent { .. })
        ));
    }

    #[test]
    fn an_absence_whose_neighbours_do_not_bracket_the_key_is_refused() {
        let (store, root) = tree(ENTRIES);
        // A real proof of absence of one key, relabelled (in the op and in
        // the proof) as one of a key that exists: its neighbours are
        // honest leaves, but they do not bracket this key.
        let op = op(&store, b"acct/zed");
        let mut proof = CommitmentProof::decode(op.data.as_slice()).expect("decodes");
        let Some(Proof::Nonexist(absent)) = &mut proof.proof else {
            panic!("a non-existence proof");
        };
        absent.key = b"acct/alice".to_vec();
        let forged = ProofOp {
            key: b"acct/alice".to_vec(),
            data: proof.encode_to_vec(),
            ..op
        };
        assert!(matches!(
            verify_proof_op(&root, &forged, None),
            Err(ProofError::Refused { .. })
        ));
    }

    #[test]
    fn wrong_types_kinds_and_sizes_are_named() {
        let (store, root) = tree(ENTRIES);
        let good = op(&store, b"acct/alice");
        let typed = ProofOp {
            field_type: "ics23:iavl".to_owned(),
            ..good.clone()
        };
        assert!(matches!(
            prove_entry(&root, &typed),
            Err(ProofError::WrongOpType { found, .. }) if found == "ics23:iavl"
        ));
        let garbage = ProofOp {
            data: vec![0xff; 16],
            ..good.clone()
        };
        assert!(matches!(
            prove_entry(&root, &garbage),
            Err(ProofError::Undecodable { .. })
        ));
        let empty = ProofOp {
            data: Vec::new(),
            ..good.clone()
        };
        assert!(matches!(
            prove_entry(&root, &empty),
            Err(ProofError::UnexpectedProofKind { kind: "empty", .. })
        ));
        let batch = CommitmentProof {
            proof: Some(Proof::Batch(ics23::BatchProof::default())),
        };
        let batch = ProofOp {
            data: batch.encode_to_vec(),
            ..good.clone()
        };
        assert!(matches!(
            prove_entry(&root, &batch),
            Err(ProofError::UnexpectedProofKind { .. })
        ));
        let huge = ProofOp {
            data: vec![0; usize::try_from(PROOF_OP_BYTES_MAX).expect("fits") + 1],
            ..good
        };
        assert!(matches!(
            prove_entry(&root, &huge),
            Err(ProofError::OpTooLarge { .. })
        ));
    }

    #[test]
    fn a_longer_leaf_prefix_is_refused_though_ics23_allows_it() {
        let (store, root) = tree(ENTRIES);
        let op = op(&store, b"acct/alice");
        let mut proof = CommitmentProof::decode(op.data.as_slice()).expect("decodes");
        let Some(Proof::Exist(exist)) = &mut proof.proof else {
            panic!("an existence proof");
        };
        if let Some(leaf) = &mut exist.leaf {
            leaf.prefix.push(0);
        }
        let forged = ProofOp {
            data: proof.encode_to_vec(),
            ..op
        };
        assert!(matches!(
            prove_entry(&root, &forged),
            Err(ProofError::Malformed { .. })
        ));
    }

    #[test]
    fn the_claims_and_the_proofs_must_cover_the_same_keys() {
        let (store, root) = tree(ENTRIES);
        let ops = vec![op(&store, b"acct/alice"), op(&store, b"acct/zed")];
        let mut claims: BTreeMap<StateKey, Option<Vec<u8>>> = BTreeMap::new();
        claims.insert(StateKey(b"acct/alice".to_vec()), Some(b"100".to_vec()));
        claims.insert(StateKey(b"acct/zed".to_vec()), None);
        assert_eq!(verify_proof_ops(&root, &ops, &claims), Ok(()));

        let proven = proven_state(&root, &ops).expect("proves");
        assert_eq!(proven.get(b"acct/alice"), Some(Some(&b"100"[..])));
        assert_eq!(proven.get(b"acct/zed"), Some(None));
        assert_eq!(proven.get(b"acct/bob"), None);

        let mut more = claims.clone();
        more.insert(StateKey(b"acct/bob".to_vec()), Some(b"7".to_vec()));
        assert!(matches!(
            verify_proof_ops(&root, &ops, &more),
            Err(ProofError::MissingProof { key }) if key.as_bytes() == b"acct/bob"
        ));
        let mut fewer = claims.clone();
        fewer.remove(&StateKey(b"acct/zed".to_vec()));
        assert!(matches!(
            verify_proof_ops(&root, &ops, &fewer),
            Err(ProofError::UnclaimedProof { key }) if key.as_bytes() == b"acct/zed"
        ));
        let twice = vec![ops[0].clone(), ops[0].clone()];
        assert!(matches!(
            proven_state(&root, &twice),
            Err(ProofError::DuplicateKey { .. })
        ));
        let many = vec![ops[0].clone(); PROOF_OPS_MAX + 1];
        assert!(matches!(
            proven_state(&root, &many),
            Err(ProofError::TooManyOps { .. })
        ));
    }

    #[test]
    fn keys_are_shown_readably_and_cut() {
        assert_eq!(
            StateKey(b"job/\x00\x01".to_vec()).to_string(),
            "job/\\x00\\x01"
        );
        let long = StateKey(vec![b'a'; 1000]).to_string();
        assert!(long.ends_with("...(1000 bytes)"));
        assert!(long.len() < 200);
    }

    #[test]
    fn an_app_hash_of_another_length_is_not_a_root() {
        let short = tendermint::AppHash::try_from(vec![1_u8; 20]).expect("an app hash");
        assert_eq!(
            StateRoot::from_app_hash(&short),
            Err(ProofError::BadRoot { length_bytes: 20 })
        );
        let good = tendermint::AppHash::try_from(vec![7_u8; 32]).expect("an app hash");
        assert_eq!(StateRoot::from_app_hash(&good), Ok(StateRoot::new([7; 32])));
    }
}
