//! The verify queue: how the chain judges the outputs of Verified jobs.
//!
//! A reveal of a Verified job is only recorded and queued
//! ([`enqueue`]); the end of every block runs `verify` on queued outputs in
//! queue order while the block's verify budget (`max_verify_fuel_per_block`)
//! lasts ([`judge_queue`]). Each entry is counted at its cap, its job's
//! `verify_fuel` plus [`VERIFY_BASE_FUEL`], whatever it then burns: a block
//! never runs more than the budget could cost, and what does not fit waits
//! for the next block, in the same order on every validator.
//!
//! Punishment needs proof. An output `verify` refuses is marked `Refused`,
//! its worker released and another drawn; it becomes a cheat (counted and
//! slashed) only when another worker's output for the same task passes. When
//! the job's `max_workers` outputs were all refused, nobody is slashed: the
//! task fails, each refused worker is paid its fuel from the escrow, and the
//! requester's `verifications_failed` rises (see [`crate::settlement::pay_refused`]).
//! A task that ends otherwise (its job's deadline, a cancel) leaves refused
//! outputs unpaid and unpunished: honest workers never reveal an output
//! their own `verify` refuses, so only a worker that skipped that check can
//! hold one, and paying it whenever nobody else passes would pay for
//! garbage on tasks honest workers decline.
//!
//! Each verification's fuel is paid from the job's escrow (which holds it
//! from `PostJob` on) to the block's proposer, who ran it first.

use compute_proto::{pb, JobId, ReplicaStatus, TaskStatus};

use crate::events::{task_event, Event};
use crate::ledger::{update_stats, Ctx};
use crate::settlement::{advance, fail_task, pay_proposer, pay_refused, settle, store};
use crate::state::{
    keys, replica_status, stored_account, stored_job, stored_module, task_status, StateRead,
};
use crate::store::{KvRead, StateTx};
use crate::task::{release, TaskRef};
use crate::verify::Judgement;

pub use crate::params::VERIFY_BASE_FUEL;

/// Queues the revealed output of `worker` for judgement.
pub fn enqueue(state: &mut StateTx<'_>, ctx: &Ctx<'_>, id: &JobId, index: u32, worker: &[u8]) {
    let next = state.take_sequence(keys::verify_queue_next());
    let item = pb::VerifyItem {
        job_id: id.0.to_vec(),
        task: index,
        worker: worker.to_vec(),
        height: ctx.height_i64(),
    };
    state.put_record(keys::verify_queue(next), &item);
}

/// What one queued verification costs the block budget at most.
fn budget_of(policy: &pb::VerifiedPolicy) -> u64 {
    policy.verify_fuel.saturating_add(VERIFY_BASE_FUEL)
}

/// Judges queued outputs in queue order within the block's verify budget.
///
/// # Panics
/// When this validator cannot run `verify` for a reason of its own: it halts
/// rather than commit an app hash that the others do not compute.
pub fn judge_queue(state: &mut StateTx<'_>, ctx: &Ctx<'_>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut budget = ctx.params.max_verify_fuel_per_block;
    // Every entry either fits and is judged, or stops the loop: a fixed
    // number of entries is read, bounded by what the budget can pay for.
    let most = usize::try_from(budget / VERIFY_BASE_FUEL)
        .unwrap_or(usize::MAX)
        .max(1);
    for (key, raw) in state.scan(keys::VERIFY_QUEUE_PREFIX, None, most) {
        let item: pb::VerifyItem = crate::state::decode(&key, &raw);
        let id = stored_job(&item.job_id);
        let Some(mut job) = state.job(&id) else {
            state.delete_raw(key);
            continue;
        };
        let Some(pb::policy::Kind::Verified(policy)) = job.policy.and_then(|p| p.kind) else {
            panic!("job {id} has a queued verification but no Verified policy; the state is corrupt, halting");
        };
        let Some(mut task) = state.task(&id, item.task) else {
            state.delete_raw(key);
            continue;
        };
        // The task may have ended since (the job's deadline): then nothing
        // is owed to this output's judgement any more.
        let position = task
            .replicas
            .iter()
            .position(|r| r.worker == item.worker && replica_status(r) == ReplicaStatus::Revealed);
        let (Some(position), TaskStatus::Reveal) = (position, task_status(&task)) else {
            state.delete_raw(key);
            continue;
        };
        let cost = budget_of(&policy);
        if cost > budget {
            break;
        }
        state.delete_raw(key);
        let mut t = TaskRef {
            id,
            index: item.task,
            job: &mut job,
            task: &mut task,
        };
        let judgement = judge_one(state, ctx, &t, position, &policy);
        let fuel_used = match &judgement {
            Judgement::Accepted { fuel_used } | Judgement::Refused { fuel_used, .. } => *fuel_used,
        };
        budget = budget.saturating_sub(cost);
        pay_verification(state, ctx, t.job, fuel_used);
        apply(
            state,
            ctx,
            &mut t,
            Judged {
                position,
                judgement,
            },
            &mut events,
        );
        store(state, ctx, &mut t, &mut events);
    }
    events
}

/// Runs `verify` on the output of the replica at `position` in the task.
fn judge_one(
    state: &StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &TaskRef<'_>,
    position: usize,
    policy: &pb::VerifiedPolicy,
) -> Judgement {
    let module = stored_module(&t.job.module_id);
    let code = || {
        state.module_code(&module).unwrap_or_else(|| {
            panic!("module {module} of a job is not stored; the state is corrupt, halting")
        })
    };
    let input = match t.task.input.as_ref().and_then(|i| i.source.as_ref()) {
        Some(pb::task_input::Source::Inline(bytes)) => bytes.as_slice(),
        _ => panic!("a Verified task has no inline input; the state is corrupt, halting"),
    };
    let output = &t.task.replicas[position].output;
    match ctx.verifier.judge(
        module,
        code,
        input,
        output,
        policy.verify_fuel,
        ctx.params.sandbox_memory_pages,
    ) {
        Ok(judgement) => judgement,
        Err(fault) => {
            tracing::error!(%fault, module = %module, "verify could not run on this validator; halting instead of forking");
            panic!("verify could not run on this validator ({fault}); halting instead of committing a different app hash");
        }
    }
}

/// Counts one verification and pays its fuel, at the job's price, from its
/// escrow to the proposer ([`pay_proposer`]).
fn pay_verification(state: &mut StateTx<'_>, ctx: &Ctx<'_>, job: &mut pb::Job, fuel_used: u64) {
    update_stats(state, |s| {
        s.verifications = s.verifications.saturating_add(1);
        s.verify_fuel_used = s.verify_fuel_used.saturating_add(fuel_used);
    });
    pay_proposer(state, ctx, job, fuel_used);
}

/// The verdict on the output of one replica of a task.
struct Judged {
    /// Where the replica is in the task.
    position: usize,
    /// What `verify` said of its output.
    judgement: Judgement,
}

/// Applies a verdict: an accepted output settles the task (and proves every
/// refused one a cheat); a refused one waits for proof while another worker
/// is drawn, or fails the task when no worker is left to draw.
fn apply(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    judged: Judged,
    events: &mut Vec<Event>,
) {
    let Judged {
        position,
        judgement,
    } = judged;
    match judgement {
        Judgement::Accepted { fuel_used } => {
            events.push(task_event(
                "output_verified",
                &t.id,
                t.index,
                &[
                    (
                        "worker",
                        hex::encode(&t.task.replicas[position].worker),
                        true,
                    ),
                    ("verify_fuel", fuel_used.to_string(), false),
                ],
            ));
            settle(state, ctx, t, &[position], events);
        }
        Judgement::Refused { why, fuel_used } => {
            let worker = stored_account(&t.task.replicas[position].worker);
            release(state, &worker, &t.id, t.index);
            t.task.replicas[position].status = ReplicaStatus::Refused.into();
            events.push(task_event(
                "output_refused",
                &t.id,
                t.index,
                &[
                    ("worker", worker.to_hex(), true),
                    ("reason", why, false),
                    ("verify_fuel", fuel_used.to_string(), false),
                ],
            ));
            let refused = t
                .task
                .replicas
                .iter()
                .filter(|r| replica_status(r) == ReplicaStatus::Refused)
                .count();
            if u32::try_from(refused).unwrap_or(u32::MAX) >= t.job.max_replicas {
                let reason = format!(
                    "verify refused the outputs of all {refused} workers the job allows (max_workers); nobody is punished and they are paid their fuel"
                );
                pay_refused(state, t);
                fail_task(state, ctx, t, &reason, events);
            } else {
                advance(state, ctx, t, events);
            }
        }
    }
}
