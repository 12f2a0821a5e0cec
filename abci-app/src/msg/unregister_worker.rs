//! `UnregisterWorker{}`: leaving the pool. Only an idle worker may leave,
//! so no drawn task is left without its replica, and only once no result
//! it was paid for may still be disputed, so its stake is there to slash
//! if the referee overturns one; its stake is returned.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, update_stats};
use crate::state::{keys, StateRead};
use crate::store::StateTx;

/// Shape: nothing to check, the message is empty.
pub fn check_stateless(_msg: &pb::UnregisterWorker) -> Result<(), Rejection> {
    Ok(())
}

/// Registered, idle, and past the dispute window of every result it was
/// paid for (`height` is the block's); returns the worker's record.
pub fn check_stateful(
    worker: &AccountId,
    height: i64,
    state: &impl StateRead,
) -> Result<pb::Worker, Rejection> {
    let record = state
        .worker(worker)
        .ok_or(Rejection::UnknownWorker(*worker))?;
    if record.active_tasks > 0 {
        return Err(Rejection::WorkerBusy {
            worker: *worker,
            active: record.active_tasks,
        });
    }
    if record.disputes_pending > 0 {
        return Err(Rejection::StakeLocked {
            worker: *worker,
            why: format!(
                "{} disputes of results it was paid for wait for the referee, which may slash its stake; send UnregisterWorker once they are judged",
                record.disputes_pending
            ),
        });
    }
    if height <= record.stake_locked_until {
        return Err(Rejection::StakeLocked {
            worker: *worker,
            why: format!(
                "a result it was paid for may be disputed until height {}, and its stake answers for it; send UnregisterWorker after that height",
                record.stake_locked_until
            ),
        });
    }
    Ok(record)
}

/// Returns the stake and removes the worker from the pool.
pub fn execute(
    record: &pb::Worker,
    worker: &AccountId,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    credit(state, worker, record.stake)?;
    state.delete_raw(keys::worker(worker));
    update_stats(state, |s| s.workers = s.workers.saturating_sub(1));
    Ok(vec![event(
        "worker_unregistered",
        &[
            ("worker", worker.to_hex(), true),
            ("stake_returned", record.stake.to_string(), false),
        ],
    )])
}
