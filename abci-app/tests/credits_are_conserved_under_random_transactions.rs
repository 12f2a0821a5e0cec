//! Property: over random sequences of valid and invalid transactions from
//! several keys (transfers, worker registration, jobs posted and cancelled,
//! workers committing and revealing honest, wrong or no results, disputes the
//! referee confirms or overturns, Verified jobs whose `verify` refuses
//! everything) and attacks (transfers to small-order keys, transactions
//! forged under the identity key, signed intents re-encoded with duplicated
//! or unknown fields), two replicas, one in memory and one on RocksDB that is
//! closed and reopened halfway as a restarted validator would be, agree on
//! every app hash, no balance goes negative (u64 and checked arithmetic make
//! that a refused transaction, never a wrap), credits are conserved
//! (balances, stakes, escrows and dispute bonds held add up to genesis plus
//! minted, less slashed and bonds burnt), and once every deadline has passed every job has ended
//! (completed, failed or cancelled) with its escrow paid out or refunded.
//! `PROPTEST_STATS=1` prints how many tasks each case settled, failed and
//! slashed, to check that the strategy reaches them.

mod common;

use common::{keys, validator_key, TestChain};
use compute_abci::store::{MemStore, RocksStore};
use std::collections::BTreeMap;

use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEYS: usize = 5;
const GENESIS_BALANCE: u64 = 10_000;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Register {
        who: usize,
        capacity: u32,
        stake: u64,
    },
    Unregister {
        who: usize,
    },
    Post {
        who: usize,
        tasks: usize,
        price: u64,
        policy: usize,
        deadline: u64,
    },
    /// A worker acts on its assignments: one transaction each, or (when
    /// `batched`) its commits in one `CommitResults` and its reveals in one
    /// `RevealResults`.
    Work {
        who: usize,
        pick: usize,
        honest: bool,
        batched: bool,
    },
    Cancel {
        who: usize,
        job: usize,
    },
    /// A dispute of a task's result (settled or not, right or wrong), with
    /// a bond that may be too low or more than the disputer holds.
    Dispute {
        who: usize,
        job: usize,
        task: u32,
        bond: u64,
    },
    Garbage(Vec<u8>),
    /// A transfer to a small-order key: credits anyone could spend.
    Torsion {
        from: usize,
        point: usize,
    },
    /// A transfer "signed" by the identity key with R = identity, S = 0,
    /// which ZIP-215 accepts for every message.
    Forged {
        to: usize,
    },
    /// A valid transfer re-encoded: a duplicated amount, or an unknown field.
    Malleated {
        from: usize,
        to: usize,
        duplicate: bool,
    },
}

/// Small-order points in canonical encodings (identity, order 2, order 4,
/// order 8).
const SMALL_ORDER: [&str; 4] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, 0..KEYS, 0u64..4_000).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        2 => (0..KEYS, 0u32..4, 0u64..3_000).prop_map(|(who, capacity, stake)| Op::Register { who, capacity, stake }),
        1 => (0..KEYS).prop_map(|who| Op::Unregister { who }),
        2 => (0..KEYS, 0usize..4, 0u64..2_000, 0usize..4, 6u64..24).prop_map(|(who, tasks, price, policy, deadline)| Op::Post { who, tasks, price, policy, deadline }),
        6 => (0..KEYS, 0usize..4, proptest::bool::weighted(0.6), any::<bool>()).prop_map(|(who, pick, honest, batched)| Op::Work { who, pick, honest, batched }),
        1 => (0..KEYS, 0usize..8).prop_map(|(who, job)| Op::Cancel { who, job }),
        3 => (0..KEYS, 0usize..8, 0u32..3, 0u64..3_000).prop_map(|(who, job, task, bond)| Op::Dispute { who, job, task, bond }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
        1 => (0..KEYS, 0..SMALL_ORDER.len()).prop_map(|(from, point)| Op::Torsion { from, point }),
        1 => (0..KEYS).prop_map(|to| Op::Forged { to }),
        1 => (0..KEYS, 0..KEYS, any::<bool>()).prop_map(|(from, to, duplicate)| Op::Malleated { from, to, duplicate }),
    ]
}

struct World {
    chains: (TestChain<MemStore>, Option<TestChain<RocksStore>>),
    /// The RocksDB replica's directory.
    dir: tempfile::TempDir,
    keys: Vec<SigningKey>,
    module: ModuleId,
    /// The module whose `verify` refuses everything.
    lying: ModuleId,
    jobs: Vec<JobId>,
    /// The posted jobs under the Verified policy.
    verified: std::collections::BTreeSet<JobId>,
    /// What each (worker, job, task) committed to: result hash, fuel and
    /// (for a Verified job) the output.
    committed: BTreeMap<(usize, JobId, u32), Committed>,
}

/// A result a worker committed to: its hash, its fuel and, for a Verified
/// job, the output.
type Committed = ([u8; 32], u64, Vec<u8>);

/// The longest job deadline the strategy draws, plus the windows.
const MAX_DEADLINE: u32 = 24;

impl World {
    fn new() -> Self {
        let keys = keys(KEYS as u8);
        let balances: Vec<(AccountId, u64)> = keys
            .iter()
            .map(|k| (k.account(), GENESIS_BALANCE))
            .collect();
        let params = json!({
            "block_reward": 7,
            "min_worker_stake": 10,
            "max_worker_capacity": 3,
            "commit_window_blocks": 3,
            "reveal_window_blocks": 3,
        });
        let dir = tempfile::tempdir().unwrap();
        let mut chains = (
            TestChain::new(MemStore::new(), &balances, params.clone()),
            TestChain::new(RocksStore::open(dir.path()).unwrap(), &balances, params),
        );
        let wasm = compute_jobs::PRIMES_WASM;
        let lying = wat::parse_str(common::LYING_VERIFY_WAT).unwrap();
        let store = |nonce: u64, wasm: &[u8]| {
            chains.0.txs.sign(
                &keys[0],
                nonce,
                pb::tx_body::Msg::StoreModule(pb::StoreModule {
                    wasm: wasm.to_vec(),
                }),
            )
        };
        let stores = [store(0, wasm), store(1, &lying)];
        assert_eq!(chains.0.block(&stores), chains.1.block(&stores));
        let chains = (chains.0, Some(chains.1));
        Self {
            chains,
            dir,
            keys,
            module: ModuleId::of(wasm),
            lying: ModuleId::of(&lying),
            jobs: Vec::new(),
            verified: std::collections::BTreeSet::new(),
            committed: BTreeMap::new(),
        }
    }

    fn nonce(&self, who: usize) -> u64 {
        self.chains
            .0
            .query(&format!("/account/{}", self.keys[who].account()))["nonce"]
            .as_u64()
            .unwrap()
    }

    /// Signs `op` with the signer's current nonce plus `offset` (its earlier
    /// transactions in the same block).
    /// The transactions of `op`: none when a worker has nothing to act on,
    /// one per assignment it acts on.
    fn sign(&mut self, op: &Op, offset: &mut [u64; KEYS]) -> Vec<Vec<u8>> {
        let (who, msg) = match op {
            Op::Garbage(bytes) => return vec![bytes.clone()],
            Op::Forged { to } => return vec![forged_transfer(&self.keys[*to].account())],
            Op::Torsion { from, point } => (
                *from,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: hex::decode(SMALL_ORDER[*point]).unwrap(),
                    amount: 1,
                }),
            ),
            Op::Malleated {
                from,
                to,
                duplicate,
            } => {
                // Signed at the right nonce, so only the encoding is wrong.
                let nonce = self.nonce(*from) + offset[*from];
                return vec![malleated_transfer(
                    &self.keys[*from],
                    nonce,
                    &self.keys[*to].account(),
                    *duplicate,
                )];
            }
            Op::Transfer { from, to, amount } => (
                *from,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: self.keys[*to].account().0.to_vec(),
                    amount: *amount,
                }),
            ),
            Op::Register {
                who,
                capacity,
                stake,
            } => (
                *who,
                pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: *capacity,
                    stake: *stake,
                }),
            ),
            Op::Unregister { who } => (
                *who,
                pb::tx_body::Msg::UnregisterWorker(pb::UnregisterWorker {}),
            ),
            Op::Work {
                who,
                pick,
                honest,
                batched,
            } => {
                let mut msgs = self.work(*who, *pick, *honest);
                if *batched {
                    msgs = batch(msgs);
                }
                return msgs
                    .into_iter()
                    .map(|msg| {
                        let nonce = self.nonce(*who) + offset[*who];
                        offset[*who] += 1;
                        self.chains.0.txs.sign(&self.keys[*who], nonce, msg)
                    })
                    .collect();
            }
            Op::Post {
                who,
                tasks,
                price,
                policy,
                deadline,
            } if *policy == 3 => (
                *who,
                pb::tx_body::Msg::PostJob(pb::PostJob {
                    module_id: self.lying.0.to_vec(),
                    tasks: one_byte_inputs(*tasks),
                    policy: Some(pb::Policy {
                        kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                            verify_fuel: 100_000,
                            max_workers: 2,
                        })),
                    }),
                    fuel_limit: 1_000_000,
                    price_per_mfuel: *price,
                    deadline_blocks: *deadline,
                    min_reputation_ppm: 0,
                    max_tasks_per_worker: 0,
                }),
            ),
            Op::Post {
                who,
                tasks,
                price,
                policy,
                deadline,
            } => (
                *who,
                pb::tx_body::Msg::PostJob(pb::PostJob {
                    module_id: self.module.0.to_vec(),
                    tasks: one_byte_inputs(*tasks),
                    policy: [None, Some((1, 1, 2)), Some((2, 2, 3))][*policy].map(
                        |(replicas, quorum, max_replicas)| pb::Policy {
                            kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                                replicas,
                                quorum,
                                max_replicas,
                            })),
                        },
                    ),
                    fuel_limit: 1_000_000,
                    price_per_mfuel: *price,
                    deadline_blocks: *deadline,
                    min_reputation_ppm: 0,
                    max_tasks_per_worker: 0,
                }),
            ),
            Op::Cancel { who, job } => {
                let id = self.jobs.get(*job).copied().unwrap_or(JobId([9; 32]));
                (
                    *who,
                    pb::tx_body::Msg::CancelJob(pb::CancelJob {
                        job_id: id.0.to_vec(),
                    }),
                )
            }
            Op::Dispute {
                who,
                job,
                task,
                bond,
            } => {
                // Any posted job, so that settled tasks are often hit.
                let id = match self.jobs.len() {
                    0 => JobId([9; 32]),
                    n => self.jobs[*job % n],
                };
                (
                    *who,
                    pb::tx_body::Msg::Dispute(pb::Dispute {
                        job_id: id.0.to_vec(),
                        task: *task,
                        input: Vec::new(),
                        bond: *bond,
                    }),
                )
            }
        };
        let nonce = self.nonce(who) + offset[who];
        offset[who] += 1;
        if let Op::Post { policy, .. } = op {
            // Remember the id it would get; a refused post leaves a dangling
            // id, which CancelJob must then refuse.
            let id = JobId::derive(&self.keys[who].account(), nonce);
            self.jobs.push(id);
            if *policy == 3 {
                self.verified.insert(id);
            }
        }
        vec![self.chains.0.txs.sign(&self.keys[who], nonce, msg)]
    }

    /// Commits and reveals for `who`'s assignments as the committed state
    /// shows them, skipping the `pick`-th (a worker that forgets one).
    fn work(&mut self, who: usize, pick: usize, honest: bool) -> Vec<pb::tx_body::Msg> {
        let worker = self.keys[who].account();
        let view = self
            .chains
            .0
            .query(&format!("/worker/{worker}/assignments"));
        let list = view["assignments"].as_array().cloned().unwrap_or_default();
        list.iter()
            .enumerate()
            .filter(|(i, _)| *i != pick)
            .filter_map(|(_, a)| self.act(who, a, honest))
            .collect()
    }

    /// The commit or reveal one assignment needs now, if any.
    fn act(&mut self, who: usize, a: &Value, honest: bool) -> Option<pb::tx_body::Msg> {
        let worker = self.keys[who].account();
        let job = JobId::from_hex(a["job"].as_str()?).ok()?;
        let task = u32::try_from(a["task"].as_u64()?).ok()?;
        let salt = sha3_256(&worker.0).to_vec();
        match (a["task_status"].as_str()?, a["replica_status"].as_str()?) {
            (_, "assigned") => {
                let truth = sha3_256(&[job.0.as_slice(), &task.to_be_bytes()].concat());
                let mut result = if honest {
                    truth
                } else {
                    sha3_256(&[worker.0.as_slice(), &truth].concat())
                };
                // A Verified job's output is revealed inline.
                let output = if self.verified.contains(&job) {
                    let output = result[..4].to_vec();
                    result = sha3_256(&output);
                    output
                } else {
                    Vec::new()
                };
                let fuel = 1_000 + u64::from(task);
                self.committed
                    .insert((who, job, task), (result, fuel, output));
                Some(pb::tx_body::Msg::CommitResult(pb::CommitResult {
                    job_id: job.0.to_vec(),
                    task,
                    commitment: commitment(&job.0, task, &worker.0, &result, fuel, &salt).to_vec(),
                }))
            }
            ("reveal", "committed") => {
                let (result, fuel, output) = self.committed.get(&(who, job, task))?.clone();
                Some(pb::tx_body::Msg::RevealResult(pb::RevealResult {
                    job_id: job.0.to_vec(),
                    task,
                    result_hash: result.to_vec(),
                    fuel_used: fuel,
                    salt,
                    output,
                }))
            }
            _ => None,
        }
    }

    /// Runs one block on both replicas; they must agree on everything.
    fn block(&mut self, txs: &[Vec<u8>]) -> Result<compute_abci::BlockOutput, TestCaseError> {
        let a = self.chains.0.block(txs);
        let b = self
            .chains
            .1
            .as_mut()
            .expect("the RocksDB replica")
            .block(txs);
        prop_assert_eq!(&a, &b);
        Ok(a)
    }

    /// Closes the RocksDB replica and opens it again from disk.
    fn restart_rocks(&mut self) -> Result<(), TestCaseError> {
        let TestChain { app, txs } = self.chains.1.take().expect("the RocksDB replica");
        // The old handle must be gone before the database is opened again.
        drop(app);
        let app = compute_abci::App::new(RocksStore::open(self.dir.path()).unwrap());
        prop_assert_eq!(app.last_commit(), self.chains.0.app.last_commit());
        self.chains.1 = Some(TestChain { app, txs });
        Ok(())
    }

    /// Every job the strategy posted has ended and holds no escrow, and no
    /// worker holds a task.
    fn all_jobs_ended(&self) -> Result<(), String> {
        let chain = &self.chains.0;
        for id in &self.jobs {
            let job = chain.app.query(&format!("/job/{id}"), 0);
            if job.code != compute_abci::Code::Ok {
                continue;
            }
            let v: Value = serde_json::from_slice(&job.value).unwrap();
            if v["status"] == "open" || v["escrow"] != 0 || v["ended_height"] == 0 {
                return Err(format!("job {id} has not ended: {v}"));
            }
        }
        for k in &self.keys {
            let worker = chain.app.query(&format!("/worker/{}", k.account()), 0);
            if worker.code == compute_abci::Code::Ok {
                let v: Value = serde_json::from_slice(&worker.value).unwrap();
                if v["active_tasks"] != 0 {
                    return Err(format!("worker still busy: {v}"));
                }
            }
        }
        Ok(())
    }

    /// balances + stakes + escrows + bonds held - (genesis + minted -
    /// slashed - bonds burnt): must be zero.
    fn imbalance(&self) -> i128 {
        let chain = &self.chains.0;
        let mut held: i128 = 0;
        let mut ids: Vec<AccountId> = self.keys.iter().map(|k| k.account()).collect();
        ids.push(AccountId(validator_key()));
        for id in &ids {
            held += i128::from(chain.balance(id));
            let worker = chain.app.query(&format!("/worker/{id}"), 0);
            if worker.code == compute_abci::Code::Ok {
                let v: Value = serde_json::from_slice(&worker.value).unwrap();
                held += i128::from(v["stake"].as_u64().unwrap());
            }
        }
        let mut seen = self.jobs.clone();
        seen.sort();
        seen.dedup();
        for id in &seen {
            let job = chain.app.query(&format!("/job/{id}"), 0);
            if job.code == compute_abci::Code::Ok {
                let v: Value = serde_json::from_slice(&job.value).unwrap();
                held += i128::from(v["escrow"].as_u64().unwrap());
            }
        }
        let stats = chain.query("/stats");
        held += i128::from(stats["bonds_held"].as_u64().unwrap());
        let minted = stats["credits_minted"].as_u64().unwrap();
        let slashed = stats["credits_slashed"].as_u64().unwrap();
        let burnt = stats["bonds_burnt"].as_u64().unwrap();
        held - i128::from(GENESIS_BALANCE * KEYS as u64) - i128::from(minted)
            + i128::from(slashed)
            + i128::from(burnt)
    }
}

/// `count` inline inputs of one byte each.
fn one_byte_inputs(count: usize) -> Vec<pb::TaskInput> {
    (0..count)
        .map(|i| pb::TaskInput {
            source: Some(pb::task_input::Source::Inline(vec![i as u8])),
            size: 1,
        })
        .collect()
}

/// A transfer from the identity point: R = identity, S = 0.
fn forged_transfer(to: &AccountId) -> Vec<u8> {
    use prost::Message;
    let body = pb::TxBody {
        chain_id: "test-chain".into(),
        nonce: 0,
        fee: 0,
        msg: Some(pb::tx_body::Msg::Transfer(pb::Transfer {
            to: to.0.to_vec(),
            amount: 1,
        })),
    };
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let mut signature = identity.clone();
    signature.extend([0u8; 32]);
    pb::Tx {
        body: body.encode_to_vec(),
        signer: identity,
        signature,
    }
    .encode_to_vec()
}

/// A transfer of 1 whose signed body is re-encoded: with a second `amount`
/// of 900 after the first (the last value would win), or an unknown field.
fn malleated_transfer(from: &SigningKey, nonce: u64, to: &AccountId, duplicate: bool) -> Vec<u8> {
    use prost::Message;
    let msg = pb::tx_body::Msg::Transfer(pb::Transfer {
        to: to.0.to_vec(),
        amount: 1,
    });
    let mut body = pb::TxBody {
        chain_id: "test-chain".into(),
        nonce,
        fee: 0,
        msg: Some(msg),
    }
    .encode_to_vec();
    if duplicate {
        // The transfer (36 bytes: `to` and `amount`) is the body's last
        // field: append a second `amount` (field 2, varint 900) to it and
        // fix up its one-byte length prefix.
        let at = body.len() - 37;
        assert_eq!(body[at], 36, "the transfer's length prefix");
        body[at] = 39;
        body.extend_from_slice(&[2 << 3, 0x84, 0x07]);
    } else {
        body.extend_from_slice(&[9 << 3, 1]);
    }
    compute_proto::tx::sign_body_bytes(body, from)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn credits_are_conserved_and_replicas_agree(
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..8), 1..16)
    ) {
        let mut world = World::new();
        let halfway = blocks.len() / 2;
        for (number, ops) in blocks.iter().enumerate() {
            if number == halfway {
                world.restart_rocks()?;
            }
            let mut offset = [0u64; KEYS];
            let txs: Vec<Vec<u8>> = ops
                .iter()
                .flat_map(|op| world.sign(op, &mut offset))
                .collect();
            let a = world.block(&txs)?;
            prop_assert_eq!(world.imbalance(), 0);
            // Every attack is refused, whatever else the block holds. A
            // worker's turn expands to as many transactions as it has
            // assignments, so the check stops at the first one.
            for (op, result) in ops.iter().take_while(|op| !matches!(op, Op::Work { .. })).zip(&a.tx_results) {
                if matches!(op, Op::Torsion { .. } | Op::Forged { .. } | Op::Malleated { .. }) {
                    prop_assert!(result.code != compute_abci::Code::Ok, "{:?}: {}", op, result.log);
                }
            }
        }
        // Every deadline passes while the workers act on what they hold (the
        // last key always wrongly, so cheats are caught and stakes slashed):
        // every job ends, and still nothing is lost.
        // A dispute each block, of task after task, so that settled results
        // meet the referee.
        for round in 0..MAX_DEADLINE as usize + 2 {
            let mut offset = [0u64; KEYS];
            let mut txs: Vec<Vec<u8>> = (0..KEYS)
                .flat_map(|who| world.sign(&Op::Work { who, pick: usize::MAX, honest: who + 1 < KEYS, batched: who % 2 == 0 }, &mut offset))
                .collect();
            let dispute = Op::Dispute { who: round % KEYS, job: round, task: (round / 8) as u32 % 3, bond: 1_500 };
            txs.extend(world.sign(&dispute, &mut offset));
            world.block(&txs)?;
            prop_assert_eq!(world.imbalance(), 0);
        }
        prop_assert_eq!(world.all_jobs_ended(), Ok(()));
        if std::env::var_os("PROPTEST_STATS").is_some() {
            let stats = world.chains.0.query("/stats");
            eprintln!("settled {} failed {} slashed {} disputes {} overturned {}", stats["tasks_settled"], stats["tasks_failed"], stats["credits_slashed"], stats["disputes"], stats["results_overturned"]);
        }
    }
}

/// A worker's commits as one `CommitResults` and its reveals as one
/// `RevealResults` (each kept single when alone).
fn batch(msgs: Vec<pb::tx_body::Msg>) -> Vec<pb::tx_body::Msg> {
    use pb::tx_body::Msg;
    let (mut commits, mut reveals, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for msg in msgs {
        match msg {
            Msg::CommitResult(c) => commits.push(c),
            Msg::RevealResult(r) => reveals.push(r),
            other => out.push(other),
        }
    }
    match commits.len() {
        0 => {}
        1 => out.extend(commits.pop().map(Msg::CommitResult)),
        _ => out.push(Msg::CommitResults(pb::CommitResults { entries: commits })),
    }
    match reveals.len() {
        0 => {}
        1 => out.extend(reveals.pop().map(Msg::RevealResult)),
        _ => out.push(Msg::RevealResults(pb::RevealResults { entries: reveals })),
    }
    out
}
