//! Example job: multiplies two square `i32` matrices with wrapping
//! arithmetic (an integer kernel).
//!
//! Input: `n: u32`, then `A` and `B`, each `n * n` `i32` row-major,
//! little-endian. Output: `C = A * B`, `n * n` `i32` row-major,
//! little-endian.

use compute_guest::Reader;

/// Largest side accepted.
pub const SIDE_MAX: u32 = 1024;

/// Encodes two `n x n` matrices as the job's input.
///
/// # Panics
/// When a matrix does not hold `n * n` entries.
#[must_use]
pub fn encode_input(n: u32, a: &[i32], b: &[i32]) -> Vec<u8> {
    let cells = n as usize * n as usize;
    assert!(
        a.len() == cells && b.len() == cells,
        "matrices must be n x n"
    );
    let mut input = Vec::with_capacity(4 + 8 * cells);
    input.extend_from_slice(&n.to_le_bytes());
    for value in a.iter().chain(b) {
        input.extend_from_slice(&value.to_le_bytes());
    }
    input
}

/// The job: decodes `n`, `A` and `B` and returns `A * B`.
#[must_use]
pub fn job(input: &[u8]) -> Vec<u8> {
    let mut reader = Reader::new(input);
    let n = reader.u32().expect("input must start with n: u32");
    assert!(n <= SIDE_MAX, "n above SIDE_MAX");
    let cells = n as usize * n as usize;
    let mut read_matrix = || -> Vec<i32> {
        (0..cells)
            .map(|_| reader.i32().expect("input holds fewer than 2 n^2 entries"))
            .collect()
    };
    let a = read_matrix();
    let b = read_matrix();
    let c = multiply(n as usize, &a, &b);
    let mut out = Vec::with_capacity(cells * 4);
    for value in c {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// `A * B` for row-major `n x n` matrices, wrapping on overflow.
#[must_use]
pub fn multiply(n: usize, a: &[i32], b: &[i32]) -> Vec<i32> {
    let mut c = vec![0i32; n * n];
    // i-k-j order walks B and C row by row, which keeps the inner loop
    // sequential in memory (and vectorisable natively).
    for i in 0..n {
        let c_row = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let a_ik = a[i * n + k];
            let b_row = &b[k * n..(k + 1) * n];
            for (c_ij, &b_kj) in c_row.iter_mut().zip(b_row) {
                *c_ij = c_ij.wrapping_add(a_ik.wrapping_mul(b_kj));
            }
        }
    }
    c
}

compute_guest::job!(job);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplies_a_small_matrix() {
        assert_eq!(multiply(2, &[1, 2, 3, 4], &[5, 6, 7, 8]), [19, 22, 43, 50]);
    }

    #[test]
    fn job_round_trips_through_bytes() {
        let out = job(&encode_input(1, &[-3], &[7]));
        assert_eq!(out, (-21i32).to_le_bytes());
    }
}
