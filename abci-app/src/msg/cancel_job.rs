//! `CancelJob{job_id}`: the requester stops an open job and gets back the
//! escrow that is not owed. Until tasks are assigned, nothing is owed.

use compute_proto::{pb, AccountId, JobId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::msg::{credit, update_stats};
use crate::state::{job_status_name, StateRead};
use crate::store::StateTx;

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
            requester: AccountId::from_slice(&job.requester).unwrap_or_default(),
        });
    }
    if job.status != pb::JobStatus::Open as i32 {
        return Err(Rejection::JobNotOpen {
            job: *id,
            status: job_status_name(job.status),
        });
    }
    Ok(job)
}

/// Refunds the escrow and marks the job cancelled.
pub fn execute(
    id: &JobId,
    mut job: pb::Job,
    signer: &AccountId,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let refund = job.escrow;
    credit(state, signer, refund)?;
    job.escrow = 0;
    job.status = pb::JobStatus::Cancelled as i32;
    state.put_job(id, &job);
    update_stats(state, |s| s.jobs_open = s.jobs_open.saturating_sub(1));
    Ok(vec![event(
        "job_cancelled",
        &[
            ("job", id.to_hex(), true),
            ("refund", refund.to_string(), false),
        ],
    )])
}
