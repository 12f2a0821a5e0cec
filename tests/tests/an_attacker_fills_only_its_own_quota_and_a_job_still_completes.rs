//! The gateway as a public service, with real processes: a chain, a gateway
//! with a small store, three honest workers, the `compute` CLI, and an
//! attacker with a funded account.
//!
//! The attacker fills its own quota with random blobs, and keeps uploading
//! more for as long as the job runs. Strangers with no balance, and
//! unsigned uploads, are refused. The store crosses its high-water mark, so
//! the gateway evicts, but only unreferenced blobs past their grace period:
//! a real job, whose inputs and outputs all travel through this gateway,
//! still completes, and every output stays downloadable after it settled.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use compute_client::{blob, Gateway as GatewayClient};
use compute_proto::{BlobId, SigningKey};
use compute_tests::gateway_calls::scrape;
use compute_tests::{
    cli_json, cli_new_key, primes_follow_args, write_primes_inputs, Gateway, NetConfig, Node,
    WorkerOptions, WorkerProcess,
};
use serde_json::{json, Value};
use tempfile::TempDir;
use tonic::Code;

/// Everything the scenario does after the processes are up.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);
/// How long `compute job submit` may follow the job.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(90);
/// Tasks in the job.
const TASKS: u64 = 4;
/// Numbers each task sieves.
const SPAN: u64 = 50_000;
/// Credits of every funded key at genesis.
const GENESIS_BALANCE: u64 = 10_000_000;
/// Each worker's stake.
const STAKE: u64 = 1_000;
/// The gateway's whole store.
const STORE_BYTES: u64 = 256 * 1024;
/// One account's share of it.
const ACCOUNT_QUOTA_BYTES: u64 = 128 * 1024;
/// The attacker's blobs.
const JUNK_BYTES: usize = 4 * 1024;
/// The balance an uploader needs.
const MIN_BALANCE: u64 = 1_000;
/// How long an unreferenced blob is safe from eviction.
const GRACE_SECS: u64 = 8;

struct Net {
    dir: TempDir,
    node: Node,
    gateway: Gateway,
    requester_key: PathBuf,
    attacker: SigningKey,
    workers: Vec<WorkerProcess>,
}

impl Net {
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("compute-dos-").tempdir()?;
        let requester_key = dir.path().join("requester.json");
        let requester = cli_new_key(&requester_key).await?;
        let mut worker_keys = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let path = dir.path().join(format!("{name}.json"));
            let account = cli_new_key(&path).await?;
            worker_keys.push((path, account));
        }
        let attacker = SigningKey::from_seed([0xa7; 32]);
        let poor = SigningKey::from_seed([0x9f; 32]);
        let mut config = NetConfig::funded(&[], 0);
        config.balances = [requester, attacker.account()]
            .into_iter()
            .chain(worker_keys.iter().map(|(_, a)| *a))
            .map(|a| (a, GENESIS_BALANCE))
            .chain(std::iter::once((poor.account(), MIN_BALANCE - 1)))
            .collect();
        // Every input travels through the gateway, none inline on the chain.
        config.params = json!({ "max_inline_input_bytes": 0 });
        let node = Node::start(config).await?;
        let flag = |name: &str, value: u64| [format!("--{name}"), value.to_string()];
        let args: Vec<String> = [
            flag("quota-bytes", STORE_BYTES),
            flag("account-quota-bytes", ACCOUNT_QUOTA_BYTES),
            flag("high-water-percent", 40),
            flag("low-water-percent", 20),
            flag("grace-secs", GRACE_SECS),
            flag("upload-min-balance", MIN_BALANCE),
        ]
        .into_iter()
        .flatten()
        .collect();
        let gateway = Gateway::start(&node.rpc_url(), &args)?;
        let mut workers = Vec::new();
        for (path, _) in &worker_keys {
            let options = WorkerOptions {
                capacity: 4,
                stake: STAKE,
                cheat: false,
                extra_args: Vec::new(),
            };
            workers.push(WorkerProcess::start(&gateway.url(), path, options).await?);
        }
        Ok(Self {
            dir,
            node,
            gateway,
            requester_key,
            attacker,
            workers,
        })
    }

    async fn cli(&self, args: &[&str], timeout: Duration) -> Result<Value> {
        cli_json(&self.node, &self.gateway, args, timeout).await
    }
}

#[tokio::test]
async fn an_attacker_fills_only_its_own_quota_and_a_job_still_completes() {
    let mut net = Net::start().await.expect("start the network");
    let outcome = tokio::time::timeout(SCENARIO_TIMEOUT, scenario(&mut net)).await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some(format!("did not finish within {SCENARIO_TIMEOUT:?}")),
    };
    if let Some(failure) = failure {
        for worker in &net.workers {
            eprintln!("--- worker {} ---\n{}", worker.account, worker.log_tail());
        }
        eprintln!("--- gateway ---\n{}", net.gateway.log_tail());
        panic!("{failure}");
    }
}

/// Deterministic junk: distinct for every `n`.
fn junk(n: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(JUNK_BYTES);
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < JUNK_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(JUNK_BYTES);
    out
}

/// Uploads junk until the account's quota refuses it; answers how many fit.
async fn fill(gateway: &GatewayClient, key: &SigningKey, next: &mut u64) -> Result<u64> {
    let mut stored = 0;
    // Bounded: the quota holds 32 of these, and evictions free at most
    // that much again.
    for _ in 0..(2 * ACCOUNT_QUOTA_BYTES / JUNK_BYTES as u64) {
        *next += 1;
        match gateway.put_blob(key, &junk(*next)).await {
            Ok(_) => stored += 1,
            Err(e) if e.grpc_code() == Some(Code::ResourceExhausted) => {
                ensure!(
                    e.to_string().contains("account"),
                    "refused for another reason than the account's quota: {e}"
                );
                return Ok(stored);
            }
            Err(e) => return Err(e).context("an upload failed otherwise than by quota"),
        }
    }
    anyhow::bail!("the account quota never refused the attacker ({stored} blobs stored)")
}

/// Polls `probe` every 500 ms until it answers a value, for at most `limit`.
async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        ensure!(Instant::now() < deadline, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn metric(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn scenario(net: &mut Net) -> Result<()> {
    let gateway = GatewayClient::connect(&net.gateway.url()).await?;

    // Strangers and unsigned uploads are refused, and store nothing.
    let stranger = SigningKey::from_seed([0x51; 32]);
    let poor = SigningKey::from_seed([0x9f; 32]);
    for (who, key) in [("a stranger", &stranger), ("a poor account", &poor)] {
        let refused = gateway.put_blob(key, &junk(0)).await.unwrap_err();
        ensure!(
            refused.grpc_code() == Some(Code::PermissionDenied),
            "{who}: {refused}"
        );
    }
    let unsigned = gateway
        .grpc()
        .put_blob(tokio_stream::iter(blob::chunks(&junk(0), None, 1024)))
        .await
        .unwrap_err();
    ensure!(unsigned.code() == Code::Unauthenticated, "{unsigned}");

    // The attacker fills its quota: 128 KiB of 4 KiB blobs, no more.
    let mut next = 0;
    let first_fill = fill(&gateway, &net.attacker, &mut next).await?;
    ensure!(
        first_fill == ACCOUNT_QUOTA_BYTES / JUNK_BYTES as u64,
        "the attacker stored {first_fill} blobs"
    );
    let metrics = scrape(&net.gateway)?;
    ensure!(
        metric(&metrics, "compute_gateway_store_bytes ") >= ACCOUNT_QUOTA_BYTES,
        "{metrics}"
    );

    // It keeps trying while the job runs: as the gateway evicts its oldest
    // junk, it fills its quota again.
    let stop = Arc::new(AtomicBool::new(false));
    let refilled = Arc::new(AtomicU64::new(0));
    let attack = {
        let gateway = gateway.clone();
        let key = net.attacker.clone();
        let stop = Arc::clone(&stop);
        let refilled = Arc::clone(&refilled);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let stored = fill(&gateway, &key, &mut next).await?;
                refilled.fetch_add(stored, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok::<(), anyhow::Error>(())
        })
    };

    // A real job through the same gateway: inputs uploaded by the requester,
    // outputs by the workers, fetched back by the CLI.
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
    ensure!(summary["settled"] == TASKS, "{summary}");

    // The store went over its high-water mark and the gateway evicted the
    // attacker's oldest junk past its grace period; the attacker refilled
    // the room it got back, and the gateway evicted again. Each wait is
    // bounded.
    let evictions = || -> Result<u64> {
        Ok(metric(
            &scrape(&net.gateway)?,
            "compute_gateway_evicted_blobs_total ",
        ))
    };
    let wait = Duration::from_secs(GRACE_SECS * 4);
    let first_round = wait_for(wait, || Ok(Some(evictions()?).filter(|n| *n > 0)))
        .await
        .context("nothing was evicted")?;
    wait_for(wait, || {
        Ok(Some(refilled.load(Ordering::Relaxed)).filter(|n| *n > 0))
    })
    .await
    .context("the attacker never got room back")?;
    let second_round = wait_for(wait, || Ok(Some(evictions()?).filter(|n| *n > first_round)))
        .await
        .context("the refilled junk was not evicted")?;
    stop.store(true, Ordering::Relaxed);
    attack.await??;

    // Every output settled, is right, and is still on the gateway: an
    // output of a completion stays referenced after settlement.
    for (index, input) in inputs.iter().enumerate() {
        let expected = compute_jobs::primes::job(input);
        let written = std::fs::read(out_dir.join(format!("{index:05}.out")))
            .with_context(|| format!("output of task {index}"))?;
        ensure!(written == expected, "task {index}: wrong output");
        let served = gateway
            .get_blob(&BlobId::of(&expected), 1 << 20)
            .await
            .with_context(|| format!("the output of task {index} was evicted"))?;
        ensure!(served == expected);
    }

    // The refusals are counted by reason, the junk never exceeded its
    // quota, and the store never exceeded its size.
    let metrics = scrape(&net.gateway)?;
    for (reason, at_least) in [("not_permitted", 2), ("unsigned", 1), ("account_quota", 1)] {
        let line = format!("compute_gateway_upload_refusals_total{{reason=\"{reason}\"}} ");
        ensure!(metric(&metrics, &line) >= at_least, "{reason}:\n{metrics}");
    }
    ensure!(
        metric(&metrics, "compute_gateway_store_bytes ") <= STORE_BYTES,
        "{metrics}"
    );
    ensure!(
        metric(&metrics, "compute_gateway_pinned_bytes ") > 0,
        "the outputs are pinned:\n{metrics}"
    );
    eprintln!(
        "attacker: {first_fill} blobs at first, {} more after evictions; {second_round} evicted",
        refilled.load(Ordering::Relaxed)
    );

    // A restarted gateway knows only its disk: it reads the references back
    // from the chain's queries (the settled outputs, within
    // --retain-blocks), and then serves the outputs as before.
    let outputs: HashSet<BlobId> = inputs
        .iter()
        .map(|input| BlobId::of(&compute_jobs::primes::job(input)))
        .collect();
    net.gateway.restart()?;
    let referenced = wait_for(Duration::from_secs(30), || {
        let metrics = scrape(&net.gateway)?;
        let referenced = metric(&metrics, "compute_gateway_referenced_blobs ");
        let pinned = metric(&metrics, "compute_gateway_pinned_bytes ");
        Ok(Some(referenced).filter(|n| *n >= outputs.len() as u64 && pinned > 0))
    })
    .await
    .context("the restarted gateway did not read the references back")?;
    let gateway = GatewayClient::connect(&net.gateway.url()).await?;
    for output in &outputs {
        gateway
            .get_blob(output, 1 << 20)
            .await
            .context("an output is gone after the restart")?;
    }
    eprintln!("after a restart: {referenced} blobs referenced");
    Ok(())
}
