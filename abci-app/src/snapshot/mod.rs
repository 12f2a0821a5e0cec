//! State sync: snapshots of the state that a new node restores instead of
//! replaying every block since genesis.
//!
//! A snapshot holds every raw state entry after one height, in key order,
//! cut into chunks ([`format`]). A node takes one after the commit of every
//! `--snapshot-interval`-th height, on a thread of its own, and keeps the
//! newest `--snapshot-keep` ([`writer`]); CometBFT lists them and fetches
//! their chunks for peers through the ABCI snapshot connection. A fresh
//! node restores one ([`restore`]): it checks each chunk against the
//! metadata, stages the entries, recomputes the tree root and writes the
//! state only if that root equals the app hash CometBFT's light client
//! verified for the height ([`crate::App::install_snapshot`]).

pub mod format;
pub mod restore;
pub mod writer;

pub use format::{Metadata, FORMAT};
pub use restore::{Applied, ChunkError, OfferError, Restore};
pub use writer::{Listed, SnapshotConfig, SnapshotError, Snapshots};

/// Why a fully staged snapshot was not installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The store holds commits already: only a fresh node restores.
    #[error(
        "the store already holds state up to height {0}: only a fresh node restores a snapshot"
    )]
    NotFresh(i64),
    /// The height does not fit CometBFT's heights.
    #[error("height {0} is out of range")]
    Height(u64),
    /// The staged state holds a key that is not a state key.
    #[error("the snapshot holds key {0} that is not a state key")]
    NotStateKey(String),
    /// The recomputed root is not the trusted app hash.
    #[error("the snapshot's state hashes to {computed}, not to the verified app hash {trusted}")]
    RootMismatch {
        /// The root of the staged state.
        computed: String,
        /// The app hash the light client verified.
        trusted: String,
    },
    /// The state lacks what every chain holds from genesis on.
    #[error("the snapshot's state has no valid {0}")]
    Incomplete(&'static str),
}
