//! The WebAssembly features of the network: the one set that admission
//! validates against and the engine compiles with.
//!
//! It sits below both admission (module `validate`) and the engine (module
//! `engine`), so that neither has to reach into the other for it.

use wasmtime::WasmFeatures;

/// The WebAssembly features a module may use: the MVP plus the finished,
/// deterministic proposals that Rust's `wasm32-unknown-unknown` emits. The
/// validator of the chain and the engine of the worker use this one set.
///
/// Left out on purpose: threads (shared memory races), relaxed SIMD
/// (results differ between CPUs), memory64 and multi-memory (larger attack
/// surface, nothing needs them), GC, exceptions, tail calls and stack
/// switching (they change how frames and the depth counter behave),
/// component model.
#[must_use]
pub fn wasm_features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::SIMD
        | WasmFeatures::FLOATS
}
