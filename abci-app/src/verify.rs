//! On-chain `verify` for jobs under the `Verified` policy: every validator
//! runs the module's `verify(input, output)` export in FinalizeBlock with the
//! job's fuel cap as the only bound, so every validator reaches the same
//! verdict without a wall clock.

use std::sync::{Mutex, OnceLock};

use compute_sandbox::{EngineSettings, Sandbox, SandboxConfig, TaskLimits, Verdict};

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
    Accepted,
    /// `verify` refused the output, or failed deterministically.
    Refused(String),
    /// This validator could not run `verify` (a fault of the machine, not
    /// of the output); the reveal is neither paid nor counted as a cheat.
    Unavailable(String),
}

/// Runs `verify` exports; the sandbox is built on first use.
#[derive(Default)]
pub struct Verifier {
    sandbox: OnceLock<Result<Sandbox, String>>,
    /// One verification at a time: FinalizeBlock is sequential anyway.
    lock: Mutex<()>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// Judges `output` for `input` with `module`'s `verify` under `fuel`
    /// and a memory of `memory_pages` pages.
    pub fn judge(
        &self,
        module: &[u8],
        input: &[u8],
        output: &[u8],
        fuel: u64,
        memory_pages: u32,
    ) -> Judgement {
        let sandbox = self.sandbox.get_or_init(|| {
            Sandbox::new(SandboxConfig {
                engine: EngineSettings {
                    instances_max: 2,
                    ..EngineSettings::default()
                },
                ..SandboxConfig::default()
            })
            .map_err(|e| e.to_string())
        });
        let sandbox = match sandbox {
            Ok(sandbox) => sandbox,
            Err(e) => return Judgement::Unavailable(format!("sandbox unavailable: {e}")),
        };
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let memory =
            u64::from(memory_pages).saturating_mul(compute_sandbox::limits::WASM_PAGE_BYTES);
        let limits = TaskLimits {
            fuel_max: fuel,
            memory_bytes_max: memory.min(sandbox.config().engine.memory_bytes_max),
            input_bytes_max: u32::try_from(input.len().max(output.len())).unwrap_or(u32::MAX),
            output_bytes_max: 1,
            timeout_ms: VERIFY_TIMEOUT_MS,
            ..TaskLimits::default()
        };
        let run = || -> Judgement {
            let prepared = match sandbox.prepare(module) {
                Ok(prepared) => prepared,
                Err(e) => return Judgement::Refused(format!("module does not prepare: {e}")),
            };
            match sandbox.verify(&prepared, input, output, &limits) {
                Ok(v) => match v.verdict {
                    Verdict::Accepted => Judgement::Accepted,
                    Verdict::Rejected => Judgement::Refused("verify rejected the output".into()),
                    Verdict::Failed(failure) => {
                        Judgement::Refused(format!("verify failed: {failure}"))
                    }
                },
                Err(fault) => Judgement::Unavailable(fault.to_string()),
            }
        };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("verify".into())
                .stack_size(VERIFY_THREAD_STACK_BYTES)
                .spawn_scoped(scope, run)
                .map_err(|e| e.to_string())
                .and_then(|handle| {
                    handle
                        .join()
                        .map_err(|_| "verify thread panicked".to_owned())
                })
                .unwrap_or_else(Judgement::Unavailable)
        })
    }
}
