//! How a task moves on after any change and how it ends (DESIGN section 4):
//! its phases, settlement by quorum, payment, slashing, failure, and the end
//! of its job with the refund of what is left of the escrow.
//!
//! [`advance`] is the single place that moves a task on after any change (a
//! commit, a reveal, a decline, a missed deadline, a verdict), so the rules
//! live in one function; the task then stays in one of the phases of
//! [`TaskStatus`]. What changes a task lives elsewhere: the messages in
//! [`crate::msg`], the draw in [`crate::assignment`], missed deadlines in
//! [`crate::deadlines`] and verdicts in [`crate::judge`].

use std::collections::BTreeMap;

use compute_proto::{pb, AccountId, JobId, JobStatus, ReplicaStatus, TaskStatus};

use crate::events::{event, task_event, Event};
use crate::ledger::{credit, ppm_share, update_stats, Ctx};
use crate::price::price_of;
use crate::state::{job_status, keys, replica_status, stored_account, task_status, StateRead};
use crate::store::StateTx;
use crate::task::{any_replica, live_count, quorum_of, release_live, TaskRef};

/// Moves a task on after any change to it. The caller then saves the task
/// and its job with [`store`].
pub fn advance(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    events: &mut Vec<Event>,
) {
    let live = live_count(t.task);
    let assigned = any_replica(t.task, ReplicaStatus::Assigned);
    let committed = any_replica(t.task, ReplicaStatus::Committed);
    match task_status(t.task) {
        TaskStatus::Commit => {
            if live < t.task.wanted {
                reopen(state, ctx, t, events);
            } else if !assigned && committed {
                open_reveal(state, ctx, t, events);
            } else if !assigned {
                // Every live replica had revealed before the slots grew.
                conclude(state, ctx, t, events);
            }
        }
        TaskStatus::Reveal if !committed => conclude(state, ctx, t, events),
        _ => {}
    }
}

/// A task with free slots goes back to its commit phase and waits for
/// workers; a cancelled job's task fails instead.
fn reopen(state: &mut StateTx<'_>, ctx: &Ctx<'_>, t: &mut TaskRef<'_>, events: &mut Vec<Event>) {
    if job_status(t.job) == JobStatus::Cancelled {
        fail_task(
            state,
            ctx,
            t,
            "the job was cancelled and a replica left",
            events,
        );
        return;
    }
    t.task.status = TaskStatus::Commit.into();
    state.put_raw(keys::pending(&t.id, t.index), Vec::new());
}

/// Every replica has committed: the task opens for reveal.
fn open_reveal(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    events: &mut Vec<Event>,
) {
    let due = ctx
        .height_i64()
        .saturating_add(i64::try_from(ctx.params.reveal_window_blocks).unwrap_or(i64::MAX))
        .min(t.job.deadline_height);
    t.task.status = TaskStatus::Reveal.into();
    for replica in &mut t.task.replicas {
        if replica_status(replica) == ReplicaStatus::Committed {
            replica.deadline_height = due;
            events.push(task_event(
                "task_reveal_open",
                &t.id,
                t.index,
                &[
                    ("worker", hex::encode(&replica.worker), true),
                    ("reveal_deadline", due.to_string(), false),
                ],
            ));
        }
    }
    let due = u64::try_from(due).unwrap_or(0);
    state.put_raw(keys::deadline(due, &t.id, t.index), Vec::new());
}

/// Every live replica has revealed (or missed): settle, add replicas, or fail.
fn conclude(state: &mut StateTx<'_>, ctx: &Ctx<'_>, t: &mut TaskRef<'_>, events: &mut Vec<Event>) {
    let live = live_count(t.task);
    let Some(quorum) = quorum_of(t.job) else {
        // Verified: the verdict was given at the reveal; a slot freed by a
        // missed deadline or a refused output waits for the next worker.
        if live < t.task.wanted {
            reopen(state, ctx, t, events);
        }
        return;
    };
    // Groups in sorted order: the outcome never depends on reveal order.
    let mut groups: BTreeMap<(&[u8], u64), Vec<usize>> = BTreeMap::new();
    for (i, r) in t.task.replicas.iter().enumerate() {
        if replica_status(r) == ReplicaStatus::Revealed {
            groups
                .entry((r.result_hash.as_slice(), r.fuel_used))
                .or_default()
                .push(i);
        }
    }
    let top = groups.values().map(Vec::len).max().unwrap_or(0);
    let leaders: Vec<&Vec<usize>> = groups.values().filter(|g| g.len() == top).collect();
    let top = u32::try_from(top).unwrap_or(u32::MAX);
    if top >= quorum && leaders.len() == 1 {
        let winners = leaders[0].clone();
        settle(state, ctx, t, &winners, events);
    } else if t.task.referee_height != 0 {
        // Waits for the referee.
    } else if top > 0 && crate::disputes::referees_no_quorum(ctx.params, t.job, t.task) {
        // Results are public now: rather than draw replicas that could
        // copy one, the chain runs the task itself.
        crate::disputes::refer(state, ctx, t, events);
    } else if live < t.task.wanted {
        reopen(state, ctx, t, events);
    } else if t.task.wanted < t.job.max_replicas && job_status(t.job) == JobStatus::Open {
        let need = quorum.saturating_sub(top).max(1);
        let before = t.task.wanted;
        t.task.wanted = t.task.wanted.saturating_add(need).min(t.job.max_replicas);
        events.push(task_event(
            "task_extended",
            &t.id,
            t.index,
            &[
                ("replicas", t.task.wanted.to_string(), false),
                ("was", before.to_string(), false),
            ],
        ));
        reopen(state, ctx, t, events);
    } else {
        let reason = format!(
            "no quorum: {} replicas revealed, the largest agreeing group has {top}, {quorum} needed",
            groups.values().map(Vec::len).sum::<usize>()
        );
        fail_task(state, ctx, t, &reason, events);
    }
}

/// Counts a cheat and burns `slash_ppm` of the worker's stake; returns
/// what was burnt.
fn punish_cheat(state: &mut StateTx<'_>, params: &pb::Params, worker: &AccountId) -> u64 {
    state.update_reputation(worker, |r| r.cheats = r.cheats.saturating_add(1));
    let mut slashed = 0;
    if let Some(mut record) = state.worker(worker) {
        slashed = ppm_share(record.stake, params.slash_ppm);
        record.stake = record.stake.saturating_sub(slashed);
        state.put_worker(worker, &record);
    }
    update_stats(state, |s| {
        s.credits_slashed = s.credits_slashed.saturating_add(slashed)
    });
    slashed
}

/// Pays `fuel` of chain-side work (a verification, a referee's run) at the
/// job's price from its escrow to the block's proposer, who ran it first;
/// without a known proposer it stays in the escrow. Returns what was paid.
pub fn pay_proposer(state: &mut StateTx<'_>, ctx: &Ctx<'_>, job: &mut pb::Job, fuel: u64) -> u64 {
    let Some(proposer) = ctx.proposer else {
        return 0;
    };
    let cost = price_of(fuel, job.price_per_mfuel).min(job.escrow);
    if cost == 0 || credit(state, &proposer, cost).is_err() {
        return 0;
    }
    job.escrow = job.escrow.saturating_sub(cost);
    cost
}

/// Holds `worker`'s stake until `until`, the end of a dispute window of a
/// result it was paid for.
fn hold_stake(state: &mut StateTx<'_>, worker: &AccountId, until: i64) {
    if let Some(mut record) = state.worker(worker) {
        if record.stake_locked_until < until {
            record.stake_locked_until = until;
            state.put_worker(worker, &record);
        }
    }
}

/// The result a task settles with.
pub struct Canonical {
    /// Its result hash.
    pub result_hash: Vec<u8>,
    /// The fuel it used.
    pub fuel: u64,
    /// The output when known to the chain (the referee's); otherwise a
    /// winner's inline output is kept.
    pub output: Vec<u8>,
    /// The height the referee gave it at, when the referee did (no quorum
    /// formed): then it is final, never disputable.
    pub refereed_height: i64,
}

/// Pays the winning group (the replicas at `winners`), punishes the other
/// reveals, records the completion.
pub fn settle(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    winners: &[usize],
    events: &mut Vec<Event>,
) {
    let Some(first) = winners.first().and_then(|&i| t.task.replicas.get(i)) else {
        return;
    };
    let canonical = Canonical {
        result_hash: first.result_hash.clone(),
        fuel: first.fuel_used,
        output: Vec::new(),
        refereed_height: 0,
    };
    settle_as(state, ctx, t, winners, canonical, events);
}

/// Settles a task with result `canonical`: pays the replicas at `winners`
/// (which revealed it; possibly none), punishes the other reveals, records
/// the completion.
pub fn settle_as(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    winners: &[usize],
    canonical: Canonical,
    events: &mut Vec<Event>,
) {
    let Canonical {
        result_hash,
        fuel,
        mut output,
        refereed_height,
    } = canonical;
    let (id, index) = (t.id, t.index);
    release_live(state, &id, index, t.task);
    let pay = price_of(fuel, t.job.price_per_mfuel);
    let disputable_until = if refereed_height == 0 {
        crate::disputes::disputable_until(ctx.params, t.job, ctx.height_i64())
    } else {
        0
    };
    let mut paid: u64 = 0;
    let mut workers = Vec::with_capacity(winners.len());
    for (i, replica) in t.task.replicas.iter_mut().enumerate() {
        let worker = stored_account(&replica.worker);
        let status = replica_status(replica);
        if winners.contains(&i) {
            replica.status = ReplicaStatus::Agreed.into();
            let amount = pay.min(t.job.escrow);
            t.job.escrow = t.job.escrow.saturating_sub(amount);
            paid = paid.saturating_add(amount);
            // Only an overflow of the worker's balance fails; the credit
            // then stays in escrow and returns to the requester.
            if credit(state, &worker, amount).is_err() {
                t.job.escrow = t.job.escrow.saturating_add(amount);
            }
            state.update_reputation(&worker, |r| {
                r.agreed = r.agreed.saturating_add(1);
                r.fuel_worked = r.fuel_worked.saturating_add(fuel);
            });
            state.put_raw(keys::worker_completion(&worker, &id, index), Vec::new());
            if disputable_until > 0 {
                hold_stake(state, &worker, disputable_until);
            }
            if output.is_empty() && !replica.output.is_empty() {
                output = std::mem::take(&mut replica.output);
            }
            workers.push(replica.worker.clone());
        } else if matches!(status, ReplicaStatus::Revealed | ReplicaStatus::Refused) {
            // A refused output's proof: another worker's output passed.
            let why = if status == ReplicaStatus::Revealed {
                "revealed a result outside the winning group"
            } else {
                "verify refused its output and another worker's output passed"
            };
            replica.status = ReplicaStatus::Cheated.into();
            let slashed = punish_cheat(state, ctx.params, &worker);
            replica.slashed = slashed;
            events.push(task_event(
                "worker_cheated",
                &id,
                index,
                &[
                    ("worker", worker.to_hex(), true),
                    ("slashed", slashed.to_string(), false),
                    ("reason", why.to_owned(), false),
                ],
            ));
        }
    }
    workers.sort();
    // The completion record keeps the canonical output; the replicas' copies
    // would only weigh on every later read of the task.
    for replica in &mut t.task.replicas {
        replica.output.clear();
    }
    state.update_reputation(&stored_account(&t.job.requester), |r| {
        r.tasks_received = r.tasks_received.saturating_add(1);
        r.fuel_received = r.fuel_received.saturating_add(fuel);
    });
    let completion = pb::Completion {
        job_id: id.0.to_vec(),
        task: index,
        result_hash: result_hash.clone(),
        fuel_used: fuel,
        workers: workers.clone(),
        height: ctx.height_i64(),
        time_seconds: ctx.time_seconds,
        output,
        paid,
        disputable_until,
        refereed_height,
        ..Default::default()
    };
    state.put_record(keys::completion(&id, index), &completion);
    t.task.status = TaskStatus::Settled.into();
    t.task.ended_height = ctx.height_i64();
    state.delete_raw(keys::pending(&id, index));
    t.job.tasks_settled = t.job.tasks_settled.saturating_add(1);
    update_stats(state, |s| {
        s.tasks_settled = s.tasks_settled.saturating_add(1)
    });
    let workers: Vec<String> = workers.iter().map(hex::encode).collect();
    events.push(task_event(
        "task_settled",
        &id,
        index,
        &[
            ("result_hash", hex::encode(&result_hash), true),
            ("fuel_used", fuel.to_string(), false),
            ("workers", workers.join(","), false),
            ("paid", paid.to_string(), false),
        ],
    ));
}

/// Ends a task without a result; the job's escrow for it is refunded when
/// the job ends.
pub fn fail_task(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    t: &mut TaskRef<'_>,
    reason: &str,
    events: &mut Vec<Event>,
) {
    release_live(state, &t.id, t.index, t.task);
    t.task.status = TaskStatus::Failed.into();
    t.task.failure = reason.to_owned();
    t.task.ended_height = ctx.height_i64();
    state.delete_raw(keys::pending(&t.id, t.index));
    t.job.tasks_failed = t.job.tasks_failed.saturating_add(1);
    update_stats(state, |s| s.tasks_failed = s.tasks_failed.saturating_add(1));
    events.push(task_event(
        "task_failed",
        &t.id,
        t.index,
        &[("reason", reason.to_owned(), false)],
    ));
}

/// When every worker a Verified task may try had its output refused, no
/// output was proven wrong: each is paid its fuel from the escrow and
/// nobody is punished; the requester's record shows a verification that
/// failed.
pub fn pay_refused(state: &mut StateTx<'_>, t: &mut TaskRef<'_>) {
    let mut any = false;
    let refused = t
        .task
        .replicas
        .iter()
        .filter(|r| replica_status(r) == ReplicaStatus::Refused);
    for replica in refused {
        any = true;
        let amount = price_of(replica.fuel_used, t.job.price_per_mfuel).min(t.job.escrow);
        if credit(state, &stored_account(&replica.worker), amount).is_ok() {
            t.job.escrow = t.job.escrow.saturating_sub(amount);
        }
    }
    if any {
        state.update_reputation(&stored_account(&t.job.requester), |r| {
            r.verifications_failed = r.verifications_failed.saturating_add(1);
        });
    }
}

/// Stores a changed task and its job, ending the job when the task was its
/// last.
pub fn store(state: &mut StateTx<'_>, ctx: &Ctx<'_>, t: &mut TaskRef<'_>, events: &mut Vec<Event>) {
    state.put_task(&t.id, t.index, t.task);
    finish_job_if_done(state, ctx, &t.id, t.job, events);
    state.put_job(&t.id, t.job);
}

/// Ends the job once every task has ended: refunds what is left of the
/// escrow and records the outcome.
pub fn finish_job_if_done(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    events: &mut Vec<Event>,
) {
    let ended = u64::from(job.tasks_settled)
        .saturating_add(u64::from(job.tasks_failed))
        .saturating_add(u64::from(job.tasks_cancelled));
    if job.ended_height != 0 || ended < u64::from(job.task_count) {
        return;
    }
    let requester = stored_account(&job.requester);
    let refund = job.escrow;
    if credit(state, &requester, refund).is_ok() {
        job.escrow = 0;
    }
    if job_status(job) == JobStatus::Open {
        let outcome = if job.tasks_settled == job.task_count {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        };
        job.status = outcome.into();
        update_stats(state, |s| s.jobs_open = s.jobs_open.saturating_sub(1));
    }
    job.ended_height = ctx.height_i64().max(1);
    events.push(event(
        "job_completed",
        &[
            ("job", id.to_hex(), true),
            ("master", requester.to_hex(), true),
            ("status", job_status(job).name().to_owned(), false),
            ("settled", job.tasks_settled.to_string(), false),
            ("failed", job.tasks_failed.to_string(), false),
            ("refund", refund.to_string(), false),
        ],
    ));
}
