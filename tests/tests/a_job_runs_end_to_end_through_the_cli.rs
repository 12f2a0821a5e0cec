//! The whole network as a person runs it: a chain, a gateway, three
//! `compute-sandbox` workers (one started with `--cheat`) and the `compute`
//! CLI, each a real process on 127.0.0.1. The requester submits a prime
//! counting job with `compute job submit`, which follows it to its end and
//! writes outputs that match the native computation. With three workers and
//! three replicas every worker is on every task, so the cheater is always
//! outvoted: counted as a cheat and slashed, while the honest workers are
//! credited. `compute job status`, `job list` and `top` then agree.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_client::{JobTasks, Query};
use compute_proto::JobId;
use compute_tests::{
    cli_json, cli_new_key, primes_follow_args, write_primes_inputs, Gateway, NetConfig, Node,
    WorkerOptions, WorkerProcess,
};
use serde_json::Value;
use tempfile::TempDir;

/// Everything the scenario does after the processes are up.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(100);
/// How long `compute job submit` may follow the job.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(80);
/// How long one of the quick CLI commands may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// Tasks in the job.
const TASKS: u64 = 6;
/// Numbers each task sieves.
const SPAN: u64 = 100_000;
/// Every key's credits at genesis.
const GENESIS_BALANCE: u64 = 10_000_000;
/// Each worker's stake.
const STAKE: u64 = 1_000;

/// The processes of the scenario. They live in the test function, so that a
/// failure panics while they still run and every log tail is printed.
struct Net {
    dir: TempDir,
    node: Node,
    gateway: Gateway,
    requester_key: PathBuf,
    honest: Vec<WorkerProcess>,
    cheater: WorkerProcess,
}

impl Net {
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("compute-e2e-").tempdir()?;
        let requester_key = dir.path().join("requester.json");
        let requester = cli_new_key(&requester_key).await?;
        let mut worker_keys = Vec::new();
        for name in ["alice", "bob", "mallory"] {
            let path = dir.path().join(format!("{name}.json"));
            let account = cli_new_key(&path).await?;
            worker_keys.push((path, account));
        }
        let mut config = NetConfig::funded(&[], 0);
        config.balances = std::iter::once(requester)
            .chain(worker_keys.iter().map(|(_, a)| *a))
            .map(|a| (a, GENESIS_BALANCE))
            .collect();
        let node = Node::start(config).await?;
        let gateway = Gateway::start(&node.rpc_url(), &[])?;
        let options = |cheat| WorkerOptions {
            capacity: 4,
            stake: STAKE,
            cheat,
            extra_args: Vec::new(),
        };
        let mut honest = Vec::new();
        for (path, _) in &worker_keys[..2] {
            honest.push(WorkerProcess::start(&gateway.url(), path, options(false)).await?);
        }
        let cheater =
            WorkerProcess::start(&gateway.url(), &worker_keys[2].0, options(true)).await?;
        Ok(Self {
            dir,
            node,
            gateway,
            requester_key,
            honest,
            cheater,
        })
    }

    /// `compute <args> --output json --node <rpc> --gateway <grpc>`.
    async fn cli(&self, args: &[&str], timeout: Duration) -> Result<Value> {
        cli_json(&self.node, &self.gateway, args, timeout).await
    }
}

#[tokio::test]
async fn a_job_runs_end_to_end_through_the_cli() {
    let net = Net::start().await.expect("start the network");
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&net)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

async fn scenario(net: &Net) -> Result<()> {
    let wasm = net.dir.path().join("primes.wasm");
    std::fs::write(&wasm, compute_jobs::PRIMES_WASM)?;
    let inputs_dir = net.dir.path().join("inputs");
    let inputs = write_primes_inputs(&inputs_dir, TASKS, SPAN)?;
    let out_dir = net.dir.path().join("out");

    let args = primes_follow_args(
        &wasm,
        &inputs_dir,
        &net.requester_key,
        SUBMIT_TIMEOUT,
        &out_dir,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = net
        .cli(&args, SUBMIT_TIMEOUT + Duration::from_secs(10))
        .await?;
    ensure!(summary["status"] == "completed", "{summary}");
    ensure!(
        summary["settled"] == TASKS && summary["failed"] == 0,
        "{summary}"
    );
    let job = summary["job"].as_str().context("job id")?.to_owned();

    // Every output is the native count of its range, and only honest
    // workers stand behind it.
    let cheater = net.cheater.account.to_hex();
    let honest: Vec<String> = net.honest.iter().map(|w| w.account.to_hex()).collect();
    for (index, input) in inputs.iter().enumerate() {
        let written = std::fs::read(out_dir.join(format!("{index:05}.out")))
            .with_context(|| format!("output of task {index}"))?;
        ensure!(
            written == compute_jobs::primes::job(input),
            "task {index}: output {written:?} is not the native count"
        );
        let agreed = &summary["outputs"][index]["workers"];
        let agreed: Vec<&str> = agreed
            .as_array()
            .context("workers")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        ensure!(agreed.len() >= 2, "task {index} settled by {agreed:?}");
        ensure!(
            agreed.iter().all(|w| honest.iter().any(|h| h == w)),
            "task {index} settled by {agreed:?}, not only honest workers"
        );
    }

    // The cheater was caught and slashed; the honest workers were credited.
    let chain = net.node.chain();
    let rep = chain.reputation(&net.cheater.account).await?;
    ensure!(rep.cheats >= 1, "cheater: {rep:?}");
    ensure!(rep.agreed == 0, "the cheater never agrees: {rep:?}");
    let record = chain.worker(&net.cheater.account).await?;
    let stake = record.stake;
    ensure!(stake < STAKE, "the cheater's stake was slashed: {record:?}");
    for worker in &net.honest {
        let rep = chain.reputation(&worker.account).await?;
        ensure!(rep.agreed >= 1, "{}: {rep:?}", worker.account);
        ensure!(rep.cheats == 0, "{}: {rep:?}", worker.account);
        let record = chain.worker(&worker.account).await?;
        ensure!(
            record.stake == STAKE,
            "an honest stake is untouched: {record:?}"
        );
    }
    let stats = chain.stats().await?;
    ensure!(stats.tasks_settled == TASKS, "{stats:?}");
    ensure!(stats.credits_slashed == STAKE - stake, "{stats:?}");

    // The read-only commands agree with the chain.
    let status = net.cli(&["job", "status", &job], CLI_TIMEOUT).await?;
    ensure!(status["status"] == "completed", "{status}");
    let tasks = status["tasks"].as_array().context("tasks")?;
    ensure!(tasks.len() as u64 == TASKS, "{status}");
    ensure!(tasks.iter().all(|t| t["status"] == "settled"), "{status}");

    let list = net.cli(&["job", "list"], CLI_TIMEOUT).await?;
    let listed = list["jobs"]
        .as_array()
        .context("jobs")?
        .iter()
        .find(|j| j["job"] == job.as_str())
        .with_context(|| format!("job {job} missing from {list}"))?;
    ensure!(listed["status"] == "completed", "{listed}");

    let top = net.cli(&["top"], CLI_TIMEOUT).await?;
    let ranked: Vec<&str> = top["workers"]
        .as_array()
        .context("workers")?
        .iter()
        .filter_map(|w| w["worker"].as_str())
        .collect();
    ensure!(ranked.len() == 3, "{top}");
    ensure!(ranked[2] == cheater, "the cheater ranks last: {top}");
    ensure!(
        top["workers"][2]["cheats"].as_u64().unwrap_or(0) >= 1,
        "{top}"
    );

    let rep = net.cli(&["reputation", &cheater], CLI_TIMEOUT).await?;
    ensure!(rep["cheats"].as_u64().unwrap_or(0) >= 1, "{rep}");
    check_requester_paid(net, &job).await?;
    many_jobs_in_one_posting(net, &wasm).await
}

/// More inputs than `--tasks-per-job`: the CLI posts several jobs in one
/// `PostJobs`, follows each, and writes each one's outputs apart.
async fn many_jobs_in_one_posting(net: &Net, wasm: &std::path::Path) -> Result<()> {
    let inputs_dir = net.dir.path().join("many-inputs");
    let inputs = write_primes_inputs(&inputs_dir, 5, 1_000)?;
    let out_dir = net.dir.path().join("many-out");
    let mut args = primes_follow_args(
        wasm,
        &inputs_dir,
        &net.requester_key,
        SUBMIT_TIMEOUT,
        &out_dir,
    );
    args.extend(["--tasks-per-job".to_owned(), "2".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = net
        .cli(&args, SUBMIT_TIMEOUT + Duration::from_secs(10))
        .await?;
    let jobs = summary["jobs"].as_array().context("jobs")?;
    ensure!(jobs.len() == 3 && summary["exit_code"] == 0, "{summary}");
    for (i, job) in jobs.iter().enumerate() {
        ensure!(job["status"] == "completed", "{summary}");
        let tasks = if i < 2 { 2 } else { 1 };
        ensure!(job["settled"] == tasks, "{summary}");
        for task in 0..tasks {
            let written = out_dir.join(i.to_string()).join(format!("{task:05}.out"));
            ensure!(written.exists(), "{} missing: {summary}", written.display());
        }
    }
    // The jobs hold the inputs in order, two by two.
    let first = JobId::from_hex(jobs[0]["job"].as_str().context("job")?)?;
    let view = net.node.chain().job(&first, JobTasks::All).await?;
    ensure!(view.summary.task_count == 2, "{view:?}");
    ensure!(inputs.len() == 5);
    Ok(())
}

/// The requester paid exactly what the workers were paid and the module's
/// store fee: the rest of the escrow came back (transaction fees are 0 on
/// this chain).
async fn check_requester_paid(net: &Net, job: &str) -> Result<()> {
    let chain = net.node.chain();
    let view = chain.job(&JobId::from_hex(job)?, JobTasks::All).await?;
    ensure!(view.summary.escrow == 0, "the escrow is settled: {view:?}");
    let paid: u64 = view
        .tasks
        .as_deref()
        .context("tasks")?
        .iter()
        .map(|t| t.completion.as_ref().map_or(0, |c| c.paid))
        .sum();
    ensure!(paid > 0, "workers were paid: {view:?}");
    let record = chain.module(&view.summary.module).await?;
    let params = chain.params().await?;
    let store_fee = record.size.div_ceil(1024) * params.store_module_fee_per_kib;
    let requester = compute_proto::keys::KeyFile::load(&net.requester_key)?.account();
    let balance = net.node.balance(&requester).await?;
    ensure!(
        balance == GENESIS_BALANCE - paid - store_fee,
        "the requester holds {balance}, expected {GENESIS_BALANCE} - {paid} - {store_fee} (store fee)"
    );
    Ok(())
}
