//! `CommitResult` and `RevealResult`: a drawn worker seals its result, then
//! opens it once every replica of the task has committed (DESIGN section 4,
//! steps 3 and 4). `DeclineTask` gives a drawn task back before committing. A reveal that does not open the worker's own commitment
//! is refused, so a lazy worker cannot copy another's answer.

use compute_proto::{commitment, pb, sha3_256, AccountId, JobId};

use crate::codes::Rejection;
use crate::events::{task_event, Event};
use crate::jobs;
use crate::msg::Ctx;
use crate::state::{replica_status_name, task_status_name, StateRead};
use crate::store::StateTx;

/// Longest salt accepted; 32 random bytes are plenty.
pub const MAX_SALT_BYTES: usize = 64;

/// A commit or reveal whose ids are well formed.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The job.
    pub job: JobId,
    /// The task index.
    pub task: u32,
}

fn invalid(msg: &'static str, reason: String) -> Rejection {
    Rejection::InvalidMessage { msg, reason }
}

fn hash32(msg: &'static str, field: &str, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        invalid(
            msg,
            format!("{field} must be 32 bytes, got {}", bytes.len()),
        )
    })
}

/// Shape of a `CommitResult`.
pub fn check_commit_stateless(m: &pb::CommitResult) -> Result<Target, Rejection> {
    let job = JobId(hash32("CommitResult", "job_id", &m.job_id)?);
    hash32("CommitResult", "commitment", &m.commitment)?;
    Ok(Target { job, task: m.task })
}

/// Shape of a `RevealResult`: sizes, and an inline output that hashes to
/// the revealed result hash.
pub fn check_reveal_stateless(
    m: &pb::RevealResult,
    params: &pb::Params,
) -> Result<Target, Rejection> {
    const MSG: &str = "RevealResult";
    let job = JobId(hash32(MSG, "job_id", &m.job_id)?);
    hash32(MSG, "result_hash", &m.result_hash)?;
    if m.salt.len() > MAX_SALT_BYTES {
        return Err(invalid(
            MSG,
            format!(
                "salt of {} bytes is longer than {MAX_SALT_BYTES}",
                m.salt.len()
            ),
        ));
    }
    if m.output.len() as u64 > params.max_inline_output_bytes {
        return Err(invalid(
            MSG,
            format!(
                "inline output of {} bytes is above max_inline_output_bytes {}; reveal without it and serve it from the data plane",
                m.output.len(),
                params.max_inline_output_bytes
            ),
        ));
    }
    if !m.output.is_empty() && sha3_256(&m.output).as_slice() != m.result_hash.as_slice() {
        return Err(invalid(
            MSG,
            "the inline output does not hash to result_hash (sha3-256 of the output)".into(),
        ));
    }
    Ok(Target { job, task: m.task })
}

/// The task phase and replica status a message needs, with what to do
/// instead when they differ.
struct Phase {
    task: pb::TaskStatus,
    task_hint: &'static str,
    replica: pb::ReplicaStatus,
    replica_hint: &'static str,
}

/// The job, the task and the signer's replica in it, which must be in
/// `phase`.
fn locate(
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
    phase: &Phase,
) -> Result<(pb::Job, pb::Task, usize), Rejection> {
    let job = state
        .job(&target.job)
        .ok_or(Rejection::UnknownJob(target.job))?;
    let task = state
        .task(&target.job, target.task)
        .ok_or(Rejection::UnknownTask {
            job: target.job,
            task: target.task,
            count: job.task_count,
        })?;
    let position = task
        .replicas
        .iter()
        .position(|r| r.worker.as_slice() == signer.0.as_slice() && crate::jobs::is_live(r))
        .ok_or(Rejection::NotAssigned {
            job: target.job,
            task: target.task,
            worker: *signer,
        })?;
    if task.status != phase.task as i32 {
        return Err(wrong_phase(
            target,
            task_status_name(task.status),
            phase.task_hint,
        ));
    }
    let replica = &task.replicas[position];
    if replica.status != phase.replica as i32 {
        return Err(wrong_phase(
            target,
            replica_status_name(replica.status),
            phase.replica_hint,
        ));
    }
    Ok((job, task, position))
}

fn wrong_phase(target: &Target, phase: &'static str, hint: &'static str) -> Rejection {
    Rejection::WrongPhase {
        job: target.job,
        task: target.task,
        phase,
        hint,
    }
}

/// A commitment is taken from a drawn worker that has not committed, while
/// the task is in its commit phase.
pub fn check_commit_stateful(
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<(pb::Job, pb::Task, usize), Rejection> {
    let (job, task, position) = locate(
        target,
        signer,
        state,
        &Phase {
            task: pb::TaskStatus::Commit,
            task_hint: "commitments are taken only in the commit phase",
            replica: pb::ReplicaStatus::Assigned,
            replica_hint: "each replica commits once; wait for task_reveal_open and reveal",
        },
    )?;
    Ok((job, task, position))
}

/// Records the commitment; the last one opens the task for reveal.
pub fn execute_commit(
    m: &pb::CommitResult,
    target: &Target,
    signer: &AccountId,
    found: (pb::Job, pb::Task, usize),
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let (mut job, mut task, position) = found;
    let replica = &mut task.replicas[position];
    replica.commitment = m.commitment.clone();
    replica.status = pb::ReplicaStatus::Committed as i32;
    let mut events = vec![task_event(
        "task_committed",
        &target.job,
        target.task,
        &[("worker", signer.to_hex(), true)],
    )];
    jobs::advance(
        state,
        ctx,
        &target.job,
        &mut job,
        target.task,
        &mut task,
        &mut events,
    );
    jobs::store(
        state,
        ctx,
        &target.job,
        &mut job,
        target.task,
        &task,
        &mut events,
    );
    Ok(events)
}

/// A reveal opens the signer's own commitment, in the reveal phase, with
/// fuel within the job's limit; a verified job needs the output inline.
pub fn check_reveal_stateful(
    m: &pb::RevealResult,
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<(pb::Job, pb::Task, usize), Rejection> {
    let (job, task, position) = locate(
        target,
        signer,
        state,
        &Phase {
            task: pb::TaskStatus::Reveal,
            task_hint: "reveals are taken only after task_reveal_open",
            replica: pb::ReplicaStatus::Committed,
            replica_hint: "each replica reveals once, after committing",
        },
    )?;
    if m.fuel_used > job.fuel_limit {
        return Err(invalid(
            "RevealResult",
            format!(
                "fuel_used {} is above the job's fuel_limit {}",
                m.fuel_used, job.fuel_limit
            ),
        ));
    }
    let result_hash = hash32("RevealResult", "result_hash", &m.result_hash)?;
    let expected = commitment(
        &target.job.0,
        target.task,
        &signer.0,
        &result_hash,
        m.fuel_used,
        &m.salt,
    );
    if task.replicas[position].commitment.as_slice() != expected.as_slice() {
        return Err(Rejection::CommitmentMismatch {
            job: target.job,
            task: target.task,
        });
    }
    let verified = matches!(
        job.policy.and_then(|p| p.kind),
        Some(pb::policy::Kind::Verified(_))
    );
    if verified && m.output.is_empty() {
        return Err(invalid(
            "RevealResult",
            "a Verified job's output must be revealed inline: the chain runs verify on it".into(),
        ));
    }
    Ok((job, task, position))
}

/// Records the reveal; a Verified job's output joins the verify queue, and
/// the last reveal of a quorum task settles it.
pub fn execute_reveal(
    m: &pb::RevealResult,
    target: &Target,
    signer: &AccountId,
    found: (pb::Job, pb::Task, usize),
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let (mut job, mut task, position) = found;
    let replica = &mut task.replicas[position];
    replica.result_hash = m.result_hash.clone();
    replica.fuel_used = m.fuel_used;
    replica.output = m.output.clone();
    replica.status = pb::ReplicaStatus::Revealed as i32;
    let mut events = vec![task_event(
        "task_revealed",
        &target.job,
        target.task,
        &[
            ("worker", signer.to_hex(), true),
            ("result_hash", hex::encode(&m.result_hash), false),
            ("fuel_used", m.fuel_used.to_string(), false),
        ],
    )];
    let verified = matches!(
        job.policy.and_then(|p| p.kind),
        Some(pb::policy::Kind::Verified(_))
    );
    if verified {
        // Judged at the end of a block, from the verify queue, within the
        // block's verify budget: a reveal itself costs a block nothing.
        crate::judge::enqueue(state, ctx, &target.job, target.task, &signer.0);
    } else {
        jobs::advance(
            state,
            ctx,
            &target.job,
            &mut job,
            target.task,
            &mut task,
            &mut events,
        );
    }
    jobs::store(
        state,
        ctx,
        &target.job,
        &mut job,
        target.task,
        &task,
        &mut events,
    );
    Ok(events)
}

/// Longest reason a `DeclineTask` may give.
pub const MAX_DECLINE_REASON_BYTES: usize = 256;

/// Shape of a `DeclineTask`.
pub fn check_decline_stateless(m: &pb::DeclineTask) -> Result<Target, Rejection> {
    let job = JobId(hash32("DeclineTask", "job_id", &m.job_id)?);
    if m.reason.len() > MAX_DECLINE_REASON_BYTES {
        return Err(invalid(
            "DeclineTask",
            format!(
                "reason of {} bytes is longer than {MAX_DECLINE_REASON_BYTES}",
                m.reason.len()
            ),
        ));
    }
    Ok(Target { job, task: m.task })
}

/// A task is declined by a drawn worker that has not committed, in the
/// commit phase: a committed result must be revealed.
pub fn check_decline_stateful(
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<(pb::Job, pb::Task, usize), Rejection> {
    let (job, task, position) = locate(
        target,
        signer,
        state,
        &Phase {
            task: pb::TaskStatus::Commit,
            task_hint: "a task is declined only in its commit phase",
            replica: pb::ReplicaStatus::Assigned,
            replica_hint: "a committed replica cannot decline; reveal it",
        },
    )?;
    Ok((job, task, position))
}

/// Releases the worker, keeps the replica on record as declined (so it is
/// not drawn for this task again) and opens the slot for another draw.
pub fn execute_decline(
    m: &pb::DeclineTask,
    target: &Target,
    signer: &AccountId,
    found: (pb::Job, pb::Task, usize),
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let (mut job, mut task, position) = found;
    task.replicas[position].status = pb::ReplicaStatus::Declined as i32;
    jobs::release(state, signer, &target.job, target.task);
    let mut events = vec![task_event(
        "task_declined",
        &target.job,
        target.task,
        &[
            ("worker", signer.to_hex(), true),
            ("reason", m.reason.clone(), false),
        ],
    )];
    jobs::advance(
        state,
        ctx,
        &target.job,
        &mut job,
        target.task,
        &mut task,
        &mut events,
    );
    jobs::store(
        state,
        ctx,
        &target.job,
        &mut job,
        target.task,
        &task,
        &mut events,
    );
    Ok(events)
}
