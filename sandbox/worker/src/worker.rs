//! The worker service: registration, reconciliation with the chain, task
//! execution, commits and reveals.
//!
//! The chain is the source of truth. The worker reconciles with
//! `/worker/<hex>/assignments` at startup, after every event and every
//! poll period, and decides each task's next step from the chain's view and
//! its own journal ([`decide`]). Events only wake it up, so a missed event
//! (a reconnect, a gateway restart) costs at most one poll period.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use compute_proto::{
    commitment, pb, AccountId, BlobId, Code, JobId, ModuleId, SigningKey, TxBuilder,
};
use compute_sandbox::{
    Execution, PrepareError, PreparedModule, Sandbox, SandboxConfig, SandboxError, TaskLimits,
    Verification, WorkerFault,
};
use rand_core::RngCore;
use tokio::sync::{oneshot, watch, Notify, Semaphore};

use crate::chain::{
    Account, Assignment, Assignments, ChainParams, InputRef, JobPolicy, JobTerms, ModuleCode,
    Stats, WorkerRecord,
};
use crate::deny::DenyList;
use crate::gateway::{retry, Backoff, Gateway, GatewayError};
use crate::journal::{Entry, EntryState, Journal, JournalError, TaskKey, JOURNAL_VERSION};
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
/// How long a shutdown waits for tasks in progress.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// How long startup waits for the event stream before reporting ready.
pub const READY_WAIT_MS: u64 = 15_000;
/// Attempts to get one transaction accepted (nonce resyncs included).
pub const SUBMIT_ATTEMPTS_MAX: u32 = 6;

/// What the worker is told on the command line.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The gateway's gRPC URL.
    pub gateway_url: String,
    /// The worker's home directory (journal, module cache, compiled cache).
    pub home: PathBuf,
    /// Tasks run at once, and the capacity registered with.
    pub capacity: u32,
    /// Credits staked when registering.
    pub stake: u64,
    /// The fee offered with every transaction.
    pub fee: u64,
    /// Modules never run.
    pub deny: DenyList,
    /// Reveal wrong results on purpose (tests and demos only).
    pub cheat: bool,
    /// The fallback reconcile period.
    pub poll: Duration,
}

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The sandbox could not be built.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// The home directory could not be prepared.
    #[error("home directory {path}: {source}")]
    Home {
        /// The path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another worker process uses this home directory.
    #[error(
        "home directory {0} is in use by another worker process; give each worker its own --home"
    )]
    HomeLocked(String),
    /// The chain refused a transaction.
    #[error("the chain refused {what} with code {code}: {log}")]
    Refused {
        /// The transaction.
        what: &'static str,
        /// The ABCI code.
        code: u32,
        /// The chain's explanation.
        log: String,
    },
    /// A transaction could not be placed after several nonce resyncs.
    #[error(
        "{what}: no nonce accepted after {SUBMIT_ATTEMPTS_MAX} attempts (last code {code}: {log})"
    )]
    NonceUnsettled {
        /// The transaction.
        what: &'static str,
        /// The last code.
        code: u32,
        /// The last explanation.
        log: String,
    },
    /// The worker was asked to stop.
    #[error("shutting down")]
    ShuttingDown,
}

/// The next step for one task, from the chain's view and the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fetch, run, journal and commit.
    Run,
    /// Send the journaled commitment.
    Commit,
    /// Send the journaled reveal.
    Reveal,
    /// The chain has the commitment; record it.
    MarkCommitted,
    /// The chain has the reveal; record it.
    MarkRevealed,
    /// The chain waits for a reveal this worker cannot make (no journal entry).
    Lost,
    /// Nothing to do now.
    Wait,
}

/// Decides a task's next step.
///
/// A task already in the journal is never run again: its journaled
/// commitment is sent (again) while the chain shows the replica `assigned`,
/// so a restart never produces a second commitment with a new salt.
#[must_use]
pub fn decide(task_status: &str, replica_status: &str, journaled: Option<EntryState>) -> Action {
    match (replica_status, task_status, journaled) {
        ("assigned", "commit", None) => Action::Run,
        ("assigned", "commit", Some(_)) => Action::Commit,
        ("committed", "reveal", Some(_)) => Action::Reveal,
        ("committed", "reveal", None) => Action::Lost,
        ("committed", _, Some(EntryState::Prepared)) => Action::MarkCommitted,
        (
            "revealed" | "agreed" | "cheated",
            _,
            Some(EntryState::Prepared | EntryState::Committed),
        ) => Action::MarkRevealed,
        _ => Action::Wait,
    }
}

/// Which typed call carries a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxKind {
    Register,
    Commit,
    Reveal,
    Decline,
}

impl TxKind {
    fn name(self) -> &'static str {
        match self {
            TxKind::Register => "RegisterWorker",
            TxKind::Commit => "CommitResult",
            TxKind::Reveal => "RevealResult",
            TxKind::Decline => "DeclineTask",
        }
    }
}

/// Why one task could not be run.
#[derive(Debug, thiserror::Error)]
enum TaskError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("module {0} is on the deny list")]
    Denied(ModuleId),
    #[error("module {module}: {reason}")]
    Module { module: ModuleId, reason: String },
    #[error("input: {0}")]
    Input(String),
    #[error("cannot read the job's terms: {0}")]
    Terms(GatewayError),
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
    fn is_retryable(&self) -> bool {
        match self {
            TaskError::Gateway(e) | TaskError::Terms(e) => e.is_transient(),
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

/// Longest reason the chain accepts in a `DeclineTask`.
const DECLINE_REASON_BYTES_MAX: usize = 256;

/// A running worker.
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorkerConfig,
    key: SigningKey,
    account: AccountId,
    gateway: Gateway,
    builder: TxBuilder,
    params: ChainParams,
    sandbox: Arc<Sandbox>,
    modules: ModuleCache,
    journal: Mutex<Journal>,
    nonce: tokio::sync::Mutex<Option<u64>>,
    slots: Arc<Semaphore>,
    busy: Mutex<BTreeSet<TaskKey>>,
    /// Tasks not to try again while they stay assigned (denied, refused,
    /// faulted); each is logged once.
    skipped: Mutex<BTreeSet<TaskKey>>,
    /// The policy of each job the worker holds tasks of: a job's terms
    /// never change, so `/job/<id>` is read once per job, not per task.
    policies: Mutex<BTreeMap<JobId, JobPolicy>>,
    wake: Notify,
    shutdown: watch::Receiver<bool>,
    _home_lock: std::fs::File,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single insert, remove or file write whose
    // in-memory update happens last, so a poisoned lock holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a task from the busy set when its handler ends, however it ends.
struct BusyGuard {
    inner: Arc<Inner>,
    key: TaskKey,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.inner.busy).remove(&self.key);
    }
}

impl Worker {
    /// Prepares the home directory, reads the journal, learns the chain id
    /// and parameters through the gateway (waiting for it to come up),
    /// registers the worker if the chain does not know it, and builds the
    /// sandbox.
    ///
    /// # Errors
    /// When the home directory is unusable or in use, the gateway stays
    /// unreachable, or the chain refuses the registration.
    pub async fn start(
        config: WorkerConfig,
        key: SigningKey,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, WorkerError> {
        let account = key.account();
        let home_lock = lock_home(&config.home)?;
        let (journal, damaged) = Journal::open(&config.home.join("journal"))?;
        for error in &damaged {
            tracing::error!(%error, "journal entry set aside");
        }
        tracing::info!(
            entries = journal.entries().count(),
            dir = %journal.dir().display(),
            "journal loaded"
        );
        let modules_dir = config.home.join("modules");
        let modules = ModuleCache::open(&modules_dir).map_err(|source| WorkerError::Home {
            path: modules_dir.display().to_string(),
            source,
        })?;
        let gateway = Gateway::connect_lazy(&config.gateway_url)?;

        let stats: Stats = wait_for_gateway(&gateway, "/stats", &shutdown).await?;
        let params: ChainParams = wait_for_gateway(&gateway, "/params", &shutdown).await?;
        tracing::info!(
            chain_id = %stats.chain_id,
            height = stats.height,
            gateway = gateway.url(),
            "connected"
        );
        let mut builder = TxBuilder::new(stats.chain_id.clone());
        builder.fee = config.fee;

        let mut sandbox_config = SandboxConfig {
            cache_dir: Some(config.home.join("compiled")),
            ..SandboxConfig::default()
        };
        let memory_bytes = task_memory_bytes(&params);
        sandbox_config.engine.memory_bytes_max =
            sandbox_config.engine.memory_bytes_max.max(memory_bytes);
        sandbox_config.engine.instances_max = config.capacity.max(1);
        let sandbox = Arc::new(Sandbox::new(sandbox_config)?);

        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(
                usize::try_from(config.capacity.max(1)).unwrap_or(1),
            )),
            config,
            key,
            account,
            gateway,
            builder,
            params,
            sandbox,
            modules,
            journal: Mutex::new(journal),
            nonce: tokio::sync::Mutex::new(None),
            busy: Mutex::new(BTreeSet::new()),
            skipped: Mutex::new(BTreeSet::new()),
            policies: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            shutdown,
            _home_lock: home_lock,
        });
        inner.register().await?;
        Ok(Self { inner })
    }

    /// The worker's account.
    #[must_use]
    pub fn account(&self) -> AccountId {
        self.inner.account
    }

    /// Follows events and reconciles until shutdown, then waits (a bounded
    /// time) for tasks in progress. `on_ready` is called once the worker is
    /// registered and its event stream is open (or could not be opened, in
    /// which case polling carries on alone).
    ///
    /// # Errors
    /// None today; reconcile failures are logged and retried.
    pub async fn run(self, on_ready: impl FnOnce(AccountId) + Send) -> Result<(), WorkerError> {
        let inner = self.inner;
        let (first_tx, first_rx) = oneshot::channel();
        let events = tokio::spawn(Arc::clone(&inner).follow_events(first_tx));
        match tokio::time::timeout(Duration::from_millis(READY_WAIT_MS), first_rx).await {
            Ok(Ok(true)) => {}
            _ => tracing::warn!(
                poll_secs = inner.config.poll.as_secs(),
                "no event stream yet; relying on polling until it connects"
            ),
        }
        on_ready(inner.account);

        let mut shutdown = inner.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(error) = Arc::clone(&inner).reconcile().await {
                tracing::warn!(%error, "reconcile failed; trying again shortly");
            }
            tokio::select! {
                () = inner.wake.notified() => {}
                () = tokio::time::sleep(inner.config.poll) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }

        tracing::info!("shutting down");
        events.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
        loop {
            let busy = lock(&inner.busy).len();
            if busy == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    tasks = busy,
                    "abandoning tasks in progress; the journal resumes them at the next start"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Inner {
    fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn register(&self) -> Result<(), WorkerError> {
        let path = format!("/worker/{}", self.account);
        match retry("worker record", &self.shutdown, || {
            self.gateway.query::<WorkerRecord>(&path)
        })
        .await
        {
            Ok(record) => {
                tracing::info!(
                    capacity = record.capacity,
                    stake = record.stake,
                    active_tasks = record.active_tasks,
                    "already registered"
                );
                if record.capacity != self.config.capacity || record.stake != self.config.stake {
                    tracing::warn!(
                        registered_capacity = record.capacity,
                        registered_stake = record.stake,
                        capacity = self.config.capacity,
                        stake = self.config.stake,
                        "registered terms differ from the flags; the chain keeps the registered ones (unregister to change them)"
                    );
                }
                Ok(())
            }
            Err(GatewayError::NotFound { .. }) => {
                let msg = pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: self.config.capacity,
                    stake: self.config.stake,
                });
                let answer = self.submit(msg, TxKind::Register).await?;
                match Code::from_u32(answer.code) {
                    Some(Code::Ok) => {
                        tracing::info!(
                            capacity = self.config.capacity,
                            stake = self.config.stake,
                            height = answer.height,
                            "registered"
                        );
                        Ok(())
                    }
                    Some(Code::WorkerExists) => Ok(()),
                    _ => Err(WorkerError::Refused {
                        what: "RegisterWorker",
                        code: answer.code,
                        log: answer.log,
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs and sends `msg` with the next nonce, resyncing the nonce from
    /// the chain when it was replayed or skipped ahead. Registration waits
    /// for its block; commits and reveals return after CheckTx, so a
    /// worker's transactions for several tasks share a block instead of
    /// taking one block each (CheckTx queues an account's nonces in order).
    /// The chain's state, reconciled continuously, confirms them: a commit
    /// that never lands is sent again from the journal, and one that did is
    /// answered with WrongPhase, which is recorded as committed.
    async fn submit(
        &self,
        msg: pb::tx_body::Msg,
        kind: TxKind,
    ) -> Result<pb::BroadcastTxResponse, WorkerError> {
        let mut slot = self.nonce.lock().await;
        let mut backoff = Backoff::default();
        let mut last = (0u32, String::new());
        for _ in 0..SUBMIT_ATTEMPTS_MAX {
            if self.stopping() && kind == TxKind::Register {
                return Err(WorkerError::ShuttingDown);
            }
            let nonce = match *slot {
                Some(nonce) => nonce,
                None => {
                    let path = format!("/account/{}", self.account);
                    let account: Account = retry("account", &self.shutdown, || {
                        self.gateway.query::<Account>(&path)
                    })
                    .await?;
                    tracing::debug!(
                        nonce = account.nonce,
                        balance = account.balance,
                        "nonce synced"
                    );
                    *slot = Some(account.nonce);
                    account.nonce
                }
            };
            let bytes = self.builder.sign(&self.key, nonce, msg.clone());
            let sent = match kind {
                TxKind::Register => {
                    self.gateway
                        .broadcast(bytes, pb::BroadcastMode::Commit)
                        .await
                }
                TxKind::Commit | TxKind::Reveal | TxKind::Decline => {
                    self.gateway.broadcast(bytes, pb::BroadcastMode::Sync).await
                }
            };
            match sent {
                Ok(answer)
                    if matches!(
                        Code::from_u32(answer.code),
                        Some(Code::NonceReplayed | Code::NonceGap | Code::TooManyPending)
                    ) =>
                {
                    tracing::debug!(code = answer.code, log = %answer.log, nonce, "nonce out of step; resyncing");
                    *slot = None;
                    last = (answer.code, answer.log);
                }
                Ok(answer) => {
                    // Accepted, or refused in a block (the nonce is used
                    // either way); refused by CheckTx leaves it unused.
                    if answer.code == Code::Ok.value() || answer.height > 0 {
                        *slot = Some(nonce.saturating_add(1));
                    }
                    return Ok(answer);
                }
                Err(e) if e.is_transient() => {
                    // The transaction may or may not have landed.
                    tracing::warn!(error = %e, tx = kind.name(), "sending failed; retrying");
                    *slot = None;
                    last = (0, e.to_string());
                }
                Err(e) => {
                    *slot = None;
                    return Err(e.into());
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Err(WorkerError::NonceUnsettled {
            what: kind.name(),
            code: last.0,
            log: last.1,
        })
    }

    async fn follow_events(self: Arc<Self>, first: oneshot::Sender<bool>) {
        let mut first = Some(first);
        let mut backoff = Backoff::new(500, 10_000);
        let mut shutdown = self.shutdown.clone();
        loop {
            if self.stopping() {
                return;
            }
            match self.gateway.subscribe_worker(&self.account).await {
                Ok(mut stream) => {
                    tracing::info!("listening for assignments");
                    if let Some(tx) = first.take() {
                        let _ = tx.send(true);
                    }
                    backoff = Backoff::new(500, 10_000);
                    // Events may have been missed while disconnected.
                    self.wake.notify_one();
                    loop {
                        tokio::select! {
                            message = stream.message() => match message {
                                Ok(Some(event)) => {
                                    log_event(&event);
                                    self.wake.notify_one();
                                }
                                Ok(None) => {
                                    tracing::warn!("event stream ended; reconnecting");
                                    break;
                                }
                                Err(status) => {
                                    tracing::warn!(code = ?status.code(), message = status.message(), "event stream broke; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.wait_for(|s| *s) => return,
                        }
                    }
                }
                Err(error) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(false);
                    }
                    tracing::warn!(%error, "cannot subscribe to events; polling meanwhile");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    async fn reconcile(self: Arc<Self>) -> Result<(), WorkerError> {
        let path = format!("/worker/{}/assignments", self.account);
        let answer: Assignments = retry("assignments", &self.shutdown, || {
            self.gateway.query::<Assignments>(&path)
        })
        .await?;
        let listed: BTreeSet<TaskKey> = answer.assignments.iter().map(Assignment::key).collect();
        for assignment in answer.assignments {
            if self.stopping() {
                break;
            }
            let key = assignment.key();
            if lock(&self.busy).contains(&key) || lock(&self.skipped).contains(&key) {
                continue;
            }
            let entry = self.journal().get(&key).cloned();
            let action = decide(
                &assignment.task_status,
                &assignment.replica_status,
                entry.as_ref().map(|e| e.state),
            );
            match (action, entry) {
                (Action::Run, _) => {
                    self.spawn(key, |inner| async move { inner.run_task(assignment).await });
                }
                (Action::Commit, Some(entry)) => {
                    self.spawn(key, |inner| async move { inner.commit(entry).await });
                }
                (Action::Reveal, Some(entry)) => {
                    self.spawn(key, |inner| async move { inner.reveal(entry).await });
                }
                (Action::MarkCommitted, _) => self.mark(&key, EntryState::Committed),
                (Action::MarkRevealed, _) => self.mark(&key, EntryState::Revealed),
                (Action::Lost, _) => {
                    tracing::error!(task = %key, "the chain waits for a reveal, but the journal has no entry for this task (journal lost or damaged); it will count as missed");
                    lock(&self.skipped).insert(key);
                }
                _ => {}
            }
        }
        // Forget what the chain no longer assigns to this worker.
        lock(&self.skipped).retain(|key| listed.contains(key));
        let jobs: BTreeSet<JobId> = listed.iter().map(|key| key.job).collect();
        lock(&self.policies).retain(|job, _| jobs.contains(job));
        let stale: Vec<Entry> = self
            .journal()
            .entries()
            .filter(|e| !listed.contains(&e.key()))
            .cloned()
            .collect();
        for entry in stale {
            let key = entry.key();
            if lock(&self.busy).contains(&key) {
                continue;
            }
            if entry.state == EntryState::Revealed {
                tracing::debug!(task = %key, "task ended; journal entry pruned");
            } else {
                tracing::warn!(task = %key, state = ?entry.state, "task left this worker's assignments before it was revealed (deadline missed, job cancelled or ended); journal entry pruned");
            }
            if let Err(error) = self.journal().remove(&key) {
                tracing::warn!(%error, task = %key, "cannot prune journal entry");
            }
        }
        Ok(())
    }

    fn mark(&self, key: &TaskKey, state: EntryState) {
        if let Err(error) = self.journal().set_state(key, state) {
            tracing::warn!(%error, task = %key, "cannot record task state");
        }
    }

    fn spawn<F, Fut>(self: &Arc<Self>, key: TaskKey, work: F)
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if !lock(&self.busy).insert(key) {
            return;
        }
        let guard = BusyGuard {
            inner: Arc::clone(self),
            key,
        };
        let future = work(Arc::clone(self));
        tokio::spawn(async move {
            let _guard = guard;
            future.await;
        });
    }

    async fn run_task(self: Arc<Self>, assignment: Assignment) {
        let key = assignment.key();
        match Arc::clone(&self).compute(&assignment).await {
            Ok(entry) => self.commit(entry).await,
            Err(TaskError::ShuttingDown) => {}
            Err(TaskError::Denied(module)) => {
                tracing::warn!(task = %key, %module, "module is on the local deny list; declining the task");
                lock(&self.skipped).insert(key);
                self.decline(
                    &assignment,
                    &format!("module {module} is on the worker's deny list"),
                )
                .await;
            }
            Err(TaskError::SelfCheck(reason)) => {
                // Nothing was journaled or sent for this result, so a
                // restart runs the task again and reaches the same verdict.
                tracing::warn!(task = %key, module = %assignment.module, reason, "declining the task instead of committing a result it cannot stand behind");
                lock(&self.skipped).insert(key);
                self.decline(&assignment, &reason).await;
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(task = %key, %error, "task not computed; will try again");
            }
            Err(error) => {
                tracing::error!(task = %key, module = %assignment.module, %error, "task refused; declining it");
                lock(&self.skipped).insert(key);
                self.decline(&assignment, &error.to_string()).await;
            }
        }
    }

    /// Gives a drawn task back to the chain, which draws another worker at
    /// once instead of waiting out the commit deadline.
    async fn decline(&self, assignment: &Assignment, reason: &str) {
        let key = assignment.key();
        let mut reason = reason.to_owned();
        if reason.len() > DECLINE_REASON_BYTES_MAX {
            let mut end = DECLINE_REASON_BYTES_MAX;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        let msg = pb::tx_body::Msg::DeclineTask(pb::DeclineTask {
            job_id: assignment.job.0.to_vec(),
            task: assignment.task,
            reason,
        });
        match self.submit(msg, TxKind::Decline).await {
            Ok(answer) if answer.code == Code::Ok.value() => {
                tracing::info!(task = %key, "declined");
            }
            Ok(answer) => {
                tracing::warn!(task = %key, code = answer.code, log = %answer.log, "decline refused; the chain will count a missed deadline")
            }
            Err(error) => {
                tracing::warn!(task = %key, %error, "decline not sent; the chain will count a missed deadline")
            }
        }
    }

    /// Fetches, runs, stores the output and journals the sealed result.
    async fn compute(self: Arc<Self>, assignment: &Assignment) -> Result<Entry, TaskError> {
        let key = assignment.key();
        let module = assignment.module;
        if self.config.deny.denies(&module) {
            return Err(TaskError::Denied(module));
        }
        let policy = self.job_policy(assignment).await?;
        let mut shutdown = self.shutdown.clone();
        let permit = tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => {
                permit.map_err(|_| TaskError::ShuttingDown)?
            }
            _ = shutdown.wait_for(|s| *s) => return Err(TaskError::ShuttingDown),
        };
        tracing::info!(
            task = %key,
            %module,
            fuel_limit = assignment.fuel_limit,
            deadline_height = assignment.deadline_height,
            ?policy,
            "task started"
        );
        // Holding the prepared module (not just seeing it in the cache)
        // means an eviction before the task thread starts cannot fail it.
        let source = match self.sandbox.cached(module) {
            Some(prepared) => ModuleSource::Prepared(prepared),
            None => ModuleSource::Bytes(self.module_bytes(&module).await?),
        };
        let input = self.input_bytes(assignment).await?;
        let plan = TaskPlan {
            limits: TaskLimits {
                fuel_max: assignment.fuel_limit,
                memory_bytes_max: task_memory_bytes(&self.params),
                timeout_ms: TASK_TIMEOUT_MS,
                ..TaskLimits::default()
            },
            policy,
            memory_pages: self.params.sandbox_memory_pages,
            inline_output_bytes_max: self.params.max_inline_output_bytes,
            cheat: self.config.cheat,
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
        if self.config.cheat && matches!(policy, JobPolicy::Verified { .. }) {
            tracing::warn!(task = %key, "CHEAT MODE: own verify skipped for a Verified job");
        }
        let result = if self.config.cheat {
            let wrong = honest.falsified();
            tracing::warn!(task = %key, true_hash = %honest.result_hash, wrong_hash = %wrong.result_hash, "CHEAT MODE: committing a wrong result");
            wrong
        } else {
            honest
        };

        let output_blob = match &result.output {
            Some(output) => {
                match retry("PutBlob", &self.shutdown, || self.gateway.put_blob(output)).await {
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
        let entry = Entry {
            version: JOURNAL_VERSION,
            job: key.job,
            task: key.task,
            module,
            result_hash: result.result_hash,
            fuel_used: result.fuel_used,
            salt: hex::encode(salt),
            output_blob: output_blob.map(|id: BlobId| id),
            output_inline,
            cheat: self.config.cheat,
            state: EntryState::Prepared,
        };
        // Written and synced before the commitment leaves this machine.
        self.journal().put(entry.clone())?;
        Ok(entry)
    }

    /// The policy of the assignment's job: from the assignment when the
    /// chain lists it there, else from `/job/<id>?tasks=false`, read once per
    /// job.
    async fn job_policy(&self, assignment: &Assignment) -> Result<JobPolicy, TaskError> {
        if let Some(policy) = assignment.policy {
            return Ok(policy);
        }
        if let Some(policy) = lock(&self.policies).get(&assignment.job) {
            return Ok(*policy);
        }
        let path = format!("/job/{}?tasks=false", assignment.job);
        let terms: JobTerms = retry("job terms", &self.shutdown, || {
            self.gateway.query::<JobTerms>(&path)
        })
        .await
        .map_err(TaskError::Terms)?;
        lock(&self.policies).insert(assignment.job, terms.policy);
        Ok(terms.policy)
    }

    async fn module_bytes(&self, module: &ModuleId) -> Result<Vec<u8>, TaskError> {
        if let Some(bytes) = self.modules.get(module) {
            return Ok(bytes);
        }
        let path = format!("/module/{module}?code=true");
        let answer: ModuleCode = retry("module", &self.shutdown, || {
            self.gateway.query::<ModuleCode>(&path)
        })
        .await?;
        let code = answer.code.ok_or_else(|| TaskError::Module {
            module: *module,
            reason: "the chain answered without its code".to_owned(),
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(code.as_bytes())
            .map_err(|e| TaskError::Module {
                module: *module,
                reason: format!("code is not base64: {e}"),
            })?;
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

    async fn input_bytes(&self, assignment: &Assignment) -> Result<Vec<u8>, TaskError> {
        let max_bytes = u64::from(TaskLimits::default().input_bytes_max);
        match &assignment.input {
            Some(InputRef::Inline(text)) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| TaskError::Input(format!("inline input is not base64: {e}"))),
            Some(InputRef::Hash(hex_id)) => {
                let id = BlobId::from_hex(hex_id)
                    .map_err(|e| TaskError::Input(format!("input hash '{hex_id}': {e}")))?;
                if assignment.input_size > max_bytes {
                    return Err(TaskError::Input(format!(
                        "input {id} is {} bytes, more than the {max_bytes} this worker accepts",
                        assignment.input_size
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

    async fn commit(self: Arc<Self>, entry: Entry) {
        let key = entry.key();
        let salt = match entry.salt_bytes() {
            Ok(salt) => salt,
            Err(reason) => {
                tracing::error!(task = %key, reason, "journal entry unusable");
                return;
            }
        };
        let sealed = commitment(
            &entry.job.0,
            entry.task,
            &self.account.0,
            &entry.result_hash.0,
            entry.fuel_used,
            &salt,
        );
        let msg = pb::tx_body::Msg::CommitResult(pb::CommitResult {
            job_id: entry.job.0.to_vec(),
            task: entry.task,
            commitment: sealed.to_vec(),
        });
        match self.submit(msg, TxKind::Commit).await {
            Ok(answer) => match Code::from_u32(answer.code) {
                Some(Code::Ok) => {
                    tracing::info!(task = %key, height = answer.height, "committed");
                    self.mark(&key, EntryState::Committed);
                }
                Some(Code::WrongPhase) => {
                    tracing::info!(task = %key, log = %answer.log, "already committed (or the commit phase is over)");
                    self.mark(&key, EntryState::Committed);
                }
                Some(Code::NotAssigned) => {
                    tracing::warn!(task = %key, log = %answer.log, "no longer assigned; commit dropped");
                }
                _ => {
                    tracing::error!(task = %key, code = answer.code, log = %answer.log, "commit refused");
                }
            },
            Err(error) => tracing::warn!(task = %key, %error, "commit not sent; will try again"),
        }
    }

    async fn reveal(self: Arc<Self>, entry: Entry) {
        let key = entry.key();
        let (salt, output) = match (entry.salt_bytes(), entry.inline_output()) {
            (Ok(salt), Ok(output)) => (salt, output),
            (Err(reason), _) | (_, Err(reason)) => {
                tracing::error!(task = %key, reason, "journal entry unusable");
                lock(&self.skipped).insert(key);
                return;
            }
        };
        let msg = pb::tx_body::Msg::RevealResult(pb::RevealResult {
            job_id: entry.job.0.to_vec(),
            task: entry.task,
            result_hash: entry.result_hash.0.to_vec(),
            fuel_used: entry.fuel_used,
            salt,
            output: output.unwrap_or_default(),
        });
        match self.submit(msg, TxKind::Reveal).await {
            Ok(answer) => match Code::from_u32(answer.code) {
                Some(Code::Ok) => {
                    tracing::info!(task = %key, height = answer.height, result_hash = %entry.result_hash, fuel_used = entry.fuel_used, cheat = entry.cheat, "revealed");
                    self.mark(&key, EntryState::Revealed);
                }
                Some(Code::WrongPhase) => {
                    tracing::info!(task = %key, log = %answer.log, "already revealed (or the reveal phase is over)");
                    self.mark(&key, EntryState::Revealed);
                }
                Some(Code::CommitmentMismatch) => {
                    tracing::error!(task = %key, log = %answer.log, "the journal does not open this worker's commitment; giving up on the reveal");
                    lock(&self.skipped).insert(key);
                }
                _ => {
                    tracing::error!(task = %key, code = answer.code, log = %answer.log, "reveal refused");
                }
            },
            Err(error) => tracing::warn!(task = %key, %error, "reveal not sent; will try again"),
        }
    }
}

/// Bytes of linear memory a task may reach under the chain's parameters.
fn task_memory_bytes(params: &ChainParams) -> u64 {
    params
        .sandbox_memory_pages
        .saturating_mul(compute_sandbox::limits::WASM_PAGE_BYTES)
}

fn outcome_name(execution: &Execution) -> String {
    match &execution.outcome {
        compute_sandbox::Outcome::Completed(output) => {
            format!("completed ({} bytes)", output.len())
        }
        compute_sandbox::Outcome::Failed(failure) => format!("failed: {failure}"),
    }
}

fn log_event(event: &pb::ChainEvent) {
    let attribute = |name: &str| {
        event
            .attributes
            .iter()
            .find(|a| a.key == name)
            .map_or("", |a| a.value.as_str())
            .to_owned()
    };
    tracing::info!(
        kind = %event.kind,
        height = event.height,
        job = %attribute("job"),
        task = %attribute("task"),
        "event"
    );
}

/// Where the task thread gets the prepared module from.
enum ModuleSource {
    /// Already prepared, and held.
    Prepared(Arc<PreparedModule>),
    /// Bytes already checked against the module id, to prepare.
    Bytes(Vec<u8>),
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
    let prepared = match source {
        ModuleSource::Prepared(prepared) => prepared,
        ModuleSource::Bytes(wasm) => sandbox.prepare(&wasm)?,
    };
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

/// Queries `path` until the gateway answers (or shutdown): at startup the
/// gateway may still be coming up.
async fn wait_for_gateway<T: serde::de::DeserializeOwned>(
    gateway: &Gateway,
    path: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<T, WorkerError> {
    let mut backoff = Backoff::new(500, 5_000);
    let mut shutdown = shutdown.clone();
    loop {
        match gateway.query::<T>(path).await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, gateway = gateway.url(), "waiting for the gateway");
            }
            Err(error) => return Err(error.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.wait_for(|s| *s) => return Err(WorkerError::ShuttingDown),
        }
    }
}

/// Creates the home directory and takes an exclusive lock on it, so that two
/// worker processes never share a journal.
fn lock_home(home: &Path) -> Result<std::fs::File, WorkerError> {
    let io = |source| WorkerError::Home {
        path: home.display().to_string(),
        source,
    };
    std::fs::create_dir_all(home).map_err(io)?;
    let path = home.join("worker.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(WorkerError::HomeLocked(home.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_assignment_is_run_and_a_journaled_one_is_committed_from_the_journal() {
        assert_eq!(decide("commit", "assigned", None), Action::Run);
        for state in [
            EntryState::Prepared,
            EntryState::Committed,
            EntryState::Revealed,
        ] {
            assert_eq!(decide("commit", "assigned", Some(state)), Action::Commit);
        }
    }

    #[test]
    fn an_open_reveal_is_sent_from_the_journal_or_reported_lost() {
        assert_eq!(
            decide("reveal", "committed", Some(EntryState::Committed)),
            Action::Reveal
        );
        assert_eq!(
            decide("reveal", "committed", Some(EntryState::Prepared)),
            Action::Reveal
        );
        assert_eq!(decide("reveal", "committed", None), Action::Lost);
    }

    #[test]
    fn the_journal_catches_up_with_what_the_chain_already_has() {
        assert_eq!(
            decide("commit", "committed", Some(EntryState::Prepared)),
            Action::MarkCommitted
        );
        assert_eq!(
            decide("commit", "committed", Some(EntryState::Committed)),
            Action::Wait
        );
        for replica in ["revealed", "agreed", "cheated"] {
            assert_eq!(
                decide("reveal", replica, Some(EntryState::Committed)),
                Action::MarkRevealed
            );
            assert_eq!(
                decide("settled", replica, Some(EntryState::Revealed)),
                Action::Wait
            );
        }
    }

    #[test]
    fn ended_or_unknown_states_wait() {
        assert_eq!(decide("cancelled", "assigned", None), Action::Wait);
        assert_eq!(decide("failed", "committed", None), Action::Wait);
        assert_eq!(decide("something-new", "else", None), Action::Wait);
    }

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

    #[test]
    fn a_second_process_cannot_lock_the_same_home() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_home(dir.path()).unwrap();
        assert!(matches!(
            lock_home(dir.path()),
            Err(WorkerError::HomeLocked(_))
        ));
        drop(first);
        lock_home(dir.path()).unwrap();
    }
}
