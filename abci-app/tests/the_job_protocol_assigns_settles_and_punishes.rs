//! The job protocol on the in-memory store, block by block: assignment by
//! the chain, sealed commits and reveals, settlement by quorum, payment,
//! slashing, extra replicas, missed deadlines, on-chain `verify`, data
//! scattering, cancellation and the queries that show all of it.
//!
//! Every scenario runs twice: with single messages, and (module `batched`)
//! with every `PostJob`, `CommitResult` and `RevealResult` sent as a batch
//! of one (`PostJobs`, `CommitResults`, `RevealResults`), which must behave
//! the same.

mod common;
mod protocol;

use std::collections::BTreeMap;

use common::keys;
use compute_abci::Code;
use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, sha3_256, ModuleId, SigningKey};
use protocol::*;
use serde_json::json;

#[test]
fn a_quorum_task_settles_pays_the_majority_and_slashes_the_cheater() {
    let (mut net, k, module) = setup(4, json!({}));
    let (job, out) = posted_job(&mut net, &k[0], post(&module, 1, quorum(3, 2, 3), 100));
    // Assigned at the end of the block that posted it, never to the requester.
    let assigned = events(&out, "task_assigned");
    assert_eq!(assigned.len(), 3, "{assigned:?}");
    let mut drawn: Vec<&str> = assigned.iter().map(|e| e["worker"].as_str()).collect();
    drawn.sort_unstable();
    let mut workers: Vec<String> = k[1..].iter().map(|w| w.account().to_hex()).collect();
    workers.sort();
    assert_eq!(drawn, workers);
    assert_eq!(
        net.q(&format!("/worker/{}/assignments", k[1].account()))["assignments"][0]["job"],
        job.to_hex()
    );

    let good = sha3_256(b"the primes");
    let bad = sha3_256(b"made up");
    let fuel = 1_000_000;
    let out = net.ok(vec![
        (&k[1], commit(&job, 0, &k[1], &good, fuel)),
        (&k[2], commit(&job, 0, &k[2], &good, fuel)),
        (&k[3], commit(&job, 0, &k[3], &bad, fuel)),
    ]);
    assert_eq!(events(&out, "task_reveal_open").len(), 3);
    let out = net.ok(vec![
        (&k[1], reveal(&job, 0, salt_of(&k[1]), &good, fuel)),
        (&k[2], reveal(&job, 0, salt_of(&k[2]), &good, fuel)),
        (&k[3], reveal(&job, 0, salt_of(&k[3]), &bad, fuel)),
    ]);
    let settled = events(&out, "task_settled");
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["result_hash"], hex::encode(good));
    let cheated = events(&out, "worker_cheated");
    assert_eq!(cheated.len(), 1);
    assert_eq!(cheated[0]["worker"], k[3].account().to_hex());
    assert_eq!(events(&out, "job_completed")[0]["status"], "completed");

    // Paid fuel x price from the escrow; the rest refunded.
    let pay = fuel * PRICE / 1_000_000;
    let escrow = 3 * FUEL_LIMIT * PRICE / 1_000_000;
    assert_eq!(net.chain.balance(&k[1].account()), BALANCE - STAKE + pay);
    assert_eq!(net.chain.balance(&k[3].account()), BALANCE - STAKE);
    assert_eq!(
        net.chain.balance(&k[0].account()),
        BALANCE - escrow + (escrow - 2 * pay)
    );
    let slashed = STAKE / 10;
    assert_eq!(
        net.q(&format!("/worker/{}", k[3].account()))["stake"],
        STAKE - slashed
    );
    for w in &k[1..] {
        assert_eq!(
            net.q(&format!("/worker/{}", w.account()))["active_tasks"],
            0
        );
    }
    let honest = net.q(&format!("/reputation/{}", k[1].account()));
    assert_eq!(honest["agreed"], 1);
    assert_eq!(honest["fuel_worked"], fuel);
    assert_eq!(honest["score_ppm"], 666_666);
    let cheat = net.q(&format!("/reputation/{}", k[3].account()));
    assert_eq!(cheat["cheats"], 1);
    assert_eq!(cheat["score_ppm"], 166_666);
    let requester = net.q(&format!("/reputation/{}", k[0].account()));
    assert_eq!(requester["tasks_received"], 1);
    assert_eq!(requester["fuel_received"], fuel);

    // The completion record, from every angle.
    let view = net.q(&format!("/job/{job}"));
    assert_eq!(view["status"], "completed");
    assert_eq!(view["escrow"], 0);
    let task = &view["tasks"][0];
    assert_eq!(task["status"], "settled");
    let completion = &task["completion"];
    assert_eq!(completion["result_hash"], hex::encode(good));
    assert_eq!(completion["paid"], 2 * pay);
    let mut winners = vec![k[1].account().to_hex(), k[2].account().to_hex()];
    winners.sort();
    assert_eq!(completion["workers"], json!(winners));
    let statuses: BTreeMap<String, String> = net.replicas(&job, 0).into_iter().collect();
    assert_eq!(statuses[&k[3].account().to_hex()], "cheated");
    assert_eq!(statuses[&k[1].account().to_hex()], "agreed");
    let by_job = net.q(&format!("/completions?job={job}"));
    assert_eq!(by_job["completions"].as_array().unwrap().len(), 1);
    let by_worker = net.q(&format!("/completions?worker={}", k[2].account()));
    assert_eq!(by_worker["completions"][0]["job"], job.to_hex());
    let none = net.q(&format!("/completions?worker={}", k[3].account()));
    assert_eq!(none["completions"], json!([]));
    let listed = net.q("/jobs?status=completed");
    assert_eq!(listed["jobs"][0]["job"], job.to_hex());
    assert_eq!(net.q("/jobs?status=open")["jobs"], json!([]));
    let mine = net.q(&format!("/jobs?master={}&limit=5", k[0].account()));
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(
        net.q(&format!("/worker/{}/assignments", k[1].account()))["assignments"],
        json!([])
    );
    let pool = net.q("/workers?limit=2");
    assert_eq!(pool["workers"].as_array().unwrap().len(), 2);
    let rest = net.q(&format!(
        "/workers?after={}",
        pool["next"].as_str().unwrap()
    ));
    assert_eq!(rest["workers"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());
    let stats = net.q("/stats");
    assert_eq!(stats["tasks_settled"], 1);
    assert_eq!(stats["credits_slashed"], slashed);
    assert_eq!(stats["jobs_open"], 0);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn commits_and_reveals_are_refused_out_of_turn_and_a_copied_reveal_fails() {
    let (mut net, k, module) = setup(
        4,
        json!({"commit_window_blocks": 10, "reveal_window_blocks": 5}),
    );
    let (job, _) = posted_job(&mut net, &k[0], post(&module, 1, quorum(3, 2, 3), 50));
    let good = sha3_256(b"answer");
    let fuel = 5_000;

    // Someone the chain did not draw.
    let out = net.run(vec![(&k[0], commit(&job, 0, &k[0], &good, fuel))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::NotAssigned,
        "{}",
        out.tx_results[0].log
    );
    // A task the job does not have.
    let out = net.run(vec![(&k[1], commit(&job, 9, &k[1], &good, fuel))]);
    assert_eq!(out.tx_results[0].code, Code::UnknownTask);

    net.ok(vec![(&k[1], commit(&job, 0, &k[1], &good, fuel))]);
    // Twice, and a reveal before every replica has committed.
    let out = net.run(vec![
        (&k[1], commit(&job, 0, &k[1], &good, fuel)),
        (&k[1], reveal(&job, 0, salt_of(&k[1]), &good, fuel)),
    ]);
    assert_eq!(
        out.tx_results[0].code,
        Code::WrongPhase,
        "{}",
        out.tx_results[0].log
    );
    assert_eq!(
        out.tx_results[1].code,
        Code::WrongPhase,
        "{}",
        out.tx_results[1].log
    );

    // The lazy worker commits to nothing it can open, then copies k[1]'s
    // reveal once it is public: the commitment does not match.
    let lazy_commitment = Msg::CommitResult(pb::CommitResult {
        job_id: job.0.to_vec(),
        task: 0,
        commitment: [9; 32].to_vec(),
    });
    net.ok(vec![
        (&k[2], commit(&job, 0, &k[2], &good, fuel)),
        (&k[3], lazy_commitment),
    ]);
    net.ok(vec![(&k[1], reveal(&job, 0, salt_of(&k[1]), &good, fuel))]);
    let copied = reveal(&job, 0, salt_of(&k[1]), &good, fuel);
    let out = net.run(vec![(&k[3], copied)]);
    assert_eq!(
        out.tx_results[0].code,
        Code::CommitmentMismatch,
        "{}",
        out.tx_results[0].log
    );
    // Fuel above the job's limit is refused too.
    let out = net.run(vec![(
        &k[2],
        reveal(&job, 0, salt_of(&k[2]), &good, FUEL_LIMIT + 1),
    )]);
    assert_eq!(out.tx_results[0].code, Code::InvalidMessage);
    net.ok(vec![(&k[2], reveal(&job, 0, salt_of(&k[2]), &good, fuel))]);

    // The lazy worker never reveals: at the reveal deadline it is counted
    // as missed and the quorum of two settles the task.
    let mut settled = Vec::new();
    for out in net.empty_blocks(4) {
        settled.extend(events(&out, "task_settled"));
        for missed in events(&out, "deadline_missed") {
            assert_eq!(missed["worker"], k[3].account().to_hex());
            assert_eq!(missed["phase"], "reveal");
        }
    }
    assert_eq!(settled.len(), 1);
    let lazy = net.q(&format!("/reputation/{}", k[3].account()));
    assert_eq!(lazy["missed"], 1);
    assert_eq!(lazy["cheats"], 0);
    assert_eq!(net.q(&format!("/job/{job}"))["status"], "completed");
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_worker_that_never_commits_is_replaced_after_its_deadline() {
    let (mut net, k, module) = setup(
        5,
        json!({"commit_window_blocks": 3, "reveal_window_blocks": 3}),
    );
    let mut msg = post(&module, 1, quorum(3, 2, 3), 60);
    if let Msg::PostJob(p) = &mut msg {
        // One missed deadline takes a new key's 500,000 to 333,333.
        p.min_reputation_ppm = 400_000;
    }
    let (job, out) = posted_job(&mut net, &k[0], msg);
    let drawn: Vec<String> = events(&out, "task_assigned")
        .iter()
        .map(|e| e["worker"].clone())
        .collect();
    let lazy = key_of(&k, &drawn[0]).clone();
    let good = sha3_256(b"ok");
    let fuel = 77;
    net.ok(drawn[1..]
        .iter()
        .map(|w| {
            let w = key_of(&k, w);
            (w, commit(&job, 0, w, &good, fuel))
        })
        .collect());
    // Past the commit deadline the slot goes to the one worker left.
    let mut replacement = None;
    for out in net.empty_blocks(3) {
        for missed in events(&out, "deadline_missed") {
            assert_eq!(missed["worker"], lazy.account().to_hex());
            assert_eq!(missed["phase"], "commit");
        }
        if let Some(a) = events(&out, "task_assigned").first() {
            replacement = Some(a["worker"].clone());
        }
    }
    let replacement = replacement.expect("the slot was filled again");
    assert_ne!(replacement, lazy.account().to_hex());
    assert!(!drawn.contains(&replacement));
    assert_eq!(
        net.q(&format!("/reputation/{}", lazy.account()))["missed"],
        1
    );
    assert_eq!(
        net.q(&format!("/worker/{}", lazy.account()))["active_tasks"],
        0
    );

    let r = key_of(&k, &replacement).clone();
    let out = net.ok(vec![(&r, commit(&job, 0, &r, &good, fuel))]);
    assert_eq!(events(&out, "task_reveal_open").len(), 3);
    let reveals: Vec<(&SigningKey, Msg)> = drawn[1..]
        .iter()
        .map(|w| key_of(&k, w))
        .chain([&r])
        .map(|w| (w, reveal(&job, 0, salt_of(w), &good, fuel)))
        .collect();
    let out = net.ok(reveals);
    assert_eq!(events(&out, "task_settled").len(), 1);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn no_quorum_adds_replicas_up_to_the_maximum_then_fails_and_refunds() {
    // A job the referee cannot afford: without a quorum it draws more
    // replicas (a refereed one is in disputes_are_refereed_by_re_execution).
    let (mut net, k, module) = setup(
        4,
        json!({"max_referee_fuel": FUEL_LIMIT - 1, "max_referee_fuel_per_block": FUEL_LIMIT + 1_000_000}),
    );
    // Two replicas must agree; a third may be added.
    let (job, out) = posted_job(&mut net, &k[0], post(&module, 1, quorum(2, 2, 3), 100));
    let first: Vec<String> = events(&out, "task_assigned")
        .iter()
        .map(|e| e["worker"].clone())
        .collect();
    assert_eq!(first.len(), 2);
    let (a, b) = (key_of(&k, &first[0]).clone(), key_of(&k, &first[1]).clone());
    let (h1, h2) = (sha3_256(b"one"), sha3_256(b"two"));
    net.ok(vec![
        (&a, commit(&job, 0, &a, &h1, 10)),
        (&b, commit(&job, 0, &b, &h2, 10)),
    ]);
    let out = net.ok(vec![
        (&a, reveal(&job, 0, salt_of(&a), &h1, 10)),
        (&b, reveal(&job, 0, salt_of(&b), &h2, 10)),
    ]);
    assert_eq!(events(&out, "task_extended")[0]["replicas"], "3");
    let third = events(&out, "task_assigned");
    assert_eq!(third.len(), 1);
    let c = key_of(&k, &third[0]["worker"]).clone();
    assert!(c.account() != a.account() && c.account() != b.account());
    net.ok(vec![(&c, commit(&job, 0, &c, &h1, 10))]);
    let out = net.ok(vec![(&c, reveal(&job, 0, salt_of(&c), &h1, 10))]);
    assert_eq!(
        events(&out, "task_settled")[0]["result_hash"],
        hex::encode(h1)
    );
    assert_eq!(
        events(&out, "worker_cheated")[0]["worker"],
        b.account().to_hex()
    );

    // Without room for more replicas, disagreement fails the task and the
    // whole escrow returns.
    let before = net.chain.balance(&k[0].account());
    let (job2, out) = posted_job(&mut net, &k[0], post(&module, 1, quorum(2, 2, 2), 100));
    let pair: Vec<SigningKey> = events(&out, "task_assigned")
        .iter()
        .map(|e| key_of(&k, &e["worker"]).clone())
        .collect();
    net.ok(vec![
        (&pair[0], commit(&job2, 0, &pair[0], &h1, 10)),
        (&pair[1], commit(&job2, 0, &pair[1], &h2, 10)),
    ]);
    let out = net.ok(vec![
        (&pair[0], reveal(&job2, 0, salt_of(&pair[0]), &h1, 10)),
        (&pair[1], reveal(&job2, 0, salt_of(&pair[1]), &h2, 10)),
    ]);
    assert!(events(&out, "task_failed")[0]["reason"].contains("no quorum"));
    assert_eq!(events(&out, "job_completed")[0]["status"], "failed");
    assert_eq!(net.chain.balance(&k[0].account()), before);
    assert_eq!(
        net.q(&format!("/job/{job2}"))["tasks"][0]["status"],
        "failed"
    );
    net.assert_conserved(&k, &[job, job2]);
}

#[test]
fn a_verified_job_pays_a_correct_output_and_refuses_a_wrong_one() {
    let k = keys(3);
    let mut net = Net::new(&k, json!({}));
    net.ok(vec![
        (&k[0], store(compute_jobs::HASHSEARCH_WASM)),
        (&k[1], register()),
        (&k[2], register()),
    ]);
    let module = ModuleId::of(compute_jobs::HASHSEARCH_WASM);
    let input = compute_jobs::hashsearch::Search {
        difficulty_bits: 8,
        nonce_start: 0,
        nonce_count: 100_000,
        prefix: b"verified",
    }
    .encode();
    let right = compute_jobs::hashsearch::job(&input);
    assert_eq!(right.len(), 8, "a nonce is found");
    let mut wrong = right.clone();
    wrong[0] ^= 1;
    let nonce = net.nonces.get(&k[0].account()).copied().unwrap_or(0);
    let out = net.ok(vec![(
        &k[0],
        Msg::PostJob(pb::PostJob {
            module_id: module.0.to_vec(),
            tasks: vec![inline(&input)],
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                    verify_fuel: 1_000_000,
                    max_workers: 0,
                })),
            }),
            fuel_limit: FUEL_LIMIT,
            price_per_mfuel: PRICE,
            deadline_blocks: 100,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
        }),
    )]);
    let job = job_id(&k[0].account(), nonce);
    let first = key_of(&k, &events(&out, "task_assigned")[0]["worker"]).clone();
    let second = k[1..]
        .iter()
        .find(|w| w.account() != first.account())
        .unwrap()
        .clone();

    // The first worker delivers a wrong nonce: verify refuses it.
    let fuel = 900_000;
    let send = |net: &mut Net, w: &SigningKey, output: &[u8]| {
        let hash = sha3_256(output);
        net.ok(vec![(w, commit(&job, 0, w, &hash, fuel))]);
        net.ok(vec![(
            w,
            Msg::RevealResult(pb::RevealResult {
                job_id: job.0.to_vec(),
                task: 0,
                result_hash: hash.to_vec(),
                fuel_used: fuel,
                salt: salt_of(w),
                output: output.to_vec(),
            }),
        )])
    };
    // Refused, but not yet a cheat: nothing proves the output wrong until
    // another worker's output passes.
    let out = send(&mut net, &first, &wrong);
    assert_eq!(
        events(&out, "output_refused")[0]["worker"],
        first.account().to_hex()
    );
    assert!(events(&out, "worker_cheated").is_empty());
    assert!(events(&out, "task_settled").is_empty());
    assert_eq!(
        net.q(&format!("/reputation/{}", first.account()))["cheats"],
        0
    );
    // The slot went to the other worker, which delivers the right nonce.
    assert_eq!(
        events(&out, "task_assigned")[0]["worker"],
        second.account().to_hex()
    );
    let out = send(&mut net, &second, &right);
    assert_eq!(events(&out, "task_settled").len(), 1);
    assert_eq!(events(&out, "output_verified").len(), 1);
    // Now the refused output is proven wrong.
    assert_eq!(
        events(&out, "worker_cheated")[0]["worker"],
        first.account().to_hex()
    );
    let view = net.q(&format!("/job/{job}"));
    assert_eq!(view["status"], "completed");
    let completion = &view["tasks"][0]["completion"];
    assert_eq!(completion["workers"], json!([second.account().to_hex()]));
    use base64::Engine;
    assert_eq!(
        completion["output"],
        base64::engine::general_purpose::STANDARD.encode(&right)
    );
    let pay = fuel * PRICE / 1_000_000;
    assert_eq!(net.chain.balance(&second.account()), BALANCE - STAKE + pay);
    assert_eq!(net.chain.balance(&first.account()), BALANCE - STAKE);
    assert_eq!(
        net.q(&format!("/reputation/{}", first.account()))["cheats"],
        1
    );
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_job_past_its_deadline_fails_and_refunds_everything() {
    let (mut net, k, module) = setup(
        3,
        json!({"commit_window_blocks": 2, "reveal_window_blocks": 2}),
    );
    let (job, _) = posted_job(&mut net, &k[0], post(&module, 2, quorum(1, 1, 1), 6));
    let mut completed = Vec::new();
    for out in net.empty_blocks(8) {
        completed.extend(events(&out, "job_completed"));
    }
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["status"], "failed");
    let view = net.q(&format!("/job/{job}"));
    assert_eq!(view["status"], "failed");
    assert_eq!(view["escrow"], 0);
    assert!(view["ended_height"].as_i64().unwrap() <= net.height());
    assert_eq!(net.chain.balance(&k[0].account()), BALANCE);
    let mut missed = 0;
    for w in &k[1..] {
        assert_eq!(
            net.q(&format!("/worker/{}", w.account()))["active_tasks"],
            0
        );
        missed += net.q(&format!("/reputation/{}", w.account()))["missed"]
            .as_u64()
            .unwrap();
    }
    assert!(
        missed >= 2,
        "every drawn replica missed its commit ({missed})"
    );
    net.assert_conserved(&k, &[job]);
}

#[test]
fn data_scattering_caps_each_workers_share_of_a_job() {
    let (mut net, k, module) = setup(3, json!({}));
    let mut msg = post(&module, 3, quorum(1, 1, 1), 100);
    if let Msg::PostJob(p) = &mut msg {
        p.max_tasks_per_worker = 1;
    }
    let (job, out) = posted_job(&mut net, &k[0], msg);
    // Two workers, one task each; the third task waits for a third worker.
    let assigned = events(&out, "task_assigned");
    assert_eq!(assigned.len(), 2);
    assert_ne!(assigned[0]["worker"], assigned[1]["worker"]);
    net.empty_blocks(2);
    let waiting = net.q(&format!("/job/{job}"))["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["replicas"].as_array().unwrap().is_empty())
        .count();
    assert_eq!(waiting, 1);
    let late = SigningKey::from_seed([77; 32]);
    net.ok(vec![(
        &k[0],
        Msg::Transfer(pb::Transfer {
            to: late.account().0.to_vec(),
            amount: 50_000,
        }),
    )]);
    let out = net.ok(vec![(&late, register())]);
    assert_eq!(
        events(&out, "task_assigned")[0]["worker"],
        late.account().to_hex()
    );
}

#[test]
fn cancelling_releases_the_workers_and_refunds_the_escrow() {
    let (mut net, k, module) = setup(4, json!({}));
    let (job, _) = posted_job(&mut net, &k[0], post(&module, 2, quorum(3, 2, 3), 100));
    for w in &k[1..] {
        assert_eq!(
            net.q(&format!("/worker/{}", w.account()))["active_tasks"],
            2
        );
    }
    let out = net.ok(vec![(
        &k[0],
        Msg::CancelJob(pb::CancelJob {
            job_id: job.0.to_vec(),
        }),
    )]);
    assert_eq!(
        events(&out, "job_cancelled")[0]["refund"],
        (2 * 3 * FUEL_LIMIT * PRICE / 1_000_000).to_string()
    );
    assert_eq!(events(&out, "job_completed").len(), 1);
    for w in &k[1..] {
        assert_eq!(
            net.q(&format!("/worker/{}", w.account()))["active_tasks"],
            0
        );
    }
    let view = net.q(&format!("/job/{job}"));
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["tasks"][1]["status"], "cancelled");
    assert_eq!(net.chain.balance(&k[0].account()), BALANCE);
    // A commit for a cancelled task is out of turn.
    let out = net.run(vec![(&k[1], commit(&job, 0, &k[1], &[1; 32], 1))]);
    assert_eq!(out.tx_results[0].code, Code::WrongPhase);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn listing_queries_page_and_refuse_bad_arguments() {
    let (mut net, k, module) = setup(2, json!({}));
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(posted_job(&mut net, &k[0], post(&module, 1, quorum(1, 1, 1), 100)).0);
    }
    ids.sort();
    let page = net.q("/jobs?limit=2");
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page["jobs"][0]["job"], ids[0].to_hex());
    let next = page["next"].as_str().unwrap().to_owned();
    let page2 = net.q(&format!("/jobs?limit=2&after={next}"));
    assert_eq!(page2["jobs"][0]["job"], ids[2].to_hex());
    let last = net.q(&format!("/jobs?limit=2&after={}", ids[3]));
    assert_eq!(last["jobs"].as_array().unwrap().len(), 1);
    assert!(last["next"].is_null());
    // One job's tasks, a page at a time, and its progress without them.
    let (big, _) = posted_job(&mut net, &k[0], post(&module, 3, quorum(1, 1, 1), 100));
    let summary = net.q(&format!("/job/{big}?tasks=false"));
    assert!(summary.get("tasks").is_none());
    assert_eq!(summary["progress"]["wanted"], 3);
    let first = net.q(&format!("/job/{big}?limit=2"));
    assert_eq!(first["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(first["next"], 1);
    let rest = net.q(&format!("/job/{big}?after=1&limit=2"));
    assert_eq!(rest["tasks"][0]["index"], 2);
    assert!(rest["next"].is_null());
    let bad_tasks = format!("/job/{big}?tasks=maybe");
    let bad_after = format!("/job/{big}?after=x");
    for (path, code) in [
        ("/jobs?status=running", Code::BadQuery),
        ("/jobs?status=open&status", Code::BadQuery),
        ("/jobs?limit=0", Code::BadQuery),
        ("/jobs?colour=red", Code::BadQuery),
        ("/completions", Code::BadQuery),
        ("/completions?job=zz", Code::BadQuery),
        ("/worker/abc/assignments", Code::BadQuery),
        (bad_tasks.as_str(), Code::BadQuery),
        (bad_after.as_str(), Code::BadQuery),
        ("/worker/00/assignments/more", Code::UnknownQuery),
    ] {
        let answer = net.chain.app.query(path, 0);
        assert_eq!(answer.code, code, "{path}: {}", answer.log);
        assert!(!answer.log.is_empty());
    }
}

#[test]
fn a_drawn_worker_declines_and_the_slot_goes_to_another() {
    let (mut net, k, module) = setup(4, json!({}));
    let (job, out) = posted_job(&mut net, &k[0], post(&module, 1, quorum(1, 1, 1), 100));
    let first = key_of(&k, &events(&out, "task_assigned")[0]["worker"]).clone();
    let decline = |reason: &str| {
        Msg::DeclineTask(pb::DeclineTask {
            job_id: job.0.to_vec(),
            task: 0,
            reason: reason.to_owned(),
        })
    };
    // Someone not drawn cannot decline; a reason is bounded.
    let other = k[1..]
        .iter()
        .find(|w| w.account() != first.account())
        .unwrap()
        .clone();
    let out = net.run(vec![(&other, decline("no"))]);
    assert_eq!(out.tx_results[0].code, Code::NotAssigned);
    // (A shape error is refused before the nonce is used: CheckTx shows it.)
    let nonce = net.nonces.get(&first.account()).copied().unwrap_or(0);
    let long = net.chain.txs.sign(&first, nonce, decline(&"x".repeat(300)));
    assert_eq!(net.chain.check(&long).code, Code::InvalidMessage);

    let out = net.ok(vec![(&first, decline("module on my deny list"))]);
    let declined = events(&out, "task_declined");
    assert_eq!(declined[0]["worker"], first.account().to_hex());
    assert_eq!(declined[0]["reason"], "module on my deny list");
    let again = events(&out, "task_assigned");
    assert_eq!(again.len(), 1, "the slot is drawn again in the same block");
    assert_ne!(again[0]["worker"], first.account().to_hex());
    assert_eq!(
        net.q(&format!("/worker/{}", first.account()))["active_tasks"],
        0
    );
    let rep = net.q(&format!("/reputation/{}", first.account()));
    assert_eq!(
        (rep["missed"].clone(), rep["cheats"].clone()),
        (json!(0), json!(0))
    );
    let statuses: BTreeMap<String, String> = net.replicas(&job, 0).into_iter().collect();
    assert_eq!(statuses[&first.account().to_hex()], "declined");

    // A committed replica must reveal instead.
    let next = key_of(&k, &again[0]["worker"]).clone();
    net.ok(vec![(&next, commit(&job, 0, &next, &[5; 32], 10))]);
    let out = net.run(vec![(&next, decline("changed my mind"))]);
    assert_eq!(out.tx_results[0].code, Code::WrongPhase);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn a_verify_that_refuses_everything_fails_the_task_and_slashes_nobody() {
    let k = keys(5);
    let mut net = Net::new(&k, json!({}));
    let wasm = wat::parse_str(common::LYING_VERIFY_WAT).unwrap();
    let mut setup = vec![(&k[0], store(&wasm))];
    setup.extend(k[1..].iter().map(|w| (w, register())));
    net.ok(setup);
    let module = ModuleId::of(&wasm);
    let verify_fuel = 1_000_000;
    let nonce = net.nonces.get(&k[0].account()).copied().unwrap_or(0);
    let before = net.chain.balance(&k[0].account());
    let mut out = net.ok(vec![(
        &k[0],
        verified_post(&module, vec![inline(b"x")], verify_fuel, 3),
    )]);
    let job = job_id(&k[0].account(), nonce);
    // The escrow covers three runs and three verifications.
    let escrow = 3 * (FUEL_LIMIT + verify_fuel) * PRICE / 1_000_000;
    assert_eq!(net.chain.balance(&k[0].account()), before - escrow);
    let fuel = 500_000;
    let output = [7u8];
    let hash = sha3_256(&output);
    let mut drawn = Vec::new();
    for round in 0..3 {
        let worker = key_of(&k, &events(&out, "task_assigned")[0]["worker"]).clone();
        assert!(
            !drawn.contains(&worker.account()),
            "a distinct worker each time"
        );
        drawn.push(worker.account());
        net.ok(vec![(&worker, commit(&job, 0, &worker, &hash, fuel))]);
        let mut revealed = reveal(&job, 0, salt_of(&worker), &hash, fuel);
        if let Msg::RevealResult(r) = &mut revealed {
            r.output = output.to_vec();
        }
        out = net.ok(vec![(&worker, revealed)]);
        assert_eq!(events(&out, "output_refused").len(), 1, "round {round}");
        assert!(events(&out, "worker_cheated").is_empty(), "round {round}");
    }
    let failed = events(&out, "task_failed");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["reason"].contains("nobody is punished"),
        "{failed:?}"
    );
    assert_eq!(net.q(&format!("/job/{job}"))["status"], "failed");
    let pay = fuel * PRICE / 1_000_000;
    for w in &drawn {
        assert_eq!(net.chain.balance(w), BALANCE - STAKE + pay, "paid its fuel");
        assert_eq!(
            net.q(&format!("/worker/{w}"))["stake"],
            STAKE,
            "not slashed"
        );
        assert_eq!(net.q(&format!("/reputation/{w}"))["cheats"], 0);
    }
    assert_eq!(
        net.q(&format!("/reputation/{}", k[0].account()))["verifications_failed"],
        1
    );
    let stats = net.q("/stats");
    assert_eq!(stats["credits_slashed"], 0);
    assert_eq!(stats["verifications"], 3);
    net.assert_conserved(&k, &[job]);
}

#[test]
fn the_verify_queue_spends_at_most_the_block_budget() {
    // A budget of two verifications a block: five reveals in one block are
    // judged over three blocks, in queue order.
    let verify_fuel = 1_000_000;
    let budget = 2 * (verify_fuel + compute_abci::judge::VERIFY_BASE_FUEL);
    let k = keys(7);
    let mut net = Net::new(
        &k,
        json!({"max_verify_fuel_per_block": budget, "max_verify_fuel": verify_fuel}),
    );
    let wasm = wat::parse_str(common::LYING_VERIFY_WAT).unwrap();
    let mut setup = vec![(&k[0], store(&wasm))];
    setup.extend(k[1..].iter().map(|w| (w, register())));
    net.ok(setup);
    let module = ModuleId::of(&wasm);
    let nonce = net.nonces.get(&k[0].account()).copied().unwrap_or(0);
    let out = net.ok(vec![(
        &k[0],
        verified_post(
            &module,
            (0..5u8).map(|i| inline(&[i])).collect(),
            verify_fuel,
            1,
        ),
    )]);
    let job = job_id(&k[0].account(), nonce);
    let assigned = events(&out, "task_assigned");
    assert_eq!(assigned.len(), 5);
    let output = [7u8];
    let hash = sha3_256(&output);
    let fuel = 1_000;
    let mut commits = Vec::new();
    let mut reveals = Vec::new();
    for a in &assigned {
        let worker = key_of(&k, &a["worker"]);
        let task: u32 = a["task"].parse().unwrap();
        commits.push((worker, commit(&job, task, worker, &hash, fuel)));
        let mut revealed = reveal(&job, task, salt_of(worker), &hash, fuel);
        if let Msg::RevealResult(r) = &mut revealed {
            r.output = output.to_vec();
        }
        reveals.push((worker, revealed));
    }
    net.ok(commits);
    let mut judged = vec![events(&net.ok(reveals), "output_refused").len()];
    for out in net.empty_blocks(3) {
        judged.push(events(&out, "output_refused").len());
    }
    assert_eq!(judged, vec![2, 2, 1, 0]);
    assert_eq!(net.q("/stats")["verifications"], 5);
    assert_eq!(net.q(&format!("/job/{job}"))["status"], "failed");
    net.assert_conserved(&k, &[job]);
}

/// The same scenarios with batches of one.
mod batched {
    macro_rules! batched {
        ($($name:ident),* $(,)?) => {$(
            #[test]
            fn $name() {
                super::BATCHED.with(|b| b.set(true));
                super::$name();
            }
        )*};
    }

    batched!(
        a_quorum_task_settles_pays_the_majority_and_slashes_the_cheater,
        commits_and_reveals_are_refused_out_of_turn_and_a_copied_reveal_fails,
        a_worker_that_never_commits_is_replaced_after_its_deadline,
        no_quorum_adds_replicas_up_to_the_maximum_then_fails_and_refunds,
        a_verified_job_pays_a_correct_output_and_refuses_a_wrong_one,
        a_job_past_its_deadline_fails_and_refunds_everything,
        data_scattering_caps_each_workers_share_of_a_job,
        cancelling_releases_the_workers_and_refunds_the_escrow,
        listing_queries_page_and_refuse_bad_arguments,
        a_drawn_worker_declines_and_the_slot_goes_to_another,
        a_verify_that_refuses_everything_fails_the_task_and_slashes_nobody,
        the_verify_queue_spends_at_most_the_block_budget,
    );
}
