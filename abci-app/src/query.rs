//! Query paths served through CometBFT's `/abci_query`. Answers are JSON.
//!
//! | path | answer |
//! | --- | --- |
//! | `/account/<hex>` | `{"address", "balance", "nonce"}` (zero for a key never seen) |
//! | `/nonce/<hex>` | `{"address", "nonce", "pending_nonce"}`: the committed next nonce and the one that counts this node's mempool ([`PendingNonces`]) |
//! | `/params` | every chain parameter |
//! | `/stats` | height, app hash, chain id and chain-wide counters |
//! | `/module/<id>[?code=true]` | a module's metadata (and its bytes in base64) |
//! | `/worker/<hex>` | a registered worker |
//! | `/job/<id>[?tasks=false][&after=&limit=]` | a job's terms, status, escrow, progress counts, and its tasks (all, a page, or none) with their replicas, commitments, reveals and completion records |
//! | `/jobs?status=&master=&limit=&after=` | jobs in id order (or a requester's), a page at a time |
//! | `/workers?limit=&after=` | registered workers in key order, with their reputation and score |
//! | `/worker/<hex>/assignments` | the tasks a worker holds now and what each waits for |
//! | `/completions?job=<id>` or `?worker=<hex>` (`&limit=&after=`) | completion records |
//! | `/reputation/<hex>` | a key's reputation counters and score |
//! | `/validators?limit=&after=` | the validators the chain manages (stake-backed or punished), in address order |
//! | `/validator/<hex key or address>` | one validator: stake, unbondings, power, jail, misses |

use compute_proto::views::{
    AccountView, AssignmentView, AssignmentsView, Base64, CompletionView, CompletionsPage,
    DisputeView, InputView, JobSummary, JobView, JobsPage, ModuleView, NonceView, PolicyView,
    ProgressView, ReplicaView, ReputationView, StatsView, TaskView, WorkerListing, WorkerView,
    WorkersPage,
};
use compute_proto::{pb, AccountId, Hash32, JobId, JobStatus, ModuleId, ReplicaStatus, TaskStatus};
use serde::Serialize;

use crate::apphash::LastCommit;
use crate::codes::Code;
use crate::state::{keys, StateRead};
use crate::store::KvRead;

/// The paths this node serves, for error messages.
const KNOWN_PATHS: &str = "/account/<hex>, /nonce/<hex>, /params, /stats, /module/<id>[?code=true], /worker/<hex>, /worker/<hex>/assignments, /workers?limit=&after=, /job/<id>, /jobs?status=&master=&limit=&after=, /completions?job=<id>|worker=<hex>, /reputation/<hex>, /validators?limit=&after=, /validator/<hex key or address>";

/// Entries a page holds when the query names no `limit`.
pub const DEFAULT_PAGE: usize = 50;
/// Entries a page holds at most.
pub const MAX_PAGE: usize = compute_proto::limits::QUERY_PAGE_ENTRIES_MAX as usize;
/// Records a filtered listing reads at most to fill one page.
const MAX_SCAN: usize = 10_000;

/// A failed query: its code and a message naming the fix.
pub type QueryError = (Code, String);

/// The next nonce of every account that has transactions in this node's
/// mempool, as CheckTx counted them since the last commit: what `/nonce`
/// answers as `pending_nonce`.
///
/// The state machine notes each transaction CheckTx accepts and clears the
/// set at Commit (CometBFT then rechecks what stays in the mempool, which
/// notes it again). It has a lock of its own, held for one map operation
/// and never across I/O, so that `/nonce` answers without waiting for the
/// state machine, which a block holds for its whole execution. Its entries
/// are bounded by the mempool's transactions.
#[derive(Debug, Default)]
pub struct PendingNonces {
    next: std::sync::Mutex<std::collections::HashMap<AccountId, u64>>,
}

impl PendingNonces {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<AccountId, u64>> {
        // A panic while holding it left the map whole: every operation on
        // it is a single insert, read or clear.
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// CheckTx accepted a transaction of `account`: its next one carries
    /// `next` (the highest noted is kept).
    pub fn note(&self, account: AccountId, next: u64) {
        let mut map = self.map();
        let entry = map.entry(account).or_insert(next);
        *entry = (*entry).max(next);
    }

    /// The next nonce of `account` counting the mempool, if it has a
    /// transaction there.
    pub fn get(&self, account: &AccountId) -> Option<u64> {
        self.map().get(account).copied()
    }

    /// Forgets every account (at Commit, when CheckTx's state starts
    /// again from the new block).
    pub fn clear(&self) {
        self.map().clear();
    }

    /// Accounts with transactions in the mempool.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no account has a transaction in the mempool.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// Answers `path` from `state` (the last committed state at `height`), and
/// `/nonce` also from `pending` (this node's mempool).
///
/// # Errors
/// `UnknownQuery` for a path this node does not serve, `BadQuery` for a
/// malformed argument, `NotFound` for a missing record.
pub fn route(
    state: &dyn KvRead,
    path: &str,
    height: i64,
    last: &LastCommit,
    pending: &PendingNonces,
) -> Result<Vec<u8>, QueryError> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["account", hex] => {
            let id = parse_account(hex)?;
            let account = state.account(&id);
            encode(&AccountView {
                address: id,
                balance: account.balance,
                nonce: account.nonce,
            })
        }
        ["nonce", hex] => {
            let id = parse_account(hex)?;
            if !query.is_empty() {
                return Err((
                    Code::BadQuery,
                    format!("unknown query argument '{query}': /nonce/<hex> takes none"),
                ));
            }
            let nonce = state.account(&id).nonce;
            // Noted before the commit this snapshot is of, an entry can lag
            // the committed nonce for a moment: never answer below it.
            let pending_nonce = pending.get(&id).map_or(nonce, |p| p.max(nonce));
            encode(&NonceView {
                address: id,
                nonce,
                pending_nonce,
            })
        }
        ["nonce"] => Err((
            Code::BadQuery,
            "missing account id: ask /nonce/<64 hex characters>".to_owned(),
        )),
        ["account"] => Err((
            Code::BadQuery,
            "missing account id: ask /account/<64 hex characters>".to_owned(),
        )),
        ["module", hex] => {
            let id = ModuleId::from_hex(hex).map_err(|e| {
                (
                    Code::BadQuery,
                    format!(
                        "'{hex}' is not a module id ({e}): use the 64-hex sha3-256 of the wasm"
                    ),
                )
            })?;
            let with_code = query_flag(query, "code")?;
            let record = state
                .module(&id)
                .ok_or_else(|| (Code::NotFound, format!("no module {id} is stored")))?;
            encode(&ModuleView {
                module: id,
                owner: stored_account(&record.owner)?,
                size: record.size,
                has_verify: record.has_verify,
                height: record.height,
                functions: record.functions,
                code: with_code.then(|| Base64(state.module_code(&id).unwrap_or_default())),
            })
        }
        ["worker", hex] => {
            let id = parse_account(hex)?;
            let worker = state
                .worker(&id)
                .ok_or_else(|| (Code::NotFound, format!("{id} is not a registered worker")))?;
            encode(&WorkerView {
                worker: id,
                capacity: worker.capacity,
                stake: worker.stake,
                active_tasks: worker.active_tasks,
                registered_height: worker.registered_height,
                stake_locked_until: worker.stake_locked_until,
                disputes_pending: worker.disputes_pending,
            })
        }
        ["worker", hex, "assignments"] => {
            let id = parse_account(hex)?;
            encode(&assignments(state, id)?)
        }
        ["job", hex] => {
            let id = parse_job(hex)?;
            let job = state
                .job(&id)
                .ok_or_else(|| (Code::NotFound, format!("no job {id} exists")))?;
            encode(&job_view(state, &id, &job, query, height)?)
        }
        ["jobs"] => encode(&list_jobs(state, query)?),
        ["workers"] => encode(&list_workers(state, query)?),
        ["completions"] => encode(&list_completions(state, query, height)?),
        ["reputation", hex] => {
            let id = parse_account(hex)?;
            let r = state.reputation(&id);
            encode(&ReputationView {
                key: id,
                score_ppm: crate::reputation::score_ppm(&r),
                agreed: r.agreed,
                fuel_worked: r.fuel_worked,
                tasks_received: r.tasks_received,
                fuel_received: r.fuel_received,
                cheats: r.cheats,
                cheaters_reported: r.cheaters_reported,
                missed: r.missed,
                blocks_signed: r.blocks_signed,
                blocks_proposed: r.blocks_proposed,
                verifications_failed: r.verifications_failed,
                support_fuel: r.support_fuel,
            })
        }
        ["params"] => {
            let params = state
                .params()
                .ok_or_else(|| (Code::NotFound, "the chain has no genesis yet".to_owned()))?;
            // Parameters genesis did not name show their defaults.
            encode(&crate::params::resolved(params))
        }
        ["stats"] => {
            let stats = state.stats();
            encode(&StatsView {
                height,
                app_hash: Hash32(last.app_hash),
                chain_id: state.chain_id(),
                txs_ok: stats.txs_ok,
                txs_failed: stats.txs_failed,
                transfers: stats.transfers,
                fees_collected: stats.fees_collected,
                credits_minted: stats.credits_minted,
                modules: stats.modules,
                workers: stats.workers,
                jobs_posted: stats.jobs_posted,
                jobs_open: stats.jobs_open,
                assignments: stats.assignments,
                verifications: stats.verifications,
                verify_fuel_used: stats.verify_fuel_used,
                tasks_settled: stats.tasks_settled,
                tasks_failed: stats.tasks_failed,
                credits_slashed: stats.credits_slashed,
                disputes: stats.disputes,
                results_overturned: stats.results_overturned,
                referee_fuel_used: stats.referee_fuel_used,
                bonds_burnt: stats.bonds_burnt,
                bonds_held: stats.bonds_held,
            })
        }
        ["validators"] => encode(&crate::validators::query_validators(state, query, height)?),
        ["validator", hex] => encode(&crate::validators::query_validator(state, hex, height)?),
        _ => Err((
            Code::UnknownQuery,
            format!("unknown query path '{path}': this node serves {KNOWN_PATHS}"),
        )),
    }
}

/// The JSON bytes of an answer.
fn encode<T: Serialize>(view: &T) -> Result<Vec<u8>, QueryError> {
    serde_json::to_vec(view)
        .map_err(|e| (Code::BadQuery, format!("could not encode the answer: {e}")))
}

/// The answer to a query that found state no transaction could have written.
fn corrupt(what: &str) -> QueryError {
    (
        Code::BadQuery,
        format!("stored state is corrupt ({what}); the node's database needs repair"),
    )
}

fn parse_account(hex: &str) -> Result<AccountId, QueryError> {
    AccountId::from_hex(hex).map_err(|e| {
        (
            Code::BadQuery,
            format!("'{hex}' is not an account id ({e}): use the 64-hex-character public key"),
        )
    })
}

fn parse_job(hex: &str) -> Result<JobId, QueryError> {
    JobId::from_hex(hex).map_err(|e| {
        (
            Code::BadQuery,
            format!("'{hex}' is not a job id ({e}): use the 64-hex id from the job_posted event"),
        )
    })
}

fn stored_account(bytes: &[u8]) -> Result<AccountId, QueryError> {
    AccountId::from_slice(bytes).map_err(|_| corrupt("an account id is not 32 bytes"))
}

fn stored_hash(bytes: &[u8]) -> Result<Option<Hash32>, QueryError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Hash32::from_slice(bytes)
        .map(Some)
        .map_err(|_| corrupt("a hash is not 32 bytes"))
}

fn task_status(task: &pb::Task) -> Result<TaskStatus, QueryError> {
    TaskStatus::try_from(task.status).map_err(|e| corrupt(&e.to_string()))
}

fn replica_status(replica: &pb::Replica) -> Result<ReplicaStatus, QueryError> {
    ReplicaStatus::try_from(replica.status).map_err(|e| corrupt(&e.to_string()))
}

fn bytes_view(bytes: &[u8]) -> Option<Base64> {
    (!bytes.is_empty()).then(|| Base64(bytes.to_vec()))
}

/// A task's input: `{"inline": <base64>}` or `{"hash": <hex>}`.
fn input_view(input: Option<&pb::TaskInput>) -> Result<Option<InputView>, QueryError> {
    Ok(match input.and_then(|i| i.source.as_ref()) {
        Some(pb::task_input::Source::Inline(bytes)) => {
            Some(InputView::Inline(Base64(bytes.clone())))
        }
        Some(pb::task_input::Source::Hash(hash)) => Some(InputView::Hash(
            Hash32::from_slice(hash).map_err(|_| corrupt("an input hash is not 32 bytes"))?,
        )),
        None => None,
    })
}

fn completion_view(c: &pb::Completion, height: i64) -> Result<CompletionView, QueryError> {
    Ok(CompletionView {
        job: JobId::from_slice(&c.job_id).map_err(|_| corrupt("a job id is not 32 bytes"))?,
        task: c.task,
        result_hash: stored_hash(&c.result_hash)?
            .ok_or_else(|| corrupt("a completion has no result hash"))?,
        fuel_used: c.fuel_used,
        workers: c
            .workers
            .iter()
            .map(|w| stored_account(w))
            .collect::<Result<_, _>>()?,
        height: c.height,
        time_seconds: c.time_seconds,
        output: bytes_view(&c.output),
        paid: c.paid,
        dispute: DisputeView::of(c, height)
            .ok_or_else(|| corrupt("a completion's disputer is not an account id"))?,
    })
}

/// A job's policy as queries show it.
fn policy_view(job: &pb::Job) -> Option<PolicyView> {
    match job.policy.and_then(|p| p.kind)? {
        pb::policy::Kind::Quorum(q) => Some(PolicyView::Quorum {
            replicas: q.replicas,
            quorum: q.quorum,
            max_replicas: q.max_replicas,
        }),
        pb::policy::Kind::Verified(v) => Some(PolicyView::Verified {
            verify_fuel: v.verify_fuel,
            max_workers: job.max_replicas,
        }),
    }
}

/// `/worker/<hex>/assignments`: the tasks `id` holds now.
fn assignments(state: &dyn KvRead, id: AccountId) -> Result<AssignmentsView, QueryError> {
    let prefix = keys::assignments_of(&id);
    let mut assignments = Vec::new();
    for (key, _) in state.scan(&prefix, None, MAX_PAGE) {
        let rest = key.get(prefix.len()..).unwrap_or_default();
        let (Some(job), Some(index)) = (
            rest.get(..32).and_then(|b| JobId::from_slice(b).ok()),
            rest.get(32..36)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes),
        ) else {
            return Err(corrupt("an assignment key is malformed"));
        };
        let (Some(task), Some(record)) = (state.task(&job, index), state.job(&job)) else {
            continue;
        };
        let Some(replica) = task.replicas.iter().find(|r| r.worker == id.0) else {
            continue;
        };
        assignments.push(AssignmentView {
            job,
            task: index,
            task_status: task_status(&task)?,
            replica_status: replica_status(replica)?,
            deadline_height: replica.deadline_height,
            module: ModuleId::from_slice(&record.module_id)
                .map_err(|_| corrupt("a module id is not 32 bytes"))?,
            fuel_limit: record.fuel_limit,
            policy: policy_view(&record),
            input: input_view(task.input.as_ref())?,
            input_size: task.input.as_ref().map_or(0, |i| i.size),
        });
    }
    Ok(AssignmentsView {
        worker: id,
        assignments,
    })
}

fn job_summary(id: &JobId, job: &pb::Job) -> Result<JobSummary, QueryError> {
    Ok(JobSummary {
        job: *id,
        requester: stored_account(&job.requester)?,
        module: ModuleId::from_slice(&job.module_id)
            .map_err(|_| corrupt("a module id is not 32 bytes"))?,
        status: JobStatus::try_from(job.status).map_err(|e| corrupt(&e.to_string()))?,
        policy: policy_view(job),
        fuel_limit: job.fuel_limit,
        price_per_mfuel: job.price_per_mfuel,
        escrow: job.escrow,
        max_replicas: job.max_replicas,
        min_reputation_ppm: job.min_reputation_ppm,
        max_tasks_per_worker: job.max_tasks_per_worker,
        posted_height: job.posted_height,
        deadline_height: job.deadline_height,
        ended_height: job.ended_height,
        task_count: job.task_count,
        tasks_settled: job.tasks_settled,
        tasks_failed: job.tasks_failed,
        tasks_cancelled: job.tasks_cancelled,
    })
}

fn task_view(
    index: u32,
    task: &pb::Task,
    completion: Option<&pb::Completion>,
    height: i64,
) -> Result<TaskView, QueryError> {
    let replicas = task
        .replicas
        .iter()
        .map(|r| {
            Ok(ReplicaView {
                worker: stored_account(&r.worker)?,
                status: replica_status(r)?,
                slot: r.slot,
                assigned_height: r.assigned_height,
                deadline_height: r.deadline_height,
                commitment: stored_hash(&r.commitment)?,
                result_hash: stored_hash(&r.result_hash)?,
                fuel_used: r.fuel_used,
                output: bytes_view(&r.output),
                output_bytes: r.output.len() as u64,
                slashed: r.slashed,
            })
        })
        .collect::<Result<_, QueryError>>()?;
    Ok(TaskView {
        index,
        input: input_view(task.input.as_ref())?,
        size: task.input.as_ref().map_or(0, |i| i.size),
        status: task_status(task)?,
        replicas_wanted: task.wanted,
        attempts: task.attempts,
        replicas,
        failure: (!task.failure.is_empty()).then(|| task.failure.clone()),
        ended_height: task.ended_height,
        referee_height: (task.referee_height > 0).then_some(task.referee_height),
        completion: completion.map(|c| completion_view(c, height)).transpose()?,
    })
}

/// `/job/<id>[?tasks=false][&after=<index>][&limit=<n>]`: the job, its
/// progress over all tasks, and its tasks (a page of them with `after` and
/// `limit`, none with `tasks=false`).
fn job_view(
    state: &dyn KvRead,
    id: &JobId,
    job: &pb::Job,
    query: &str,
    height: i64,
) -> Result<JobView, QueryError> {
    let mut with_tasks = true;
    let mut after = None;
    let mut limit = job.task_count as usize;
    for (key, value) in query_args(query, &["tasks", "after", "limit"])? {
        match key {
            "tasks" => {
                with_tasks = match value {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err((
                            Code::BadQuery,
                            format!("tasks '{other}' must be true or false"),
                        ))
                    }
                }
            }
            "limit" => limit = page_limit(value)?,
            _ => {
                after = Some(value.parse::<u32>().map_err(|_| {
                    (
                        Code::BadQuery,
                        format!("after '{value}' must be a task index"),
                    )
                })?)
            }
        }
    }
    // Every task by its key, not by a scan: the view is then proven
    // complete (each index present or proven absent), and a node serves it
    // at past heights like any record.
    let all: Vec<(u32, pb::Task)> = (0..job.task_count)
        .filter_map(|index| state.task(id, index).map(|task| (index, task)))
        .collect();
    let mut progress = ProgressView::default();
    for (_, task) in &all {
        add_progress(&mut progress, task)?;
    }
    let (tasks, next) = if with_tasks {
        let page: Vec<(u32, pb::Task)> = all
            .into_iter()
            .filter(|(index, _)| after.is_none_or(|a| *index > a))
            .take(limit)
            .collect();
        let next = (page.len() == limit)
            .then(|| page.last().map(|(index, _)| *index))
            .flatten()
            .filter(|last| last.saturating_add(1) < job.task_count);
        let tasks = page
            .iter()
            .map(|(index, task)| {
                task_view(*index, task, state.completion(id, *index).as_ref(), height)
            })
            .collect::<Result<Vec<_>, _>>()?;
        (Some(tasks), next)
    } else {
        (None, None)
    };
    Ok(JobView {
        summary: job_summary(id, job)?,
        progress,
        tasks,
        next,
    })
}

/// Adds one task's replicas and ending to a job's progress counts.
fn add_progress(progress: &mut ProgressView, task: &pb::Task) -> Result<(), QueryError> {
    progress.wanted = progress.wanted.saturating_add(u64::from(task.wanted));
    match task_status(task)? {
        TaskStatus::Settled => progress.settled = progress.settled.saturating_add(1),
        TaskStatus::Failed | TaskStatus::Cancelled => {
            progress.failed = progress.failed.saturating_add(1)
        }
        TaskStatus::Commit | TaskStatus::Reveal => {}
    }
    for r in &task.replicas {
        let status = replica_status(r)?;
        if matches!(status, ReplicaStatus::Missed | ReplicaStatus::Declined) {
            continue;
        }
        progress.assigned = progress.assigned.saturating_add(1);
        if status != ReplicaStatus::Assigned {
            progress.committed = progress.committed.saturating_add(1);
        }
        if matches!(
            status,
            ReplicaStatus::Revealed | ReplicaStatus::Agreed | ReplicaStatus::Cheated
        ) {
            progress.revealed = progress.revealed.saturating_add(1);
        }
    }
    Ok(())
}

/// Parsed `name=value` pairs of a listing; unknown names are refused.
fn query_args<'q>(query: &'q str, allowed: &[&str]) -> Result<Vec<(&'q str, &'q str)>, QueryError> {
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&key) {
            return Err((
                Code::BadQuery,
                format!(
                    "unknown query argument '{key}': this path accepts {}",
                    allowed.join(", ")
                ),
            ));
        }
        args.push((key, value));
    }
    Ok(args)
}

fn page_limit(value: &str) -> Result<usize, QueryError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err((
            Code::BadQuery,
            format!("limit '{value}' must be a number from 1 to {MAX_PAGE}"),
        )),
    }
}

/// `/jobs?status=&master=&limit=&after=`: jobs in id order, or those of one
/// requester; `next` is the `after` of the following page.
fn list_jobs(state: &dyn KvRead, query: &str) -> Result<JobsPage, QueryError> {
    let mut status = None;
    let mut master = None;
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (key, value) in query_args(query, &["status", "master", "limit", "after"])? {
        match key {
            "status" => {
                let wanted = JobStatus::from_name(value).map_err(|_| {
                    (
                        Code::BadQuery,
                        format!(
                            "status '{value}' is not one of open, completed, failed, cancelled"
                        ),
                    )
                })?;
                status = Some(i32::from(wanted));
            }
            "master" => master = Some(parse_account(value)?),
            "limit" => limit = page_limit(value)?,
            _ => after = Some(parse_job(value)?),
        }
    }
    let prefix = match &master {
        Some(m) => [keys::REQUESTER_PREFIX, m.as_bytes()].concat(),
        None => keys::JOB_PREFIX.to_vec(),
    };
    let start = after.map(|a| [prefix.as_slice(), a.as_bytes()].concat());
    let mut jobs = Vec::new();
    let mut next = None;
    let entries = state.scan(&prefix, start.as_deref(), MAX_SCAN);
    let scanned_all = entries.len() < MAX_SCAN;
    let mut full = false;
    for (key, _) in entries {
        let Some(id) = key
            .get(prefix.len()..)
            .and_then(|b| JobId::from_slice(b).ok())
        else {
            continue;
        };
        let Some(job) = state.job(&id) else { continue };
        if status.is_none_or(|s| s == job.status) {
            if jobs.len() == limit {
                full = true;
                break;
            }
            jobs.push(job_summary(&id, &job)?);
        }
        next = Some(id);
    }
    // Nothing is left past this page.
    if !full && scanned_all {
        next = None;
    }
    Ok(JobsPage { jobs, next })
}

/// `/workers?limit=&after=`: registered workers in key order with their
/// reputation, a page at a time.
fn list_workers(state: &dyn KvRead, query: &str) -> Result<WorkersPage, QueryError> {
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (key, value) in query_args(query, &["limit", "after"])? {
        match key {
            "limit" => limit = page_limit(value)?,
            _ => after = Some(parse_account(value)?),
        }
    }
    let start = after.map(|a| keys::worker(&a));
    let entries = state.scan(keys::WORKER_PREFIX, start.as_deref(), limit);
    let full = entries.len() == limit;
    let mut next = None;
    let mut workers = Vec::with_capacity(entries.len());
    for (key, raw) in entries {
        let Some(id) = key
            .get(keys::WORKER_PREFIX.len()..)
            .and_then(|b| AccountId::from_slice(b).ok())
        else {
            continue;
        };
        let Ok(worker) = <pb::Worker as prost::Message>::decode(raw.as_slice()) else {
            continue;
        };
        let r = state.reputation(&id);
        workers.push(WorkerListing {
            worker: id,
            capacity: worker.capacity,
            stake: worker.stake,
            active_tasks: worker.active_tasks,
            score_ppm: crate::reputation::score_ppm(&r),
            agreed: r.agreed,
            fuel_worked: r.fuel_worked,
            cheats: r.cheats,
            missed: r.missed,
        });
        next = Some(id);
    }
    if !full {
        next = None;
    }
    Ok(WorkersPage { workers, next })
}

/// `/completions?job=<id>` or `?worker=<hex>`, with `limit` and `after`
/// (`after` is a task index for a job, `<job>:<task>` for a worker).
fn list_completions(
    state: &dyn KvRead,
    query: &str,
    height: i64,
) -> Result<CompletionsPage, QueryError> {
    let mut job = None;
    let mut worker = None;
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (key, value) in query_args(query, &["job", "worker", "limit", "after"])? {
        match key {
            "job" => job = Some(parse_job(value)?),
            "worker" => worker = Some(parse_account(value)?),
            "limit" => limit = page_limit(value)?,
            _ => after = Some(value),
        }
    }
    let bad_after = |a: &str| {
        (
            Code::BadQuery,
            format!("after '{a}' must be a task index (with job=) or <job>:<task> (with worker=)"),
        )
    };
    let (prefix, start, by_worker) = match (job, worker) {
        (Some(job), None) => {
            let prefix = keys::completions_of(&job);
            let start = match after {
                Some(a) => {
                    let index: u32 = a.parse().map_err(|_| bad_after(a))?;
                    Some(keys::completion(&job, index))
                }
                None => None,
            };
            (prefix, start, None)
        }
        (None, Some(worker)) => {
            let prefix = keys::worker_completions(&worker);
            let start = match after {
                Some(a) => {
                    let (j, t) = a.split_once(':').ok_or_else(|| bad_after(a))?;
                    let j = parse_job(j)?;
                    let t: u32 = t.parse().map_err(|_| bad_after(a))?;
                    Some(keys::worker_completion(&worker, &j, t))
                }
                None => None,
            };
            (prefix, start, Some(worker))
        }
        _ => {
            return Err((
                Code::BadQuery,
                "name exactly one of job=<id> or worker=<hex>".to_owned(),
            ))
        }
    };
    let mut completions = Vec::new();
    for (key, raw) in state.scan(&prefix, start.as_deref(), limit) {
        let record = if by_worker.is_some() {
            let rest = key.get(prefix.len()..).unwrap_or_default();
            let parsed = JobId::from_slice(rest.get(..32).unwrap_or_default())
                .ok()
                .zip(rest.get(32..36).and_then(|b| <[u8; 4]>::try_from(b).ok()));
            match parsed {
                Some((j, t)) => state.completion(&j, u32::from_be_bytes(t)),
                None => None,
            }
        } else {
            <pb::Completion as prost::Message>::decode(raw.as_slice()).ok()
        };
        if let Some(record) = record {
            completions.push(completion_view(&record, height)?);
        }
    }
    Ok(CompletionsPage { completions })
}

/// Whether `name=true` is set in a query string; other names are refused so
/// that a typo is not silently ignored.
fn query_flag(query: &str, name: &str) -> Result<bool, QueryError> {
    let mut set = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, "true")) if key == name => set = true,
            Some((key, "false")) if key == name => set = false,
            _ => {
                return Err((
                    Code::BadQuery,
                    format!("unknown query argument '{pair}': only {name}=true|false is accepted"),
                ))
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use crate::{App, BlockInput};
    use compute_proto::{SigningKey, TxBuilder};

    fn nonce_of(app: &App<MemStore>, id: &AccountId) -> NonceView {
        let answer = app.query(&format!("/nonce/{id}"), 0);
        assert_eq!(answer.code, Code::Ok, "{}", answer.log);
        serde_json::from_slice(&answer.value).expect("a NonceView")
    }

    fn block(app: &mut App<MemStore>, txs: &[Vec<u8>]) {
        let height = app.last_commit().height.saturating_add(1);
        let out = app.finalize_block(BlockInput {
            height,
            proposer_address: &[0; 20],
            signer_addresses: &[],
            txs,
            hash: &[7; 32],
            time_seconds: 0,
        });
        assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
        app.commit();
    }

    #[test]
    fn the_pending_nonce_counts_what_check_tx_accepted_until_the_commit() {
        let alice = SigningKey::from_seed([1; 32]);
        let bob = SigningKey::from_seed([2; 32]).account();
        let genesis =
            serde_json::json!({"accounts": [{"address": alice.account(), "balance": 1_000}]});
        let mut app = App::new(MemStore::new());
        app.init_chain("c", 1, genesis.to_string().as_bytes(), &[[9; 32]])
            .expect("genesis");
        block(&mut app, &[]);
        let builder = TxBuilder::new("c");
        let transfer = |nonce| {
            builder.sign(
                &alice,
                nonce,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: bob.0.to_vec(),
                    amount: 1,
                }),
            )
        };
        let fresh = nonce_of(&app, &alice.account());
        assert_eq!((fresh.nonce, fresh.pending_nonce), (0, 0));
        // A key never seen: zero, like /account.
        assert_eq!(nonce_of(&app, &bob).pending_nonce, 0);

        let txs: Vec<Vec<u8>> = (0..3).map(transfer).collect();
        for tx in &txs {
            assert_eq!(app.check_tx(tx).code, Code::Ok);
        }
        // Refused by CheckTx (a replay, a gap): not counted.
        assert_eq!(app.check_tx(&transfer(1)).code, Code::NonceReplayed);
        assert_eq!(app.check_tx(&transfer(9)).code, Code::NonceGap);
        let pending = nonce_of(&app, &alice.account());
        assert_eq!((pending.nonce, pending.pending_nonce), (0, 3));
        assert_eq!(pending.address, alice.account());
        // /account stays the committed view.
        let account: AccountView =
            serde_json::from_slice(&app.query(&format!("/account/{}", alice.account()), 0).value)
                .unwrap();
        assert_eq!(account.nonce, 0);

        // Two of them are committed; CometBFT rechecks the third.
        block(&mut app, &txs[..2]);
        let after = nonce_of(&app, &alice.account());
        assert_eq!((after.nonce, after.pending_nonce), (2, 2));
        assert_eq!(app.check_tx(&txs[2]).code, Code::Ok);
        assert_eq!(nonce_of(&app, &alice.account()).pending_nonce, 3);
    }

    #[test]
    fn a_malformed_nonce_query_is_refused() {
        let app = App::new(MemStore::new());
        assert_eq!(app.query("/nonce", 0).code, Code::BadQuery);
        assert_eq!(app.query("/nonce/zz", 0).code, Code::BadQuery);
        let id = "00".repeat(32);
        assert_eq!(
            app.query(&format!("/nonce/{id}?x=1"), 0).code,
            Code::BadQuery
        );
        assert_eq!(app.query(&format!("/nonce/{id}"), 0).code, Code::Ok);
    }

    #[test]
    fn pending_nonces_keep_the_highest_and_clear() {
        let pending = PendingNonces::new();
        let id = AccountId([3; 32]);
        assert!(pending.is_empty());
        pending.note(id, 5);
        pending.note(id, 4);
        assert_eq!(pending.get(&id), Some(5));
        assert_eq!(pending.len(), 1);
        pending.clear();
        assert_eq!(pending.get(&id), None);
    }
}
