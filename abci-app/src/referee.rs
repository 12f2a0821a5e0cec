//! Disputes, with the chain as referee (docs/JOBS.md, "Disputes").
//!
//! Anyone may bond credits against a settled task's result within
//! `dispute_window_blocks` of its settlement ([`crate::msg::dispute`]). The
//! dispute waits in the dispute queue; the end of every block re-runs queued
//! tasks in queue order while the block's referee budget
//! (`max_referee_fuel_per_block`) lasts ([`referee_queue`]). Each run counts
//! at its cap, the job's `fuel_limit` plus [`REFEREE_BASE_FUEL`], so a block
//! never runs more than its budget could cost, and what does not fit waits
//! for the next block in the same order on every validator.
//!
//! The referee runs the task exactly as its workers had to
//! ([`compute_sandbox::TaskLimits::for_task`]): the sandbox is deterministic,
//! so its result is the task's result, and a settled result that differs was
//! wrong, whoever agreed on it.
//!
//! * **Confirmed** (the referee got the settled result): the bond pays the
//!   proposer for the run (its fuel at the job's price) and the rest is
//!   burnt.
//! * **Overturned**: each winner is a cheat; it loses what it was paid for
//!   the task (from its stake, to refund the requester) and `slash_ppm` of
//!   the stake it has left. Revealed results equal to the referee's, which
//!   the wrong quorum outvoted, are restored: their workers get back what
//!   they were slashed and are paid for the task, both from what the
//!   winners lost. The disputer gets its bond back, plus
//!   `dispute_bounty_ppm` of what is left, and its `cheaters_reported`
//!   rises by the number of winners; the rest is burnt. The completion
//!   record is corrected to the referee's result.
//!
//! A referee's judgement is final: a task is disputed at most once.

use compute_proto::{pb, AccountId, JobId, ReplicaStatus, TaskStatus};
use compute_sandbox::Execution;

use crate::events::{task_event, Event};
use crate::ledger::{credit, ppm_share, update_stats, Ctx};
use crate::params::dispute_params;
use crate::price::price_of;
use crate::settlement::{pay_proposer, settle_as, store, Canonical};
use crate::state::{
    keys, replica_status, stored_account, stored_job, stored_module, task_status, StateRead,
};
use crate::store::{KvRead, StateTx};
use crate::task::TaskRef;

pub use crate::disputes::REFEREE_MEMORY_BYTES_MAX;
pub use crate::params::REFEREE_BASE_FUEL;

/// Judges queued disputes in queue order within the block's referee budget.
///
/// # Panics
/// When this validator cannot re-run a task for a reason of its own, or a
/// queued dispute's records are missing (corrupt state): it halts rather
/// than commit an app hash that the others do not compute.
pub fn referee_queue(state: &mut StateTx<'_>, ctx: &Ctx<'_>) -> Vec<Event> {
    let mut events = Vec::new();
    let mut budget = dispute_params(ctx.params).max_referee_fuel_per_block;
    // Every entry either fits and is judged, or stops the loop.
    let most = usize::try_from(budget / REFEREE_BASE_FUEL)
        .unwrap_or(usize::MAX)
        .max(1);
    for (key, raw) in state.scan(keys::DISPUTE_QUEUE_PREFIX, None, most) {
        let item: pb::DisputeItem = crate::state::decode(&key, &raw);
        let id = stored_job(&item.job_id);
        let corrupt = |what: &str| -> ! {
            panic!(
                "the dispute of task {} of job {id} has no {what}; the state is corrupt, halting",
                item.task
            )
        };
        let mut job = state.job(&id).unwrap_or_else(|| corrupt("job"));
        let mut task = state
            .task(&id, item.task)
            .unwrap_or_else(|| corrupt("task"));
        let referral = item.disputer.is_empty();
        if referral && (task_status(&task) != TaskStatus::Reveal || task.referee_height == 0) {
            // The task ended while it waited (its job's deadline): nothing
            // is left to settle, and nothing to run.
            state.delete_raw(key);
            continue;
        }
        let cost = job.fuel_limit.saturating_add(REFEREE_BASE_FUEL);
        if cost > budget {
            break;
        }
        budget = budget.saturating_sub(cost);
        state.delete_raw(key);
        if referral {
            let execution = run(state, ctx, &job, &task, &[]);
            let mut t = TaskRef {
                id,
                index: item.task,
                job: &mut job,
                task: &mut task,
            };
            settle_referral(state, ctx, &mut t, &execution, &mut events);
            store(state, ctx, &mut t, &mut events);
            continue;
        }
        let mut completion = state
            .completion(&id, item.task)
            .unwrap_or_else(|| corrupt("completion record"));
        if task_status(&task) != TaskStatus::Settled {
            corrupt("settled task");
        }
        let execution = run(state, ctx, &job, &task, &item.input);
        update_stats(state, |s| {
            s.bonds_held = s.bonds_held.saturating_sub(item.bond)
        });
        let disputer = stored_account(&item.disputer);
        let judged = Judged {
            id,
            index: item.task,
            disputer,
            bond: item.bond,
        };
        release_winners(state, &completion);
        let result_hash = execution.result_hash();
        if result_hash.as_slice() == completion.result_hash.as_slice()
            && execution.fuel_used == completion.fuel_used
        {
            confirm(
                state,
                ctx,
                &judged,
                (&job, execution.fuel_used),
                &mut completion,
                &mut events,
            );
        } else {
            overturn(
                state,
                ctx,
                &judged,
                Refereed {
                    job: &job,
                    task: &mut task,
                    completion: &mut completion,
                    execution: &execution,
                },
                &mut events,
            );
            state.put_task(&id, item.task, &task);
        }
        state.put_record(keys::completion(&id, item.task), &completion);
    }
    events
}

/// Settles a referred task (its reveals formed no quorum) with the
/// referee's result: the replicas that revealed it are paid, the others are
/// cheats, and the result is final. The run's fuel is paid at the job's
/// price from its escrow to the proposer, as a verification is.
fn settle_referral(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    execution: &Execution,
    events: &mut Vec<Event>,
) {
    let result_hash = execution.result_hash();
    let fuel = execution.fuel_used;
    pay_proposer(state, ctx, t.job, fuel);
    let winners: Vec<usize> = t
        .task
        .replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            replica_status(r) == ReplicaStatus::Revealed
                && r.result_hash.as_slice() == result_hash.as_slice()
                && r.fuel_used == fuel
        })
        .map(|(i, _)| i)
        .collect();
    events.push(task_event(
        "task_refereed",
        &t.id,
        t.index,
        &[
            ("result_hash", hex::encode(result_hash), false),
            ("fuel_used", fuel.to_string(), false),
            ("agreeing", winners.len().to_string(), false),
        ],
    ));
    let canonical = Canonical {
        result_hash: result_hash.to_vec(),
        fuel,
        output: inline_output(ctx, execution),
        refereed_height: ctx.height_i64(),
    };
    settle_as(state, ctx, t, &winners, canonical, events);
}

/// The referee's output, when it completed within
/// `max_inline_output_bytes` (the completion record carries it then).
fn inline_output(ctx: &Ctx<'_>, execution: &Execution) -> Vec<u8> {
    execution
        .output()
        .filter(|o| {
            u64::try_from(o.len()).unwrap_or(u64::MAX) <= ctx.params.max_inline_output_bytes
        })
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Re-runs the task of a dispute or a referral, and counts its fuel in
/// `/stats.referee_fuel_used`.
fn run(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    job: &pb::Job,
    task: &pb::Task,
    carried: &[u8],
) -> Execution {
    let module = stored_module(&job.module_id);
    let code = || {
        state.module_code(&module).unwrap_or_else(|| {
            panic!("module {module} of a job is not stored; the state is corrupt, halting")
        })
    };
    let input = match task.input.as_ref().and_then(|i| i.source.as_ref()) {
        Some(pb::task_input::Source::Inline(bytes)) => bytes.as_slice(),
        // Checked against the task's input hash when the dispute was
        // accepted.
        _ => carried,
    };
    let execution = match ctx.verifier.referee(
        module,
        code,
        input,
        job.fuel_limit,
        ctx.params.sandbox_memory_pages,
    ) {
        Ok(execution) => execution,
        Err(fault) => {
            tracing::error!(%fault, module = %module, "the referee could not run on this validator; halting instead of forking");
            panic!("the referee could not run on this validator ({fault}); halting instead of committing a different app hash");
        }
    };
    update_stats(state, |s| {
        s.referee_fuel_used = s.referee_fuel_used.saturating_add(execution.fuel_used)
    });
    execution
}

/// A dispute being judged.
struct Judged {
    id: JobId,
    index: u32,
    disputer: AccountId,
    bond: u64,
}

/// What the referee judged: the task's records and its own result.
struct Refereed<'a> {
    job: &'a pb::Job,
    task: &'a mut pb::Task,
    completion: &'a mut pb::Completion,
    execution: &'a Execution,
}

/// The winners' stakes are no longer held for this dispute.
fn release_winners(state: &mut StateTx<'_>, completion: &pb::Completion) {
    for worker in &completion.workers {
        let worker = stored_account(worker);
        if let Some(mut record) = state.worker(&worker) {
            record.disputes_pending = record.disputes_pending.saturating_sub(1);
            state.put_worker(&worker, &record);
        }
    }
}

/// The settled result was right: the bond pays the proposer for the
/// referee's run (its fuel at the job's price), and the rest is burnt.
fn confirm(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    judged: &Judged,
    (job, fuel): (&pb::Job, u64),
    completion: &mut pb::Completion,
    events: &mut Vec<Event>,
) {
    completion.refereed_height = ctx.height_i64();
    let mut referee_paid = 0;
    if let Some(proposer) = ctx.proposer {
        let cost = price_of(fuel, job.price_per_mfuel).min(judged.bond);
        if cost > 0 && credit(state, &proposer, cost).is_ok() {
            referee_paid = cost;
        }
    }
    let burnt = judged.bond.saturating_sub(referee_paid);
    update_stats(state, |s| {
        s.bonds_burnt = s.bonds_burnt.saturating_add(burnt)
    });
    events.push(task_event(
        "result_confirmed",
        &judged.id,
        judged.index,
        &[
            ("disputer", judged.disputer.to_hex(), true),
            ("referee_paid", referee_paid.to_string(), false),
            ("bond_burnt", burnt.to_string(), false),
        ],
    ));
}

/// Credits taken from the winners' stakes, paid out in order of claim;
/// what is not paid out is burnt.
struct Pool(u64);

impl Pool {
    /// Pays up to `amount` to `to`; returns what was paid.
    fn pay(&mut self, state: &mut StateTx<'_>, to: &AccountId, amount: u64) -> u64 {
        let amount = amount.min(self.0);
        if amount == 0 || credit(state, to, amount).is_err() {
            return 0;
        }
        self.0 = self.0.saturating_sub(amount);
        amount
    }
}

/// The settled result was wrong: punish its winners, restore the outvoted
/// replicas that were right, refund the requester, pay the disputer, and
/// correct the completion record.
fn overturn(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    judged: &Judged,
    r: Refereed<'_>,
    events: &mut Vec<Event>,
) {
    let Refereed {
        job,
        task,
        completion,
        execution,
    } = r;
    let (id, index) = (judged.id, judged.index);
    let new_hash = execution.result_hash();
    let new_fuel = execution.fuel_used;
    let old_fuel = completion.fuel_used;
    let mut pool = Pool(0);
    let mut wrong: u64 = 0;
    // The winners: cheats, who give back their pay and lose slash_ppm of
    // the rest of their stake.
    let paid_each = price_of(old_fuel, job.price_per_mfuel);
    for replica in &mut task.replicas {
        if replica_status(replica) != ReplicaStatus::Agreed {
            continue;
        }
        let worker = stored_account(&replica.worker);
        replica.status = ReplicaStatus::Cheated.into();
        let mut taken = 0;
        if let Some(mut record) = state.worker(&worker) {
            let clawback = paid_each.min(record.stake);
            let rest = record.stake.saturating_sub(clawback);
            taken = clawback.saturating_add(ppm_share(rest, ctx.params.slash_ppm));
            record.stake = record.stake.saturating_sub(taken);
            state.put_worker(&worker, &record);
        }
        replica.slashed = taken;
        pool.0 = pool.0.saturating_add(taken);
        wrong = wrong.saturating_add(1);
        state.update_reputation(&worker, |rep| {
            rep.agreed = rep.agreed.saturating_sub(1);
            rep.fuel_worked = rep.fuel_worked.saturating_sub(old_fuel);
            rep.cheats = rep.cheats.saturating_add(1);
        });
        state.delete_raw(keys::worker_completion(&worker, &id, index));
        events.push(task_event(
            "worker_cheated",
            &id,
            index,
            &[
                ("worker", worker.to_hex(), true),
                ("slashed", taken.to_string(), false),
                (
                    "reason",
                    "the referee re-ran the task and its result differs from the one this worker's group settled"
                        .to_owned(),
                    false,
                ),
            ],
        ));
    }
    let taken = pool.0;
    // The requester gets back what it paid for a wrong result.
    let refund = pool.pay(state, &stored_account(&job.requester), completion.paid);
    // The outvoted replicas that revealed the referee's result were right:
    // restored, repaid what they were slashed, and paid for the task.
    let pay = price_of(new_fuel, job.price_per_mfuel);
    let mut workers = Vec::new();
    let mut paid: u64 = 0;
    for replica in &mut task.replicas {
        // The winners just made cheats revealed the old result, never
        // this one.
        if replica_status(replica) != ReplicaStatus::Cheated
            || replica.result_hash.as_slice() != new_hash.as_slice()
            || replica.fuel_used != new_fuel
        {
            continue;
        }
        let worker = stored_account(&replica.worker);
        replica.status = ReplicaStatus::Agreed.into();
        let returned = pool.pay(state, &worker, replica.slashed);
        replica.slashed = replica.slashed.saturating_sub(returned);
        paid = paid.saturating_add(pool.pay(state, &worker, pay));
        state.update_reputation(&worker, |rep| {
            rep.cheats = rep.cheats.saturating_sub(1);
            rep.agreed = rep.agreed.saturating_add(1);
            rep.fuel_worked = rep.fuel_worked.saturating_add(new_fuel);
        });
        state.put_raw(keys::worker_completion(&worker, &id, index), Vec::new());
        workers.push(replica.worker.clone());
        events.push(task_event(
            "worker_vindicated",
            &id,
            index,
            &[
                ("worker", worker.to_hex(), true),
                ("returned", returned.to_string(), false),
            ],
        ));
    }
    workers.sort();
    // The disputer: its bond back, and a bounty from what is left.
    let share = ppm_share(pool.0, dispute_params(ctx.params).dispute_bounty_ppm);
    let bounty = pool.pay(state, &judged.disputer, share);
    // Only an overflow of the disputer's balance fails: the bond is then
    // burnt, as it would be for a confirmed result.
    let bond_burnt = if credit(state, &judged.disputer, judged.bond).is_ok() {
        0
    } else {
        judged.bond
    };
    state.update_reputation(&judged.disputer, |rep| {
        rep.cheaters_reported = rep.cheaters_reported.saturating_add(wrong);
        rep.support_fuel = rep.support_fuel.saturating_add(new_fuel);
    });
    let burnt = pool.0;
    update_stats(state, |s| {
        s.credits_slashed = s.credits_slashed.saturating_add(burnt);
        s.bonds_burnt = s.bonds_burnt.saturating_add(bond_burnt);
        s.results_overturned = s.results_overturned.saturating_add(1);
    });
    state.update_reputation(&stored_account(&job.requester), |rep| {
        rep.fuel_received = rep
            .fuel_received
            .saturating_sub(old_fuel)
            .saturating_add(new_fuel);
    });
    let was = hex::encode(&completion.result_hash);
    completion.result_hash = new_hash.to_vec();
    completion.fuel_used = new_fuel;
    completion.workers = workers;
    completion.output = inline_output(ctx, execution);
    completion.paid = paid;
    completion.refereed_height = ctx.height_i64();
    completion.overturned = true;
    events.push(task_event(
        "result_overturned",
        &id,
        index,
        &[
            ("disputer", judged.disputer.to_hex(), true),
            ("was", was, false),
            ("result_hash", hex::encode(new_hash), false),
            ("fuel_used", new_fuel.to_string(), false),
            ("slashed", taken.to_string(), false),
            ("refund", refund.to_string(), false),
            ("bounty", bounty.to_string(), false),
            ("burnt", burnt.to_string(), false),
        ],
    ));
}
