//! PostJob escrows the worst-case price and records the job and its tasks;
//! malformed terms are refused with the field at fault; CancelJob by the
//! requester refunds the escrow, and by anyone else is refused.

mod common;

use common::{keys, TestChain};
use compute_abci::store::MemStore;
use compute_abci::Code;
use compute_proto::{pb, JobId, ModuleId, SigningKey};
use serde_json::json;

fn inline(bytes: &[u8]) -> pb::TaskInput {
    pb::TaskInput {
        source: Some(pb::task_input::Source::Inline(bytes.to_vec())),
        size: bytes.len() as u64,
    }
}

fn job(
    module: &ModuleId,
    tasks: Vec<pb::TaskInput>,
    policy: Option<pb::policy::Kind>,
) -> pb::PostJob {
    pb::PostJob {
        module_id: module.0.to_vec(),
        tasks,
        policy: policy.map(|kind| pb::Policy { kind: Some(kind) }),
        fuel_limit: 2_000_000,
        price_per_mfuel: 5,
        deadline_blocks: 100,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    }
}

fn quorum(replicas: u32, quorum: u32, max_replicas: u32) -> Option<pb::policy::Kind> {
    Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
        replicas,
        quorum,
        max_replicas,
    }))
}

/// A chain where `requester` has stored the primes module.
fn chain_with_module(requester: &SigningKey, balance: u64) -> (TestChain<MemStore>, ModuleId) {
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(requester.account(), balance)],
        json!({}),
    );
    let wasm = compute_jobs::PRIMES_WASM;
    let out = chain.block(&[chain.txs.sign(
        requester,
        0,
        pb::tx_body::Msg::StoreModule(pb::StoreModule {
            wasm: wasm.to_vec(),
        }),
    )]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    (chain, ModuleId::of(wasm))
}

#[test]
fn a_posted_job_escrows_its_worst_case_and_is_queryable() {
    let k = keys(1);
    let (mut chain, module) = chain_with_module(&k[0], 1_000);
    let msg = job(&module, vec![inline(b"a"), inline(b"bc")], quorum(3, 2, 5));
    let out = chain.block(&[chain.txs.sign(&k[0], 1, pb::tx_body::Msg::PostJob(msg))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    // 2 tasks x 5 replicas at most x 2,000,000 fuel x 5 per million fuel.
    let escrow = 2 * 5 * 2 * 5;
    assert_eq!(chain.balance(&k[0].account()), 1_000 - escrow);

    let id = JobId::derive(&k[0].account(), 1);
    let posted = &out.tx_results[0].events[1];
    assert_eq!(posted.r#type, "job_posted");
    assert_eq!(posted.attributes[0].value, id.to_hex());
    let view = chain.query(&format!("/job/{id}"));
    assert_eq!(view["status"], "open");
    assert_eq!(view["escrow"], escrow);
    assert_eq!(view["max_replicas"], 5);
    assert_eq!(view["policy"]["quorum"]["replicas"], 3);
    assert_eq!(view["task_count"], 2);
    assert_eq!(view["tasks"][1]["index"], 1);
    assert_eq!(view["tasks"][1]["size"], 2);
    assert_eq!(view["tasks"][1]["input"]["inline"], "YmM=");
    let height = view["posted_height"].as_i64().unwrap();
    assert_eq!(view["deadline_height"].as_i64().unwrap(), height + 100);
    assert_eq!(chain.query("/stats")["jobs_open"], 1);
}

#[test]
fn a_job_without_a_policy_gets_the_default_quorum() {
    let k = keys(1);
    let (mut chain, module) = chain_with_module(&k[0], 1_000);
    let out = chain.block(&[chain.txs.sign(
        &k[0],
        1,
        pb::tx_body::Msg::PostJob(job(&module, vec![inline(b"x")], None)),
    )]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    let view = chain.query(&format!("/job/{}", JobId::derive(&k[0].account(), 1)));
    assert_eq!(view["policy"]["quorum"]["replicas"], 3);
    assert_eq!(view["policy"]["quorum"]["quorum"], 2);
    assert_eq!(view["escrow"], 3 * 2 * 5);
}

#[test]
fn bad_job_terms_are_refused_with_the_field_at_fault() {
    let k = keys(1);
    let (mut chain, module) = chain_with_module(&k[0], 1_000);
    let base = || job(&module, vec![inline(b"x")], quorum(3, 2, 0));
    let cases: Vec<(&str, pb::PostJob, Code, &str)> = vec![
        (
            "no tasks",
            pb::PostJob {
                tasks: vec![],
                ..base()
            },
            Code::InvalidMessage,
            "tasks",
        ),
        (
            "half quorum",
            job(&module, vec![inline(b"x")], quorum(4, 2, 0)),
            Code::InvalidMessage,
            "majority",
        ),
        (
            "too many replicas",
            job(&module, vec![inline(b"x")], quorum(9, 5, 0)),
            Code::InvalidMessage,
            "max_replicas",
        ),
        (
            "an empty policy, a second spelling of none",
            pb::PostJob {
                policy: Some(pb::Policy { kind: None }),
                ..base()
            },
            Code::InvalidMessage,
            "names no kind",
        ),
        (
            "zero fuel",
            pb::PostJob {
                fuel_limit: 0,
                ..base()
            },
            Code::InvalidMessage,
            "fuel_limit",
        ),
        (
            "short deadline",
            pb::PostJob {
                deadline_blocks: 5,
                ..base()
            },
            Code::InvalidMessage,
            "deadline_blocks",
        ),
        (
            "size mismatch",
            pb::PostJob {
                tasks: vec![pb::TaskInput {
                    source: Some(pb::task_input::Source::Inline(vec![1, 2])),
                    size: 9,
                }],
                ..base()
            },
            Code::InvalidMessage,
            "does not match",
        ),
        (
            "short hash",
            pb::PostJob {
                tasks: vec![pb::TaskInput {
                    source: Some(pb::task_input::Source::Hash(vec![1; 31])),
                    size: 10,
                }],
                ..base()
            },
            Code::InvalidMessage,
            "32 bytes",
        ),
        (
            "unknown module",
            job(&ModuleId::of(b"nothing"), vec![inline(b"x")], None),
            Code::UnknownModule,
            "StoreModule",
        ),
        (
            "verified with more workers than the chain's max_replicas",
            job(
                &module,
                vec![inline(b"x")],
                Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                    verify_fuel: 1000,
                    max_workers: 99,
                })),
            ),
            Code::InvalidMessage,
            "max_workers 99",
        ),
        (
            "verified without verify export",
            job(
                &module,
                vec![inline(b"x")],
                Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                    verify_fuel: 1000,
                    max_workers: 0,
                })),
            ),
            Code::InvalidMessage,
            "exports no `verify`",
        ),
        (
            "unaffordable",
            pb::PostJob {
                price_per_mfuel: 1_000_000,
                ..base()
            },
            Code::InsufficientFunds,
            "credits",
        ),
        (
            "overflowing escrow",
            pb::PostJob {
                price_per_mfuel: u64::MAX,
                fuel_limit: 10_000_000_000,
                ..base()
            },
            Code::Overflow,
            "escrow",
        ),
    ];
    for (name, msg, code, part) in cases {
        let outcome = chain.check(&chain.txs.sign(&k[0], 1, pb::tx_body::Msg::PostJob(msg)));
        assert_eq!(outcome.code, code, "{name}: {}", outcome.log);
        assert!(
            outcome.log.contains(part),
            "{name}: {:?} lacks {part:?}",
            outcome.log
        );
    }
    chain.block(&[]);
    assert_eq!(chain.query("/stats")["jobs_posted"], 0);
}

#[test]
fn only_the_requester_cancels_and_gets_the_escrow_back() {
    let k = keys(2);
    let (mut chain, module) = chain_with_module(&k[0], 1_000);
    let out = chain.block(&[
        chain.txs.sign(
            &k[0],
            1,
            pb::tx_body::Msg::PostJob(job(&module, vec![inline(b"x")], None)),
        ),
        chain.transfer(&k[0], 2, &k[1].account(), 10),
    ]);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    let id = JobId::derive(&k[0].account(), 1);
    // Credits are conserved: what left the balances sits in the escrow.
    let escrowed = chain.query(&format!("/job/{id}"))["escrow"]
        .as_u64()
        .unwrap();
    assert_eq!(
        chain.balance(&k[0].account()) + chain.balance(&k[1].account()) + escrowed,
        1_000
    );
    let cancel = |id: &JobId| {
        pb::tx_body::Msg::CancelJob(pb::CancelJob {
            job_id: id.0.to_vec(),
        })
    };
    let stranger = chain.check(&chain.txs.sign(&k[1], 0, cancel(&id)));
    assert_eq!(stranger.code, Code::NotJobOwner, "{}", stranger.log);
    let unknown = chain.check(&chain.txs.sign(&k[0], 3, cancel(&JobId([7; 32]))));
    assert_eq!(unknown.code, Code::UnknownJob);

    let before = chain.balance(&k[0].account());
    let out = chain.block(&[chain.txs.sign(&k[0], 3, cancel(&id))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    assert_eq!(chain.balance(&k[0].account()), before + 30);
    let view = chain.query(&format!("/job/{id}"));
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["escrow"], 0);
    assert_eq!(chain.query("/stats")["jobs_open"], 0);
    let again = chain.check(&chain.txs.sign(&k[0], 4, cancel(&id)));
    assert_eq!(again.code, Code::JobNotOpen);
    assert!(again.log.contains("cancelled"), "{}", again.log);
}
