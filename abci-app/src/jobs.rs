//! The life of a job after `PostJob` (DESIGN section 4): assignment by the
//! chain, commit and reveal deadlines, settlement, payment, slashing and the
//! job's end.
//!
//! Every step works on one task at a time and leaves it in one of the
//! phases of [`pb::TaskStatus`]; [`advance`] is the single place that moves
//! a task on after any change (a commit, a reveal, a missed deadline, a
//! verdict), so the rules live in one function.
//!
//! Bounds: a task holds at most its job's `max_replicas` live replicas plus
//! the replicas that missed a deadline or were refused by `verify` (kept so
//! they are not drawn for the task again), and draws at most
//! `max_replicas x ATTEMPTS_PER_REPLICA` workers before it fails; the end of
//! a block visits at most `max_deadline_visits_per_block` deadline entries
//! and `max_assignments_per_block` pending tasks.

use std::collections::BTreeMap;

use compute_proto::{assignment_seed, pb, AccountId, JobId};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::events::{event, task_event, Event};
use crate::msg::{credit, update_stats, Ctx};
use crate::reputation::score_ppm;
use crate::state::{keys, StateRead};
use crate::store::{KvRead, StateTx};

/// Draws a task may take per replica of its ceiling before it fails: a
/// task nobody completes (every worker misses it) ends instead of cycling.
pub const ATTEMPTS_PER_REPLICA: u32 = 8;

use pb::ReplicaStatus as R;
use pb::TaskStatus as T;

fn is(status: i32, want: R) -> bool {
    status == want as i32
}

/// A replica still in the task (not refused as a cheat or by `verify`, not
/// missed, not declined).
pub fn is_live(replica: &pb::Replica) -> bool {
    !is(replica.status, R::Cheated)
        && !is(replica.status, R::Missed)
        && !is(replica.status, R::Declined)
        && !is(replica.status, R::Refused)
}

/// Live replicas of a task.
pub fn live_count(task: &pb::Task) -> u32 {
    let live = task.replicas.iter().filter(|r| is_live(r)).count();
    u32::try_from(live).unwrap_or(u32::MAX)
}

/// Replica slots waiting for a worker.
pub fn open_slots(task: &pb::Task) -> u32 {
    task.wanted.saturating_sub(live_count(task))
}

fn height(ctx: &Ctx<'_>) -> i64 {
    i64::try_from(ctx.height).unwrap_or(i64::MAX)
}

fn account(bytes: &[u8]) -> AccountId {
    crate::state::stored_account(bytes)
}

fn quorum_of(job: &pb::Job) -> Option<u32> {
    match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Quorum(q)) => Some(q.quorum),
        _ => None,
    }
}

/// `fuel x price / 10^6`, rounded down: what one replica of the winning
/// group is paid. The escrow rounds the other way, so it always covers it.
pub fn price_of(fuel: u64, price_per_mfuel: u64) -> u64 {
    let product = u128::from(fuel).saturating_mul(u128::from(price_per_mfuel));
    u64::try_from(product / 1_000_000).unwrap_or(u64::MAX)
}

/// The fuel one replica of `job` may be owed: its run and, for a Verified
/// job, the verification of its output.
pub fn replica_fuel(job: &pb::Job) -> u64 {
    let verify = match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Verified(v)) => v.verify_fuel,
        _ => 0,
    };
    job.fuel_limit.saturating_add(verify)
}

/// What a task still in its reveal phase may be owed at most: every replica
/// it may still pay (for a Verified task, every worker it may try).
pub fn task_reserve(job: &pb::Job, task: &pb::Task) -> u64 {
    let replicas = match quorum_of(job) {
        Some(_) => task.wanted,
        None => job.max_replicas,
    };
    crate::msg::post_job::escrow(1, replicas, replica_fuel(job), job.price_per_mfuel)
        .unwrap_or(u64::MAX)
}

/// Frees the worker's capacity and drops the task from its assignments.
pub fn release(state: &mut StateTx<'_>, worker: &AccountId, job: &JobId, index: u32) {
    if let Some(mut record) = state.worker(worker) {
        record.active_tasks = record.active_tasks.saturating_sub(1);
        state.put_worker(worker, &record);
    }
    state.delete_raw(keys::assignment(worker, job, index));
}

/// Counts a cheat and burns `slash_ppm` of the worker's stake.
fn punish_cheat(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    worker: &AccountId,
    job: &JobId,
    index: u32,
    why: &str,
    events: &mut Vec<Event>,
) {
    state.update_reputation(worker, |r| r.cheats = r.cheats.saturating_add(1));
    let mut slashed = 0;
    if let Some(mut record) = state.worker(worker) {
        let share =
            u128::from(record.stake).saturating_mul(u128::from(ctx.params.slash_ppm)) / 1_000_000;
        slashed = u64::try_from(share)
            .unwrap_or(record.stake)
            .min(record.stake);
        record.stake = record.stake.saturating_sub(slashed);
        state.put_worker(worker, &record);
    }
    update_stats(state, |s| {
        s.credits_slashed = s.credits_slashed.saturating_add(slashed)
    });
    events.push(task_event(
        "worker_cheated",
        job,
        index,
        &[
            ("worker", worker.to_hex(), true),
            ("slashed", slashed.to_string(), false),
            ("reason", why.to_owned(), false),
        ],
    ));
}

/// Moves a task on after any change to it. The caller then saves both with
/// [`store`].
pub fn advance(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    events: &mut Vec<Event>,
) {
    let live = live_count(task);
    let assigned = task.replicas.iter().any(|r| is(r.status, R::Assigned));
    let committed = task.replicas.iter().any(|r| is(r.status, R::Committed));
    match T::try_from(task.status) {
        Ok(T::Commit) => {
            if live < task.wanted {
                reopen(state, ctx, id, job, index, task, events);
            } else if !assigned && committed {
                open_reveal(state, ctx, id, job, index, task, events);
            } else if !assigned {
                // Every live replica had revealed before the slots grew.
                conclude(state, ctx, id, job, index, task, events);
            }
        }
        Ok(T::Reveal) if !committed => conclude(state, ctx, id, job, index, task, events),
        _ => {}
    }
}

/// A task with free slots goes back to its commit phase and waits for
/// workers; a cancelled job's task fails instead.
fn reopen(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    events: &mut Vec<Event>,
) {
    if job.status == pb::JobStatus::Cancelled as i32 {
        fail_task(
            state,
            ctx,
            id,
            job,
            index,
            task,
            "the job was cancelled and a replica left",
            events,
        );
        return;
    }
    task.status = T::Commit as i32;
    state.put_raw(keys::pending(id, index), Vec::new());
}

/// Every replica has committed: the task opens for reveal.
fn open_reveal(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &pb::Job,
    index: u32,
    task: &mut pb::Task,
    events: &mut Vec<Event>,
) {
    let due = height(ctx)
        .saturating_add(i64::try_from(ctx.params.reveal_window_blocks).unwrap_or(i64::MAX))
        .min(job.deadline_height);
    task.status = T::Reveal as i32;
    for replica in &mut task.replicas {
        if is(replica.status, R::Committed) {
            replica.deadline_height = due;
            events.push(task_event(
                "task_reveal_open",
                id,
                index,
                &[
                    ("worker", hex::encode(&replica.worker), true),
                    ("reveal_deadline", due.to_string(), false),
                ],
            ));
        }
    }
    let due = u64::try_from(due).unwrap_or(0);
    state.put_raw(keys::deadline(due, id, index), Vec::new());
}

/// Every live replica has revealed (or missed): settle, add replicas, or fail.
fn conclude(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    events: &mut Vec<Event>,
) {
    let live = live_count(task);
    let Some(quorum) = quorum_of(job) else {
        // Verified: the verdict was given at the reveal; a slot freed by a
        // missed deadline or a refused output waits for the next worker.
        if live < task.wanted {
            reopen(state, ctx, id, job, index, task, events);
        }
        return;
    };
    // Groups in sorted order: the outcome never depends on reveal order.
    let mut groups: BTreeMap<(&[u8], u64), Vec<usize>> = BTreeMap::new();
    for (i, r) in task.replicas.iter().enumerate() {
        if is(r.status, R::Revealed) {
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
        settle(state, ctx, id, job, index, task, &winners, events);
    } else if live < task.wanted {
        reopen(state, ctx, id, job, index, task, events);
    } else if task.wanted < job.max_replicas && job.status == pb::JobStatus::Open as i32 {
        let need = quorum.saturating_sub(top).max(1);
        let before = task.wanted;
        task.wanted = task.wanted.saturating_add(need).min(job.max_replicas);
        events.push(task_event(
            "task_extended",
            id,
            index,
            &[
                ("replicas", task.wanted.to_string(), false),
                ("was", before.to_string(), false),
            ],
        ));
        reopen(state, ctx, id, job, index, task, events);
    } else {
        let reason = format!(
            "no quorum: {} replicas revealed, the largest agreeing group has {top}, {quorum} needed",
            groups.values().map(Vec::len).sum::<usize>()
        );
        fail_task(state, ctx, id, job, index, task, &reason, events);
    }
}

/// Pays the winning group, punishes the other reveals, records the
/// completion.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    winners: &[usize],
    events: &mut Vec<Event>,
) {
    let Some(first) = winners.first().and_then(|&i| task.replicas.get(i)) else {
        return;
    };
    let result_hash = first.result_hash.clone();
    let fuel = first.fuel_used;
    release_live(state, id, index, task);
    let pay = price_of(fuel, job.price_per_mfuel);
    let mut paid: u64 = 0;
    let mut workers = Vec::with_capacity(winners.len());
    let mut output = Vec::new();
    for (i, replica) in task.replicas.iter_mut().enumerate() {
        let worker = account(&replica.worker);
        if winners.contains(&i) {
            replica.status = R::Agreed as i32;
            let amount = pay.min(job.escrow);
            job.escrow = job.escrow.saturating_sub(amount);
            paid = paid.saturating_add(amount);
            // Only an overflow of the worker's balance fails; the credit
            // then stays in escrow and returns to the requester.
            if credit(state, &worker, amount).is_err() {
                job.escrow = job.escrow.saturating_add(amount);
            }
            state.update_reputation(&worker, |r| {
                r.agreed = r.agreed.saturating_add(1);
                r.fuel_worked = r.fuel_worked.saturating_add(fuel);
            });
            state.put_raw(keys::worker_completion(&worker, id, index), Vec::new());
            if output.is_empty() && !replica.output.is_empty() {
                output = std::mem::take(&mut replica.output);
            }
            workers.push(replica.worker.clone());
        } else if is(replica.status, R::Revealed) || is(replica.status, R::Refused) {
            // A refused output's proof: another worker's output passed.
            let why = if is(replica.status, R::Revealed) {
                "revealed a result outside the winning group"
            } else {
                "verify refused its output and another worker's output passed"
            };
            replica.status = R::Cheated as i32;
            punish_cheat(state, ctx, &worker, id, index, why, events);
        }
    }
    workers.sort();
    // The completion record keeps the canonical output; the replicas' copies
    // would only weigh on every later read of the task.
    for replica in &mut task.replicas {
        replica.output.clear();
    }
    state.update_reputation(&account(&job.requester), |r| {
        r.tasks_received = r.tasks_received.saturating_add(1);
        r.fuel_received = r.fuel_received.saturating_add(fuel);
    });
    let completion = pb::Completion {
        job_id: id.0.to_vec(),
        task: index,
        result_hash: result_hash.clone(),
        fuel_used: fuel,
        workers: workers.clone(),
        height: height(ctx),
        time_seconds: ctx.time_seconds,
        output,
        paid,
    };
    state.put_record(keys::completion(id, index), &completion);
    task.status = T::Settled as i32;
    task.ended_height = height(ctx);
    state.delete_raw(keys::pending(id, index));
    job.tasks_settled = job.tasks_settled.saturating_add(1);
    update_stats(state, |s| {
        s.tasks_settled = s.tasks_settled.saturating_add(1)
    });
    let workers: Vec<String> = workers.iter().map(hex::encode).collect();
    events.push(task_event(
        "task_settled",
        id,
        index,
        &[
            ("result_hash", hex::encode(&result_hash), true),
            ("fuel_used", fuel.to_string(), false),
            ("workers", workers.join(","), false),
            ("paid", paid.to_string(), false),
        ],
    ));
}

/// Releases every live replica of a task that ends.
fn release_live(state: &mut StateTx<'_>, id: &JobId, index: u32, task: &pb::Task) {
    for replica in task.replicas.iter().filter(|r| is_live(r)) {
        release(state, &account(&replica.worker), id, index);
    }
}

/// Ends a task without a result; the job's escrow for it is refunded when
/// the job ends.
#[allow(clippy::too_many_arguments)]
pub fn fail_task(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    reason: &str,
    events: &mut Vec<Event>,
) {
    release_live(state, id, index, task);
    task.status = T::Failed as i32;
    task.failure = reason.to_owned();
    task.ended_height = height(ctx);
    state.delete_raw(keys::pending(id, index));
    job.tasks_failed = job.tasks_failed.saturating_add(1);
    update_stats(state, |s| s.tasks_failed = s.tasks_failed.saturating_add(1));
    events.push(task_event(
        "task_failed",
        id,
        index,
        &[("reason", reason.to_owned(), false)],
    ));
}

/// When every worker a Verified task may try had its output refused, no
/// output was proven wrong: each is paid its fuel from the escrow and
/// nobody is punished; the requester's record shows a verification that
/// failed.
pub fn pay_refused(state: &mut StateTx<'_>, job: &mut pb::Job, task: &pb::Task) {
    let mut any = false;
    for replica in task.replicas.iter().filter(|r| is(r.status, R::Refused)) {
        any = true;
        let amount = price_of(replica.fuel_used, job.price_per_mfuel).min(job.escrow);
        if credit(state, &account(&replica.worker), amount).is_ok() {
            job.escrow = job.escrow.saturating_sub(amount);
        }
    }
    if any {
        state.update_reputation(&account(&job.requester), |r| {
            r.verifications_failed = r.verifications_failed.saturating_add(1);
        });
    }
}

/// Stores a changed task and its job, ending the job when the task was its
/// last.
#[allow(clippy::too_many_arguments)]
pub fn store(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &pb::Task,
    events: &mut Vec<Event>,
) {
    state.put_task(id, index, task);
    finish_job_if_done(state, ctx, id, job, events);
    state.put_job(id, job);
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
    let requester = account(&job.requester);
    let refund = job.escrow;
    if credit(state, &requester, refund).is_ok() {
        job.escrow = 0;
    }
    if job.status == pb::JobStatus::Open as i32 {
        job.status = if job.tasks_settled == job.task_count {
            pb::JobStatus::Completed as i32
        } else {
            pb::JobStatus::Failed as i32
        };
        update_stats(state, |s| s.jobs_open = s.jobs_open.saturating_sub(1));
    }
    job.ended_height = height(ctx).max(1);
    events.push(event(
        "job_completed",
        &[
            ("job", id.to_hex(), true),
            ("master", requester.to_hex(), true),
            (
                "status",
                crate::state::job_status_name(job.status).to_owned(),
                false,
            ),
            ("settled", job.tasks_settled.to_string(), false),
            ("failed", job.tasks_failed.to_string(), false),
            ("refund", refund.to_string(), false),
        ],
    ));
}

/// One candidate of the assignment draw.
struct Candidate {
    id: AccountId,
    worker: pb::Worker,
    score: u64,
    weight: u128,
}

/// The registered workers, loaded once per block in key order.
struct Pool {
    candidates: Vec<Candidate>,
    /// For each job with a data-scattering cap touched this block, which
    /// candidates already hold its `max_tasks_per_worker` tasks: read once
    /// per job with one scan, so that a draw reads no state per candidate.
    capped: BTreeMap<JobId, Vec<bool>>,
}

impl Pool {
    fn load(state: &StateTx<'_>, params: &pb::Params) -> Self {
        let limit = usize::try_from(params.max_workers).unwrap_or(usize::MAX);
        let prefix = keys::WORKER_PREFIX;
        let candidates = state
            .scan(prefix, None, limit)
            .into_iter()
            .map(|(key, raw)| {
                let id = account(&key[prefix.len()..]);
                let worker: pb::Worker = crate::state::decode(&key, &raw);
                let score = score_ppm(&state.reputation(&id));
                let stake = worker.stake.min(params.stake_weight_cap);
                let factor =
                    u128::from(stake.checked_div(params.stake_unit).unwrap_or(0)).saturating_add(1);
                Candidate {
                    id,
                    worker,
                    score,
                    weight: u128::from(score).saturating_mul(factor),
                }
            })
            .collect();
        Self {
            candidates,
            capped: BTreeMap::new(),
        }
    }

    /// Loads which candidates hold `cap` of `id`'s tasks, once per block.
    fn load_capped(&mut self, state: &StateTx<'_>, id: &JobId, cap: u32) {
        let Pool { candidates, capped } = self;
        capped.entry(*id).or_insert_with(|| {
            let mut flags = vec![false; candidates.len()];
            let prefix = keys::workers_of_job(id);
            // One entry per worker ever drawn for the job: bounded by its
            // tasks times their draw cap.
            for (key, raw) in state.scan(&prefix, None, usize::MAX) {
                let worker = account(&key[prefix.len()..]);
                let held = <[u8; 4]>::try_from(raw.as_slice())
                    .map(u32::from_be_bytes)
                    .unwrap_or_else(|_| {
                        panic!("task count of {worker} in job {id} is not a u32; the state is corrupt, halting")
                    });
                if held >= cap {
                    if let Ok(i) = candidates.binary_search_by(|c| c.id.cmp(&worker)) {
                        flags[i] = true;
                    }
                }
            }
            flags
        });
    }

    /// Draws a worker for the next slot of `task`, or `None` when nobody
    /// is eligible.
    fn draw(&self, seed: [u8; 32], id: &JobId, job: &pb::Job, task: &pb::Task) -> Option<usize> {
        let capped = self.capped.get(id).filter(|_| job.max_tasks_per_worker > 0);
        let eligible: Vec<usize> = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                c.id.0.as_slice() != job.requester.as_slice()
                    && c.worker.active_tasks < c.worker.capacity
                    && c.score >= u64::from(job.min_reputation_ppm)
                    && c.weight > 0
                    && !task.replicas.iter().any(|r| r.worker == c.id.0)
                    && !capped.is_some_and(|flags| flags[*i])
            })
            .map(|(i, _)| i)
            .collect();
        let total: u128 = eligible
            .iter()
            .map(|&i| self.candidates[i].weight)
            .fold(0u128, u128::saturating_add);
        if total == 0 {
            return None;
        }
        let mut rng = ChaCha20Rng::from_seed(seed);
        // 128 random bits reduced modulo a total below 2^84: the bias is
        // below 2^-44, and the same on every validator.
        let wide = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        let mut point = wide.checked_rem(total).unwrap_or(0);
        for &i in &eligible {
            let weight = self.candidates[i].weight;
            if point < weight {
                return Some(i);
            }
            point = point.saturating_sub(weight);
        }
        eligible.last().copied()
    }
}

/// Fills open replica slots at the end of a block, in pending-key order
/// from where the last block stopped, at most `max_assignments_per_block`
/// tasks per block.
pub fn assign_pending(state: &mut StateTx<'_>, ctx: &Ctx<'_>, block_hash: &[u8]) -> Vec<Event> {
    let limit = usize::try_from(ctx.params.max_assignments_per_block).unwrap_or(usize::MAX);
    let cursor = state.get(&keys::pending_cursor());
    let mut entries: Vec<Vec<u8>> = state
        .scan(keys::PENDING_PREFIX, cursor.as_deref(), limit)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    if let Some(cursor) = &cursor {
        if entries.len() < limit {
            // Wrap around to the keys before the cursor (and the cursor
            // itself, when it is the only pending task).
            let wrapped: Vec<Vec<u8>> = state
                .scan(
                    keys::PENDING_PREFIX,
                    None,
                    limit.saturating_sub(entries.len()),
                )
                .into_iter()
                .map(|(key, _)| key)
                .filter(|key| key <= cursor && !entries.contains(key))
                .collect();
            entries.extend(wrapped);
        }
    }
    let mut events = Vec::new();
    if entries.is_empty() {
        return events;
    }
    let mut pool = Pool::load(state, ctx.params);
    let mut last = None;
    for key in entries {
        last = Some(key.clone());
        let (id, index) = parse_job_task(&key[keys::PENDING_PREFIX.len()..]);
        let (Some(mut job), Some(mut task)) = (state.job(&id), state.task(&id, index)) else {
            state.delete_raw(key);
            continue;
        };
        if task.status != T::Commit as i32 || job.status != pb::JobStatus::Open as i32 {
            state.delete_raw(key);
            continue;
        }
        fill_slots(
            state,
            ctx,
            block_hash,
            &mut pool,
            &id,
            &mut job,
            index,
            &mut task,
            &mut events,
        );
        if open_slots(&task) == 0 || task.status != T::Commit as i32 {
            state.delete_raw(key);
        }
        store(state, ctx, &id, &mut job, index, &task, &mut events);
    }
    if let Some(last) = last {
        state.put_raw(keys::pending_cursor(), last);
    }
    events
}

#[allow(clippy::too_many_arguments)]
fn fill_slots(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
    pool: &mut Pool,
    id: &JobId,
    job: &mut pb::Job,
    index: u32,
    task: &mut pb::Task,
    events: &mut Vec<Event>,
) {
    let max_attempts = job.max_replicas.saturating_mul(ATTEMPTS_PER_REPLICA);
    while open_slots(task) > 0 {
        if task.attempts >= max_attempts {
            let reason = format!("{} workers were drawn and none completed", task.attempts);
            fail_task(state, ctx, id, job, index, task, &reason, events);
            return;
        }
        let slot = live_count(task);
        let seed = assignment_seed(block_hash, &id.0, index, slot, task.attempts);
        if job.max_tasks_per_worker > 0 {
            pool.load_capped(state, id, job.max_tasks_per_worker);
        }
        let Some(chosen) = pool.draw(seed, id, job, task) else {
            return;
        };
        let candidate = &mut pool.candidates[chosen];
        candidate.worker.active_tasks = candidate.worker.active_tasks.saturating_add(1);
        let worker = candidate.id;
        state.put_worker(&worker, &candidate.worker);
        task.attempts = task.attempts.saturating_add(1);
        let due = height(ctx)
            .saturating_add(i64::try_from(ctx.params.commit_window_blocks).unwrap_or(i64::MAX))
            .min(job.deadline_height);
        task.replicas.push(pb::Replica {
            worker: worker.0.to_vec(),
            status: R::Assigned as i32,
            assigned_height: height(ctx),
            deadline_height: due,
            slot,
            ..Default::default()
        });
        state.put_raw(keys::assignment(&worker, id, index), Vec::new());
        let held = state.worker_job_count(&worker, id).saturating_add(1);
        state.put_raw(keys::worker_job(&worker, id), held.to_be_bytes().to_vec());
        if job.max_tasks_per_worker > 0 && held >= job.max_tasks_per_worker {
            if let Some(flags) = pool.capped.get_mut(id) {
                flags[chosen] = true;
            }
        }
        state.put_raw(
            keys::deadline(u64::try_from(due).unwrap_or(0), id, index),
            Vec::new(),
        );
        update_stats(state, |s| s.assignments = s.assignments.saturating_add(1));
        events.push(task_event(
            "task_assigned",
            id,
            index,
            &[
                ("replica", slot.to_string(), false),
                ("worker", worker.to_hex(), true),
                ("commit_deadline", due.to_string(), false),
            ],
        ));
    }
}

/// Splits `<job 32><index u32 BE>` of an index key this state machine
/// wrote; anything else is corruption, which halts the node.
fn parse_job_task(rest: &[u8]) -> (JobId, u32) {
    let parsed = rest.len() == 36;
    assert!(
        parsed,
        "index key ending {} is not <job><task>; the state is corrupt, halting",
        hex::encode(rest)
    );
    let id = crate::state::stored_job(&rest[..32]);
    let index = u32::from_be_bytes([rest[32], rest[33], rest[34], rest[35]]);
    (id, index)
}

/// Visits the deadline entries due at or before this height, in key order,
/// within `max_deadline_visits_per_block` units of work: a task's deadline
/// is one unit, a job's own deadline one per task it ends. The first entry
/// is always visited, so the queue moves even when one job alone is larger
/// than the budget; a block therefore touches at most the budget plus one
/// job's `max_tasks_per_job` tasks, and later entries wait for the next
/// block.
pub fn visit_deadlines(state: &mut StateTx<'_>, ctx: &Ctx<'_>) -> Vec<Event> {
    let budget = u64::from(ctx.params.max_deadline_visits_per_block);
    let limit = usize::try_from(budget).unwrap_or(usize::MAX);
    let mut used: u64 = 0;
    let mut events = Vec::new();
    for (key, _) in state.scan(keys::DEADLINE_PREFIX, None, limit) {
        if used >= budget {
            break;
        }
        let rest = &key[keys::DEADLINE_PREFIX.len()..];
        let due = crate::state::stored_u64(&key, rest.get(..8).unwrap_or_default());
        if due > ctx.height {
            break;
        }
        state.delete_raw(key.clone());
        let (id, index) = parse_job_task(&rest[8..]);
        if index == keys::WHOLE_JOB {
            let tasks = expire_job(state, ctx, &id, &mut events);
            used = used.saturating_add(u64::from(tasks).max(1));
        } else {
            task_deadline(state, ctx, &id, index, &mut events);
            used = used.saturating_add(1);
        }
    }
    events
}

/// Removes the replicas whose deadline passed (counted as missed) and moves
/// the task on.
fn task_deadline(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    index: u32,
    events: &mut Vec<Event>,
) {
    let (Some(mut job), Some(mut task)) = (state.job(id), state.task(id, index)) else {
        return;
    };
    let phase = task.status;
    if phase != T::Commit as i32 && phase != T::Reveal as i32 {
        return;
    }
    let now = height(ctx);
    let missed = mark_missed(&mut task, phase, now);
    if missed.is_empty() {
        return;
    }
    for replica in &missed {
        count_missed(state, id, index, replica, phase, events);
    }
    advance(state, ctx, id, &mut job, index, &mut task, events);
    store(state, ctx, id, &mut job, index, &task, events);
}

/// Marks the overdue replicas of a task as missed; returns them.
fn mark_missed(task: &mut pb::Task, phase: i32, now: i64) -> Vec<pb::Replica> {
    let mut missed = Vec::new();
    for replica in &mut task.replicas {
        if is_overdue(replica, phase, now) {
            replica.status = R::Missed as i32;
            missed.push(replica.clone());
        }
    }
    missed
}

/// An assigned replica that did not commit, or (in the reveal phase) a
/// committed one that did not reveal, by `now`.
fn is_overdue(replica: &pb::Replica, phase: i32, now: i64) -> bool {
    replica.deadline_height <= now
        && (is(replica.status, R::Assigned)
            || (phase == T::Reveal as i32 && is(replica.status, R::Committed)))
}

fn count_missed(
    state: &mut StateTx<'_>,
    id: &JobId,
    index: u32,
    replica: &pb::Replica,
    phase: i32,
    events: &mut Vec<Event>,
) {
    let worker = account(&replica.worker);
    release(state, &worker, id, index);
    state.update_reputation(&worker, |r| r.missed = r.missed.saturating_add(1));
    let what = if phase == T::Reveal as i32 {
        "reveal"
    } else {
        "commit"
    };
    events.push(task_event(
        "deadline_missed",
        id,
        index,
        &[
            ("worker", worker.to_hex(), true),
            ("phase", what.to_owned(), false),
        ],
    ));
}

/// The job's own deadline: every task still running fails, and the workers
/// that owed a commit or a reveal are counted as missed. Returns the number
/// of tasks it visited.
fn expire_job(state: &mut StateTx<'_>, ctx: &Ctx<'_>, id: &JobId, events: &mut Vec<Event>) -> u32 {
    let Some(mut job) = state.job(id) else {
        return 0;
    };
    if job.ended_height != 0 {
        return 0;
    }
    let now = height(ctx);
    for (index, mut task) in state.tasks(id, job.task_count as usize) {
        let phase = task.status;
        if phase != T::Commit as i32 && phase != T::Reveal as i32 {
            continue;
        }
        let missed = mark_missed(&mut task, phase, now);
        for replica in &missed {
            count_missed(state, id, index, replica, phase, events);
        }
        fail_task(
            state,
            ctx,
            id,
            &mut job,
            index,
            &mut task,
            "the job's deadline passed",
            events,
        );
        state.put_task(id, index, &task);
    }
    finish_job_if_done(state, ctx, id, &mut job, events);
    state.put_job(id, &job);
    job.task_count
}
