//! `compute job results` against a stand-in CometBFT RPC that answers the
//! ABCI queries of a finished job: tasks that settled as a trap or out of
//! fuel are named, the other outputs are written, and the exit status says
//! what went wrong; a failed job is named as failed, with a non-zero exit.
//! The stand-in's answers are the chain's own typed views, serialised; it
//! proves nothing, so the CLI runs with `--trust-node`.

use std::collections::HashMap;
use std::process::Output;

use base64::Engine;
use compute_proto::hash::{hash_parts, Tag};
use compute_proto::views::{
    Base64, CompletionView, CompletionsPage, JobSummary, JobView, ProgressView, TaskView,
};
use compute_proto::{
    pb, sha3_256, AccountId, Code, Hash32, JobId, JobStatus, ModuleId, TaskStatus,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JOB: &str = "abababababababababababababababababababababababababababababababab";

/// A JSON-RPC server that answers `abci_query` with `answers[path]` (JSON,
/// code 0) and NotFound for any other path, as the chain does for a record
/// it does not hold; returns its URL.
async fn fake_node(answers: HashMap<String, Value>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break Some(request[end + 4..end + 4 + length].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let path = call["params"]["path"].as_str().unwrap_or_default();
            let response = match answers.get(path) {
                Some(value) => json!({
                    "code": 0, "log": "", "index": "0", "height": "7",
                    "value": base64::engine::general_purpose::STANDARD
                        .encode(serde_json::to_vec(value).unwrap()),
                }),
                None => json!({
                    "code": Code::NotFound.value(), "log": format!("no answer for {path}"),
                    "index": "0", "height": "7",
                }),
            };
            let answer =
                json!({"jsonrpc": "2.0", "id": call["id"], "result": {"response": response}})
                    .to_string();
            let http = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = socket.write_all(http.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

fn job_id() -> JobId {
    JobId::from_hex(JOB).unwrap()
}

fn failure_hash(code: u32) -> [u8; 32] {
    hash_parts(Tag::Failure, &[&code.to_be_bytes()])
}

fn completion(task: u32, result_hash: [u8; 32], output: Option<&[u8]>) -> CompletionView {
    CompletionView {
        job: job_id(),
        task,
        result_hash: Hash32(result_hash),
        fuel_used: 1_000,
        workers: vec![AccountId([0x77; 32])],
        height: 5,
        time_seconds: 1_700_000_000,
        output: output.map(|b| Base64(b.to_vec())),
        paid: 1,
        dispute: compute_proto::views::DisputeView::of(&Default::default(), 5).unwrap(),
    }
}

fn inline(task: u32, bytes: &[u8]) -> CompletionView {
    completion(task, sha3_256(bytes), Some(bytes))
}

fn failed(task: u32, code: u32) -> CompletionView {
    completion(task, failure_hash(code), None)
}

fn completions(records: Vec<CompletionView>) -> Value {
    serde_json::to_value(CompletionsPage {
        completions: records,
    })
    .unwrap()
}

fn job_view(status: JobStatus, tasks: u32, settled: u32, failed: u32) -> JobView {
    JobView {
        summary: JobSummary {
            job: job_id(),
            requester: AccountId([1; 32]),
            module: ModuleId([2; 32]),
            status,
            policy: None,
            fuel_limit: 1_000_000,
            price_per_mfuel: 1,
            escrow: 0,
            max_replicas: 1,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
            posted_height: 2,
            deadline_height: 100,
            ended_height: 6,
            task_count: tasks,
            tasks_settled: settled,
            tasks_failed: failed,
            tasks_cancelled: 0,
        },
        progress: ProgressView {
            wanted: u64::from(tasks),
            assigned: u64::from(tasks),
            committed: u64::from(tasks),
            revealed: u64::from(tasks),
            settled: u64::from(settled),
            failed: u64::from(failed),
        },
        tasks: None,
        next: None,
    }
}

fn task(index: u32, status: TaskStatus, failure: Option<&str>) -> TaskView {
    TaskView {
        index,
        input: None,
        size: 0,
        status,
        replicas_wanted: 1,
        attempts: 1,
        replicas: Vec::new(),
        failure: failure.map(str::to_owned),
        ended_height: 6,
        referee_height: None,
        completion: None,
    }
}

async fn results(node: &str, out: &std::path::Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_compute"))
        .args([
            "--node",
            node,
            "--chain-id",
            "test",
            "--gateway",
            "http://127.0.0.1:9",
            // The stand-in serves answers, not proofs: what is tested here
            // is the report (proofs: a_lying_node_is_caught_by_the_cli).
            "--trust-node",
        ])
        .args(["job", "results", JOB, "--out"])
        .arg(out)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn trapped_tasks_are_named_and_the_other_outputs_written() {
    let node = fake_node(HashMap::from([
        (
            format!("/job/{JOB}?tasks=false"),
            serde_json::to_value(job_view(JobStatus::Completed, 4, 4, 0)).unwrap(),
        ),
        (
            format!("/completions?job={JOB}&limit=500"),
            completions(vec![
                inline(0, b"zero"),
                failed(1, 22),
                failed(2, 1),
                inline(3, b"three"),
            ]),
        ),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = results(&node, dir.path()).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("task 1: trapped: integer division by zero"),
        "{stdout}"
    );
    assert!(stdout.contains("task 2: ran out of fuel"), "{stdout}");
    assert!(!stderr.contains("neither on the chain"), "{stderr}");
    assert!(
        stderr.contains("2 of 4 tasks settled as a failure"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("00000.out")).unwrap(),
        b"zero"
    );
    assert_eq!(
        std::fs::read(dir.path().join("00003.out")).unwrap(),
        b"three"
    );
    assert!(!dir.path().join("00001.out").exists());
    assert!(!dir.path().join("00002.out").exists());
}

#[tokio::test]
async fn a_failed_job_exits_non_zero_and_names_its_failed_tasks() {
    let node = fake_node(HashMap::from([
        (
            format!("/job/{JOB}?tasks=false"),
            serde_json::to_value(job_view(JobStatus::Failed, 2, 1, 1)).unwrap(),
        ),
        (
            format!("/completions?job={JOB}&limit=500"),
            completions(vec![inline(0, b"zero")]),
        ),
        (format!("/job/{JOB}?limit=500"), {
            let mut view = job_view(JobStatus::Failed, 2, 1, 1);
            view.tasks = Some(vec![
                task(0, TaskStatus::Settled, None),
                task(1, TaskStatus::Failed, Some("no quorum")),
            ]);
            serde_json::to_value(view).unwrap()
        }),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = results(&node, dir.path()).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("task 1: failed: no quorum"), "{stdout}");
    assert!(
        stderr.contains(&format!("error: job {JOB} failed")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("00000.out")).unwrap(),
        b"zero"
    );
}

#[tokio::test]
async fn a_module_over_the_limit_is_refused_with_the_limit_before_upload() {
    // Only /params answers (the module is not found): no transaction may
    // be sent (broadcast_tx_commit would get no answer).
    let params = pb::Params {
        max_module_bytes: 1000,
        ..Default::default()
    };
    let node = fake_node(HashMap::from([(
        "/params".to_owned(),
        serde_json::to_value(params).unwrap(),
    )]))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    let wasm = dir.path().join("big.wasm");
    std::fs::write(&wasm, vec![0u8; 1001]).unwrap();
    let bin = env!("CARGO_BIN_EXE_compute");
    let made = tokio::process::Command::new(bin)
        .args(["keys", "new"])
        .arg(&key)
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = tokio::process::Command::new(bin)
        .args(["--node", &node, "--chain-id", "test", "module", "upload"])
        .arg(&wasm)
        .arg("--key")
        .arg(&key)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("module is 1001 bytes, the chain accepts at most 1000 (max_module_bytes)"),
        "{stderr}"
    );
}
