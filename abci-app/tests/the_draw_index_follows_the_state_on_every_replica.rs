//! The assignment draw's index is derived state held in memory: after
//! every block it must equal an index built afresh from the committed
//! state, on every replica. Two replicas, one in memory and one on RocksDB
//! that is closed and reopened partway (its index then rebuilt from disk),
//! run seeded blocks of the job protocol over a pool of two dozen workers:
//! registrations and unregistrations, jobs with reputation floors and
//! per-worker caps (some posted by workers, who are excluded from their
//! own jobs), and workers that commit honestly, cheat or vanish, so that
//! scores, stakes and free capacity all move. They must agree on every
//! block's answers and app hash; a block that draws must leave each
//! index following it. A failure prints the seed to replay
//! (`COMPUTE_TEST_SEED`).

mod common;

use std::collections::BTreeMap;

use common::{keys, TestChain};
use compute_abci::store::{MemStore, RocksStore, Store};
use compute_abci::{App, BlockOutput};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

const REQUESTERS: usize = 3;
const WORKERS: usize = 24;
const BLOCKS: i64 = 60;
const RESTART_AT: i64 = 27;
const BALANCE: u64 = 100_000_000;

/// What a drawn worker does with its task.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conduct {
    Honest,
    Cheat,
    Vanish,
}

struct World {
    rng: ChaCha20Rng,
    memory: TestChain<MemStore>,
    rocks: Option<TestChain<RocksStore>>,
    dir: tempfile::TempDir,
    keys: Vec<SigningKey>,
    module: ModuleId,
    /// What each (job, task, worker) committed to.
    sealed: BTreeMap<(JobId, u32, AccountId), [u8; 32]>,
    seed: u64,
}

fn salt(worker: &AccountId) -> Vec<u8> {
    sha3_256(&worker.0).to_vec()
}

impl World {
    fn new(seed: u64) -> Self {
        let keys = keys((REQUESTERS + WORKERS) as u8);
        let balances: Vec<(AccountId, u64)> = keys.iter().map(|k| (k.account(), BALANCE)).collect();
        let params = json!({
            "min_fee": 0,
            "commit_window_blocks": 3,
            "reveal_window_blocks": 3,
            "max_worker_capacity": 4,
        });
        let dir = tempfile::tempdir().unwrap();
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            memory: TestChain::new(MemStore::new(), &balances, params.clone()),
            rocks: Some(TestChain::new(
                RocksStore::open(dir.path()).unwrap(),
                &balances,
                params,
            )),
            dir,
            keys,
            module: ModuleId::of(compute_jobs::PRIMES_WASM),
            sealed: BTreeMap::new(),
            seed,
        }
    }

    fn worker(&self, i: usize) -> &SigningKey {
        &self.keys[REQUESTERS + i]
    }

    fn key_of(&self, id: &AccountId) -> &SigningKey {
        self.keys.iter().find(|k| k.account() == *id).unwrap()
    }

    /// Signs `msgs` in order with the nonces the chain expects.
    fn sign(&self, msgs: Vec<(AccountId, Msg)>) -> Vec<Vec<u8>> {
        let mut next: BTreeMap<AccountId, u64> = BTreeMap::new();
        msgs.into_iter()
            .map(|(signer, msg)| {
                let nonce = *next.entry(signer).or_insert_with(|| {
                    self.memory.query(&format!("/account/{signer}"))["nonce"]
                        .as_u64()
                        .unwrap()
                });
                next.insert(signer, nonce + 1);
                self.memory.txs.sign(self.key_of(&signer), nonce, msg)
            })
            .collect()
    }

    /// Runs one block on both replicas and checks both indexes.
    fn block(&mut self, msgs: Vec<(AccountId, Msg)>) -> BlockOutput {
        let seed = self.seed;
        let txs = self.sign(msgs);
        let a = self.memory.block(&txs);
        let rocks = self.rocks.as_mut().unwrap();
        let b = rocks.block(&txs);
        let height = self.memory.app.last_commit().height;
        assert_eq!(
            a, b,
            "seed {seed}: the replicas disagree at height {height}"
        );
        let drew = a.events.iter().any(|e| e.r#type == "task_assigned");
        check_index(&self.memory.app, drew, seed);
        check_index(&rocks.app, drew, seed);
        a
    }

    /// Closes the RocksDB replica and opens it again from disk: its index
    /// is gone, and the next block that draws builds it from the store.
    fn restart_rocks(&mut self) {
        let TestChain { app, txs } = self.rocks.take().unwrap();
        drop(app);
        let app = App::new(RocksStore::open(self.dir.path()).unwrap());
        assert_eq!(app.last_commit(), self.memory.app.last_commit());
        assert_eq!(
            app.draw_index().follows(),
            None,
            "a reopened node holds no index"
        );
        self.rocks = Some(TestChain { app, txs });
    }

    /// A job of 1 to 4 tasks, sometimes with a reputation floor or a cap
    /// per worker, posted by a requester or (one time in four) a worker.
    fn random_job(&mut self) -> (AccountId, Msg) {
        let poster = if self.rng.gen_range(0..4) == 0 {
            let i = self.rng.gen_range(0..WORKERS);
            self.worker(i).account()
        } else {
            self.keys[self.rng.gen_range(0..REQUESTERS)].account()
        };
        let replicas = self.rng.gen_range(1..=3u32);
        let quorum = self.rng.gen_range(1..=replicas);
        let tasks = self.rng.gen_range(1..=4usize);
        let msg = Msg::PostJob(pb::PostJob {
            module_id: self.module.0.to_vec(),
            tasks: (0..tasks)
                .map(|i| pb::TaskInput {
                    source: Some(pb::task_input::Source::Inline(vec![i as u8])),
                    size: 1,
                })
                .collect(),
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                    replicas,
                    quorum,
                    max_replicas: replicas + 1,
                })),
            }),
            fuel_limit: 1_000_000,
            price_per_mfuel: 1_000,
            deadline_blocks: self.rng.gen_range(8..30),
            min_reputation_ppm: [0, 0, 450_000, 520_000][self.rng.gen_range(0..4)],
            max_tasks_per_worker: [0, 0, 1, 2][self.rng.gen_range(0..4)],
        });
        (poster, msg)
    }

    /// The workers' answers to what the last block showed them.
    fn react(&mut self, out: &BlockOutput) -> Vec<(AccountId, Msg)> {
        let mut msgs = Vec::new();
        for e in out
            .events
            .iter()
            .chain(out.tx_results.iter().flat_map(|r| &r.events))
        {
            let attr = |key: &str| {
                e.attributes
                    .iter()
                    .find(|a| a.key == key)
                    .map(|a| a.value.clone())
                    .unwrap()
            };
            let kind = e.r#type.as_str();
            if kind != "task_assigned" && kind != "task_reveal_open" {
                continue;
            }
            let job = JobId::from_hex(&attr("job")).unwrap();
            let task: u32 = attr("task").parse().unwrap();
            let worker = AccountId::from_hex(&attr("worker")).unwrap();
            if kind == "task_assigned" {
                let conduct = match self.rng.gen_range(0..10) {
                    0 => Conduct::Cheat,
                    1 => Conduct::Vanish,
                    _ => Conduct::Honest,
                };
                let result = match conduct {
                    Conduct::Vanish => continue,
                    Conduct::Cheat => sha3_256(&worker.0),
                    Conduct::Honest => sha3_256(b"the answer"),
                };
                self.sealed.insert((job, task, worker), result);
                msgs.push((
                    worker,
                    Msg::CommitResult(pb::CommitResult {
                        job_id: job.0.to_vec(),
                        task,
                        commitment: commitment(
                            &job.0,
                            task,
                            &worker.0,
                            &result,
                            1_000,
                            &salt(&worker),
                        )
                        .to_vec(),
                    }),
                ));
            } else if let Some(result) = self.sealed.get(&(job, task, worker)) {
                msgs.push((
                    worker,
                    Msg::RevealResult(pb::RevealResult {
                        job_id: job.0.to_vec(),
                        task,
                        result_hash: result.to_vec(),
                        fuel_used: 1_000,
                        salt: salt(&worker),
                        output: Vec::new(),
                    }),
                ));
            }
        }
        msgs
    }

    /// Workers joining (with a random capacity and stake) or trying to
    /// leave (refused while they hold a task).
    fn churn(&mut self) -> Vec<(AccountId, Msg)> {
        let mut msgs = Vec::new();
        for _ in 0..self.rng.gen_range(0..3) {
            let i = self.rng.gen_range(0..WORKERS);
            let worker = self.worker(i).account();
            let msg = if self.rng.gen_bool(0.6) {
                Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: self.rng.gen_range(1..=4),
                    stake: self.rng.gen_range(0..1_500_000),
                })
            } else {
                Msg::UnregisterWorker(pb::UnregisterWorker {})
            };
            msgs.push((worker, msg));
        }
        msgs
    }
}

/// The replica's index equals one built from its committed state, and
/// follows the last block when that block drew.
fn check_index<S: Store>(app: &App<S>, drew: bool, seed: u64) {
    let height = app.last_commit().height;
    if let Err(why) = app.check_draw_index() {
        panic!("seed {seed}: at height {height} the draw index differs from the state: {why}");
    }
    if drew {
        assert_eq!(
            app.draw_index().follows(),
            Some(height as u64),
            "seed {seed}: a block that drew leaves the index following it"
        );
    }
}

fn run(seed: u64) {
    let mut w = World::new(seed);
    let mut setup = vec![(
        w.keys[0].account(),
        Msg::StoreModule(pb::StoreModule {
            wasm: compute_jobs::PRIMES_WASM.to_vec(),
        }),
    )];
    for i in 0..WORKERS * 2 / 3 {
        setup.push((
            w.worker(i).account(),
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 1 + (i as u32 % 4),
                stake: (i as u64 % 5) * 300_000,
            }),
        ));
    }
    let mut out = w.block(setup);
    let mut assigned = 0usize;
    for height in 2..=BLOCKS {
        if height == RESTART_AT {
            w.restart_rocks();
        }
        let mut msgs = w.react(&out);
        if height < BLOCKS - 20 {
            for _ in 0..w.rng.gen_range(0..3) {
                msgs.push(w.random_job());
            }
        }
        msgs.extend(w.churn());
        out = w.block(msgs);
        assigned += out
            .events
            .iter()
            .filter(|e| e.r#type == "task_assigned")
            .count();
    }
    let stats = w.memory.query("/stats");
    assert!(assigned > 50, "seed {seed}: only {assigned} draws");
    for counter in ["tasks_settled", "credits_slashed"] {
        assert!(
            stats[counter].as_u64().unwrap() > 0,
            "seed {seed}: no {counter}: {stats}"
        );
    }
}

#[test]
fn the_draw_index_follows_the_state_on_every_replica() {
    let seeds: Vec<u64> = match std::env::var("COMPUTE_TEST_SEED") {
        Ok(seed) => vec![seed.parse().expect("COMPUTE_TEST_SEED is a u64")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        run(seed);
    }
}
