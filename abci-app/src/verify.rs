//! Chain-side WebAssembly: every validator compiles a module when it is
//! stored (so that nothing the chain admits fails to compile, and no
//! reveal's block ever pays for a compile), runs the `verify` export of
//! Verified jobs from the verify queue ([`crate::judge`]) with the job's fuel
//! cap as the only bound, so every validator reaches the same verdict
//! without a wall clock, and re-runs disputed tasks as the referee
//! ([`crate::referee`]) under the limits their workers had.
//!
//! A verdict is a property of the module, the input and the output. Anything
//! else that stops a validator from reaching one (a cache I/O error, memory
//! exhaustion, a compile error that admission said could not happen) is a
//! [`VerifierFault`]: the caller halts the node rather than commit an app
//! hash the other validators do not compute.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use compute_sandbox::{
    EngineSettings, Execution, ModuleId, PrepareError, PreparedModule, Sandbox, SandboxConfig,
    TaskLimits, Verdict,
};

/// Native stack of the thread `verify` runs on: the sandbox needs its wasm
/// stack plus a margin, more than a connection thread may have.
const VERIFY_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// A watchdog long enough never to fire before the fuel cap: a verdict must
/// not depend on how fast this machine is.
const VERIFY_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// What the chain concluded about a revealed output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// `verify` returned 1.
    Accepted {
        /// Fuel `verify` burnt.
        fuel_used: u64,
    },
    /// `verify` refused the output, or failed deterministically (trap,
    /// out of fuel).
    Refused {
        /// Why, for people.
        why: String,
        /// Fuel `verify` burnt.
        fuel_used: u64,
    },
}

/// This validator could not reach a verdict for a reason of its own.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VerifierFault(pub String);

/// Why a module could not be compiled for the chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The module itself is refused (a property of the module, the same on
    /// every validator).
    #[error("{0}")]
    Refused(String),
    /// This validator failed to compile an admissible module.
    #[error(transparent)]
    Fault(#[from] VerifierFault),
}

/// Compiles and runs chain-side WebAssembly; the sandbox is built on first
/// use.
pub struct Verifier {
    sandbox: OnceLock<Result<Sandbox, String>>,
    /// Where compiled modules are kept across restarts; `None` keeps them in
    /// memory only.
    cache_dir: Option<PathBuf>,
    /// One verification at a time: FinalizeBlock is sequential anyway.
    lock: Mutex<()>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(None)
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that keeps compiled modules in `cache_dir` (when given).
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        Self {
            sandbox: OnceLock::new(),
            cache_dir,
            lock: Mutex::new(()),
        }
    }

    fn sandbox(&self) -> Result<&Sandbox, VerifierFault> {
        let sandbox = self.sandbox.get_or_init(|| {
            Sandbox::new(SandboxConfig {
                engine: EngineSettings {
                    instances_max: 2,
                    ..EngineSettings::default()
                },
                cache_dir: self.cache_dir.clone(),
                ..SandboxConfig::default()
            })
            .map_err(|e| e.to_string())
        });
        sandbox
            .as_ref()
            .map_err(|e| VerifierFault(format!("the sandbox cannot be built: {e}")))
    }

    /// Compiles `wasm` (or finds it compiled), as a stored module must be.
    ///
    /// # Errors
    /// [`CompileError::Refused`] when the module is refused by admission;
    /// [`CompileError::Fault`] for any other failure.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Arc<PreparedModule>, CompileError> {
        let sandbox = self.sandbox()?;
        prepare_on(sandbox, wasm)
    }

    /// Judges `output` for `input` with the `verify` of module `id` under
    /// `fuel` and a memory of `memory_pages` pages. The module's bytes are
    /// read with `code` only when it is not compiled in memory already: the
    /// warm path neither reads nor hashes them.
    ///
    /// # Errors
    /// [`VerifierFault`] when this validator cannot reach a verdict.
    pub fn judge(
        &self,
        id: ModuleId,
        code: impl FnOnce() -> Vec<u8>,
        input: &[u8],
        output: &[u8],
        fuel: u64,
        memory_pages: u32,
    ) -> Result<Judgement, VerifierFault> {
        let memory =
            u64::from(memory_pages).saturating_mul(compute_sandbox::limits::WASM_PAGE_BYTES);
        let engine_memory = self.sandbox()?.config().engine.memory_bytes_max;
        let limits = TaskLimits {
            fuel_max: fuel,
            memory_bytes_max: memory.min(engine_memory),
            input_bytes_max: u32::try_from(input.len().max(output.len())).unwrap_or(u32::MAX),
            output_bytes_max: 1,
            timeout_ms: VERIFY_TIMEOUT_MS,
            ..TaskLimits::default()
        };
        self.with_module(id, code, |sandbox, prepared| {
            let verification = sandbox
                .verify(prepared, input, output, &limits)
                .map_err(|fault| VerifierFault(format!("verify could not run: {fault}")))?;
            let fuel_used = verification.fuel_used;
            Ok(match verification.verdict {
                Verdict::Accepted => Judgement::Accepted { fuel_used },
                Verdict::Rejected => Judgement::Refused {
                    why: "verify rejected the output".into(),
                    fuel_used,
                },
                Verdict::Failed(failure) => Judgement::Refused {
                    why: format!("verify failed: {failure}"),
                    fuel_used,
                },
            })
        })
    }

    /// Runs task `input` of module `id` exactly as its workers must have
    /// ([`TaskLimits::for_task`]): the referee of a dispute.
    ///
    /// # Errors
    /// [`VerifierFault`] when this validator cannot produce the result.
    pub fn referee(
        &self,
        id: ModuleId,
        code: impl FnOnce() -> Vec<u8>,
        input: &[u8],
        fuel_limit: u64,
        memory_pages: u32,
    ) -> Result<Execution, VerifierFault> {
        let limits = TaskLimits::for_task(fuel_limit, u64::from(memory_pages), VERIFY_TIMEOUT_MS);
        self.with_module(id, code, |sandbox, prepared| {
            sandbox
                .run(prepared, input, &limits)
                .map_err(|fault| VerifierFault(format!("the referee could not run: {fault}")))
        })
    }

    /// Runs `work` on module `id`, compiled (or found compiled), one at a
    /// time, on a thread with the stack the sandbox needs.
    fn with_module<T: Send>(
        &self,
        id: ModuleId,
        code: impl FnOnce() -> Vec<u8>,
        work: impl FnOnce(&Sandbox, &PreparedModule) -> Result<T, VerifierFault> + Send,
    ) -> Result<T, VerifierFault> {
        let sandbox = self.sandbox()?;
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let cached = sandbox.cached(id);
        let bytes = if cached.is_none() { Some(code()) } else { None };
        let run = || -> Result<T, VerifierFault> {
            // Stored modules were compiled when they were stored; this finds
            // them in the cache (or, after a restart without a disk cache,
            // compiles again: this validator's own cost, never a verdict).
            let prepared = match (cached, &bytes) {
                (Some(prepared), _) => prepared,
                (None, bytes) => prepare_on(sandbox, bytes.as_deref().unwrap_or_default())
                    .map_err(|e| {
                        VerifierFault(format!("a stored module does not compile here: {e}"))
                    })?,
            };
            work(sandbox, &prepared)
        };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("verify".into())
                .stack_size(VERIFY_THREAD_STACK_BYTES)
                .spawn_scoped(scope, run)
                .map_err(|e| VerifierFault(format!("the verify thread cannot start: {e}")))?
                .join()
                .map_err(|_| VerifierFault("the verify thread panicked".into()))?
        })
    }
}

fn prepare_on(sandbox: &Sandbox, wasm: &[u8]) -> Result<Arc<PreparedModule>, CompileError> {
    sandbox.prepare(wasm).map_err(|e| match e {
        PrepareError::Invalid(invalid) => CompileError::Refused(invalid.to_string()),
        other => CompileError::Fault(VerifierFault(format!(
            "compiling an admitted module failed: {other}"
        ))),
    })
}
