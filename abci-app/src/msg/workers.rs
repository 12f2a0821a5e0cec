//! `RegisterWorker{capacity, stake}` and `UnregisterWorker{}`: joining and
//! leaving the pool the chain assigns tasks from. The stake is moved from the
//! balance into the worker record, where it can be slashed, and returned on
//! leaving.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::msg::{credit, debit, require_funds, update_stats};
use crate::state::{keys, StateRead};
use crate::store::StateTx;

const MSG: &str = "RegisterWorker";

/// Shape: a capacity within the chain's bounds.
pub fn check_register_stateless(
    msg: &pb::RegisterWorker,
    params: &pb::Params,
) -> Result<(), Rejection> {
    if msg.capacity == 0 || msg.capacity > params.max_worker_capacity {
        return Err(Rejection::InvalidMessage {
            msg: MSG,
            reason: format!(
                "capacity {} must be between 1 and the chain's max_worker_capacity {}",
                msg.capacity, params.max_worker_capacity
            ),
        });
    }
    if msg.stake < params.min_worker_stake {
        return Err(Rejection::StakeTooLow {
            min: params.min_worker_stake,
            got: msg.stake,
        });
    }
    Ok(())
}

/// Room in the pool, not yet registered, and the stake is affordable.
pub fn check_register_stateful(
    msg: &pb::RegisterWorker,
    worker: &AccountId,
    fee: u64,
    params: &pb::Params,
    state: &impl StateRead,
) -> Result<(), Rejection> {
    if state.worker(worker).is_some() {
        return Err(Rejection::WorkerExists(*worker));
    }
    if state.stats().workers >= u64::from(params.max_workers) {
        return Err(Rejection::TooManyWorkers {
            max: params.max_workers,
        });
    }
    require_funds(state, worker, msg.stake, fee)
}

/// Locks the stake and adds the worker to the pool.
pub fn execute_register(
    msg: &pb::RegisterWorker,
    worker: &AccountId,
    height: u64,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    debit(state, worker, msg.stake)?;
    state.put_worker(
        worker,
        &pb::Worker {
            capacity: msg.capacity,
            stake: msg.stake,
            active_tasks: 0,
            registered_height: i64::try_from(height).map_err(|_| Rejection::Overflow("height"))?,
        },
    );
    update_stats(state, |s| s.workers = s.workers.saturating_add(1));
    Ok(vec![event(
        "worker_registered",
        &[
            ("worker", worker.to_hex(), true),
            ("capacity", msg.capacity.to_string(), false),
            ("stake", msg.stake.to_string(), false),
        ],
    )])
}

/// Registered and idle.
pub fn check_unregister_stateful(
    worker: &AccountId,
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
    Ok(record)
}

/// Returns the stake and removes the worker from the pool.
pub fn execute_unregister(
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
