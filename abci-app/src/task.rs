//! One task of a job as every step of its life sees it: [`TaskRef`] (the
//! task being changed, with its job), which replicas are still in it, how
//! many slots wait for a worker, and giving a drawn worker back its
//! capacity.
//!
//! Bounds: a task holds at most its job's `max_replicas` live replicas plus
//! the replicas that missed a deadline, declined or were refused by
//! `verify` (kept so they are not drawn for the task again).

use compute_proto::{pb, AccountId, JobId, ReplicaStatus};

use crate::state::StateRead;
use crate::state::{keys, replica_status, stored_account};
use crate::store::StateTx;

/// One task being changed, with the job it belongs to: what every step of
/// the task's life reads and writes. Both are loaded together, changed
/// through this, and saved together ([`crate::settlement::store`]).
#[derive(Debug)]
pub struct TaskRef<'a> {
    /// The job's id.
    pub id: JobId,
    /// The task's index in the job.
    pub index: u32,
    /// The job.
    pub job: &'a mut pb::Job,
    /// The task.
    pub task: &'a mut pb::Task,
}

/// A replica still in the task (not refused as a cheat or by `verify`, not
/// missed, not declined).
pub fn is_live(replica: &pb::Replica) -> bool {
    !matches!(
        replica_status(replica),
        ReplicaStatus::Cheated
            | ReplicaStatus::Missed
            | ReplicaStatus::Declined
            | ReplicaStatus::Refused
    )
}

/// Whether any replica of `task` is in `status`.
pub fn any_replica(task: &pb::Task, status: ReplicaStatus) -> bool {
    task.replicas.iter().any(|r| replica_status(r) == status)
}

/// Live replicas of a task.
pub fn live_count(task: &pb::Task) -> u32 {
    let live = task.replicas.iter().filter(|r| is_live(r)).count();
    u32::try_from(live).unwrap_or(u32::MAX)
}

/// Replica slots waiting for a worker.
pub fn open_slots(task: &pb::Task) -> u32 {
    task.wanted.saturating_sub(live_count(task))
}

/// The quorum of a job with a quorum policy; `None` for a Verified job.
pub fn quorum_of(job: &pb::Job) -> Option<u32> {
    match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Quorum(q)) => Some(q.quorum),
        _ => None,
    }
}

/// Whether `job` is judged by `verify` rather than by a quorum.
pub fn is_verified(job: &pb::Job) -> bool {
    matches!(
        job.policy.and_then(|p| p.kind),
        Some(pb::policy::Kind::Verified(_))
    )
}

/// Frees the worker's capacity and drops the task from its assignments.
pub fn release(state: &mut StateTx<'_>, worker: &AccountId, job: &JobId, index: u32) {
    if let Some(mut record) = state.worker(worker) {
        record.active_tasks = record.active_tasks.saturating_sub(1);
        state.put_worker(worker, &record);
    }
    state.delete_raw(keys::assignment(worker, job, index));
}

/// Releases every live replica of a task that ends.
pub fn release_live(state: &mut StateTx<'_>, id: &JobId, index: u32, task: &pb::Task) {
    for replica in task.replicas.iter().filter(|r| is_live(r)) {
        release(state, &stored_account(&replica.worker), id, index);
    }
}
