//! What the authenticated state costs: FinalizeBlock + Commit on RocksDB
//! with the Jellyfish Merkle tree as the app hash, for blocks of 1,000
//! transfers among 10,000 accounts and for rounds of the job protocol, set
//! against the SHA3 hash chain the tree replaced, in the same run; and the
//! size, generation time and verification time of the tree's ICS-23 proofs.
//!
//! The chain is gone from the state machine, so its cost is estimated: a
//! recording store keeps every batch the app commits; the state writes of
//! each batch are then replayed on two fresh RocksDB stores, one through
//! `tree::apply` (committing state and tree writes, as the app does), the
//! other through the old chain function (committing state writes only).
//! The full cost with the chain is the full cost with the tree, less the
//! tree's replay, plus the chain's.
//!
//! Run: `cargo bench --workspace --bench state_tree` (docs/BENCHMARKS.md).

// A bench binary: its functions need no docs.
#![allow(missing_docs)]
// Held to the library's overflow rule; floats (the statistics) are exempt.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use compute_abci::app::QueryOptions;
use compute_abci::state::keys;
use compute_abci::store::{Delta, KvRead, RocksStore, Snapshot, Store};
use compute_abci::{tree, App, BlockInput, BlockOutput, Code};
use compute_proto::hash::{Hasher, Tag};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, JobId, ModuleId, SigningKey, TxBuilder};
use ics23::HostFunctionsManager;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Funded accounts: enough for a tree of realistic depth.
const ACCOUNTS: usize = 10_000;
const TRANSFERS_PER_BLOCK: usize = 1_000;
const TRANSFER_WARMUP_BLOCKS: usize = 5;
const TRANSFER_MEASURED_BLOCKS: usize = 30;
/// One round of the job protocol is three blocks: posts, commits, reveals.
const JOBS_PER_ROUND: usize = 100;
const WORKERS: usize = 100;
const REPLICAS_PER_JOB: usize = 3;
const JOB_WARMUP_ROUNDS: usize = 2;
const JOB_MEASURED_ROUNDS: usize = 20;
/// Keys proven, present and absent each.
const PROOF_KEYS: usize = 1_000;
const PROOF_WARMUP_KEYS: usize = 100;

fn key(kind: u8, i: usize) -> SigningKey {
    let mut seed = [kind; 32];
    let index = u64::try_from(i).expect("an index fits in u64");
    seed[..8].copy_from_slice(&index.to_be_bytes());
    SigningKey::from_seed(seed)
}

fn validator() -> [u8; 32] {
    SigningKey::from_seed([250; 32]).account().0
}

/// One batch as the store received it.
struct Recorded {
    writes: Delta,
    app_hash: Vec<u8>,
    /// Time spent copying the batch, taken out of the block's time.
    copy: Duration,
}

/// A RocksDB store that keeps a copy of every batch it commits.
struct Recorder {
    inner: RocksStore,
    log: Mutex<Vec<Recorded>>,
}

impl KvRead for Recorder {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner.scan(prefix, after, limit)
    }
}

impl Store for Recorder {
    fn commit(&self, writes: &Delta, info: &pb::CommitInfo) {
        self.inner.commit(writes, info);
        let start = Instant::now();
        let writes = writes.clone();
        let copy = start.elapsed();
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                writes,
                app_hash: info.app_hash.clone(),
                copy,
            });
    }

    fn commit_info(&self) -> Option<pb::CommitInfo> {
        self.inner.commit_info()
    }

    fn snapshot(&self) -> Box<dyn Snapshot + '_> {
        self.inner.snapshot()
    }
}

/// A chain on a recording RocksDB store, driven block by block.
struct Chain {
    app: App<Recorder>,
    _dir: tempfile::TempDir,
    builder: TxBuilder,
    nonces: BTreeMap<[u8; 32], u64>,
    height: i64,
}

impl Chain {
    fn new(funded: &[&SigningKey]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let accounts: Vec<_> = funded
            .iter()
            .map(|k| json!({"address": k.account(), "balance": 1_000_000_000_000u64}))
            .collect();
        let store = Recorder {
            inner: RocksStore::open(dir.path()).unwrap(),
            log: Mutex::new(Vec::new()),
        };
        let mut app = App::new(store);
        app.init_chain(
            "bench",
            1,
            json!({"accounts": accounts}).to_string().as_bytes(),
            &[validator()],
        )
        .expect("genesis");
        Self {
            app,
            _dir: dir,
            builder: TxBuilder::new("bench"),
            nonces: BTreeMap::new(),
            height: 0,
        }
    }

    fn sign(&mut self, key: &SigningKey, msg: Msg) -> Vec<u8> {
        let nonce = self.nonces.entry(key.account().0).or_default();
        let tx = self.builder.sign(key, *nonce, msg);
        *nonce = nonce.checked_add(1).expect("nonces stay small");
        tx
    }

    /// Runs a block whose transactions must all pass. Returns its output,
    /// FinalizeBlock + Commit time (less the recorder's copy) and the index
    /// of its batch in the recorder's log.
    fn block(&mut self, txs: &[Vec<u8>]) -> (BlockOutput, Duration, usize) {
        self.height = self.height.checked_add(1).expect("heights stay small");
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
        self.app.commit();
        let took = start.elapsed();
        for r in &out.tx_results {
            assert_eq!(r.code, Code::Ok, "{}", r.log);
        }
        let log = self.log();
        let last = log.last().expect("the block was committed");
        assert_eq!(last.app_hash, out.app_hash);
        let index = log.len().checked_sub(1).expect("one batch at least");
        (out, took.saturating_sub(last.copy), index)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.app
            .store()
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// A measured unit of work (a block, or a round of three blocks): its
/// FinalizeBlock + Commit time and the batches it committed.
struct Unit {
    full: Duration,
    batches: Vec<usize>,
}

/// Blocks of `TRANSFERS_PER_BLOCK` transfers between random funded
/// accounts. Returns the chain (for the proofs), its accounts and the
/// measured blocks.
fn transfers() -> (Chain, Vec<SigningKey>, Vec<Unit>) {
    let keys: Vec<SigningKey> = (0..ACCOUNTS).map(|i| key(1, i)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let mut chain = Chain::new(&refs);
    // Block 1 commits genesis; it is not measured.
    chain.block(&[]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut units = Vec::new();
    for block in 0..TRANSFER_WARMUP_BLOCKS.saturating_add(TRANSFER_MEASURED_BLOCKS) {
        let txs: Vec<Vec<u8>> = (0..TRANSFERS_PER_BLOCK)
            .map(|_| {
                let from = &keys[rng.gen_range(0..ACCOUNTS)];
                let to = keys[rng.gen_range(0..ACCOUNTS)].account();
                chain.sign(
                    from,
                    Msg::Transfer(pb::Transfer {
                        to: to.0.to_vec(),
                        amount: 1,
                    }),
                )
            })
            .collect();
        let (_, full, batch) = chain.block(&txs);
        if block >= TRANSFER_WARMUP_BLOCKS {
            units.push(Unit {
                full,
                batches: vec![batch],
            });
        }
    }
    (chain, keys, units)
}

/// Puts and deletes per unit, on average, by kind of state key.
type WritesByKind = BTreeMap<String, (f64, f64)>;

/// Rounds of the job protocol on a chain of `ACCOUNTS` funded accounts and
/// `WORKERS` workers: a block of `JOBS_PER_ROUND` one-task jobs (three
/// replicas, quorum two, drawn at its end), a block of every replica's
/// commit and a block of every reveal, which settles each task. Returns
/// each measured round's time with its replay, and the rounds' state writes
/// by kind of key.
fn jobs() -> (Vec<(Duration, Replayed)>, WritesByKind) {
    let requesters: Vec<SigningKey> = (0..ACCOUNTS).map(|i| key(1, i)).collect();
    let workers: Vec<SigningKey> = (0..WORKERS).map(|i| key(2, i)).collect();
    let by_hex: HashMap<String, &SigningKey> =
        workers.iter().map(|w| (w.account().to_hex(), w)).collect();
    let refs: Vec<&SigningKey> = requesters.iter().chain(&workers).collect();
    let mut chain = Chain::new(&refs);
    let mut setup = vec![chain.sign(
        &requesters[0],
        Msg::StoreModule(pb::StoreModule {
            wasm: compute_jobs::PRIMES_WASM.to_vec(),
        }),
    )];
    for w in &workers {
        setup.push(chain.sign(
            w,
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 64,
                stake: 1_000,
            }),
        ));
    }
    chain.block(&setup);
    let module = ModuleId::of(compute_jobs::PRIMES_WASM);
    let result = [3u8; 32];
    let mut units = Vec::new();
    for round in 0..JOB_WARMUP_ROUNDS.saturating_add(JOB_MEASURED_ROUNDS) {
        let tag = u32::try_from(round).expect("few rounds").to_be_bytes();
        let posts: Vec<Vec<u8>> = requesters[..JOBS_PER_ROUND]
            .iter()
            .map(|r| {
                chain.sign(
                    r,
                    Msg::PostJob(pb::PostJob {
                        module_id: module.0.to_vec(),
                        tasks: vec![pb::TaskInput {
                            source: Some(pb::task_input::Source::Inline(tag.to_vec())),
                            size: 4,
                        }],
                        policy: None,
                        fuel_limit: 1_000_000,
                        price_per_mfuel: 10,
                        deadline_blocks: 100,
                        min_reputation_ppm: 0,
                        max_tasks_per_worker: 0,
                    }),
                )
            })
            .collect();
        let (out, post_time, post_batch) = chain.block(&posts);
        let drawn: Vec<(JobId, &SigningKey)> = out
            .events
            .iter()
            .filter(|e| e.r#type == "task_assigned")
            .map(|e| {
                let attribute = |name: &str| {
                    e.attributes
                        .iter()
                        .find(|a| a.key == name)
                        .map(|a| a.value.clone())
                        .unwrap_or_default()
                };
                let job = JobId::from_hex(&attribute("job")).unwrap();
                (job, by_hex[&attribute("worker")])
            })
            .collect();
        assert_eq!(
            drawn.len(),
            JOBS_PER_ROUND.saturating_mul(REPLICAS_PER_JOB),
            "every replica drawn in the posting block"
        );
        let commits: Vec<Vec<u8>> = drawn
            .iter()
            .map(|(id, w)| {
                let c = commitment(&id.0, 0, &w.account().0, &result, 500, b"salt");
                chain.sign(
                    w,
                    Msg::CommitResult(pb::CommitResult {
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
                chain.sign(
                    w,
                    Msg::RevealResult(pb::RevealResult {
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
        let (_, commit_time, commit_batch) = chain.block(&commits);
        let (out, reveal_time, reveal_batch) = chain.block(&reveals);
        let settled = out
            .events
            .iter()
            .chain(out.tx_results.iter().flat_map(|r| &r.events))
            .filter(|e| e.r#type == "task_settled")
            .count();
        assert_eq!(settled, JOBS_PER_ROUND, "every task settled in its round");
        if round >= JOB_WARMUP_ROUNDS {
            units.push(Unit {
                full: post_time
                    .saturating_add(commit_time)
                    .saturating_add(reveal_time),
                batches: vec![post_batch, commit_batch, reveal_batch],
            });
        }
    }
    let log = chain.log();
    (replay_units(&log, &units), writes_by_kind(&log, &units))
}

/// The kind of a state key: its prefix up to the first `/` (the whole key
/// when it has none).
fn key_kind(key: &[u8]) -> String {
    let end = key
        .iter()
        .position(|&b| b == b'/')
        .map_or(key.len(), |i| i.saturating_add(1));
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// The state writes of a unit (puts, deletes), on average, by key kind.
fn writes_by_kind(log: &[Recorded], units: &[Unit]) -> WritesByKind {
    let mut sums: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for unit in units {
        for &i in &unit.batches {
            for (k, v) in log[i].writes.iter() {
                if matches!(k.first(), Some(&tree::TREE_PREFIX | 0xff)) {
                    continue;
                }
                let entry = sums.entry(key_kind(k)).or_default();
                if v.is_some() {
                    entry.0 = entry.0.saturating_add(1);
                } else {
                    entry.1 = entry.1.saturating_add(1);
                }
            }
        }
    }
    let n = units.len().max(1) as f64;
    sums.into_iter()
        .map(|(kind, (puts, deletes))| (kind, (puts as f64 / n, deletes as f64 / n)))
        .collect()
}

/// The app hash the tree replaced (removed in 4670e69): a SHA3 chain over
/// each block's write set in key order, every part length-prefixed.
fn chain_hash(prev: &[u8; 32], height: u64, writes: &Delta) -> [u8; 32] {
    let len = |n: usize| u64::try_from(n).expect("a length fits in u64");
    let mut h = Hasher::new(Tag::State);
    h.update(prev);
    h.update_u64(height);
    h.update_u64(len(writes.len()));
    for (key, value) in writes.iter() {
        h.update_u64(len(key.len()));
        h.update(key);
        match value {
            Some(value) => {
                h.update(&[1]);
                h.update_u64(len(value.len()));
                h.update(value);
            }
            None => h.update(&[0]),
        }
    }
    h.finalize()
}

/// What one batch cost in the replay.
#[derive(Clone, Copy, Default)]
struct Replayed {
    tree_apply: Duration,
    tree_commit: Duration,
    /// jmt's key-by-key update instead of the batch (re-run).
    key_by_key: Duration,
    /// The value-history seeks inside `tree::apply` (re-run).
    value_seeks: Duration,
    chain_hash: Duration,
    chain_commit: Duration,
    state_entries: usize,
    state_deletes: usize,
    state_bytes: usize,
    tree_entries: usize,
    tree_bytes: usize,
}

fn bytes_of(writes: &Delta) -> usize {
    writes
        .iter()
        .map(|(k, v)| k.len().saturating_add(v.map_or(0, <[u8]>::len)))
        .fold(0, usize::saturating_add)
}

/// Replays every batch of `log` through the tree and through the chain,
/// each on its own fresh RocksDB store; checks every tree root against the
/// app hash the app committed.
fn replay(log: &[Recorded]) -> Vec<Replayed> {
    let tree_dir = tempfile::tempdir().unwrap();
    let chain_dir = tempfile::tempdir().unwrap();
    let tree_store = RocksStore::open(tree_dir.path()).unwrap();
    let chain_store = RocksStore::open(chain_dir.path()).unwrap();
    let mut prev = [0u8; 32];
    let mut out = Vec::with_capacity(log.len());
    for (version, batch) in (0u64..).zip(log) {
        let mut state = Delta::new();
        let mut tree_entries = 0usize;
        let mut tree_bytes = 0usize;
        for (k, v) in batch.writes.iter() {
            match k.first() {
                Some(&tree::TREE_PREFIX) => {
                    tree_entries = tree_entries.saturating_add(1);
                    tree_bytes = tree_bytes
                        .saturating_add(k.len())
                        .saturating_add(v.map_or(0, <[u8]>::len));
                }
                Some(0xff) => {}
                _ => match v {
                    Some(v) => state.put(k.to_vec(), v.to_vec()),
                    None => state.delete(k.to_vec()),
                },
            }
        }
        let height = version.saturating_add(1);
        let info = |app_hash: [u8; 32]| pb::CommitInfo {
            height: i64::try_from(height).expect("heights stay small"),
            app_hash: app_hash.to_vec(),
        };
        // The tree, as FinalizeBlock and Commit run it.
        let mut all = state.clone();
        let start = Instant::now();
        let (root, tree_writes) = tree::apply(&tree_store, &all, version);
        all.merge(tree_writes);
        let tree_apply = start.elapsed();
        let (key_by_key, value_seeks) = split_apply(&tree_store, &state, version, root);
        let start = Instant::now();
        tree_store.commit(&all, &info(root));
        let tree_commit = start.elapsed();
        assert_eq!(
            root.as_slice(),
            batch.app_hash.as_slice(),
            "the replayed tree reaches the app's hash"
        );
        // The chain it replaced: the hash, then the state writes alone.
        let start = Instant::now();
        prev = chain_hash(&prev, height, &state);
        let chain_hash_time = start.elapsed();
        let start = Instant::now();
        chain_store.commit(&state, &info(prev));
        let chain_commit = start.elapsed();
        out.push(Replayed {
            tree_apply,
            tree_commit,
            key_by_key,
            value_seeks,
            chain_hash: chain_hash_time,
            chain_commit,
            state_entries: state.len(),
            state_deletes: state.iter().filter(|(_, v)| v.is_none()).count(),
            state_bytes: bytes_of(&state),
            tree_entries,
            tree_bytes,
        });
    }
    out
}

/// Re-runs, on the store `tree::apply` just read (before its writes are
/// committed), two parts of its work for the split of its time: the
/// value-history seek for each write to a key that existed (to find the
/// entry it makes stale), and, for comparison, jmt's key-by-key
/// `put_value_set` that `tree::apply` used before it batched insertions
/// (checked to reach the same `root`).
fn split_apply(
    store: &RocksStore,
    state: &Delta,
    version: u64,
    root: [u8; 32],
) -> (Duration, Duration) {
    let view = tree::TreeView::new(store);
    let hashed: Vec<(jmt::KeyHash, Option<Vec<u8>>)> = state
        .iter()
        .map(|(k, v)| (tree::key_hash(k), v.map(tree::leaf_value)))
        .collect();
    let start = Instant::now();
    let (put_root, _) = jmt::Sha256Jmt::new(&view)
        .put_value_set(hashed, version)
        .expect("the tree updates");
    let key_by_key = start.elapsed();
    assert_eq!(put_root.0, root);
    let existing: Vec<&[u8]> = state
        .iter()
        .filter(|(k, v)| v.is_none() || store.get(k).is_some())
        .map(|(k, _)| k)
        .collect();
    let start = Instant::now();
    for key in existing {
        std::hint::black_box(view.get(key, version.saturating_sub(1)));
    }
    (key_by_key, start.elapsed())
}

impl Replayed {
    /// The costs of two batches together (of one unit).
    fn plus(self, b: Self) -> Self {
        Self {
            tree_apply: self.tree_apply.saturating_add(b.tree_apply),
            tree_commit: self.tree_commit.saturating_add(b.tree_commit),
            key_by_key: self.key_by_key.saturating_add(b.key_by_key),
            value_seeks: self.value_seeks.saturating_add(b.value_seeks),
            chain_hash: self.chain_hash.saturating_add(b.chain_hash),
            chain_commit: self.chain_commit.saturating_add(b.chain_commit),
            state_entries: self.state_entries.saturating_add(b.state_entries),
            state_deletes: self.state_deletes.saturating_add(b.state_deletes),
            state_bytes: self.state_bytes.saturating_add(b.state_bytes),
            tree_entries: self.tree_entries.saturating_add(b.tree_entries),
            tree_bytes: self.tree_bytes.saturating_add(b.tree_bytes),
        }
    }
}

/// Each unit's full cost with the tree, and its replay costs summed over
/// its batches.
fn replay_units(log: &[Recorded], units: &[Unit]) -> Vec<(Duration, Replayed)> {
    let replayed = replay(log);
    let zero = Replayed::default();
    units
        .iter()
        .map(|u| {
            let sum = u.batches.iter().fold(zero, |sum, &i| sum.plus(replayed[i]));
            (u.full, sum)
        })
        .collect()
}

/// `n` with thousands separated by commas.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len().saturating_mul(2));
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && digits.len().saturating_sub(i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Median and mean of `values`.
fn median_mean(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    assert!(n > 0, "no samples");
    let mid = n / 2;
    let median = if n.is_multiple_of(2) {
        (values[mid.saturating_sub(1)] + values[mid]) / 2.0
    } else {
        values[mid]
    };
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (median, mean)
}

/// Prints the table of one workload: the full cost with the tree, the
/// replays of tree and chain with their splits, the estimate with the
/// chain and the ratio; then the bytes each writes.
fn report(name: &str, unit: &str, rows: &[(Duration, Replayed)]) {
    let column = |f: &dyn Fn(&(Duration, Replayed)) -> f64| {
        median_mean(rows.iter().map(f).collect::<Vec<_>>())
    };
    let tree = |r: &Replayed| ms(r.tree_apply.saturating_add(r.tree_commit));
    let chain = |r: &Replayed| ms(r.chain_hash.saturating_add(r.chain_commit));
    let estimated = |full: &Duration, r: &Replayed| ms(*full) - tree(r) + chain(r);
    let full = column(&|(full, _)| ms(*full));
    let with_chain = column(&|(full, r)| estimated(full, r));
    println!();
    println!("### {name}: {} {unit}s measured", rows.len());
    println!();
    println!("| per {unit} | median ms | mean ms |");
    println!("| --- | --- | --- |");
    let row = |what: &str, (median, mean): (f64, f64)| {
        println!("| {what} | {median:.2} | {mean:.2} |");
    };
    row("FinalizeBlock + Commit with the tree (measured)", full);
    row(
        "(i) tree: `tree::apply` + commit of state and tree writes (replay)",
        column(&|(_, r)| tree(r)),
    );
    row(
        "- of which `tree::apply`",
        column(&|(_, r)| ms(r.tree_apply)),
    );
    row(
        "- - in it, the value-history seeks, one per write to an existing key (re-run)",
        column(&|(_, r)| ms(r.value_seeks)),
    );
    row(
        "- of which the RocksDB commit",
        column(&|(_, r)| ms(r.tree_commit)),
    );
    row(
        "(jmt's key-by-key `put_value_set`, the update before batching, re-run)",
        column(&|(_, r)| ms(r.key_by_key)),
    );
    row(
        "(ii) chain: SHA3 chain + commit of state writes (replay)",
        column(&|(_, r)| chain(r)),
    );
    row(
        "- of which the SHA3 chain",
        column(&|(_, r)| ms(r.chain_hash)),
    );
    row(
        "- of which the RocksDB commit",
        column(&|(_, r)| ms(r.chain_commit)),
    );
    row(
        "FinalizeBlock + Commit with the chain (estimated: full - (i) + (ii))",
        with_chain,
    );
    println!(
        "| tree / chain | {:.2}x (of medians) | {:.2}x (of means) |",
        full.0 / with_chain.0,
        full.1 / with_chain.1
    );
    println!();
    println!("| written per {unit} (mean) | entries | bytes (keys + values) |");
    println!("| --- | --- | --- |");
    let mean = |f: &dyn Fn(&Replayed) -> usize| column(&|(_, r)| f(r) as f64).1;
    let state_entries = mean(&|r| r.state_entries);
    let state_deletes = mean(&|r| r.state_deletes);
    let state_bytes = mean(&|r| r.state_bytes);
    let tree_entries = mean(&|r| r.tree_entries);
    let tree_bytes = mean(&|r| r.tree_bytes);
    println!("| state | {state_entries:.0} ({state_deletes:.0} deletes) | {state_bytes:.0} |");
    println!("| tree | {tree_entries:.0} | {tree_bytes:.0} |");
    println!(
        "| tree / state | {:.2}x | {:.2}x |",
        tree_entries / state_entries,
        tree_bytes / state_bytes
    );
}

/// Proof sizes and times for `/account/<hex>` of present and absent
/// accounts on `chain`.
fn proofs(chain: &Chain, present: &[SigningKey]) {
    let absent: Vec<SigningKey> = (0..PROOF_KEYS).map(|i| key(3, i)).collect();
    let stride = (present.len() / PROOF_KEYS).max(1);
    let present: Vec<&SigningKey> = present.iter().step_by(stride).take(PROOF_KEYS).collect();
    let root = chain.app.last_commit().app_hash.to_vec();
    let spec = jmt::ics23_spec();
    let history = chain.app.state_history();
    let query = |path: &str, prove: bool| {
        let start = Instant::now();
        let answer = chain.app.query_with(
            path,
            QueryOptions {
                height: 0,
                prove,
                history,
            },
        );
        let took = start.elapsed();
        assert_eq!(answer.code, Code::Ok, "{path}: {}", answer.log);
        (answer, took)
    };
    // Warm the caches (RocksDB blocks, the allocator) on other keys.
    for k in absent
        .iter()
        .chain(present.iter().copied())
        .take(PROOF_WARMUP_KEYS)
    {
        query(&format!("/account/{}", k.account().to_hex()), true);
    }
    println!();
    println!(
        "### Proofs: `/account/<hex>` on {} accounts, {} keys each",
        grouped(ACCOUNTS),
        grouped(PROOF_KEYS)
    );
    println!();
    println!("| key | proof bytes min / median / max | proofs per answer | query ms, no proof (median / mean) | query ms, with proof (median / mean) | decode + verify us (median / mean) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, accounts, exists) in [
        ("present", present, true),
        ("absent", absent.iter().collect::<Vec<_>>(), false),
    ] {
        let mut sizes = Vec::new();
        let mut plain = Vec::new();
        let mut proven = Vec::new();
        let mut verify = Vec::new();
        let mut per_answer = 0;
        for k in accounts {
            let path = format!("/account/{}", k.account().to_hex());
            let (_, took) = query(&path, false);
            plain.push(ms(took));
            let (answer, took) = query(&path, true);
            proven.push(ms(took));
            per_answer = answer.proofs.len();
            let raw_key = keys::account(&k.account());
            let proof = answer
                .proofs
                .iter()
                .find(|p| p.key == raw_key)
                .expect("the account key is proven");
            sizes.push(proof.proof.len());
            let value = chain
                .app
                .store()
                .get(&raw_key)
                .map(|v| tree::leaf_value(&v));
            assert_eq!(value.is_some(), exists, "{name} account");
            let start = Instant::now();
            let decoded: ics23::CommitmentProof =
                prost_ics23::Message::decode(proof.proof.as_slice()).expect("a proof decodes");
            let ok = match &value {
                Some(v) => ics23::verify_membership::<HostFunctionsManager>(
                    &decoded, &spec, &root, &raw_key, v,
                ),
                None => ics23::verify_non_membership::<HostFunctionsManager>(
                    &decoded, &spec, &root, &raw_key,
                ),
            };
            verify.push(us(start.elapsed()));
            assert!(ok, "the {name} account's proof verifies");
        }
        sizes.sort_unstable();
        let (plain_median, plain_mean) = median_mean(plain);
        let (proven_median, proven_mean) = median_mean(proven);
        let (verify_median, verify_mean) = median_mean(verify);
        println!(
            "| {name} | {} / {} / {} | {per_answer} | {plain_median:.3} / {plain_mean:.3} | {proven_median:.3} / {proven_mean:.3} | {verify_median:.1} / {verify_mean:.1} |",
            sizes.first().unwrap_or(&0),
            sizes[sizes.len() / 2],
            sizes.last().unwrap_or(&0),
        );
    }
}

fn main() {
    let started = Instant::now();
    let (chain, keys, units) = transfers();
    let rows = {
        let log = chain.log();
        replay_units(&log, &units)
    };
    report(
        &format!(
            "{} transfers among {} accounts",
            grouped(TRANSFERS_PER_BLOCK),
            grouped(ACCOUNTS)
        ),
        "block",
        &rows,
    );
    proofs(&chain, &keys);
    drop(chain);
    let (rows, kinds) = jobs();
    let replicas = JOBS_PER_ROUND.saturating_mul(REPLICAS_PER_JOB);
    report(
        &format!(
            "Job protocol, rounds of {JOBS_PER_ROUND} posts, {replicas} commits, {replicas} reveals on {} accounts and {WORKERS} workers",
            grouped(ACCOUNTS)
        ),
        "round",
        &rows,
    );
    println!();
    println!("| state key kind | puts per round (mean) | deletes per round (mean) | writes per settled replica |");
    println!("| --- | --- | --- | --- |");
    let per_replica = |puts: f64, deletes: f64| (puts + deletes) / replicas as f64;
    for (kind, (puts, deletes)) in &kinds {
        println!(
            "| `{kind}` | {puts:.0} | {deletes:.0} | {:.2} |",
            per_replica(*puts, *deletes)
        );
    }
    let (puts, deletes) = kinds
        .values()
        .fold((0.0, 0.0), |(p, d), (kp, kd)| (p + kp, d + kd));
    println!(
        "| all | {puts:.0} | {deletes:.0} | {:.2} |",
        per_replica(puts, deletes)
    );
    println!();
    println!("(whole run {:.1} s)", started.elapsed().as_secs_f64());
}
