//! Every field of every query answer is named in docs/CHAIN.md, Queries, so
//! a client written from the docs alone meets no field the docs do not name.

use compute_proto::views::*;
use compute_proto::{AccountId, Hash32, JobId, JobStatus, ModuleId, ReplicaStatus, TaskStatus};

fn queries_section() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CHAIN.md"))
        .expect("docs/CHAIN.md is readable");
    let start = text
        .find("## Queries")
        .expect("CHAIN.md has a Queries section");
    let end = text[start + 1..]
        .find("\n## ")
        .map_or(text.len(), |i| start + 1 + i);
    text[start..end].to_owned()
}

/// Every object key in `value`, at any depth.
fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.push(key.clone());
                keys(inner, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
        _ => {}
    }
}

fn samples() -> Vec<serde_json::Value> {
    let account = AccountId([1; 32]);
    let job = JobId([2; 32]);
    let module = ModuleId([3; 32]);
    let hash = Hash32([4; 32]);
    let completion = CompletionView {
        job,
        task: 0,
        result_hash: hash,
        fuel_used: 1,
        workers: vec![account],
        height: 1,
        time_seconds: 1,
        output: Some(Base64(vec![1])),
        paid: 1,
        dispute: DisputeView {
            status: DisputeStatus::Confirmed,
            is_final: true,
            until: Some(1),
            disputer: Some(account),
            disputed_height: Some(1),
            refereed_height: Some(1),
        },
    };
    let summary = JobSummary {
        job,
        requester: account,
        module,
        status: JobStatus::Open,
        policy: Some(PolicyView::Quorum {
            replicas: 1,
            quorum: 1,
            max_replicas: 1,
        }),
        fuel_limit: 1,
        price_per_mfuel: 1,
        escrow: 1,
        max_replicas: 1,
        min_reputation_ppm: 1,
        max_tasks_per_worker: 1,
        posted_height: 1,
        deadline_height: 1,
        ended_height: 1,
        task_count: 1,
        tasks_settled: 1,
        tasks_failed: 1,
        tasks_cancelled: 1,
    };
    let task = TaskView {
        index: 0,
        input: Some(InputView::Inline(Base64(vec![1]))),
        size: 1,
        status: TaskStatus::Settled,
        replicas_wanted: 1,
        attempts: 1,
        replicas: vec![ReplicaView {
            worker: account,
            status: ReplicaStatus::Agreed,
            slot: 0,
            assigned_height: 1,
            deadline_height: 1,
            commitment: Some(hash),
            result_hash: Some(hash),
            fuel_used: 1,
            output: Some(Base64(vec![1])),
            output_bytes: 1,
            slashed: 1,
        }],
        failure: Some("x".into()),
        ended_height: 1,
        referee_height: Some(1),
        completion: Some(completion.clone()),
    };
    let to = |v: serde_json::Result<serde_json::Value>| v.expect("views serialise");
    vec![
        to(serde_json::to_value(AccountView {
            address: account,
            balance: 1,
            nonce: 1,
        })),
        to(serde_json::to_value(NonceView {
            address: account,
            nonce: 1,
            pending_nonce: 2,
        })),
        to(serde_json::to_value(ModuleView {
            module,
            owner: account,
            size: 1,
            has_verify: true,
            height: 1,
            functions: 1,
            code: Some(Base64(vec![1])),
        })),
        to(serde_json::to_value(WorkerView {
            worker: account,
            capacity: 1,
            stake: 1,
            active_tasks: 1,
            registered_height: 1,
            stake_locked_until: 1,
            disputes_pending: 1,
        })),
        to(serde_json::to_value(AssignmentsView {
            worker: account,
            assignments: vec![AssignmentView {
                job,
                task: 0,
                task_status: TaskStatus::Commit,
                replica_status: ReplicaStatus::Assigned,
                deadline_height: 1,
                module,
                fuel_limit: 1,
                policy: Some(PolicyView::Verified {
                    verify_fuel: 1,
                    max_workers: 1,
                }),
                input: Some(InputView::Hash(hash)),
                input_size: 1,
            }],
        })),
        to(serde_json::to_value(JobView {
            summary: summary.clone(),
            progress: ProgressView::default(),
            tasks: Some(vec![task]),
            next: Some(1),
        })),
        to(serde_json::to_value(JobsPage {
            jobs: vec![summary],
            next: Some(job),
        })),
        to(serde_json::to_value(WorkersPage {
            workers: vec![WorkerListing {
                worker: account,
                capacity: 1,
                stake: 1,
                active_tasks: 1,
                score_ppm: 1,
                agreed: 1,
                fuel_worked: 1,
                cheats: 1,
                missed: 1,
            }],
            next: Some(account),
        })),
        to(serde_json::to_value(CompletionsPage {
            completions: vec![completion],
        })),
        to(serde_json::to_value(ReputationView {
            key: account,
            score_ppm: 1,
            agreed: 1,
            fuel_worked: 1,
            tasks_received: 1,
            fuel_received: 1,
            cheats: 1,
            cheaters_reported: 1,
            missed: 1,
            blocks_signed: 1,
            blocks_proposed: 1,
            verifications_failed: 1,
            support_fuel: 1,
        })),
        to(serde_json::to_value(StatsView {
            height: 1,
            app_hash: hash,
            chain_id: Some("c".into()),
            txs_ok: 1,
            txs_failed: 1,
            transfers: 1,
            fees_collected: 1,
            credits_minted: 1,
            modules: 1,
            workers: 1,
            jobs_posted: 1,
            jobs_open: 1,
            assignments: 1,
            verifications: 1,
            verify_fuel_used: 1,
            tasks_settled: 1,
            tasks_failed: 1,
            credits_slashed: 1,
            disputes: 1,
            results_overturned: 1,
            referee_fuel_used: 1,
            bonds_burnt: 1,
            bonds_held: 1,
        })),
    ]
}

#[test]
fn every_field_of_every_query_answer_is_named_in_chain_md() {
    let docs = queries_section();
    let mut missing = Vec::new();
    for sample in samples() {
        let mut found = Vec::new();
        keys(&sample, &mut found);
        for key in found {
            if !docs.contains(&format!("`{key}`")) && !missing.contains(&key) {
                missing.push(key);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/CHAIN.md, Queries, does not name these answer fields: {missing:?}"
    );
}

#[test]
fn every_status_word_is_named_in_chain_md() {
    let docs = queries_section();
    let words = JobStatus::ALL
        .iter()
        .map(|s| s.name())
        .chain(TaskStatus::ALL.iter().map(|s| s.name()))
        .chain(ReplicaStatus::ALL.iter().map(|s| s.name()));
    let missing: Vec<&str> = words
        .filter(|w| !docs.contains(&format!("`{w}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CHAIN.md, Queries, does not name these status words: {missing:?}"
    );
}
