//! The worst block of each attack class at default parameters: how long
//! FinalizeBlock takes when an adversary fills a block with the most
//! expensive work the chain lets it ask for, as a ratio to an ordinary full
//! block of transfers measured in the same run.
//!
//! Classes: a verify flood (queued reveals whose `verify` burns its whole
//! fuel cap, and many cheap ones), hostile modules at the compile limits,
//! an assignment storm over the largest worker pool, a deadline storm, and
//! a block of maximal `PostJob` transactions. Each block is built by setup
//! blocks that are not timed; ProcessProposal is timed with FinalizeBlock
//! where it does work of its own (compiling modules).
//!
//! Run: `cargo bench --workspace --bench worst_blocks --profile dev`
//! (`WORST_BLOCKS_QUICK=1` shrinks the pools, for a smoke run).

// A bench binary: its functions need no docs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use compute_abci::store::RocksStore;
use compute_abci::{App, BlockInput, BlockOutput, Code};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, JobId, ModuleId, SigningKey, TxBuilder};
use serde_json::json;

/// CometBFT's default `max_bytes` of a block.
const BLOCK_BYTES: usize = 22_020_096;

fn key(kind: u8, i: usize) -> SigningKey {
    let mut seed = [kind; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    SigningKey::from_seed(seed)
}

fn validator() -> [u8; 32] {
    SigningKey::from_seed([250; 32]).account().0
}

/// A chain on RocksDB with funded keys, driven block by block.
struct Chain {
    app: App<RocksStore>,
    _dir: tempfile::TempDir,
    builder: TxBuilder,
    nonces: std::collections::BTreeMap<[u8; 32], u64>,
    height: i64,
}

impl Chain {
    fn new(keys: &[&SigningKey], params: serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let accounts: Vec<_> = keys
            .iter()
            .map(|k| json!({"address": k.account(), "balance": 1_000_000_000_000u64}))
            .collect();
        let mut app = App::new(RocksStore::open(dir.path()).unwrap());
        app.init_chain(
            "bench",
            1,
            json!({"accounts": accounts, "params": params})
                .to_string()
                .as_bytes(),
            &[validator()],
        )
        .expect("genesis");
        Self {
            app,
            _dir: dir,
            builder: TxBuilder::new("bench"),
            nonces: Default::default(),
            height: 0,
        }
    }

    /// A chain where `requesters[0]` stored the primes module and every
    /// key of `pool` is a worker of the largest capacity.
    fn with_pool(requesters: &[&SigningKey], pool: &[SigningKey]) -> Self {
        let refs: Vec<&SigningKey> = requesters.iter().copied().chain(pool).collect();
        let mut chain = Chain::new(&refs, json!({}));
        let mut setup = vec![chain.sign(requesters[0], store(compute_jobs::PRIMES_WASM))];
        for w in pool {
            setup.push(chain.sign(w, register(64)));
        }
        chain.setup(&setup);
        chain
    }

    fn sign(&mut self, key: &SigningKey, msg: Msg) -> Vec<u8> {
        let nonce = self.nonces.entry(key.account().0).or_default();
        let tx = self.builder.sign(key, *nonce, msg);
        *nonce += 1;
        tx
    }

    /// Runs a block; returns its output and how long FinalizeBlock took.
    fn block(&mut self, txs: &[Vec<u8>]) -> (BlockOutput, Duration) {
        self.height += 1;
        let proposer = compute_abci::app::validator_address(&validator());
        let hash = sha3_256(&self.height.to_be_bytes());
        let start = Instant::now();
        let out = self.app.finalize_block(BlockInput {
            height: self.height,
            proposer_address: &proposer,
            signer_addresses: &[],
            txs,
            hash: &hash,
            time_seconds: 0,
        });
        let took = start.elapsed();
        self.app.commit();
        (out, took)
    }

    /// A setup block whose transactions must all pass.
    fn setup(&mut self, txs: &[Vec<u8>]) -> BlockOutput {
        let (out, _) = self.block(txs);
        for r in &out.tx_results {
            assert_eq!(r.code, Code::Ok, "setup: {}", r.log);
        }
        out
    }

    fn query(&self, path: &str) -> serde_json::Value {
        let answer = self.app.query(path, 0);
        assert_eq!(answer.code, Code::Ok, "{path}: {}", answer.log);
        serde_json::from_slice(&answer.value).unwrap()
    }
}

fn events<'a>(
    out: &'a BlockOutput,
    kind: &'a str,
) -> impl Iterator<Item = &'a compute_abci::events::Event> + 'a {
    out.events
        .iter()
        .chain(out.tx_results.iter().flat_map(|r| &r.events))
        .filter(move |e| e.r#type == kind)
}

fn attribute(event: &compute_abci::events::Event, name: &str) -> String {
    event
        .attributes
        .iter()
        .find(|a| a.key == name)
        .map(|a| a.value.clone())
        .unwrap_or_default()
}

fn store(wasm: &[u8]) -> Msg {
    Msg::StoreModule(pb::StoreModule {
        wasm: wasm.to_vec(),
    })
}

fn register(capacity: u32) -> Msg {
    Msg::RegisterWorker(pb::RegisterWorker {
        capacity,
        stake: 1_000,
    })
}

fn inline(bytes: Vec<u8>) -> pb::TaskInput {
    pb::TaskInput {
        size: bytes.len() as u64,
        source: Some(pb::task_input::Source::Inline(bytes)),
    }
}

/// The ordinary full block: 10,000 transfers among 100 accounts.
fn baseline() -> Duration {
    let keys: Vec<SigningKey> = (0..100).map(|i| key(1, i)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let mut chain = Chain::new(&refs, json!({}));
    let txs: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            let to = keys[(i + 1) % keys.len()].account();
            chain.sign(
                &keys[i % keys.len()],
                Msg::Transfer(pb::Transfer {
                    to: to.0.to_vec(),
                    amount: 1,
                }),
            )
        })
        .collect();
    let (out, took) = chain.block(&txs);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    took
}

/// A module whose `verify` loops until its fuel runs out (or accepts at
/// once, with `burn` false).
fn verify_module(burn: bool) -> Vec<u8> {
    let verify = if burn {
        "(loop br 0) i32.const 0"
    } else {
        "i32.const 1"
    };
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) i32.const 1024)
          (func (export "run") (param i32 i32) (result i64) i64.const 1)
          (func (export "verify") (param i32 i32 i32 i32) (result i32) {verify}))"#
    ))
    .unwrap()
}

/// A Verified job of `tasks` tasks over `workers` workers; every worker
/// commits, then all reveal in the timed block. Returns the timed block's
/// FinalizeBlock time and the verifications it ran.
fn verify_flood(tasks: usize, verify_fuel: u64, burn: bool) -> (Duration, usize) {
    let requester = key(2, 0);
    let workers: Vec<SigningKey> = (0..tasks.div_ceil(64)).map(|i| key(3, i)).collect();
    let mut refs: Vec<&SigningKey> = workers.iter().collect();
    refs.push(&requester);
    let mut chain = Chain::new(&refs, json!({}));
    let wasm = verify_module(burn);
    let mut setup = vec![chain.sign(&requester, store(&wasm))];
    for w in &workers {
        setup.push(chain.sign(w, register(64)));
    }
    chain.setup(&setup);
    let nonce = chain.nonces[&requester.account().0];
    let post = chain.sign(
        &requester,
        Msg::PostJob(pb::PostJob {
            module_id: ModuleId::of(&wasm).0.to_vec(),
            tasks: (0..tasks)
                .map(|i| inline((i as u32).to_be_bytes().to_vec()))
                .collect(),
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                    verify_fuel,
                    max_workers: 1,
                })),
            }),
            fuel_limit: 1_000,
            price_per_mfuel: 1,
            deadline_blocks: 1_000,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
        }),
    );
    let job = JobId::derive(&requester.account(), nonce);
    let mut assigned = Vec::new();
    let out = chain.setup(&[post]);
    assigned.extend(
        events(&out, "task_assigned").map(|e| (attribute(e, "worker"), attribute(e, "task"))),
    );
    while assigned.len() < tasks {
        let (out, _) = chain.block(&[]);
        assigned.extend(
            events(&out, "task_assigned").map(|e| (attribute(e, "worker"), attribute(e, "task"))),
        );
    }
    let output = vec![7u8];
    let hash = sha3_256(&output);
    let by_hex = |hex: &str| {
        workers
            .iter()
            .find(|w| w.account().to_hex() == hex)
            .unwrap()
            .clone()
    };
    let mut commits = Vec::new();
    let mut reveals = Vec::new();
    for (worker, task) in &assigned {
        let w = by_hex(worker);
        let task: u32 = task.parse().unwrap();
        let salt = vec![1u8; 16];
        commits.push(chain.sign(
            &w,
            Msg::CommitResult(pb::CommitResult {
                job_id: job.0.to_vec(),
                task,
                commitment: commitment(&job.0, task, &w.account().0, &hash, 10, &salt).to_vec(),
            }),
        ));
        reveals.push((w, task, salt));
    }
    chain.setup(&commits);
    let reveals: Vec<Vec<u8>> = reveals
        .into_iter()
        .map(|(w, task, salt)| {
            chain.sign(
                &w,
                Msg::RevealResult(pb::RevealResult {
                    job_id: job.0.to_vec(),
                    task,
                    result_hash: hash.to_vec(),
                    fuel_used: 10,
                    salt,
                    output: output.clone(),
                }),
            )
        })
        .collect();
    let (out, took) = chain.block(&reveals);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    let judged = events(&out, "output_refused").count() + events(&out, "output_verified").count();
    (took, judged)
}

/// A quorum job of `tasks` tasks whose `run` loops until its fuel
/// (`max_referee_fuel`) runs out, settled by three workers on a made-up
/// result; the timed block carries a dispute of every task, so the referee
/// runs as much as its block budget allows, each run burning the whole
/// fuel limit. Returns the block's FinalizeBlock time and the disputes
/// judged in it.
fn dispute_flood(tasks: usize) -> (Duration, usize) {
    let requester = key(6, 0);
    let disputer = key(6, 1);
    let workers: Vec<SigningKey> = (0..3).map(|i| key(7, i)).collect();
    let mut refs: Vec<&SigningKey> = workers.iter().collect();
    refs.push(&requester);
    refs.push(&disputer);
    let mut chain = Chain::new(&refs, json!({}));
    let wasm = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) i32.const 1024)
          (func (export "run") (param i32 i32) (result i64) (loop br 0) i64.const 0))"#,
    )
    .unwrap();
    let mut setup = vec![chain.sign(&requester, store(&wasm))];
    for w in &workers {
        setup.push(chain.sign(w, register(64)));
    }
    chain.setup(&setup);
    let fuel_limit = compute_abci::params::DISPUTE_DEFAULTS.max_referee_fuel;
    let nonce = chain.nonces[&requester.account().0];
    let post = chain.sign(
        &requester,
        Msg::PostJob(pb::PostJob {
            module_id: ModuleId::of(&wasm).0.to_vec(),
            tasks: (0..tasks)
                .map(|i| inline((i as u32).to_be_bytes().to_vec()))
                .collect(),
            policy: None,
            fuel_limit,
            price_per_mfuel: 1,
            deadline_blocks: 1_000,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
        }),
    );
    let job = JobId::derive(&requester.account(), nonce);
    chain.setup(&[post]);
    let hash = sha3_256(b"made up");
    let salt = vec![1u8; 16];
    let (mut commits, mut reveals) = (Vec::new(), Vec::new());
    for task in 0..tasks as u32 {
        for w in &workers {
            let sealed = commitment(&job.0, task, &w.account().0, &hash, fuel_limit, &salt);
            commits.push(chain.sign(
                w,
                Msg::CommitResult(pb::CommitResult {
                    job_id: job.0.to_vec(),
                    task,
                    commitment: sealed.to_vec(),
                }),
            ));
        }
    }
    chain.setup(&commits);
    for task in 0..tasks as u32 {
        for w in &workers {
            reveals.push(chain.sign(
                w,
                Msg::RevealResult(pb::RevealResult {
                    job_id: job.0.to_vec(),
                    task,
                    result_hash: hash.to_vec(),
                    fuel_used: fuel_limit,
                    salt: salt.clone(),
                    output: Vec::new(),
                }),
            ));
        }
    }
    let out = chain.setup(&reveals);
    assert_eq!(events(&out, "task_settled").count(), tasks);
    let disputes: Vec<Vec<u8>> = (0..tasks as u32)
        .map(|task| {
            chain.sign(
                &disputer,
                Msg::Dispute(pb::Dispute {
                    job_id: job.0.to_vec(),
                    task,
                    input: Vec::new(),
                    bond: 1_000,
                }),
            )
        })
        .collect();
    let (out, took) = chain.block(&disputes);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    let judged =
        events(&out, "result_overturned").count() + events(&out, "result_confirmed").count();
    (took, judged)
}

/// `count` workers with the largest capacity and one job of
/// `max_tasks_per_job` tasks at the largest replication: the timed block is
/// the one that posts it and runs the first assignment round.
fn assignment_storm(workers: usize, scatter: bool) -> (Duration, usize) {
    let requester = key(4, 0);
    let pool: Vec<SigningKey> = (0..workers).map(|i| key(5, i)).collect();
    let mut chain = Chain::with_pool(&[&requester], &pool);
    let params = chain.query("/params");
    let tasks = params["max_tasks_per_job"].as_u64().unwrap() as usize;
    let replicas = params["max_replicas"].as_u64().unwrap() as u32;
    let post = chain.sign(
        &requester,
        Msg::PostJob(pb::PostJob {
            module_id: ModuleId::of(compute_jobs::PRIMES_WASM).0.to_vec(),
            tasks: (0..tasks)
                .map(|i| inline((i as u32).to_be_bytes().to_vec()))
                .collect(),
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                    replicas,
                    quorum: replicas / 2 + 1,
                    max_replicas: replicas,
                })),
            }),
            fuel_limit: 1_000,
            price_per_mfuel: 1,
            deadline_blocks: 1_000,
            min_reputation_ppm: 0,
            // Data scattering makes each draw read a count per candidate.
            max_tasks_per_worker: u32::from(scatter),
        }),
    );
    let (out, took) = chain.block(&[post]);
    assert!(
        out.tx_results.iter().all(|r| r.code == Code::Ok),
        "{:?}",
        out.tx_results[0].log
    );
    (took, events(&out, "task_assigned").count())
}

/// Jobs of `max_tasks_per_job` tasks at the largest replication whose
/// workers never commit: the timed block is the one where every commit
/// deadline falls due. Returns its time and the deadlines it counted.
fn deadline_storm(workers: usize) -> (Duration, usize) {
    let requester = key(6, 0);
    let pool: Vec<SigningKey> = (0..workers).map(|i| key(7, i)).collect();
    let mut chain = Chain::with_pool(&[&requester], &pool);
    let params = chain.query("/params");
    let tasks = params["max_tasks_per_job"].as_u64().unwrap() as usize;
    let window = params["commit_window_blocks"].as_u64().unwrap();
    let posts: Vec<Vec<u8>> = (0..2)
        .map(|j| {
            chain.sign(
                &requester,
                Msg::PostJob(pb::PostJob {
                    module_id: ModuleId::of(compute_jobs::PRIMES_WASM).0.to_vec(),
                    tasks: (0..tasks)
                        .map(|i| inline([j as u8, (i >> 8) as u8, i as u8].to_vec()))
                        .collect(),
                    policy: Some(pb::Policy {
                        kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                            replicas: 3,
                            quorum: 2,
                            max_replicas: 3,
                        })),
                    }),
                    fuel_limit: 1_000,
                    price_per_mfuel: 1,
                    deadline_blocks: 1_000,
                    min_reputation_ppm: 0,
                    max_tasks_per_worker: 0,
                }),
            )
        })
        .collect();
    chain.setup(&posts);
    let mut worst = Duration::ZERO;
    let mut missed = 0;
    // Assignment spreads over a few blocks; every commit deadline passes
    // within a window after the last of them.
    for _ in 0..window + 8 {
        let (out, took) = chain.block(&[]);
        let count = events(&out, "deadline_missed").count();
        if count > 0 && took > worst {
            worst = took;
            missed = count;
        }
    }
    (worst, missed)
}

/// A block of maximal `PostJob` transactions: each of `max_tasks_per_job`
/// tasks with as much inline input as `max_tx_bytes` allows, as many as
/// fill a block.
fn maximal_posts(workers: usize) -> (Duration, usize) {
    let requesters: Vec<SigningKey> = (0..32).map(|i| key(8, i)).collect();
    let pool: Vec<SigningKey> = (0..workers).map(|i| key(9, i)).collect();
    let refs: Vec<&SigningKey> = requesters.iter().collect();
    let mut chain = Chain::with_pool(&refs, &pool);
    let params = chain.query("/params");
    let tasks = params["max_tasks_per_job"].as_u64().unwrap() as usize;
    let max_tx = params["max_tx_bytes"].as_u64().unwrap() as usize;
    // Room for the envelope and each task's own framing.
    let input = (max_tx - 4_096) / tasks - 8;
    let mut txs = Vec::new();
    let mut bytes = 0;
    for (r, requester) in requesters.iter().enumerate() {
        let tx = chain.sign(
            requester,
            Msg::PostJob(pb::PostJob {
                module_id: ModuleId::of(compute_jobs::PRIMES_WASM).0.to_vec(),
                tasks: (0..tasks)
                    .map(|i| {
                        let mut data = vec![r as u8; input];
                        data[..4].copy_from_slice(&(i as u32).to_be_bytes());
                        inline(data)
                    })
                    .collect(),
                policy: None,
                fuel_limit: 1_000,
                price_per_mfuel: 1,
                deadline_blocks: 1_000,
                min_reputation_ppm: 0,
                max_tasks_per_worker: 0,
            }),
        );
        assert!(tx.len() <= max_tx, "{} > {max_tx}", tx.len());
        if bytes + tx.len() > BLOCK_BYTES {
            break;
        }
        bytes += tx.len();
        txs.push(tx);
    }
    let count = txs.len();
    let (out, took) = chain.block(&txs);
    assert!(
        out.tx_results.iter().all(|r| r.code == Code::Ok),
        "{}",
        out.tx_results[0].log
    );
    (took, count)
}

fn row(name: &str, detail: &str, took: Duration, base: Duration) {
    println!(
        "| {name} | {detail} | {:.1} | {:.2} |",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() / base.as_secs_f64()
    );
}

fn main() {
    let quick = std::env::var_os("WORST_BLOCKS_QUICK").is_some();
    let pool = if quick { 500 } else { 10_000 };
    let base = baseline();
    println!("| block | what it holds | FinalizeBlock ms | ratio to the ordinary full block |");
    println!("| --- | --- | --- | --- |");
    row("ordinary full block", "10,000 transfers", base, base);
    let max_verify_fuel = compute_abci::params::defaults().max_verify_fuel;
    let (took, judged) = verify_flood(1_024, max_verify_fuel, true);
    row(
        "verify flood, fuel burnt",
        &format!("1,024 reveals whose verify burns max_verify_fuel; {judged} judged in the block"),
        took,
        base,
    );
    let (took, judged) = verify_flood(1_024, 1, false);
    row(
        "verify flood, cheap",
        &format!("1,024 reveals whose verify accepts at once; {judged} judged in the block"),
        took,
        base,
    );
    let (took, judged) = dispute_flood(64);
    row(
        "dispute flood, fuel burnt",
        &format!(
            "64 disputes of tasks whose run burns max_referee_fuel; {judged} judged in the block"
        ),
        took,
        base,
    );
    for (name, took, detail) in compile_bombs() {
        row(&name, &detail, took, base);
    }
    let (took, assigned) = assignment_storm(pool, false);
    row(
        "assignment storm",
        &format!("{pool} workers, one job of max_tasks_per_job tasks x max_replicas; {assigned} slots drawn"),
        took,
        base,
    );
    let (took, assigned) = assignment_storm(pool, true);
    row(
        "assignment storm, scattered",
        &format!("as above with max_tasks_per_worker 1; {assigned} slots drawn"),
        took,
        base,
    );
    let (took, missed) = deadline_storm(pool.min(2_000));
    row(
        "deadline storm",
        &format!("two jobs of max_tasks_per_job tasks x 3 whose workers never commit; {missed} deadlines missed in the block"),
        took,
        base,
    );
    let (took, posts) = maximal_posts(pool.min(2_000));
    row(
        "maximal transactions",
        &format!(
            "{posts} PostJob of max_tx_bytes (max_tasks_per_job tasks each) filling a 21 MiB block"
        ),
        took,
        base,
    );
}

/// Blocks of hostile modules at the compile limits, each class filling the
/// block's compile budget with distinct copies; timed through
/// ProcessProposal (where a validator first compiles them) and FinalizeBlock
/// on a fresh validator.
fn compile_bombs() -> Vec<(String, Duration, String)> {
    let limits = compute_sandbox::ModuleLimits::default();
    let budget = compute_abci::params::defaults().max_compile_units_per_block;
    let mut rows = Vec::new();
    for (name, wasm) in compute_sandbox::bombs::slowest_admissible() {
        let units = compute_sandbox::validate_module(&wasm, &limits)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .compile_units;
        let copies = usize::try_from(budget / units.max(1)).unwrap().max(1);
        let uploaders: Vec<SigningKey> = (0..copies).map(|i| key(10, i)).collect();
        let refs: Vec<&SigningKey> = uploaders.iter().collect();
        let mut chain = Chain::new(&refs, json!({}));
        // Distinct modules: each copy carries its own custom section.
        let txs: Vec<Vec<u8>> = uploaders
            .iter()
            .enumerate()
            .map(|(i, uploader)| {
                let mut distinct = wasm.clone();
                let tag = format!("{i:04}");
                distinct.extend_from_slice(&[0, 5, 4]);
                distinct.extend_from_slice(tag.as_bytes());
                chain.sign(uploader, store(&distinct))
            })
            .collect();
        let start = Instant::now();
        assert!(chain.app.process_proposal(&txs), "{name}: proposal refused");
        let proposal = start.elapsed();
        let (out, finalize) = chain.block(&txs);
        for r in &out.tx_results {
            assert_eq!(r.code, Code::Ok, "{name}: {}", r.log);
        }
        rows.push((
            format!("hostile modules: {name}"),
            proposal + finalize,
            format!(
                "{copies} x {} bytes, {units} compile units each (ProcessProposal {:.0} ms + FinalizeBlock {:.0} ms)",
                wasm.len(),
                proposal.as_secs_f64() * 1e3,
                finalize.as_secs_f64() * 1e3
            ),
        ));
    }
    rows
}
