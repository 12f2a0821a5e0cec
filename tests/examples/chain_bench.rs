//! Committed transactions per second through a single-validator chain:
//! compute-abci against CometBFT's own kvstore (`abci-cli kvstore`), under
//! the same CometBFT configuration and the same load generator.
//!
//! ```sh
//! scripts/bench-chain.sh [txs] [senders] [runs]
//! # or, once built:
//! "$CARGO_TARGET_DIR/debug/examples/chain_bench" [txs] [senders] [runs]
//! ```
//!
//! Both chains get one generated home: one genesis (the funded senders,
//! which the kvstore ignores), 300 ms blocks, a mempool of 50,000
//! transactions, and the harness's other settings. `senders` tasks share
//! `txs` transactions, prepared (signed) before the clock starts; each task
//! sends its own in order with `broadcast_tx_sync`, waiting for CheckTx's
//! answer before the next. For compute-abci a sender is one funded account
//! sending transfers in nonce order; for the kvstore it sends `key=value`
//! with unique keys. The clock runs from the first send until the
//! application reports every transaction committed (compute-abci's `/stats`
//! `transfers`, the kvstore's `size` in `/abci_info`). Runs alternate,
//! kvstore first, on a fresh home each time.
//!
//! A measurement, not a test: it prints a markdown table for
//! docs/BENCHMARKS.md. Every process it starts listens on 127.0.0.1 only
//! and is killed when its run ends, fails or is interrupted.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use compute_client::{ChainClient, Query};
use compute_proto::{SigningKey, TxBuilder};
use compute_tests::testnet::set_config_in_section;
use compute_tests::{
    cometbft_init, cometbft_tool, free_ports, grouped, set_fast_blocks, transfer, workspace_bin,
    write_genesis, NetConfig,
};
use serde_json::{json, Value};
use tempfile::TempDir;
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient};

/// CometBFT's `timeout_commit`: one block about every 300 ms.
const TIMEOUT_COMMIT_MS: u64 = 300;
/// CometBFT's `[mempool] size`, in transactions.
const MEMPOOL_SIZE_TXS: u64 = 50_000;
const TXS_DEFAULT: u64 = 10_000;
const SENDERS_DEFAULT: u64 = 100;
const RUNS_DEFAULT: u64 = 1;
/// Every transaction of a run fits in the mempool at once, so a full
/// mempool never turns a sender away.
const TXS_MAX: u64 = MEMPOOL_SIZE_TXS;
/// Each sender holds one RPC connection; CometBFT's `[rpc]
/// max_open_connections` is 900, and the pollers need a few more.
const SENDERS_MAX: u64 = 800;
const RUNS_MAX: u64 = 20;
/// A rate below which a run is declared stuck: sending and committing are
/// each given `WAIT_BASE` plus one second per this many transactions.
const STUCK_TXS_PER_S: u64 = 20;
const WAIT_BASE: Duration = Duration::from_secs(60);
/// How long a fresh chain may take to listen and commit its first block.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the committed count is read. It bounds the error of the
/// committed time; a block takes 300 ms.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Block metas per `/blockchain` call (CometBFT's own cap).
const BLOCKCHAIN_PAGE_BLOCKS: u64 = 20;
/// Bytes of a process log shown when a run fails.
const LOG_TAIL_BYTES: u64 = 3_000;

/// The ABCI application CometBFT runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppKind {
    Kvstore,
    Compute,
}

impl AppKind {
    fn name(self) -> &'static str {
        match self {
            AppKind::Kvstore => "kvstore",
            AppKind::Compute => "compute-abci",
        }
    }
}

/// The programs a run starts, found once before any of them runs.
struct Programs {
    cometbft: PathBuf,
    abci_cli: PathBuf,
    compute_abci: PathBuf,
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Figures {
    txs: u64,
    /// From the first send until the last CheckTx answer.
    accepted: Duration,
    /// From the first send until the application reports all committed.
    committed: Duration,
    /// Blocks that carried at least one of the run's transactions.
    blocks: u64,
    /// The most transactions one block carried.
    largest_block_txs: u64,
}

impl Figures {
    fn accepted_per_s(&self) -> f64 {
        self.txs as f64 / self.accepted.as_secs_f64()
    }

    fn committed_per_s(&self) -> f64 {
        self.txs as f64 / self.committed.as_secs_f64()
    }
}

/// A single-validator chain on loopback: `cometbft` over one ABCI
/// application, in a temporary home. Dropping it kills both processes.
struct Chain {
    kind: AppKind,
    home: TempDir,
    rpc_port: u16,
    // Started order; killed in reverse. Behind a mutex so that waits taking
    // `&self` can notice a process that exited.
    processes: Mutex<Vec<(&'static str, Child)>>,
}

impl Chain {
    /// Writes the shared configuration into a fresh home, starts the
    /// application and CometBFT, and returns once the application has
    /// committed block 1.
    async fn start(kind: AppKind, config: &NetConfig, programs: &Programs) -> Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("chain-bench-")
            .tempdir()
            .context("create a temporary home")?;
        let cometbft_home = home.path().join("cometbft");
        cometbft_init(&cometbft_home)?;
        write_genesis(&cometbft_home, config)?;
        set_fast_blocks(&cometbft_home, config.timeout_commit_ms)?;
        set_config_in_section(
            &cometbft_home.join("config/config.toml"),
            "mempool",
            &[("size", MEMPOOL_SIZE_TXS.to_string())],
        )?;
        let [rpc_port, abci_port, p2p_port] = free_ports::<3>();
        let abci_addr = format!("tcp://127.0.0.1:{abci_port}");
        let chain = Self {
            kind,
            home,
            rpc_port,
            processes: Mutex::new(Vec::new()),
        };

        let mut app = match kind {
            AppKind::Kvstore => {
                let mut command = Command::new(&programs.abci_cli);
                command
                    .arg("kvstore")
                    .arg("--persist")
                    .arg(chain.home.path().join("kvstore"))
                    .arg("--address")
                    .arg(&abci_addr);
                command
            }
            AppKind::Compute => {
                let mut command = Command::new(&programs.compute_abci);
                command
                    .arg("--home")
                    .arg(chain.home.path().join("abci"))
                    .arg("--addr")
                    .arg(&abci_addr)
                    .env("RUST_LOG", "info");
                command
            }
        };
        chain.spawn("app", &mut app)?;
        chain.wait_listening(abci_port).await?;

        let mut cometbft = Command::new(&programs.cometbft);
        cometbft
            .arg("node")
            .arg("--home")
            .arg(&cometbft_home)
            .arg("--proxy_app")
            .arg(&abci_addr)
            .arg("--rpc.laddr")
            .arg(format!("tcp://127.0.0.1:{rpc_port}"))
            .arg("--p2p.laddr")
            .arg(format!("tcp://127.0.0.1:{p2p_port}"))
            .arg("--p2p.pex=false")
            .arg("--log_level")
            .arg("info");
        chain.spawn("cometbft", &mut cometbft)?;

        let client = &chain.client();
        chain
            .poll(
                "the application commits block 1",
                START_TIMEOUT,
                || async move {
                    // Not reachable yet while CometBFT starts: keep waiting.
                    match client.abci_info().await {
                        Ok(info) if info.last_block_height.value() >= 1 => Ok(Ok(())),
                        Ok(info) => Ok(Err(format!("at height {}", info.last_block_height))),
                        Err(e) => Ok(Err(format!("RPC not answering: {e}"))),
                    }
                },
            )
            .await?;
        Ok(chain)
    }

    fn spawn(&self, name: &'static str, command: &mut Command) -> Result<()> {
        let log = fs::File::create(self.log_path(name))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {name} for {}", self.kind.name()))?;
        self.lock().push((name, child));
        Ok(())
    }

    async fn wait_listening(&self, port: u16) -> Result<()> {
        self.poll(
            "the application listens for CometBFT",
            START_TIMEOUT,
            || async move {
                Ok(match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("127.0.0.1:{port}: {e}")),
                })
            },
        )
        .await
    }

    fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    fn client(&self) -> HttpClient {
        HttpClient::new(self.rpc_url().as_str()).expect("a loopback URL is valid")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Child)>> {
        self.processes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.home.path().join(format!("{name}.log"))
    }

    /// Fails, with the end of its log, when a started process has exited.
    fn check_running(&self) -> Result<()> {
        for (name, child) in self.lock().iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} of the {} chain exited with {status}:\n{}",
                    self.kind.name(),
                    tail(&self.log_path(name))
                );
            }
        }
        Ok(())
    }

    /// The ends of both logs, for a failure message.
    fn log_tails(&self) -> String {
        ["cometbft", "app"]
            .iter()
            .map(|name| format!("--- {name} ---\n{}", tail(&self.log_path(name))))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Calls `check` every [`POLL_INTERVAL`] until it answers `Ok(value)`,
    /// at most `timeout` long and at most as many times as that allows.
    /// `check` answers `Err(progress)` to keep waiting; the last progress
    /// goes into the timeout error. A process that exits ends the wait.
    async fn poll<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<std::result::Result<T, String>>>,
    {
        let attempts_max = timeout.as_millis() / POLL_INTERVAL.as_millis() + 1;
        let deadline = Instant::now() + timeout;
        let mut progress = String::from("never checked");
        for _ in 0..attempts_max {
            self.check_running()?;
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, check()).await {
                Ok(answer) => match answer? {
                    Ok(value) => return Ok(value),
                    Err(now) => progress = now,
                },
                Err(_) => progress = format!("the last check outlasted {timeout:?}"),
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        bail!(
            "{} chain: {what}: not reached within {timeout:?} ({progress})\n{}",
            self.kind.name(),
            self.log_tails()
        )
    }

    /// How many transactions the application has committed: compute-abci's
    /// `/stats` `transfers` (failing if any transaction failed in a block),
    /// the kvstore's `size` (one per transaction, counted as it executes).
    /// Also returns the application's height.
    async fn committed(&self, client: &HttpClient, chain: &ChainClient) -> Result<(u64, u64)> {
        match self.kind {
            AppKind::Compute => {
                let stats = chain.stats().await.context("query /stats")?;
                ensure!(
                    stats.txs_failed == 0,
                    "{} transactions failed in blocks",
                    stats.txs_failed
                );
                let height = u64::try_from(stats.height).context("negative height")?;
                Ok((stats.transfers, height))
            }
            AppKind::Kvstore => {
                let info = client.abci_info().await.context("abci_info")?;
                let data: Value = serde_json::from_str(&info.data)
                    .with_context(|| format!("kvstore info '{}'", info.data))?;
                let size = data["size"]
                    .as_u64()
                    .with_context(|| format!("no size in kvstore info '{}'", info.data))?;
                Ok((size, info.last_block_height.value()))
            }
        }
    }

    /// Sends every sender's transactions, all senders at once, then waits
    /// until all are committed; returns the figures.
    async fn measure(&self, batches: &[Vec<Vec<u8>>], chain_id: &str) -> Result<Figures> {
        let txs: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let wait = WAIT_BASE + Duration::from_secs(txs / STUCK_TXS_PER_S);
        let client = &self.client();
        let chain = &ChainClient::new(&self.rpc_url(), chain_id.to_owned())
            .context("a loopback URL is valid")?;
        let (committed_before, _) = self.committed(client, chain).await?;
        ensure!(
            committed_before == 0,
            "a fresh chain counts {committed_before} committed transactions"
        );
        let start_height = client
            .status()
            .await
            .context("status")?
            .sync_info
            .latest_block_height
            .value();
        // Clients and copies are made before the clock starts.
        let mut work: Vec<(HttpClient, Vec<Vec<u8>>)> =
            batches.iter().map(|b| (self.client(), b.clone())).collect();

        let started = Instant::now();
        let mut senders = tokio::task::JoinSet::new();
        for (sender, (client, batch)) in work.drain(..).enumerate() {
            senders.spawn(async move {
                for (seq, tx) in batch.into_iter().enumerate() {
                    let answer = client
                        .broadcast_tx_sync(tx)
                        .await
                        .with_context(|| format!("sender {sender}, transaction {seq}"))?;
                    if answer.code.is_err() {
                        bail!(
                            "CheckTx refused sender {sender}'s transaction {seq}: code {}, {}",
                            answer.code.value(),
                            answer.log
                        );
                    }
                }
                Ok(())
            });
        }
        let all_sent = async {
            while let Some(done) = senders.join_next().await {
                done.context("a sender panicked")??;
            }
            Ok::<(), anyhow::Error>(())
        };
        match tokio::time::timeout(wait, all_sent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // A refused request is most often a process that died (CometBFT
                // stops a moment after its application): name it if so.
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.check_running()?;
                return Err(e.context(format!("{} chain: sending", self.kind.name())));
            }
            Err(_) => bail!(
                "{} chain: not every transaction was answered within {wait:?}\n{}",
                self.kind.name(),
                self.log_tails()
            ),
        }
        let accepted = started.elapsed();
        self.check_running()?;

        let end_height = self
            .poll("every transaction committed", wait, || async move {
                let (done, height) = self.committed(client, chain).await?;
                ensure!(done <= txs, "{done} committed, more than the {txs} sent");
                Ok(if done == txs {
                    Ok(height)
                } else {
                    Err(format!("{done} of {txs} committed at height {height}"))
                })
            })
            .await?;
        let committed = started.elapsed();

        let (blocks, largest_block_txs, in_blocks) =
            count_blocks(client, start_height, end_height).await?;
        ensure!(
            in_blocks == txs,
            "blocks {}..={end_height} carry {in_blocks} transactions, not {txs}",
            start_height + 1
        );
        Ok(Figures {
            txs,
            accepted,
            committed,
            blocks,
            largest_block_txs,
        })
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let mut processes = self.lock();
        while let Some((_, mut child)) = processes.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Blocks after `start_height` up to `end_height`: how many carried a
/// transaction, the most one carried, and how many they carried in all.
async fn count_blocks(
    client: &HttpClient,
    start_height: u64,
    end_height: u64,
) -> Result<(u64, u64, u64)> {
    let (mut blocks, mut largest, mut total) = (0u64, 0u64, 0u64);
    let mut low = start_height + 1;
    let pages_max = (end_height.saturating_sub(start_height)) / BLOCKCHAIN_PAGE_BLOCKS + 1;
    for _ in 0..pages_max {
        if low > end_height {
            break;
        }
        let high = end_height.min(low + BLOCKCHAIN_PAGE_BLOCKS - 1);
        let page = client
            .blockchain(Height::try_from(low)?, Height::try_from(high)?)
            .await
            .with_context(|| format!("blockchain {low}..={high}"))?;
        ensure!(
            page.block_metas.len() as u64 == high - low + 1,
            "blockchain {low}..={high} returned {} blocks",
            page.block_metas.len()
        );
        for meta in &page.block_metas {
            let txs = u64::try_from(meta.num_txs).context("negative num_txs")?;
            if txs > 0 {
                blocks += 1;
                largest = largest.max(txs);
                total += txs;
            }
        }
        low = high + 1;
    }
    ensure!(
        low > end_height,
        "blocks up to {end_height} not all counted"
    );
    Ok((blocks, largest, total))
}

/// The end of a log file.
fn tail(path: &Path) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// How many of `txs` the sender `sender` of `senders` sends: an even
/// share, the first senders taking one more when it does not divide.
fn share(txs: u64, senders: u64, sender: u64) -> u64 {
    txs / senders + u64::from(sender < txs % senders)
}

fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn arg(args: &[String], index: usize, name: &str, default: u64) -> Result<u64> {
    match args.get(index) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .with_context(|| format!("{name} '{text}' is not a whole number")),
    }
}

const USAGE: &str = "usage: chain_bench [txs (10000)] [senders (100)] [runs (1)]";

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    ensure!(args.len() <= 3, "{USAGE}");
    let txs = arg(&args, 0, "txs", TXS_DEFAULT)?;
    let senders = arg(&args, 1, "senders", SENDERS_DEFAULT)?;
    let runs = arg(&args, 2, "runs", RUNS_DEFAULT)?;
    ensure!(
        (1..=TXS_MAX).contains(&txs),
        "txs must be 1 to {TXS_MAX} (the mempool's size)"
    );
    ensure!(
        (1..=SENDERS_MAX.min(txs)).contains(&senders),
        "senders must be 1 to {} (at most one per transaction)",
        SENDERS_MAX.min(txs)
    );
    ensure!(
        (1..=RUNS_MAX).contains(&runs),
        "runs must be 1 to {RUNS_MAX}"
    );

    let programs = Programs {
        cometbft: cometbft_tool("cometbft"),
        abci_cli: cometbft_tool("abci-cli"),
        compute_abci: workspace_bin("compute-abci"),
    };

    // One funded account per sender; the kvstore ignores the genesis
    // accounts, and both chains get the same genesis and configuration.
    let keys: Vec<SigningKey> = (0..senders)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_seed(seed)
        })
        .collect();
    let sink = SigningKey::from_seed([99; 32]).account();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let mut config = NetConfig::funded(&refs, 1_000_000_000);
    config.timeout_commit_ms = TIMEOUT_COMMIT_MS;
    // Every sender's transactions may wait in the mempool at once.
    config.params = json!({"max_pending_txs_per_account": share(txs, senders, 0)});

    let builder = TxBuilder::new(config.chain_id.clone());
    let transfers: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .zip(0u64..)
        .map(|(key, sender)| {
            (0..share(txs, senders, sender))
                .map(|nonce| builder.sign(key, nonce, transfer(&sink, 1)))
                .collect()
        })
        .collect();
    let puts: Vec<Vec<Vec<u8>>> = (0..senders)
        .map(|sender| {
            (0..share(txs, senders, sender))
                .map(|seq| format!("bench-{sender}-{seq}=value-{seq}").into_bytes())
                .collect()
        })
        .collect();
    let mean_bytes = |batches: &[Vec<Vec<u8>>]| {
        let bytes: usize = batches.iter().flatten().map(Vec::len).sum();
        bytes as f64 / txs as f64
    };
    println!(
        "{txs} transactions from {senders} senders (broadcast_tx_sync, each sender waiting for \
         CheckTx before its next), {TIMEOUT_COMMIT_MS} ms blocks, mempool {MEMPOOL_SIZE_TXS}; \
         mean transaction {:.0} bytes (kvstore), {:.0} bytes (compute-abci transfer)",
        mean_bytes(&puts),
        mean_bytes(&transfers)
    );
    println!();

    let mut results: Vec<(Figures, Figures)> = Vec::new();
    for run in 1..=runs {
        let mut pair = Vec::with_capacity(2);
        for (kind, batches) in [(AppKind::Kvstore, &puts), (AppKind::Compute, &transfers)] {
            let chain = Chain::start(kind, &config, &programs).await?;
            let figures = chain.measure(batches, &config.chain_id).await?;
            drop(chain);
            eprintln!(
                "run {run}/{runs} {:>12}: accepted in {:.2} s ({:.0} tx/s), committed in {:.2} s \
                 ({:.0} tx/s), {} blocks, largest {} txs",
                kind.name(),
                figures.accepted.as_secs_f64(),
                figures.accepted_per_s(),
                figures.committed.as_secs_f64(),
                figures.committed_per_s(),
                figures.blocks,
                figures.largest_block_txs
            );
            pair.push(figures);
        }
        results.push((pair[0], pair[1]));
    }

    println!(
        "| run | kvstore committed tx/s | compute-abci committed tx/s | compute-abci / kvstore \
         | kvstore accepted tx/s | compute-abci accepted tx/s | kvstore blocks | compute-abci blocks |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, (kv, compute)) in results.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.2}x | {} | {} | {} | {} |",
            i + 1,
            grouped(kv.committed_per_s()),
            grouped(compute.committed_per_s()),
            compute.committed_per_s() / kv.committed_per_s(),
            grouped(kv.accepted_per_s()),
            grouped(compute.accepted_per_s()),
            kv.blocks,
            compute.blocks
        );
    }
    let column = |f: &dyn Fn(&(Figures, Figures)) -> f64| {
        let mut values: Vec<f64> = results.iter().map(f).collect();
        median(&mut values)
    };
    println!(
        "| median | {} | {} | {:.2}x | {} | {} | {} | {} |",
        grouped(column(&|(kv, _)| kv.committed_per_s())),
        grouped(column(&|(_, c)| c.committed_per_s())),
        column(&|(kv, c)| c.committed_per_s() / kv.committed_per_s()),
        grouped(column(&|(kv, _)| kv.accepted_per_s())),
        grouped(column(&|(_, c)| c.accepted_per_s())),
        grouped(column(&|(kv, _)| kv.blocks as f64)),
        grouped(column(&|(_, c)| c.blocks as f64))
    );
    println!();
    println!(
        "Blocks: those that carried the run's transactions. The median row takes each column's \
         median (the ratio's is the median of the per-run ratios)."
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // Interrupted, the benchmark future is dropped, and with it the running
    // chain, whose drop kills its processes.
    compute_tests::until_signal(run()).await
}
