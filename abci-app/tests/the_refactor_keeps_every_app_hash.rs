//! A fixed scenario that touches every message and every step of the job
//! protocol, with its app hashes and the digest of every block's answers
//! (codes, logs, events) pinned to values recorded before the state
//! machine was reorganised: a change of shape that changes no behaviour
//! leaves them all equal.
//!
//! The scenario: transfers, three `StoreModule`s, six workers, and seven
//! jobs that each take one path: a quorum with a cheat, a quorum that is
//! extended, a job nobody works on (missed commits, then its deadline), a
//! quorum with a missed reveal, a Verified job (a decline, a refused output,
//! an accepted one), a cancelled job with a task in its reveal phase, and a
//! Verified job whose `verify` refuses everything. Workers act on the
//! events of the previous block, so the run depends only on the chain.
//!
//! If a change is meant to alter state, events or codes, record the new
//! values printed by the failing assertion and say so in the change.
//! (Recorded again when the app hash became the root of the state tree:
//! the hashes, and the digest that includes them, changed; nothing else.
//! Recorded again for app version 5, whose draw rejects an excluded worker
//! and draws again instead of drawing among the eligible workers alone:
//! which worker a draw picks changed, and with it the events, the hashes
//! and the digest. The same scenario with version 4's draw still gave the
//! values recorded before. Recorded again for app version 6, disputes:
//! the parameters name the referee's, each cheat's replica keeps what it
//! was slashed, and the stats count disputes; the scenario's genesis makes
//! no job disputable, and its codes, logs and events, all but the app
//! hashes, stayed exactly those of version 5.)

mod common;

use std::collections::BTreeMap;

use common::{keys, TestChain};
use compute_abci::store::MemStore;
use compute_abci::{BlockOutput, Code};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use serde_json::json;

const BALANCE: u64 = 10_000_000;
const STAKE: u64 = 10_000;
const PRICE: u64 = 1_000;
const FUEL_LIMIT: u64 = 2_000_000;
const FEE: u64 = 3;
const BLOCKS: usize = 40;

/// The app hash after the block that posts the jobs (height 3).
const HASH_AFTER_POSTING: &str = "2e01b6381ab3345b6d890c560a19677528078453582b0daf13dd43c82ad6fca9";
/// The app hash at height 12, with every job under way.
const HASH_MIDWAY: &str = "bbb1baf1b7e6011eb64a44215091d3f9aa449a6d84bae1d5161953c82352be37";
/// The app hash after the last block.
const HASH_FINAL: &str = "fe074b365853382e99ab743f91a747209e5337fbc1a4cfc53b21030eda36562e";
/// SHA3-256 of every block's codes, logs and events, in order.
const ANSWERS_DIGEST: &str = "4644f11cab8b2aba1438148f48fd930bd2ee6e96e66a89ece666ba251fd86926";

/// The path each job of the scenario takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Quorum{3, 2}: two agree, the third reveals another result.
    Cheat,
    /// Quorum{2, 2, max 3}: two disagree, a third replica decides.
    Extend,
    /// Quorum{1, 1}, two tasks: nobody commits until the job's deadline.
    Idle,
    /// Quorum{3, 2}: the third replica commits and never reveals.
    Lazy,
    /// Verified: the first worker declines, the second reveals a wrong
    /// output, the third the right one.
    Verified,
    /// Quorum{1, 1}, two tasks: task 0 reaches its reveal phase, the job is
    /// cancelled, then task 0 is revealed.
    Cancel,
    /// Verified with a `verify` that refuses everything, two workers.
    Refused,
}

/// What a drawn worker committed to, to reveal later.
#[derive(Clone)]
struct Sealed {
    result: [u8; 32],
    fuel: u64,
    output: Vec<u8>,
}

struct Scenario {
    chain: TestChain<MemStore>,
    keys: Vec<SigningKey>,
    nonces: BTreeMap<AccountId, u64>,
    roles: BTreeMap<JobId, Role>,
    /// Workers drawn for each task, in draw order.
    drawn: BTreeMap<(JobId, u32), Vec<AccountId>>,
    sealed: BTreeMap<(JobId, u32, AccountId), Sealed>,
    /// Transactions held for the next block.
    later: Vec<(AccountId, Msg)>,
    hashsearch_input: Vec<u8>,
    hashsearch_output: Vec<u8>,
    /// Every block's answers, as text, for the digest.
    answers: String,
    counts: BTreeMap<String, u32>,
    hashes: Vec<[u8; 32]>,
}

fn inline(bytes: &[u8]) -> pb::TaskInput {
    pb::TaskInput {
        source: Some(pb::task_input::Source::Inline(bytes.to_vec())),
        size: bytes.len() as u64,
    }
}

fn quorum(replicas: u32, quorum: u32, max_replicas: u32) -> Option<pb::Policy> {
    Some(pb::Policy {
        kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
            replicas,
            quorum,
            max_replicas,
        })),
    })
}

fn verified(verify_fuel: u64, max_workers: u32) -> Option<pb::Policy> {
    Some(pb::Policy {
        kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
            verify_fuel,
            max_workers,
        })),
    })
}

fn post(
    module: &ModuleId,
    tasks: Vec<pb::TaskInput>,
    policy: Option<pb::Policy>,
    deadline: u64,
) -> Msg {
    Msg::PostJob(pb::PostJob {
        module_id: module.0.to_vec(),
        tasks,
        policy,
        fuel_limit: FUEL_LIMIT,
        price_per_mfuel: PRICE,
        deadline_blocks: deadline,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    })
}

fn salt_of(worker: &AccountId) -> Vec<u8> {
    sha3_256(&worker.0).to_vec()
}

fn attribute<'e>(event: &'e compute_abci::events::Event, key: &str) -> &'e str {
    event
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
        .unwrap_or_else(|| panic!("event {} has no {key}", event.r#type))
}

impl Scenario {
    fn new() -> Self {
        let keys = keys(8);
        let balances: Vec<(AccountId, u64)> = keys.iter().map(|k| (k.account(), BALANCE)).collect();
        let params = json!({
            "commit_window_blocks": 4,
            "reveal_window_blocks": 4,
            "store_module_fee_per_kib": 1,
            // No job of the scenario is disputable, so that its workers may
            // leave at the end without waiting out a dispute window.
            "max_referee_fuel": 1_000_000,
            "max_referee_fuel_per_block": 2_000_000,
        });
        let mut chain = TestChain::new(MemStore::new(), &balances, params);
        chain.txs.fee = FEE;
        let hashsearch_input = compute_jobs::hashsearch::Search {
            difficulty_bits: 8,
            nonce_start: 0,
            nonce_count: 100_000,
            prefix: b"pinned",
        }
        .encode();
        let hashsearch_output = compute_jobs::hashsearch::job(&hashsearch_input);
        assert_eq!(hashsearch_output.len(), 8, "a nonce is found");
        Self {
            chain,
            keys,
            nonces: BTreeMap::new(),
            roles: BTreeMap::new(),
            drawn: BTreeMap::new(),
            sealed: BTreeMap::new(),
            later: Vec::new(),
            hashsearch_input,
            hashsearch_output,
            answers: String::new(),
            counts: BTreeMap::new(),
            hashes: Vec::new(),
        }
    }

    fn key(&self, id: &AccountId) -> &SigningKey {
        self.keys
            .iter()
            .find(|k| k.account() == *id)
            .expect("a key of the scenario")
    }

    fn block(&mut self, txs: Vec<(AccountId, Msg)>) -> BlockOutput {
        let mut signed = Vec::with_capacity(txs.len());
        for (signer, msg) in txs {
            let nonce = self.nonces.get(&signer).copied().unwrap_or(0);
            signed.push(self.chain.txs.sign(self.key(&signer), nonce, msg));
            self.nonces.insert(signer, nonce + 1);
        }
        let out = self.chain.block(&signed);
        let height = self.chain.app.last_commit().height;
        self.answers.push_str(&format!("block {height}\n"));
        for (i, r) in out.tx_results.iter().enumerate() {
            self.answers
                .push_str(&format!("tx {i} code {} log {}\n", r.code.value(), r.log));
            self.record_events(&r.events);
        }
        self.answers.push_str("end of block\n");
        self.record_events(&out.events);
        self.answers
            .push_str(&format!("app hash {}\n", hex::encode(out.app_hash)));
        self.hashes.push(out.app_hash);
        out
    }

    fn record_events(&mut self, events: &[compute_abci::events::Event]) {
        for e in events {
            *self.counts.entry(e.r#type.clone()).or_default() += 1;
            self.answers.push_str(&format!("event {}", e.r#type));
            for a in &e.attributes {
                self.answers.push_str(&format!(
                    " {}={}{}",
                    a.key,
                    a.value,
                    if a.index { "*" } else { "" }
                ));
            }
            self.answers.push('\n');
        }
    }

    /// The next job id of `requester`, given the transactions queued before
    /// it in the same block.
    fn job_id(&self, requester: &AccountId, queued: u64) -> JobId {
        let nonce = self.nonces.get(requester).copied().unwrap_or(0);
        JobId::derive(requester, nonce + queued)
    }

    /// What worker `n` (in draw order) of a task of `role` seals.
    fn seal(&self, role: Role, task: u32, n: usize) -> Option<Sealed> {
        let plain = |result: &[u8]| Sealed {
            result: sha3_256(result),
            fuel: 1_000_000,
            output: Vec::new(),
        };
        let with_output = |output: Vec<u8>| Sealed {
            result: sha3_256(&output),
            fuel: 900_000,
            output,
        };
        match role {
            Role::Cheat if n < 2 => Some(plain(b"good")),
            Role::Cheat => Some(plain(b"bad")),
            Role::Extend if n == 1 => Some(plain(b"two")),
            Role::Extend => Some(plain(b"one")),
            Role::Idle => None,
            Role::Lazy => Some(plain(b"lazy")),
            Role::Verified if n == 0 => None,
            Role::Verified if n == 1 => {
                let mut wrong = self.hashsearch_output.clone();
                wrong[0] ^= 1;
                Some(with_output(wrong))
            }
            Role::Verified => Some(with_output(self.hashsearch_output.clone())),
            Role::Cancel if task == 0 => Some(plain(b"kept")),
            Role::Cancel => None,
            Role::Refused => Some(with_output(vec![7])),
        }
    }

    /// The workers' answers to the events of the last block.
    fn react(&mut self, out: &BlockOutput) -> Vec<(AccountId, Msg)> {
        let mut txs = std::mem::take(&mut self.later);
        let events: Vec<compute_abci::events::Event> = out
            .tx_results
            .iter()
            .flat_map(|r| r.events.iter().cloned())
            .chain(out.events.iter().cloned())
            .collect();
        for e in &events {
            let kind = e.r#type.as_str();
            if kind != "task_assigned" && kind != "task_reveal_open" {
                continue;
            }
            let job = JobId::from_hex(attribute(e, "job")).unwrap();
            let task: u32 = attribute(e, "task").parse().unwrap();
            let worker = AccountId::from_hex(attribute(e, "worker")).unwrap();
            let role = self.roles[&job];
            if kind == "task_assigned" {
                let drawn = self.drawn.entry((job, task)).or_default();
                drawn.push(worker);
                let n = drawn.len() - 1;
                match self.seal(role, task, n) {
                    Some(sealed) => {
                        let msg = Msg::CommitResult(pb::CommitResult {
                            job_id: job.0.to_vec(),
                            task,
                            commitment: commitment(
                                &job.0,
                                task,
                                &worker.0,
                                &sealed.result,
                                sealed.fuel,
                                &salt_of(&worker),
                            )
                            .to_vec(),
                        });
                        self.sealed.insert((job, task, worker), sealed);
                        txs.push((worker, msg));
                    }
                    None if role == Role::Verified => txs.push((
                        worker,
                        Msg::DeclineTask(pb::DeclineTask {
                            job_id: job.0.to_vec(),
                            task,
                            reason: "not today".into(),
                        }),
                    )),
                    None => {}
                }
            } else {
                let n = self.drawn[&(job, task)]
                    .iter()
                    .position(|w| *w == worker)
                    .unwrap();
                if role == Role::Lazy && n == 2 {
                    continue;
                }
                let sealed = self.sealed[&(job, task, worker)].clone();
                let msg = Msg::RevealResult(pb::RevealResult {
                    job_id: job.0.to_vec(),
                    task,
                    result_hash: sealed.result.to_vec(),
                    fuel_used: sealed.fuel,
                    salt: salt_of(&worker),
                    output: sealed.output,
                });
                if role == Role::Cancel {
                    // Cancelled first, revealed in the block after.
                    txs.push((
                        self.keys[0].account(),
                        Msg::CancelJob(pb::CancelJob {
                            job_id: job.0.to_vec(),
                        }),
                    ));
                    self.later.push((worker, msg));
                } else {
                    txs.push((worker, msg));
                }
            }
        }
        txs
    }
}

#[test]
fn the_refactor_keeps_every_app_hash_code_and_event() {
    let mut s = Scenario::new();
    let k: Vec<AccountId> = s.keys.iter().map(SigningKey::account).collect();
    let lying = wat::parse_str(common::LYING_VERIFY_WAT).unwrap();
    let primes = ModuleId::of(compute_jobs::PRIMES_WASM);
    let hashsearch = ModuleId::of(compute_jobs::HASHSEARCH_WASM);
    let liar = ModuleId::of(&lying);

    // Height 1: a module, the pool, a transfer.
    let mut txs = vec![(
        k[0],
        Msg::StoreModule(pb::StoreModule {
            wasm: compute_jobs::PRIMES_WASM.to_vec(),
        }),
    )];
    for w in &k[1..7] {
        txs.push((
            *w,
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 4,
                stake: STAKE,
            }),
        ));
    }
    txs.push((
        k[0],
        Msg::Transfer(pb::Transfer {
            to: k[7].0.to_vec(),
            amount: 12_345,
        }),
    ));
    let out = s.block(txs);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));

    // Height 2: two more modules and some refusals, which still pay fees.
    let out = s.block(vec![
        (
            k[7],
            Msg::StoreModule(pb::StoreModule {
                wasm: compute_jobs::HASHSEARCH_WASM.to_vec(),
            }),
        ),
        (
            k[0],
            Msg::StoreModule(pb::StoreModule {
                wasm: lying.clone(),
            }),
        ),
        (
            k[7],
            Msg::Transfer(pb::Transfer {
                to: k[0].0.to_vec(),
                amount: BALANCE * 10,
            }),
        ),
        (
            k[7],
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 1,
                stake: BALANCE * 10,
            }),
        ),
        (k[7], Msg::UnregisterWorker(pb::UnregisterWorker {})),
    ]);
    let codes: Vec<Code> = out.tx_results.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            Code::Ok,
            Code::Ok,
            Code::InsufficientFunds,
            Code::InsufficientFunds,
            Code::UnknownWorker
        ]
    );

    // Height 3: the seven jobs.
    let jobs: Vec<(Role, Msg)> = vec![
        (
            Role::Cheat,
            post(&primes, vec![inline(b"c")], quorum(3, 2, 3), 100),
        ),
        (
            Role::Extend,
            post(&primes, vec![inline(b"e")], quorum(2, 2, 3), 100),
        ),
        (
            Role::Idle,
            post(
                &primes,
                vec![inline(b"i0"), inline(b"i1")],
                quorum(1, 1, 1),
                10,
            ),
        ),
        (
            Role::Lazy,
            post(&primes, vec![inline(b"l")], quorum(3, 2, 3), 100),
        ),
        (
            Role::Verified,
            post(
                &hashsearch,
                vec![inline(&s.hashsearch_input.clone())],
                verified(1_000_000, 0),
                100,
            ),
        ),
        (
            Role::Cancel,
            post(
                &primes,
                vec![inline(b"x0"), inline(b"x1")],
                quorum(1, 1, 1),
                100,
            ),
        ),
        (
            Role::Refused,
            post(&liar, vec![inline(b"r")], verified(1_000_000, 2), 100),
        ),
    ];
    let mut txs = Vec::new();
    for (queued, (role, msg)) in (0u64..).zip(jobs) {
        let id = s.job_id(&k[0], queued);
        s.roles.insert(id, role);
        txs.push((k[0], msg));
    }
    // Out of turn: nobody drew k[7].
    let cheat_job = s.job_id(&k[0], 0);
    txs.push((
        k[7],
        Msg::CommitResult(pb::CommitResult {
            job_id: cheat_job.0.to_vec(),
            task: 0,
            commitment: [1; 32].to_vec(),
        }),
    ));
    let mut out = s.block(txs);
    let codes: Vec<Code> = out.tx_results.iter().map(|r| r.code).collect();
    assert_eq!(&codes[..7], &[Code::Ok; 7]);
    assert_eq!(codes[7], Code::NotAssigned);

    // The workers answer what each block shows them.
    while s.hashes.len() < BLOCKS - 1 {
        let txs = s.react(&out);
        out = s.block(txs);
    }
    // The last block: the pool leaves, each worker now idle.
    let txs = k[1..7]
        .iter()
        .map(|w| (*w, Msg::UnregisterWorker(pb::UnregisterWorker {})))
        .collect();
    let out = s.block(txs);
    assert!(
        out.tx_results.iter().all(|r| r.code == Code::Ok),
        "{:?}",
        out.tx_results
    );

    // Each job took its path.
    for (id, role) in &s.roles {
        let view = s.chain.query(&format!("/job/{id}"));
        let expected = match role {
            Role::Cheat | Role::Extend | Role::Lazy | Role::Verified => "completed",
            Role::Idle | Role::Refused => "failed",
            Role::Cancel => "cancelled",
        };
        assert_eq!(view["status"], expected, "{role:?}: {view}");
        assert_eq!(view["escrow"], 0, "{role:?}");
    }
    for (kind, at_least) in [
        ("worker_cheated", 3),
        ("deadline_missed", 3),
        ("task_declined", 1),
        ("task_extended", 1),
        ("output_refused", 3),
        ("output_verified", 1),
        ("job_cancelled", 1),
        ("task_settled", 5),
        ("task_failed", 3),
        ("block_reward", 30),
    ] {
        let seen = s.counts.get(kind).copied().unwrap_or(0);
        assert!(
            seen >= at_least,
            "{kind}: {seen} < {at_least}; {:?}",
            s.counts
        );
    }

    let digest = hex::encode(sha3_256(s.answers.as_bytes()));
    let plain: String = s
        .answers
        .lines()
        .filter(|l| !l.starts_with("app hash"))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!("PLAIN {}", hex::encode(sha3_256(plain.as_bytes())));
    let at = |height: usize| hex::encode(s.hashes[height - 1]);
    let got = [
        ("HASH_AFTER_POSTING", at(3)),
        ("HASH_MIDWAY", at(12)),
        ("HASH_FINAL", at(BLOCKS)),
        ("ANSWERS_DIGEST", digest),
    ];
    let want = [HASH_AFTER_POSTING, HASH_MIDWAY, HASH_FINAL, ANSWERS_DIGEST];
    let report: String = got
        .iter()
        .map(|(name, value)| format!("const {name}: &str = \"{value}\";\n"))
        .collect();
    for ((name, value), pinned) in got.iter().zip(want) {
        assert_eq!(
            value, pinned,
            "{name} changed: the state machine's behaviour is not what it was.\n\
             If the change is intended, pin the new values:\n{report}\n\
             answers:\n{}",
            s.answers
        );
    }
}
