//! A colluding pair wins a quorum on a real chain, and a watcher overturns
//! it: two `--cheat` workers falsify every output the same way and outvote
//! the honest third, `compute job submit` accepts what the chain settled,
//! and then a watcher that is no worker sends `compute job dispute`. Every
//! validator re-runs the task in its sandbox (the referee): the result is
//! corrected to the true count, both colluders are slashed, the honest
//! worker is restored, and the watcher gets its bond back with a bounty.
//! Real processes on 127.0.0.1.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_proto::sha3_256;
use compute_tests::{
    cli_json, cli_new_key, primes_follow_args, write_primes_inputs, Gateway, NetConfig, Node,
    WorkerOptions, WorkerProcess,
};
use serde_json::Value;

const TASKS: u64 = 2;
const SPAN: u64 = 20_000;
const BALANCE: u64 = 10_000_000;
const STAKE: u64 = 50_000;
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn a_watcher_overturns_a_colluding_quorum() {
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

async fn scenario() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("compute-watch-")
        .tempdir()?;
    let key = |name: &str| dir.path().join(format!("{name}.json"));
    let mut config = NetConfig::funded(&[], 0);
    config.balances = Vec::new();
    for name in ["requester", "honest", "colluder-a", "colluder-b", "watcher"] {
        config
            .balances
            .push((cli_new_key(&key(name)).await?, BALANCE));
    }
    let watcher = config.balances[4].0;
    let node = Node::start(config).await?;
    let gateway = Gateway::start(&node.rpc_url(), &[])?;
    let options = |cheat| WorkerOptions {
        capacity: 2,
        stake: STAKE,
        cheat,
        extra_args: Vec::new(),
    };
    let honest = WorkerProcess::start(&gateway.url(), &key("honest"), options(false)).await?;
    let mut colluders = Vec::new();
    for name in ["colluder-a", "colluder-b"] {
        colluders.push(WorkerProcess::start(&gateway.url(), &key(name), options(true)).await?);
    }

    let wasm = dir.path().join("primes.wasm");
    std::fs::write(&wasm, compute_jobs::PRIMES_WASM)?;
    let inputs_dir = dir.path().join("inputs");
    let inputs = write_primes_inputs(&inputs_dir, TASKS, SPAN)?;
    let out = dir.path().join("out");
    let args = primes_follow_args(
        &wasm,
        &inputs_dir,
        &key("requester"),
        Duration::from_secs(120),
        &out,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = cli_json(&node, &gateway, &args, Duration::from_secs(140)).await?;
    ensure!(summary["status"] == "completed", "{summary}");
    let job = summary["job"].as_str().context("job id")?.to_owned();
    // The pair won: what the chain settled is not the true count, and the
    // results are not final yet.
    let truth = compute_jobs::primes::job(&inputs[0]);
    let settled = std::fs::read(out.join("00000.out"))?;
    ensure!(settled != truth, "the colluders did not win task 0");
    ensure!(
        summary["not_final"].as_array().map(Vec::len) == Some(TASKS as usize),
        "{summary}"
    );

    let dispute = cli_json(
        &node,
        &gateway,
        &[
            "job",
            "dispute",
            &job,
            "0",
            "--key",
            key("watcher").to_str().context("path")?,
        ],
        Duration::from_secs(60),
    )
    .await?;
    ensure!(dispute["dispute"]["status"] == "overturned", "{dispute}");
    ensure!(dispute["dispute"]["final"] == true, "{dispute}");

    // The record is the true count, paid to the honest worker alone.
    let (_, _, view) = node.query(&format!("/job/{job}")).await?;
    let completion = &view["tasks"][0]["completion"];
    ensure!(
        completion["result_hash"] == hex::encode(sha3_256(&truth)),
        "{completion}"
    );
    ensure!(
        completion["workers"] == serde_json::json!([honest.account.to_hex()]),
        "{completion}"
    );
    for colluder in &colluders {
        let (_, _, worker) = node.query(&format!("/worker/{}", colluder.account)).await?;
        let stake = worker["stake"].as_u64().context("stake")?;
        ensure!(stake < STAKE * 9 / 10, "colluder not slashed: {worker}");
        let (_, _, rep) = node
            .query(&format!("/reputation/{}", colluder.account))
            .await?;
        ensure!(rep["cheats"].as_u64() >= Some(1), "{rep}");
    }
    let (_, _, rep) = node
        .query(&format!("/reputation/{}", honest.account))
        .await?;
    // Restored on task 0; task 1, undisputed, still counts it a cheat.
    ensure!(rep["agreed"] == 1 && rep["cheats"] == 1, "{rep}");
    let (_, _, rep) = node.query(&format!("/reputation/{watcher}")).await?;
    ensure!(rep["cheaters_reported"] == 2, "{rep}");
    let (_, _, account) = node.query(&format!("/account/{watcher}")).await?;
    ensure!(
        account["balance"].as_u64() > Some(BALANCE),
        "the watcher earned no bounty: {account}"
    );
    let (_, _, stats) = node.query("/stats").await?;
    ensure!(stats["results_overturned"] == 1, "{stats}");

    // `job results` now writes the true count for task 0.
    let fixed = dir.path().join("fixed");
    let fixed_arg = fixed.to_str().context("path")?;
    let results: Value = cli_json(
        &node,
        &gateway,
        &["job", "results", &job, "--out", fixed_arg],
        Duration::from_secs(60),
    )
    .await?;
    ensure!(results["exit_code"] == 0, "{results}");
    ensure!(
        std::fs::read(fixed.join("00000.out"))? == truth,
        "{results}"
    );
    drop(colluders);
    drop(honest);
    Ok(())
}
