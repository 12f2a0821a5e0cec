//! The example jobs of the compute network: their WebAssembly modules
//! (compiled for `wasm32-unknown-unknown` by this crate's build script) and,
//! from the same source, their native kernels for speed comparisons.

pub use job_hashsearch as hashsearch;
pub use job_mandelbrot as mandelbrot;
pub use job_matmul as matmul;
pub use job_nbody as nbody;
pub use job_primes as primes;

/// Prime counting over a range (integer kernel).
pub const PRIMES_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/job_primes.wasm"));

/// Mandelbrot tile (floating-point kernel).
pub const MANDELBROT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/job_mandelbrot.wasm"));

/// Integer matrix multiply.
pub const MATMUL_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/job_matmul.wasm"));

/// Floating-point n-body steps (the determinism witness).
pub const NBODY_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/job_nbody.wasm"));

/// Hash-prefix search with a `verify` export.
pub const HASHSEARCH_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/job_hashsearch.wasm"));

/// The native form of a job's `run`.
pub type NativeJob = fn(&[u8]) -> Vec<u8>;

/// Every example: name, module bytes, and the native form of its `run`.
pub const ALL: [(&str, &[u8], NativeJob); 5] = [
    ("primes", PRIMES_WASM, job_primes::job),
    ("mandelbrot", MANDELBROT_WASM, job_mandelbrot::job),
    ("matmul", MATMUL_WASM, job_matmul::job),
    ("nbody", NBODY_WASM, job_nbody::job),
    ("hashsearch", HASHSEARCH_WASM, job_hashsearch::job),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_a_wasm_binary() {
        for (name, wasm, _) in ALL {
            assert_eq!(&wasm[..4], b"\0asm", "{name} is not a wasm module");
        }
    }
}
