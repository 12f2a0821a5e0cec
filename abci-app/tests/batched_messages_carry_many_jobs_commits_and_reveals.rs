//! Batched messages with many entries: a requester posts several jobs in
//! one `PostJobs`, and each worker commits every task it was drawn for in
//! one `CommitResults` and reveals them in one `RevealResults`. They settle
//! as single messages would, and credits are conserved. A batch is all or
//! nothing: one bad entry refuses the whole transaction, names the entry,
//! and leaves the state as it was but for the nonce and fee.

mod common;

use std::collections::BTreeMap;

use common::{keys, TestChain};
use compute_abci::msg::MAX_BATCH_ENTRIES;
use compute_abci::store::MemStore;
use compute_abci::{BlockOutput, Code};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use serde_json::{json, Value};

const BALANCE: u64 = 10_000_000;
const STAKE: u64 = 10_000;
const PRICE: u64 = 1_000;
const FUEL: u64 = 1_000_000;

struct Net {
    chain: TestChain<MemStore>,
    nonces: BTreeMap<AccountId, u64>,
}

impl Net {
    fn send(&mut self, txs: Vec<(&SigningKey, Msg)>) -> BlockOutput {
        let signed: Vec<Vec<u8>> = txs
            .into_iter()
            .map(|(k, m)| {
                let nonce = self.nonces.entry(k.account()).or_default();
                let tx = self.chain.txs.sign(k, *nonce, m);
                *nonce += 1;
                tx
            })
            .collect();
        self.chain.block(&signed)
    }

    fn ok(&mut self, txs: Vec<(&SigningKey, Msg)>) -> BlockOutput {
        let out = self.send(txs);
        for r in &out.tx_results {
            assert_eq!(r.code, Code::Ok, "{}", r.log);
        }
        out
    }

    fn q(&self, path: &str) -> Value {
        self.chain.query(path)
    }

    /// Reads `key`'s next nonce from the chain (a transaction refused
    /// before its ante step does not use one); returns it.
    fn resync(&mut self, key: &SigningKey) -> u64 {
        let nonce = self.q(&format!("/account/{}", key.account()))["nonce"]
            .as_u64()
            .unwrap();
        self.nonces.insert(key.account(), nonce);
        nonce
    }

    /// The tasks `worker` holds: `(job, task)`.
    fn assignments(&self, worker: &SigningKey) -> Vec<(JobId, u32)> {
        let answer = self.q(&format!(
            "/worker/{}/assignments?limit=100",
            worker.account()
        ));
        answer["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let job = JobId::from_hex(a["job"].as_str().unwrap()).unwrap();
                (job, u32::try_from(a["task"].as_u64().unwrap()).unwrap())
            })
            .collect()
    }
}

fn job(module: &ModuleId, tasks: usize) -> pb::PostJob {
    pb::PostJob {
        module_id: module.0.to_vec(),
        tasks: (0..tasks)
            .map(|i| pb::TaskInput {
                source: Some(pb::task_input::Source::Inline(vec![i as u8])),
                size: 1,
            })
            .collect(),
        policy: None,
        fuel_limit: 2 * FUEL,
        price_per_mfuel: PRICE,
        deadline_blocks: 100,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    }
}

/// Builds one worker's batched message from the tasks it holds.
type BatchOf<'a> = dyn Fn(&SigningKey, &[(JobId, u32)]) -> Msg + 'a;

fn salt(worker: &SigningKey) -> Vec<u8> {
    sha3_256(&worker.account().0).to_vec()
}

fn commit_entry(
    job: &JobId,
    task: u32,
    worker: &SigningKey,
    result: &[u8; 32],
) -> pb::CommitResult {
    pb::CommitResult {
        job_id: job.0.to_vec(),
        task,
        commitment: commitment(
            &job.0,
            task,
            &worker.account().0,
            result,
            FUEL,
            &salt(worker),
        )
        .to_vec(),
    }
}

fn reveal_entry(
    job: &JobId,
    task: u32,
    worker: &SigningKey,
    result: &[u8; 32],
) -> pb::RevealResult {
    pb::RevealResult {
        job_id: job.0.to_vec(),
        task,
        result_hash: result.to_vec(),
        fuel_used: FUEL,
        salt: salt(worker),
        output: Vec::new(),
    }
}

/// Requester `k[0]` with the primes module stored, workers `k[1..]`
/// registered with room for every task.
fn setup() -> (Net, Vec<SigningKey>, ModuleId) {
    let k = keys(5);
    let balances: Vec<(AccountId, u64)> = k.iter().map(|k| (k.account(), BALANCE)).collect();
    let mut net = Net {
        chain: TestChain::new(MemStore::new(), &balances, json!({})),
        nonces: BTreeMap::new(),
    };
    let mut txs = vec![(
        &k[0],
        Msg::StoreModule(pb::StoreModule {
            wasm: compute_jobs::PRIMES_WASM.to_vec(),
        }),
    )];
    for w in &k[1..] {
        txs.push((
            w,
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 16,
                stake: STAKE,
            }),
        ));
    }
    net.ok(txs);
    (net, k, ModuleId::of(compute_jobs::PRIMES_WASM))
}

fn total_credits(net: &Net, k: &[SigningKey], jobs: &[JobId]) -> u64 {
    let mut held: u64 = k.iter().map(|k| net.chain.balance(&k.account())).sum();
    held += net.chain.balance(&AccountId(common::validator_key()));
    for w in &k[1..] {
        held += net.q(&format!("/worker/{}", w.account()))["stake"]
            .as_u64()
            .unwrap();
    }
    for j in jobs {
        held += net.q(&format!("/job/{j}"))["escrow"].as_u64().unwrap();
    }
    held
}

#[test]
fn many_jobs_commits_and_reveals_ride_in_one_transaction_each() {
    let (mut net, k, module) = setup();
    let nonce = net.nonces[&k[0].account()];
    let out = net.ok(vec![(
        &k[0],
        Msg::PostJobs(pb::PostJobs {
            jobs: vec![job(&module, 2), job(&module, 3), job(&module, 1)],
        }),
    )]);
    let jobs: Vec<JobId> = (0..3)
        .map(|i| JobId::derive_in_batch(&k[0].account(), nonce, i))
        .collect();
    for (id, tasks) in jobs.iter().zip([2u64, 3, 1]) {
        let view = net.q(&format!("/job/{id}"));
        assert_eq!(view["status"], "open");
        assert_eq!(view["task_count"], tasks, "{view}");
    }
    let posted = out.tx_results[0]
        .events
        .iter()
        .filter(|e| e.r#type == "job_posted")
        .count();
    assert_eq!(posted, 3);
    let genesis: u64 = BALANCE * 5;
    let conserved = |net: &Net| {
        let stats = net.q("/stats");
        let minted = stats["credits_minted"].as_u64().unwrap();
        let slashed = stats["credits_slashed"].as_u64().unwrap();
        assert_eq!(total_credits(net, &k, &jobs), genesis + minted - slashed);
    };
    conserved(&net);

    // Each worker seals everything it holds in one transaction, then opens
    // it all in one.
    let good = sha3_256(b"the primes");
    let held: Vec<Vec<(JobId, u32)>> = k[1..].iter().map(|w| net.assignments(w)).collect();
    let replicas: usize = held.iter().map(Vec::len).sum();
    assert_eq!(replicas, 6 * 3, "every task drew three workers");
    // One transaction per worker that holds tasks, built by `batch`.
    let per_worker = |batch: &BatchOf<'_>| {
        k[1..]
            .iter()
            .zip(&held)
            .filter(|(_, h)| !h.is_empty())
            .map(|(w, h)| (w, batch(w, h)))
            .collect::<Vec<(&SigningKey, Msg)>>()
    };
    let commits = per_worker(&|w, h| {
        let entries = h
            .iter()
            .map(|(j, t)| commit_entry(j, *t, w, &good))
            .collect();
        Msg::CommitResults(pb::CommitResults { entries })
    });
    let senders = commits.len();
    let out = net.ok(commits);
    assert_eq!(out.tx_results.len(), senders);
    let reveals = per_worker(&|w, h| {
        let entries = h
            .iter()
            .map(|(j, t)| reveal_entry(j, *t, w, &good))
            .collect();
        Msg::RevealResults(pb::RevealResults { entries })
    });
    let out = net.ok(reveals);
    let settled = out
        .tx_results
        .iter()
        .flat_map(|r| &r.events)
        .chain(&out.events)
        .filter(|e| e.r#type == "task_settled")
        .count();
    assert_eq!(settled, 6);
    for id in &jobs {
        assert_eq!(net.q(&format!("/job/{id}"))["status"], "completed");
    }
    assert_eq!(net.q("/stats")["tasks_settled"], 6);
    conserved(&net);
}

#[test]
fn one_bad_entry_refuses_the_whole_batch_and_names_it() {
    let (mut net, k, module) = setup();
    let nonce = net.nonces[&k[0].account()];
    net.ok(vec![(
        &k[0],
        Msg::PostJobs(pb::PostJobs {
            jobs: vec![job(&module, 2)],
        }),
    )]);
    let id = JobId::derive_in_batch(&k[0].account(), nonce, 0);
    let worker = k[1..]
        .iter()
        .find(|w| !net.assignments(w).is_empty())
        .unwrap();
    let held = net.assignments(worker);
    let good = sha3_256(b"the primes");
    let before = net.q(&format!("/job/{id}"));
    let account = |net: &Net| net.q(&format!("/account/{}", worker.account()));
    let before_account = account(&net);

    let stranger = JobId(sha3_256(b"no such job"));
    let mut refused: Vec<(String, Msg, Code, &str)> = vec![
        (
            "an entry for a job that does not exist".into(),
            Msg::CommitResults(pb::CommitResults {
                entries: vec![
                    commit_entry(&held[0].0, held[0].1, worker, &good),
                    commit_entry(&stranger, 0, worker, &good),
                ],
            }),
            Code::UnknownJob,
            "entry 1 of CommitResults",
        ),
        (
            "the same entry twice".into(),
            Msg::CommitResults(pb::CommitResults {
                entries: vec![
                    commit_entry(&held[0].0, held[0].1, worker, &good),
                    commit_entry(&held[0].0, held[0].1, worker, &good),
                ],
            }),
            Code::WrongPhase,
            "entry 1 of CommitResults",
        ),
        (
            "a malformed entry".into(),
            Msg::CommitResults(pb::CommitResults {
                entries: vec![
                    commit_entry(&held[0].0, held[0].1, worker, &good),
                    pb::CommitResult {
                        job_id: vec![1; 5],
                        task: 0,
                        commitment: vec![2; 32],
                    },
                ],
            }),
            Code::InvalidMessage,
            "entry 1 of CommitResults",
        ),
        (
            "an empty batch".into(),
            Msg::CommitResults(pb::CommitResults { entries: vec![] }),
            Code::InvalidMessage,
            "1 to 1024 entries",
        ),
        (
            "a reveal before its task opened for reveal".into(),
            Msg::RevealResults(pb::RevealResults {
                entries: vec![reveal_entry(&held[0].0, held[0].1, worker, &good)],
            }),
            Code::WrongPhase,
            "entry 0 of RevealResults",
        ),
    ];
    let too_many = vec![commit_entry(&held[0].0, held[0].1, worker, &good); MAX_BATCH_ENTRIES + 1];
    refused.push((
        "one entry more than the bound".into(),
        Msg::CommitResults(pb::CommitResults { entries: too_many }),
        Code::InvalidMessage,
        "1 to 1024 entries",
    ));
    // Refusals found before the ante step (the shape) use no nonce; the
    // others use one, and pay the fee (0 here).
    let mut used = 0;
    for (what, msg, code, says) in refused {
        let nonce = net.resync(worker);
        let out = net.send(vec![(worker, msg)]);
        let r = &out.tx_results[0];
        assert_eq!(r.code, code, "{what}: {}", r.log);
        assert!(r.log.contains(says), "{what}: {}", r.log);
        // A client reads the entry back from the log.
        if let Some(at) = says.strip_prefix("entry ") {
            let index: usize = at.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(
                compute_proto::tx::refused_entry(&r.log),
                Some(index),
                "{}",
                r.log
            );
        }
        let stateful = matches!(code, Code::UnknownJob | Code::WrongPhase);
        assert_eq!(net.resync(worker), nonce + u64::from(stateful), "{what}");
        used += u64::from(stateful);
    }
    // Nothing but the nonces moved: the first, good entries were not kept.
    assert_eq!(net.q(&format!("/job/{id}")), before);
    let after_account = account(&net);
    assert_eq!(after_account["balance"], before_account["balance"]);
    assert_eq!(
        after_account["nonce"].as_u64().unwrap(),
        before_account["nonce"].as_u64().unwrap() + used
    );

    // A job batch with one bad job posts none of them.
    let nonce = net.resync(&k[0]);
    let out = net.send(vec![(
        &k[0],
        Msg::PostJobs(pb::PostJobs {
            jobs: vec![job(&module, 1), job(&module, 0)],
        }),
    )]);
    let r = &out.tx_results[0];
    assert_eq!(r.code, Code::InvalidMessage, "{}", r.log);
    assert!(r.log.contains("entry 1 of PostJobs"), "{}", r.log);
    let first = JobId::derive_in_batch(&k[0].account(), nonce, 0);
    assert_eq!(
        net.chain.app.query(&format!("/job/{first}"), 0).code,
        Code::NotFound
    );
    net.resync(&k[0]);
    let unknown = ModuleId(sha3_256(b"not stored"));
    let out = net.send(vec![(
        &k[0],
        Msg::PostJobs(pb::PostJobs {
            jobs: vec![job(&module, 1), job(&unknown, 1)],
        }),
    )]);
    let r = &out.tx_results[0];
    assert_eq!(r.code, Code::UnknownModule, "{}", r.log);
    assert!(r.log.contains("entry 1 of PostJobs"), "{}", r.log);
    assert_eq!(net.q("/stats")["jobs_open"], 1);
}
