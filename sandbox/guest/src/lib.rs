//! Guest SDK of the compute network: the job ABI in a few lines.
//!
//! A job is a pure function from input bytes to output bytes, compiled to
//! `wasm32-unknown-unknown`. The host (the sandbox) speaks a tiny ABI with
//! the module and nothing else: no imports, no WASI, no clock.
//!
//! | export | signature | meaning |
//! | --- | --- | --- |
//! | `memory` | memory 0 | the linear memory the host copies bytes into and out of |
//! | `alloc` | `(len: i32) -> i32` | returns a pointer to `len` writable bytes |
//! | `run` | `(in_ptr: i32, in_len: i32) -> i64` | runs the job; returns `out_ptr << 32 \| out_len` |
//! | `verify` (optional) | `(in_ptr, in_len, out_ptr, out_len: i32) -> i32` | `1` when the output is a correct answer for the input, anything else rejects |
//!
//! A job author writes an ordinary Rust function and names it in [`job!`]:
//!
//! ```ignore
//! fn count(input: &[u8]) -> Vec<u8> { input.len().to_le_bytes().to_vec() }
//! compute_guest::job!(count);
//! ```
//!
//! With a cheap checker, the chain itself can accept the result:
//!
//! ```ignore
//! compute_guest::job!(solve, verify = check);
//! ```
//!
//! A panic inside the job becomes a WebAssembly trap (panics abort on
//! `wasm32-unknown-unknown`), which the network records as a deterministic
//! failure of the task. The exports are only emitted when compiling for
//! `wasm32`, so the same crate also builds natively (for tests and speed
//! comparisons) without symbol clashes.
//!
//! The crate is `no_std` and only needs `alloc`.

#![no_std]

extern crate alloc;

use alloc::vec::Vec;

/// Version of the job ABI described in the crate documentation.
pub const ABI_VERSION: u32 = 1;

/// Packs an output pointer and length into the `i64` that `run` returns.
#[must_use]
pub const fn pack_output(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | (len as u64)) as i64
}

/// Splits the `i64` that `run` returns into the output pointer and length.
#[must_use]
pub const fn unpack_output(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

/// ABI plumbing used by [`job!`]; not meant to be called directly.
#[doc(hidden)]
pub mod abi {
    use super::{pack_output, Vec};

    /// Allocates `len` bytes that the host fills with input and leaks them:
    /// an instance serves exactly one task and is then thrown away, so
    /// nothing needs to be freed.
    #[must_use]
    pub fn alloc(len: i32) -> i32 {
        let len = len_from_abi(len);
        let mut buffer: Vec<u8> = Vec::with_capacity(len);
        let ptr = buffer.as_mut_ptr();
        core::mem::forget(buffer);
        ptr as usize as i32
    }

    /// Calls the job on the input at `(ptr, len)` and returns the packed
    /// location of the (leaked) output.
    #[must_use]
    pub fn run(ptr: i32, len: i32, job: fn(&[u8]) -> Vec<u8>) -> i64 {
        let input = bytes_at(ptr, len);
        let output = job(input);
        let out_ptr = output.as_ptr() as usize as u32;
        let out_len = u32::try_from(output.len()).unwrap_or(u32::MAX);
        core::mem::forget(output);
        pack_output(out_ptr, out_len)
    }

    /// Calls the checker on the input and output and returns `1` to accept
    /// and `0` to reject.
    #[must_use]
    pub fn verify(
        in_ptr: i32,
        in_len: i32,
        out_ptr: i32,
        out_len: i32,
        check: fn(&[u8], &[u8]) -> bool,
    ) -> i32 {
        let input = bytes_at(in_ptr, in_len);
        let output = bytes_at(out_ptr, out_len);
        i32::from(check(input, output))
    }

    fn len_from_abi(len: i32) -> usize {
        // The host never passes a negative length; treating one as empty
        // keeps the function total.
        usize::try_from(len).unwrap_or(0)
    }

    fn bytes_at<'a>(ptr: i32, len: i32) -> &'a [u8] {
        let len = len_from_abi(len);
        if len == 0 {
            return &[];
        }
        // The ABI contract: the host obtained `ptr` from `alloc(len)` and
        // wrote exactly `len` bytes there; the buffer is leaked, so it lives
        // for the rest of the instance. On a 32-bit target, i32 -> usize is
        // the address itself.
        #[allow(unsafe_code)]
        // SAFETY: see the contract above; the bytes are initialised by the
        // host before the call and never mutated while the slice lives.
        unsafe {
            core::slice::from_raw_parts(ptr as u32 as usize as *const u8, len)
        }
    }
}

/// `Vec` for the expansion of [`job!`] in crates that never name `alloc`.
#[doc(hidden)]
pub type __Vec<T> = Vec<T>;

/// Exports the job ABI (`alloc`, `run` and optionally `verify`) for a
/// function `fn(&[u8]) -> Vec<u8>` and an optional checker
/// `fn(&[u8], &[u8]) -> bool`.
///
/// The exports live in a private module, so the job crate may use the names
/// `run`, `alloc` and `verify` for its own items. They exist only on `wasm32`;
/// natively the macro only checks the functions' types.
#[macro_export]
macro_rules! job {
    ($run:path) => {
        #[doc(hidden)]
        #[allow(dead_code)] // only the wasm32 exports read it
        const __COMPUTE_RUN: fn(&[u8]) -> $crate::__Vec<u8> = $run;
        $crate::__job_exports!();
    };
    ($run:path, verify = $verify:path) => {
        #[doc(hidden)]
        #[allow(dead_code)] // only the wasm32 exports read it
        const __COMPUTE_RUN: fn(&[u8]) -> $crate::__Vec<u8> = $run;
        #[doc(hidden)]
        #[allow(dead_code)] // only the wasm32 exports read it
        const __COMPUTE_VERIFY: fn(&[u8], &[u8]) -> bool = $verify;
        $crate::__job_exports!();

        #[cfg(target_arch = "wasm32")]
        mod __compute_verify_export {
            // `no_mangle` is how a function becomes a module export; it is
            // sound here because the name is reserved for this ABI.
            #[allow(unsafe_code)]
            #[no_mangle]
            /// Checks an output against its input (`1` accepts).
            pub extern "C" fn verify(in_ptr: i32, in_len: i32, out_ptr: i32, out_len: i32) -> i32 {
                $crate::abi::verify(in_ptr, in_len, out_ptr, out_len, super::__COMPUTE_VERIFY)
            }
        }
    };
}

/// Emits `alloc` and `run`; used by [`job!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __job_exports {
    () => {
        #[cfg(target_arch = "wasm32")]
        mod __compute_exports {
            // `no_mangle` is how a function becomes a module export; it is
            // sound here because the names are reserved for this ABI.
            #[allow(unsafe_code)]
            #[no_mangle]
            /// Returns a pointer to `len` bytes for the host to write into.
            pub extern "C" fn alloc(len: i32) -> i32 {
                $crate::abi::alloc(len)
            }

            #[allow(unsafe_code)]
            #[no_mangle]
            /// Runs the job on the input; returns `out_ptr << 32 | out_len`.
            pub extern "C" fn run(in_ptr: i32, in_len: i32) -> i64 {
                $crate::abi::run(in_ptr, in_len, super::__COMPUTE_RUN)
            }
        }
    };
}

/// Little-endian reader for job inputs; every read is checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Takes the next `len` bytes, or `None` when fewer remain.
    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Some(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|bytes| bytes.try_into().ok())
    }

    /// Reads a `u32`, little-endian.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a `u64`, little-endian.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads an `i32`, little-endian.
    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_le_bytes)
    }

    /// Reads an `f64` from its little-endian bit pattern.
    pub fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// The bytes not read yet.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_packing_round_trips_at_the_extremes() {
        for (ptr, len) in [(0, 0), (1, 2), (u32::MAX, u32::MAX), (0x8000_0000, 7)] {
            assert_eq!(unpack_output(pack_output(ptr, len)), (ptr, len));
        }
    }

    #[test]
    fn reader_refuses_to_read_past_the_end() {
        let mut reader = Reader::new(&[1, 0, 0, 0, 9]);
        assert_eq!(reader.u32(), Some(1));
        assert_eq!(reader.u32(), None);
        assert_eq!(reader.rest(), &[9]);
        assert_eq!(reader.take(1), Some(&[9][..]));
        assert_eq!(reader.take(1), None);
    }
}
