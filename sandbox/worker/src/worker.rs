//! The worker service's top level: its configuration, startup
//! (home lock, journal, gateway, sandbox, registration) and the main loop
//! that follows the chain's events and reconciles until shutdown.
//!
//! What a task goes through is elsewhere: [`crate::reconcile`] decides each
//! task's next step from the chain and the journal, [`crate::pipeline`] runs
//! it, and [`crate::submit`] sends the transactions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compute_client::{Backoff, ClientError, Gateway, Query};
use compute_proto::{pb, AccountId, SigningKey, TxBuilder};
use compute_sandbox::{Sandbox, SandboxConfig};
use tokio::sync::{oneshot, watch, Notify};

use crate::chain::{ChainParams, StatsView};
use crate::deny::DenyList;
use crate::error::WorkerError;
use crate::home::HomeLock;
use crate::journal::Journal;
use crate::modules::ModuleCache;
use crate::pipeline::{task_memory_bytes, Pipeline};
use crate::reconcile::Reconciler;
use crate::submit::Submitter;

/// How long a shutdown waits for tasks in progress.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// How long startup waits for the event stream before reporting ready.
pub const READY_WAIT_MS: u64 = 15_000;

/// What the worker is told on the command line.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The gateway's gRPC URL.
    pub gateway_url: String,
    /// The worker's home directory (journal, module cache, compiled cache).
    pub home: PathBuf,
    /// Tasks the chain may assign at once: the capacity registered with.
    pub capacity: u32,
    /// Tasks run at once (at least one); the others wait their turn.
    pub parallel: u32,
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

/// A running worker.
pub struct Worker {
    account: AccountId,
    gateway: Gateway,
    /// The fallback reconcile period.
    poll: Duration,
    reconciler: Arc<Reconciler>,
    /// Rung by every event: something changed, reconcile now.
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
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
        let home_lock = HomeLock::acquire(&config.home)?;
        let (journal, damaged) = Journal::open(&config.home.join("journal"))?;
        for error in &damaged {
            tracing::error!(%error, "journal entry set aside");
        }
        tracing::info!(
            entries = journal.entries().count(),
            dir = %journal.dir().display(),
            "journal loaded"
        );
        let modules = open_modules(&config.home)?;
        let (gateway, builder, params) =
            connect(&config.gateway_url, config.fee, &shutdown).await?;
        let sandbox = build_sandbox(&config.home, &params, config.parallel)?;

        let pipeline = Pipeline::new(
            gateway.clone(),
            key.clone(),
            sandbox,
            modules,
            params,
            config.deny,
            config.cheat,
            config.parallel,
            shutdown.clone(),
        );
        let submitter = Submitter::new(key, gateway.clone(), builder, shutdown.clone());
        let reconciler = Arc::new(Reconciler::new(
            gateway.clone(),
            pipeline,
            submitter,
            journal,
            home_lock,
            shutdown.clone(),
        ));
        reconciler
            .submitter()
            .register(config.capacity, config.stake)
            .await?;
        Ok(Self {
            account,
            gateway,
            poll: config.poll,
            reconciler,
            wake: Arc::new(Notify::new()),
            shutdown,
        })
    }

    /// The worker's account.
    #[must_use]
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Follows events and reconciles until shutdown, then waits (a bounded
    /// time) for tasks in progress. `on_ready` is called once the worker is
    /// registered and its event stream is open (or could not be opened, in
    /// which case polling carries on alone).
    ///
    /// # Errors
    /// None today; reconcile failures are logged and retried.
    pub async fn run(self, on_ready: impl FnOnce(AccountId) + Send) -> Result<(), WorkerError> {
        let (first_tx, first_rx) = oneshot::channel();
        let events = tokio::spawn(follow_events(
            self.gateway.clone(),
            self.account,
            Arc::clone(&self.wake),
            self.shutdown.clone(),
            first_tx,
        ));
        match tokio::time::timeout(Duration::from_millis(READY_WAIT_MS), first_rx).await {
            Ok(Ok(true)) => {}
            _ => tracing::warn!(
                poll_secs = self.poll.as_secs(),
                "no event stream yet; relying on polling until it connects"
            ),
        }
        on_ready(self.account);

        let mut shutdown = self.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(error) = Arc::clone(&self.reconciler).reconcile().await {
                tracing::warn!(%error, "reconcile failed; trying again shortly");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }

        tracing::info!("shutting down");
        events.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
        loop {
            let busy = self.reconciler.busy_count();
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

/// Follows the worker's events until shutdown, reconnecting with a backoff,
/// and rings `wake` on every event and every (re)connection. `first` learns
/// whether the first attempt to subscribe succeeded.
async fn follow_events(
    gateway: Gateway,
    account: AccountId,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    first: oneshot::Sender<bool>,
) {
    let mut first = Some(first);
    let mut backoff = Backoff::new(500, 10_000);
    let mut shutdown = shutdown;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match gateway.subscribe_worker(&account).await {
            Ok(mut events) => {
                tracing::info!("listening for assignments");
                if let Some(tx) = first.take() {
                    let _ = tx.send(true);
                }
                backoff.reset();
                // Events may have been missed while disconnected.
                wake.notify_one();
                loop {
                    tokio::select! {
                        message = events.next() => match message {
                            Ok(Some(event)) => {
                                log_event(&event);
                                wake.notify_one();
                            }
                            Ok(None) => {
                                tracing::warn!("event stream ended; reconnecting");
                                break;
                            }
                            Err(error) => {
                                tracing::warn!(code = ?error.grpc_code(), %error, "event stream broke; reconnecting");
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

/// Connects to the gateway at `url` (waiting for it to come up) and reads
/// the chain id, for a transaction builder offering `fee`, and the chain's
/// parameters.
///
/// # Errors
/// When the gateway stays unreachable or the chain has no genesis.
pub(crate) async fn connect(
    url: &str,
    fee: u64,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Gateway, TxBuilder, ChainParams), WorkerError> {
    let gateway = Gateway::connect_lazy(url)?;
    let stats: StatsView = wait_for_gateway(&gateway, "/stats", shutdown).await?;
    let height = stats.height;
    // A chain without genesis names no chain id (and refuses `/params`).
    let chain_id = stats.chain_id.ok_or_else(|| ClientError::BadAnswer {
        what: "/stats".to_owned(),
        reason: "the chain has no genesis yet".to_owned(),
    })?;
    let params: ChainParams = wait_for_gateway(&gateway, "/params", shutdown).await?;
    tracing::info!(%chain_id, height, gateway = gateway.url(), "connected");
    let mut builder = TxBuilder::new(chain_id);
    builder.fee = fee;
    Ok((gateway, builder, params))
}

/// The sandbox of a worker in `home`: compiled modules cached on disk, room
/// for the chain's task memory, `parallel` instances at once.
///
/// # Errors
/// When the sandbox cannot be built.
pub(crate) fn build_sandbox(
    home: &std::path::Path,
    params: &ChainParams,
    parallel: u32,
) -> Result<Arc<Sandbox>, WorkerError> {
    let mut sandbox_config = SandboxConfig {
        cache_dir: Some(home.join("compiled")),
        ..SandboxConfig::default()
    };
    let memory_bytes = task_memory_bytes(params);
    sandbox_config.engine.memory_bytes_max =
        sandbox_config.engine.memory_bytes_max.max(memory_bytes);
    sandbox_config.engine.instances_max = parallel.max(1);
    Ok(Arc::new(Sandbox::new(sandbox_config)?))
}

/// The module cache under `home`.
///
/// # Errors
/// When its directory cannot be prepared.
pub(crate) fn open_modules(home: &std::path::Path) -> Result<ModuleCache, WorkerError> {
    let dir = home.join("modules");
    ModuleCache::open(&dir).map_err(|source| WorkerError::Home {
        path: dir.display().to_string(),
        source,
    })
}

/// Queries `path` until the gateway answers (or shutdown): at startup the
/// gateway may still be coming up.
async fn wait_for_gateway<T: serde::de::DeserializeOwned + Send>(
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
