//! A colluding pair wins a quorum on a real chain, and a watcher overturns
//! it: two `--cheat` workers falsify every output the same way and outvote
//! the honest third, and `compute job submit` accepts what the chain
//! settled. Then a watcher that is no worker disputes: with `compute job
//! dispute`, or as the `compute-sandbox --watch` service that re-runs
//! every settlement itself. Every validator re-runs the task in its sandbox
//! (the referee): the result is corrected to the true count, both colluders
//! are slashed, the honest worker is restored, and the watcher gets its
//! bond back with a bounty. Real processes on 127.0.0.1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_proto::{sha3_256, AccountId};
use compute_tests::{
    cli_json, cli_new_key, primes_follow_args, write_primes_inputs, Gateway, NetConfig, Node,
    WorkerOptions, WorkerProcess,
};
use serde_json::{json, Value};

const TASKS: u64 = 2;
const SPAN: u64 = 20_000;
const BALANCE: u64 = 10_000_000;
const STAKE: u64 = 50_000;
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// A chain with an honest worker, a colluding pair, and a funded watcher
/// key; `watching` also starts `compute-sandbox --watch` with that key.
struct Net {
    dir: tempfile::TempDir,
    node: Node,
    gateway: Gateway,
    honest: WorkerProcess,
    colluders: Vec<WorkerProcess>,
    watcher: AccountId,
    _service: Option<WorkerProcess>,
}

impl Net {
    async fn start(watching: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("compute-watch-")
            .tempdir()?;
        let mut config = NetConfig::funded(&[], 0);
        config.balances = Vec::new();
        for name in ["requester", "honest", "colluder-a", "colluder-b", "watcher"] {
            let path = dir.path().join(format!("{name}.json"));
            config.balances.push((cli_new_key(&path).await?, BALANCE));
        }
        let watcher = config.balances[4].0;
        let node = Node::start(config).await?;
        let gateway = Gateway::start(&node.rpc_url(), &[])?;
        let key = |name: &str| dir.path().join(format!("{name}.json"));
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
        let service = if watching {
            let options = WorkerOptions {
                extra_args: ["--watch", "--watch-sample", "100"]
                    .map(str::to_owned)
                    .to_vec(),
                ..options(false)
            };
            Some(WorkerProcess::start(&gateway.url(), &key("watcher"), options).await?)
        } else {
            None
        };
        Ok(Self {
            dir,
            node,
            gateway,
            honest,
            colluders,
            watcher,
            _service: service,
        })
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.json"))
    }

    /// Submits the primes job and follows it; returns its summary and
    /// inputs.
    async fn submit(&self) -> Result<(Value, Vec<Vec<u8>>)> {
        let wasm = self.dir.path().join("primes.wasm");
        std::fs::write(&wasm, compute_jobs::PRIMES_WASM)?;
        let inputs_dir = self.dir.path().join("inputs");
        let inputs = write_primes_inputs(&inputs_dir, TASKS, SPAN)?;
        let out = self.dir.path().join("out");
        let args = primes_follow_args(
            &wasm,
            &inputs_dir,
            &self.key("requester"),
            Duration::from_secs(120),
            &out,
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let summary = cli_json(&self.node, &self.gateway, &args, Duration::from_secs(140)).await?;
        ensure!(summary["status"] == "completed", "{summary}");
        // The pair won: what the chain settled is not the true count.
        let settled = std::fs::read(out.join("00000.out"))?;
        ensure!(
            settled != compute_jobs::primes::job(&inputs[0]),
            "the colluders did not win task 0"
        );
        Ok((summary, inputs))
    }

    async fn query(&self, path: &str) -> Result<Value> {
        Ok(self.node.query(path).await?.2)
    }

    /// Checks that task `index` of `job` holds the true result for `input`,
    /// paid to the honest worker, and that both colluders were slashed.
    async fn check_overturned(&self, job: &str, index: usize, input: &[u8]) -> Result<()> {
        let view = self.query(&format!("/job/{job}")).await?;
        let completion = &view["tasks"][index]["completion"];
        let truth = compute_jobs::primes::job(input);
        ensure!(
            completion["result_hash"] == hex::encode(sha3_256(&truth)),
            "{completion}"
        );
        ensure!(
            completion["dispute"]["status"] == "overturned",
            "{completion}"
        );
        ensure!(
            completion["workers"] == json!([self.honest.account.to_hex()]),
            "{completion}"
        );
        for colluder in &self.colluders {
            let worker = self.query(&format!("/worker/{}", colluder.account)).await?;
            let stake = worker["stake"].as_u64().context("stake")?;
            ensure!(stake < STAKE * 9 / 10, "colluder not slashed: {worker}");
        }
        Ok(())
    }

    /// The watcher's reputation and balance.
    async fn watcher_record(&self) -> Result<(Value, u64)> {
        let rep = self.query(&format!("/reputation/{}", self.watcher)).await?;
        let account = self.query(&format!("/account/{}", self.watcher)).await?;
        Ok((rep, account["balance"].as_u64().context("balance")?))
    }
}

async fn within(scenario: impl std::future::Future<Output = Result<()>>) {
    match tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    }
}

#[tokio::test]
async fn a_dispute_from_the_cli_overturns_a_colluding_quorum() {
    within(async {
        let net = Net::start(false).await?;
        let (summary, inputs) = net.submit().await?;
        let job = summary["job"].as_str().context("job id")?.to_owned();
        ensure!(
            summary["not_final"].as_array().map(Vec::len) == Some(TASKS as usize),
            "{summary}"
        );
        let watcher_key = net.key("watcher");
        let dispute = cli_json(
            &net.node,
            &net.gateway,
            &[
                "job",
                "dispute",
                &job,
                "0",
                "--key",
                watcher_key.to_str().context("path")?,
            ],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(dispute["dispute"]["status"] == "overturned", "{dispute}");
        ensure!(dispute["dispute"]["final"] == true, "{dispute}");
        net.check_overturned(&job, 0, &inputs[0]).await?;
        // Restored on task 0; task 1, undisputed, still counts it a cheat.
        let rep = net
            .query(&format!("/reputation/{}", net.honest.account))
            .await?;
        ensure!(rep["agreed"] == 1 && rep["cheats"] == 1, "{rep}");
        let (rep, balance) = net.watcher_record().await?;
        ensure!(rep["cheaters_reported"] == 2, "{rep}");
        ensure!(balance > BALANCE, "the watcher earned no bounty");

        // A second dispute of the judged task is refused with its code.
        let again = compute_tests::run_cli(
            [
                "job",
                "dispute",
                &job,
                "0",
                "--key",
                watcher_key.to_str().context("path")?,
                "--node",
                &net.node.rpc_url(),
                "--gateway",
                &net.gateway.url(),
            ],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(!again.status.success(), "a second dispute was accepted");
        ensure!(
            again.stderr.contains("judged by the referee"),
            "{}",
            again.stderr
        );

        // `job results` now writes the true count for task 0.
        let fixed = net.dir.path().join("fixed");
        let results = cli_json(
            &net.node,
            &net.gateway,
            &[
                "job",
                "results",
                &job,
                "--out",
                fixed.to_str().context("path")?,
            ],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(results["exit_code"] == 0, "{results}");
        ensure!(
            std::fs::read(fixed.join("00000.out"))? == compute_jobs::primes::job(&inputs[0]),
            "{results}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_watcher_service_overturns_every_result_a_colluding_pair_settled() {
    within(async {
        let net = Net::start(true).await?;
        let (summary, inputs) = net.submit().await?;
        let job = summary["job"].as_str().context("job id")?.to_owned();
        // The watcher re-runs each settlement and disputes: wait (bounded)
        // for the referee to overturn both.
        let mut overturned = 0;
        for _ in 0..120 {
            overturned = net.query("/stats").await?["results_overturned"]
                .as_u64()
                .unwrap_or(0);
            if overturned == TASKS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure!(
            overturned == TASKS,
            "{overturned} of {TASKS} results overturned"
        );
        for (index, input) in inputs.iter().enumerate() {
            net.check_overturned(&job, index, input).await?;
        }
        let (rep, balance) = net.watcher_record().await?;
        ensure!(rep["cheaters_reported"] == 4, "{rep}");
        ensure!(rep["support_fuel"].as_u64() > Some(0), "{rep}");
        ensure!(balance > BALANCE, "the watcher earned no bounty");
        Ok(())
    })
    .await;
}
