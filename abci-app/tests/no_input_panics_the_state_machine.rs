//! Fuzzing the state machine's edges with proptest: arbitrary bytes as
//! transactions, correctly signed messages with arbitrary fields, and
//! arbitrary query paths. A panic in the ABCI server closes CometBFT's
//! connection and stops the node, so none of these may panic; every refusal
//! must carry a non-zero code and a message.

mod common;

use common::{keys, TestChain};
use compute_abci::store::MemStore;
use compute_abci::Code;
use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, ModuleId, SigningKey};
use proptest::prelude::*;
use serde_json::json;

/// A chain with a stored module, a registered worker and an open job, so
/// that arbitrary messages can also hit real records.
fn chain() -> (TestChain<MemStore>, Vec<SigningKey>, Vec<u8>) {
    let k = keys(3);
    let balances: Vec<_> = k.iter().map(|k| (k.account(), 1_000_000)).collect();
    let mut chain = TestChain::new(MemStore::new(), &balances, json!({}));
    let wasm = compute_jobs::PRIMES_WASM;
    let module = ModuleId::of(wasm);
    let txs = vec![
        chain.txs.sign(
            &k[0],
            0,
            Msg::StoreModule(pb::StoreModule {
                wasm: wasm.to_vec(),
            }),
        ),
        chain.txs.sign(
            &k[1],
            0,
            Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 2,
                stake: 10,
            }),
        ),
        chain.txs.sign(
            &k[0],
            1,
            Msg::PostJob(pb::PostJob {
                module_id: module.0.to_vec(),
                tasks: vec![pb::TaskInput {
                    source: Some(pb::task_input::Source::Inline(vec![1])),
                    size: 1,
                }],
                policy: None,
                fuel_limit: 1_000,
                price_per_mfuel: 1,
                deadline_blocks: 100,
                min_reputation_ppm: 0,
                max_tasks_per_worker: 0,
            }),
        ),
    ];
    let out = chain.block(&txs);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    let job = compute_proto::JobId::derive(&k[0].account(), 1).0.to_vec();
    (chain, k, job)
}

/// Bytes that are sometimes a real id, sometimes not.
fn id_bytes(real: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(real),
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(vec![0; 32]),
    ]
}

fn message(job: Vec<u8>) -> impl Strategy<Value = Msg> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        (bytes(), any::<u64>()).prop_map(|(to, amount)| Msg::Transfer(pb::Transfer { to, amount })),
        bytes().prop_map(|wasm| Msg::StoreModule(pb::StoreModule { wasm })),
        (any::<u32>(), any::<u64>()).prop_map(|(capacity, stake)| Msg::RegisterWorker(
            pb::RegisterWorker { capacity, stake }
        )),
        Just(Msg::UnregisterWorker(pb::UnregisterWorker {})),
        (
            bytes(),
            proptest::collection::vec(bytes(), 0..4),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(
                    module_id,
                    inputs,
                    replicas,
                    quorum,
                    max_replicas,
                    fuel_limit,
                    price,
                    deadline,
                )| {
                    Msg::PostJob(pb::PostJob {
                        module_id,
                        tasks: inputs
                            .into_iter()
                            .map(|b| pb::TaskInput {
                                size: b.len() as u64,
                                source: Some(pb::task_input::Source::Inline(b)),
                            })
                            .collect(),
                        policy: Some(pb::Policy {
                            kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                                replicas,
                                quorum,
                                max_replicas,
                            })),
                        }),
                        fuel_limit,
                        price_per_mfuel: price,
                        deadline_blocks: deadline,
                        min_reputation_ppm: replicas,
                        max_tasks_per_worker: quorum,
                    })
                }
            ),
        (id_bytes(job.clone()), any::<u32>(), bytes()).prop_map(|(job_id, task, commitment)| {
            Msg::CommitResult(pb::CommitResult {
                job_id,
                task,
                commitment,
            })
        }),
        (
            id_bytes(job.clone()),
            any::<u32>(),
            bytes(),
            any::<u64>(),
            bytes(),
            bytes()
        )
            .prop_map(|(job_id, task, result_hash, fuel_used, salt, output)| {
                Msg::RevealResult(pb::RevealResult {
                    job_id,
                    task,
                    result_hash,
                    fuel_used,
                    salt,
                    output,
                })
            }),
        (id_bytes(job.clone()), any::<u32>(), ".{0,300}").prop_map(|(job_id, task, reason)| {
            Msg::DeclineTask(pb::DeclineTask {
                job_id,
                task,
                reason,
            })
        }),
        proptest::collection::vec((id_bytes(job.clone()), any::<u32>(), bytes()), 0..4).prop_map(
            |entries| Msg::CommitResults(pb::CommitResults {
                entries: entries
                    .into_iter()
                    .map(|(job_id, task, commitment)| pb::CommitResult {
                        job_id,
                        task,
                        commitment,
                    })
                    .collect(),
            })
        ),
        proptest::collection::vec(
            (id_bytes(job.clone()), any::<u32>(), bytes(), any::<u64>()),
            0..4
        )
        .prop_map(|entries| Msg::RevealResults(pb::RevealResults {
            entries: entries
                .into_iter()
                .map(|(job_id, task, result_hash, fuel_used)| pb::RevealResult {
                    job_id,
                    task,
                    result_hash,
                    fuel_used,
                    salt: Vec::new(),
                    output: Vec::new(),
                })
                .collect(),
        })),
        proptest::collection::vec((bytes(), any::<u64>()), 0..3).prop_map(|jobs| Msg::PostJobs(
            pb::PostJobs {
                jobs: jobs
                    .into_iter()
                    .map(|(module_id, fuel_limit)| pb::PostJob {
                        module_id,
                        tasks: vec![pb::TaskInput {
                            size: 1,
                            source: Some(pb::task_input::Source::Inline(vec![7])),
                        }],
                        fuel_limit,
                        deadline_blocks: 40,
                        ..Default::default()
                    })
                    .collect(),
            }
        )),
        id_bytes(job.clone()).prop_map(|job_id| Msg::CancelJob(pb::CancelJob { job_id })),
        (id_bytes(job), any::<u32>(), bytes(), any::<u64>()).prop_map(
            |(job_id, task, input, bond)| Msg::Dispute(pb::Dispute {
                job_id,
                task,
                input,
                bond
            })
        ),
    ]
}

/// Query paths: the served shapes with arbitrary arguments, and noise.
fn path() -> impl Strategy<Value = String> {
    let word = "[a-z0-9=&?/%._-]{0,70}";
    prop_oneof![
        word.prop_map(|w| format!("/{w}")),
        (
            prop_oneof![
                Just("account"),
                Just("module"),
                Just("worker"),
                Just("job"),
                Just("jobs"),
                Just("workers"),
                Just("completions"),
                Just("reputation"),
                Just("params"),
                Just("stats"),
            ],
            word,
        )
            .prop_map(|(head, rest)| format!("/{head}{rest}")),
        ".{0,100}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_with_a_code(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (mut chain, _, _) = chain();
        let checked = chain.check(&raw);
        if checked.code != Code::Ok {
            prop_assert!(!checked.log.is_empty());
        }
        let out = chain.block(&[raw]);
        prop_assert_eq!(out.tx_results.len(), 1);
        if out.tx_results[0].code != Code::Ok {
            prop_assert!(!out.tx_results[0].log.is_empty());
        }
    }

    #[test]
    fn signed_messages_with_arbitrary_fields_never_panic(
        msgs in proptest::collection::vec((0usize..3, message(vec![0; 32])), 1..6)
    ) {
        let (mut chain, k, job) = chain();
        let mut nonces = [2u64, 1, 0];
        let mut txs = Vec::new();
        for (who, msg) in msgs {
            // Point some messages at the open job.
            let msg = match msg {
                Msg::CommitResult(mut m) if m.job_id == vec![0; 32] => { m.job_id = job.clone(); Msg::CommitResult(m) }
                other => other,
            };
            let tx = chain.txs.sign(&k[who], nonces[who], msg);
            let checked = chain.check(&tx);
            if checked.code == Code::Ok {
                nonces[who] += 1;
            } else {
                prop_assert!(!checked.log.is_empty(), "code {:?} without a message", checked.code);
            }
            txs.push(tx);
        }
        let out = chain.block(&txs);
        for r in &out.tx_results {
            if r.code != Code::Ok {
                prop_assert!(!r.log.is_empty());
            }
        }
        // The chain goes on.
        chain.block(&[]);
    }

    #[test]
    fn arbitrary_query_paths_answer_without_panicking(path in path(), height in -3i64..5) {
        let (chain, _, _) = chain();
        let answer = chain.app.query(&path, height);
        if answer.code == Code::Ok {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&answer.value).is_ok());
        } else {
            prop_assert!(!answer.log.is_empty());
        }
    }
}
