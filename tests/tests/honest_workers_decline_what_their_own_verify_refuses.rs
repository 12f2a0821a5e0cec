//! A requester whose `verify` refuses every output cannot turn honest
//! workers into cheats. Three honest `compute-sandbox` workers are drawn in
//! turn for the one task of a `Verified` job whose module outputs one byte
//! and whose `verify` always returns 0; each runs the module's own `verify`
//! before committing, sees it refuse, and declines instead of committing.
//! The task runs out of workers, the job fails at its deadline, and nobody
//! is slashed, counted as a cheat or as having missed anything, while the
//! requester gets its escrow back. Real processes on 127.0.0.1, the job
//! submitted through the `compute` CLI.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_proto::AccountId;
use compute_tests::{
    cli_new_key, poll_until, run_cli, Gateway, NetConfig, Node, WorkerOptions, WorkerProcess,
};
use serde_json::{json, Value};

/// Short windows so that the job's deadline comes within seconds; the
/// commit window still leaves a worker a few blocks to run, check and
/// decline before it would count as missed.
const COMMIT_WINDOW_BLOCKS: u64 = 4;
const REVEAL_WINDOW_BLOCKS: u64 = 4;
/// The workers, drawn one after another as each declines.
const WORKER_NAMES: [&str; 3] = ["ada", "bo", "cy"];
/// Twice what it takes for every worker to be drawn in turn and use its
/// whole commit window (a decline usually lands in the next block), so all
/// of them have declined before the job's deadline fails the task, and
/// short enough that it fails within seconds.
const DEADLINE_BLOCKS: u64 = 2 * WORKER_NAMES.len() as u64 * COMMIT_WINDOW_BLOCKS;
// PostJob refuses a deadline shorter than one commit and one reveal window.
const _: () = assert!(DEADLINE_BLOCKS >= COMMIT_WINDOW_BLOCKS + REVEAL_WINDOW_BLOCKS);
const WORKER_STAKE: u64 = 1_000;
const BALANCE: u64 = 10_000_000;

/// `run` returns the byte at 16 (`out_ptr << 32 | out_len`); `verify`
/// refuses whatever it is shown.
const REFUSE_EVERYTHING_WAT: &str = r#"(module
    (memory (export "memory") 1)
    (data (i32.const 16) "x")
    (func (export "alloc") (param i32) (result i32) i32.const 1024)
    (func (export "run") (param i32 i32) (result i64) i64.const 0x1000000001)
    (func (export "verify") (param i32 i32 i32 i32) (result i32) i32.const 0))"#;

/// A query that must succeed.
async fn query(node: &Node, path: &str) -> Result<Value> {
    let (code, log, value) = node.query(path).await?;
    ensure!(code == 0, "{path} answered code {code}: {log}");
    Ok(value)
}

fn counter(value: &Value, field: &str) -> Result<u64> {
    value[field]
        .as_u64()
        .with_context(|| format!("no {field} in {value}"))
}

#[tokio::test]
async fn honest_workers_decline_what_their_own_verify_refuses() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("compute-refuse-all-")
        .tempdir()?;
    let requester_key = dir.path().join("requester.json");
    let requester = cli_new_key(&requester_key).await?;
    let mut config = NetConfig::funded(&[], 0);
    config.balances = vec![(requester, BALANCE)];
    config.params = json!({
        "commit_window_blocks": COMMIT_WINDOW_BLOCKS,
        "reveal_window_blocks": REVEAL_WINDOW_BLOCKS,
    });
    let mut worker_keys = Vec::new();
    for name in WORKER_NAMES {
        let path = dir.path().join(format!("{name}.json"));
        config.balances.push((cli_new_key(&path).await?, BALANCE));
        worker_keys.push(path);
    }
    let node = Node::start(config).await?;
    let gateway = Gateway::start(&node.rpc_url(), &[])?;
    let mut workers = Vec::new();
    for key in &worker_keys {
        let options = WorkerOptions {
            capacity: 2,
            stake: WORKER_STAKE,
            cheat: false,
            extra_args: Vec::new(),
        };
        workers.push(WorkerProcess::start(&gateway.url(), key, options).await?);
    }
    let ids: Vec<AccountId> = workers.iter().map(|w| w.account).collect();

    // Each worker's standing once registered: declining must change none
    // of it.
    let mut before = Vec::new();
    for id in &ids {
        let worker = query(&node, &format!("/worker/{id}")).await?;
        assert_eq!(counter(&worker, "stake")?, WORKER_STAKE, "{worker}");
        let reputation = query(&node, &format!("/reputation/{id}")).await?;
        before.push((
            node.balance(id).await?,
            counter(&reputation, "missed")?,
            counter(&reputation, "agreed")?,
        ));
    }

    let wasm = wat::parse_str(REFUSE_EVERYTHING_WAT)?;
    let module = dir.path().join("refuse-everything.wasm");
    std::fs::write(&module, &wasm)?;
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs)?;
    std::fs::write(inputs.join("00.in"), b"any input")?;
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
        "1000000".to_owned(),
        "--max-workers".to_owned(),
        "2".to_owned(),
        "--fuel".to_owned(),
        "1000000".to_owned(),
        "--price".to_owned(),
        "1".to_owned(),
        "--deadline-blocks".to_owned(),
        DEADLINE_BLOCKS.to_string(),
        "--no-wait".to_owned(),
    ];
    let posted = run_cli(args, Duration::from_secs(60)).await?.json()?;
    let job = posted["job"].as_str().context("job id")?.to_owned();

    // The job cannot have ended yet (its deadline is blocks away), so its
    // escrow is still held: the refund checked below is a real one.
    let open = query(&node, &format!("/job/{job}")).await?;
    assert_eq!(open["policy"]["verified"]["max_workers"], 2, "{open}");
    let escrow = counter(&open, "escrow")?;
    assert!(escrow > 0, "the job escrowed nothing: {open}");

    let view = poll_until(
        "the job ends",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async {
            let view = query(&node, &format!("/job/{job}")).await?;
            Ok((view["status"] != "open").then_some(view))
        },
    )
    .await?;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["tasks_failed"], 1, "{view}");
    assert_eq!(view["tasks_settled"], 0, "{view}");
    assert_eq!(counter(&view, "escrow")?, 0, "escrow left: {view}");

    // Every worker was drawn once and gave the task back; none committed,
    // none ran into a deadline, and nothing was revealed for the chain to
    // judge.
    let tasks = view["tasks"].as_array().context("tasks")?;
    assert_eq!(tasks.len(), 1, "{view}");
    let task = &tasks[0];
    assert_eq!(task["status"], "failed", "{task}");
    assert!(task["completion"].is_null(), "{task}");
    let replicas = task["replicas"].as_array().context("replicas")?;
    let mut drawn: Vec<String> = replicas
        .iter()
        .map(|r| r["worker"].as_str().unwrap_or_default().to_owned())
        .collect();
    drawn.sort();
    let mut expected: Vec<String> = ids.iter().map(AccountId::to_hex).collect();
    expected.sort();
    assert_eq!(drawn, expected, "each worker is drawn exactly once: {task}");
    for replica in replicas {
        assert_eq!(replica["status"], "declined", "{task}");
        assert!(replica["commitment"].is_null(), "{task}");
    }
    let failure = task["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("deadline"),
        "the task fails when the job's deadline passes, not by a verdict: {task}"
    );

    // Declining costs nothing and earns nothing: no cheat, no slash, no
    // missed deadline, the stake and the balance as they were.
    for (id, (balance, missed, agreed)) in ids.iter().zip(&before) {
        let reputation = query(&node, &format!("/reputation/{id}")).await?;
        assert_eq!(counter(&reputation, "cheats")?, 0, "{reputation}");
        assert_eq!(counter(&reputation, "missed")?, *missed, "{reputation}");
        assert_eq!(counter(&reputation, "agreed")?, *agreed, "{reputation}");
        let worker = query(&node, &format!("/worker/{id}")).await?;
        assert_eq!(counter(&worker, "stake")?, WORKER_STAKE, "{worker}");
        assert_eq!(counter(&worker, "active_tasks")?, 0, "{worker}");
        assert_eq!(node.balance(id).await?, *balance, "worker {id}");
    }
    let stats = query(&node, "/stats").await?;
    assert_eq!(counter(&stats, "credits_slashed")?, 0, "{stats}");
    assert_eq!(counter(&stats, "verifications")?, 0, "{stats}");
    assert_eq!(counter(&stats, "verify_fuel_used")?, 0, "{stats}");

    // The requester paid only for storing the module: the escrow came back
    // whole, and no verification failed on its record (none was run).
    let params = query(&node, "/params").await?;
    let store_fee =
        u64::try_from(wasm.len())?.div_ceil(1024) * counter(&params, "store_module_fee_per_kib")?;
    assert_eq!(node.balance(&requester).await?, BALANCE - store_fee);
    let reputation = query(&node, &format!("/reputation/{requester}")).await?;
    assert_eq!(
        counter(&reputation, "verifications_failed")?,
        0,
        "{reputation}"
    );

    // Each worker says why it declined: its own verify refused the output.
    for worker in &workers {
        let log = worker.log_tail();
        assert!(
            log.contains("own verify refused the output"),
            "worker {} does not say its own verify refused:\n{log}",
            worker.account
        );
        assert!(
            !log.contains("decline refused") && !log.contains("decline not sent"),
            "worker {} could not decline:\n{log}",
            worker.account
        );
    }
    Ok(())
}
