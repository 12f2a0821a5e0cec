//! What `CommitResult`, `RevealResult` and `DeclineTask` share: the task a
//! message names ([`Target`]) and the signer's replica in it, which must be
//! in the phase the message needs ([`locate`]).

use compute_proto::{pb, AccountId, JobId, ReplicaStatus, TaskStatus};

use crate::codes::Rejection;
use crate::state::{replica_status, task_status, StateRead};
use crate::task::{is_live, TaskRef};

/// A task named by a message whose ids are well formed.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The job.
    pub job: JobId,
    /// The task index.
    pub task: u32,
}

/// The job, the task and the signer's replica in it, as the stateful check
/// found them: what the message's `execute` changes.
#[derive(Clone, Debug)]
pub struct Located {
    /// The task the message names.
    pub target: Target,
    /// The job.
    pub job: pb::Job,
    /// The task.
    pub task: pb::Task,
    /// Where the signer's replica is in the task.
    pub position: usize,
}

impl Located {
    /// The task and its job, to move the task on and store both.
    pub fn task_ref(&mut self) -> TaskRef<'_> {
        TaskRef {
            id: self.target.job,
            index: self.target.task,
            job: &mut self.job,
            task: &mut self.task,
        }
    }
}

/// A refusal of a malformed `msg`.
pub fn invalid(msg: &'static str, reason: String) -> Rejection {
    Rejection::InvalidMessage { msg, reason }
}

/// A 32-byte hash or id field of `msg`.
pub fn hash32(msg: &'static str, field: &str, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        invalid(
            msg,
            format!("{field} must be 32 bytes, got {}", bytes.len()),
        )
    })
}

/// The task phase and replica status a message needs, with what to do
/// instead when they differ.
pub struct Phase {
    /// The task's phase.
    pub task: TaskStatus,
    /// What to do when the task is in another phase.
    pub task_hint: &'static str,
    /// The signer's replica's status.
    pub replica: ReplicaStatus,
    /// What to do when the replica is in another status.
    pub replica_hint: &'static str,
}

/// The job, the task and the signer's replica in it, which must be in
/// `phase`.
pub fn locate(
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
    phase: &Phase,
) -> Result<Located, Rejection> {
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
        .position(|r| r.worker.as_slice() == signer.0.as_slice() && is_live(r))
        .ok_or(Rejection::NotAssigned {
            job: target.job,
            task: target.task,
            worker: *signer,
        })?;
    let status = task_status(&task);
    if status != phase.task {
        return Err(wrong_phase(target, status.name(), phase.task_hint));
    }
    let status = replica_status(&task.replicas[position]);
    if status != phase.replica {
        return Err(wrong_phase(target, status.name(), phase.replica_hint));
    }
    Ok(Located {
        target: *target,
        job,
        task,
        position,
    })
}

fn wrong_phase(target: &Target, phase: &'static str, hint: &'static str) -> Rejection {
    Rejection::WrongPhase {
        job: target.job,
        task: target.task,
        phase,
        hint,
    }
}
