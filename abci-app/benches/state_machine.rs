//! Throughput of the state machine alone: signed transfers through CheckTx
//! and through FinalizeBlock + Commit on RocksDB, next to the raw
//! `ed25519-consensus` verification rate measured in the same run; and a
//! mixed workload of the job protocol (posts, then the commits and reveals
//! of every replica the chain drew) through FinalizeBlock + Commit.
//!
//! Run: `cargo bench -p compute-abci --bench state_machine --profile dev`
//! (the dev profile optimises every crate; see docs/BENCHMARKS.md).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use compute_abci::store::{MemStore, RocksStore, Store};
use compute_abci::{App, BlockInput, Code};
use compute_proto::tx::verify_batch;
use compute_proto::{pb, SignedTx, SigningKey, TxBuilder};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

const ACCOUNTS: usize = 100;
const TXS_PER_BLOCK: usize = 1_000;

fn keys() -> Vec<SigningKey> {
    (0..ACCOUNTS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SigningKey::from_seed(seed)
        })
        .collect()
}

fn validator() -> [u8; 32] {
    SigningKey::from_seed([250; 32]).account().0
}

/// `TXS_PER_BLOCK` transfers: each account sends several, in nonce order.
fn transfers(keys: &[SigningKey]) -> Vec<Vec<u8>> {
    let builder = TxBuilder::new("bench");
    (0..TXS_PER_BLOCK)
        .map(|i| {
            let from = &keys[i % keys.len()];
            let to = keys[(i + 1) % keys.len()].account();
            let nonce = (i / keys.len()) as u64;
            builder.sign(
                from,
                nonce,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: to.0.to_vec(),
                    amount: 1,
                }),
            )
        })
        .collect()
}

fn app<S: Store>(store: S, keys: &[SigningKey]) -> App<S> {
    let accounts: Vec<_> = keys
        .iter()
        .map(|k| json!({"address": k.account(), "balance": 1_000_000_000u64}))
        .collect();
    let mut app = App::new(store);
    app.init_chain(
        "bench",
        1,
        json!({"accounts": accounts, "params": {"max_pending_txs_per_account": 1000}})
            .to_string()
            .as_bytes(),
        &[validator()],
    )
    .expect("genesis");
    app
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let txs = transfers(&keys);
    let decoded: Vec<SignedTx> = txs
        .iter()
        .map(|t| SignedTx::decode(t, 1 << 20).unwrap())
        .collect();

    let mut group = c.benchmark_group("transfers");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TXS_PER_BLOCK as u64));

    group.bench_function("ed25519_verify_single", |b| {
        b.iter(|| {
            for tx in &decoded {
                tx.verify().unwrap();
            }
        })
    });
    group.bench_function("ed25519_verify_batch", |b| {
        let refs: Vec<&SignedTx> = decoded.iter().collect();
        b.iter(|| assert!(verify_batch(&refs).iter().all(Result::is_ok)))
    });
    group.bench_function("check_tx", |b| {
        b.iter_batched(
            || app(MemStore::new(), &keys),
            |mut app| {
                for tx in &txs {
                    assert_eq!(app.check_tx(tx).code, Code::Ok);
                }
            },
            BatchSize::PerIteration,
        )
    });
    let proposer = compute_abci::app::validator_address(&validator());
    group.bench_function("finalize_block_and_commit_rocksdb", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let app = app(RocksStore::open(dir.path()).unwrap(), &keys);
                (dir, app)
            },
            |(dir, mut app)| {
                let out = app.finalize_block(BlockInput {
                    height: 1,
                    proposer_address: &proposer,
                    signer_addresses: &[],
                    txs: &txs,
                    hash: &[7; 32],
                    time_seconds: 0,
                });
                assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
                app.commit();
                (dir, app)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

const JOBS_PER_BLOCK: usize = 100;
const WORKERS: usize = 100;

/// Requesters, workers and the chain after block 1 (module stored, workers
/// registered).
struct JobWorld {
    requesters: Vec<SigningKey>,
    workers: Vec<SigningKey>,
    builder: TxBuilder,
    nonces: std::collections::BTreeMap<[u8; 32], u64>,
}

impl JobWorld {
    fn new() -> Self {
        let workers = (0..WORKERS)
            .map(|i| {
                let mut seed = [1u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SigningKey::from_seed(seed)
            })
            .collect();
        Self {
            requesters: keys(),
            workers,
            builder: TxBuilder::new("bench"),
            nonces: std::collections::BTreeMap::new(),
        }
    }

    fn sign(&mut self, key: &SigningKey, msg: pb::tx_body::Msg) -> Vec<u8> {
        let nonce = self.nonces.entry(key.account().0).or_default();
        let tx = self.builder.sign(key, *nonce, msg);
        *nonce += 1;
        tx
    }

    fn chain(&mut self, dir: &std::path::Path) -> App<RocksStore> {
        let all: Vec<SigningKey> = self
            .requesters
            .iter()
            .chain(&self.workers)
            .cloned()
            .collect();
        let mut app = app(RocksStore::open(dir).unwrap(), &all);
        let mut txs = vec![self.sign(
            &all[0],
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: compute_jobs::PRIMES_WASM.to_vec(),
            }),
        )];
        for w in self.workers.clone() {
            txs.push(self.sign(
                &w,
                pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: 64,
                    stake: 1_000,
                }),
            ));
        }
        run_block(&mut app, 1, &txs);
        app
    }
}

fn run_block(app: &mut App<RocksStore>, height: i64, txs: &[Vec<u8>]) {
    let proposer = compute_abci::app::validator_address(&validator());
    let hash = compute_proto::sha3_256(&height.to_be_bytes());
    let out = app.finalize_block(BlockInput {
        height,
        proposer_address: &proposer,
        signer_addresses: &[],
        txs,
        hash: &hash,
        time_seconds: 0,
    });
    for r in &out.tx_results {
        assert_eq!(r.code, Code::Ok, "{}", r.log);
    }
    app.commit();
}

/// Posts, commits and reveals of `JOBS_PER_BLOCK` one-task jobs with three
/// replicas each: three blocks, timed without the signing between them.
fn job_lifecycle(c: &mut Criterion) {
    use compute_proto::{commitment, JobId, ModuleId};
    let mut group = c.benchmark_group("jobs");
    group.sample_size(10);
    // 100 posts, 300 commits, 300 reveals.
    group.throughput(Throughput::Elements((JOBS_PER_BLOCK * 7) as u64));
    group.bench_function("post_commit_reveal_rocksdb", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let mut world = JobWorld::new();
                let mut app = world.chain(dir.path());
                let module = ModuleId::of(compute_jobs::PRIMES_WASM);
                let mut posts = Vec::new();
                let mut ids = Vec::new();
                for r in world.requesters.clone() {
                    let nonce = world.nonces.get(&r.account().0).copied().unwrap_or(0);
                    ids.push(JobId::derive(&r.account(), nonce));
                    posts.push(world.sign(
                        &r,
                        pb::tx_body::Msg::PostJob(pb::PostJob {
                            module_id: module.0.to_vec(),
                            tasks: vec![pb::TaskInput {
                                source: Some(pb::task_input::Source::Inline(vec![1; 16])),
                                size: 16,
                            }],
                            policy: None,
                            fuel_limit: 1_000_000,
                            price_per_mfuel: 10,
                            deadline_blocks: 100,
                            min_reputation_ppm: 0,
                            max_tasks_per_worker: 0,
                        }),
                    ));
                }
                let started = std::time::Instant::now();
                run_block(&mut app, 2, &posts);
                total += started.elapsed();

                let result = [3u8; 32];
                let mut drawn = Vec::new();
                for id in &ids {
                    let view: serde_json::Value =
                        serde_json::from_slice(&app.query(&format!("/job/{id}"), 0).value).unwrap();
                    for r in view["tasks"][0]["replicas"].as_array().unwrap() {
                        let hex = r["worker"].as_str().unwrap().to_owned();
                        let key = world
                            .workers
                            .iter()
                            .find(|w| w.account().to_hex() == hex)
                            .unwrap()
                            .clone();
                        drawn.push((*id, key));
                    }
                }
                let commits: Vec<Vec<u8>> = drawn
                    .iter()
                    .map(|(id, w)| {
                        let c = commitment(&id.0, 0, &w.account().0, &result, 500, b"salt");
                        world.sign(
                            w,
                            pb::tx_body::Msg::CommitResult(pb::CommitResult {
                                job_id: id.0.to_vec(),
                                task: 0,
                                commitment: c.to_vec(),
                            }),
                        )
                    })
                    .collect();
                let reveals: Vec<Vec<u8>> = drawn
                    .iter()
                    .map(|(id, w)| {
                        world.sign(
                            w,
                            pb::tx_body::Msg::RevealResult(pb::RevealResult {
                                job_id: id.0.to_vec(),
                                task: 0,
                                result_hash: result.to_vec(),
                                fuel_used: 500,
                                salt: b"salt".to_vec(),
                                output: Vec::new(),
                            }),
                        )
                    })
                    .collect();
                let started = std::time::Instant::now();
                run_block(&mut app, 3, &commits);
                run_block(&mut app, 4, &reveals);
                total += started.elapsed();
                let stats: serde_json::Value =
                    serde_json::from_slice(&app.query("/stats", 0).value).unwrap();
                assert_eq!(stats["tasks_settled"], JOBS_PER_BLOCK);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench, job_lifecycle);
criterion_main!(benches);
