//! Restoring a snapshot offered by peers: the offer is checked against the
//! app hash CometBFT's light client verified, each chunk against the
//! metadata's hash of it, and its entries are staged in memory (bounded)
//! in strictly increasing key order. Nothing is written here: once the
//! last chunk is in, [`crate::App::install_snapshot`] recomputes the tree
//! root of the staged state and writes it only if it equals the trusted
//! app hash.

use crate::store::Delta;
use crate::tree::TREE_PREFIX;

use super::format::{self, FormatError, Metadata, FORMAT, RESTORE_BYTES_MAX};

/// Chunks a restore refuses (and asks to fetch again) before it gives the
/// whole snapshot up.
pub const CHUNK_REFUSALS_MAX: u32 = 16;

/// The first byte of node-local keys (the commit record): never state.
const LOCAL_PREFIX: u8 = 0xff;

/// Why an offered snapshot was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Another format: CometBFT should not offer this format again.
    #[error("snapshot format {0} is not restored here (only format {FORMAT})")]
    Format(u32),
    /// This snapshot is refused; others may be tried.
    #[error("{0}")]
    Refused(String),
}

/// Why a chunk was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// This copy of the chunk is bad: fetch it again from another peer and
    /// stop trusting its sender.
    #[error("{0}")]
    Refetch(String),
    /// The snapshot cannot be restored: give it up.
    #[error("{0}")]
    Snapshot(String),
}

/// What applying a chunk did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The chunk was staged; more are expected.
    Staged,
    /// The chunk was applied before (CometBFT delivered it again).
    Again,
    /// The last chunk was staged: the state is complete, to be verified.
    Complete,
}

/// A snapshot being restored.
#[derive(Debug)]
pub struct Restore {
    meta: Metadata,
    /// The index of the next chunk to stage.
    next: u32,
    staged: Delta,
    last_key: Option<Vec<u8>>,
    bytes: u64,
    entries: u64,
    refusals: u32,
}

impl Restore {
    /// Accepts an offer of a snapshot of `height` in `format` with
    /// `chunks` chunks, whose hash is `hash` and metadata `metadata`, for
    /// the app hash `trusted_app_hash` that CometBFT's light client
    /// verified for that height.
    ///
    /// # Errors
    /// [`OfferError::Format`] for another format; [`OfferError::Refused`]
    /// when the metadata does not decode, does not hash to `hash`, or
    /// disagrees with the offer or the trusted app hash.
    pub fn offer(
        height: u64,
        format: u32,
        chunks: u32,
        hash: &[u8],
        metadata: &[u8],
        trusted_app_hash: &[u8],
    ) -> Result<Self, OfferError> {
        if format != FORMAT {
            return Err(OfferError::Format(format));
        }
        let refuse = |why: String| Err(OfferError::Refused(why));
        if metadata.len() > format::METADATA_BYTES_MAX {
            return refuse(format!(
                "the metadata is {} bytes, more than the {} allowed",
                metadata.len(),
                format::METADATA_BYTES_MAX
            ));
        }
        if format::sha256(metadata).as_slice() != hash {
            return refuse("the snapshot's hash is not the SHA-256 of its metadata".to_owned());
        }
        let meta = match Metadata::decode(metadata) {
            Ok(meta) => meta,
            Err(FormatError::Format(other)) => return Err(OfferError::Format(other)),
            Err(e) => return refuse(format!("the metadata does not decode: {e}")),
        };
        if meta.height != height || height == 0 || i64::try_from(height).is_err() {
            return refuse(format!(
                "the metadata is for height {} but the snapshot for height {height}",
                meta.height
            ));
        }
        if meta.app_hash.as_slice() != trusted_app_hash {
            return refuse(format!(
                "the metadata's app hash {} is not the verified app hash {} of height {height}",
                hex::encode(meta.app_hash),
                hex::encode(trusted_app_hash)
            ));
        }
        if meta.chunks() != chunks {
            return refuse(format!(
                "the metadata names {} chunks but the snapshot {chunks}",
                meta.chunks()
            ));
        }
        if meta.bytes > RESTORE_BYTES_MAX {
            return refuse(format!(
                "the snapshot holds {} bytes, more than the {RESTORE_BYTES_MAX} a restore stages",
                meta.bytes
            ));
        }
        Ok(Self {
            meta,
            next: 0,
            staged: Delta::new(),
            last_key: None,
            bytes: 0,
            entries: 0,
            refusals: 0,
        })
    }

    /// The height the snapshot restores to.
    pub fn height(&self) -> u64 {
        self.meta.height
    }

    /// The trusted app hash of that height.
    pub fn app_hash(&self) -> [u8; 32] {
        self.meta.app_hash
    }

    /// The number of state entries staged.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Checks chunk `index` against the metadata and stages its entries.
    /// A refused chunk leaves the staging as it was.
    ///
    /// # Errors
    /// [`ChunkError::Refetch`] when this copy of the chunk is bad (wrong
    /// hash, malformed, keys out of order or not state keys);
    /// [`ChunkError::Snapshot`] when the snapshot cannot be restored (a
    /// chunk out of order, too many refusals, totals that disagree with
    /// the metadata).
    pub fn apply(&mut self, index: u32, chunk: &[u8]) -> Result<Applied, ChunkError> {
        let Some(expected) = self
            .meta
            .chunk_hashes
            .get(usize::try_from(index).unwrap_or(usize::MAX))
        else {
            return Err(ChunkError::Snapshot(format!(
                "chunk {index} does not exist: the snapshot has {}",
                self.meta.chunks()
            )));
        };
        let hash_ok = format::sha256(chunk) == *expected;
        if index < self.next {
            // CometBFT applies chunks in order; one delivered again after
            // a refetch was staged already.
            return if hash_ok {
                Ok(Applied::Again)
            } else {
                self.refused(format!("chunk {index} does not match its hash"))
            };
        }
        if index > self.next {
            return Err(ChunkError::Snapshot(format!(
                "chunk {index} arrived before chunk {}",
                self.next
            )));
        }
        if !hash_ok {
            return self.refused(format!(
                "chunk {index} does not match its hash in the metadata"
            ));
        }
        let bytes = self
            .bytes
            .checked_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX))
            .filter(|b| *b <= self.meta.bytes)
            .ok_or_else(|| {
                ChunkError::Snapshot(format!(
                    "the chunks hold more than the {} bytes the metadata names",
                    self.meta.bytes
                ))
            })?;
        let entries = match format::parse_chunk(chunk) {
            Ok(entries) => entries,
            Err(e) => return self.refused(format!("chunk {index} is malformed: {e}")),
        };
        // Checked in full before anything is staged.
        let mut previous = self.last_key.as_deref();
        for (key, _) in &entries {
            if matches!(key.first(), Some(&TREE_PREFIX) | Some(&LOCAL_PREFIX)) {
                return self.refused(format!(
                    "chunk {index} holds key {} that is not a state key",
                    hex::encode(key)
                ));
            }
            if previous.is_some_and(|p| p >= *key) {
                return self.refused(format!(
                    "chunk {index} holds key {} out of order",
                    hex::encode(key)
                ));
            }
            previous = Some(key);
        }
        let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let entries_total = self
            .entries
            .checked_add(count)
            .filter(|e| *e <= self.meta.entries)
            .ok_or_else(|| {
                ChunkError::Snapshot(format!(
                    "the chunks hold more than the {} entries the metadata names",
                    self.meta.entries
                ))
            })?;
        if let Some((key, _)) = entries.last() {
            self.last_key = Some(key.to_vec());
        }
        for (key, value) in entries {
            self.staged.put(key.to_vec(), value.to_vec());
        }
        self.bytes = bytes;
        self.entries = entries_total;
        self.next = index.saturating_add(1);
        if self.next < self.meta.chunks() {
            return Ok(Applied::Staged);
        }
        if self.bytes != self.meta.bytes || self.entries != self.meta.entries {
            return Err(ChunkError::Snapshot(format!(
                "the chunks hold {} entries in {} bytes but the metadata names {} in {}",
                self.entries, self.bytes, self.meta.entries, self.meta.bytes
            )));
        }
        Ok(Applied::Complete)
    }

    /// Counts a refused chunk; past [`CHUNK_REFUSALS_MAX`] the snapshot
    /// is given up.
    fn refused(&mut self, why: String) -> Result<Applied, ChunkError> {
        self.refusals = self.refusals.saturating_add(1);
        if self.refusals > CHUNK_REFUSALS_MAX {
            return Err(ChunkError::Snapshot(format!(
                "{why}; {CHUNK_REFUSALS_MAX} chunks were refused already, giving the snapshot up"
            )));
        }
        Err(ChunkError::Refetch(why))
    }

    /// The staged state, once [`Applied::Complete`].
    pub fn into_state(self) -> Delta {
        self.staged
    }
}
