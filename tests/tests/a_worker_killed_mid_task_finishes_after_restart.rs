//! A worker killed with SIGKILL after it committed, and started again with
//! the same home and key, finishes its tasks from its journal without a
//! second commitment: the job completes, the chain recorded exactly one
//! commit of that worker per task it held, and nobody missed a deadline.
//!
//! The timing is made deterministic by the pool: only two workers exist when
//! the job is posted, so no task can reach its third commitment (and open
//! for reveal) before the third worker joins. The first worker is killed as
//! soon as the chain shows one of its replicas committed, so at that moment
//! none of its tasks can have been revealed; the third worker joins only
//! after the kill, and the dead worker's tasks wait for its reveal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_proto::pb;
use compute_tests::{
    cli_json, cli_new_key, poll_until, primes_submit_args, write_primes_inputs, Gateway, NetConfig,
    Node, WorkerOptions, WorkerProcess,
};
use prost::Message as _;
use serde_json::{json, Value};
use tempfile::TempDir;
use tendermint_rpc::{Client, Order};

/// Everything the scenario does after the first processes are up.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(100);
/// How long one CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first commitment of the victim may take.
const FIRST_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the job may take once the victim is back.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Blocks the victim stays dead, well inside the reveal window.
const DEAD_BLOCKS: u64 = 5;
/// Commit and reveal windows: far longer than the victim stays dead and
/// takes to restart, so nobody misses a deadline.
const WINDOW_BLOCKS: u64 = 100;
/// Tasks in the job.
const TASKS: u64 = 6;
/// Numbers each task sieves.
const SPAN: u64 = 100_000;
/// Every key's credits at genesis.
const GENESIS_BALANCE: u64 = 10_000_000;

/// The processes of the scenario; they live in the test function, so that a
/// failure panics while they still run and every log tail is printed.
struct Net {
    dir: TempDir,
    node: Node,
    gateway: Gateway,
    requester_key: PathBuf,
    /// The worker that is killed and restarted.
    victim: WorkerProcess,
    /// Present from the start.
    other: WorkerProcess,
    /// Its key; it joins after the kill.
    late_key: PathBuf,
    late: Option<WorkerProcess>,
}

fn options() -> WorkerOptions {
    WorkerOptions {
        capacity: 4,
        stake: 1_000,
        ..WorkerOptions::default()
    }
}

impl Net {
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("compute-restart-")
            .tempdir()?;
        let mut keys = Vec::new();
        for name in ["requester", "victim", "other", "late"] {
            let path = dir.path().join(format!("{name}.json"));
            let account = cli_new_key(&path).await?;
            keys.push((path, account));
        }
        let mut config = NetConfig::funded(&[], 0);
        config.balances = keys.iter().map(|(_, a)| (*a, GENESIS_BALANCE)).collect();
        config.params = json!({
            "commit_window_blocks": WINDOW_BLOCKS,
            "reveal_window_blocks": WINDOW_BLOCKS,
        });
        let node = Node::start(config).await?;
        let gateway = Gateway::start(&node.rpc_url(), &[])?;
        let victim = WorkerProcess::start(&gateway.url(), &keys[1].0, options()).await?;
        let other = WorkerProcess::start(&gateway.url(), &keys[2].0, options()).await?;
        Ok(Self {
            requester_key: keys[0].0.clone(),
            late_key: keys[3].0.clone(),
            dir,
            node,
            gateway,
            victim,
            other,
            late: None,
        })
    }

    /// `compute <args> --output json --node <rpc> --gateway <grpc>`.
    async fn cli(&self, args: &[&str]) -> Result<Value> {
        cli_json(&self.node, &self.gateway, args, CLI_TIMEOUT).await
    }

    async fn job(&self, job: &str) -> Result<Value> {
        let (code, log, view) = self.node.query(&format!("/job/{job}")).await?;
        ensure!(code == 0, "/job/{job}: code {code}: {log}");
        Ok(view)
    }

    async fn height(&self) -> Result<u64> {
        let status = self.node.client().status().await?;
        Ok(status.sync_info.latest_block_height.value())
    }
}

#[tokio::test]
async fn a_worker_killed_mid_task_finishes_after_restart() {
    let mut net = Net::start().await.expect("start the network");
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&mut net)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

/// A worker's replicas in a job view: task index to replica status.
fn replicas_of(view: &Value, worker: &str) -> Result<BTreeMap<u64, String>> {
    let mut held = BTreeMap::new();
    for task in view["tasks"].as_array().context("tasks")? {
        let index = task["index"].as_u64().context("index")?;
        for replica in task["replicas"].as_array().context("replicas")? {
            if replica["worker"] == worker {
                let status = replica["status"].as_str().unwrap_or_default().to_owned();
                let previous = held.insert(index, status);
                ensure!(
                    previous.is_none(),
                    "{worker} holds two replicas of task {index}: {view}"
                );
            }
        }
    }
    Ok(held)
}

async fn scenario(net: &mut Net) -> Result<()> {
    let wasm = net.dir.path().join("primes.wasm");
    std::fs::write(&wasm, compute_jobs::PRIMES_WASM)?;
    let inputs_dir = net.dir.path().join("inputs");
    let inputs = write_primes_inputs(&inputs_dir, TASKS, SPAN)?;
    let mut args = primes_submit_args(&wasm, &inputs_dir, &net.requester_key);
    args.push("--no-wait".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let posted = net.cli(&args).await?;
    let job = posted["job"].as_str().context("job id")?.to_owned();
    let victim = net.victim.account.to_hex();

    // Kill the victim as soon as the chain holds one of its commitments.
    let at_kill = poll_until(
        "a commitment of the victim on the chain",
        FIRST_COMMIT_TIMEOUT,
        Duration::from_millis(20),
        || async {
            let view = net.job(&job).await?;
            let held = replicas_of(&view, &victim)?;
            Ok(held.values().any(|s| s == "committed").then_some(held))
        },
    )
    .await?;
    net.victim.kill();
    ensure!(
        at_kill
            .values()
            .all(|s| s == "assigned" || s == "committed"),
        "nothing can be revealed before the third worker joins: {at_kill:?}"
    );

    // A commitment still in flight through the gateway may land in the next
    // block; after that the victim's part of the chain is frozen.
    let killed_at = net.height().await?;
    net.node
        .wait_for_height(killed_at + 2, Duration::from_secs(20))
        .await?;
    let view = net.job(&job).await?;
    let frozen = replicas_of(&view, &victim)?;
    let committed: BTreeSet<u64> = frozen
        .iter()
        .filter(|(_, s)| *s == "committed")
        .map(|(t, _)| *t)
        .collect();
    ensure!(!committed.is_empty(), "{frozen:?}");
    // The commit came after the journal entry was synced.
    ensure!(net.victim.journal_dir().is_dir(), "no journal directory");
    for task in &committed {
        let entry = net.victim.journal_dir().join(format!("{job}-{task}.json"));
        let text = std::fs::read_to_string(&entry)
            .with_context(|| format!("journal entry {}", entry.display()))?;
        let entry: Value = serde_json::from_str(&text)?;
        ensure!(
            entry["state"] == "prepared" || entry["state"] == "committed",
            "task {task}: {entry}"
        );
    }

    // The third worker joins; tasks fill up and open for reveal, but the
    // victim's cannot settle without it while it is dead.
    net.late = Some(WorkerProcess::start(&net.gateway.url(), &net.late_key, options()).await?);
    let joined_at = net.height().await?;
    net.node
        .wait_for_height(joined_at + DEAD_BLOCKS, Duration::from_secs(30))
        .await?;
    let view = net.job(&job).await?;
    ensure!(view["status"] == "open", "{view}");
    let while_dead = replicas_of(&view, &victim)?;
    for task in &committed {
        ensure!(
            while_dead.get(task).map(String::as_str) == Some("committed"),
            "task {task} moved on without the victim: {while_dead:?}"
        );
    }

    // Back with the same home and key: the journal carries it through.
    net.victim.restart().await?;
    let ended = poll_until(
        "the job's end",
        FINISH_TIMEOUT,
        Duration::from_millis(200),
        || async {
            let view = net.job(&job).await?;
            Ok((view["status"] != "open").then_some(view))
        },
    )
    .await;
    let view = match ended {
        Ok(view) => view,
        Err(e) => return Err(e.context(format!("job view: {}", net.job(&job).await?))),
    };
    ensure!(view["status"] == "completed", "{view}");

    // The victim committed exactly once per task it held and agreed on each.
    let held = replicas_of(&view, &victim)?;
    ensure!(
        committed.iter().all(|t| held.contains_key(t)),
        "{held:?} lost tasks of {committed:?}"
    );
    ensure!(held.values().all(|s| s == "agreed"), "{held:?}");
    let commits = commits_of(&net.node, &victim).await?;
    let held_tasks: Vec<(String, u64)> = held.keys().map(|t| (job.clone(), *t)).collect();
    ensure!(
        commits == held_tasks,
        "the victim's task_committed events {commits:?} are not one per task held {held_tasks:?}"
    );
    let sent = commit_txs_in_blocks(&net.node, &victim).await?;
    ensure!(
        sent == held.len() as u64,
        "{sent} commitments of the victim (alone or batched) reached blocks for {} tasks",
        held.len()
    );
    for worker in [&net.victim, &net.other] {
        let (_, _, rep) = net
            .node
            .query(&format!("/reputation/{}", worker.account))
            .await?;
        ensure!(
            rep["missed"] == 0 && rep["cheats"] == 0,
            "{}: {rep}",
            worker.account
        );
    }
    let (_, _, rep) = net.node.query(&format!("/reputation/{victim}")).await?;
    ensure!(rep["agreed"] == held.len() as u64, "{rep}");

    // The outputs, fetched and checked by the CLI, are the native counts.
    let out_dir = net.dir.path().join("out");
    let results = net
        .cli(&["job", "results", &job, "--out", path(&out_dir)?])
        .await?;
    ensure!(results["status"] == "completed", "{results}");
    for (index, input) in inputs.iter().enumerate() {
        let written = std::fs::read(out_dir.join(format!("{index:05}.out")))?;
        ensure!(
            written == compute_jobs::primes::job(input),
            "task {index}: {written:?}"
        );
    }

    // Its journal outlived the crash, and the finished tasks are pruned.
    ensure!(net.victim.journal_dir().is_dir(), "no journal directory");
    poll_until(
        "the victim's journal pruned",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || async {
            let left = std::fs::read_dir(net.victim.journal_dir())?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count();
            Ok((left == 0).then_some(()))
        },
    )
    .await?;
    ensure!(net.victim.running(), "the victim exited after its restart");
    Ok(())
}

/// Every `(job, task)` of a `task_committed` event of `worker`, sorted.
async fn commits_of(node: &Node, worker: &str) -> Result<Vec<(String, u64)>> {
    let query = format!("task_committed.worker='{worker}'").parse()?;
    let found = node
        .client()
        .tx_search(query, false, 1, 100, Order::Ascending)
        .await?;
    ensure!(found.total_count <= 100, "more commits than one page");
    let mut commits = Vec::new();
    for tx in found.txs {
        for event in tx
            .tx_result
            .events
            .iter()
            .filter(|e| e.kind == "task_committed")
        {
            let attribute = |name: &str| {
                event
                    .attributes
                    .iter()
                    .find(|a| a.key_bytes() == name.as_bytes())
                    .and_then(|a| a.value_str().ok().map(str::to_owned))
            };
            if attribute("worker").as_deref() == Some(worker) {
                let job = attribute("job").context("job attribute")?;
                let task = attribute("task").context("task attribute")?.parse()?;
                commits.push((job, task));
            }
        }
    }
    commits.sort();
    Ok(commits)
}

/// `CommitResult` transactions of `worker` in blocks, refused or not.
async fn commit_txs_in_blocks(node: &Node, worker: &str) -> Result<u64> {
    // Commitments travel alone (CommitResult) or together (CommitResults):
    // count the entries of every such transaction that reached a block,
    // refused ones included.
    let mut entries = 0u64;
    for action in ["CommitResult", "CommitResults"] {
        let query = format!("message.sender='{worker}' AND message.action='{action}'").parse()?;
        let found = node
            .client()
            .tx_search(query, false, 1, 100, Order::Ascending)
            .await?;
        for tx in &found.txs {
            let envelope = pb::Tx::decode(tx.tx.as_slice())?;
            let body = pb::TxBody::decode(envelope.body.as_slice())?;
            entries += match body.msg {
                Some(pb::tx_body::Msg::CommitResults(batch)) => batch.entries.len() as u64,
                _ => 1,
            };
        }
    }
    Ok(entries)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("a temporary path that is not UTF-8")
}
