//! Assignment (DESIGN section 4, step 2): at the end of every block the
//! chain draws workers for the open replica slots of pending tasks.
//!
//! A draw is weighted by reputation and capped stake, among the registered
//! workers with free capacity, enough reputation for the job, no replica in
//! the task yet and (for a job that caps it) fewer than
//! `max_tasks_per_worker` of its tasks. Its randomness is a ChaCha20 stream
//! seeded by the block hash, the task and the slot, so every validator
//! draws the same worker.
//!
//! Bounds: a block fills at most `max_assignments_per_block` pending tasks,
//! resuming where the last block stopped; a task draws at most
//! `max_replicas x ATTEMPTS_PER_REPLICA` workers before it fails.

use std::collections::BTreeMap;

use compute_proto::{assignment_seed, pb, AccountId, JobId, JobStatus, ReplicaStatus, TaskStatus};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::events::{task_event, Event};
use crate::ledger::{update_stats, Ctx};
use crate::reputation::score_ppm;
use crate::settlement::{fail_task, store};
use crate::state::{job_status, keys, stored_account, stored_job_task, task_status, StateRead};
use crate::store::{KvRead, StateTx};
use crate::task::{live_count, open_slots, TaskRef};

/// Draws a task may take per replica of its ceiling before it fails: a
/// task nobody completes (every worker misses it) ends instead of cycling.
pub const ATTEMPTS_PER_REPLICA: u32 = 8;

/// One candidate of the assignment draw.
struct Candidate {
    id: AccountId,
    worker: pb::Worker,
    score: u64,
    weight: u128,
}

/// What every draw of a block reads: the block's hash and the registered
/// workers, loaded once per block in key order.
struct Pool<'h> {
    /// The block's hash: part of every draw's seed.
    block_hash: &'h [u8],
    candidates: Vec<Candidate>,
    /// For each job with a data-scattering cap touched this block, which
    /// candidates already hold its `max_tasks_per_worker` tasks: read once
    /// per job with one scan, so that a draw reads no state per candidate.
    capped: BTreeMap<JobId, Vec<bool>>,
}

impl<'h> Pool<'h> {
    fn load(state: &StateTx<'_>, params: &pb::Params, block_hash: &'h [u8]) -> Self {
        let limit = usize::try_from(params.max_workers).unwrap_or(usize::MAX);
        let prefix = keys::WORKER_PREFIX;
        let candidates = state
            .scan(prefix, None, limit)
            .into_iter()
            .map(|(key, raw)| {
                let id = stored_account(&key[prefix.len()..]);
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
            block_hash,
            candidates,
            capped: BTreeMap::new(),
        }
    }

    /// Loads which candidates hold `cap` of `id`'s tasks, once per block.
    fn load_capped(&mut self, state: &StateTx<'_>, id: &JobId, cap: u32) {
        let Pool {
            candidates, capped, ..
        } = self;
        capped.entry(*id).or_insert_with(|| {
            let mut flags = vec![false; candidates.len()];
            let prefix = keys::workers_of_job(id);
            // One entry per worker ever drawn for the job: bounded by its
            // tasks times their draw cap.
            for (key, raw) in state.scan(&prefix, None, usize::MAX) {
                let worker = stored_account(&key[prefix.len()..]);
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

    /// Draws a worker for the next slot of the task, or `None` when nobody
    /// is eligible.
    fn draw(&self, seed: [u8; 32], t: &TaskRef<'_>) -> Option<usize> {
        let job = &*t.job;
        let capped = self
            .capped
            .get(&t.id)
            .filter(|_| job.max_tasks_per_worker > 0);
        let eligible: Vec<usize> = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                c.id.0.as_slice() != job.requester.as_slice()
                    && c.worker.active_tasks < c.worker.capacity
                    && c.score >= u64::from(job.min_reputation_ppm)
                    && c.weight > 0
                    && !t.task.replicas.iter().any(|r| r.worker == c.id.0)
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
    let mut pool = Pool::load(state, ctx.params, block_hash);
    let mut last = None;
    for key in entries {
        last = Some(key.clone());
        let (id, index) = stored_job_task(&key[keys::PENDING_PREFIX.len()..]);
        let (Some(mut job), Some(mut task)) = (state.job(&id), state.task(&id, index)) else {
            state.delete_raw(key);
            continue;
        };
        if task_status(&task) != TaskStatus::Commit || job_status(&job) != JobStatus::Open {
            state.delete_raw(key);
            continue;
        }
        let mut t = TaskRef {
            id,
            index,
            job: &mut job,
            task: &mut task,
        };
        fill_slots(state, ctx, &mut pool, &mut t, &mut events);
        if open_slots(t.task) == 0 || task_status(t.task) != TaskStatus::Commit {
            state.delete_raw(key);
        }
        store(state, ctx, &mut t, &mut events);
    }
    if let Some(last) = last {
        state.put_raw(keys::pending_cursor(), last);
    }
    events
}

/// Draws workers for the task's open slots until they are full, nobody is
/// eligible, or the task has drawn all it may (then it fails).
fn fill_slots(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    pool: &mut Pool<'_>,
    t: &mut TaskRef<'_>,
    events: &mut Vec<Event>,
) {
    let max_attempts = t.job.max_replicas.saturating_mul(ATTEMPTS_PER_REPLICA);
    while open_slots(t.task) > 0 {
        if t.task.attempts >= max_attempts {
            let reason = format!("{} workers were drawn and none completed", t.task.attempts);
            fail_task(state, ctx, t, &reason, events);
            return;
        }
        let slot = live_count(t.task);
        let seed = assignment_seed(pool.block_hash, &t.id.0, t.index, slot, t.task.attempts);
        if t.job.max_tasks_per_worker > 0 {
            pool.load_capped(state, &t.id, t.job.max_tasks_per_worker);
        }
        let Some(chosen) = pool.draw(seed, t) else {
            return;
        };
        let candidate = &mut pool.candidates[chosen];
        candidate.worker.active_tasks = candidate.worker.active_tasks.saturating_add(1);
        let worker = candidate.id;
        state.put_worker(&worker, &candidate.worker);
        t.task.attempts = t.task.attempts.saturating_add(1);
        let due = ctx
            .height_i64()
            .saturating_add(i64::try_from(ctx.params.commit_window_blocks).unwrap_or(i64::MAX))
            .min(t.job.deadline_height);
        t.task.replicas.push(pb::Replica {
            worker: worker.0.to_vec(),
            status: ReplicaStatus::Assigned.into(),
            assigned_height: ctx.height_i64(),
            deadline_height: due,
            slot,
            ..Default::default()
        });
        state.put_raw(keys::assignment(&worker, &t.id, t.index), Vec::new());
        let held = state.worker_job_count(&worker, &t.id).saturating_add(1);
        state.put_raw(
            keys::worker_job(&worker, &t.id),
            held.to_be_bytes().to_vec(),
        );
        if t.job.max_tasks_per_worker > 0 && held >= t.job.max_tasks_per_worker {
            if let Some(flags) = pool.capped.get_mut(&t.id) {
                flags[chosen] = true;
            }
        }
        state.put_raw(
            keys::deadline(u64::try_from(due).unwrap_or(0), &t.id, t.index),
            Vec::new(),
        );
        update_stats(state, |s| s.assignments = s.assignments.saturating_add(1));
        events.push(task_event(
            "task_assigned",
            &t.id,
            t.index,
            &[
                ("replica", slot.to_string(), false),
                ("worker", worker.to_hex(), true),
                ("commit_deadline", due.to_string(), false),
            ],
        ));
    }
}
