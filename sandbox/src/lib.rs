//! Deterministic WebAssembly sandbox of the compute network.
//!
//! Untrusted jobs are WebAssembly modules with a tiny ABI (see
//! `compute-guest`). This crate:
//!
//! - admits modules ([`validate_module`]): size cap, the ABI exports with
//!   their signatures, no imports, bounded counts and a bounded compile
//!   time (compile units, [`limits`]), so that every admitted module
//!   compiles, quickly; cheap and deterministic, for the chain's `CheckTx`
//!   as much as for workers; the WebAssembly features admitted are one set
//!   ([`features`]) that the engine compiles with too;
//! - instruments them with a logical call-depth counter ([`instrument`]), so
//!   that deep recursion ends the same way on every machine;
//! - compiles them once with the network's wasmtime configuration
//!   ([`engine`]), once per module however many threads ask at the same
//!   time, and caches the artifacts in memory and on disk;
//! - runs tasks ([`Sandbox::run`]) and verifications ([`Sandbox::verify`]) in
//!   fresh pooled instances, returning either an [`Execution`] (output or
//!   deterministic [`Failure`], plus fuel used) that every honest worker
//!   agrees on, or a [`WorkerFault`] that is this machine's problem.
//!
//! A job is priced for a runtime: [`RUNTIME_ID`] and [`runtime_hash`] name
//! the wasmtime version, the fuel cost table and the instrumentation.
//!
//! ```no_run
//! use compute_sandbox::{Sandbox, SandboxConfig, TaskLimits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let wasm: Vec<u8> = Vec::new();
//! let sandbox = Sandbox::new(SandboxConfig::default())?;
//! let module = sandbox.prepare(&wasm)?;
//! let execution = sandbox.run(&module, b"input", &TaskLimits::default())?;
//! println!("{:?} used {} fuel", execution.outcome, execution.fuel_used);
//! # Ok(())
//! # }
//! ```

pub mod bombs;
pub mod engine;
pub mod features;
pub mod instrument;
pub mod limits;
pub mod outcome;
pub mod runtime;
pub mod validate;

pub use compute_proto::ModuleId;
pub use engine::{cost_table_hash, runtime_hash, EngineSettings, RUNTIME_ID};
pub use limits::{ModuleLimits, TaskLimits, BR_TABLE_TARGETS_ENGINE_MAX};
pub use outcome::{Execution, Failure, Outcome, Verdict, Verification, WorkerFault};
pub use runtime::{PrepareError, PreparedModule, Sandbox, SandboxConfig, SandboxError};
pub use validate::{validate_module, ModuleInfo, ValidationError};
