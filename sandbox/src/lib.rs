//! Deterministic WebAssembly sandbox of the compute network (the runtime
//! lands with the sandbox work).
