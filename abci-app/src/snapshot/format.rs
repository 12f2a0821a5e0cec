//! Format 1 of a state snapshot: the metadata record and the chunks.
//!
//! Everything here decodes bytes from peers, so every decoder returns a
//! [`FormatError`] and never panics, and every length is checked against a
//! bound before it is used.
//!
//! **Metadata** (fixed binary layout, integers big-endian):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `CSNP` |
//! | 4 | 4 | format, `1` |
//! | 8 | 8 | height: the last block whose state the snapshot holds |
//! | 16 | 32 | app hash after that height (the tree root of the state) |
//! | 48 | 8 | entries: state entries in all chunks together |
//! | 56 | 8 | bytes: the length of all chunks together |
//! | 64 | 4 | chunk count `N`, 1 to [`CHUNKS_MAX`] |
//! | 68 | `32·N` | SHA-256 of chunk 0, 1, ... `N-1` |
//!
//! The record is exactly `68 + 32·N` bytes. CometBFT's `Snapshot.hash` is
//! SHA-256 of the whole record. Nothing else is needed to restore: the
//! chain id, the parameters and the validators are state entries, and the
//! tree's version numbers are local to each node (a restored node counts
//! its tree versions from the snapshot's height).
//!
//! **Chunk**: a sequence of entries, each `key_len u32 BE, key, value_len
//! u32 BE, value`, keys in strictly increasing byte order across the whole
//! snapshot, state keys only (never a tree key `0xfe…` or a node-local key
//! `0xff…`).

use sha2::{Digest, Sha256};

/// The only snapshot format this node writes and restores.
pub const FORMAT: u32 = 1;
/// The first bytes of every metadata record.
pub const MAGIC: [u8; 4] = *b"CSNP";
/// A chunk is cut before an entry that would take it past this many bytes,
/// so a chunk holds at most this much unless one entry alone is larger.
pub const CHUNK_BYTES_TARGET: usize = 4 * 1024 * 1024;
/// The largest chunk a node writes or restores: room for one entry with
/// the largest value a transaction can carry.
pub const CHUNK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The most chunks in one snapshot.
pub const CHUNKS_MAX: u32 = 100_000;
/// The longest state key a snapshot carries (state keys are built in
/// `state/keys.rs` and are far shorter).
pub const KEY_BYTES_MAX: usize = 4096;
/// The most chunk bytes one restore stages in memory.
pub const RESTORE_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// The bytes of the metadata before the chunk hashes.
pub const METADATA_HEADER_BYTES: usize = 68;
/// The largest metadata record ([`CHUNKS_MAX`] chunk hashes).
pub const METADATA_BYTES_MAX: usize = METADATA_HEADER_BYTES + 32 * CHUNKS_MAX as usize;
/// The framing of one entry: two u32 lengths.
pub const ENTRY_OVERHEAD_BYTES: usize = 8;

// CometBFT carries one snapshot's description in a message of at most
// 4,000,000 bytes and one chunk in a message of at most 16,000,000 bytes
// (statesync/messages.go); leave room for the other fields.
const _: () = assert!(METADATA_BYTES_MAX + 1024 <= 4_000_000);
const _: () = assert!(CHUNK_BYTES_MAX + 1024 <= 16_000_000);
// An entry with the largest value a transaction can carry fits a chunk.
const _: () = assert!(
    compute_proto::limits::TX_BYTES_CEILING as usize + KEY_BYTES_MAX + ENTRY_OVERHEAD_BYTES
        <= CHUNK_BYTES_MAX
);
const _: () = assert!(CHUNK_BYTES_TARGET <= CHUNK_BYTES_MAX);

/// Why snapshot bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The metadata does not start with `CSNP`.
    #[error("the metadata does not start with the magic bytes CSNP")]
    Magic,
    /// The metadata names a format this node does not know.
    #[error("snapshot format {0} is unknown (this node restores format {FORMAT})")]
    Format(u32),
    /// The metadata's length does not match its chunk count.
    #[error("the metadata is {actual} bytes but must be {expected} for its chunk count")]
    MetadataLength {
        /// What the chunk count implies.
        expected: usize,
        /// What arrived.
        actual: usize,
    },
    /// The metadata names no chunk or more than [`CHUNKS_MAX`].
    #[error("the snapshot has {0} chunks; 1 to {CHUNKS_MAX} are allowed")]
    ChunkCount(u32),
    /// A chunk ends inside an entry.
    #[error("the chunk ends inside an entry at byte {0}")]
    Truncated(usize),
    /// A key is longer than [`KEY_BYTES_MAX`].
    #[error("a key of {0} bytes is longer than the {KEY_BYTES_MAX} allowed")]
    KeyTooLong(usize),
    /// A key is empty.
    #[error("a key is empty")]
    EmptyKey,
    /// A chunk is larger than [`CHUNK_BYTES_MAX`].
    #[error("a chunk of {0} bytes is larger than the {CHUNK_BYTES_MAX} allowed")]
    ChunkTooLarge(usize),
}

/// A snapshot's description: what it restores to and the hash of each chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// The last block whose state the snapshot holds.
    pub height: u64,
    /// The app hash after that block.
    pub app_hash: [u8; 32],
    /// State entries in all chunks together.
    pub entries: u64,
    /// Bytes of all chunks together.
    pub bytes: u64,
    /// SHA-256 of each chunk, in order.
    pub chunk_hashes: Vec<[u8; 32]>,
}

impl Metadata {
    /// The record, as the table in this module's documentation lays it out.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            METADATA_HEADER_BYTES.saturating_add(self.chunk_hashes.len().saturating_mul(32)),
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.app_hash);
        out.extend_from_slice(&self.entries.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(&self.chunks().to_be_bytes());
        for hash in &self.chunk_hashes {
            out.extend_from_slice(hash);
        }
        out
    }

    /// Decodes a record from a peer.
    ///
    /// # Errors
    /// [`FormatError`] for anything but an exact, well-formed record with
    /// 1 to [`CHUNKS_MAX`] chunks.
    pub fn decode(raw: &[u8]) -> Result<Self, FormatError> {
        let header = raw
            .get(..METADATA_HEADER_BYTES)
            .ok_or(FormatError::MetadataLength {
                expected: METADATA_HEADER_BYTES,
                actual: raw.len(),
            })?;
        let mut reader = Reader::new(header);
        if reader.array::<4>() != Some(MAGIC) {
            return Err(FormatError::Magic);
        }
        let format = reader.u32().unwrap_or(0);
        if format != FORMAT {
            return Err(FormatError::Format(format));
        }
        let height = reader.u64().unwrap_or(0);
        let app_hash = reader.array::<32>().unwrap_or([0; 32]);
        let entries = reader.u64().unwrap_or(0);
        let bytes = reader.u64().unwrap_or(0);
        let chunks = reader.u32().unwrap_or(0);
        if chunks == 0 || chunks > CHUNKS_MAX {
            return Err(FormatError::ChunkCount(chunks));
        }
        // At most CHUNKS_MAX·32 bytes: no overflow (checked anyway).
        let expected = usize::try_from(chunks)
            .ok()
            .and_then(|n| n.checked_mul(32))
            .and_then(|n| n.checked_add(METADATA_HEADER_BYTES))
            .unwrap_or(usize::MAX);
        if raw.len() != expected {
            return Err(FormatError::MetadataLength {
                expected,
                actual: raw.len(),
            });
        }
        let chunk_hashes = raw
            .get(METADATA_HEADER_BYTES..)
            .unwrap_or_default()
            .chunks_exact(32)
            .map(|h| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(h);
                hash
            })
            .collect();
        Ok(Self {
            height,
            app_hash,
            entries,
            bytes,
            chunk_hashes,
        })
    }

    /// The number of chunks.
    pub fn chunks(&self) -> u32 {
        // Bounded by CHUNKS_MAX when written or decoded.
        u32::try_from(self.chunk_hashes.len()).unwrap_or(u32::MAX)
    }
}

/// SHA-256 of `bytes`: a chunk's entry in the metadata, and the metadata's
/// own hash (CometBFT's `Snapshot.hash`).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The bytes an entry takes in a chunk, if it can be framed at all.
pub fn entry_bytes(key: &[u8], value: &[u8]) -> Option<usize> {
    if u32::try_from(key.len()).is_err() || u32::try_from(value.len()).is_err() {
        return None;
    }
    key.len()
        .checked_add(value.len())?
        .checked_add(ENTRY_OVERHEAD_BYTES)
}

/// Appends one entry to a chunk.
///
/// # Panics
/// When a length does not fit a u32: the caller checks [`entry_bytes`]
/// first (the writer refuses such an entry before it gets here).
pub fn push_entry(chunk: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let key_len = u32::try_from(key.len()).expect("key length checked by entry_bytes");
    let value_len = u32::try_from(value.len()).expect("value length checked by entry_bytes");
    chunk.extend_from_slice(&key_len.to_be_bytes());
    chunk.extend_from_slice(key);
    chunk.extend_from_slice(&value_len.to_be_bytes());
    chunk.extend_from_slice(value);
}

/// A key and its value, borrowed from a chunk.
pub type Entry<'a> = (&'a [u8], &'a [u8]);

/// The entries of a chunk from a peer, in order, borrowing from it. Only
/// the framing and each key's length are checked here; the order of keys
/// and whether they are state keys is the restore's business.
///
/// # Errors
/// [`FormatError`] for a chunk over [`CHUNK_BYTES_MAX`], a truncated entry,
/// an empty key or one over [`KEY_BYTES_MAX`].
pub fn parse_chunk(chunk: &[u8]) -> Result<Vec<Entry<'_>>, FormatError> {
    if chunk.len() > CHUNK_BYTES_MAX {
        return Err(FormatError::ChunkTooLarge(chunk.len()));
    }
    let mut reader = Reader::new(chunk);
    let mut entries = Vec::new();
    // Each entry takes at least 9 bytes, so this loop runs at most
    // CHUNK_BYTES_MAX / 9 times.
    while !reader.is_empty() {
        let at = reader.offset;
        let key_len = reader.len_prefix().ok_or(FormatError::Truncated(at))?;
        if key_len == 0 {
            return Err(FormatError::EmptyKey);
        }
        if key_len > KEY_BYTES_MAX {
            return Err(FormatError::KeyTooLong(key_len));
        }
        let key = reader.take(key_len).ok_or(FormatError::Truncated(at))?;
        let value_len = reader.len_prefix().ok_or(FormatError::Truncated(at))?;
        let value = reader.take(value_len).ok_or(FormatError::Truncated(at))?;
        entries.push((key, value));
    }
    Ok(entries)
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    fn is_empty(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.offset.checked_add(len)?;
        let out = self.bytes.get(self.offset..end)?;
        self.offset = end;
        Some(out)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }

    fn len_prefix(&mut self) -> Option<usize> {
        usize::try_from(self.u32()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(chunks: usize) -> Metadata {
        Metadata {
            height: 40,
            app_hash: [7; 32],
            entries: 12,
            bytes: 3000,
            chunk_hashes: (0..chunks)
                .map(|i| [u8::try_from(i).unwrap(); 32])
                .collect(),
        }
    }

    #[test]
    fn metadata_round_trips_and_has_the_documented_layout() {
        let meta = metadata(3);
        let raw = meta.encode();
        assert_eq!(raw.len(), METADATA_HEADER_BYTES + 3 * 32);
        assert_eq!(&raw[..4], b"CSNP");
        assert_eq!(&raw[4..8], &1u32.to_be_bytes());
        assert_eq!(&raw[8..16], &40u64.to_be_bytes());
        assert_eq!(&raw[16..48], &[7; 32]);
        assert_eq!(&raw[64..68], &3u32.to_be_bytes());
        assert_eq!(&raw[68 + 32..68 + 64], &[1; 32]);
        assert_eq!(Metadata::decode(&raw), Ok(meta));
    }

    #[test]
    fn malformed_metadata_is_refused_never_panics() {
        let raw = metadata(2).encode();
        // Every truncation and every extension is refused.
        for len in 0..raw.len() {
            assert!(Metadata::decode(&raw[..len]).is_err(), "truncated to {len}");
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert!(Metadata::decode(&longer).is_err());
        let mut magic = raw.clone();
        magic[0] ^= 1;
        assert_eq!(Metadata::decode(&magic), Err(FormatError::Magic));
        let mut format = raw.clone();
        format[7] = 2;
        assert_eq!(Metadata::decode(&format), Err(FormatError::Format(2)));
        let mut none = raw.clone();
        none[64..68].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(Metadata::decode(&none), Err(FormatError::ChunkCount(0)));
        let mut many = raw;
        many[64..68].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Metadata::decode(&many),
            Err(FormatError::ChunkCount(u32::MAX))
        );
    }

    #[test]
    fn chunks_round_trip_and_malformed_chunks_are_refused() {
        let mut chunk = Vec::new();
        push_entry(&mut chunk, b"acct/1", b"one");
        push_entry(&mut chunk, b"acct/2", b"");
        assert_eq!(
            parse_chunk(&chunk),
            Ok(vec![
                (&b"acct/1"[..], &b"one"[..]),
                (&b"acct/2"[..], &b""[..])
            ])
        );
        assert_eq!(parse_chunk(&[]), Ok(Vec::new()));
        for len in 1..chunk.len() {
            if len == 17 {
                // The first entry ends exactly here: a valid shorter chunk.
                continue;
            }
            assert!(parse_chunk(&chunk[..len]).is_err(), "truncated to {len}");
        }
        let mut huge_len = chunk.clone();
        huge_len[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_chunk(&huge_len).is_err());
        let mut empty_key = Vec::new();
        push_entry(&mut empty_key, b"", b"x");
        assert_eq!(parse_chunk(&empty_key), Err(FormatError::EmptyKey));
        let mut long_key = Vec::new();
        push_entry(&mut long_key, &[b'k'; KEY_BYTES_MAX + 1], b"x");
        assert_eq!(
            parse_chunk(&long_key),
            Err(FormatError::KeyTooLong(KEY_BYTES_MAX + 1))
        );
        assert_eq!(
            parse_chunk(&vec![0; CHUNK_BYTES_MAX + 1]),
            Err(FormatError::ChunkTooLarge(CHUNK_BYTES_MAX + 1))
        );
    }
}
