//! `CommitResult`: a drawn worker seals its result (DESIGN section 4, step
//! 3). The commitment binds the job, the task, the worker, the result hash,
//! the fuel and a salt, so it reveals nothing until it is opened; the last
//! commitment of a task opens it for reveal.

use compute_proto::{pb, AccountId, JobId, ReplicaStatus, TaskStatus};

use crate::codes::Rejection;
use crate::events::{task_event, Event};
use crate::ledger::Ctx;
use crate::msg::replica::{hash32, locate, Located, Phase, Target};
use crate::settlement::{advance, store};
use crate::state::StateRead;
use crate::store::StateTx;

/// Shape: a 32-byte job id and a 32-byte commitment.
pub fn check_stateless(m: &pb::CommitResult) -> Result<Target, Rejection> {
    let job = JobId(hash32("CommitResult", "job_id", &m.job_id)?);
    hash32("CommitResult", "commitment", &m.commitment)?;
    Ok(Target { job, task: m.task })
}

/// A commitment is taken from a drawn worker that has not committed, while
/// the task is in its commit phase.
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
            task_hint: "commitments are taken only in the commit phase",
            replica: ReplicaStatus::Assigned,
            replica_hint: "each replica commits once; wait for task_reveal_open and reveal",
        },
    )
}

/// Records the commitment; the last one opens the task for reveal.
pub fn execute(
    m: &pb::CommitResult,
    signer: &AccountId,
    mut found: Located,
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let replica = &mut found.task.replicas[found.position];
    replica.commitment = m.commitment.clone();
    replica.status = ReplicaStatus::Committed.into();
    let mut events = vec![task_event(
        "task_committed",
        &found.target.job,
        found.target.task,
        &[("worker", signer.to_hex(), true)],
    )];
    let mut t = found.task_ref();
    advance(state, ctx, &mut t, &mut events);
    store(state, ctx, &mut t, &mut events);
    Ok(events)
}
