//! Query paths served through CometBFT's `/abci_query`. Answers are JSON.
//!
//! | path | answer |
//! | --- | --- |
//! | `/account/<hex>` | `{"address", "balance", "nonce"}` (zero for a key never seen) |
//! | `/params` | every chain parameter |
//! | `/stats` | height, app hash, chain id and chain-wide counters |
//! | `/module/<id>[?code=true]` | a module's metadata (and its bytes in base64) |
//! | `/worker/<hex>` | a registered worker |
//! | `/job/<id>` | a job's terms, status, escrow and tasks |
//! | `/reputation/<hex>` | a key's reputation counters and score |

use base64::Engine;
use compute_proto::{pb, AccountId, JobId, ModuleId};
use serde_json::json;

use crate::app::LastCommit;
use crate::codes::Code;
use crate::state::StateRead;
use crate::store::KvRead;

/// The paths this node serves, for error messages.
const KNOWN_PATHS: &str =
    "/account/<hex>, /params, /stats, /module/<id>[?code=true], /worker/<hex>, /job/<id>, /reputation/<hex>";

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
        ["job", hex] => {
            let id = JobId::from_hex(hex).map_err(|e| {
                (
                    Code::BadQuery,
                    format!("'{hex}' is not a job id ({e}): use the 64-hex id from the job_posted event"),
                )
            })?;
            let job = state
                .job(&id)
                .ok_or_else(|| (Code::NotFound, format!("no job {id} exists")))?;
            job_json(&id, &job, &state.tasks(&id, job.task_count as usize))
        }
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

fn job_json(id: &JobId, job: &pb::Job, tasks: &[(u32, pb::Task)]) -> serde_json::Value {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let policy = match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Quorum(q)) => json!({"quorum": {
            "replicas": q.replicas, "quorum": q.quorum, "max_replicas": q.max_replicas,
        }}),
        Some(pb::policy::Kind::Verified(v)) => json!({"verified": {"verify_fuel": v.verify_fuel}}),
        None => serde_json::Value::Null,
    };
    let tasks: Vec<_> = tasks
        .iter()
        .map(|(index, task)| {
            let input = task.input.as_ref();
            let source = match input.and_then(|i| i.source.as_ref()) {
                Some(pb::task_input::Source::Inline(bytes)) => json!({"inline": b64(bytes)}),
                Some(pb::task_input::Source::Hash(hash)) => json!({"hash": hex::encode(hash)}),
                None => serde_json::Value::Null,
            };
            json!({"index": index, "input": source, "size": input.map_or(0, |i| i.size)})
        })
        .collect();
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
        "task_count": job.task_count,
        "tasks": tasks,
    })
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
