//! Every query answers with ICS-23 proofs of the raw state keys it read
//! when asked to prove: existence proofs that carry the raw values (after
//! the leaf tag), and
//! absence proofs for keys that do not exist. Each proof verifies against
//! the app hash of the height the answer is for, and against no other. At
//! a past height inside the node's history, records by key are answered and
//! proven as they were; pages are refused, as are heights outside it.

mod common;

use common::{keys, TestChain};
use compute_abci::app::QueryOptions;
use compute_abci::store::{MemStore, RocksStore};
use compute_abci::{App, Code};
use compute_proto::{pb, JobId, ModuleId};
use ics23::HostFunctionsManager;
use prost_ics23::Message as _;
use serde_json::json;

/// A proven raw key and its raw value (`None`: proven absent).
type Proven = (Vec<u8>, Option<Vec<u8>>);

/// Asks `path` at `height` with proofs; checks that each proof verifies
/// against `root` and no proof against `other`; returns the answer's code
/// and the proven (key, value) pairs.
fn proven<S: compute_abci::store::Store>(
    app: &App<S>,
    path: &str,
    height: i64,
    root: [u8; 32],
    other: [u8; 32],
) -> (Code, Vec<Proven>) {
    let answer = app.query_with(
        path,
        QueryOptions {
            height,
            prove: true,
            history: app.state_history(),
        },
    );
    let spec = jmt::ics23_spec();
    let mut pairs = Vec::new();
    for p in &answer.proofs {
        let proof = ics23::CommitmentProof::decode(p.proof.as_slice()).expect("a CommitmentProof");
        let value = match &proof.proof {
            Some(ics23::commitment_proof::Proof::Exist(e)) => {
                assert_eq!(e.key, p.key, "{path}: the proof is for its key");
                assert!(
                    ics23::verify_membership::<HostFunctionsManager>(
                        &proof,
                        &spec,
                        &root.to_vec(),
                        &p.key,
                        &e.value
                    ),
                    "{path}: membership of {:?}",
                    String::from_utf8_lossy(&p.key)
                );
                assert!(!ics23::verify_membership::<HostFunctionsManager>(
                    &proof,
                    &spec,
                    &other.to_vec(),
                    &p.key,
                    &e.value
                ));
                Some(
                    compute_abci::tree::raw_value(&e.value)
                        .expect("a tagged leaf value")
                        .to_vec(),
                )
            }
            Some(ics23::commitment_proof::Proof::Nonexist(_)) => {
                assert!(
                    ics23::verify_non_membership::<HostFunctionsManager>(
                        &proof,
                        &spec,
                        &root.to_vec(),
                        &p.key
                    ),
                    "{path}: absence of {:?}",
                    String::from_utf8_lossy(&p.key)
                );
                assert!(!ics23::verify_non_membership::<HostFunctionsManager>(
                    &proof,
                    &spec,
                    &other.to_vec(),
                    &p.key
                ));
                None
            }
            other => panic!("{path}: unexpected proof {other:?}"),
        };
        pairs.push((p.key.clone(), value));
    }
    (answer.code, pairs)
}

fn post_job(module: &ModuleId) -> pb::tx_body::Msg {
    pb::tx_body::Msg::PostJob(pb::PostJob {
        module_id: module.0.to_vec(),
        tasks: vec![pb::TaskInput {
            source: Some(pb::task_input::Source::Inline(b"abc".to_vec())),
            size: 3,
        }],
        policy: Some(pb::Policy {
            kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                replicas: 1,
                quorum: 1,
                max_replicas: 1,
            })),
        }),
        fuel_limit: 2_000_000,
        price_per_mfuel: 5,
        deadline_blocks: 100,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 0,
    })
}

#[test]
fn every_query_type_is_proven_and_missing_keys_are_proven_absent() {
    let k = keys(3);
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    let balances: Vec<_> = k.iter().map(|key| (key.account(), 10_000_000)).collect();
    let mut chain = TestChain::new(store, &balances, json!({}));
    let wasm = compute_jobs::PRIMES_WASM;
    let module = ModuleId::of(wasm);
    chain.block(&[
        chain.transfer(&k[0], 0, &k[2].account(), 5),
        chain.txs.sign(
            &k[1],
            0,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: wasm.to_vec(),
            }),
        ),
    ]);
    let out = chain.block(&[
        chain.txs.sign(
            &k[2],
            0,
            pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 2,
                stake: 1_000,
            }),
        ),
        chain.txs.sign(&k[1], 1, post_job(&module)),
    ]);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok), "{out:?}");
    let job = JobId::derive(&k[1].account(), 1);
    chain.block(&[]);
    let last = chain.app.last_commit();
    let before = chain.app.query_with("/stats", QueryOptions::default());
    assert_eq!(before.code, Code::Ok);
    let previous_root = {
        let answer = chain.app.query_with(
            "/stats",
            QueryOptions {
                height: last.height - 1,
                prove: false,
                history: chain.app.state_history(),
            },
        );
        let stats: serde_json::Value = serde_json::from_slice(&answer.value).unwrap();
        let hex = stats["app_hash"].as_str().unwrap().to_owned();
        <[u8; 32]>::try_from(hex::decode(hex).unwrap()).unwrap()
    };
    assert_ne!(previous_root, last.app_hash);

    let a = k[0].account();
    let w = k[2].account();
    let paths = [
        format!("/account/{a}"),
        format!("/nonce/{a}"),
        format!("/module/{module}"),
        format!("/worker/{w}"),
        format!("/worker/{w}/assignments"),
        format!("/job/{job}"),
        "/jobs".to_owned(),
        "/workers".to_owned(),
        format!("/completions?job={job}"),
        // The validator's: it signed blocks.
        format!(
            "/reputation/{}",
            compute_proto::AccountId(common::validator_key())
        ),
        "/params".to_owned(),
        "/stats".to_owned(),
        "/validators".to_owned(),
    ];
    for path in &paths {
        let (code, pairs) = proven(&chain.app, path, 0, last.app_hash, previous_root);
        assert_eq!(code, Code::Ok, "{path}");
        if !["/validators", "/completions"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            assert!(
                pairs.iter().any(|(_, v)| v.is_some()),
                "{path}: proves at least one record"
            );
        }
    }

    // The proven raw value is the record the JSON answer shows.
    let (_, pairs) = proven(
        &chain.app,
        &format!("/account/{a}"),
        0,
        last.app_hash,
        previous_root,
    );
    let raw = pairs[0].1.clone().expect("the account exists");
    let account = <pb::Account as prost::Message>::decode(raw.as_slice()).unwrap();
    assert_eq!(account.balance, chain.balance(&a));
    assert_eq!(account.nonce, 1);

    // Missing records: the answer is an error, and the key is proven absent.
    let nobody = compute_proto::SigningKey::from_seed([99; 32]).account();
    for path in [
        format!("/worker/{nobody}"),
        format!("/job/{}", JobId([7; 32])),
        format!("/module/{}", ModuleId([8; 32])),
    ] {
        let (code, pairs) = proven(&chain.app, &path, 0, last.app_hash, previous_root);
        assert_eq!(code, Code::NotFound, "{path}");
        assert!(
            !pairs.is_empty() && pairs.iter().all(|(_, v)| v.is_none()),
            "{path}: proven absent: {pairs:?}"
        );
    }
    // An account that never existed reads as empty; its absence is proven.
    let (code, pairs) = proven(
        &chain.app,
        &format!("/account/{nobody}"),
        0,
        last.app_hash,
        previous_root,
    );
    assert_eq!(code, Code::Ok);
    assert!(pairs.iter().all(|(_, v)| v.is_none()), "{pairs:?}");
}

#[test]
fn a_job_is_answered_at_past_heights_as_it_was() {
    let k = keys(2);
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(k[0].account(), 10_000_000), (k[1].account(), 0)],
        json!({"block_reward": 0}),
    );
    let wasm = compute_jobs::PRIMES_WASM;
    let module = ModuleId::of(wasm);
    chain.block(&[chain.txs.sign(
        &k[0],
        0,
        pb::tx_body::Msg::StoreModule(pb::StoreModule {
            wasm: wasm.to_vec(),
        }),
    )]);
    let before = chain.app.last_commit();
    chain.block(&[chain.txs.sign(&k[0], 1, post_job(&module))]);
    let posted = chain.app.last_commit();
    let job = JobId::derive(&k[0].account(), 1);
    chain.block(&[chain.transfer(&k[0], 2, &k[1].account(), 1)]);
    chain.block(&[]);
    for path in [format!("/job/{job}"), format!("/job/{job}?tasks=false")] {
        let (code, pairs) = proven(
            &chain.app,
            &path,
            posted.height,
            posted.app_hash,
            before.app_hash,
        );
        assert_eq!(code, Code::Ok, "{path}");
        assert!(pairs.iter().any(|(_, v)| v.is_some()), "{path}");
        let answer = chain.app.query(&path, posted.height);
        assert_eq!(answer.code, Code::Ok, "{path}: {}", answer.log);
        let view: serde_json::Value = serde_json::from_slice(&answer.value).unwrap();
        assert_eq!(view["task_count"], 1, "{path}: {view}");
        assert_eq!(view["progress"]["settled"], 0, "{path}: {view}");
        // Before its posting the job is proven absent.
        let (code, _) = proven(
            &chain.app,
            &path,
            before.height,
            before.app_hash,
            posted.app_hash,
        );
        assert_eq!(code, Code::NotFound, "{path}");
    }
}

#[test]
fn past_heights_answer_records_as_they_were_and_refuse_pages() {
    let k = keys(2);
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(k[0].account(), 1_000_000), (k[1].account(), 0)],
        json!({"block_reward": 0}),
    );
    let mut roots = Vec::new();
    for nonce in 0..5u64 {
        chain.block(&[chain.transfer(&k[0], nonce, &k[1].account(), 10)]);
        roots.push(chain.app.last_commit().app_hash);
    }
    // Height h (1-based) holds a balance of 10 * h.
    let path = format!("/account/{}", k[1].account());
    for (i, root) in roots.iter().enumerate() {
        let height = i64::try_from(i).unwrap() + 1;
        let other = roots[(i + 1) % roots.len()];
        let (code, pairs) = proven(&chain.app, &path, height, *root, other);
        assert_eq!(code, Code::Ok);
        assert!(pairs.iter().any(|(_, v)| v.is_some()));
        let answer = chain.app.query(&path, height);
        assert_eq!(answer.height, height);
        let view: serde_json::Value = serde_json::from_slice(&answer.value).unwrap();
        assert_eq!(view["balance"], 10 * (i as u64 + 1), "at height {height}");
    }
    // Pages only at the latest height.
    let page = chain.app.query("/jobs", 2);
    assert_eq!(page.code, Code::HeightUnavailable, "{}", page.log);
    assert!(page.log.contains("latest height"), "{}", page.log);
    // Outside what the node keeps: the future, and pruned heights.
    let future = chain.app.query(&path, 99);
    assert_eq!(future.code, Code::HeightUnavailable);
    let short = TestChain::new(MemStore::new(), &[(k[0].account(), 1_000_000)], json!({}));
    let mut short = TestChain {
        app: short.app.with_state_history(2),
        txs: short.txs,
    };
    for nonce in 0..6u64 {
        short.block(&[short.transfer(&k[0], nonce, &k[1].account(), 1)]);
    }
    let kept = short.app.query(&path, 5);
    assert_eq!(kept.code, Code::Ok, "{}", kept.log);
    let pruned = short.app.query(&path, 3);
    assert_eq!(pruned.code, Code::HeightUnavailable, "{}", pruned.log);
    assert!(pruned.log.contains("5 to 6"), "{}", pruned.log);
}
