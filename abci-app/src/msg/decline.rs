//! `DeclineTask`: a drawn worker gives a task back before committing (a
//! module it will not run, an input it cannot fetch). The worker is
//! released unpunished, its replica stays on record as declined so it is
//! not drawn for the task again, and the slot opens for another draw.

use compute_proto::{pb, AccountId, JobId, ReplicaStatus, TaskStatus};

use crate::codes::Rejection;
use crate::events::{task_event, Event};
use crate::ledger::Ctx;
use crate::msg::replica::{hash32, invalid, locate, Located, Phase, Target};
use crate::settlement::{advance, store};
use crate::state::StateRead;
use crate::store::StateTx;
use crate::task::release;

/// Longest reason a `DeclineTask` may give.
pub const MAX_DECLINE_REASON_BYTES: usize = 256;

/// Shape: a 32-byte job id and a reason within bounds.
pub fn check_stateless(m: &pb::DeclineTask) -> Result<Target, Rejection> {
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
pub fn check_stateful(
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<Located, Rejection> {
    locate(
        target,
        signer,
        state,
        &Phase {
            task: TaskStatus::Commit,
            task_hint: "a task is declined only in its commit phase",
            replica: ReplicaStatus::Assigned,
            replica_hint: "a committed replica cannot decline; reveal it",
        },
    )
}

/// Releases the worker, keeps the replica on record as declined (so it is
/// not drawn for this task again) and opens the slot for another draw.
pub fn execute(
    m: &pb::DeclineTask,
    signer: &AccountId,
    mut found: Located,
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    found.task.replicas[found.position].status = ReplicaStatus::Declined.into();
    let target = found.target;
    release(state, signer, &target.job, target.task);
    let mut events = vec![task_event(
        "task_declined",
        &target.job,
        target.task,
        &[
            ("worker", signer.to_hex(), true),
            ("reason", m.reason.clone(), false),
        ],
    )];
    let mut t = found.task_ref();
    advance(state, ctx, &mut t, &mut events);
    store(state, ctx, &mut t, &mut events);
    Ok(events)
}
