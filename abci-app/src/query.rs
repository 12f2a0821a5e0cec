//! Query paths served through CometBFT's `/abci_query`. Answers are JSON.
//!
//! | path | answer |
//! | --- | --- |
//! | `/account/<hex>` | `{"address", "balance", "nonce"}` (zero for a key never seen) |
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

use base64::Engine;
use compute_proto::{pb, AccountId, JobId, ModuleId};
use serde_json::json;

use crate::app::LastCommit;
use crate::codes::Code;
use crate::state::{keys, replica_status_name, task_status_name, StateRead};
use crate::store::KvRead;

/// The paths this node serves, for error messages.
const KNOWN_PATHS: &str = "/account/<hex>, /params, /stats, /module/<id>[?code=true], /worker/<hex>, /worker/<hex>/assignments, /workers?limit=&after=, /job/<id>, /jobs?status=&master=&limit=&after=, /completions?job=<id>|worker=<hex>, /reputation/<hex>";

/// Entries a page holds when the query names no `limit`.
pub const DEFAULT_PAGE: usize = 50;
/// Entries a page holds at most.
pub const MAX_PAGE: usize = 500;
/// Records a filtered listing reads at most to fill one page.
const MAX_SCAN: usize = 10_000;

/// A failed query: its code and a message naming the fix.
pub type QueryError = (Code, String);

/// Answers `path` from `state` (the last committed state at `height`).
///
/// # Errors
/// `UnknownQuery` for a path this node does not serve, `BadQuery` for a
/// malformed argument, `NotFound` for a missing record.
pub fn route(
    state: &dyn KvRead,
    path: &str,
    height: i64,
    last: &LastCommit,
) -> Result<Vec<u8>, QueryError> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    let value = match segments.as_slice() {
        ["account", hex] => {
            let id = parse_account(hex)?;
            let account = state.account(&id);
            json!({
                "address": id,
                "balance": account.balance,
                "nonce": account.nonce,
            })
        }
        ["account"] => {
            return Err((
                Code::BadQuery,
                "missing account id: ask /account/<64 hex characters>".to_owned(),
            ))
        }
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
            let mut value = json!({
                "module": id,
                "owner": hex::encode(&record.owner),
                "size": record.size,
                "has_verify": record.has_verify,
                "height": record.height,
                "functions": record.functions,
            });
            if with_code {
                let code = state.module_code(&id).unwrap_or_default();
                value["code"] = json!(base64::engine::general_purpose::STANDARD.encode(code));
            }
            value
        }
        ["worker", hex] => {
            let id = parse_account(hex)?;
            let worker = state
                .worker(&id)
                .ok_or_else(|| (Code::NotFound, format!("{id} is not a registered worker")))?;
            json!({
                "worker": id,
                "capacity": worker.capacity,
                "stake": worker.stake,
                "active_tasks": worker.active_tasks,
                "registered_height": worker.registered_height,
            })
        }
        ["worker", hex, "assignments"] => {
            let id = parse_account(hex)?;
            let prefix = keys::assignments_of(&id);
            let assignments: Vec<serde_json::Value> = state
                .scan(&prefix, None, MAX_PAGE)
                .into_iter()
                .filter_map(|(key, _)| {
                    let rest = key.get(prefix.len()..)?;
                    let job = JobId::from_slice(rest.get(..32)?).ok()?;
                    let index = u32::from_be_bytes(rest.get(32..36)?.try_into().ok()?);
                    let task = state.task(&job, index)?;
                    let replica = task.replicas.iter().find(|r| r.worker == id.0)?;
                    let record = state.job(&job)?;
                    Some(json!({
                        "job": job,
                        "task": index,
                        "task_status": task_status_name(task.status),
                        "replica_status": replica_status_name(replica.status),
                        "deadline_height": replica.deadline_height,
                        "module": hex::encode(&record.module_id),
                        "fuel_limit": record.fuel_limit,
                        "policy": policy_json(&record),
                        "input": input_json(task.input.as_ref()),
                        "input_size": task.input.as_ref().map_or(0, |i| i.size),
                    }))
                })
                .collect();
            json!({"worker": id, "assignments": assignments})
        }
        ["job", hex] => {
            let id = parse_job(hex)?;
            let job = state
                .job(&id)
                .ok_or_else(|| (Code::NotFound, format!("no job {id} exists")))?;
            job_view(state, &id, &job, query)?
        }
        ["jobs"] => list_jobs(state, query)?,
        ["workers"] => list_workers(state, query)?,
        ["completions"] => list_completions(state, query)?,
        ["reputation", hex] => {
            let id = parse_account(hex)?;
            let r = state.reputation(&id);
            json!({
                "key": id,
                "score_ppm": crate::reputation::score_ppm(&r),
                "agreed": r.agreed,
                "fuel_worked": r.fuel_worked,
                "tasks_received": r.tasks_received,
                "fuel_received": r.fuel_received,
                "cheats": r.cheats,
                "cheaters_reported": r.cheaters_reported,
                "missed": r.missed,
                "blocks_signed": r.blocks_signed,
                "blocks_proposed": r.blocks_proposed,
                "verifications_failed": r.verifications_failed,
            })
        }
        ["params"] => {
            let params = state
                .params()
                .ok_or_else(|| (Code::NotFound, "the chain has no genesis yet".to_owned()))?;
            serde_json::to_value(params).map_err(internal)?
        }
        ["stats"] => {
            let stats = state.stats();
            json!({
                "height": height,
                "app_hash": hex::encode(last.app_hash),
                "chain_id": state.chain_id(),
                "txs_ok": stats.txs_ok,
                "txs_failed": stats.txs_failed,
                "transfers": stats.transfers,
                "fees_collected": stats.fees_collected,
                "credits_minted": stats.credits_minted,
                "modules": stats.modules,
                "workers": stats.workers,
                "jobs_posted": stats.jobs_posted,
                "jobs_open": stats.jobs_open,
                "assignments": stats.assignments,
                "verifications": stats.verifications,
                "verify_fuel_used": stats.verify_fuel_used,
                "tasks_settled": stats.tasks_settled,
                "tasks_failed": stats.tasks_failed,
                "credits_slashed": stats.credits_slashed,
            })
        }
        _ => {
            return Err((
                Code::UnknownQuery,
                format!("unknown query path '{path}': this node serves {KNOWN_PATHS}"),
            ))
        }
    };
    serde_json::to_vec(&value).map_err(internal)
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A task's input: `{"inline": <base64>}` or `{"hash": <hex>}`.
fn input_json(input: Option<&pb::TaskInput>) -> serde_json::Value {
    match input.and_then(|i| i.source.as_ref()) {
        Some(pb::task_input::Source::Inline(bytes)) => json!({"inline": b64(bytes)}),
        Some(pb::task_input::Source::Hash(hash)) => json!({"hash": hex::encode(hash)}),
        None => serde_json::Value::Null,
    }
}

fn completion_json(c: &pb::Completion) -> serde_json::Value {
    json!({
        "job": hex::encode(&c.job_id),
        "task": c.task,
        "result_hash": hex::encode(&c.result_hash),
        "fuel_used": c.fuel_used,
        "workers": c.workers.iter().map(hex::encode).collect::<Vec<_>>(),
        "height": c.height,
        "time_seconds": c.time_seconds,
        "output": (!c.output.is_empty()).then(|| b64(&c.output)),
        "paid": c.paid,
    })
}

/// A job's policy as queries show it.
fn policy_json(job: &pb::Job) -> serde_json::Value {
    match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Quorum(q)) => json!({"quorum": {
            "replicas": q.replicas, "quorum": q.quorum, "max_replicas": q.max_replicas,
        }}),
        Some(pb::policy::Kind::Verified(v)) => json!({"verified": {
            "verify_fuel": v.verify_fuel,
            "max_workers": job.max_replicas,
        }}),
        None => serde_json::Value::Null,
    }
}

fn job_summary(id: &JobId, job: &pb::Job) -> serde_json::Value {
    let policy = policy_json(job);
    json!({
        "job": id,
        "requester": hex::encode(&job.requester),
        "module": hex::encode(&job.module_id),
        "status": crate::state::job_status_name(job.status),
        "policy": policy,
        "fuel_limit": job.fuel_limit,
        "price_per_mfuel": job.price_per_mfuel,
        "escrow": job.escrow,
        "max_replicas": job.max_replicas,
        "min_reputation_ppm": job.min_reputation_ppm,
        "max_tasks_per_worker": job.max_tasks_per_worker,
        "posted_height": job.posted_height,
        "deadline_height": job.deadline_height,
        "ended_height": job.ended_height,
        "task_count": job.task_count,
        "tasks_settled": job.tasks_settled,
        "tasks_failed": job.tasks_failed,
        "tasks_cancelled": job.tasks_cancelled,
    })
}

fn job_json(
    id: &JobId,
    job: &pb::Job,
    tasks: &[(u32, pb::Task)],
    completions: &[(u32, pb::Completion)],
) -> serde_json::Value {
    let tasks: Vec<_> = tasks
        .iter()
        .map(|(index, task)| {
            let replicas: Vec<_> = task
                .replicas
                .iter()
                .map(|r| {
                    json!({
                        "worker": hex::encode(&r.worker),
                        "status": replica_status_name(r.status),
                        "slot": r.slot,
                        "assigned_height": r.assigned_height,
                        "deadline_height": r.deadline_height,
                        "commitment": (!r.commitment.is_empty()).then(|| hex::encode(&r.commitment)),
                        "result_hash": (!r.result_hash.is_empty()).then(|| hex::encode(&r.result_hash)),
                        "fuel_used": r.fuel_used,
                        "output": (!r.output.is_empty()).then(|| b64(&r.output)),
                        "output_bytes": r.output.len(),
                    })
                })
                .collect();
            let completion = completions
                .iter()
                .find(|(i, _)| i == index)
                .map(|(_, c)| completion_json(c));
            let mut value = json!({
                "index": index,
                "input": input_json(task.input.as_ref()),
                "size": task.input.as_ref().map_or(0, |i| i.size),
            });
            value["status"] = json!(task_status_name(task.status));
            value["replicas_wanted"] = json!(task.wanted);
            value["attempts"] = json!(task.attempts);
            value["replicas"] = json!(replicas);
            value["failure"] = json!((!task.failure.is_empty()).then_some(&task.failure));
            value["ended_height"] = json!(task.ended_height);
            value["completion"] = json!(completion);
            value
        })
        .collect();
    let mut value = job_summary(id, job);
    value["tasks"] = json!(tasks);
    value
}

/// `/job/<id>[?tasks=false][&after=<index>][&limit=<n>]`: the job, its
/// progress over all tasks, and its tasks (a page of them with `after` and
/// `limit`, none with `tasks=false`).
fn job_view(
    state: &dyn KvRead,
    id: &JobId,
    job: &pb::Job,
    query: &str,
) -> Result<serde_json::Value, QueryError> {
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
    let all = state.tasks(id, job.task_count as usize);
    let mut progress = Progress::default();
    for (_, task) in &all {
        progress.add(task);
    }
    let mut value = if with_tasks {
        let page: Vec<(u32, pb::Task)> = all
            .into_iter()
            .filter(|(index, _)| after.is_none_or(|a| *index > a))
            .take(limit)
            .collect();
        let completions: Vec<(u32, pb::Completion)> = page
            .iter()
            .filter_map(|(index, _)| Some((*index, state.completion(id, *index)?)))
            .collect();
        let next = (page.len() == limit)
            .then(|| page.last().map(|(index, _)| *index))
            .flatten()
            .filter(|last| last.saturating_add(1) < job.task_count);
        let mut value = job_json(id, job, &page, &completions);
        value["next"] = json!(next);
        value
    } else {
        job_summary(id, job)
    };
    value["progress"] = serde_json::to_value(progress).map_err(internal)?;
    Ok(value)
}

/// Replica and task counts over a job, for progress displays.
#[derive(Default, serde::Serialize)]
struct Progress {
    /// Replicas wanted now, over all tasks.
    wanted: u64,
    /// Replicas drawn and still live or done (missed ones excluded).
    assigned: u64,
    /// Of those, committed or further.
    committed: u64,
    /// Of those, revealed or judged.
    revealed: u64,
    /// Tasks settled.
    settled: u64,
    /// Tasks failed or cancelled.
    failed: u64,
}

impl Progress {
    fn add(&mut self, task: &pb::Task) {
        use pb::ReplicaStatus as R;
        self.wanted = self.wanted.saturating_add(u64::from(task.wanted));
        match pb::TaskStatus::try_from(task.status) {
            Ok(pb::TaskStatus::Settled) => self.settled = self.settled.saturating_add(1),
            Ok(pb::TaskStatus::Failed | pb::TaskStatus::Cancelled) => {
                self.failed = self.failed.saturating_add(1)
            }
            _ => {}
        }
        for r in &task.replicas {
            let status = R::try_from(r.status).unwrap_or(R::Unspecified);
            if matches!(status, R::Missed | R::Declined | R::Unspecified) {
                continue;
            }
            self.assigned = self.assigned.saturating_add(1);
            if status != R::Assigned {
                self.committed = self.committed.saturating_add(1);
            }
            if matches!(status, R::Revealed | R::Agreed | R::Cheated) {
                self.revealed = self.revealed.saturating_add(1);
            }
        }
    }
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
fn list_jobs(state: &dyn KvRead, query: &str) -> Result<serde_json::Value, QueryError> {
    let mut status = None;
    let mut master = None;
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (key, value) in query_args(query, &["status", "master", "limit", "after"])? {
        match key {
            "status" => {
                let wanted = match value {
                    "open" => pb::JobStatus::Open,
                    "completed" => pb::JobStatus::Completed,
                    "failed" => pb::JobStatus::Failed,
                    "cancelled" => pb::JobStatus::Cancelled,
                    other => {
                        return Err((
                            Code::BadQuery,
                            format!(
                                "status '{other}' is not one of open, completed, failed, cancelled"
                            ),
                        ))
                    }
                };
                status = Some(wanted as i32);
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
            jobs.push(job_summary(&id, &job));
        }
        next = Some(id);
    }
    // Nothing is left past this page.
    if !full && scanned_all {
        next = None;
    }
    Ok(json!({"jobs": jobs, "next": next}))
}

/// `/workers?limit=&after=`: registered workers in key order with their
/// reputation, a page at a time.
fn list_workers(state: &dyn KvRead, query: &str) -> Result<serde_json::Value, QueryError> {
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
        workers.push(json!({
            "worker": id,
            "capacity": worker.capacity,
            "stake": worker.stake,
            "active_tasks": worker.active_tasks,
            "score_ppm": crate::reputation::score_ppm(&r),
            "agreed": r.agreed,
            "fuel_worked": r.fuel_worked,
            "cheats": r.cheats,
            "missed": r.missed,
        }));
        next = Some(id);
    }
    if !full {
        next = None;
    }
    Ok(json!({"workers": workers, "next": next}))
}

/// `/completions?job=<id>` or `?worker=<hex>`, with `limit` and `after`
/// (`after` is a task index for a job, `<job>:<task>` for a worker).
fn list_completions(state: &dyn KvRead, query: &str) -> Result<serde_json::Value, QueryError> {
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
            completions.push(completion_json(&record));
        }
    }
    Ok(json!({"completions": completions}))
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

fn internal(e: serde_json::Error) -> QueryError {
    (Code::BadQuery, format!("could not encode the answer: {e}"))
}
