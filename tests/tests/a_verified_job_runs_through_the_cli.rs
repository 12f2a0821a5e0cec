//! A `Verified` job as a person runs it: `compute job submit --verified`
//! with the hash-search module, two `compute-sandbox` workers, and the
//! chain running the module's `verify` on every output before paying it.
//! Real processes on 127.0.0.1. Each task is run by one worker only, and
//! every output the CLI writes is a nonce that meets the difficulty.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_jobs::hashsearch::Search;
use compute_tests::{cli_new_key, run_cli, Gateway, NetConfig, Node, WorkerOptions, WorkerProcess};

const TASKS: u64 = 4;

#[tokio::test]
async fn a_verified_job_runs_through_the_cli() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("compute-verified-")
        .tempdir()?;
    let requester_key = dir.path().join("requester.json");
    let requester = cli_new_key(&requester_key).await?;
    let mut config = NetConfig::funded(&[], 0);
    config.balances = vec![(requester, 10_000_000)];
    let mut worker_keys = Vec::new();
    for name in ["ada", "bo"] {
        let path = dir.path().join(format!("{name}.json"));
        config
            .balances
            .push((cli_new_key(&path).await?, 10_000_000));
        worker_keys.push(path);
    }
    let node = Node::start(config).await?;
    let gateway = Gateway::start(&node.rpc_url(), &[])?;
    let mut workers = Vec::new();
    for key in &worker_keys {
        let options = WorkerOptions {
            capacity: 2,
            stake: 1_000,
            cheat: false,
            extra_args: Vec::new(),
        };
        workers.push(WorkerProcess::start(&gateway.url(), key, options).await?);
    }

    let module = dir.path().join("hashsearch.wasm");
    std::fs::write(&module, compute_jobs::HASHSEARCH_WASM)?;
    let inputs = dir.path().join("inputs");
    let outputs = dir.path().join("outputs");
    std::fs::create_dir_all(&inputs)?;
    let mut searches = Vec::new();
    for i in 0..TASKS {
        let prefix = format!("block {i}").into_bytes();
        let input = Search {
            difficulty_bits: 12,
            nonce_start: 0,
            nonce_count: 1 << 20,
            prefix: &prefix,
        }
        .encode();
        std::fs::write(inputs.join(format!("{i:02}.in")), &input)?;
        searches.push(input);
    }
    let path = |p: &std::path::Path| p.to_str().map(str::to_owned).context("path");
    let args = vec![
        "--node".to_owned(),
        node.rpc_url(),
        "--gateway".to_owned(),
        gateway.url(),
        "--output".to_owned(),
        "json".to_owned(),
        "job".to_owned(),
        "submit".to_owned(),
        path(&module)?,
        "--inputs".to_owned(),
        path(&inputs)?,
        "--key".to_owned(),
        path(&requester_key)?,
        "--verified".to_owned(),
        "--verify-fuel".to_owned(),
        "5000000".to_owned(),
        "--fuel".to_owned(),
        "2000000000".to_owned(),
        "--price".to_owned(),
        "1".to_owned(),
        "--out".to_owned(),
        path(&outputs)?,
        "--timeout".to_owned(),
        "80".to_owned(),
    ];
    let summary = run_cli(args, Duration::from_secs(100)).await?.json()?;
    ensure!(summary["status"] == "completed", "{summary}");
    assert_eq!(summary["settled"], TASKS);

    for (i, input) in searches.iter().enumerate() {
        let output = std::fs::read(outputs.join(format!("{i:05}.out")))?;
        assert!(
            compute_jobs::hashsearch::check(input, &output),
            "task {i}: the chain paid for an output that verify rejects"
        );
        assert_eq!(output, compute_jobs::hashsearch::job(input));
    }
    // One worker per task, each paid once.
    let job = summary["job"].as_str().context("job id")?;
    let (_, _, view) = node.query(&format!("/job/{job}")).await?;
    for task in view["tasks"].as_array().context("tasks")? {
        assert_eq!(task["replicas"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            task["completion"]["workers"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(task["completion"]["paid"].as_u64().unwrap_or(0) > 0);
    }
    Ok(())
}
