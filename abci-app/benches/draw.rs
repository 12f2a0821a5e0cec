//! The end-of-block assignment per slot drawn, over pools of 100, 1,000
//! and 10,000 registered workers with the same pending tasks: the draw
//! over the index (this version) against app version 4's, which loaded the
//! pool once a block and walked all of it for every draw.
//!
//! The state is written straight into a RocksDB store: the workers (each
//! with capacity to spare, stakes and reputations spread out), and 512
//! pending tasks (`max_assignments_per_block`) of two replicas, so that
//! every block draws 1,024 slots whatever the pool. Four kinds of jobs:
//! plain; scattered (`max_tasks_per_worker` 1, so the workers a job
//! already holds are rejected); with a reputation floor half of the pool
//! is below; and a hostile floor that only one worker in six meets, each
//! of them with the least stake, so that they hold about 3% of the weight
//! and most draws reject all their tries and scan. Each block is timed
//! alone: `assign_pending` on a fresh
//! buffer over the store, the index cloned beforehand from one built once
//! and following the block before (its catch-up is then empty), with a
//! block hash of its own. The index's build, what a restart or a
//! membership change costs once, is timed apart.
//!
//! Run: `cargo bench --workspace --bench draw` (`DRAW_BENCH_QUICK=1`
//! takes fewer blocks, for a smoke run).

// A bench binary: its functions need no docs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use compute_abci::assignment::{assign_pending, assign_pending_by_pool_scan};
use compute_abci::draw_index::DrawIndex;
use compute_abci::ledger::Ctx;
use compute_abci::state::keys;
use compute_abci::store::{Delta, RocksStore, StateTx, Store};
use compute_abci::verify::Verifier;
use compute_proto::{pb, sha3_256, AccountId, JobId, JobStatus, TaskStatus};

const POOLS: [usize; 3] = [100, 1_000, 10_000];
const TASKS: u32 = 512;
const REPLICAS: u32 = 2;
/// The height of the timed blocks.
const HEIGHT: u64 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Scattered,
    Floor,
    Hostile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain jobs",
            Kind::Scattered => "scattered (max_tasks_per_worker 1)",
            Kind::Floor => "reputation floor, half the pool below",
            Kind::Hostile => "hostile floor: 1 in 6 meet it, 3% of the weight",
        }
    }
}

fn worker_id(i: usize) -> AccountId {
    AccountId(sha3_256(&(i as u64).to_be_bytes()))
}

/// A store holding `workers` workers and 512 pending tasks of `kind`.
fn world(workers: usize, kind: Kind) -> (RocksStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    let mut state = StateTx::new(&store);
    for i in 0..workers {
        let id = worker_id(i);
        // Scores from 0.5 to 0.9: every other worker below 0.6. Under the
        // hostile floor, one in six at 0.9 with no stake, the others at
        // 0.5 with the capped stake.
        let (agreed, stake, active_tasks) = match kind {
            Kind::Hostile if i % 6 == 1 => (8, 0, 0),
            Kind::Hostile => (0, 1_000_000, 0),
            _ if i % 2 == 0 => (0, (i as u64 % 20) * 100_000, (i % 3) as u32),
            _ => (
                2 + (i as u64 % 7),
                (i as u64 % 20) * 100_000,
                (i % 3) as u32,
            ),
        };
        state.put_worker(
            &id,
            &pb::Worker {
                capacity: 64,
                stake,
                active_tasks,
                registered_height: 1,
                ..Default::default()
            },
        );
        state.put_record(
            keys::reputation(&id),
            &pb::Reputation {
                agreed,
                ..Default::default()
            },
        );
    }
    // Scattered jobs hold 32 tasks (64 slots, fewer than the smallest
    // pool), the others 64.
    let per_job: u32 = if kind == Kind::Scattered { 32 } else { 64 };
    for j in 0..TASKS / per_job {
        let id = JobId(sha3_256(&[b'j', j as u8]));
        state.put_job(
            &id,
            &pb::Job {
                requester: vec![0xaa; 32],
                status: JobStatus::Open.into(),
                max_replicas: REPLICAS,
                task_count: per_job,
                deadline_height: 1_000,
                min_reputation_ppm: match kind {
                    Kind::Floor => 600_000,
                    Kind::Hostile => 800_000,
                    _ => 0,
                },
                max_tasks_per_worker: u32::from(kind == Kind::Scattered),
                ..Default::default()
            },
        );
        for t in 0..per_job {
            state.put_task(
                &id,
                t,
                &pb::Task {
                    status: TaskStatus::Commit.into(),
                    wanted: REPLICAS,
                    ..Default::default()
                },
            );
            state.put_raw(keys::pending(&id, t), Vec::new());
        }
    }
    store.commit(
        &state.into_delta(),
        &pb::CommitInfo {
            height: (HEIGHT - 1) as i64,
            app_hash: vec![0; 32],
        },
    );
    (store, dir)
}

/// Median and mean of `samples`.
fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (samples[samples.len() / 2], mean)
}

/// Per-slot time of `blocks` blocks of one path: (median, mean, slots).
fn measure(
    store: &RocksStore,
    ctx: &Ctx<'_>,
    index: Option<&DrawIndex>,
    blocks: u32,
) -> (Duration, Duration, usize) {
    let mut samples = Vec::new();
    let mut slots = 0;
    for b in 0..blocks {
        let hash = sha3_256(&b.to_be_bytes());
        let mut fresh = index.cloned();
        let mut state = StateTx::new(store);
        let start = Instant::now();
        let events = match fresh.as_mut() {
            Some(index) => assign_pending(&mut state, ctx, &hash, index, &Delta::new()),
            None => assign_pending_by_pool_scan(&mut state, ctx, &hash),
        };
        let elapsed = start.elapsed();
        let drawn = events
            .iter()
            .filter(|e| e.r#type == "task_assigned")
            .count();
        assert!(drawn > 0, "a block drew nothing");
        if slots == 0 {
            slots = drawn;
        }
        assert_eq!(drawn, slots, "every block draws the same slots");
        samples.push(elapsed / drawn as u32);
        drop(state);
    }
    let (median, mean) = summary(samples);
    (median, mean, slots)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let quick = std::env::var_os("DRAW_BENCH_QUICK").is_some();
    let params = compute_abci::params::defaults();
    let verifier = Verifier::default();
    let ctx = Ctx {
        params: &params,
        chain_id: "bench",
        height: HEIGHT,
        proposer: None,
        time_seconds: 0,
        verifier: &verifier,
        in_block: true,
    };
    println!("| jobs | workers | slots a block | index: us per slot, median (mean) | version 4: us per slot, median (mean) | version 4 / index | index build, ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for kind in [Kind::Plain, Kind::Scattered, Kind::Floor, Kind::Hostile] {
        let mut new_by_pool = Vec::new();
        let mut old_by_pool = Vec::new();
        for workers in POOLS {
            let (store, _dir) = world(workers, kind);
            let builds: Vec<Duration> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let index = DrawIndex::build(&store, &params, HEIGHT - 1);
                    let elapsed = start.elapsed();
                    assert_eq!(index.len(), workers);
                    elapsed
                })
                .collect();
            let (build, _) = summary(builds);
            let index = DrawIndex::build(&store, &params, HEIGHT - 1);
            let blocks = if quick { 3 } else { 30 };
            // Warm the store's caches once on each path.
            measure(&store, &ctx, Some(&index), 1);
            measure(&store, &ctx, None, 1);
            let (new, new_mean, slots) = measure(&store, &ctx, Some(&index), blocks);
            let old_blocks = if quick || workers >= 10_000 {
                blocks.min(10)
            } else {
                blocks
            };
            let (old, old_mean, old_slots) = measure(&store, &ctx, None, old_blocks);
            assert_eq!(slots, old_slots, "both paths fill the same slots");
            println!(
                "| {} | {workers} | {slots} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.1}x | {:.1} |",
                kind.name(),
                micros(new),
                micros(new_mean),
                micros(old),
                micros(old_mean),
                micros(old) / micros(new),
                build.as_secs_f64() * 1e3,
            );
            new_by_pool.push(new);
            old_by_pool.push(old);
        }
        let ratio = |v: &[Duration]| micros(v[2]) / micros(v[0]);
        // The goal is for jobs that exclude little; the hostile floor
        // shows what the scan costs.
        let goal = if kind == Kind::Hostile {
            ""
        } else {
            " (goal: at most 2x)"
        };
        println!(
            "| {}: 10,000 / 100 workers | | | **{:.2}x**{goal} | {:.1}x | | |",
            kind.name(),
            ratio(&new_by_pool),
            ratio(&old_by_pool),
        );
    }
}
