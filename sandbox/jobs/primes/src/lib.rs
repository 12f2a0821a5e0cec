//! Example job: counts the primes in a half-open range `[lo, hi)` with a
//! segmented sieve of Eratosthenes (an integer kernel).
//!
//! Input: `lo: u64, hi: u64` little-endian. Output: the count as `u64`
//! little-endian. A malformed input or a range wider than [`SPAN_MAX`]
//! panics, which the network records as a trap.

use compute_guest::Reader;

/// Widest range one task may sieve.
pub const SPAN_MAX: u64 = 1 << 32;

/// Bytes of one sieve segment: small enough to stay in a CPU cache.
const SEGMENT_BYTES: u64 = 32 * 1024;

/// Encodes the input of the job.
#[must_use]
pub fn encode_input(lo: u64, hi: u64) -> Vec<u8> {
    let mut input = Vec::with_capacity(16);
    input.extend_from_slice(&lo.to_le_bytes());
    input.extend_from_slice(&hi.to_le_bytes());
    input
}

/// The job: decodes the range and returns the count of primes in it.
#[must_use]
pub fn job(input: &[u8]) -> Vec<u8> {
    let mut reader = Reader::new(input);
    let (Some(lo), Some(hi)) = (reader.u64(), reader.u64()) else {
        panic!("input must be lo: u64, hi: u64");
    };
    assert!(
        lo <= hi && hi - lo <= SPAN_MAX,
        "range must be ordered and at most SPAN_MAX wide"
    );
    count_primes(lo, hi).to_le_bytes().to_vec()
}

/// Counts the primes `p` with `lo <= p < hi`.
#[must_use]
pub fn count_primes(lo: u64, hi: u64) -> u64 {
    let lo = lo.max(2);
    if hi <= lo {
        return 0;
    }
    let base = base_primes(isqrt(hi - 1));
    let mut count = 0;
    let mut segment = vec![true; SEGMENT_BYTES as usize];
    let mut start = lo;
    while start < hi {
        let end = hi.min(start + SEGMENT_BYTES);
        let len = (end - start) as usize;
        segment[..len].fill(true);
        for &p in &base {
            let p = u64::from(p);
            if p * p >= end {
                break;
            }
            // First multiple of p in the segment that is not p itself.
            let mut multiple = (start.div_ceil(p) * p).max(p * p);
            while multiple < end {
                segment[(multiple - start) as usize] = false;
                multiple += p;
            }
        }
        count += segment[..len].iter().filter(|&&is_prime| is_prime).count() as u64;
        start = end;
    }
    count
}

/// Primes up to and including `limit` by a plain sieve.
fn base_primes(limit: u64) -> Vec<u32> {
    let limit = limit as usize;
    let mut composite = vec![false; limit + 1];
    let mut primes = Vec::new();
    for n in 2..=limit {
        if !composite[n] {
            primes.push(n as u32);
            let mut multiple = n * n;
            while multiple <= limit {
                composite[multiple] = true;
                multiple += n;
            }
        }
    }
    primes
}

/// Integer square root (floor) by Newton's method, without floats.
fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

compute_guest::job!(job);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_prime_counts() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(0, 1_000_000), 78_498);
        assert_eq!(count_primes(100, 200), 21);
        assert_eq!(count_primes(7, 8), 1);
        assert_eq!(count_primes(8, 8), 0);
    }

    #[test]
    fn job_decodes_its_input() {
        assert_eq!(job(&encode_input(0, 100)), 25u64.to_le_bytes());
    }

    #[test]
    fn isqrt_is_exact_around_squares() {
        for n in [0u64, 1, 3, 4, 15, 16, 17, 1 << 40, (1 << 40) - 1, u64::MAX] {
            let r = isqrt(n);
            assert!(r * r <= n);
            assert!((r + 1).checked_mul(r + 1).is_none_or(|sq| sq > n));
        }
    }
}
