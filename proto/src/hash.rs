//! Domain-separated SHA3-256 hashing.
//!
//! `H(tag, parts...) = sha3_256(tag || 0x00 || parts...)`. Parts are
//! concatenated without length prefixes, so every caller puts at most one
//! variable-length part, and puts it last; fixed-width integers are
//! big-endian.

use sha3::{Digest, Sha3_256};

/// The domain tags of the protocol; each hash use has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// Transaction signing: `H(Tx, body)`.
    Tx,
    /// Job ids: `H(Job, requester, nonce)`.
    Job,
    /// Sealed result commitments.
    Commit,
    /// Seeds of the assignment RNG.
    Assign,
    /// The app hash chain.
    State,
    /// The result hash of a task that failed deterministically.
    Failure,
    /// Sign bytes of a blob upload header.
    Upload,
}

impl Tag {
    /// The tag's bytes as they enter the hash.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tag::Tx => "compute/tx/v1",
            Tag::Job => "compute/job/v1",
            Tag::Commit => "compute/commit/v1",
            Tag::Assign => "compute/assign/v1",
            Tag::State => "compute/state/v1",
            Tag::Failure => "compute/failure/v1",
            Tag::Upload => "compute/upload/v1",
        }
    }
}

/// Plain SHA3-256, used for blob and module ids.
pub fn sha3_256(bytes: &[u8]) -> [u8; 32] {
    Sha3_256::digest(bytes).into()
}

/// Plain SHA3-256 of the concatenation of `parts` (no domain tag), for
/// fingerprints whose first part already names what they are.
pub fn sha3_256_concat(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `H(tag, parts...)`: SHA3-256 over the tag, a zero byte and the parts.
pub fn hash_parts(tag: Tag, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Hasher::new(tag);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// The sealed commitment of a result:
/// `H("compute/commit/v1", job, task u32 BE, worker, result_hash, fuel_used u64 BE, salt)`.
///
/// The worker's key is inside, so one worker's commitment is worthless to
/// another, and the salt keeps a small result space from being guessed.
pub fn commitment(
    job: &[u8; 32],
    task: u32,
    worker: &[u8; 32],
    result_hash: &[u8; 32],
    fuel_used: u64,
    salt: &[u8],
) -> [u8; 32] {
    hash_parts(
        Tag::Commit,
        &[
            job,
            &task.to_be_bytes(),
            worker,
            result_hash,
            &fuel_used.to_be_bytes(),
            salt,
        ],
    )
}

/// The seed of one assignment draw:
/// `H("compute/assign/v1", block hash, job, task u32 BE, replica u32 BE, attempt u32 BE)`.
pub fn assignment_seed(
    block_hash: &[u8],
    job: &[u8; 32],
    task: u32,
    replica: u32,
    attempt: u32,
) -> [u8; 32] {
    hash_parts(
        Tag::Assign,
        &[
            block_hash,
            job,
            &task.to_be_bytes(),
            &replica.to_be_bytes(),
            &attempt.to_be_bytes(),
        ],
    )
}

/// An incremental `H(tag, ...)` for callers that stream their parts.
#[derive(Clone)]
pub struct Hasher(Sha3_256);

impl Hasher {
    /// Starts a hash under `tag`.
    pub fn new(tag: Tag) -> Self {
        let mut inner = Sha3_256::new();
        inner.update(tag.as_str().as_bytes());
        inner.update([0u8]);
        Self(inner)
    }

    /// Appends a part.
    pub fn update(&mut self, part: &[u8]) {
        self.0.update(part);
    }

    /// Appends a big-endian `u64`.
    pub fn update_u64(&mut self, value: u64) {
        self.0.update(value.to_be_bytes());
    }

    /// Finishes the hash.
    pub fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_and_pinned() {
        let tags = [
            Tag::Tx,
            Tag::Job,
            Tag::Commit,
            Tag::Assign,
            Tag::State,
            Tag::Failure,
            Tag::Upload,
        ];
        let mut names: Vec<_> = tags.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), tags.len());
        assert_eq!(Tag::Tx.as_str(), "compute/tx/v1");
    }

    #[test]
    fn hash_is_sha3_of_tag_zero_and_parts() {
        let expected = sha3_256(b"compute/job/v1\0abcdef");
        assert_eq!(hash_parts(Tag::Job, &[b"abc", b"def"]), expected);
        assert_eq!(sha3_256_concat(&[b"compute/job/v1\0abc", b"def"]), expected);
        let mut h = Hasher::new(Tag::Job);
        h.update(b"abcdef");
        assert_eq!(h.finalize(), expected);
    }

    #[test]
    fn sha3_matches_the_standard_vector() {
        // SHA3-256("") from FIPS 202.
        assert_eq!(
            hex::encode(sha3_256(b"")),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[test]
    fn domains_separate_equal_inputs() {
        assert_ne!(
            hash_parts(Tag::Tx, &[b"x"]),
            hash_parts(Tag::Commit, &[b"x"])
        );
    }
}
