//! Which settled results may be disputed, and how a task gets to the
//! referee: by a `Dispute` ([`crate::msg::dispute`]), or by the chain itself
//! when its reveals form no quorum. The referee's queue is judged in
//! [`crate::referee`].

use compute_proto::pb;

use crate::events::{task_event, Event};
use crate::ledger::Ctx;
use crate::params::dispute_params;
use crate::state::{keys, StateRead};
use crate::store::{KvRead, StateTx};
use crate::task::{quorum_of, TaskRef};

/// The most linear memory the referee gives a task: the chain's sandbox
/// engine's. A chain whose tasks may use more cannot referee them.
pub const REFEREE_MEMORY_BYTES_MAX: u64 = compute_sandbox::limits::MEMORY_BYTES_MAX_DEFAULT;

/// Why a job's results cannot be disputed.
enum Refusal {
    /// A Verified job.
    Verified,
    /// Its fuel limit is over `max_referee_fuel`.
    Fuel(u64),
    /// The chain's task memory is over what the referee gives.
    Memory(u64),
}

/// Why the results of `job` cannot be disputed, without a message: what
/// settlement asks for every task.
fn refusal(params: &pb::Params, job: &pb::Job) -> Option<Refusal> {
    if quorum_of(job).is_none() {
        return Some(Refusal::Verified);
    }
    let max = dispute_params(params).max_referee_fuel;
    if job.fuel_limit > max {
        return Some(Refusal::Fuel(max));
    }
    let memory = u64::from(params.sandbox_memory_pages)
        .saturating_mul(compute_sandbox::limits::WASM_PAGE_BYTES);
    (memory > REFEREE_MEMORY_BYTES_MAX).then_some(Refusal::Memory(memory))
}

/// Why the results of `job` cannot be disputed under `params`, or `None`
/// when they can.
pub fn not_disputable(params: &pb::Params, job: &pb::Job) -> Option<String> {
    Some(match refusal(params, job)? {
        Refusal::Verified => "its job is Verified: the output passed the job's own verify, which is the acceptance rule the requester signed".into(),
        Refusal::Fuel(max) => format!(
            "its job's fuel_limit {} is over the chain's max_referee_fuel {max}, so the referee cannot re-run it; post jobs with a fuel limit within it to have disputable results",
            job.fuel_limit
        ),
        Refusal::Memory(memory) => format!(
            "the chain's tasks may use {memory} bytes of memory (sandbox_memory_pages) and its referee at most {REFEREE_MEMORY_BYTES_MAX}"
        ),
    })
}

/// The last height a result of `job` settled at `height` may be disputed
/// at; 0 when it may not be.
pub fn disputable_until(params: &pb::Params, job: &pb::Job, height: i64) -> i64 {
    if refusal(params, job).is_some() {
        return 0;
    }
    let window = i64::try_from(dispute_params(params).dispute_window_blocks).unwrap_or(i64::MAX);
    height.saturating_add(window)
}

/// Queues a dispute for the referee.
pub fn enqueue(state: &mut StateTx<'_>, item: &pb::DisputeItem) {
    let next = state.take_sequence(keys::dispute_queue_next());
    state.put_record(keys::dispute_queue(next), item);
}

/// Disputes the queue holds at most: a `Dispute` past it is refused (the
/// chain's own referrals of tasks without a quorum are always queued). At
/// one re-run a block at the default parameters, that is a wait of about
/// this many blocks, each entry holding its bond.
pub const MAX_QUEUED_DISPUTES: u64 = 10_000;

/// Entries waiting in the dispute queue: it is consumed from the front in
/// sequence order, so the next sequence less the first one waiting.
pub fn queued(state: &impl KvRead) -> u64 {
    let next = state.counter(&keys::dispute_queue_next());
    let first = state
        .scan(keys::DISPUTE_QUEUE_PREFIX, None, 1)
        .first()
        .map(|(key, _)| {
            let sequence = key
                .get(keys::DISPUTE_QUEUE_PREFIX.len()..)
                .unwrap_or_default();
            crate::state::stored_u64(key, sequence)
        });
    first.map_or(0, |first| next.saturating_sub(first))
}

/// Whether a task of `job` whose reveals formed no quorum goes to the
/// referee: its job's results are disputable and its input is on the chain
/// (the validators never fetch a data-plane input themselves).
pub fn referees_no_quorum(params: &pb::Params, job: &pb::Job, task: &pb::Task) -> bool {
    refusal(params, job).is_none()
        && matches!(
            task.input.as_ref().and_then(|i| i.source.as_ref()),
            Some(pb::task_input::Source::Inline(_))
        )
}

/// Sends a task whose reveals formed no quorum to the referee, which
/// settles it at the end of a block.
pub fn refer(state: &mut StateTx<'_>, ctx: &Ctx<'_>, t: &mut TaskRef<'_>, events: &mut Vec<Event>) {
    t.task.referee_height = ctx.height_i64();
    enqueue(
        state,
        &pb::DisputeItem {
            job_id: t.id.0.to_vec(),
            task: t.index,
            // No disputer, no bond: the chain's own referral.
            ..Default::default()
        },
    );
    events.push(task_event(
        "task_referred",
        &t.id,
        t.index,
        &[(
            "reason",
            "the reveals formed no quorum: the chain runs the task itself instead of drawing replicas that could copy a revealed result".to_owned(),
            false,
        )],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn the_queue_counts_what_waits_from_its_front() {
        let store = MemStore::new();
        let mut state = StateTx::new(&store);
        assert_eq!(queued(&state), 0);
        for task in 0..3 {
            enqueue(
                &mut state,
                &pb::DisputeItem {
                    task,
                    ..Default::default()
                },
            );
        }
        assert_eq!(queued(&state), 3);
        state.delete_raw(keys::dispute_queue(0));
        assert_eq!(queued(&state), 2);
        state.delete_raw(keys::dispute_queue(1));
        state.delete_raw(keys::dispute_queue(2));
        assert_eq!(queued(&state), 0);
        enqueue(&mut state, &pb::DisputeItem::default());
        assert_eq!(queued(&state), 1, "sequences go on after the queue emptied");
    }
}
