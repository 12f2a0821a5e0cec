//! The app hash: the root of the state tree ([`crate::tree`]) after a
//! height. Every raw state key and value is a leaf of that tree, so the app
//! hash commits to the whole state, and any value (or the absence of a key)
//! can be proven against it.

/// The last committed height and app hash, as `Info` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCommit {
    /// 0 before the first block is committed.
    pub height: i64,
    /// The app hash after that height (the genesis hash at height 0).
    pub app_hash: [u8; 32],
}
