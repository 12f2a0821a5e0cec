//! The task pipeline: from an assignment to a sealed result ready to
//! commit. It fetches the module (cached on disk, checked against its id)
//! and the input (checked against its hash), runs the task in the sandbox
//! on a thread of its own, runs the module's own `verify` for a `Verified`
//! job ([`selfcheck`]), stores the output in the gateway's blob store and
//! prepares the journal entry, salt included.
//!
//! Nothing here writes the journal or sends a transaction: the caller
//! journals the entry before its commitment leaves the machine.

use std::sync::Arc;

use base64::Engine as _;
use compute_client::{retry, ClientError, Gateway, Query as _};
use compute_proto::{BlobId, ModuleId, SigningKey};
use compute_sandbox::{
    Execution, PrepareError, PreparedModule, Sandbox, TaskLimits, Verification, WorkerFault,
};
use rand_core::RngCore;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::chain::{task_key, Assignment, ChainParams, InputView, JobPolicy, ModuleView};
use crate::deny::DenyList;
use crate::error::gateway_reason;
use crate::journal::{Entry, EntryState, JournalError, JOURNAL_VERSION};
use crate::modules::ModuleCache;
use crate::result::TaskResult;
use crate::selfcheck::{self, Decision, Step};

/// Stack of a thread that runs a task: the sandbox needs 512 KiB of wasm
/// stack, plus the host's own frames, plus a wide margin.
pub const TASK_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;
/// The wall-clock watchdog of one task; expiry is a fault of this worker,
/// never a result, so it is generous.
pub const TASK_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Bytes of salt in a commitment.
pub const SALT_BYTES: usize = 32;

/// Why one task could not be run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    #[error("{}", gateway_reason(.0))]
    Gateway(#[from] ClientError),
    #[error("module {0} is on the deny list")]
    Denied(ModuleId),
    #[error("module {module}: {reason}")]
    Module { module: ModuleId, reason: String },
    #[error("input: {0}")]
    Input(String),
    #[error("{}", prepare_reason(.0))]
    Prepare(#[from] PrepareError),
    #[error("worker fault (not a result, nothing committed): {0}")]
    Fault(#[from] WorkerFault),
    #[error("task thread: {0}")]
    Thread(String),
    /// The worker will not commit the result of a `Verified` task; the
    /// reason says why and goes into `DeclineTask` as it is.
    #[error("{0}")]
    SelfCheck(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("shutting down")]
    ShuttingDown,
}

impl TaskError {
    /// Whether trying again at the next reconcile may help.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            TaskError::Gateway(e) => e.is_transient(),
            TaskError::Journal(_) | TaskError::ShuttingDown => true,
            _ => false,
        }
    }
}

/// Why a module could not be prepared, as a decline reason: a module the
/// sandbox refuses is the module's doing; any other failure to compile it is
/// this worker's, and either way the task goes to another worker.
fn prepare_reason(error: &PrepareError) -> String {
    match error {
        PrepareError::Invalid(e) => format!("the sandbox refuses the module: {e}"),
        other => format!("this worker cannot compile the module: {other}"),
    }
}

/// Bytes of linear memory a task may reach under the chain's parameters.
#[must_use]
pub fn task_memory_bytes(params: &ChainParams) -> u64 {
    params
        .sandbox_memory_pages
        .saturating_mul(compute_sandbox::limits::WASM_PAGE_BYTES)
}

/// What the pipeline works with: the sandbox, the module cache, the
/// gateway, the worker's key (which signs its output uploads), and the
/// chain's parameters and this worker's flags.
pub(crate) struct Pipeline {
    gateway: Gateway,
    key: SigningKey,
    sandbox: Arc<Sandbox>,
    modules: ModuleCache,
    params: ChainParams,
    deny: DenyList,
    cheat: bool,
    /// One permit per task that may run at once (`--parallel`); tasks
    /// take them in the order they ask.
    slots: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Pipeline {
    /// A pipeline running at most `parallel` tasks at once (at least one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        gateway: Gateway,
        key: SigningKey,
        sandbox: Arc<Sandbox>,
        modules: ModuleCache,
        params: ChainParams,
        deny: DenyList,
        cheat: bool,
        parallel: u32,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            gateway,
            key,
            sandbox,
            modules,
            params,
            deny,
            cheat,
            slots: Arc::new(Semaphore::new(
                usize::try_from(parallel.max(1)).unwrap_or(1),
            )),
            shutdown,
        }
    }

    /// Fetches, runs, stores the output and seals the result as a journal
    /// entry (not yet journaled).
    pub(crate) async fn compute(&self, assignment: &Assignment) -> Result<Entry, TaskError> {
        let key = task_key(assignment);
        let module = assignment.module;
        if self.deny.denies(&module) {
            return Err(TaskError::Denied(module));
        }
        let policy = JobPolicy::from(assignment.policy);
        let permit = self.run_slot().await?;
        tracing::info!(
            task = %key,
            %module,
            fuel_limit = assignment.fuel_limit,
            deadline_height = assignment.deadline_height,
            ?policy,
            "task started"
        );
        let source = self.module_source(module).await?;
        let input = self
            .input_bytes(assignment.input.as_ref(), assignment.input_size)
            .await?;
        let plan = TaskPlan {
            limits: TaskLimits::for_task(
                assignment.fuel_limit,
                self.params.sandbox_memory_pages,
                TASK_TIMEOUT_MS,
            ),
            policy,
            memory_pages: self.params.sandbox_memory_pages,
            inline_output_bytes_max: self.params.max_inline_output_bytes,
            cheat: self.cheat,
        };
        let started = std::time::Instant::now();
        let sandbox = Arc::clone(&self.sandbox);
        let checked = on_task_thread(format!("task-{}", key.task), move || {
            run_and_check(&sandbox, source, &input, &plan)
        })
        .await?;
        drop(permit);
        let honest = TaskResult::honest(&checked.execution);
        tracing::info!(
            task = %key,
            result_hash = %honest.result_hash,
            fuel_used = honest.fuel_used,
            outcome = outcome_name(&checked.execution),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "task finished"
        );
        if let Some(verification) = &checked.verification {
            match verification {
                Ok(v) => {
                    tracing::info!(task = %key, verdict = ?v.verdict, fuel_used = v.fuel_used, "own verify ran");
                }
                Err(fault) => tracing::warn!(task = %key, %fault, "own verify could not run"),
            }
        }
        // Decided before anything is stored or journaled: a declined result
        // never reaches the journal, so no restart can commit it.
        if let Decision::Decline(reason) = checked.decision {
            return Err(TaskError::SelfCheck(reason));
        }
        if self.cheat && matches!(policy, JobPolicy::Verified { .. }) {
            tracing::warn!(task = %key, "CHEAT MODE: own verify skipped for a Verified job");
        }
        let result = if self.cheat {
            let wrong = honest.falsified();
            tracing::warn!(task = %key, true_hash = %honest.result_hash, wrong_hash = %wrong.result_hash, "CHEAT MODE: committing a wrong result");
            wrong
        } else {
            honest
        };

        let output_blob = match &result.output {
            Some(output) => {
                let upload = || self.gateway.put_blob(&self.key, output);
                match retry("PutBlob", &self.shutdown, upload).await {
                    Ok(id) => Some(id),
                    Err(error) => {
                        // The commitment does not depend on it; an inline
                        // reveal still carries small outputs.
                        tracing::warn!(task = %key, %error, "output not stored in the gateway's blob store");
                        None
                    }
                }
            }
            None => None,
        };
        let inline_max = usize::try_from(self.params.max_inline_output_bytes).unwrap_or(usize::MAX);
        let output_inline = result
            .output
            .as_ref()
            .filter(|o| o.len() <= inline_max)
            .map(|o| base64::engine::general_purpose::STANDARD.encode(o));
        let mut salt = [0u8; SALT_BYTES];
        rand_core::OsRng.fill_bytes(&mut salt);
        Ok(Entry {
            version: JOURNAL_VERSION,
            job: key.job,
            task: key.task,
            module,
            result_hash: result.result_hash,
            fuel_used: result.fuel_used,
            salt: hex::encode(salt),
            output_blob: output_blob.map(|id: BlobId| id),
            output_inline,
            cheat: self.cheat,
            state: EntryState::Prepared,
        })
    }

    /// The module's bytes, from the disk cache or the chain, checked against
    /// its id.
    async fn module_bytes(&self, module: &ModuleId) -> Result<Vec<u8>, TaskError> {
        if let Some(bytes) = self.modules.get(module) {
            return Ok(bytes);
        }
        let answer: ModuleView = retry("module", &self.shutdown, || {
            self.gateway.module_code(module)
        })
        .await?;
        let bytes = answer
            .code
            .ok_or_else(|| TaskError::Module {
                module: *module,
                reason: "the chain answered without its code".to_owned(),
            })?
            .0;
        let actual = ModuleId::of(&bytes);
        if actual != *module {
            return Err(TaskError::Module {
                module: *module,
                reason: format!("the code received hashes to {actual}; refused"),
            });
        }
        if let Err(error) = self.modules.put(module, &bytes) {
            tracing::warn!(%module, %error, "cannot cache module bytes");
        }
        Ok(bytes)
    }

    /// A run slot (`--parallel`), in the order tasks ask, or shutdown.
    async fn run_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, TaskError> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => {
                permit.map_err(|_| TaskError::ShuttingDown)
            }
            _ = shutdown.wait_for(|s| *s) => Err(TaskError::ShuttingDown),
        }
    }

    /// Module `module` prepared from the sandbox's cache, or its bytes to
    /// prepare on the task thread. Holding the prepared module (not just
    /// seeing it in the cache) means an eviction before the task thread
    /// starts cannot fail the task.
    async fn module_source(&self, module: ModuleId) -> Result<ModuleSource, TaskError> {
        Ok(match self.sandbox.cached(module) {
            Some(prepared) => ModuleSource::Prepared(prepared),
            None => ModuleSource::Bytes(self.module_bytes(&module).await?),
        })
    }

    /// Runs a task again exactly as a replica of it runs (the job's fuel
    /// limit, the chain's memory), taking a run slot like any task; what a
    /// watcher compares with a settled result. No own check, no cheating.
    pub(crate) async fn rerun(
        &self,
        module: ModuleId,
        fuel_limit: u64,
        input: Vec<u8>,
    ) -> Result<Execution, TaskError> {
        if self.deny.denies(&module) {
            return Err(TaskError::Denied(module));
        }
        let _permit = self.run_slot().await?;
        let source = self.module_source(module).await?;
        let limits = TaskLimits::for_task(
            fuel_limit,
            self.params.sandbox_memory_pages,
            TASK_TIMEOUT_MS,
        );
        let sandbox = Arc::clone(&self.sandbox);
        on_task_thread("rerun".to_owned(), move || {
            let prepared = source.prepare(&sandbox)?;
            Ok(sandbox.run(&prepared, &input, &limits)?)
        })
        .await
    }

    /// A task's input of `size` bytes, inline or from the gateway's blob
    /// store (which checks it against its hash).
    pub(crate) async fn input_bytes(
        &self,
        input: Option<&InputView>,
        size: u64,
    ) -> Result<Vec<u8>, TaskError> {
        let max_bytes = u64::from(TaskLimits::default().input_bytes_max);
        match input {
            Some(InputView::Inline(bytes)) => Ok(bytes.0.clone()),
            Some(InputView::Hash(hash)) => {
                let id = BlobId(hash.0);
                if size > max_bytes {
                    return Err(TaskError::Input(format!(
                        "input {id} is {size} bytes, more than the {max_bytes} this worker accepts"
                    )));
                }
                Ok(retry("GetBlob", &self.shutdown, || {
                    self.gateway.get_blob(&id, max_bytes)
                })
                .await?)
            }
            None => Err(TaskError::Input("the task names no input".to_owned())),
        }
    }
}

/// The outcome of an execution, for the log.
fn outcome_name(execution: &Execution) -> String {
    match &execution.outcome {
        compute_sandbox::Outcome::Completed(output) => {
            format!("completed ({} bytes)", output.len())
        }
        compute_sandbox::Outcome::Failed(failure) => format!("failed: {failure}"),
    }
}

/// Where the task thread gets the prepared module from.
enum ModuleSource {
    /// Already prepared, and held.
    Prepared(Arc<PreparedModule>),
    /// Bytes already checked against the module id, to prepare.
    Bytes(Vec<u8>),
}

impl ModuleSource {
    /// The prepared module; blocking when it still has to be compiled.
    fn prepare(self, sandbox: &Sandbox) -> Result<Arc<PreparedModule>, TaskError> {
        Ok(match self {
            ModuleSource::Prepared(prepared) => prepared,
            ModuleSource::Bytes(wasm) => sandbox.prepare(&wasm)?,
        })
    }
}

/// What a task thread needs besides the module and the input.
#[derive(Clone, Copy, Debug)]
struct TaskPlan {
    /// The limits the task runs under.
    limits: TaskLimits,
    /// The job's policy.
    policy: JobPolicy,
    /// `sandbox_memory_pages`, which also bounds `verify` on the chain.
    memory_pages: u64,
    /// `max_inline_output_bytes`: a `Verified` output must fit.
    inline_output_bytes_max: u64,
    /// `--cheat`: skip the own check.
    cheat: bool,
}

/// A task's run and what the worker's own check made of it.
#[derive(Debug)]
struct Checked {
    /// The run.
    execution: Execution,
    /// The worker's own `verify`, when it ran.
    verification: Option<Result<Verification, WorkerFault>>,
    /// Commit, or decline and why.
    decision: Decision,
}

/// Prepares the module if needed, runs the task, and for a `Verified` job
/// runs the module's own `verify` on the output under the chain's limits
/// ([`selfcheck`]). Blocking: it runs on a task thread.
fn run_and_check(
    sandbox: &Sandbox,
    source: ModuleSource,
    input: &[u8],
    plan: &TaskPlan,
) -> Result<Checked, TaskError> {
    let prepared = source.prepare(sandbox)?;
    let execution = sandbox.run(&prepared, input, &plan.limits)?;
    let step = selfcheck::after_run(
        plan.policy,
        &execution,
        plan.inline_output_bytes_max,
        plan.cheat,
    );
    let (verification, decision) = match step {
        Step::Commit => (None, Decision::Commit),
        Step::Decline(reason) => (None, Decision::Decline(reason)),
        Step::Verify { verify_fuel } => {
            let output = execution.output().unwrap_or_default();
            let limits = selfcheck::verify_limits(
                plan.memory_pages,
                verify_fuel,
                input.len(),
                output.len(),
                plan.limits.timeout_ms,
            );
            let verification = sandbox.verify(&prepared, input, output, &limits);
            let decision = selfcheck::after_verify(&verification);
            (Some(verification), decision)
        }
    };
    Ok(Checked {
        execution,
        verification,
        decision,
    })
}

/// Runs `work` on a thread of its own with a large stack, off the async
/// runtime. A panic (a bug in the sandbox or in the compiler) becomes an
/// error with its message, so the task is declined with a clear reason.
async fn on_task_thread<T, F>(name: String, work: F) -> Result<T, TaskError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TaskError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name)
        .stack_size(TASK_THREAD_STACK_BYTES)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|panic| {
                    Err(TaskError::Thread(format!(
                        "the task thread panicked: {}",
                        panic_message(panic.as_ref())
                    )))
                });
            let _ = tx.send(result);
        })
        .map_err(|e| TaskError::Thread(format!("cannot start a task thread: {e}")))?;
    rx.await
        .map_err(|_| TaskError::Thread("the task thread stopped without an answer".to_owned()))?
}

/// The message of a panic payload, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_sandbox::SandboxConfig;

    fn test_sandbox() -> Sandbox {
        let mut config = SandboxConfig::default();
        config.engine.instances_max = 4;
        Sandbox::new(config).expect("sandbox builds")
    }

    fn plan(policy: JobPolicy) -> TaskPlan {
        TaskPlan {
            limits: TaskLimits {
                fuel_max: 2_000_000_000,
                timeout_ms: 60_000,
                ..TaskLimits::default()
            },
            policy,
            memory_pages: 1024,
            inline_output_bytes_max: 16 * 1024,
            cheat: false,
        }
    }

    /// A module whose `run` returns the one byte `x` and whose `verify`
    /// has the body given (none: no `verify` export).
    fn fixed_output_module(verify_body: Option<&str>) -> Vec<u8> {
        let verify = verify_body.map_or(String::new(), |body| {
            format!(r#"(func (export "verify") (param i32 i32 i32 i32) (result i32) {body})"#)
        });
        wat::parse_str(format!(
            r#"(module
                (memory (export "memory") 1)
                (data (i32.const 16) "x")
                (func (export "alloc") (param i32) (result i32) i32.const 1024)
                ;; output at 16, 1 byte long
                (func (export "run") (param i32 i32) (result i64) i64.const 0x1000000001)
                {verify})"#
        ))
        .expect("valid WAT")
    }

    fn search_input() -> Vec<u8> {
        compute_jobs::hashsearch::Search {
            difficulty_bits: 8,
            nonce_start: 0,
            nonce_count: 1 << 16,
            prefix: b"self check",
        }
        .encode()
    }

    fn check(wasm: &[u8], input: &[u8], plan: &TaskPlan) -> Checked {
        run_and_check(
            &test_sandbox(),
            ModuleSource::Bytes(wasm.to_vec()),
            input,
            plan,
        )
        .expect("no worker fault")
    }

    fn declined(checked: &Checked) -> &str {
        match &checked.decision {
            Decision::Decline(reason) => reason,
            Decision::Commit => panic!("committed {checked:?}"),
        }
    }

    #[test]
    fn a_verified_output_that_its_own_verify_accepts_is_committed() {
        let input = search_input();
        let checked = check(
            compute_jobs::HASHSEARCH_WASM,
            &input,
            &plan(JobPolicy::Verified {
                verify_fuel: 5_000_000,
            }),
        );
        assert_eq!(checked.decision, Decision::Commit);
        assert!(matches!(
            checked.verification,
            Some(Ok(Verification {
                verdict: compute_sandbox::Verdict::Accepted,
                ..
            }))
        ));
        let output = checked.execution.output().expect("a nonce");
        assert!(compute_jobs::hashsearch::check(&input, output));
    }

    #[test]
    fn a_verified_output_its_own_verify_refuses_is_declined() {
        let wasm = fixed_output_module(Some("i32.const 0"));
        let checked = check(
            &wasm,
            b"in",
            &plan(JobPolicy::Verified { verify_fuel: 1_000 }),
        );
        assert!(declined(&checked).starts_with("own verify refused the output"));
        // The same module under a quorum policy commits without verifying.
        let quorum = check(&wasm, b"in", &plan(JobPolicy::Quorum));
        assert_eq!(quorum.decision, Decision::Commit);
        assert!(quorum.verification.is_none());
    }

    #[test]
    fn a_verify_that_fails_or_is_missing_is_a_decline() {
        let verified = plan(JobPolicy::Verified { verify_fuel: 1_000 });
        let looping = check(
            &fixed_output_module(Some("(loop br 0) i32.const 1")),
            b"in",
            &verified,
        );
        assert!(declined(&looping).contains(&compute_sandbox::Failure::OutOfFuel.to_string()));
        let trapping = check(&fixed_output_module(Some("unreachable")), b"in", &verified);
        assert!(declined(&trapping).contains(&compute_sandbox::Failure::Unreachable.to_string()));
        let missing = check(&fixed_output_module(None), b"in", &verified);
        assert!(declined(&missing).contains(&compute_sandbox::Failure::VerifyMissing.to_string()));
        // Too little fuel for a real verify is refused like the chain would.
        let starved = check(
            compute_jobs::HASHSEARCH_WASM,
            &search_input(),
            &plan(JobPolicy::Verified { verify_fuel: 10 }),
        );
        assert!(declined(&starved).starts_with("own verify failed on the output"));
    }

    #[test]
    fn a_verified_task_whose_run_fails_is_declined_without_verifying() {
        let mut starved = plan(JobPolicy::Verified {
            verify_fuel: 5_000_000,
        });
        starved.limits.fuel_max = 1_000;
        let checked = check(compute_jobs::HASHSEARCH_WASM, &search_input(), &starved);
        assert!(declined(&checked).starts_with("the run failed"));
        assert!(checked.verification.is_none());
    }

    #[test]
    fn a_cheat_commits_without_its_own_verify() {
        let mut cheat = plan(JobPolicy::Verified { verify_fuel: 1_000 });
        cheat.cheat = true;
        let checked = check(&fixed_output_module(Some("i32.const 0")), b"in", &cheat);
        assert_eq!(checked.decision, Decision::Commit);
        assert!(checked.verification.is_none());
    }

    #[test]
    fn a_module_that_does_not_prepare_is_declined_with_a_clear_reason() {
        let error = run_and_check(
            &test_sandbox(),
            ModuleSource::Bytes(b"\0asm not really".to_vec()),
            b"in",
            &plan(JobPolicy::Quorum),
        )
        .expect_err("not a module");
        assert!(matches!(error, TaskError::Prepare(_)));
        assert!(
            !error.is_retryable(),
            "a module that does not prepare is declined"
        );
        assert!(
            error
                .to_string()
                .starts_with("the sandbox refuses the module: "),
            "{error}"
        );
        let compile = TaskError::from(PrepareError::Compile("cranelift said no".to_owned()));
        assert!(!compile.is_retryable());
        assert_eq!(
            compile.to_string(),
            "this worker cannot compile the module: compilation failed: cranelift said no"
        );
    }

    #[tokio::test]
    async fn a_panic_on_the_task_thread_is_an_error_with_its_message() {
        let result: Result<(), TaskError> =
            on_task_thread("panics".to_owned(), || panic!("compiler bug")).await;
        let error = result.expect_err("the thread panicked");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("compiler bug"), "{error}");
    }
}
