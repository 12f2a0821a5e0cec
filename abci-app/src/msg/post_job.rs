//! `PostJob`: creates a job and its tasks and escrows the worst-case price.
//!
//! The escrow is `tasks x max_replicas x (fuel_limit + verify_fuel) x
//! price_per_mfuel / 1_000_000`, rounded up (`verify_fuel` is 0 for quorum
//! jobs): every replica the chain may ever add (extra replicas when no
//! quorum forms, another worker when `verify` refuses an output) and every
//! verification the chain may run is paid for up front, so settlement can
//! never run short and an attack on the verify queue costs its requester.
//! What is not owed is refunded when the job ends.

use compute_proto::{pb, AccountId, JobId, JobStatus, ModuleId, TaskStatus};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{debit, require_funds, update_stats, Ctx};
use crate::price::escrow;
use crate::state::{keys, StateRead};
use crate::store::StateTx;

const MSG: &str = "PostJob";

/// Workers a Verified task may try when its policy names none.
pub const DEFAULT_VERIFIED_WORKERS: u32 = 3;

/// Replicas and quorum when a job names no policy (DESIGN section 4).
pub const DEFAULT_QUORUM: pb::QuorumPolicy = pb::QuorumPolicy {
    replicas: 3,
    quorum: 2,
    max_replicas: 0,
};

/// A `PostJob` whose shape is checked.
#[derive(Clone, Debug)]
pub struct CheckedJob {
    /// The module to run.
    pub module: ModuleId,
    /// The policy, with the default filled in.
    pub policy: pb::Policy,
    /// Replicas per task at most.
    pub max_replicas: u32,
    /// Credits to hold.
    pub escrow: u64,
}

fn invalid(reason: String) -> Rejection {
    Rejection::InvalidMessage { msg: MSG, reason }
}

/// Shape: sizes, policy and limits within the chain's parameters.
pub fn check_stateless(msg: &pb::PostJob, params: &pb::Params) -> Result<CheckedJob, Rejection> {
    let module = ModuleId::from_slice(&msg.module_id).map_err(|_| {
        invalid(format!(
            "module_id must be 32 bytes, got {}",
            msg.module_id.len()
        ))
    })?;
    let count = msg.tasks.len();
    if count == 0 || count > params.max_tasks_per_job as usize {
        return Err(invalid(format!(
            "a job has 1 to {} tasks (max_tasks_per_job), this one has {count}",
            params.max_tasks_per_job
        )));
    }
    for (index, task) in msg.tasks.iter().enumerate() {
        check_input(index, task, params)?;
    }
    if msg.fuel_limit == 0 || msg.fuel_limit > params.max_fuel_per_task {
        return Err(invalid(format!(
            "fuel_limit {} must be between 1 and max_fuel_per_task {}",
            msg.fuel_limit, params.max_fuel_per_task
        )));
    }
    let windows = params
        .commit_window_blocks
        .saturating_add(params.reveal_window_blocks);
    if msg.deadline_blocks < windows || msg.deadline_blocks > params.max_deadline_blocks {
        return Err(invalid(format!(
            "deadline_blocks {} must be between {windows} (one commit and one reveal window) and max_deadline_blocks {}",
            msg.deadline_blocks, params.max_deadline_blocks
        )));
    }
    if msg.min_reputation_ppm > 1_000_000 {
        return Err(invalid(format!(
            "min_reputation_ppm {} is above 1000000",
            msg.min_reputation_ppm
        )));
    }
    // An empty policy would be a second encoding of "no policy", and so a
    // second transaction hash for one intent.
    if msg.policy.is_some_and(|p| p.kind.is_none()) {
        return Err(invalid(
            "policy is present but names no kind: omit it for the default Quorum{3, 2}, or name quorum or verified".into(),
        ));
    }
    // No policy means the default quorum.
    let kind = msg
        .policy
        .and_then(|p| p.kind)
        .unwrap_or(pb::policy::Kind::Quorum(DEFAULT_QUORUM));
    let max_replicas = match &kind {
        pb::policy::Kind::Quorum(q) => check_quorum(q, params)?,
        pb::policy::Kind::Verified(v) => {
            if let Some(index) = msg
                .tasks
                .iter()
                .position(|t| !matches!(t.source, Some(pb::task_input::Source::Inline(_))))
            {
                return Err(invalid(format!(
                    "task {index}: a Verified job's inputs must be inline, because every validator runs verify on them"
                )));
            }
            if v.verify_fuel == 0 || v.verify_fuel > params.max_verify_fuel {
                return Err(invalid(format!(
                    "verify_fuel {} must be between 1 and max_verify_fuel {}",
                    v.verify_fuel, params.max_verify_fuel
                )));
            }
            let workers = if v.max_workers == 0 {
                DEFAULT_VERIFIED_WORKERS.min(params.max_replicas)
            } else {
                v.max_workers
            };
            if workers > params.max_replicas {
                return Err(invalid(format!(
                    "max_workers {workers} must be at most the chain's max_replicas {}",
                    params.max_replicas
                )));
            }
            workers
        }
    };
    let verify_fuel = match &kind {
        pb::policy::Kind::Verified(v) => v.verify_fuel,
        pb::policy::Kind::Quorum(_) => 0,
    };
    let replica_fuel = msg
        .fuel_limit
        .checked_add(verify_fuel)
        .ok_or(Rejection::Overflow("fuel_limit + verify_fuel"))?;
    let policy = pb::Policy { kind: Some(kind) };
    let escrow = escrow(
        count as u64,
        max_replicas,
        replica_fuel,
        msg.price_per_mfuel,
    )
    .ok_or(Rejection::Overflow("job escrow"))?;
    Ok(CheckedJob {
        module,
        policy,
        max_replicas,
        escrow,
    })
}

fn check_input(index: usize, task: &pb::TaskInput, params: &pb::Params) -> Result<(), Rejection> {
    match &task.source {
        Some(pb::task_input::Source::Inline(bytes)) => {
            if bytes.len() as u64 > params.max_inline_input_bytes {
                return Err(invalid(format!(
                    "task {index}: inline input of {} bytes is above max_inline_input_bytes {}; put it on the data plane and name its hash",
                    bytes.len(),
                    params.max_inline_input_bytes
                )));
            }
            if task.size != bytes.len() as u64 {
                return Err(invalid(format!(
                    "task {index}: size {} does not match the inline input's {} bytes",
                    task.size,
                    bytes.len()
                )));
            }
        }
        Some(pb::task_input::Source::Hash(hash)) => {
            if hash.len() != 32 {
                return Err(invalid(format!(
                    "task {index}: input hash must be 32 bytes, got {}",
                    hash.len()
                )));
            }
        }
        None => {
            return Err(invalid(format!(
                "task {index} has no input (inline or hash)"
            )))
        }
    }
    Ok(())
}

/// Checks a quorum policy; returns its replica ceiling.
fn check_quorum(q: &pb::QuorumPolicy, params: &pb::Params) -> Result<u32, Rejection> {
    if q.replicas < params.min_replicas || q.replicas > params.max_replicas {
        return Err(invalid(format!(
            "replicas {} must be between min_replicas {} and max_replicas {}",
            q.replicas, params.min_replicas, params.max_replicas
        )));
    }
    // A quorum of at most half would let two different results both win.
    if q.quorum < params.min_quorum
        || q.quorum > q.replicas
        || u64::from(q.quorum).saturating_mul(2) <= u64::from(q.replicas)
    {
        return Err(invalid(format!(
            "quorum {} must be a majority of replicas {} (and at least min_quorum {})",
            q.quorum, q.replicas, params.min_quorum
        )));
    }
    let ceiling = if q.max_replicas == 0 {
        q.replicas
    } else {
        q.max_replicas
    };
    if ceiling < q.replicas || ceiling > params.max_replicas {
        return Err(invalid(format!(
            "max_replicas {} must be between replicas {} and the chain's max_replicas {}",
            ceiling, q.replicas, params.max_replicas
        )));
    }
    Ok(ceiling)
}

/// The module exists (with `verify` for a verified job), the chain has room
/// and the requester can pay the escrow.
pub fn check_stateful(
    checked: &CheckedJob,
    requester: &AccountId,
    fee: u64,
    params: &pb::Params,
    state: &impl StateRead,
) -> Result<(), Rejection> {
    let module = state
        .module(&checked.module)
        .ok_or(Rejection::UnknownModule(checked.module))?;
    if matches!(checked.policy.kind, Some(pb::policy::Kind::Verified(_))) && !module.has_verify {
        return Err(invalid(format!(
            "module {} exports no `verify`, so it cannot be used with the Verified policy",
            checked.module
        )));
    }
    if state.stats().jobs_open >= u64::from(params.max_open_jobs) {
        return Err(Rejection::TooManyOpenJobs {
            max: params.max_open_jobs,
        });
    }
    require_funds(state, requester, checked.escrow, fee)
}

/// Escrows the price and writes the job and its tasks under `id`
/// ([`JobId::derive`] of the requester and the nonce, or
/// [`JobId::derive_in_batch`] for a job of a `PostJobs`).
pub fn execute(
    msg: &pb::PostJob,
    checked: &CheckedJob,
    requester: &AccountId,
    id: JobId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let height = ctx.height;
    debit(state, requester, checked.escrow)?;
    let posted = i64::try_from(height).map_err(|_| Rejection::Overflow("height"))?;
    let deadline = i64::try_from(height.saturating_add(msg.deadline_blocks))
        .map_err(|_| Rejection::Overflow("deadline height"))?;
    let task_count =
        u32::try_from(msg.tasks.len()).map_err(|_| Rejection::Overflow("task count"))?;
    state.put_job(
        &id,
        &pb::Job {
            requester: requester.0.to_vec(),
            module_id: checked.module.0.to_vec(),
            policy: Some(checked.policy),
            fuel_limit: msg.fuel_limit,
            price_per_mfuel: msg.price_per_mfuel,
            min_reputation_ppm: msg.min_reputation_ppm,
            max_tasks_per_worker: msg.max_tasks_per_worker,
            task_count,
            deadline_height: deadline,
            posted_height: posted,
            status: JobStatus::Open.into(),
            escrow: checked.escrow,
            max_replicas: checked.max_replicas,
            ..Default::default()
        },
    );
    let wanted = match checked.policy.kind {
        Some(pb::policy::Kind::Quorum(q)) => q.replicas,
        _ => 1,
    };
    for (index, input) in (0u32..).zip(&msg.tasks) {
        state.put_task(
            &id,
            index,
            &pb::Task {
                input: Some(input.clone()),
                status: TaskStatus::Commit.into(),
                wanted,
                ..Default::default()
            },
        );
        // Assigned at the end of this block.
        state.put_raw(keys::pending(&id, index), Vec::new());
    }
    state.put_raw(
        keys::deadline(
            height.saturating_add(msg.deadline_blocks),
            &id,
            keys::WHOLE_JOB,
        ),
        Vec::new(),
    );
    state.put_raw(keys::requester_job(requester, &id), Vec::new());
    update_stats(state, |s| {
        s.jobs_posted = s.jobs_posted.saturating_add(1);
        s.jobs_open = s.jobs_open.saturating_add(1);
    });
    Ok(vec![event(
        "job_posted",
        &[
            ("job", id.to_hex(), true),
            ("master", requester.to_hex(), true),
            ("module", checked.module.to_hex(), true),
            ("tasks", task_count.to_string(), false),
            ("escrow", checked.escrow.to_string(), false),
        ],
    )])
}
