//! `Dispute{job_id, task, input, bond}`: anyone bonds credits against a
//! settled task's result within its dispute window, and the chain re-runs
//! the task at the end of a block ([`crate::referee`]).

use compute_proto::views::DisputeStatus;
use compute_proto::{pb, sha3_256, AccountId, JobId, TaskStatus};

use crate::codes::Rejection;
use crate::disputes::{enqueue, not_disputable, queued, MAX_QUEUED_DISPUTES};
use crate::events::{task_event, Event};
use crate::ledger::{debit, require_funds, update_stats, Ctx};
use crate::msg::replica::{hash32, invalid};
use crate::params::dispute_params;
use crate::state::{keys, stored_account, task_status, StateRead};
use crate::store::StateTx;

const MSG: &str = "Dispute";

/// Shape: a 32-byte job id and a positive bond.
pub fn check_stateless(m: &pb::Dispute) -> Result<JobId, Rejection> {
    let job = JobId(hash32(MSG, "job_id", &m.job_id)?);
    if m.bond == 0 {
        return Err(invalid(
            MSG,
            "bond must be positive (at least the chain's min_dispute_bond)".into(),
        ));
    }
    Ok(job)
}

/// What the stateful check found: the records the dispute changes.
pub struct Disputable {
    /// The task's completion record.
    pub completion: pb::Completion,
}

/// The task settled within the window, has not been disputed, its input is
/// carried exactly when it lives on the data plane, and the signer can pay
/// the bond.
pub fn check_stateful(
    m: &pb::Dispute,
    id: &JobId,
    signer: &AccountId,
    fee: u64,
    ctx: &Ctx<'_>,
    state: &impl StateRead,
) -> Result<Disputable, Rejection> {
    let job = state.job(id).ok_or(Rejection::UnknownJob(*id))?;
    let index = m.task;
    if index >= job.task_count {
        return Err(Rejection::UnknownTask {
            job: *id,
            task: index,
            count: job.task_count,
        });
    }
    let task = state.task(id, index).ok_or(Rejection::UnknownTask {
        job: *id,
        task: index,
        count: job.task_count,
    })?;
    let status = task_status(&task);
    if status != TaskStatus::Settled {
        return Err(Rejection::WrongPhase {
            job: *id,
            task: index,
            phase: status.name(),
            hint: "only a settled task's result can be disputed",
        });
    }
    let not = |why: String| Rejection::NotDisputable {
        job: *id,
        task: index,
        why,
    };
    let completion = state
        .completion(id, index)
        .ok_or_else(|| not("it has no completion record".into()))?;
    // Where the result stands for a dispute in this block: the rule the
    // queries answer with.
    let by = hex::encode(&completion.disputer);
    match DisputeStatus::of(&completion, ctx.height_i64().saturating_sub(1)) {
        DisputeStatus::Open => {}
        DisputeStatus::Refereed => {
            return Err(not(format!(
                "its reveals formed no quorum and the chain's referee settled it at height {}: its result is final",
                completion.refereed_height
            )))
        }
        DisputeStatus::NotDisputable => {
            return Err(not(not_disputable(ctx.params, &job).unwrap_or_else(|| {
                "its job's terms made its results final when they settled".into()
            })))
        }
        DisputeStatus::Confirmed | DisputeStatus::Overturned => {
            return Err(not(format!(
                "{by}'s dispute was judged by the referee at height {}, whose result is final",
                completion.refereed_height
            )))
        }
        DisputeStatus::Disputed => {
            return Err(not(format!(
                "{by}'s dispute of it, accepted at height {}, waits for the referee",
                completion.disputed_height
            )))
        }
        DisputeStatus::Final => {
            return Err(Rejection::DisputeWindowClosed {
                job: *id,
                task: index,
                settled: completion.height,
                until: completion.disputable_until,
            })
        }
    }
    let min = dispute_params(ctx.params).min_dispute_bond;
    if m.bond < min {
        return Err(Rejection::DisputeBondTooLow { min, got: m.bond });
    }
    check_input(m, id, &task)?;
    require_funds(state, signer, m.bond, fee)?;
    let waiting = queued(state);
    if waiting >= MAX_QUEUED_DISPUTES {
        return Err(Rejection::DisputeQueueFull {
            waiting,
            max: MAX_QUEUED_DISPUTES,
        });
    }
    Ok(Disputable { completion })
}

/// An inline input is on the chain already; a data-plane input must be
/// carried, and be the bytes the task named by hash and size.
fn check_input(m: &pb::Dispute, id: &JobId, task: &pb::Task) -> Result<(), Rejection> {
    let mismatch = |why: String| Rejection::DisputeInputMismatch {
        job: *id,
        task: m.task,
        why,
    };
    let input = task.input.as_ref();
    match input.and_then(|i| i.source.as_ref()) {
        Some(pb::task_input::Source::Inline(_)) => {
            if !m.input.is_empty() {
                return Err(mismatch(
                    "is inline in the job already: send the dispute without input".into(),
                ));
            }
        }
        Some(pb::task_input::Source::Hash(hash)) => {
            let size = input.map_or(0, |i| i.size);
            if m.input.is_empty() {
                return Err(mismatch(format!(
                    "lives on the data plane (blob {}): fetch it and carry it in the dispute",
                    hex::encode(hash)
                )));
            }
            if u64::try_from(m.input.len()).unwrap_or(u64::MAX) != size
                || sha3_256(&m.input).as_slice() != hash.as_slice()
            {
                return Err(mismatch(format!(
                    "carried ({} bytes) is not blob {} of {size} bytes that the task names",
                    m.input.len(),
                    hex::encode(hash)
                )));
            }
        }
        None => return Err(mismatch("is missing from the task record".into())),
    }
    Ok(())
}

/// Takes the bond, marks the completion disputed, holds its winners'
/// stakes, and queues the dispute for the referee.
pub fn execute(
    m: &pb::Dispute,
    id: &JobId,
    found: Disputable,
    signer: &AccountId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let Disputable { mut completion } = found;
    debit(state, signer, m.bond)?;
    completion.disputer = signer.0.to_vec();
    completion.disputed_height = ctx.height_i64();
    state.put_record(keys::completion(id, m.task), &completion);
    for worker in &completion.workers {
        let worker = stored_account(worker);
        if let Some(mut record) = state.worker(&worker) {
            record.disputes_pending = record.disputes_pending.saturating_add(1);
            state.put_worker(&worker, &record);
        }
    }
    enqueue(
        state,
        &pb::DisputeItem {
            job_id: id.0.to_vec(),
            task: m.task,
            disputer: signer.0.to_vec(),
            bond: m.bond,
            // Empty for an inline input: the check refused a carried one.
            input: m.input.clone(),
        },
    );
    update_stats(state, |s| {
        s.disputes = s.disputes.saturating_add(1);
        s.bonds_held = s.bonds_held.saturating_add(m.bond);
    });
    Ok(vec![task_event(
        "dispute_filed",
        id,
        m.task,
        &[
            ("disputer", signer.to_hex(), true),
            ("bond", m.bond.to_string(), false),
            ("until", completion.disputable_until.to_string(), false),
        ],
    )])
}
