//! Assignment (DESIGN section 4, step 2): at the end of every block the
//! chain draws workers for the open replica slots of pending tasks.
//!
//! A draw is weighted by reputation and capped stake ([`draw_weight`])
//! among the registered workers with free capacity, enough reputation for
//! the job, no replica in the task yet and (for a job that caps it) fewer
//! than `max_tasks_per_worker` of its tasks. Its randomness is a ChaCha20
//! stream seeded by the block hash, the task, the slot and the attempt, so
//! every validator draws the same worker.
//!
//! A draw takes a point of that stream below the total weight of the
//! workers with free capacity and finds the worker whose cumulative range
//! holds it in the [`DrawIndex`], in O(log workers). A worker the job or
//! the task excludes is rejected and the next point of the same stream
//! drawn, at most [`DRAW_TRIES`] times; rejection keeps the draw weighted
//! exactly over the eligible workers. When every try is rejected, the next
//! point is drawn over the eligible workers alone by scanning them in key
//! order (O(workers), what every draw cost before the index).
//!
//! Bounds: a block fills at most `max_assignments_per_block` pending tasks,
//! resuming where the last block stopped; a task draws at most
//! `max_replicas x ATTEMPTS_PER_REPLICA` workers before it fails; a draw
//! tries at most `DRAW_TRIES` points before it scans.

use std::collections::{BTreeMap, BTreeSet};

use compute_proto::{assignment_seed, pb, AccountId, JobId, JobStatus, ReplicaStatus, TaskStatus};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::draw_index::{draw_weight, CumulativeWeights, DrawIndex};
use crate::events::{task_event, Event};
use crate::ledger::{update_stats, Ctx};
use crate::reputation::score_ppm;
use crate::settlement::{fail_task, store};
use crate::state::{job_status, keys, stored_account, stored_job_task, task_status, StateRead};
use crate::store::{Delta, KvRead, Layered, StateTx};
use crate::task::{live_count, open_slots, TaskRef};

/// Draws a task may take per replica of its ceiling before it fails: a
/// task nobody completes (every worker misses it) ends instead of cycling.
pub const ATTEMPTS_PER_REPLICA: u32 = 8;

/// Points a draw takes from the index before it scans the eligible
/// workers. With half of the weight excluded, one draw in 65,536 scans;
/// a job that excludes nearly everyone scans on most draws, at the cost
/// every draw had before the index.
pub const DRAW_TRIES: u32 = 16;

/// How the draws of one block pick workers: from the index, or (app
/// version 4) by walking the whole pool.
trait Picker {
    /// The worker drawn for the slot whose seed is `seed`, or `None` when
    /// nobody is eligible.
    fn pick(&mut self, state: &StateTx<'_>, seed: [u8; 32], t: &TaskRef<'_>) -> Option<AccountId>;

    /// `worker`, whose record is now `record`, was drawn for `t` and has
    /// been drawn for `held` of its job's tasks.
    fn drawn(&mut self, worker: &AccountId, record: &pb::Worker, t: &TaskRef<'_>, held: u32);

    /// The writes of one task's visit (its draws, and the releases of a
    /// task that failed); `view` is the state with them.
    fn follow(&mut self, view: &dyn KvRead, writes: &Delta);
}

/// The next point of a draw's stream below `total` (not 0): two
/// `next_u64`, as `(first << 64) | second`, modulo `total`.
fn next_point(rng: &mut ChaCha20Rng, total: u128) -> u128 {
    // 128 random bits reduced modulo the total: the bias is below
    // total / 2^128 (about 2^-91 for 10,000 workers of the largest weight
    // under the default parameters), and the same on every validator.
    let wide = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    wide.checked_rem(total).unwrap_or(0)
}

/// Draws a position of `weights` with the stream `seed` keys: up to
/// [`DRAW_TRIES`] points below the total, the first whose position
/// `excluded(pos, false)` lets through wins; then one more point below the
/// total of the positions of positive weight that `excluded(pos, true)`
/// lets through, walked in order. `None` when no position is eligible.
fn draw(
    weights: &CumulativeWeights,
    seed: [u8; 32],
    mut excluded: impl FnMut(usize, bool) -> bool,
) -> Option<usize> {
    let total = weights.total();
    if total == 0 {
        return None;
    }
    let mut rng = ChaCha20Rng::from_seed(seed);
    for _ in 0..DRAW_TRIES {
        let pos = weights.find(next_point(&mut rng, total))?;
        if !excluded(pos, false) {
            return Some(pos);
        }
    }
    let eligible: Vec<usize> = (0..weights.len())
        .filter(|pos| weights.weight(*pos) > 0 && !excluded(*pos, true))
        .collect();
    let total = eligible
        .iter()
        .map(|pos| weights.weight(*pos))
        .fold(0u128, u128::saturating_add);
    if total == 0 {
        return None;
    }
    let mut point = next_point(&mut rng, total);
    for &pos in &eligible {
        let weight = weights.weight(pos);
        if point < weight {
            return Some(pos);
        }
        point = point.saturating_sub(weight);
    }
    eligible.last().copied()
}

/// Which workers hold `cap` of `job`'s tasks, read with one scan. One
/// entry per worker ever drawn for the job: bounded by its tasks times
/// their draw cap.
fn capped_workers(state: &StateTx<'_>, job: &JobId, cap: u32) -> BTreeSet<AccountId> {
    let prefix = keys::workers_of_job(job);
    let mut capped = BTreeSet::new();
    for (key, raw) in state.scan(&prefix, None, usize::MAX) {
        let worker = stored_account(&key[prefix.len()..]);
        let held = <[u8; 4]>::try_from(raw.as_slice())
            .map(u32::from_be_bytes)
            .unwrap_or_else(|_| {
                panic!("task count of {worker} in job {job} is not a u32; the state is corrupt, halting")
            });
        if held >= cap {
            capped.insert(worker);
        }
    }
    capped
}

/// The draws of a block over the [`DrawIndex`].
struct IndexPicker<'i> {
    index: &'i mut DrawIndex,
    params: &'i pb::Params,
    /// For each capped job whose draw had to scan this block, the workers
    /// that hold its `max_tasks_per_worker` tasks, read with one scan so
    /// that a scan reads no state per worker. A try reads the one count.
    capped: BTreeMap<JobId, BTreeSet<AccountId>>,
}

impl Picker for IndexPicker<'_> {
    fn pick(&mut self, state: &StateTx<'_>, seed: [u8; 32], t: &TaskRef<'_>) -> Option<AccountId> {
        let index = &*self.index;
        let capped = &mut self.capped;
        let job = &*t.job;
        let cap = job.max_tasks_per_worker;
        let min_score = u64::from(job.min_reputation_ppm);
        let chosen = draw(index.weights(), seed, |pos, scanning| {
            let id = index.id(pos);
            if id.0.as_slice() == job.requester.as_slice()
                || index.score(pos) < min_score
                || t.task.replicas.iter().any(|r| r.worker == id.0)
            {
                return true;
            }
            if cap == 0 {
                return false;
            }
            match capped.get(&t.id) {
                Some(set) => set.contains(id),
                None if scanning => capped
                    .entry(t.id)
                    .or_insert_with(|| capped_workers(state, &t.id, cap))
                    .contains(id),
                None => state.worker_job_count(id, &t.id) >= cap,
            }
        })?;
        Some(*index.id(chosen))
    }

    fn drawn(&mut self, worker: &AccountId, record: &pb::Worker, t: &TaskRef<'_>, held: u32) {
        self.index.set_record(worker, record, self.params);
        let cap = t.job.max_tasks_per_worker;
        if cap > 0 && held >= cap {
            if let Some(set) = self.capped.get_mut(&t.id) {
                set.insert(*worker);
            }
        }
    }

    fn follow(&mut self, view: &dyn KvRead, writes: &Delta) {
        self.index.follow(view, self.params, writes);
        // In unit tests every visit leaves the index equal to a rebuild.
        #[cfg(test)]
        if let Err(why) = self.index.check(view, self.params) {
            panic!("after a task's visit the draw index differs from the state: {why}");
        }
    }
}

/// Fills open replica slots at the end of a block, in pending-key order
/// from where the last block stopped, at most `max_assignments_per_block`
/// tasks per block.
///
/// `index` is the draw's index; `earlier` holds the block's writes below
/// `state` (its transactions). Before the first draw the index is brought
/// up to date from them and from `state`'s own (the verify queue's and the
/// deadlines'), or rebuilt when it did not follow the block before.
pub fn assign_pending(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
    index: &mut DrawIndex,
    earlier: &Delta,
) -> Vec<Event> {
    let entries = pending_entries(state, ctx);
    if entries.is_empty() {
        return Vec::new();
    }
    index.prepare(&*state, ctx.params, ctx.height, &[earlier, state.delta()]);
    let mut picker = IndexPicker {
        index,
        params: ctx.params,
        capped: BTreeMap::new(),
    };
    visit(state, ctx, block_hash, entries, &mut picker)
}

/// The assignment of app version 4: the pool loaded with one scan a block,
/// and every draw walking all of it. Kept so that a benchmark measures the
/// index against it; the chain does not call it.
pub fn assign_pending_by_pool_scan(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
) -> Vec<Event> {
    let entries = pending_entries(state, ctx);
    if entries.is_empty() {
        return Vec::new();
    }
    let mut pool = Pool::load(state, ctx.params);
    visit(state, ctx, block_hash, entries, &mut pool)
}

/// The pending tasks this block visits: at most `max_assignments_per_block`
/// keys in order from the cursor, wrapping around.
fn pending_entries(state: &StateTx<'_>, ctx: &Ctx<'_>) -> Vec<Vec<u8>> {
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
    entries
}

/// Visits the pending tasks `entries` in order and moves the cursor.
fn visit(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
    entries: Vec<Vec<u8>>,
    picker: &mut dyn Picker,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut last = None;
    for key in entries {
        // Each task's writes in a buffer of their own, so that the picker
        // sees every worker and reputation record the visit changed.
        let mut visit = StateTx::new(&*state);
        visit_task(&mut visit, ctx, block_hash, &key, picker, &mut events);
        let writes = visit.into_delta();
        picker.follow(&Layered::new(&*state, &writes), &writes);
        state.absorb(writes);
        last = Some(key);
    }
    if let Some(last) = last {
        state.put_raw(keys::pending_cursor(), last);
    }
    events
}

/// Fills the open slots of the pending task `key` names, or drops the
/// entry when the task no longer waits for workers.
fn visit_task(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
    key: &[u8],
    picker: &mut dyn Picker,
    events: &mut Vec<Event>,
) {
    let (id, index) = stored_job_task(&key[keys::PENDING_PREFIX.len()..]);
    let (Some(mut job), Some(mut task)) = (state.job(&id), state.task(&id, index)) else {
        state.delete_raw(key.to_vec());
        return;
    };
    if task_status(&task) != TaskStatus::Commit || job_status(&job) != JobStatus::Open {
        state.delete_raw(key.to_vec());
        return;
    }
    let mut t = TaskRef {
        id,
        index,
        job: &mut job,
        task: &mut task,
    };
    fill_slots(state, ctx, block_hash, picker, &mut t, events);
    if open_slots(t.task) == 0 || task_status(t.task) != TaskStatus::Commit {
        state.delete_raw(key.to_vec());
    }
    store(state, ctx, &mut t, events);
}

/// Draws workers for the task's open slots until they are full, nobody is
/// eligible, or the task has drawn all it may (then it fails).
fn fill_slots(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    block_hash: &[u8],
    picker: &mut dyn Picker,
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
        let seed = assignment_seed(block_hash, &t.id.0, t.index, slot, t.task.attempts);
        let Some(worker) = picker.pick(state, seed, t) else {
            return;
        };
        // Read from the state, not from the picker: a release earlier in
        // the block may have changed it.
        let mut record = state.worker(&worker).unwrap_or_else(|| {
            panic!("the draw picked {worker}, who is not a registered worker: the draw index is broken, halting")
        });
        record.active_tasks = record.active_tasks.saturating_add(1);
        state.put_worker(&worker, &record);
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
        picker.drawn(&worker, &record, t, held);
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

/// One candidate of app version 4's draw.
struct Candidate {
    id: AccountId,
    worker: pb::Worker,
    score: u64,
}

/// App version 4's draws: the registered workers, loaded once per block in
/// key order, and walked whole by every draw.
struct Pool<'p> {
    params: &'p pb::Params,
    candidates: Vec<Candidate>,
    /// For each capped job touched this block, which candidates already
    /// hold its `max_tasks_per_worker` tasks, read once per job.
    capped: BTreeMap<JobId, Vec<bool>>,
}

impl<'p> Pool<'p> {
    fn load(state: &StateTx<'_>, params: &'p pb::Params) -> Self {
        let limit = usize::try_from(params.max_workers).unwrap_or(usize::MAX);
        let prefix = keys::WORKER_PREFIX;
        let candidates = state
            .scan(prefix, None, limit)
            .into_iter()
            .map(|(key, raw)| {
                let id = stored_account(&key[prefix.len()..]);
                Candidate {
                    id,
                    worker: crate::state::decode(&key, &raw),
                    score: score_ppm(&state.reputation(&id)),
                }
            })
            .collect();
        Self {
            params,
            candidates,
            capped: BTreeMap::new(),
        }
    }
}

impl Picker for Pool<'_> {
    fn pick(&mut self, state: &StateTx<'_>, seed: [u8; 32], t: &TaskRef<'_>) -> Option<AccountId> {
        let job = &*t.job;
        let cap = job.max_tasks_per_worker;
        if cap > 0 {
            let Pool {
                candidates, capped, ..
            } = self;
            capped.entry(t.id).or_insert_with(|| {
                let holders = capped_workers(state, &t.id, cap);
                candidates.iter().map(|c| holders.contains(&c.id)).collect()
            });
        }
        let capped = self.capped.get(&t.id).filter(|_| cap > 0);
        let eligible: Vec<(usize, u128)> = self
            .candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let weight = draw_weight(c.score, &c.worker, self.params);
                let ok = weight > 0
                    && c.id.0.as_slice() != job.requester.as_slice()
                    && c.score >= u64::from(job.min_reputation_ppm)
                    && !t.task.replicas.iter().any(|r| r.worker == c.id.0)
                    && !capped.is_some_and(|flags| flags[i]);
                ok.then_some((i, weight))
            })
            .collect();
        let total = eligible
            .iter()
            .map(|(_, w)| *w)
            .fold(0u128, u128::saturating_add);
        if total == 0 {
            return None;
        }
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut point = next_point(&mut rng, total);
        for &(i, weight) in &eligible {
            if point < weight {
                return Some(self.candidates[i].id);
            }
            point = point.saturating_sub(weight);
        }
        eligible.last().map(|(i, _)| self.candidates[*i].id)
    }

    fn drawn(&mut self, worker: &AccountId, record: &pb::Worker, t: &TaskRef<'_>, held: u32) {
        let Ok(i) = self.candidates.binary_search_by(|c| c.id.cmp(worker)) else {
            return;
        };
        self.candidates[i].worker = *record;
        let cap = t.job.max_tasks_per_worker;
        if cap > 0 && held >= cap {
            if let Some(flags) = self.capped.get_mut(&t.id) {
                flags[i] = true;
            }
        }
    }

    fn follow(&mut self, _view: &dyn KvRead, _writes: &Delta) {
        // Version 4 read the pool once per block.
    }
}

#[cfg(test)]
// Test arithmetic: an overflow panics, which fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seed of draw `i` of the tests: a real assignment seed.
    fn seed(i: u32) -> [u8; 32] {
        assignment_seed(&[9; 32], &[7; 32], i, 0, 0)
    }

    /// What app version 4 drew: the first point walked over the eligible
    /// positions.
    fn version_4(
        weights: &[u128],
        seed: [u8; 32],
        excluded: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let eligible: Vec<usize> = (0..weights.len())
            .filter(|p| weights[*p] > 0 && !excluded(*p))
            .collect();
        let total: u128 = eligible.iter().map(|p| weights[*p]).sum();
        if total == 0 {
            return None;
        }
        let mut point = next_point(&mut ChaCha20Rng::from_seed(seed), total);
        for p in eligible {
            if point < weights[p] {
                return Some(p);
            }
            point -= weights[p];
        }
        unreachable!("the point is below the total")
    }

    proptest! {
        /// With nothing excluded, the index draws the worker app version 4
        /// drew: the first point, at the same place in key order.
        #[test]
        fn without_exclusions_the_first_point_decides_as_before(
            weights in proptest::collection::vec(0u128..1_000_000, 0..50),
            i in any::<u32>(),
        ) {
            let tree = CumulativeWeights::new(weights.clone());
            prop_assert_eq!(draw(&tree, seed(i), |_, _| false), version_4(&weights, seed(i), &|_| false));
        }

        /// When every position is excluded but for those the scan finds,
        /// the draw still ends on an eligible one, or none.
        #[test]
        fn a_draw_lands_only_on_eligible_positions(
            weights in proptest::collection::vec(0u128..100, 0..30),
            excluded in proptest::collection::btree_set(0usize..30, 0..30),
            i in any::<u32>(),
        ) {
            let tree = CumulativeWeights::new(weights.clone());
            let got = draw(&tree, seed(i), |p, _| excluded.contains(&p));
            let any_eligible = (0..weights.len()).any(|p| weights[p] > 0 && !excluded.contains(&p));
            match got {
                Some(p) => prop_assert!(weights[p] > 0 && !excluded.contains(&p)),
                None => prop_assert!(!any_eligible),
            }
        }
    }

    /// Draws `n` times and counts the positions drawn; also how many
    /// draws had to scan.
    fn histogram(weights: &[u128], excluded: &BTreeSet<usize>, n: u32) -> (Vec<u64>, u64) {
        let tree = CumulativeWeights::new(weights.to_vec());
        let mut counts = vec![0u64; weights.len()];
        let mut scans = 0u64;
        for i in 0..n {
            let mut scanned = false;
            let pos = draw(&tree, seed(i), |p, scanning| {
                scanned |= scanning;
                excluded.contains(&p)
            })
            .expect("someone is eligible");
            counts[pos] += 1;
            scans += u64::from(scanned);
        }
        (counts, scans)
    }

    /// Each count is within five standard deviations of its share of the
    /// eligible weight (a binomial count), and nothing ineligible is drawn.
    fn assert_weighted(weights: &[u128], excluded: &BTreeSet<usize>, counts: &[u64]) {
        let n: u64 = counts.iter().sum();
        let eligible: u128 = (0..weights.len())
            .filter(|p| !excluded.contains(p))
            .map(|p| weights[p])
            .sum();
        for (p, count) in counts.iter().enumerate() {
            if excluded.contains(&p) || weights[p] == 0 {
                assert_eq!(*count, 0, "position {p} is not eligible");
                continue;
            }
            let share = weights[p] as f64 / eligible as f64;
            let mean = n as f64 * share;
            let sd = (n as f64 * share * (1.0 - share)).sqrt();
            let off = (*count as f64 - mean).abs();
            assert!(
                off <= 5.0 * sd + 1.0,
                "position {p}: {count} draws, expected {mean:.0} +- {sd:.0}"
            );
        }
    }

    #[test]
    fn rejection_draws_are_weighted_over_the_eligible_workers() {
        // Forty workers of varied weight, some full (weight 0); a third of
        // them excluded, among them the heaviest.
        let weights: Vec<u128> = (0..40u128)
            .map(|i| {
                if i % 7 == 3 {
                    0
                } else {
                    1 + (i * 37) % 11 * 100_000
                }
            })
            .collect();
        let excluded: BTreeSet<usize> = (0..40).filter(|p| p % 3 == 0).chain([10]).collect();
        let (counts, scans) = histogram(&weights, &excluded, 200_000);
        assert_weighted(&weights, &excluded, &counts);
        assert!(scans < 10, "{scans} draws scanned with a third excluded");
    }

    #[test]
    fn a_job_that_excludes_nearly_everyone_still_draws_by_weight() {
        // Two tiny eligible workers among heavy excluded ones: nearly every
        // draw falls back to the scan, which keeps their 1 : 3 odds.
        let mut weights = vec![1_000_000u128; 30];
        weights[4] = 1;
        weights[17] = 3;
        let excluded: BTreeSet<usize> = (0..30).filter(|p| *p != 4 && *p != 17).collect();
        let (counts, scans) = histogram(&weights, &excluded, 20_000);
        assert_weighted(&weights, &excluded, &counts);
        assert!(scans > 19_900, "only {scans} draws scanned");
    }

    #[test]
    fn nobody_eligible_draws_nobody() {
        let tree = CumulativeWeights::new(vec![5, 0, 7]);
        assert_eq!(draw(&tree, seed(1), |_, _| true), None);
        let empty = CumulativeWeights::new(vec![0, 0]);
        assert_eq!(
            draw(&empty, seed(1), |_, _| panic!("no point is drawn")),
            None
        );
    }

    /// A pool of `workers` (`AccountId([i + 1; 32])`, capacity 1) and the
    /// jobs `(id, requester, tasks)`, every task pending with one slot.
    fn world(workers: u8, jobs: &[(u8, u8, &[pb::Task])]) -> crate::store::MemStore {
        use crate::store::Store;
        let store = crate::store::MemStore::new();
        let mut state = StateTx::new(&store);
        for i in 0..workers {
            state.put_worker(
                &AccountId([i + 1; 32]),
                &pb::Worker {
                    capacity: 1,
                    stake: 0,
                    active_tasks: 0,
                    registered_height: 1,
                    ..Default::default()
                },
            );
        }
        for (job, requester, tasks) in jobs {
            let id = JobId([*job; 32]);
            state.put_job(
                &id,
                &pb::Job {
                    requester: vec![*requester; 32],
                    status: JobStatus::Open.into(),
                    max_replicas: 1,
                    task_count: u32::try_from(tasks.len()).unwrap(),
                    deadline_height: 100,
                    ..Default::default()
                },
            );
            for (index, task) in (0u32..).zip(tasks.iter()) {
                state.put_task(&id, index, task);
                state.put_raw(keys::pending(&id, index), Vec::new());
            }
        }
        store.commit(&state.into_delta(), &pb::CommitInfo::default());
        store
    }

    /// A task that failed in a block frees its worker for the draws after
    /// it in the same block: the index follows each task's writes.
    #[test]
    fn a_worker_released_by_a_failing_task_is_drawn_in_the_same_block() {
        use crate::store::Store;
        let w1 = AccountId([1; 32]);
        let w2 = AccountId([2; 32]);
        let held = pb::Task {
            status: TaskStatus::Commit.into(),
            wanted: 2,
            attempts: ATTEMPTS_PER_REPLICA,
            replicas: vec![pb::Replica {
                worker: w1.0.to_vec(),
                status: ReplicaStatus::Committed.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let fresh = pb::Task {
            status: TaskStatus::Commit.into(),
            wanted: 1,
            ..Default::default()
        };
        // Job 1's task has drawn all it may and fails, releasing worker 1;
        // job 2 is worker 2's own, so only worker 1 can take its task.
        let store = world(2, &[(1, 9, &[held]), (2, 2, &[fresh])]);
        let mut busy = StateTx::new(&store);
        busy.put_worker(
            &w1,
            &pb::Worker {
                capacity: 1,
                active_tasks: 1,
                registered_height: 1,
                ..Default::default()
            },
        );
        store.commit(&busy.into_delta(), &pb::CommitInfo::default());
        let params = crate::params::defaults();
        let verifier = crate::verify::Verifier::default();
        let ctx = Ctx {
            params: &params,
            chain_id: "test",
            height: 5,
            proposer: None,
            time_seconds: 0,
            verifier: &verifier,
            in_block: true,
        };
        let mut index = DrawIndex::build(&store, &params, 4);
        assert_eq!(index.weights().weight(0), 0, "worker 1 is full");
        let mut state = StateTx::new(&store);
        let events = assign_pending(&mut state, &ctx, &[3; 32], &mut index, &Delta::new());
        let kinds: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
        assert_eq!(kinds, ["task_failed", "job_completed", "task_assigned"]);
        let task = state.task(&JobId([2; 32]), 0).unwrap();
        assert_eq!(task.replicas[0].worker, w1.0.to_vec());
        assert_eq!(state.worker(&w1).unwrap().active_tasks, 1);
        assert_eq!(state.worker(&w2).unwrap().active_tasks, 0);
        assert_eq!(index.check(&state, &params), Ok(()));
    }

    /// The positions a draw tried, whether it scanned, and what it drew.
    fn trace(
        weights: Vec<u128>,
        seed: [u8; 32],
        excluded: &[usize],
    ) -> (Vec<usize>, bool, Option<usize>) {
        let tree = CumulativeWeights::new(weights);
        let mut tried = Vec::new();
        let mut scanned = false;
        let got = draw(&tree, seed, |p, scanning| {
            if scanning {
                scanned = true;
            } else {
                tried.push(p);
            }
            excluded.contains(&p)
        });
        (tried, scanned, got)
    }

    /// Vectors for auditors, with the seed of block hash `09...09`, job
    /// `07...07`, task 3, slot 1, attempt 2.
    #[test]
    fn the_draw_matches_its_pinned_vectors() {
        let seed = assignment_seed(&[9; 32], &[7; 32], 3, 1, 2);
        // Weights 5, 0, 8, 1, 13, 2 with positions 0, 2 and 4 excluded:
        // three rejected points, then position 5.
        assert_eq!(
            trace(vec![5, 0, 8, 1, 13, 2], seed, &[0, 2, 4]),
            (vec![0, 4, 0, 5], false, Some(5))
        );
        // Heavy excluded workers around two light eligible ones: sixteen
        // rejected points, then a scan over weights 1 and 2.
        assert_eq!(
            trace(vec![1 << 40, 1, 1 << 40, 2], seed, &[0, 2]),
            (
                vec![2, 2, 0, 2, 0, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 2],
                true,
                Some(3)
            )
        );
    }
}
