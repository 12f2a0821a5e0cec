//! The assignment draw's index: the registered workers in key order with
//! their draw weights in a Fenwick tree, so that a draw finds the worker
//! whose cumulative weight holds a point in O(log workers), and a weight
//! changes in O(log workers) (`docs/JOBS.md`, "Assignment").
//!
//! The index is derived state held in memory, not written to the store. It
//! is a pure function of the worker (`wrk/`) and reputation (`rep/`)
//! records and the parameters, to which the app hash already commits, so
//! storing it would prove nothing new; and a stored Fenwick tree would add
//! about log2(workers) state writes, each a leaf of the state tree, to every
//! assignment and settlement. Every validator derives the same index from
//! the same state: it is built from the records the first time a block
//! needs it (and again after a restart, a restored snapshot, a membership
//! change, or any block it did not follow), then kept up to date from the
//! keys each block writes under those two prefixes, read in key order.
//!
//! # Invariants
//! An index that follows a height equals the one [`DrawIndex::build`]
//! makes from the state after that height; tests compare the two after
//! every block (`App::check_draw_index`).

use std::collections::BTreeSet;

use compute_proto::{pb, AccountId};

use crate::reputation::score_ppm;
use crate::state::{decode, keys, stored_account, StateRead};
use crate::store::{Delta, KvRead};

/// A worker's weight in the draw: `score_ppm x (min(stake,
/// stake_weight_cap) / stake_unit + 1)`, or 0 when it has no free capacity
/// (`active_tasks >= capacity`). A `stake_unit` of 0 counts no stake.
///
/// A score is at most 10^6 and the factor at most 2^64, so a weight is
/// below 2^84 and the weights of 2^32 workers sum below 2^116: sums of
/// weights never overflow a `u128`.
pub fn draw_weight(score: u64, worker: &pb::Worker, params: &pb::Params) -> u128 {
    if worker.active_tasks >= worker.capacity {
        return 0;
    }
    let stake = worker.stake.min(params.stake_weight_cap);
    let factor = u128::from(stake.checked_div(params.stake_unit).unwrap_or(0)).saturating_add(1);
    u128::from(score).saturating_mul(factor)
}

/// Weights in a fixed order with their prefix sums in a Fenwick tree: a
/// weight changes, and the position whose cumulative range holds a point
/// is found, in O(log n).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CumulativeWeights {
    weights: Vec<u128>,
    /// One-based: `tree[i]` is the sum of the weights at positions
    /// `i - lowbit(i)` to `i - 1` (zero-based); `tree[0]` is unused.
    tree: Vec<u128>,
    total: u128,
}

/// The lowest set bit of `i`: the length of the range `tree[i]` sums.
fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

/// `sum` with one of its terms replaced. The terms of every sum here are
/// weights whose total fits a `u128` ([`draw_weight`]), so this cannot fail
/// unless the tree is broken.
fn replace_term(sum: u128, old: u128, new: u128) -> u128 {
    sum.checked_sub(old)
        .and_then(|s| s.checked_add(new))
        .unwrap_or_else(|| {
            panic!("a cumulative weight left the u128 range: the draw index is broken, halting")
        })
}

impl Default for CumulativeWeights {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl CumulativeWeights {
    /// The tree over `weights`, built in O(n).
    ///
    /// # Panics
    /// When the weights sum past `u128::MAX` (draw weights never do).
    pub fn new(weights: Vec<u128>) -> Self {
        let n = weights.len();
        let mut tree = Vec::with_capacity(n.saturating_add(1));
        tree.push(0);
        tree.extend_from_slice(&weights);
        for i in 1..=n {
            let parent = i.saturating_add(lowbit(i));
            if parent <= n {
                tree[parent] = replace_term(tree[parent], 0, tree[i]);
            }
        }
        let total = weights
            .iter()
            .try_fold(0u128, |sum, w| sum.checked_add(*w))
            .unwrap_or_else(|| {
                panic!("draw weights sum past u128: the draw index is broken, halting")
            });
        Self {
            weights,
            tree,
            total,
        }
    }

    /// How many positions.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there is no position.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The weight at `pos`.
    pub fn weight(&self, pos: usize) -> u128 {
        self.weights[pos]
    }

    /// The sum of every weight.
    pub fn total(&self) -> u128 {
        self.total
    }

    /// The sum of the weights before `pos`, in O(log n).
    pub fn before(&self, pos: usize) -> u128 {
        let mut sum = 0u128;
        let mut i = pos.min(self.len());
        while i > 0 {
            sum = replace_term(sum, 0, self.tree[i]);
            i = i.saturating_sub(lowbit(i));
        }
        sum
    }

    /// Sets the weight at `pos`, in O(log n).
    pub fn set(&mut self, pos: usize, weight: u128) {
        let old = self.weights[pos];
        if old == weight {
            return;
        }
        self.weights[pos] = weight;
        self.total = replace_term(self.total, old, weight);
        let n = self.len();
        let mut i = pos.saturating_add(1);
        while i <= n {
            self.tree[i] = replace_term(self.tree[i], old, weight);
            i = i.saturating_add(lowbit(i));
        }
    }

    /// The position whose cumulative range `[before(pos), before(pos) +
    /// weight(pos))` holds `point`, in O(log n); `None` when `point >=
    /// total`. A point on a boundary belongs to the range that starts
    /// there, so a weight of 0 is never found.
    pub fn find(&self, point: u128) -> Option<usize> {
        if point >= self.total {
            return None;
        }
        let n = self.len();
        // The descent: `pos` positions lie wholly below the point, `rest`
        // is what of the point is left past them.
        let mut pos = 0usize;
        let mut rest = point;
        let mut step = match n.checked_ilog2() {
            Some(log) => 1usize << log,
            None => 0,
        };
        while step > 0 {
            if let Some(next) = pos.checked_add(step).filter(|next| *next <= n) {
                let span = self.tree[next];
                if span <= rest {
                    pos = next;
                    rest = rest.saturating_sub(span);
                }
            }
            step >>= 1;
        }
        let found = pos < n && rest < self.weights[pos];
        assert!(
            found,
            "point {point} below the total {} found no weight: the draw index is broken, halting",
            self.total
        );
        Some(pos)
    }
}

/// Which state a [`DrawIndex`] reflects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Follows {
    /// None: it is built before its next use.
    #[default]
    Nothing,
    /// The state after the block of this height.
    After(u64),
    /// The block of this height, up to its draws.
    Within(u64),
}

/// The assignment draw's index over the registered workers, in key order:
/// each one's reputation score, and its draw weight ([`draw_weight`]) in
/// [`CumulativeWeights`]. At most `max_workers` workers (the pool's bound).
#[derive(Clone, Debug, Default)]
pub struct DrawIndex {
    follows: Follows,
    ids: Vec<AccountId>,
    scores: Vec<u64>,
    weights: CumulativeWeights,
}

impl DrawIndex {
    /// An index that follows nothing: the first block that draws builds it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `view`, the state after the block at `height`: the
    /// first `max_workers` worker records in key order, each with its
    /// reputation. O(workers) reads.
    pub fn build(view: &dyn KvRead, params: &pb::Params, height: u64) -> Self {
        let limit = usize::try_from(params.max_workers).unwrap_or(usize::MAX);
        let prefix = keys::WORKER_PREFIX;
        let records = view.scan(prefix, None, limit);
        let mut ids = Vec::with_capacity(records.len());
        let mut scores = Vec::with_capacity(records.len());
        let mut weights = Vec::with_capacity(records.len());
        for (key, raw) in records {
            let id = stored_account(&key[prefix.len()..]);
            let worker: pb::Worker = decode(&key, &raw);
            let score = score_ppm(&view.reputation(&id));
            ids.push(id);
            scores.push(score);
            weights.push(draw_weight(score, &worker, params));
        }
        Self {
            follows: Follows::After(height),
            ids,
            scores,
            weights: CumulativeWeights::new(weights),
        }
    }

    /// Forgets the state it followed (after the store was written outside
    /// the blocks, as a restored snapshot is): the next draw rebuilds it.
    pub fn mark_stale(&mut self) {
        *self = Self::default();
    }

    /// The height whose state this index reflects, between blocks; `None`
    /// when it is stale or in the middle of a block.
    pub fn follows(&self) -> Option<u64> {
        match self.follows {
            Follows::After(height) => Some(height),
            Follows::Nothing | Follows::Within(_) => None,
        }
    }

    /// How many workers it holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds no worker.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The worker at `pos`.
    pub fn id(&self, pos: usize) -> &AccountId {
        &self.ids[pos]
    }

    /// The reputation score of the worker at `pos`.
    pub fn score(&self, pos: usize) -> u64 {
        self.scores[pos]
    }

    /// The draw weights, in key order.
    pub fn weights(&self) -> &CumulativeWeights {
        &self.weights
    }

    /// The position of `id`, if it is a worker the index holds.
    pub fn position(&self, id: &AccountId) -> Option<usize> {
        self.ids.binary_search(id).ok()
    }

    /// Takes the record a draw just wrote for `id` (its `active_tasks`
    /// rose), in O(log n).
    ///
    /// # Panics
    /// When `id` is not in the index: the draw only picks workers it holds.
    pub fn set_record(&mut self, id: &AccountId, worker: &pb::Worker, params: &pb::Params) {
        let pos = self.position(id).unwrap_or_else(|| {
            panic!("drawn worker {id} is not in the draw index: it is broken, halting")
        });
        let weight = draw_weight(self.scores[pos], worker, params);
        self.weights.set(pos, weight);
    }

    /// Brings the index to `view`, the block at `height` just before its
    /// draws, whose writes since the last block are `writes`: caught up
    /// from the keys they write under `wrk/` and `rep/` when the index
    /// follows the block before, built afresh otherwise (or when a worker
    /// joined or left the pool).
    pub fn prepare(
        &mut self,
        view: &dyn KvRead,
        params: &pb::Params,
        height: u64,
        writes: &[&Delta],
    ) {
        let follows_parent =
            matches!(self.follows, Follows::After(h) if h.checked_add(1) == Some(height));
        if !(follows_parent && self.catch_up(view, params, writes)) {
            *self = Self::build(view, params, height);
        }
        self.follows = Follows::Within(height);
    }

    /// Takes `writes`, made during the draws of the block the index is in
    /// (a task's visit), as [`DrawIndex::prepare`] does: afterwards it
    /// reflects `view`.
    pub fn follow(&mut self, view: &dyn KvRead, params: &pb::Params, writes: &Delta) {
        let Follows::Within(height) = self.follows else {
            panic!("the draw index followed a draw outside a block: it is broken, halting");
        };
        if !self.catch_up(view, params, &[writes]) {
            *self = Self::build(view, params, height);
            self.follows = Follows::Within(height);
        }
    }

    /// Ends the block at `height`, whose writes are all in `delta` and
    /// whose state is `view`: the index then follows it. An index that
    /// did not follow the block before, or that would need a rebuild,
    /// turns stale instead; the next block that draws builds it.
    pub fn finish_block(
        &mut self,
        view: &dyn KvRead,
        params: &pb::Params,
        height: u64,
        delta: &Delta,
    ) {
        let followed = match self.follows {
            Follows::Within(h) => h == height,
            Follows::After(h) => h.checked_add(1) == Some(height),
            Follows::Nothing => false,
        };
        if followed && self.catch_up(view, params, &[delta]) {
            self.follows = Follows::After(height);
        } else {
            self.mark_stale();
        }
    }

    /// Reads again, from `view`, every worker whose record or reputation
    /// `writes` touch. `false` when one of them joined or left the pool
    /// (the index is then partly updated, and must be rebuilt).
    fn catch_up(&mut self, view: &dyn KvRead, params: &pb::Params, writes: &[&Delta]) -> bool {
        // Accounts in key order: a set, so each is read once.
        let mut touched = BTreeSet::new();
        for delta in writes {
            for prefix in [keys::WORKER_PREFIX, keys::REPUTATION_PREFIX] {
                for (key, _) in delta.range(prefix, None) {
                    touched.insert(stored_account(&key[prefix.len()..]));
                }
            }
        }
        for id in &touched {
            match (self.position(id), view.worker(id)) {
                (Some(pos), Some(worker)) => {
                    let score = score_ppm(&view.reputation(id));
                    self.scores[pos] = score;
                    self.weights.set(pos, draw_weight(score, &worker, params));
                }
                (None, None) => {}
                (Some(_), None) | (None, Some(_)) => return false,
            }
        }
        true
    }

    /// Compares this index with the one [`DrawIndex::build`] makes from
    /// `view`: the check tests run after every block.
    ///
    /// # Errors
    /// The first difference found, as text.
    pub fn check(&self, view: &dyn KvRead, params: &pb::Params) -> Result<(), String> {
        let fresh = Self::build(view, params, 0);
        if self.ids != fresh.ids {
            return Err(format!(
                "the index holds {} workers, the state {}",
                self.ids.len(),
                fresh.ids.len()
            ));
        }
        for (pos, id) in self.ids.iter().enumerate() {
            let (score, weight) = (self.scores[pos], self.weights.weight(pos));
            let (want_score, want_weight) = (fresh.scores[pos], fresh.weights.weight(pos));
            if (score, weight) != (want_score, want_weight) {
                return Err(format!(
                    "worker {id}: the index holds score {score} weight {weight}, the state {want_score} and {want_weight}"
                ));
            }
        }
        if self.weights != fresh.weights {
            return Err("the Fenwick tree differs from one built from the same weights".into());
        }
        Ok(())
    }
}

#[cfg(test)]
// Test arithmetic: an overflow panics, which fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::state::keys;
    use crate::store::{MemStore, StateTx, Store};
    use proptest::prelude::*;

    /// The position a linear walk finds, as the draw of app version 4 did.
    fn walk(weights: &[u128], point: u128) -> Option<usize> {
        let mut rest = point;
        for (pos, w) in weights.iter().enumerate() {
            if rest < *w {
                return Some(pos);
            }
            rest -= w;
        }
        None
    }

    fn check_against_walk(tree: &CumulativeWeights, weights: &[u128]) {
        assert_eq!(tree.total(), weights.iter().sum::<u128>());
        let mut before = 0u128;
        for (pos, w) in weights.iter().enumerate() {
            assert_eq!(tree.before(pos), before, "prefix sum before {pos}");
            // Every boundary, and the last point of each range.
            for point in [before, before + w, (before + w).saturating_sub(1)] {
                assert_eq!(tree.find(point), walk(weights, point), "point {point}");
            }
            before += w;
        }
        assert_eq!(tree.find(before), None, "the total itself is out of range");
    }

    #[test]
    fn a_point_on_a_boundary_belongs_to_the_next_positive_weight() {
        let weights = vec![3, 0, 0, 2, 0, 5];
        let tree = CumulativeWeights::new(weights.clone());
        assert_eq!(tree.find(0), Some(0));
        assert_eq!(tree.find(2), Some(0));
        assert_eq!(tree.find(3), Some(3), "zero weights are skipped");
        assert_eq!(tree.find(4), Some(3));
        assert_eq!(tree.find(5), Some(5));
        assert_eq!(tree.find(9), Some(5));
        assert_eq!(tree.find(10), None);
        check_against_walk(&tree, &weights);
    }

    #[test]
    fn a_total_of_zero_finds_nothing() {
        for tree in [
            CumulativeWeights::new(Vec::new()),
            CumulativeWeights::new(vec![0; 7]),
        ] {
            assert_eq!(tree.total(), 0);
            assert_eq!(tree.find(0), None);
            assert_eq!(tree.find(u128::MAX), None);
        }
        let mut tree = CumulativeWeights::new(vec![4, 1]);
        tree.set(0, 0);
        tree.set(1, 0);
        assert_eq!(tree.find(0), None, "weights set to zero");
    }

    #[test]
    fn the_largest_weights_do_not_overflow() {
        let max = 1_000_000u128 * (u128::from(u64::MAX) + 1);
        let weights = vec![max; 1000];
        let mut tree = CumulativeWeights::new(weights.clone());
        check_against_walk(&tree, &weights);
        tree.set(500, 0);
        assert_eq!(tree.find(max * 500), Some(501));
    }

    proptest! {
        /// Any sequence of weight changes leaves the tree equal to one
        /// built from the final weights, and finding a point equal to a
        /// linear walk over them.
        #[test]
        fn updates_match_a_naive_prefix_sum(
            start in proptest::collection::vec(0u128..1_000, 0..70),
            changes in proptest::collection::vec((any::<usize>(), 0u128..1_000), 0..100),
            points in proptest::collection::vec(any::<u128>(), 0..20),
        ) {
            let mut weights = start.clone();
            let mut tree = CumulativeWeights::new(start);
            for (at, w) in changes {
                if weights.is_empty() {
                    break;
                }
                let pos = at % weights.len();
                weights[pos] = w;
                tree.set(pos, w);
            }
            check_against_walk(&tree, &weights);
            let total = tree.total();
            for p in points {
                let point = if total == 0 { p } else { p % total };
                prop_assert_eq!(tree.find(point), walk(&weights, point));
            }
            prop_assert_eq!(tree, CumulativeWeights::new(weights));
        }
    }

    fn params() -> pb::Params {
        crate::params::resolved(pb::Params {
            stake_unit: 10,
            stake_weight_cap: 100,
            max_workers: 64,
            ..Default::default()
        })
    }

    fn account(i: u8) -> AccountId {
        AccountId([i; 32])
    }

    /// One change of the pool's records.
    #[derive(Clone, Debug)]
    enum Change {
        Register { who: u8, capacity: u32, stake: u64 },
        Unregister { who: u8 },
        Work { who: u8, busy: u32 },
        Reputation { who: u8, agreed: u64, missed: u64 },
    }

    fn change() -> impl Strategy<Value = Change> {
        let who = 0u8..40;
        prop_oneof![
            (who.clone(), 1u32..4, 0u64..300).prop_map(|(who, capacity, stake)| Change::Register {
                who,
                capacity,
                stake
            }),
            who.clone().prop_map(|who| Change::Unregister { who }),
            (who.clone(), 0u32..4).prop_map(|(who, busy)| Change::Work { who, busy }),
            (who, 0u64..9, 0u64..9).prop_map(|(who, agreed, missed)| Change::Reputation {
                who,
                agreed,
                missed
            }),
        ]
    }

    fn apply(state: &mut StateTx<'_>, change: &Change) {
        match *change {
            Change::Register {
                who,
                capacity,
                stake,
            } => state.put_worker(
                &account(who),
                &pb::Worker {
                    capacity,
                    stake,
                    ..Default::default()
                },
            ),
            Change::Unregister { who } => state.delete_raw(keys::worker(&account(who))),
            Change::Work { who, busy } => {
                if let Some(mut w) = state.worker(&account(who)) {
                    w.active_tasks = busy;
                    state.put_worker(&account(who), &w);
                }
            }
            Change::Reputation {
                who,
                agreed,
                missed,
            } => state.update_reputation(&account(who), |r| {
                r.agreed = agreed;
                r.missed = missed;
            }),
        }
    }

    proptest! {
        /// Blocks of random registrations, unregistrations, work and
        /// reputation changes: the index that follows them, caught up from
        /// each block's writes before its draws and at its end, always
        /// equals one built from the state.
        #[test]
        fn an_index_that_follows_the_blocks_equals_a_rebuild(
            blocks in proptest::collection::vec(
                (proptest::collection::vec(change(), 0..8), proptest::collection::vec(change(), 0..4), any::<bool>()),
                1..12,
            ),
        ) {
            let params = params();
            let store = MemStore::new();
            let mut index = DrawIndex::new();
            for (height, (before, after, draws)) in (1u64..).zip(blocks) {
                let followed_parent = index.follows() == Some(height - 1);
                let mut block = StateTx::new(&store);
                for c in &before {
                    apply(&mut block, c);
                }
                if draws {
                    index.prepare(&block, &params, height, &[block.delta()]);
                    prop_assert_eq!(index.check(&block, &params), Ok(()));
                    // A draw's own writes, followed as the draws go.
                    let mut visit = StateTx::new(&block);
                    for c in after.iter().filter(|c| !matches!(c, Change::Register { .. } | Change::Unregister { .. })) {
                        apply(&mut visit, c);
                    }
                    let writes = visit.into_delta();
                    index.follow(&crate::store::Layered::new(&block, &writes), &params, &writes);
                    block.absorb(writes);
                    prop_assert_eq!(index.check(&block, &params), Ok(()));
                } else {
                    for c in &after {
                        apply(&mut block, c);
                    }
                }
                let delta = block.into_delta();
                index.finish_block(&crate::store::Layered::new(&store, &delta), &params, height, &delta);
                store.commit(&delta, &pb::CommitInfo::default());
                let joined_or_left = before.iter().chain(&after).any(|c| matches!(c, Change::Register { .. } | Change::Unregister { .. }));
                // A block that draws, or that follows a followed block and
                // changes no membership, leaves the index following it.
                if draws || (followed_parent && !joined_or_left) {
                    prop_assert_eq!(index.follows(), Some(height));
                }
                if index.follows().is_some() {
                    prop_assert_eq!(index.follows(), Some(height));
                    prop_assert_eq!(index.check(&store, &params), Ok(()));
                }
            }
        }
    }

    #[test]
    fn an_index_that_missed_a_block_is_rebuilt() {
        let params = params();
        let store = MemStore::new();
        let mut setup = StateTx::new(&store);
        for who in 0..5 {
            apply(
                &mut setup,
                &Change::Register {
                    who,
                    capacity: 2,
                    stake: 50,
                },
            );
        }
        store.commit(&setup.into_delta(), &pb::CommitInfo::default());
        let mut index = DrawIndex::build(&store, &params, 7);
        assert_eq!(index.follows(), Some(7));
        // A block the index never saw changes a weight.
        let mut missed = StateTx::new(&store);
        apply(&mut missed, &Change::Work { who: 3, busy: 2 });
        store.commit(&missed.into_delta(), &pb::CommitInfo::default());
        assert!(index.check(&store, &params).is_err());
        // Block 9 is not the one after 7: the index is built afresh.
        index.prepare(&store, &params, 9, &[]);
        assert_eq!(index.check(&store, &params), Ok(()));
        // Finishing another height than the one it is in makes it stale.
        index.finish_block(&store, &params, 10, &Delta::new());
        assert_eq!(index.follows(), None);
        assert!(index.is_empty());
    }

    #[test]
    fn weights_follow_the_formula_and_capacity() {
        let params = params();
        let worker = |stake, active_tasks| pb::Worker {
            capacity: 2,
            stake,
            active_tasks,
            registered_height: 1,
            ..Default::default()
        };
        assert_eq!(draw_weight(500_000, &worker(0, 0), &params), 500_000);
        assert_eq!(draw_weight(500_000, &worker(25, 1), &params), 1_500_000);
        // Stake above the cap counts as the cap: 100 / 10 + 1.
        assert_eq!(draw_weight(500_000, &worker(10_000, 0), &params), 5_500_000);
        assert_eq!(draw_weight(500_000, &worker(10_000, 2), &params), 0, "full");
        let no_unit = pb::Params {
            stake_unit: 0,
            ..params
        };
        assert_eq!(draw_weight(7, &worker(10_000, 0), &no_unit), 7);
    }
}
