//! The job protocol's scenario helpers: a chain with nonces tracked per
//! key, the messages of requesters and workers, events and conservation
//! checks. Scenarios may send every job, commit and reveal as a batch of one
//! (see [`BATCHED`]).

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::common::{self, keys, TestChain};
use compute_abci::store::MemStore;
use compute_abci::{BlockOutput, Code};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use serde_json::Value;

pub const BALANCE: u64 = 1_000_000;
pub const STAKE: u64 = 10_000;
pub const PRICE: u64 = 1_000;
pub const FUEL_LIMIT: u64 = 2_000_000;

thread_local! {
    /// Whether this scenario sends its jobs, commits and reveals as batches
    /// of one.
    pub static BATCHED: Cell<bool> = const { Cell::new(false) };
}

pub fn batched() -> bool {
    BATCHED.with(Cell::get)
}

/// `msg` as this scenario sends it: a batch of one when batched.
pub fn as_sent(msg: Msg) -> Msg {
    if !batched() {
        return msg;
    }
    match msg {
        Msg::PostJob(p) => Msg::PostJobs(pb::PostJobs { jobs: vec![p] }),
        Msg::CommitResult(c) => Msg::CommitResults(pb::CommitResults { entries: vec![c] }),
        Msg::RevealResult(r) => Msg::RevealResults(pb::RevealResults { entries: vec![r] }),
        other => other,
    }
}

/// The id of the job `requester` posts with `nonce` (the first of its
/// batch, when batched).
pub fn job_id(requester: &AccountId, nonce: u64) -> JobId {
    if batched() {
        JobId::derive_in_batch(requester, nonce, 0)
    } else {
        JobId::derive(requester, nonce)
    }
}

/// A chain with nonces tracked per key.
pub struct Net {
    pub chain: TestChain<MemStore>,
    pub nonces: BTreeMap<AccountId, u64>,
    pub genesis_total: u64,
}

impl Net {
    pub fn new(keys: &[SigningKey], params: Value) -> Self {
        let balances: Vec<(AccountId, u64)> = keys.iter().map(|k| (k.account(), BALANCE)).collect();
        Self {
            chain: TestChain::new(MemStore::new(), &balances, params),
            nonces: BTreeMap::new(),
            genesis_total: BALANCE * keys.len() as u64,
        }
    }

    pub fn tx(&mut self, key: &SigningKey, msg: Msg) -> Vec<u8> {
        let nonce = self.nonces.entry(key.account()).or_default();
        let tx = self.chain.txs.sign(key, *nonce, as_sent(msg));
        *nonce += 1;
        tx
    }

    /// One block of `(signer, msg)`; every message must succeed.
    pub fn ok(&mut self, txs: Vec<(&SigningKey, Msg)>) -> BlockOutput {
        let out = self.run(txs);
        for r in &out.tx_results {
            assert_eq!(r.code, Code::Ok, "{}", r.log);
        }
        out
    }

    pub fn run(&mut self, txs: Vec<(&SigningKey, Msg)>) -> BlockOutput {
        let signed: Vec<Vec<u8>> = txs.into_iter().map(|(k, m)| self.tx(k, m)).collect();
        self.chain.block(&signed)
    }

    pub fn empty_blocks(&mut self, n: u32) -> Vec<BlockOutput> {
        (0..n).map(|_| self.chain.block(&[])).collect()
    }

    pub fn height(&self) -> i64 {
        self.chain.app.last_commit().height
    }

    pub fn q(&self, path: &str) -> Value {
        self.chain.query(path)
    }

    /// The workers of a task's replicas with their status.
    pub fn replicas(&self, job: &JobId, task: u32) -> Vec<(String, String)> {
        let view = self.q(&format!("/job/{job}"));
        view["tasks"][task as usize]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["worker"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Balances + stakes + escrows + dispute bonds held = genesis + minted
    /// - slashed - bonds burnt.
    pub fn assert_conserved(&self, keys: &[SigningKey], jobs: &[JobId]) {
        let stats = self.q("/stats");
        let mut held: u64 = keys.iter().map(|k| self.chain.balance(&k.account())).sum();
        held += self.chain.balance(&proposer());
        for k in keys {
            let answer = self.chain.app.query(&format!("/worker/{}", k.account()), 0);
            if answer.code == Code::Ok {
                let v: Value = serde_json::from_slice(&answer.value).unwrap();
                held += v["stake"].as_u64().unwrap();
            }
        }
        for j in jobs {
            held += self.q(&format!("/job/{j}"))["escrow"].as_u64().unwrap();
        }
        held += stats["bonds_held"].as_u64().unwrap();
        let minted = stats["credits_minted"].as_u64().unwrap();
        let slashed = stats["credits_slashed"].as_u64().unwrap();
        let burnt = stats["bonds_burnt"].as_u64().unwrap();
        assert_eq!(
            held,
            self.genesis_total + minted - slashed - burnt,
            "credits conserved"
        );
    }
}

pub fn proposer() -> AccountId {
    AccountId(common::validator_key())
}

/// Events of a block (block-level and every transaction's) of one kind.
pub fn events(out: &BlockOutput, kind: &str) -> Vec<BTreeMap<String, String>> {
    out.events
        .iter()
        .chain(out.tx_results.iter().flat_map(|r| &r.events))
        .filter(|e| e.r#type == kind)
        .map(|e| {
            e.attributes
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect()
        })
        .collect()
}

pub fn inline(bytes: &[u8]) -> pb::TaskInput {
    pb::TaskInput {
        source: Some(pb::task_input::Source::Inline(bytes.to_vec())),
        size: bytes.len() as u64,
    }
}

pub fn quorum(replicas: u32, quorum: u32, max_replicas: u32) -> Option<pb::Policy> {
    Some(pb::Policy {
        kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
            replicas,
            quorum,
            max_replicas,
        })),
    })
}

pub fn post(module: &ModuleId, tasks: usize, policy: Option<pb::Policy>, deadline: u64) -> Msg {
    Msg::PostJob(pb::PostJob {
        module_id: module.0.to_vec(),
        tasks: (0..tasks).map(|i| inline(&[i as u8])).collect(),
        policy,
        fuel_limit: FUEL_LIMIT,
        price_per_mfuel: PRICE,
        deadline_blocks: deadline,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    })
}

/// A `Verified` job of `tasks` with a 200-block deadline.
pub fn verified_post(
    module: &ModuleId,
    tasks: Vec<pb::TaskInput>,
    verify_fuel: u64,
    max_workers: u32,
) -> Msg {
    Msg::PostJob(pb::PostJob {
        module_id: module.0.to_vec(),
        tasks,
        policy: Some(pb::Policy {
            kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                verify_fuel,
                max_workers,
            })),
        }),
        fuel_limit: FUEL_LIMIT,
        price_per_mfuel: PRICE,
        deadline_blocks: 200,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    })
}

pub fn register() -> Msg {
    Msg::RegisterWorker(pb::RegisterWorker {
        capacity: 4,
        stake: STAKE,
    })
}

pub fn store(wasm: &[u8]) -> Msg {
    Msg::StoreModule(pb::StoreModule {
        wasm: wasm.to_vec(),
    })
}

pub fn commit(job: &JobId, task: u32, worker: &SigningKey, result: &[u8; 32], fuel: u64) -> Msg {
    let salt = salt_of(worker);
    Msg::CommitResult(pb::CommitResult {
        job_id: job.0.to_vec(),
        task,
        commitment: commitment(&job.0, task, &worker.account().0, result, fuel, &salt).to_vec(),
    })
}

pub fn salt_of(worker: &SigningKey) -> Vec<u8> {
    sha3_256(&worker.account().0).to_vec()
}

pub fn reveal(job: &JobId, task: u32, salt: Vec<u8>, result: &[u8; 32], fuel: u64) -> Msg {
    Msg::RevealResult(pb::RevealResult {
        job_id: job.0.to_vec(),
        task,
        result_hash: result.to_vec(),
        fuel_used: fuel,
        salt,
        output: Vec::new(),
    })
}

pub fn key_of<'k>(keys: &'k [SigningKey], hex: &str) -> &'k SigningKey {
    keys.iter()
        .find(|k| k.account().to_hex() == hex)
        .expect("a known key")
}

/// Requester `k[0]` with the primes module stored, workers `k[1..]` registered.
pub fn setup(n: u8, params: Value) -> (Net, Vec<SigningKey>, ModuleId) {
    let k = keys(n);
    let mut net = Net::new(&k, params);
    let mut txs = vec![(&k[0], store(compute_jobs::PRIMES_WASM))];
    for w in &k[1..] {
        txs.push((w, register()));
    }
    net.ok(txs);
    (net, k, ModuleId::of(compute_jobs::PRIMES_WASM))
}

pub fn posted_job(net: &mut Net, requester: &SigningKey, msg: Msg) -> (JobId, BlockOutput) {
    let nonce = net.nonces.get(&requester.account()).copied().unwrap_or(0);
    let out = net.ok(vec![(requester, msg)]);
    (job_id(&requester.account(), nonce), out)
}
