//! `CancelJob{job_id}`: the requester stops an open job and gets back the
//! escrow that is not owed.

use compute_proto::{pb, AccountId, JobId, JobStatus, TaskStatus};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, update_stats, Ctx};
use crate::price::task_reserve;
use crate::settlement::finish_job_if_done;
use crate::state::{job_status, keys, stored_account, task_status, StateRead};
use crate::store::StateTx;
use crate::task::{is_live, release};

/// Shape: a 32-byte job id.
pub fn check_stateless(msg: &pb::CancelJob) -> Result<JobId, Rejection> {
    JobId::from_slice(&msg.job_id).map_err(|_| Rejection::InvalidMessage {
        msg: "CancelJob",
        reason: format!("job_id must be 32 bytes, got {}", msg.job_id.len()),
    })
}

/// The job exists, is open, and the signer posted it.
pub fn check_stateful(
    id: &JobId,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<pb::Job, Rejection> {
    let job = state.job(id).ok_or(Rejection::UnknownJob(*id))?;
    if job.requester != signer.0 {
        return Err(Rejection::NotJobOwner {
            job: *id,
            requester: stored_account(&job.requester),
        });
    }
    let status = job_status(&job);
    if status != JobStatus::Open {
        return Err(Rejection::JobNotOpen {
            job: *id,
            status: status.name(),
        });
    }
    Ok(job)
}

/// Cancels every task still in its commit phase (its workers are released
/// unpaid and unpunished: nothing of theirs is revealed yet), keeps the
/// escrow that tasks already in their reveal phase may still be owed, and
/// refunds the rest. Those tasks settle as usual; what they do not use is
/// refunded when the last one ends.
pub fn execute(
    id: &JobId,
    mut job: pb::Job,
    signer: &AccountId,
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let mut events = Vec::new();
    let mut reserve: u64 = 0;
    for (index, mut task) in state.tasks(id, job.task_count as usize) {
        match task_status(&task) {
            TaskStatus::Commit => {
                for replica in &task.replicas {
                    if is_live(replica) {
                        release(state, &stored_account(&replica.worker), id, index);
                    }
                }
                task.status = TaskStatus::Cancelled.into();
                task.ended_height = ctx.height_i64();
                state.delete_raw(keys::pending(id, index));
                state.put_task(id, index, &task);
                job.tasks_cancelled = job.tasks_cancelled.saturating_add(1);
            }
            TaskStatus::Reveal => {
                let owed = task_reserve(&job, &task);
                reserve = reserve.saturating_add(owed);
            }
            _ => {}
        }
    }
    let reserve = reserve.min(job.escrow);
    let refund = job.escrow.saturating_sub(reserve);
    credit(state, signer, refund)?;
    job.escrow = reserve;
    job.status = JobStatus::Cancelled.into();
    update_stats(state, |s| s.jobs_open = s.jobs_open.saturating_sub(1));
    events.push(event(
        "job_cancelled",
        &[
            ("job", id.to_hex(), true),
            ("refund", refund.to_string(), false),
            ("reserved", reserve.to_string(), false),
        ],
    ));
    finish_job_if_done(state, ctx, id, &mut job, &mut events);
    state.put_job(id, &job);
    Ok(events)
}
