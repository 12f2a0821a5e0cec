//! The worker's "antivirus": a worker whose deny list names a module gives
//! back every task of it with `DeclineTask` instead of letting its deadlines
//! pass, and the chain draws another worker at once. Real processes on
//! 127.0.0.1: a chain, a gateway, two `compute-sandbox` workers and the
//! `compute` CLI. The careful worker starts alone, so every task is drawn
//! for it first; the second worker starts once all were declined.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_proto::ModuleId;
use compute_tests::{
    cli_new_key, poll_until, run_cli, Gateway, NetConfig, Node, WorkerOptions, WorkerProcess,
};
use serde_json::Value;

const TASKS: u64 = 4;
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

#[tokio::test]
async fn a_denied_module_is_declined_and_run_elsewhere() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("compute-deny-").tempdir()?;
    let requester_key = dir.path().join("requester.json");
    let careful_key = dir.path().join("careful.json");
    let plain_key = dir.path().join("plain.json");
    let requester = cli_new_key(&requester_key).await?;
    let careful = cli_new_key(&careful_key).await?;
    let plain = cli_new_key(&plain_key).await?;
    let mut config = NetConfig::funded(&[], 0);
    config.balances = vec![
        (requester, 10_000_000),
        (careful, 10_000_000),
        (plain, 10_000_000),
    ];
    let node = Node::start(config).await?;
    let gateway = Gateway::start(&node.rpc_url(), &[])?;

    let module = dir.path().join("primes.wasm");
    std::fs::write(&module, compute_jobs::PRIMES_WASM)?;
    let module_id = ModuleId::of(compute_jobs::PRIMES_WASM);
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, format!("# known bad\n{module_id}\n"))?;
    let options = |extra: Vec<String>| WorkerOptions {
        capacity: 4,
        stake: 1_000,
        cheat: false,
        extra_args: extra,
    };
    let _careful_worker = WorkerProcess::start(
        &gateway.url(),
        &careful_key,
        options(vec!["--deny".into(), deny.display().to_string()]),
    )
    .await?;

    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs)?;
    for i in 0..TASKS {
        let input = compute_jobs::primes::encode_input(i * 10_000, (i + 1) * 10_000);
        std::fs::write(inputs.join(format!("{i:02}.in")), input)?;
    }
    let rpc = node.rpc_url();
    let grpc = gateway.url();
    let args: Vec<String> = [
        "--node",
        &rpc,
        "--gateway",
        &grpc,
        "--output",
        "json",
        "job",
        "submit",
        module.to_str().context("path")?,
        "--inputs",
        inputs.to_str().context("path")?,
        "--key",
        requester_key.to_str().context("path")?,
        "--replicas",
        "1",
        "--quorum",
        "1",
        "--fuel",
        "100000000",
        "--price",
        "1",
        "--no-wait",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    let posted = run_cli(args, Duration::from_secs(30)).await?.json()?;
    let job = posted["job"].as_str().context("job id")?.to_owned();

    // The careful worker declines every task; nobody else can take them yet.
    let careful_hex = careful.to_hex();
    poll_until("every task declined", WAIT, POLL, || {
        let node = &node;
        let job = job.clone();
        let careful_hex = careful_hex.clone();
        async move {
            let (_, _, view) = node.query(&format!("/job/{job}")).await?;
            let declined =
                view["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| {
                        t["replicas"].as_array().into_iter().flatten().any(|r| {
                            r["worker"] == careful_hex.as_str() && r["status"] == "declined"
                        })
                    })
                    .count();
            Ok((declined as u64 == TASKS).then_some(()))
        }
    })
    .await?;
    let (_, _, record) = node.query(&format!("/worker/{careful}")).await?;
    assert_eq!(record["active_tasks"], 0, "declining released every slot");

    // A second worker takes them all and the job completes.
    let _plain_worker =
        WorkerProcess::start(&gateway.url(), &plain_key, options(Vec::new())).await?;
    let view: Value = poll_until("job completed", WAIT, POLL, || {
        let node = &node;
        let job = job.clone();
        async move {
            let (_, _, view) = node.query(&format!("/job/{job}")).await?;
            Ok((view["status"] != "open").then_some(view))
        }
    })
    .await?;
    ensure!(
        view["status"] == "completed",
        "job ended as {}",
        view["status"]
    );
    for task in view["tasks"].as_array().context("tasks")? {
        assert_eq!(task["completion"]["workers"][0], plain.to_hex());
    }
    // Declining is neither a missed deadline nor a cheat.
    let (_, _, rep) = node.query(&format!("/reputation/{careful}")).await?;
    assert_eq!(rep["missed"], 0);
    assert_eq!(rep["cheats"], 0);
    let (_, _, rep) = node.query(&format!("/reputation/{plain}")).await?;
    assert_eq!(rep["agreed"], TASKS);
    Ok(())
}
