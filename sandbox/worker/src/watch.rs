//! Watching (`compute-sandbox --watch`): re-running a sample of the tasks
//! the chain settles, and disputing every result that differs from the
//! watcher's own run (docs/WORKER.md, "Watching").
//!
//! The sandbox is deterministic, so a result that differs from an honest
//! run is wrong, whoever agreed on it; the chain's referee then runs the
//! task itself and pays the disputer a bounty from the stakes of the
//! workers it proves wrong. A watcher holds no task and is not registered:
//! it needs a funded key for its bonds and a gateway.

use std::path::PathBuf;
use std::sync::Arc;

use compute_client::{Backoff, ClientError, Gateway, Query as _};
use compute_proto::views::{DisputeStatus, InputView, JobView, PolicyView, TaskView};
use compute_proto::{pb, AccountId, JobId, SigningKey};
use rand_core::RngCore;
use tokio::sync::watch;

use crate::deny::DenyList;
use crate::error::WorkerError;
use crate::pipeline::Pipeline;
use crate::submit::Submitter;
use crate::worker::{build_sandbox, connect, open_modules};

/// Checks in progress at once (fetching an input, waiting to run, running)
/// per task run at once: sampled settlements beyond it are skipped, so a
/// flood of settlements never piles up inputs in memory.
const IN_FLIGHT_PER_RUN: u32 = 4;

/// What the watcher is told on the command line.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The gateway's gRPC URL.
    pub gateway_url: String,
    /// Its home directory (module cache, compiled cache).
    pub home: PathBuf,
    /// Share of settlements re-run, in percent (1 to 100).
    pub sample_percent: u32,
    /// Credits bonded per dispute; the chain's `min_dispute_bond` when
    /// `None`.
    pub bond: Option<u64>,
    /// The fee offered with every dispute.
    pub fee: u64,
    /// Tasks re-run at once.
    pub parallel: u32,
    /// Modules never run.
    pub deny: DenyList,
}

/// What one look at a settled task found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The watcher's run agrees with the settled result.
    Agrees,
    /// The result differed, and the dispute was accepted in this block.
    Disputed {
        /// The block.
        height: u64,
    },
    /// Nothing to check: why.
    Skipped(String),
}

/// A running watcher.
pub struct Watcher {
    gateway: Gateway,
    /// Sends the disputes, keeping the account's nonce.
    submitter: Submitter,
    pipeline: Pipeline,
    sample_percent: u32,
    bond: u64,
    /// Permits of the checks in progress.
    in_flight: Arc<tokio::sync::Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Watcher {
    /// Connects to the gateway (waiting for it), reads the chain's
    /// parameters and builds the sandbox.
    ///
    /// # Errors
    /// When the gateway stays unreachable, the home directory is unusable,
    /// or no bond is given to a chain that names no `min_dispute_bond`.
    pub async fn start(
        config: WatchConfig,
        key: SigningKey,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, WorkerError> {
        let (gateway, builder, params) =
            connect(&config.gateway_url, config.fee, &shutdown).await?;
        let bond =
            config
                .bond
                .or(params.min_dispute_bond)
                .ok_or_else(|| ClientError::BadAnswer {
                    what: "/params".to_owned(),
                    reason: "the chain names no min_dispute_bond: it takes no disputes".to_owned(),
                })?;
        let modules = open_modules(&config.home)?;
        let sandbox = build_sandbox(&config.home, &params, config.parallel)?;
        let pipeline = Pipeline::new(
            gateway.clone(),
            key.clone(),
            sandbox,
            modules,
            params,
            config.deny,
            false,
            config.parallel,
            shutdown.clone(),
        );
        let submitter = Submitter::new(key, gateway.clone(), builder, shutdown.clone());
        Ok(Self {
            gateway,
            submitter,
            pipeline,
            sample_percent: config.sample_percent.clamp(1, 100),
            bond,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(config.parallel.max(1).saturating_mul(IN_FLIGHT_PER_RUN))
                    .unwrap_or(usize::MAX),
            )),
            shutdown,
        })
    }

    /// The watcher's account, which bonds its disputes.
    #[must_use]
    pub fn account(&self) -> AccountId {
        self.submitter.account()
    }

    /// Follows every settlement until shutdown, re-running a sample of
    /// them. `on_ready` is called once the first stream is open.
    ///
    /// # Errors
    /// None today; stream failures are retried.
    pub async fn run(self, on_ready: impl FnOnce(AccountId) + Send) -> Result<(), WorkerError> {
        let this = Arc::new(self);
        let mut on_ready = Some(on_ready);
        let mut backoff = Backoff::new(500, 10_000);
        let mut shutdown = this.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match this.gateway.subscribe_settlements().await {
                Ok(mut events) => {
                    tracing::info!(
                        sample_percent = this.sample_percent,
                        bond = this.bond,
                        "watching settlements"
                    );
                    if let Some(ready) = on_ready.take() {
                        ready(this.account());
                    }
                    backoff.reset();
                    loop {
                        tokio::select! {
                            message = events.next() => match message {
                                Ok(Some(event)) => Arc::clone(&this).on_event(&event),
                                Ok(None) => {
                                    tracing::warn!("settlement stream ended; reconnecting");
                                    break;
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "settlement stream broke; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.wait_for(|s| *s) => return Ok(()),
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to settlements"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            }
        }
    }

    /// Samples a `task_settled` event and checks it in the background.
    fn on_event(self: Arc<Self>, event: &pb::ChainEvent) {
        if event.kind != "task_settled" {
            return;
        }
        let attribute = |name: &str| {
            event
                .attributes
                .iter()
                .find(|a| a.key == name)
                .map(|a| a.value.clone())
        };
        let (Some(job), Some(task)) = (
            attribute("job").and_then(|h| JobId::from_hex(&h).ok()),
            attribute("task").and_then(|t| t.parse::<u32>().ok()),
        ) else {
            tracing::warn!(?event, "a settlement without a job or task; skipped");
            return;
        };
        if rand_core::OsRng.next_u32() % 100 >= self.sample_percent {
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            tracing::info!(%job, task, "too many checks in progress; this settlement is skipped");
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            match self.check(job, task).await {
                Ok(Finding::Agrees) => tracing::info!(%job, task, "re-ran a settled task: agrees"),
                Ok(Finding::Disputed { height }) => {
                    tracing::warn!(%job, task, height, "re-ran a settled task: its result is WRONG; disputed");
                }
                Ok(Finding::Skipped(why)) => tracing::debug!(%job, task, %why, "not checked"),
                Err(error) => tracing::warn!(%job, task, %error, "could not check a settled task"),
            }
        });
    }

    /// Re-runs task `index` of `job` and disputes its result if it differs.
    ///
    /// # Errors
    /// When the task, its module or its input cannot be read, the run fails
    /// for a reason of this machine, or the dispute cannot be placed.
    pub async fn check(&self, job: JobId, index: u32) -> Result<Finding, WorkerError> {
        let (view, task) = self.gateway.job_task(&job, index).await?;
        if let Some(why) = unchecked(&view, &task) {
            return Ok(Finding::Skipped(why));
        }
        let Some(completion) = &task.completion else {
            return Ok(Finding::Skipped("no completion record".into()));
        };
        let input = self
            .pipeline
            .input_bytes(task.input.as_ref(), task.size)
            .await
            .map_err(|e| task_error(&e))?;
        let execution = self
            .pipeline
            .rerun(view.summary.module, view.summary.fuel_limit, input.clone())
            .await
            .map_err(|e| task_error(&e))?;
        if execution.result_hash() == completion.result_hash.0
            && execution.fuel_used == completion.fuel_used
        {
            return Ok(Finding::Agrees);
        }
        tracing::warn!(
            %job,
            task = index,
            settled = %completion.result_hash,
            settled_fuel = completion.fuel_used,
            ours = %hex::encode(execution.result_hash()),
            our_fuel = execution.fuel_used,
            "the settled result differs from this watcher's run"
        );
        // A data-plane input rides in the dispute: validators fetch nothing.
        let carried = match task.input {
            Some(InputView::Hash(_)) => input,
            _ => Vec::new(),
        };
        let height = self
            .submitter
            .dispute(pb::Dispute {
                job_id: job.0.to_vec(),
                task: index,
                input: carried,
                bond: self.bond,
            })
            .await?;
        Ok(Finding::Disputed { height })
    }
}

/// Why a settled task is not worth re-running, if it is not.
fn unchecked(view: &JobView, task: &TaskView) -> Option<String> {
    if !matches!(view.summary.policy, Some(PolicyView::Quorum { .. }) | None) {
        return Some("a Verified job: the chain's verify accepted the output".into());
    }
    let completion = task.completion.as_ref()?;
    (completion.dispute.status != DisputeStatus::Open).then(|| {
        format!(
            "its result is no longer open to dispute ({:?})",
            completion.dispute.status
        )
    })
}

/// A failure to re-run, as the watcher reports it.
fn task_error(error: &crate::pipeline::TaskError) -> WorkerError {
    WorkerError::Rerun(error.to_string())
}
