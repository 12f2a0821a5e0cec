//! Settled task-replicas per second through one real validator (CometBFT
//! and compute-abci on loopback, 300 ms blocks), against the state machine
//! alone on the same blocks, in the same run.
//!
//! ```sh
//! scripts/bench-settle.sh [--workers N] [--capacity N] [--tasks N] \
//!     [--tasks-per-job N] [--jobs-per-post N] [--assignments-per-block N]
//! ```
//!
//! The load is synthetic. One requester stores the `primes` module and
//! posts quorum jobs (3 replicas, quorum 2) of many one-byte tasks in
//! `PostJobs` batches, keeping about one and a half rounds of the workers'
//! slots posted and unsettled. `--workers` simulated workers, registered
//! with `--capacity` each, never run the module: each polls
//! `/worker/<hex>/assignments` once per block and answers with one
//! `CommitResults` for every task it holds in the commit phase and one
//! `RevealResults` for every task in the reveal phase, all with the same
//! fabricated result, so every task settles with its three replicas in
//! agreement. Each worker keeps its nonce locally (`broadcast_tx_sync`),
//! reads it again from `/nonce/<hex>` after a nonce refusal, and drops an
//! entry that a refused batch names.
//!
//! **What is counted.** A task-replica is one replica in the winning group
//! of a settled task: paid, counted in its worker's `agreed`, and listed in
//! the task's `task_settled` event. A task settled by its 3 replicas in
//! agreement is 3 task-replicas; one whose third replica missed its reveal
//! deadline settles with 2. The run counts the winners of every
//! `task_settled` event, checks that the workers' `agreed` sum to the same,
//! and reports missed deadlines, failed tasks and the replicas drawn (when
//! workers keep up, none are missed or failed and 3 are drawn per task).
//!
//! **The window** runs from the first block that settles a task to the
//! last: blocks `first..=last`, timed by CometBFT's block times, from the
//! time of block `first` (when the block before it was decided) to that of
//! block `last + 1` (when `last` was decided). The run ends when every
//! posted task has settled or failed.
//!
//! **The state machine alone.** After the run, the chain's blocks are read
//! back and replayed through `App` over RocksDB in process, with the same
//! heights, block hashes, times, proposer and votes (so the draws are the
//! same; every app hash is checked against CometBFT's headers), timing
//! FinalizeBlock + Commit of each block of the window.
//!
//! A measurement, not a test: it prints a markdown table for
//! docs/BENCHMARKS.md (progress goes to stderr). Every process it starts
//! listens on 127.0.0.1 only and is killed when the run ends, fails or is
//! interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use compute_abci::store::RocksStore;
use compute_abci::{App, BlockInput, Code, ConsensusInput, Vote};
use compute_proto::limits::{QUERY_PAGE_ENTRIES_MAX, TX_ENVELOPE_BYTES};
use compute_proto::tx::{refused_entry, MAX_BATCH_ENTRIES};
use compute_proto::views::{AssignmentsView, NonceView, ReputationView, StatsView};
use compute_proto::{
    commitment, pb, sha3_256, JobId, ModuleId, ReplicaStatus, SigningKey, TaskStatus, TxBuilder,
};
use compute_tests::{grouped, NetConfig, Node};
use prost::Message;
use serde_json::{json, Value};
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient, Paging};
use tokio::sync::watch;

/// CometBFT's `timeout_commit`: one block about every 300 ms.
const TIMEOUT_COMMIT_MS: u64 = 300;
/// The quorum policy of every job: 3 replicas, 2 must agree, no extras.
const REPLICAS: u32 = 3;
const QUORUM: u32 = 2;
/// Fuel a task may burn, and what every replica reports: each agreeing
/// replica is paid `FUEL_LIMIT x PRICE_PER_MFUEL / 10^6` = 1 credit.
const FUEL_LIMIT: u64 = 1_000_000;
const PRICE_PER_MFUEL: u64 = 1;
/// Blocks a job may run: far more than a run lasts.
const JOB_DEADLINE_BLOCKS: u64 = 5_000;
/// Credits of the requester (escrow is 3 credits a task) and of a worker.
const REQUESTER_BALANCE: u64 = 1 << 50;
const WORKER_BALANCE: u64 = 1_000;
/// Genesis `max_pending_txs_per_account`: a worker has at most two
/// transactions waiting a block, the requester a few `PostJobs`.
const PENDING_TXS_PER_ACCOUNT: u64 = 256;
/// Genesis `max_deadline_visits_per_block`: every draw writes a commit
/// deadline and every reveal opening a reveal deadline; visiting them all
/// when they fall due (20 blocks later) keeps that cleanup in the measured
/// blocks instead of leaving a growing queue behind.
const DEADLINE_VISITS_PER_BLOCK: u64 = 1 << 16;
/// The defaults of the parameters below which the run never sets lower.
const OPEN_JOBS_DEFAULT: u64 = 10_000;
const TASKS_PER_JOB_PARAM_DEFAULT: u64 = 1_024;
/// The requester keeps this many rounds of the workers' slots posted and
/// unsettled, in halves: 3 halves is one and a half rounds, so a settled
/// slot is drawn again at the end of its block.
const BACKLOG_HALF_ROUNDS: u64 = 3;
/// A worker sends an entry again when the chain still shows it undone this
/// many blocks after it was accepted (its transaction was lost).
const RESEND_AFTER_BLOCKS: u64 = 10;
/// Tries of one transaction: nonce refusals and named entries dropped.
const SEND_ATTEMPTS_MAX: usize = 8;
/// `PostJobs` the requester sends at most per block.
const POSTS_PER_ROUND_MAX: usize = 16;
/// Salt bytes of every commitment.
const SALT_BYTES: usize = 16;
/// How often the observer reads `/stats`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// One RPC call at most.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// A worker that sees no new block for this long looks anyway.
const TICK_WAIT: Duration = Duration::from_secs(5);
/// The run fails when no task settles for this long, or when it lasts longer.
const STALL_TIMEOUT: Duration = Duration::from_secs(90);
const RUN_TIMEOUT: Duration = Duration::from_secs(1_200);
/// Rounds of a worker or the requester: far more blocks than a run has.
const ROUNDS_MAX: u64 = 100_000;
/// Blocks of the best sustained stretch reported besides the window.
const SUSTAINED_BLOCKS: usize = 10;
/// Shuts the tasks down after the run.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

const _: () = assert!(QUERY_PAGE_ENTRIES_MAX as usize <= MAX_BATCH_ENTRIES);

/// A command-line option: `--name value`.
struct Opt {
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
}

const OPTIONS: [Opt; 6] = [
    // Each worker holds one RPC connection; CometBFT's `[rpc]
    // max_open_connections` is 900.
    Opt {
        name: "workers",
        default: 200,
        min: 1,
        max: 800,
    },
    // One assignments answer lists at most a page: with capacity within
    // it a worker always sees every task it holds.
    Opt {
        name: "capacity",
        default: 64,
        min: 1,
        max: QUERY_PAGE_ENTRIES_MAX as u64,
    },
    Opt {
        name: "tasks",
        default: 20_000,
        min: 1,
        max: 1_000_000,
    },
    Opt {
        name: "tasks-per-job",
        default: 1_000,
        min: 1,
        max: 10_000,
    },
    Opt {
        name: "jobs-per-post",
        default: 4,
        min: 1,
        max: MAX_BATCH_ENTRIES as u64,
    },
    Opt {
        name: "assignments-per-block",
        default: 8_192,
        min: 1,
        max: 1_000_000,
    },
];

const USAGE: &str = "usage: settle_throughput [--workers 200] [--capacity 64] [--tasks 20000] \
                     [--tasks-per-job 1000] [--jobs-per-post 4] [--assignments-per-block 8192]";

/// What one run is asked to do.
#[derive(Clone, Copy, Debug)]
struct Settings {
    workers: u64,
    capacity: u64,
    tasks: u64,
    tasks_per_job: u64,
    jobs_per_post: u64,
    assignments_per_block: u64,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Self> {
        let mut values: BTreeMap<&str, u64> = OPTIONS.iter().map(|o| (o.name, o.default)).collect();
        let mut rest = args.iter();
        for _ in 0..args.len() {
            let Some(flag) = rest.next() else { break };
            let option = flag
                .strip_prefix("--")
                .and_then(|name| OPTIONS.iter().find(|o| o.name == name))
                .with_context(|| format!("unknown option '{flag}'\n{USAGE}"))?;
            let text = rest
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
            let value: u64 = text
                .replace('_', "")
                .parse()
                .with_context(|| format!("{flag} '{text}' is not a whole number"))?;
            ensure!(
                (option.min..=option.max).contains(&value),
                "{flag} must be {} to {}",
                option.min,
                option.max
            );
            values.insert(option.name, value);
        }
        Ok(Self {
            workers: values["workers"],
            capacity: values["capacity"],
            tasks: values["tasks"],
            tasks_per_job: values["tasks-per-job"],
            jobs_per_post: values["jobs-per-post"],
            assignments_per_block: values["assignments-per-block"],
        })
    }

    fn jobs(&self) -> u64 {
        self.tasks.div_ceil(self.tasks_per_job)
    }

    fn slots(&self) -> u64 {
        self.workers * self.capacity
    }

    /// Tasks the requester keeps posted and unsettled.
    fn backlog_tasks(&self) -> u64 {
        (self.slots() * BACKLOG_HALF_ROUNDS / (2 * u64::from(REPLICAS))).max(1)
    }

    /// The genesis parameters the run sets; the rest keep their defaults.
    fn genesis_params(&self) -> Value {
        json!({
            "max_worker_capacity": self.capacity,
            "max_open_jobs": self.jobs().max(OPEN_JOBS_DEFAULT),
            "max_tasks_per_job": self.tasks_per_job.max(TASKS_PER_JOB_PARAM_DEFAULT),
            "max_assignments_per_block": self.assignments_per_block,
            "max_pending_txs_per_account": PENDING_TXS_PER_ACCOUNT,
            "max_deadline_visits_per_block": DEADLINE_VISITS_PER_BLOCK,
            "min_fee": 0,
        })
    }
}

/// What the load generator saw, shared by its tasks.
#[derive(Default)]
struct Counters {
    queries: AtomicU64,
    query_micros: AtomicU64,
    query_micros_max: AtomicU64,
    query_errors: AtomicU64,
    txs_accepted: AtomicU64,
    commit_entries: AtomicU64,
    reveal_entries: AtomicU64,
    resent_entries: AtomicU64,
    dropped_entries: AtomicU64,
    nonce_resyncs: AtomicU64,
    rpc_errors: AtomicU64,
    /// `broadcast_tx_sync` round trips (CheckTx's answer) and their time.
    broadcasts: AtomicU64,
    broadcast_micros: AtomicU64,
    broadcast_micros_max: AtomicU64,
    /// CheckTx refusals by code.
    refusals: Mutex<BTreeMap<u32, u64>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn add_time(&self, count: &AtomicU64, total: &AtomicU64, max: &AtomicU64, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        Self::add(count, 1);
        Self::add(total, micros);
        max.fetch_max(micros, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn refused(&self, code: u32) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *refusals.entry(code).or_default() += 1;
    }
}

/// What every task of the load generator shares.
struct Shared {
    rpc_url: String,
    builder: TxBuilder,
    max_tx_bytes: u64,
    counters: Counters,
}

/// The observer's news after each new height, and the stop signal.
#[derive(Clone, Copy, Debug, Default)]
struct Tick {
    settled: u64,
    failed: u64,
    stop: bool,
}

/// Waits for the next height; false when the run is over.
async fn next_tick(ticks: &mut watch::Receiver<Tick>) -> bool {
    match tokio::time::timeout(TICK_WAIT, ticks.changed()).await {
        Ok(Ok(())) => !ticks.borrow_and_update().stop,
        Ok(Err(_)) => false,
        Err(_) => !ticks.borrow().stop,
    }
}

/// How CheckTx answered one transaction.
enum Sent {
    Accepted,
    Refused { code: u32, log: String },
    Unsent,
}

/// One key sending transactions in nonce order over its own connection.
struct Sender {
    shared: Arc<Shared>,
    key: SigningKey,
    client: HttpClient,
    nonce: u64,
}

impl Sender {
    async fn new(shared: Arc<Shared>, key: SigningKey) -> Result<Self> {
        let client = HttpClient::new(shared.rpc_url.as_str()).context("a loopback URL")?;
        let mut sender = Self {
            shared,
            key,
            client,
            nonce: 0,
        };
        sender.resync().await?;
        Ok(sender)
    }

    /// Reads the nonce back: `/nonce`'s `pending_nonce` counts what the
    /// mempool holds of this key (`/account`'s does not).
    async fn resync(&mut self) -> Result<()> {
        let path = format!("/nonce/{}", self.key.account());
        let answer = tokio::time::timeout(
            RPC_TIMEOUT,
            self.client
                .abci_query(Some(path.clone()), Vec::new(), None, false),
        )
        .await
        .with_context(|| format!("{path} timed out"))??;
        ensure!(answer.code.is_ok(), "{path}: {}", answer.log);
        let view: NonceView = serde_json::from_slice(&answer.value)?;
        self.nonce = view.pending_nonce.max(view.nonce);
        Counters::add(&self.shared.counters.nonce_resyncs, 1);
        Ok(())
    }

    /// Signs `msg` with the local nonce and sends it; after a nonce
    /// refusal reads the nonce again and tries once more.
    async fn submit(&mut self, msg: &pb::tx_body::Msg) -> Result<Sent> {
        for _ in 0..2 {
            let tx = self.shared.builder.sign(&self.key, self.nonce, msg.clone());
            ensure!(
                tx.len() as u64 <= self.shared.max_tx_bytes,
                "a {}-byte transaction is above max_tx_bytes {}",
                tx.len(),
                self.shared.max_tx_bytes
            );
            let counters = &self.shared.counters;
            let started = Instant::now();
            let answer = tokio::time::timeout(RPC_TIMEOUT, self.client.broadcast_tx_sync(tx)).await;
            counters.add_time(
                &counters.broadcasts,
                &counters.broadcast_micros,
                &counters.broadcast_micros_max,
                started.elapsed(),
            );
            let answer = match answer {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => {
                    Counters::add(&counters.rpc_errors, 1);
                    return Ok(Sent::Unsent);
                }
            };
            let code = answer.code.value();
            if code == Code::Ok.value() {
                self.nonce += 1;
                Counters::add(&counters.txs_accepted, 1);
                return Ok(Sent::Accepted);
            }
            counters.refused(code);
            if code == Code::NonceReplayed.value() || code == Code::NonceGap.value() {
                self.resync().await?;
                continue;
            }
            return Ok(Sent::Refused {
                code,
                log: answer.log,
            });
        }
        Ok(Sent::Unsent)
    }

    /// Sends `entries` in batches of at most [`MAX_BATCH_ENTRIES`] entries
    /// that fit `max_tx_bytes`, each as one transaction made by `wrap`; an
    /// entry a refused batch names is dropped and the rest sent again.
    /// Returns the keys of the entries accepted.
    async fn send_entries<K: Copy, E: Message + Clone>(
        &mut self,
        entries: Vec<(K, E)>,
        wrap: fn(Vec<E>) -> pb::tx_body::Msg,
    ) -> Result<Vec<K>> {
        let mut accepted = Vec::new();
        for mut batch in batches(entries, self.shared.max_tx_bytes) {
            for _ in 0..SEND_ATTEMPTS_MAX {
                if batch.is_empty() {
                    break;
                }
                let msg = wrap(batch.iter().map(|(_, e)| e.clone()).collect());
                match self.submit(&msg).await? {
                    Sent::Accepted => {
                        accepted.extend(batch.iter().map(|(k, _)| *k));
                        break;
                    }
                    Sent::Unsent => break,
                    Sent::Refused { log, .. } => {
                        match refused_entry(&log).filter(|i| *i < batch.len()) {
                            Some(index) => {
                                batch.remove(index);
                                Counters::add(&self.shared.counters.dropped_entries, 1);
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        Ok(accepted)
    }
}

/// `entries` cut into batches of at most [`MAX_BATCH_ENTRIES`] whose
/// encoding, with the envelope, fits `max_tx_bytes`.
fn batches<K, E: Message>(entries: Vec<(K, E)>, max_tx_bytes: u64) -> Vec<Vec<(K, E)>> {
    let budget = max_tx_bytes.saturating_sub(TX_ENVELOPE_BYTES);
    let mut out: Vec<Vec<(K, E)>> = Vec::new();
    let mut bytes = 0u64;
    for (key, entry) in entries {
        // The entry, its field tag and a length of up to three bytes.
        let len = entry.encoded_len() as u64 + 4;
        let full = out
            .last()
            .is_none_or(|b| b.len() >= MAX_BATCH_ENTRIES || bytes + len > budget);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += len;
        out.last_mut()
            .expect("a batch was pushed")
            .push((key, entry));
    }
    out
}

fn commit_batch(entries: Vec<pb::CommitResult>) -> pb::tx_body::Msg {
    pb::tx_body::Msg::CommitResults(pb::CommitResults { entries })
}

fn reveal_batch(entries: Vec<pb::RevealResult>) -> pb::tx_body::Msg {
    pb::tx_body::Msg::RevealResults(pb::RevealResults { entries })
}

/// The result every replica reports, so that every quorum forms.
fn agreed_result_hash() -> [u8; 32] {
    sha3_256(b"settle_throughput: the agreed result")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Commit,
    Reveal,
}

/// One simulated worker: per new height, its assignments, then one
/// `CommitResults` and one `RevealResults`.
async fn run_worker(
    shared: Arc<Shared>,
    key: SigningKey,
    mut ticks: watch::Receiver<Tick>,
) -> Result<()> {
    let account = key.account();
    let path = format!("/worker/{account}/assignments");
    let salt = sha3_256(&account.0)[..SALT_BYTES].to_vec();
    let result_hash = agreed_result_hash();
    let mut sender = Sender::new(Arc::clone(&shared), key).await?;
    let counters = &shared.counters;
    // What was accepted for each task the worker holds, and at what height.
    let mut sent: BTreeMap<(JobId, u32), (Phase, u64)> = BTreeMap::new();
    for _ in 0..ROUNDS_MAX {
        if !next_tick(&mut ticks).await {
            return Ok(());
        }
        let started = Instant::now();
        let answer = tokio::time::timeout(
            RPC_TIMEOUT,
            sender
                .client
                .abci_query(Some(path.clone()), Vec::new(), None, false),
        )
        .await;
        counters.add_time(
            &counters.queries,
            &counters.query_micros,
            &counters.query_micros_max,
            started.elapsed(),
        );
        let answer = match answer {
            Ok(Ok(answer)) if answer.code.is_ok() => answer,
            _ => {
                Counters::add(&counters.query_errors, 1);
                continue;
            }
        };
        let height = answer.height.value();
        let view: AssignmentsView =
            serde_json::from_slice(&answer.value).with_context(|| format!("{path}: answer"))?;
        let mut commits = Vec::new();
        let mut reveals = Vec::new();
        for a in &view.assignments {
            let task = (a.job, a.task);
            let phase = match (a.task_status, a.replica_status) {
                (TaskStatus::Commit, ReplicaStatus::Assigned) => Phase::Commit,
                (TaskStatus::Reveal, ReplicaStatus::Committed) => Phase::Reveal,
                _ => continue,
            };
            if let Some((was, at)) = sent.get(&task) {
                if *was == phase {
                    if height < at + RESEND_AFTER_BLOCKS {
                        continue;
                    }
                    Counters::add(&counters.resent_entries, 1);
                }
            }
            match phase {
                Phase::Commit => commits.push((
                    task,
                    pb::CommitResult {
                        job_id: a.job.0.to_vec(),
                        task: a.task,
                        commitment: commitment(
                            &a.job.0,
                            a.task,
                            &account.0,
                            &result_hash,
                            FUEL_LIMIT,
                            &salt,
                        )
                        .to_vec(),
                    },
                )),
                Phase::Reveal => reveals.push((
                    task,
                    pb::RevealResult {
                        job_id: a.job.0.to_vec(),
                        task: a.task,
                        result_hash: result_hash.to_vec(),
                        fuel_used: FUEL_LIMIT,
                        salt: salt.clone(),
                        output: Vec::new(),
                    },
                )),
            }
        }
        // Forget the tasks the worker no longer holds: the map stays
        // within the worker's capacity.
        let held: BTreeSet<(JobId, u32)> =
            view.assignments.iter().map(|a| (a.job, a.task)).collect();
        sent.retain(|task, _| held.contains(task));
        let committed = sender.send_entries(commits, commit_batch).await?;
        Counters::add(&counters.commit_entries, committed.len() as u64);
        for task in committed {
            sent.insert(task, (Phase::Commit, height));
        }
        let revealed = sender.send_entries(reveals, reveal_batch).await?;
        Counters::add(&counters.reveal_entries, revealed.len() as u64);
        for task in revealed {
            sent.insert(task, (Phase::Reveal, height));
        }
    }
    Ok(())
}

/// The jobs of one `PostJobs` starting after `posted` tasks.
fn next_jobs(settings: &Settings, module: &ModuleId, posted: u64) -> Vec<pb::PostJob> {
    let mut jobs = Vec::new();
    let mut left = settings.tasks.saturating_sub(posted);
    for _ in 0..settings.jobs_per_post {
        if left == 0 {
            break;
        }
        let count = left.min(settings.tasks_per_job);
        left -= count;
        let tasks = (0..count)
            .map(|_| pb::TaskInput {
                source: Some(pb::task_input::Source::Inline(vec![7])),
                size: 1,
            })
            .collect();
        jobs.push(pb::PostJob {
            module_id: module.0.to_vec(),
            tasks,
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                    replicas: REPLICAS,
                    quorum: QUORUM,
                    max_replicas: REPLICAS,
                })),
            }),
            fuel_limit: FUEL_LIMIT,
            price_per_mfuel: PRICE_PER_MFUEL,
            deadline_blocks: JOB_DEADLINE_BLOCKS,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
        });
    }
    jobs
}

fn post_jobs(jobs: Vec<pb::PostJob>) -> pb::tx_body::Msg {
    pb::tx_body::Msg::PostJobs(pb::PostJobs { jobs })
}

/// The requester: per new height, `PostJobs` until the backlog of posted
/// and unsettled tasks is reached, until every task is posted.
async fn run_requester(
    shared: Arc<Shared>,
    key: SigningKey,
    settings: Settings,
    module: ModuleId,
    mut ticks: watch::Receiver<Tick>,
) -> Result<()> {
    let mut sender = Sender::new(shared, key).await?;
    let backlog = settings.backlog_tasks();
    let mut posted = 0u64;
    for _ in 0..ROUNDS_MAX {
        if posted >= settings.tasks || !next_tick(&mut ticks).await {
            return Ok(());
        }
        let tick = *ticks.borrow();
        for _ in 0..POSTS_PER_ROUND_MAX {
            let outstanding = posted.saturating_sub(tick.settled + tick.failed);
            if outstanding >= backlog || posted >= settings.tasks {
                break;
            }
            let jobs = next_jobs(&settings, &module, posted);
            let count: u64 = jobs.iter().map(|j| j.tasks.len() as u64).sum();
            match sender.submit(&post_jobs(jobs)).await? {
                Sent::Accepted => posted += count,
                Sent::Refused { code, log } => bail!("PostJobs refused: code {code}, {log}"),
                Sent::Unsent => break,
            }
        }
    }
    Ok(())
}

/// CPU time of the validator's two processes and of this program, in
/// clock ticks.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTicks {
    abci: u64,
    cometbft: u64,
    load: u64,
}

/// The processes whose CPU time is read.
struct CpuProbe {
    abci: u32,
    cometbft: u32,
}

impl CpuProbe {
    /// Finds the node's processes by their `--home`, inside the node's own
    /// temporary directory.
    fn find(home: &Path) -> Result<Self> {
        let abci_home = home.join("abci").display().to_string();
        let cometbft_home = home.join("cometbft").display().to_string();
        let (mut abci, mut cometbft) = (None, None);
        for entry in fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.contains(&abci_home.as_bytes()) {
                abci = Some(pid);
            } else if args.contains(&cometbft_home.as_bytes()) {
                cometbft = Some(pid);
            }
        }
        Ok(Self {
            abci: abci.context("compute-abci's process was not found")?,
            cometbft: cometbft.context("cometbft's process was not found")?,
        })
    }

    fn read(&self) -> CpuTicks {
        CpuTicks {
            abci: process_ticks(&self.abci.to_string()),
            cometbft: process_ticks(&self.cometbft.to_string()),
            load: process_ticks("self"),
        }
    }
}

/// User plus system time of a process, all its threads, in clock ticks.
fn process_ticks(pid: &str) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // "pid (comm) state ...": utime and stime are the 12th and 13th fields
    // after the command name.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second of `/proc`'s CPU times.
fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// One observation of the chain: a new height, with the CPU times and
/// the transactions waiting in CometBFT's mempool then.
#[derive(Clone, Copy, Debug)]
struct Sample {
    height: u64,
    at: Instant,
    cpu: CpuTicks,
    mempool_txs: Option<u64>,
}

/// CometBFT's `/num_unconfirmed_txs` (which the RPC client does not wrap):
/// the transactions in the mempool.
async fn mempool_txs(rpc_port: u16) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", rpc_port)).await?;
        stream
            .write_all(
                b"GET /num_unconfirmed_txs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<Vec<u8>, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(RPC_TIMEOUT, exchange)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(reply).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let value: Value = serde_json::from_str(body).ok()?;
    value["result"]["n_txs"].as_str()?.parse().ok()
}

/// A block as CometBFT recorded it, with what FinalizeBlock needs.
struct ChainBlock {
    height: u64,
    txs: Vec<Vec<u8>>,
    hash: Vec<u8>,
    proposer: Vec<u8>,
    time: tendermint::Time,
    /// The app hash after the block before (this block's header's).
    app_hash_before: Vec<u8>,
    votes: Vec<Vote>,
    signers: Vec<Vec<u8>>,
}

/// Genesis as the replay needs it.
struct ChainGenesis {
    chain_id: String,
    initial_height: i64,
    app_state: Vec<u8>,
    validators: Vec<[u8; 32]>,
}

/// Reads genesis and blocks `1..=last` back from the node.
async fn fetch_chain(client: &HttpClient, last: u64) -> Result<(ChainGenesis, Vec<ChainBlock>)> {
    let genesis: tendermint::Genesis<Value> = client.genesis().await.context("genesis")?;
    ensure!(
        genesis.initial_height == 1,
        "the replay expects an initial height of 1"
    );
    let validators: Vec<[u8; 32]> = genesis
        .validators
        .iter()
        .filter_map(|v| v.pub_key.ed25519())
        .filter_map(|k| <[u8; 32]>::try_from(k.as_bytes()).ok())
        .collect();
    let set = client
        .validators(Height::from(1u32), Paging::All)
        .await
        .context("validators at height 1")?;
    let addresses: Vec<Vec<u8>> = set
        .validators
        .iter()
        .map(|v| v.address.as_bytes().to_vec())
        .collect();
    let mut blocks: Vec<ChainBlock> = Vec::new();
    let mut set_hash = None;
    for height in 1..=last {
        let block = client
            .block(Height::try_from(height)?)
            .await
            .with_context(|| format!("block {height}"))?
            .block;
        // One validator that never changes: its votes pair with one set.
        let hash = block.header.validators_hash;
        ensure!(
            *set_hash.get_or_insert(hash) == hash,
            "the validator set changed at height {height}; the replay assumes one set"
        );
        let mut votes = Vec::new();
        let mut signers = Vec::new();
        if let Some(commit) = &block.last_commit {
            ensure!(
                commit.signatures.len() == addresses.len(),
                "the commit in block {height} has {} signatures for {} validators",
                commit.signatures.len(),
                addresses.len()
            );
            for (address, sig) in addresses.iter().zip(&commit.signatures) {
                if sig.is_commit() {
                    signers.push(address.clone());
                }
                votes.push(Vote {
                    address: address.clone(),
                    missed: sig.is_absent(),
                });
            }
        }
        ensure!(
            block.evidence.iter().next().is_none(),
            "block {height} holds evidence; the replay passes none"
        );
        blocks.push(ChainBlock {
            height,
            hash: block.header.hash().as_bytes().to_vec(),
            proposer: block.header.proposer_address.as_bytes().to_vec(),
            time: block.header.time,
            app_hash_before: block.header.app_hash.as_bytes().to_vec(),
            txs: block.data,
            votes,
            signers,
        });
    }
    Ok((
        ChainGenesis {
            chain_id: genesis.chain_id.to_string(),
            initial_height: genesis.initial_height,
            app_state: serde_json::to_vec(&genesis.app_state)?,
            validators,
        },
        blocks,
    ))
}

/// What replaying one block gave.
#[derive(Clone, Copy, Debug, Default)]
struct Replayed {
    finalize: Duration,
    commit: Duration,
    txs: u64,
    tx_bytes: u64,
    settled: u64,
    /// Replicas in the winning groups of the tasks settled.
    replicas: u64,
    /// Replicas that let a deadline pass.
    missed: u64,
    committed: u64,
    revealed: u64,
    assigned: u64,
}

/// Replays every block but the last (whose successor's header is not
/// read) through a fresh `App` over RocksDB, checking each app hash
/// against CometBFT's; returns one entry per block, in height order.
fn replay(
    genesis: &ChainGenesis,
    blocks: &[ChainBlock],
    cancel: &AtomicBool,
) -> Result<Vec<Replayed>> {
    let dir = tempfile::Builder::new()
        .prefix("settle-replay-")
        .tempdir()?;
    let store = RocksStore::open(&dir.path().join("state.db"))?;
    let mut app = App::new(store).with_module_cache(dir.path().join("compiled"));
    let genesis_hash = app
        .init_chain(
            &genesis.chain_id,
            genesis.initial_height,
            &genesis.app_state,
            &genesis.validators,
        )
        .map_err(|e| anyhow!("the replay refused genesis: {e}"))?;
    let first = blocks.first().context("no blocks to replay")?;
    ensure!(
        first.app_hash_before == genesis_hash,
        "block 1 carries another app hash than the replayed genesis"
    );
    let mut out = Vec::with_capacity(blocks.len());
    for pair in blocks.windows(2) {
        let (block, next) = (&pair[0], &pair[1]);
        ensure!(
            !cancel.load(Ordering::Relaxed),
            "interrupted during the replay"
        );
        let consensus = ConsensusInput {
            votes: block.votes.clone(),
            misbehavior: Vec::new(),
        };
        let started = Instant::now();
        let output = app.finalize_block_with(
            BlockInput {
                height: i64::try_from(block.height)?,
                proposer_address: &block.proposer,
                signer_addresses: &block.signers,
                txs: &block.txs,
                hash: &block.hash,
                time_seconds: block.time.unix_timestamp(),
            },
            &consensus,
        );
        let finalized = Instant::now();
        app.commit();
        let committed = Instant::now();
        ensure!(
            output.app_hash.as_slice() == next.app_hash_before.as_slice(),
            "app hash after height {}: the replay computed {}, CometBFT recorded {}",
            block.height,
            hex::encode(output.app_hash),
            hex::encode(&next.app_hash_before)
        );
        let events: Vec<&compute_abci::events::Event> = output
            .tx_results
            .iter()
            .flat_map(|r| &r.events)
            .chain(&output.events)
            .collect();
        let count = |kind: &str| events.iter().filter(|e| e.r#type == kind).count() as u64;
        // A settled task's winners, as its event lists them.
        let winners = events
            .iter()
            .filter(|e| e.r#type == "task_settled")
            .flat_map(|e| &e.attributes)
            .filter(|a| a.key == "workers")
            .map(|a| a.value.split(',').filter(|w| !w.is_empty()).count() as u64)
            .sum();
        out.push(Replayed {
            finalize: finalized - started,
            commit: committed - finalized,
            txs: block.txs.len() as u64,
            tx_bytes: block.txs.iter().map(|t| t.len() as u64).sum(),
            settled: count("task_settled"),
            replicas: winners,
            missed: count("deadline_missed"),
            committed: count("task_committed"),
            revealed: count("task_revealed"),
            assigned: count("task_assigned"),
        });
    }
    Ok(out)
}

/// Sets the flag when dropped: an interrupted run stops its replay.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The load average, as `/proc/loadavg` gives it.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Queries `path` and parses its JSON answer.
async fn query<T: serde::de::DeserializeOwned>(client: &HttpClient, path: &str) -> Result<T> {
    let answer = tokio::time::timeout(
        RPC_TIMEOUT,
        client.abci_query(Some(path.to_owned()), Vec::new(), None, false),
    )
    .await
    .with_context(|| format!("{path} timed out"))?
    .with_context(|| format!("query {path}"))?;
    ensure!(
        answer.code.is_ok(),
        "{path}: code {}, {}",
        answer.code.value(),
        answer.log
    );
    serde_json::from_slice(&answer.value).with_context(|| format!("{path}: answer"))
}

/// Sends one transaction and requires CheckTx to accept it.
async fn send_checked(client: &HttpClient, tx: Vec<u8>, what: &str) -> Result<()> {
    let answer = tokio::time::timeout(RPC_TIMEOUT, client.broadcast_tx_sync(tx))
        .await
        .with_context(|| format!("{what}: timed out"))?
        .with_context(|| format!("{what}: broadcast"))?;
    ensure!(
        answer.code.is_ok(),
        "{what}: code {}, {}",
        answer.code.value(),
        answer.log
    );
    Ok(())
}

/// Polls `/stats` until `done` holds, at most `timeout` long.
async fn wait_stats(
    client: &HttpClient,
    what: &str,
    timeout: Duration,
    done: impl Fn(&StatsView) -> bool,
) -> Result<StatsView> {
    let deadline = Instant::now() + timeout;
    let attempts = timeout.as_millis() / POLL_INTERVAL.as_millis() + 1;
    for _ in 0..attempts {
        let stats: StatsView = query(client, "/stats").await?;
        if done(&stats) {
            return Ok(stats);
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("{what}: not reached within {timeout:?}")
}

/// The figures of one run, before any float.
struct Figures {
    settings: Settings,
    load_before: String,
    params: Value,
    /// First and last settling heights.
    window: (u64, u64),
    window_time: Duration,
    best_sustained: Option<(u64, Duration)>,
    tasks_settled: u64,
    tasks_failed: u64,
    replicas_settled: u64,
    replicas_agreed: u64,
    assignments: u64,
    txs_failed: u64,
    replayed: Vec<Replayed>,
    cpu: Option<(Duration, CpuTicks)>,
    ticks_per_s: u64,
    replay_blocks: u64,
    phases: Option<Phases>,
    /// Transactions in the mempool at the new heights of the window: mean
    /// and most.
    mempool: Option<(u64, u64)>,
}

/// Where the live validator's blocks of the window spent their time, by
/// CometBFT's log, from the block before committed:
/// - `after_commit`: until the next height starts (CometBFT publishes the
///   block's events to its event bus and indexer, then waits out what is
///   left of `timeout_commit`);
/// - `propose`: until the block is decided (PrepareProposal,
///   ProcessProposal, the votes);
/// - `finalize`: FinalizeBlock, with its ABCI round trip;
/// - `commit`: CometBFT saving the block's results, the application's
///   Commit, the mempool's update and recheck.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    after_commit: Duration,
    propose: Duration,
    finalize: Duration,
    commit: Duration,
}

/// The time of a CometBFT log line `I[2026-12-03|20:16:31.009] message ...`
/// and its `height=`, when the line is `message` and contains `with`.
fn log_event(line: &str, message: &str, with: &str) -> Option<(tendermint::Time, u64)> {
    let rest = line.get(1..)?.strip_prefix('[')?;
    let (stamp, text) = rest.split_once("] ")?;
    if !text.starts_with(message) || !text.contains(with) {
        return None;
    }
    let (date, time) = stamp.split_once('|')?;
    let at = tendermint::Time::parse_from_rfc3339(&format!("{date}T{time}Z")).ok()?;
    let height = text
        .split_whitespace()
        .find_map(|field| field.strip_prefix("height="))?
        .parse()
        .ok()?;
    Some((at, height))
}

/// Sums the phases of heights `first..=last` from CometBFT's log; `None`
/// when a line is missing (another log format).
fn live_phases(log: &str, (first, last): (u64, u64)) -> Option<Phases> {
    let times = |message: &str, with: &str| -> BTreeMap<u64, tendermint::Time> {
        let mut out = BTreeMap::new();
        for (at, height) in log.lines().filter_map(|l| log_event(l, message, with)) {
            out.entry(height).or_insert(at);
        }
        out
    };
    let new_height = times("Timed out", "step=RoundStepNewHeight");
    let deciding = times("finalizing commit of block", "");
    let finalized = times("finalized block", "");
    let committed = times("committed state", "");
    let mut phases = Phases::default();
    for height in first..=last {
        let start = *committed.get(&height.checked_sub(1)?)?;
        let begun = *new_height.get(&height)?;
        let decided = *deciding.get(&height)?;
        let done = *finalized.get(&height)?;
        let end = *committed.get(&height)?;
        phases.after_commit += begun.duration_since(start).ok()?;
        phases.propose += decided.duration_since(begun).ok()?;
        phases.finalize += done.duration_since(decided).ok()?;
        phases.commit += end.duration_since(done).ok()?;
    }
    Some(phases)
}

/// Starts the chain, plays the requester and the workers, measures, and
/// replays; returns the figures.
async fn measure(settings: Settings, cancel: Arc<AtomicBool>) -> Result<Figures> {
    let load_before = load_average();
    eprintln!("load average before the run: {load_before}");
    let requester = SigningKey::from_seed([11; 32]);
    let workers: Vec<SigningKey> = (0..settings.workers)
        .map(|i| {
            let mut seed = [23u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_seed(seed)
        })
        .collect();
    let mut config = NetConfig::funded(&[&requester], REQUESTER_BALANCE);
    config
        .balances
        .extend(workers.iter().map(|k| (k.account(), WORKER_BALANCE)));
    config.timeout_commit_ms = TIMEOUT_COMMIT_MS;
    config.params = settings.genesis_params();
    let builder = TxBuilder::new(config.chain_id.clone());
    let node = Node::start(config).await?;
    let client = node.client();
    let params: Value = query(&client, "/params").await?;
    let max_tx_bytes = params["max_tx_bytes"]
        .as_u64()
        .context("no max_tx_bytes in /params")?;
    let module = ModuleId::of(compute_jobs::PRIMES_WASM);
    let probe = next_jobs(&settings, &module, 0);
    let probe_len = builder.sign(&requester, 0, post_jobs(probe)).len() as u64;
    ensure!(
        probe_len <= max_tx_bytes,
        "a PostJobs of {} jobs of {} tasks is {probe_len} bytes, above max_tx_bytes \
         {max_tx_bytes}: post fewer jobs per PostJobs or fewer tasks per job",
        settings.jobs_per_post,
        settings.tasks_per_job
    );

    eprintln!(
        "registering {} workers of capacity {}, storing the module",
        settings.workers, settings.capacity
    );
    let store = pb::tx_body::Msg::StoreModule(pb::StoreModule {
        wasm: compute_jobs::PRIMES_WASM.to_vec(),
    });
    send_checked(&client, builder.sign(&requester, 0, store), "StoreModule").await?;
    for key in &workers {
        let register = pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
            capacity: u32::try_from(settings.capacity)?,
            stake: 0,
        });
        send_checked(&client, builder.sign(key, 0, register), "RegisterWorker").await?;
    }
    wait_stats(
        &client,
        "every worker registered and the module stored",
        Duration::from_secs(60),
        |s| s.workers == settings.workers && s.modules == 1,
    )
    .await?;

    let shared = Arc::new(Shared {
        rpc_url: node.rpc_url(),
        builder,
        max_tx_bytes,
        counters: Counters::default(),
    });
    let (tick_tx, tick_rx) = watch::channel(Tick::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(run_requester(
        Arc::clone(&shared),
        requester.clone(),
        settings,
        module,
        tick_rx.clone(),
    ));
    for key in &workers {
        tasks.spawn(run_worker(
            Arc::clone(&shared),
            key.clone(),
            tick_rx.clone(),
        ));
    }
    let probe = CpuProbe::find(node.home())?;
    eprintln!(
        "{} tasks in jobs of {}, {} jobs per PostJobs, a backlog of {} tasks",
        settings.tasks,
        settings.tasks_per_job,
        settings.jobs_per_post,
        settings.backlog_tasks()
    );

    // The observer: a sample at every new height, news to every task.
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_settled = 0u64;
    let mut last_progress = Instant::now();
    let polls_max = RUN_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 1;
    let mut finished = None;
    for _ in 0..polls_max {
        while let Some(done) = tasks.try_join_next() {
            done.context("a load task panicked")??;
        }
        let stats: StatsView = query(&client, "/stats").await?;
        let height = u64::try_from(stats.height)?;
        if samples.last().is_none_or(|s| s.height < height) {
            samples.push(Sample {
                height,
                at: Instant::now(),
                cpu: probe.read(),
                mempool_txs: mempool_txs(node.rpc_port).await,
            });
            let _ = tick_tx.send(Tick {
                settled: stats.tasks_settled,
                failed: stats.tasks_failed,
                stop: false,
            });
        }
        if stats.tasks_settled > last_settled {
            if last_settled / 5_000 != stats.tasks_settled / 5_000 {
                eprintln!(
                    "{:>6.1} s: height {height}, {} of {} tasks settled",
                    started.elapsed().as_secs_f64(),
                    stats.tasks_settled,
                    settings.tasks
                );
            }
            last_settled = stats.tasks_settled;
            last_progress = Instant::now();
        }
        if stats.tasks_settled + stats.tasks_failed >= settings.tasks {
            finished = Some(stats);
            break;
        }
        ensure!(
            last_progress.elapsed() < STALL_TIMEOUT,
            "no task settled for {STALL_TIMEOUT:?} ({} of {} settled, {} failed, height {height})\n\
             --- compute-abci ---\n{}",
            stats.tasks_settled,
            settings.tasks,
            stats.tasks_failed,
            node.log_tail("compute-abci")
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let stats = finished.with_context(|| format!("the run outlasted {RUN_TIMEOUT:?}"))?;
    let _ = tick_tx.send(Tick {
        stop: true,
        ..Tick::default()
    });
    let joined = tokio::time::timeout(JOIN_TIMEOUT, async {
        while let Some(done) = tasks.join_next().await {
            done.context("a load task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => {
            tasks.abort_all();
            bail!("the load tasks did not stop within {JOIN_TIMEOUT:?}");
        }
    }
    eprintln!(
        "all settled at height {} after {:.1} s; reading the chain back",
        stats.height,
        started.elapsed().as_secs_f64()
    );

    let mut replicas_agreed = 0u64;
    for key in &workers {
        let view: ReputationView =
            query(&client, &format!("/reputation/{}", key.account())).await?;
        replicas_agreed += view.agreed;
    }
    let end = u64::try_from(stats.height)?;
    // The last settling block's successor carries its app hash and time.
    let latest = node
        .wait_for_height(end + 2, Duration::from_secs(60))
        .await?;
    let (genesis, blocks) = fetch_chain(&client, latest).await?;
    let cometbft_log = fs::read_to_string(node.home().join("cometbft.log")).unwrap_or_default();
    drop(node);

    eprintln!(
        "replaying {} blocks through the state machine",
        blocks.len() - 1
    );
    let replayed = tokio::task::spawn_blocking(move || {
        replay(&genesis, &blocks, &cancel).map(|r| (r, blocks))
    })
    .await
    .context("the replay panicked")??;
    let (replayed, blocks) = replayed;

    let first = replayed
        .iter()
        .position(|r| r.settled > 0)
        .context("no block settled a task")?;
    let last = replayed
        .iter()
        .rposition(|r| r.settled > 0)
        .context("no block settled a task")?;
    // Block index i is height i + 1; the window runs from the time of the
    // first settling block to that of the block after the last.
    let time_of = |index: usize| blocks[index].time;
    let window_time = time_of(last + 1)
        .duration_since(time_of(first))
        .context("block times go backwards")?;
    let in_window: Vec<Replayed> = replayed[first..=last].to_vec();
    let replicas_settled = in_window.iter().map(|r| r.replicas).sum::<u64>();
    let best_sustained = (first..=last.saturating_sub(SUSTAINED_BLOCKS - 1))
        .filter_map(|i| {
            let settled: u64 = replayed[i..i + SUSTAINED_BLOCKS]
                .iter()
                .map(|r| r.replicas)
                .sum();
            let time = time_of(i + SUSTAINED_BLOCKS)
                .duration_since(time_of(i))
                .ok()?;
            Some((settled, time))
        })
        .max_by(|a, b| {
            // a.0 / a.1 against b.0 / b.1, in integers.
            (u128::from(a.0) * b.1.as_nanos()).cmp(&(u128::from(b.0) * a.1.as_nanos()))
        });
    let window = (first as u64 + 1, last as u64 + 1);
    let before = samples.iter().rev().find(|s| s.height < window.0);
    let after = samples.iter().find(|s| s.height >= window.1);
    let cpu = before.zip(after).map(|(a, b)| {
        (
            b.at - a.at,
            CpuTicks {
                abci: b.cpu.abci.saturating_sub(a.cpu.abci),
                cometbft: b.cpu.cometbft.saturating_sub(a.cpu.cometbft),
                load: b.cpu.load.saturating_sub(a.cpu.load),
            },
        )
    });
    let phases = live_phases(&cometbft_log, window);
    let waiting: Vec<u64> = samples
        .iter()
        .filter(|s| (window.0..=window.1).contains(&s.height))
        .filter_map(|s| s.mempool_txs)
        .collect();
    let mempool = (!waiting.is_empty()).then(|| {
        (
            waiting.iter().sum::<u64>() / waiting.len() as u64,
            waiting.iter().copied().max().unwrap_or(0),
        )
    });
    let figures = Figures {
        settings,
        load_before,
        params,
        window,
        window_time,
        best_sustained,
        tasks_settled: stats.tasks_settled,
        tasks_failed: stats.tasks_failed,
        replicas_settled,
        replicas_agreed,
        assignments: stats.assignments,
        txs_failed: stats.txs_failed,
        replay_blocks: replayed.len() as u64,
        replayed: in_window,
        cpu,
        ticks_per_s: clock_ticks_per_s(),
        phases,
        mempool,
    };
    print_figures(&figures, &shared.counters)?;
    Ok(figures)
}

fn print_figures(f: &Figures, counters: &Counters) -> Result<()> {
    let s = &f.settings;
    ensure!(
        f.replicas_settled == f.replicas_agreed,
        "the settling blocks count {} task-replicas, the workers' `agreed` {}",
        f.replicas_settled,
        f.replicas_agreed
    );
    let blocks = f.replayed.len() as u64;
    let secs = f.window_time.as_secs_f64();
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let chain_rate = per_s(f.replicas_settled, f.window_time);
    let finalize: Duration = f.replayed.iter().map(|r| r.finalize).sum();
    let commit: Duration = f.replayed.iter().map(|r| r.commit).sum();
    let machine = finalize + commit;
    let machine_rate = per_s(f.replicas_settled, machine);
    let sum = |g: fn(&Replayed) -> u64| f.replayed.iter().map(g).sum::<u64>();
    let max = |g: fn(&Replayed) -> u64| f.replayed.iter().map(g).max().unwrap_or(0);
    let mean = |g: fn(&Replayed) -> u64| sum(g) as f64 / blocks as f64;
    let slowest = f
        .replayed
        .iter()
        .map(|r| r.finalize + r.commit)
        .max()
        .unwrap_or_default();
    let param = |name: &str| f.params[name].to_string();
    let refusals = counters
        .refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(code, n)| {
            let name = Code::from_u32(*code).map_or("unknown", |c| c.name());
            format!("{n} x {code} {name}")
        })
        .collect::<Vec<_>>();
    let queries = Counters::get(&counters.queries);

    println!(
        "{} workers x capacity {} ({} slots), {} tasks in jobs of {}, {} jobs per PostJobs, \
         quorum {QUORUM} of {REPLICAS}; {TIMEOUT_COMMIT_MS} ms blocks, load average before \
         {}",
        s.workers,
        s.capacity,
        s.slots(),
        s.tasks,
        s.tasks_per_job,
        s.jobs_per_post,
        f.load_before
    );
    println!();
    println!("| what | figure |");
    println!("| --- | --- |");
    println!(
        "| **settled task-replicas/s through the validator** | **{}** ({} task-replicas of {} \
         tasks in {:.2} s, blocks {}..={}) |",
        grouped(chain_rate),
        f.replicas_settled,
        f.tasks_settled,
        secs,
        f.window.0,
        f.window.1
    );
    if let Some((replicas, time)) = f.best_sustained {
        println!(
            "| best {SUSTAINED_BLOCKS} consecutive blocks | {} task-replicas/s |",
            grouped(per_s(replicas, time))
        );
    }
    println!(
        "| state machine alone (FinalizeBlock + Commit, RocksDB, same blocks) | {} \
         task-replicas/s ({:.0} ms + {:.0} ms over {blocks} blocks; slowest block {:.0} ms) |",
        grouped(machine_rate),
        finalize.as_secs_f64() * 1e3,
        commit.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    println!(
        "| validator / state machine alone | {:.2}x |",
        chain_rate / machine_rate
    );
    println!(
        "| block interval in the window | {:.0} ms (state machine {:.0} ms of it) |",
        secs * 1e3 / blocks as f64,
        machine.as_secs_f64() * 1e3 / blocks as f64
    );
    if let Some(p) = f.phases {
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / blocks as f64;
        println!(
            "| live block, by CometBFT's log (mean ms) | {:.0} after the last commit (events, \
             new height), {:.0} proposal and votes, {:.0} FinalizeBlock, {:.0} Commit (results \
             saved, application Commit, mempool recheck) |",
            ms(p.after_commit),
            ms(p.propose),
            ms(p.finalize),
            ms(p.commit)
        );
    }
    println!(
        "| per block: transactions, bytes | mean {:.0}, max {}; mean {}, max {} |",
        mean(|r| r.txs),
        max(|r| r.txs),
        grouped(mean(|r| r.tx_bytes)),
        grouped(max(|r| r.tx_bytes) as f64)
    );
    println!(
        "| per block: commits, reveals, draws, settled tasks | mean {}, {}, {}, {}; max {}, {}, \
         {} (cap {}), {}; {} missed deadlines in the window |",
        grouped(mean(|r| r.committed)),
        grouped(mean(|r| r.revealed)),
        grouped(mean(|r| r.assigned)),
        grouped(mean(|r| r.settled)),
        max(|r| r.committed),
        max(|r| r.revealed),
        max(|r| r.assigned),
        s.assignments_per_block * u64::from(REPLICAS),
        max(|r| r.settled),
        sum(|r| r.missed)
    );
    if let Some((wall, cpu)) = f.cpu {
        let share = |ticks: u64| 100.0 * ticks as f64 / f.ticks_per_s as f64 / wall.as_secs_f64();
        println!(
            "| CPU in the window (% of one core; 2 cores = 200%) | compute-abci {:.0}%, cometbft \
             {:.0}%, load generator {:.0}% |",
            share(cpu.abci),
            share(cpu.cometbft),
            share(cpu.load)
        );
    }
    let mean_ms =
        |total: &AtomicU64, count: u64| Counters::get(total) as f64 / count.max(1) as f64 / 1e3;
    let broadcasts = Counters::get(&counters.broadcasts);
    println!(
        "| intake | CheckTx round trip (broadcast_tx_sync) mean {:.1} ms, max {:.0} ms; mempool \
         at each new height {} |",
        mean_ms(&counters.broadcast_micros, broadcasts),
        Counters::get(&counters.broadcast_micros_max) as f64 / 1e3,
        f.mempool
            .map_or("unknown".to_owned(), |(mean, max)| format!(
                "mean {mean}, max {max} transactions"
            ))
    );
    println!(
        "| load generator | {} assignment queries (mean {:.1} ms, max {:.0} ms), {} \
         transactions accepted, {} commit and {} reveal entries, {} resent, {} dropped, {} \
         nonce reads, {} RPC errors |",
        grouped(queries as f64),
        mean_ms(&counters.query_micros, queries),
        Counters::get(&counters.query_micros_max) as f64 / 1e3,
        grouped(Counters::get(&counters.txs_accepted) as f64),
        grouped(Counters::get(&counters.commit_entries) as f64),
        grouped(Counters::get(&counters.reveal_entries) as f64),
        Counters::get(&counters.resent_entries),
        Counters::get(&counters.dropped_entries),
        Counters::get(&counters.nonce_resyncs),
        Counters::get(&counters.rpc_errors) + Counters::get(&counters.query_errors)
    );
    println!(
        "| CheckTx refusals | {} |",
        if refusals.is_empty() {
            "none".to_owned()
        } else {
            refusals.join(", ")
        }
    );
    println!(
        "| checks | {} tasks settled, {} failed; {} replicas drawn for {} tasks; {} \
         transactions failed in blocks; every app hash of {} blocks replayed equal |",
        f.tasks_settled, f.tasks_failed, f.assignments, s.tasks, f.txs_failed, f.replay_blocks
    );
    println!(
        "| genesis parameters | max_workers {}, max_worker_capacity {}, max_open_jobs {}, \
         max_tasks_per_job {}, max_assignments_per_block {}, max_pending_txs_per_account {}, \
         max_deadline_visits_per_block {}, commit/reveal_window_blocks {}/{}, min_fee {}, \
         max_tx_bytes {} |",
        param("max_workers"),
        param("max_worker_capacity"),
        param("max_open_jobs"),
        param("max_tasks_per_job"),
        param("max_assignments_per_block"),
        param("max_pending_txs_per_account"),
        param("max_deadline_visits_per_block"),
        param("commit_window_blocks"),
        param("reveal_window_blocks"),
        param("min_fee"),
        param("max_tx_bytes")
    );
    println!();
    println!(
        "A task-replica is one replica in a settled task's winning group (paid, counted in its \
         worker's `agreed`, listed in its `task_settled` event): {} here, {} per task settled \
         (3 when no replica missed a deadline), which the workers' `agreed` match. The window \
         runs from the first block that settles a task to the last, by CometBFT's block times.",
        f.replicas_settled,
        f.replicas_settled as f64 / f.tasks_settled.max(1) as f64
    );
    Ok(())
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let settings = Settings::parse(&args)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancel));
    measure(settings, cancel).await.map(|_| ())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Interrupted, the run's future is dropped, and with it the node, whose
    // drop kills both processes, and the flag that stops a replay.
    compute_tests::until_signal(run()).await
}
