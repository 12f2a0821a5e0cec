//! Example job with a cheap `verify`: a hash-prefix search (proof of work).
//!
//! Find a nonce such that `sha3_256(prefix || nonce as u64 little-endian)`
//! starts with `difficulty_bits` zero bits. Finding one takes about
//! `2^difficulty_bits` hashes; checking one takes one, so the chain can check
//! the answer itself (`Verified` policy) instead of replicating the task.
//!
//! Input: `difficulty_bits: u32, nonce_start: u64, nonce_count: u64`, then
//! the prefix bytes, little-endian. Output: the first nonce found in
//! `[nonce_start, nonce_start + nonce_count)` as `u64` little-endian, or no
//! bytes when the range holds none. `verify` accepts only a found nonce that
//! lies in the range and meets the difficulty (an empty answer cannot be
//! checked cheaply, so it is rejected).

use compute_guest::Reader;
use sha3::{Digest, Sha3_256};

/// Most difficulty bits accepted (the whole digest).
pub const DIFFICULTY_BITS_MAX: u32 = 256;

/// A search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search<'a> {
    /// Leading zero bits required.
    pub difficulty_bits: u32,
    /// First nonce tried.
    pub nonce_start: u64,
    /// Number of nonces tried at most.
    pub nonce_count: u64,
    /// Bytes hashed before the nonce.
    pub prefix: &'a [u8],
}

impl<'a> Search<'a> {
    /// Encodes the search as the job's input.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut input = Vec::with_capacity(20 + self.prefix.len());
        input.extend_from_slice(&self.difficulty_bits.to_le_bytes());
        input.extend_from_slice(&self.nonce_start.to_le_bytes());
        input.extend_from_slice(&self.nonce_count.to_le_bytes());
        input.extend_from_slice(self.prefix);
        input
    }

    /// Decodes a job input.
    #[must_use]
    pub fn decode(input: &'a [u8]) -> Option<Self> {
        let mut reader = Reader::new(input);
        let search = Self {
            difficulty_bits: reader.u32()?,
            nonce_start: reader.u64()?,
            nonce_count: reader.u64()?,
            prefix: reader.rest(),
        };
        (search.difficulty_bits <= DIFFICULTY_BITS_MAX).then_some(search)
    }

    /// Whether `nonce` is in range and meets the difficulty.
    #[must_use]
    pub fn accepts(&self, nonce: u64) -> bool {
        let in_range = nonce
            .checked_sub(self.nonce_start)
            .is_some_and(|offset| offset < self.nonce_count);
        in_range && leading_zero_bits(&digest(self.prefix, nonce)) >= self.difficulty_bits
    }

    /// The first accepted nonce, if the range holds one.
    #[must_use]
    pub fn run(&self) -> Option<u64> {
        let mut hasher = Sha3_256::new();
        hasher.update(self.prefix);
        (0..self.nonce_count)
            .map_while(|offset| self.nonce_start.checked_add(offset))
            .find(|&nonce| {
                // Reuse the absorbed prefix: clone the state, add the nonce.
                let hash: [u8; 32] = hasher
                    .clone()
                    .chain_update(nonce.to_le_bytes())
                    .finalize()
                    .into();
                leading_zero_bits(&hash) >= self.difficulty_bits
            })
    }
}

/// `sha3_256(prefix || nonce as u64 little-endian)`.
#[must_use]
pub fn digest(prefix: &[u8], nonce: u64) -> [u8; 32] {
    Sha3_256::new()
        .chain_update(prefix)
        .chain_update(nonce.to_le_bytes())
        .finalize()
        .into()
}

/// Number of leading zero bits of a digest.
#[must_use]
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

/// The job: searches the range and returns the nonce found, or no bytes.
#[must_use]
pub fn job(input: &[u8]) -> Vec<u8> {
    let Some(search) = Search::decode(input) else {
        panic!("input must be difficulty_bits: u32, nonce_start: u64, nonce_count: u64, prefix");
    };
    search
        .run()
        .map(|nonce| nonce.to_le_bytes().to_vec())
        .unwrap_or_default()
}

/// The checker: one hash.
#[must_use]
pub fn check(input: &[u8], output: &[u8]) -> bool {
    let (Some(search), Ok(nonce)) = (Search::decode(input), <[u8; 8]>::try_from(output)) else {
        return false;
    };
    search.accepts(u64::from_le_bytes(nonce))
}

compute_guest::job!(job, verify = check);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_nonce_is_accepted_and_neighbours_are_checked() {
        let search = Search {
            difficulty_bits: 8,
            nonce_start: 0,
            nonce_count: 100_000,
            prefix: b"block",
        };
        let input = search.encode();
        let output = job(&input);
        assert_eq!(output.len(), 8);
        assert!(check(&input, &output));
        let nonce = u64::from_le_bytes(output.clone().try_into().unwrap());
        assert!(!check(&input, &(nonce + 1).to_le_bytes()) || search.accepts(nonce + 1));
        assert!(!check(&input, &[]));
        assert!(!check(&input, &output[..7]));
    }

    #[test]
    fn an_exhausted_range_answers_nothing() {
        let search = Search {
            difficulty_bits: 64,
            nonce_start: 0,
            nonce_count: 16,
            prefix: b"x",
        };
        assert!(job(&search.encode()).is_empty());
    }

    #[test]
    fn nonce_outside_the_range_is_rejected() {
        let search = Search {
            difficulty_bits: 0,
            nonce_start: 10,
            nonce_count: 5,
            prefix: b"",
        };
        assert!(search.accepts(10));
        assert!(search.accepts(14));
        assert!(!search.accepts(9));
        assert!(!search.accepts(15));
    }
}
