//! Disputes on the in-memory store, block by block: a settled result is
//! disputed with a bond, the chain re-runs the task in the real sandbox (the
//! referee), and either overturns a colluding quorum (slashing it, restoring
//! the outvoted honest worker, refunding the requester and paying the
//! disputer) or burns the bond. Windows, the referee's per-block budget,
//! carried inputs, refusals and held stakes are covered too; credits stay
//! conserved throughout.

mod common;
mod protocol;

use common::keys;
use compute_abci::{BlockOutput, Code};
use compute_proto::pb::tx_body::Msg;
use compute_proto::views::Base64;
use compute_proto::{pb, sha3_256, JobId, ModuleId, SigningKey};
use compute_sandbox::{Sandbox, SandboxConfig, TaskLimits};
use protocol::*;
use serde_json::{json, Value};

const BOND: u64 = 5_000;

/// The input of a primes task over `[lo, hi)`.
fn range(lo: u64, hi: u64) -> Vec<u8> {
    [lo.to_le_bytes(), hi.to_le_bytes()].concat()
}

/// What an honest worker (and the referee) gets for `input`: the result
/// hash and the fuel, from the real sandbox under the chain's limits.
fn honest(input: &[u8]) -> ([u8; 32], u64) {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox.prepare(compute_jobs::PRIMES_WASM).unwrap();
    let limits = TaskLimits::for_task(FUEL_LIMIT, 1024, 60_000);
    let execution = sandbox.run(&module, input, &limits).unwrap();
    (execution.result_hash(), execution.fuel_used)
}

/// A quorum job (3 replicas, quorum 2) of primes tasks over `inputs`.
fn primes_job(module: &ModuleId, inputs: Vec<pb::TaskInput>) -> Msg {
    Msg::PostJob(pb::PostJob {
        module_id: module.0.to_vec(),
        tasks: inputs,
        policy: quorum(3, 2, 3),
        fuel_limit: FUEL_LIMIT,
        price_per_mfuel: PRICE,
        deadline_blocks: 100,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    })
}

fn dispute(job: &JobId, task: u32, input: Vec<u8>, bond: u64) -> Msg {
    Msg::Dispute(pb::Dispute {
        job_id: job.0.to_vec(),
        task,
        input,
        bond,
    })
}

/// Requester `k[0]` with the primes module stored, workers `k[1..=3]`
/// registered, and `k[4]` a watcher that is no worker.
fn chain(params: Value) -> (Net, Vec<SigningKey>, ModuleId) {
    let k = keys(5);
    let mut net = Net::new(&k, params);
    let mut txs = vec![(&k[0], store(compute_jobs::PRIMES_WASM))];
    for w in &k[1..=3] {
        txs.push((w, register()));
    }
    net.ok(txs);
    (net, k, ModuleId::of(compute_jobs::PRIMES_WASM))
}

/// Settles `task` of `job` with `k[1]` and `k[2]` revealing `(hash, fuel)`
/// and `k[3]` revealing `(third, fuel3)`.
fn settle_task(
    net: &mut Net,
    k: &[SigningKey],
    job: &JobId,
    task: u32,
    pair: ([u8; 32], u64),
    third: ([u8; 32], u64),
) -> BlockOutput {
    reveal_all(net, k, job, task, [pair, pair, third])
}

/// `k[1..=3]` commit and then reveal `results`, one each.
fn reveal_all(
    net: &mut Net,
    k: &[SigningKey],
    job: &JobId,
    task: u32,
    results: [([u8; 32], u64); 3],
) -> BlockOutput {
    net.ok((1..=3)
        .map(|i| {
            (
                &k[i],
                commit(job, task, &k[i], &results[i - 1].0, results[i - 1].1),
            )
        })
        .collect());
    net.ok((1..=3)
        .map(|i| {
            let (hash, fuel) = results[i - 1];
            (&k[i], reveal(job, task, salt_of(&k[i]), &hash, fuel))
        })
        .collect())
}

fn completion(net: &Net, job: &JobId, task: u32) -> Value {
    let page = net.q(&format!("/completions?job={job}"));
    page["completions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["task"] == task)
        .cloned()
        .expect("a completion record")
}

fn reputation(net: &Net, key: &SigningKey) -> Value {
    net.q(&format!("/reputation/{}", key.account()))
}

fn stake(net: &Net, key: &SigningKey) -> u64 {
    net.q(&format!("/worker/{}", key.account()))["stake"]
        .as_u64()
        .unwrap()
}

/// CheckTx's answer to `msg` from `key` (the key's nonce is not used up).
fn refused(net: &mut Net, key: &SigningKey, msg: Msg) -> (Code, String) {
    let nonce = net.nonces.get(&key.account()).copied().unwrap_or(0);
    let tx = net.chain.txs.sign(key, nonce, msg);
    let outcome = net.chain.check(&tx);
    (outcome.code, outcome.log)
}

#[test]
fn a_dispute_overturns_a_colluding_quorum() {
    let (mut net, k, module) = chain(json!({}));
    let input = range(0, 10_000);
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![inline(&input)]));
    let truth = honest(&input);
    let lie = (sha3_256(b"1229 is not the answer"), truth.1);
    let out = settle_task(&mut net, &k, &job, 0, lie, truth);
    assert_eq!(
        events(&out, "task_settled")[0]["result_hash"],
        hex::encode(lie.0)
    );
    assert_eq!(
        events(&out, "worker_cheated")[0]["worker"],
        k[3].account().to_hex()
    );
    let settled = completion(&net, &job, 0);
    assert_eq!(settled["dispute"]["status"], "open");
    assert_eq!(settled["dispute"]["final"], false);
    let paid = settled["paid"].as_u64().unwrap();
    let honest_stake = stake(&net, &k[3]);
    let requester_before = net.chain.balance(&k[0].account());
    let watcher_before = net.chain.balance(&k[4].account());
    let colluder_stake = stake(&net, &k[1]);

    // The watcher disputes; the referee runs at the end of the same block.
    let out = net.ok(vec![(&k[4], dispute(&job, 0, Vec::new(), BOND))]);
    assert_eq!(events(&out, "dispute_filed").len(), 1);
    let overturned = events(&out, "result_overturned");
    assert_eq!(overturned.len(), 1, "{:?}", out.events);
    assert_eq!(overturned[0]["result_hash"], hex::encode(truth.0));
    assert_eq!(overturned[0]["was"], hex::encode(lie.0));
    let mut cheats: Vec<String> = events(&out, "worker_cheated")
        .iter()
        .map(|e| e["worker"].clone())
        .collect();
    cheats.sort();
    let mut colluders = vec![k[1].account().to_hex(), k[2].account().to_hex()];
    colluders.sort();
    assert_eq!(cheats, colluders);
    assert_eq!(
        events(&out, "worker_vindicated")[0]["worker"],
        k[3].account().to_hex()
    );

    // The record is the referee's, final, and pays the honest worker.
    let record = completion(&net, &job, 0);
    assert_eq!(record["result_hash"], hex::encode(truth.0));
    assert_eq!(record["workers"], json!([k[3].account().to_hex()]));
    assert_eq!(record["dispute"]["status"], "overturned");
    assert_eq!(record["dispute"]["final"], true);
    assert_eq!(record["dispute"]["disputer"], k[4].account().to_hex());
    let pay = truth.1 * PRICE / 1_000_000;
    assert_eq!(record["paid"], pay);
    let output: Base64 = serde_json::from_value(record["output"].clone()).unwrap();
    assert_eq!(
        sha3_256(&output.0),
        truth.0,
        "the referee's output, inline-sized"
    );

    // Colluders: their pay back, then slash_ppm (10%) of the rest.
    let clawback = paid / 2;
    let slash = (colluder_stake - clawback) / 10;
    assert_eq!(stake(&net, &k[1]), colluder_stake - clawback - slash);
    assert_eq!(stake(&net, &k[2]), colluder_stake - clawback - slash);
    for colluder in &k[1..=2] {
        let rep = reputation(&net, colluder);
        assert_eq!(
            (rep["agreed"].as_u64(), rep["cheats"].as_u64()),
            (Some(0), Some(1))
        );
    }
    // The honest worker: its slash back, paid, its cheat struck off.
    let rep = reputation(&net, &k[3]);
    assert_eq!(
        (rep["agreed"].as_u64(), rep["cheats"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        stake(&net, &k[3]),
        honest_stake,
        "the stake itself is not refilled"
    );
    let vindicated = events(&out, "worker_vindicated");
    let returned: u64 = vindicated[0]["returned"].parse().unwrap();
    assert_eq!(returned, STAKE / 10, "its slash, returned to its balance");
    // The requester: what it paid for the wrong result.
    assert_eq!(net.chain.balance(&k[0].account()), requester_before + paid);
    // The watcher: bond back plus half of what is left after the refund
    // and the honest worker's slash and pay.
    let taken = 2 * (clawback + slash);
    let bounty = (taken - paid - returned - pay) / 2;
    assert_eq!(overturned[0]["bounty"], bounty.to_string());
    assert!(bounty > 0);
    assert_eq!(net.chain.balance(&k[4].account()), watcher_before + bounty);
    assert_eq!(reputation(&net, &k[4])["cheaters_reported"], 2);
    assert_eq!(reputation(&net, &k[4])["support_fuel"], truth.1);
    let stats = net.q("/stats");
    assert_eq!(stats["disputes"], 1);
    assert_eq!(stats["results_overturned"], 1);
    assert_eq!(stats["bonds_held"], 0);
    assert!(stats["referee_fuel_used"].as_u64().unwrap() >= truth.1);
    net.assert_conserved(&k, &[job]);

    // The referee is final: no second dispute.
    let (code, log) = refused(&mut net, &k[0], dispute(&job, 0, Vec::new(), BOND));
    assert_eq!(code, Code::NotDisputable, "{log}");
    assert!(log.contains("judged by the referee"), "{log}");
}

#[test]
fn a_dispute_of_a_right_result_burns_the_bond() {
    let (mut net, k, module) = chain(json!({}));
    let input = range(100, 5_000);
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![inline(&input)]));
    let truth = honest(&input);
    settle_task(&mut net, &k, &job, 0, truth, truth);
    let stakes: Vec<u64> = k[1..=3].iter().map(|w| stake(&net, w)).collect();
    let before = net.chain.balance(&k[4].account());
    let out = net.ok(vec![(&k[4], dispute(&job, 0, Vec::new(), BOND))]);
    let confirmed = events(&out, "result_confirmed");
    assert_eq!(confirmed.len(), 1);
    // The bond pays the proposer for the run; the rest is burnt.
    let referee_paid = truth.1 * PRICE / 1_000_000;
    assert_eq!(confirmed[0]["referee_paid"], referee_paid.to_string());
    assert_eq!(
        confirmed[0]["bond_burnt"],
        (BOND - referee_paid).to_string()
    );
    assert!(events(&out, "worker_cheated").is_empty());
    assert_eq!(net.chain.balance(&k[4].account()), before - BOND);
    let after: Vec<u64> = k[1..=3].iter().map(|w| stake(&net, w)).collect();
    assert_eq!(after, stakes);
    let record = completion(&net, &job, 0);
    assert_eq!(record["result_hash"], hex::encode(truth.0));
    assert_eq!(record["dispute"]["status"], "confirmed");
    assert_eq!(record["dispute"]["final"], true);
    assert_eq!(net.q("/stats")["bonds_burnt"], BOND - referee_paid);
    assert_eq!(reputation(&net, &k[4])["cheaters_reported"], 0);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_dispute_past_its_window_is_refused_and_the_result_is_final() {
    let (mut net, k, module) = chain(json!({"dispute_window_blocks": 3}));
    let input = range(0, 100);
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![inline(&input)]));
    let truth = honest(&input);
    settle_task(&mut net, &k, &job, 0, truth, truth);
    let settled_at = net.height();
    let record = completion(&net, &job, 0);
    assert_eq!(record["dispute"]["until"], settled_at + 3);
    // The winners' stakes are held for the window.
    let (code, log) = refused(
        &mut net,
        &k[1],
        Msg::UnregisterWorker(pb::UnregisterWorker {}),
    );
    assert_eq!(code, Code::StakeLocked, "{log}");
    // The state after block until - 1 still takes a dispute in block until.
    net.empty_blocks(2);
    assert_eq!(completion(&net, &job, 0)["dispute"]["status"], "open");
    assert_eq!(
        refused(&mut net, &k[4], dispute(&job, 0, Vec::new(), BOND)).0,
        Code::Ok
    );
    net.empty_blocks(1);
    assert_eq!(completion(&net, &job, 0)["dispute"]["status"], "final");
    assert_eq!(completion(&net, &job, 0)["dispute"]["final"], true);
    let (code, log) = refused(&mut net, &k[4], dispute(&job, 0, Vec::new(), BOND));
    assert_eq!(code, Code::DisputeWindowClosed, "{log}");
    assert!(
        log.contains(&format!("until height {}", settled_at + 3)),
        "{log}"
    );
    // Past the window the stake is free again.
    net.ok(vec![(
        &k[1],
        Msg::UnregisterWorker(pb::UnregisterWorker {}),
    )]);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn disputes_beyond_the_referee_budget_wait_for_later_blocks_in_order() {
    // One run at the job's fuel limit fits a block's referee budget.
    let (mut net, k, module) = chain(json!({
        "max_referee_fuel": FUEL_LIMIT,
        "max_referee_fuel_per_block": FUEL_LIMIT + 1_000_000,
    }));
    let inputs = [range(0, 1_000), range(1_000, 2_000)];
    let (job, _) = posted_job(
        &mut net,
        &k[0],
        primes_job(&module, inputs.iter().map(|i| inline(i)).collect()),
    );
    for (task, input) in inputs.iter().enumerate() {
        let truth = honest(input);
        settle_task(&mut net, &k, &job, task as u32, truth, truth);
    }
    let out = net.ok(vec![
        (&k[4], dispute(&job, 1, Vec::new(), BOND)),
        (&k[0], dispute(&job, 0, Vec::new(), BOND)),
    ]);
    let judged = events(&out, "result_confirmed");
    assert_eq!(judged.len(), 1, "one run fits the block: {:?}", out.events);
    assert_eq!(
        judged[0]["task"], "1",
        "in the order the disputes were accepted"
    );
    assert_eq!(completion(&net, &job, 0)["dispute"]["status"], "disputed");
    assert_eq!(net.q("/stats")["bonds_held"], BOND);
    // A worker whose result waits for the referee cannot leave.
    let (code, log) = refused(
        &mut net,
        &k[2],
        Msg::UnregisterWorker(pb::UnregisterWorker {}),
    );
    assert_eq!(code, Code::StakeLocked, "{log}");
    assert!(log.contains("wait for the referee"), "{log}");
    net.assert_conserved(&k, &[job]);
    let out = net.empty_blocks(1).remove(0);
    let judged = events(&out, "result_confirmed");
    assert_eq!(judged.len(), 1);
    assert_eq!(judged[0]["task"], "0");
    assert_eq!(completion(&net, &job, 0)["dispute"]["status"], "confirmed");
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_data_plane_input_is_carried_by_the_dispute_and_checked() {
    let (mut net, k, module) = chain(json!({}));
    let input = range(0, 3_000);
    let blob = pb::TaskInput {
        source: Some(pb::task_input::Source::Hash(sha3_256(&input).to_vec())),
        size: input.len() as u64,
    };
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![blob]));
    let truth = honest(&input);
    let lie = (sha3_256(b"wrong"), truth.1 + 1);
    settle_task(&mut net, &k, &job, 0, lie, lie);
    let (code, log) = refused(&mut net, &k[4], dispute(&job, 0, Vec::new(), BOND));
    assert_eq!(code, Code::DisputeInputMismatch, "{log}");
    assert!(log.contains("fetch it"), "{log}");
    let (code, log) = refused(&mut net, &k[4], dispute(&job, 0, range(0, 3_001), BOND));
    assert_eq!(code, Code::DisputeInputMismatch, "{log}");
    let out = net.ok(vec![(&k[4], dispute(&job, 0, input.clone(), BOND))]);
    let overturned = events(&out, "result_overturned");
    assert_eq!(overturned[0]["result_hash"], hex::encode(truth.0));
    // Nobody revealed the referee's result: the record names no worker.
    let record = completion(&net, &job, 0);
    assert_eq!(record["workers"], json!([]));
    assert_eq!(record["paid"], 0);
    assert_eq!(reputation(&net, &k[4])["cheaters_reported"], 3);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn disputes_are_refused_with_a_code_and_a_reason() {
    let (mut net, k, module) =
        chain(json!({"min_dispute_bond": 100, "max_referee_fuel": FUEL_LIMIT}));
    let input = range(0, 100);
    let (job, _) = posted_job(
        &mut net,
        &k[0],
        primes_job(&module, vec![inline(&input), inline(&input)]),
    );
    let cases: Vec<(Msg, Code, &str)> = vec![
        (
            dispute(&job, 0, Vec::new(), 0),
            Code::InvalidMessage,
            "bond must be positive",
        ),
        (
            Msg::Dispute(pb::Dispute {
                job_id: vec![1; 31],
                bond: BOND,
                ..Default::default()
            }),
            Code::InvalidMessage,
            "32 bytes",
        ),
        (
            dispute(&JobId([7; 32]), 0, Vec::new(), BOND),
            Code::UnknownJob,
            "no job",
        ),
        (
            dispute(&job, 2, Vec::new(), BOND),
            Code::UnknownTask,
            "has no task 2",
        ),
        (
            dispute(&job, 0, Vec::new(), BOND),
            Code::WrongPhase,
            "only a settled task",
        ),
    ];
    for (msg, code, words) in cases {
        let (got, log) = refused(&mut net, &k[4], msg);
        assert_eq!(got, code, "{log}");
        assert!(log.contains(words), "{words:?} not in {log}");
    }
    let truth = honest(&input);
    settle_task(&mut net, &k, &job, 0, truth, truth);
    let cases: Vec<(Msg, Code, &str)> = vec![
        (
            dispute(&job, 0, Vec::new(), 99),
            Code::DisputeBondTooLow,
            "at least 100",
        ),
        (
            dispute(&job, 0, input.clone(), BOND),
            Code::DisputeInputMismatch,
            "without input",
        ),
        (
            dispute(&job, 0, Vec::new(), BALANCE * 2),
            Code::InsufficientFunds,
            "credits",
        ),
    ];
    for (msg, code, words) in cases {
        let (got, log) = refused(&mut net, &k[4], msg);
        assert_eq!(got, code, "{log}");
        assert!(log.contains(words), "{words:?} not in {log}");
    }
    // A job whose fuel limit the referee cannot afford has final results.
    let costly = Msg::PostJob(pb::PostJob {
        fuel_limit: FUEL_LIMIT + 1,
        ..match primes_job(&module, vec![inline(&input)]) {
            Msg::PostJob(p) => p,
            _ => unreachable!(),
        }
    });
    let (costly, _) = posted_job(&mut net, &k[0], costly);
    settle_task(&mut net, &k, &costly, 0, truth, truth);
    assert_eq!(
        completion(&net, &costly, 0)["dispute"]["status"],
        "not_disputable"
    );
    let (got, log) = refused(&mut net, &k[4], dispute(&costly, 0, Vec::new(), BOND));
    assert_eq!(got, Code::NotDisputable, "{log}");
    assert!(log.contains("max_referee_fuel"), "{log}");
    // Nothing refused moved a credit.
    net.assert_conserved(&k, &[job, costly]);
    assert_eq!(net.q("/stats")["disputes"], 0);
}

#[test]
fn a_task_without_a_quorum_is_settled_by_the_referee() {
    let (mut net, k, module) = chain(json!({}));
    let input = range(0, 7_000);
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![inline(&input)]));
    let truth = honest(&input);
    let proposer_before = net.chain.balance(&proposer());
    // Three different results: no quorum. Instead of drawing more replicas,
    // which would see these reveals, the chain runs the task.
    let out = reveal_all(
        &mut net,
        &k,
        &job,
        0,
        [truth, (sha3_256(b"a"), truth.1), (sha3_256(b"b"), truth.1)],
    );
    assert_eq!(events(&out, "task_referred").len(), 1);
    assert!(events(&out, "task_extended").is_empty());
    let refereed = events(&out, "task_refereed");
    assert_eq!(refereed[0]["result_hash"], hex::encode(truth.0));
    assert_eq!(refereed[0]["agreeing"], "1");
    let settled = events(&out, "task_settled");
    assert_eq!(settled[0]["workers"], k[1].account().to_hex());
    let mut cheats: Vec<String> = events(&out, "worker_cheated")
        .iter()
        .map(|e| e["worker"].clone())
        .collect();
    cheats.sort();
    let mut liars = vec![k[2].account().to_hex(), k[3].account().to_hex()];
    liars.sort();
    assert_eq!(cheats, liars);
    let record = completion(&net, &job, 0);
    assert_eq!(record["dispute"]["status"], "refereed");
    assert_eq!(record["dispute"]["final"], true);
    let view = net.q(&format!("/job/{job}"));
    assert_eq!(view["tasks"][0]["referee_height"], net.height());
    assert_eq!(view["status"], "completed");
    // The proposer was paid the referee's fuel from the escrow (besides
    // the block reward).
    let reward = net.q("/params")["block_reward"].as_u64().unwrap();
    let referee_pay = truth.1 * PRICE / 1_000_000;
    assert!(net.chain.balance(&proposer()) >= proposer_before + referee_pay + reward);
    let (code, log) = refused(&mut net, &k[4], dispute(&job, 0, Vec::new(), BOND));
    assert_eq!(code, Code::NotDisputable, "{log}");
    assert!(log.contains("no quorum"), "{log}");
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_task_nobody_got_right_settles_with_the_referees_result_alone() {
    let (mut net, k, module) = chain(json!({}));
    let input = range(0, 500);
    let (job, _) = posted_job(&mut net, &k[0], primes_job(&module, vec![inline(&input)]));
    let truth = honest(&input);
    let out = reveal_all(
        &mut net,
        &k,
        &job,
        0,
        [
            (sha3_256(b"a"), truth.1),
            (sha3_256(b"b"), truth.1),
            (sha3_256(b"c"), truth.1),
        ],
    );
    assert_eq!(events(&out, "worker_cheated").len(), 3);
    let record = completion(&net, &job, 0);
    assert_eq!(record["result_hash"], hex::encode(truth.0));
    assert_eq!(record["workers"], json!([]));
    assert_eq!(record["paid"], 0);
    let output: Base64 = serde_json::from_value(record["output"].clone()).unwrap();
    assert_eq!(output.0, compute_jobs::primes::job(&input));
    net.assert_conserved(&k, &[job]);
}
