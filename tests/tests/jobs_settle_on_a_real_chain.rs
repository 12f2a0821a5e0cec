//! The job protocol on a real CometBFT: a requester posts a job of several
//! tasks, the test drives four worker keys that compute with the sandbox
//! library, and the chain settles it. On the way, one replica reveals a
//! wrong result (outvoted, counted, slashed) after trying to copy an honest
//! reveal (refused), and one never commits (replaced after its deadline).
//! A `Verified` job then refuses a wrong output and pays a correct one.
//! Finally an independent replay agrees with every app hash.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use compute_proto::pb::tx_body::Msg;
use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ModuleId, SigningKey};
use compute_sandbox::{Sandbox, SandboxConfig, TaskLimits};
use compute_tests::{replay_and_compare_app_hashes, NetConfig, Node, Signer};
use serde_json::{json, Value};

const FUEL_LIMIT: u64 = 50_000_000;
const PRICE: u64 = 100;

/// What a driven replica does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Honest,
    /// Commits a wrong result, tries to reveal a copy of an honest one,
    /// then reveals its own.
    Cheat,
    /// Never commits.
    Lazy,
}

/// The sandbox's verdict for one task, as an honest worker computes it.
struct Computed {
    result_hash: [u8; 32],
    fuel: u64,
    output: Vec<u8>,
}

fn compute(sandbox: &Sandbox, wasm: &[u8], input: &[u8]) -> Result<Computed> {
    let module = sandbox.prepare(wasm)?;
    let limits = TaskLimits {
        fuel_max: FUEL_LIMIT,
        memory_bytes_max: 64 * 1024 * 1024,
        ..TaskLimits::default()
    };
    let execution = sandbox.run(&module, input, &limits)?;
    Ok(Computed {
        result_hash: execution.result_hash(),
        fuel: execution.fuel_used,
        output: execution.output().unwrap_or_default().to_vec(),
    })
}

fn salt(worker: &AccountId, task: u32) -> Vec<u8> {
    sha3_256(&[worker.0.as_slice(), &task.to_be_bytes()].concat()).to_vec()
}

fn commit_msg(job: &JobId, task: u32, worker: &AccountId, hash: &[u8; 32], fuel: u64) -> Msg {
    Msg::CommitResult(pb::CommitResult {
        job_id: job.0.to_vec(),
        task,
        commitment: commitment(&job.0, task, &worker.0, hash, fuel, &salt(worker, task)).to_vec(),
    })
}

fn reveal_msg(
    job: &JobId,
    task: u32,
    salt: Vec<u8>,
    hash: &[u8; 32],
    fuel: u64,
    output: Vec<u8>,
) -> Msg {
    Msg::RevealResult(pb::RevealResult {
        job_id: job.0.to_vec(),
        task,
        result_hash: hash.to_vec(),
        fuel_used: fuel,
        salt,
        output,
    })
}

fn inline_input(task: &Value) -> Result<Vec<u8>> {
    let text = task["input"]["inline"].as_str().context("inline input")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// Drives every replica of `job` until it ends, with `role` deciding what
/// each (task, slot, assigned height) does. Returns the rejections the
/// cheaters' copy attempts got.
#[allow(clippy::too_many_arguments)]
async fn drive(
    node: &Node,
    signer: &mut Signer<'_>,
    workers: &[SigningKey],
    sandbox: &Sandbox,
    wasm: &[u8],
    job: &JobId,
    role: impl Fn(u32, &Value, i64) -> Role,
    limit: Duration,
) -> Result<Vec<(u32, String)>> {
    let started = Instant::now();
    let posted = node.query(&format!("/job/{job}")).await?.2["posted_height"]
        .as_i64()
        .unwrap_or(0);
    let mut acted: BTreeSet<(u32, String, String, i64)> = BTreeSet::new();
    let mut computed: BTreeMap<u32, Computed> = BTreeMap::new();
    let mut copies = Vec::new();
    for round in 0..2_000 {
        ensure!(
            started.elapsed() < limit,
            "job {job} did not end within {limit:?} ({round} rounds)"
        );
        let (_, _, view) = node.query(&format!("/job/{job}")).await?;
        if view["status"] != "open" {
            return Ok(copies);
        }
        for task in view["tasks"].as_array().context("tasks")? {
            let index = u32::try_from(task["index"].as_u64().context("index")?)?;
            let phase = task["status"].as_str().unwrap_or_default().to_owned();
            for replica in task["replicas"].as_array().context("replicas")? {
                let hex = replica["worker"].as_str().context("worker")?.to_owned();
                let Some(key) = workers.iter().find(|k| k.account().to_hex() == hex) else {
                    continue;
                };
                let status = replica["status"].as_str().unwrap_or_default().to_owned();
                let assigned = replica["assigned_height"].as_i64().unwrap_or(0);
                let wanted = match (phase.as_str(), status.as_str()) {
                    ("commit", "assigned") => "commit",
                    ("reveal", "committed") => "reveal",
                    _ => continue,
                };
                if !acted.insert((index, hex.clone(), wanted.to_owned(), assigned)) {
                    continue;
                }
                let role = role(index, replica, assigned - posted);
                if role == Role::Lazy {
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) = computed.entry(index) {
                    slot.insert(compute(sandbox, wasm, &inline_input(task)?)?);
                }
                let truth = &computed[&index];
                let worker = key.account();
                let (hash, output) = match role {
                    Role::Cheat => (sha3_256(&[9; 8]), vec![9; 8]),
                    _ => (truth.result_hash, truth.output.clone()),
                };
                let msg = if wanted == "commit" {
                    commit_msg(job, index, &worker, &hash, truth.fuel)
                } else {
                    if role == Role::Cheat {
                        // Copy an honest reveal once one is public.
                        let copy = reveal_msg(
                            job,
                            index,
                            salt(&worker, index),
                            &truth.result_hash,
                            truth.fuel,
                            Vec::new(),
                        );
                        let (code, log) = signer.send(key, copy).await?;
                        copies.push((code, log));
                    }
                    reveal_msg(job, index, salt(&worker, index), &hash, truth.fuel, output)
                };
                let (code, log) = signer.send(key, msg).await?;
                ensure!(
                    code == 0,
                    "{wanted} by {hex} for task {index}: {code} {log}"
                );
            }
        }
        let height = node.query("/stats").await?.2["height"]
            .as_u64()
            .unwrap_or(0);
        node.wait_for_height(height + 1, Duration::from_secs(20))
            .await?;
    }
    bail!("job {job} did not end in 2000 rounds")
}

#[tokio::test]
async fn a_job_is_assigned_worked_settled_and_replayed_on_a_real_chain() -> Result<()> {
    let requester = SigningKey::from_seed([1; 32]);
    let workers: Vec<SigningKey> = (10..14).map(|i| SigningKey::from_seed([i; 32])).collect();
    let mut funded: Vec<&SigningKey> = vec![&requester];
    funded.extend(workers.iter());
    let mut config = NetConfig::funded(&funded, 10_000_000);
    config.params = json!({"commit_window_blocks": 6, "reveal_window_blocks": 6});
    let node = Node::start(config).await?;
    let mut signer = Signer::new(&node);
    let sandbox = Sandbox::new(SandboxConfig::default())?;

    // Modules, then the pool.
    signer
        .commit(
            &requester,
            Msg::StoreModule(pb::StoreModule {
                wasm: compute_jobs::PRIMES_WASM.to_vec(),
            }),
        )
        .await?;
    signer
        .commit(
            &requester,
            Msg::StoreModule(pb::StoreModule {
                wasm: compute_jobs::HASHSEARCH_WASM.to_vec(),
            }),
        )
        .await?;
    for w in &workers {
        let (code, log) = signer
            .send(
                w,
                Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: 8,
                    stake: 100_000,
                }),
            )
            .await?;
        ensure!(code == 0, "register: {log}");
    }

    // Four tasks counting primes in four ranges, three replicas, quorum two.
    let ranges: Vec<(u64, u64)> = (0..4u64)
        .map(|i| (i * 200_000, (i + 1) * 200_000))
        .collect();
    let nonce = node.nonce(&requester.account()).await?;
    let job = JobId::derive(&requester.account(), nonce);
    signer
        .commit(
            &requester,
            Msg::PostJob(pb::PostJob {
                module_id: ModuleId::of(compute_jobs::PRIMES_WASM).0.to_vec(),
                tasks: ranges
                    .iter()
                    .map(|(lo, hi)| {
                        let input = compute_jobs::primes::encode_input(*lo, *hi);
                        pb::TaskInput {
                            size: input.len() as u64,
                            source: Some(pb::task_input::Source::Inline(input)),
                        }
                    })
                    .collect(),
                policy: Some(pb::Policy {
                    kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                        replicas: 3,
                        quorum: 2,
                        max_replicas: 3,
                    })),
                }),
                fuel_limit: FUEL_LIMIT,
                price_per_mfuel: PRICE,
                deadline_blocks: 200,
                min_reputation_ppm: 0,
                max_tasks_per_worker: 0,
            }),
        )
        .await?;
    // Task 0: the first replica cheats. Task 1: the first replica drawn
    // never commits. Everything else is honest.
    let role = |task: u32, replica: &Value, since_post: i64| match (task, replica["slot"].as_u64())
    {
        (0, Some(0)) => Role::Cheat,
        (1, Some(0)) if since_post <= 1 => Role::Lazy,
        _ => Role::Honest,
    };
    let copies = drive(
        &node,
        &mut signer,
        &workers,
        &sandbox,
        compute_jobs::PRIMES_WASM,
        &job,
        role,
        Duration::from_secs(150),
    )
    .await?;

    let (_, _, view) = node.query(&format!("/job/{job}")).await?;
    assert_eq!(view["status"], "completed", "{view}");
    for (task, (lo, hi)) in view["tasks"].as_array().unwrap().iter().zip(&ranges) {
        let expected = compute_jobs::primes::job(&compute_jobs::primes::encode_input(*lo, *hi));
        let completion = &task["completion"];
        assert_eq!(completion["result_hash"], hex::encode(sha3_256(&expected)));
        let output = base64::engine::general_purpose::STANDARD
            .decode(completion["output"].as_str().unwrap())?;
        assert_eq!(output, expected, "the requester reads the verified count");
        assert!(completion["workers"].as_array().unwrap().len() >= 2);
    }
    // The copy was refused before it reached a block.
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].0, 30, "{}", copies[0].1);
    // The cheater of task 0 is on record and slashed.
    let cheater = view["tasks"][0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "cheated")
        .context("a cheated replica")?["worker"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, rep) = node.query(&format!("/reputation/{cheater}")).await?;
    assert!(rep["cheats"].as_u64().unwrap() >= 1);
    let (_, _, record) = node.query(&format!("/worker/{cheater}")).await?;
    assert!(record["stake"].as_u64().unwrap() < 100_000);
    // The lazy replica was replaced: task 1 settled and someone missed.
    let mut missed = 0;
    for w in &workers {
        missed += node.query(&format!("/reputation/{}", w.account())).await?.2["missed"]
            .as_u64()
            .unwrap();
    }
    assert!(missed >= 1);
    let (_, _, stats) = node.query("/stats").await?;
    assert_eq!(stats["tasks_settled"], 4);

    // A Verified job: the first worker drawn reveals a wrong nonce and is
    // refused; the next one is paid for the right one.
    let input = compute_jobs::hashsearch::Search {
        difficulty_bits: 10,
        nonce_start: 0,
        nonce_count: 1_000_000,
        prefix: b"real chain",
    }
    .encode();
    let nonce = node.nonce(&requester.account()).await?;
    let verified = JobId::derive(&requester.account(), nonce);
    signer
        .commit(
            &requester,
            Msg::PostJob(pb::PostJob {
                module_id: ModuleId::of(compute_jobs::HASHSEARCH_WASM).0.to_vec(),
                tasks: vec![pb::TaskInput {
                    size: input.len() as u64,
                    source: Some(pb::task_input::Source::Inline(input.clone())),
                }],
                policy: Some(pb::Policy {
                    kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                        verify_fuel: 5_000_000,
                        max_workers: 0,
                    })),
                }),
                fuel_limit: FUEL_LIMIT,
                price_per_mfuel: PRICE,
                deadline_blocks: 200,
                min_reputation_ppm: 0,
                max_tasks_per_worker: 0,
            }),
        )
        .await?;
    let first_drawn = std::sync::Mutex::new(None::<String>);
    let role = |_: u32, replica: &Value, _: i64| {
        let worker = replica["worker"].as_str().unwrap_or_default().to_owned();
        let mut first = first_drawn.lock().unwrap();
        match first.as_ref() {
            None => {
                *first = Some(worker);
                Role::Cheat
            }
            Some(w) if *w == worker => Role::Cheat,
            Some(_) => Role::Honest,
        }
    };
    drive(
        &node,
        &mut signer,
        &workers,
        &sandbox,
        compute_jobs::HASHSEARCH_WASM,
        &verified,
        role,
        Duration::from_secs(90),
    )
    .await?;
    let (_, _, view) = node.query(&format!("/job/{verified}")).await?;
    assert_eq!(view["status"], "completed", "{view}");
    let refused = first_drawn.lock().unwrap().clone().unwrap();
    let replicas = view["tasks"][0]["replicas"].as_array().unwrap();
    assert!(replicas
        .iter()
        .any(|r| r["worker"] == refused && r["status"] == "cheated"));
    let completion = &view["tasks"][0]["completion"];
    assert_ne!(completion["workers"][0], refused);
    let right = compute_jobs::hashsearch::job(&input);
    assert_eq!(completion["result_hash"], hex::encode(sha3_256(&right)));
    assert!(completion["paid"].as_u64().unwrap() > 0);

    // Every app hash CometBFT recorded is reproduced by a fresh replica.
    let replayed = replay_and_compare_app_hashes(&node).await?;
    assert!(replayed >= 10);
    Ok(())
}
