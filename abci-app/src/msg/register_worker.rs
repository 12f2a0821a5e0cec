//! `RegisterWorker{capacity, stake}`: joining the pool the chain assigns
//! tasks from. The stake moves from the balance into the worker record,
//! where it can be slashed; `UnregisterWorker` returns it.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{debit, require_funds, update_stats};
use crate::state::StateRead;
use crate::store::StateTx;

const MSG: &str = "RegisterWorker";

/// Shape: a capacity within the chain's bounds, a stake at its floor.
pub fn check_stateless(msg: &pb::RegisterWorker, params: &pb::Params) -> Result<(), Rejection> {
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
pub fn check_stateful(
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
pub fn execute(
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
            ..Default::default()
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
