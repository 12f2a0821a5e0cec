//! Test harness: a real single-validator network on loopback.
//!
//! [`Node`] starts a real `cometbft` and a real `compute-abci` on free
//! 127.0.0.1 ports in a temporary home, with fast blocks, and stops both when
//! dropped (also when a test fails; their log tails are then printed). Every
//! wait is bounded in time. When `cometbft` is missing the harness fails with
//! a message naming `scripts/install-cometbft.sh`; it never skips.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use compute_client::{ChainClient, Query};
use compute_proto::views::AccountView;
use compute_proto::{pb, AccountId, SigningKey, TxBuilder};
use serde_json::{json, Value};
use tempfile::TempDir;
use tendermint_rpc::{Client, HttpClient};

pub mod testnet;
pub use testnet::{Testnet, TestnetConfig};

/// Keys with local nonces, so that one key can queue several transactions
/// before a block; the nonce of a key never used here is read from the chain.
pub struct Signer<'n> {
    /// The node the transactions go to.
    pub node: &'n Node,
    nonces: std::collections::BTreeMap<AccountId, u64>,
}

impl<'n> Signer<'n> {
    /// A signer that knows no nonce yet.
    pub fn new(node: &'n Node) -> Self {
        Self {
            node,
            nonces: Default::default(),
        }
    }

    /// The key's next nonce: the local count, else the chain's.
    pub async fn next(&self, key: &SigningKey) -> Result<u64> {
        match self.nonces.get(&key.account()) {
            Some(n) => Ok(*n),
            None => self.node.nonce(&key.account()).await,
        }
    }

    /// Signs `msg` with the key's next nonce and counts it as used.
    pub async fn sign(&mut self, key: &SigningKey, msg: pb::tx_body::Msg) -> Result<Vec<u8>> {
        let nonce = self.next(key).await?;
        self.nonces.insert(key.account(), nonce + 1);
        Ok(self.node.tx_builder().sign(key, nonce, msg))
    }

    /// Sends `msg` with `broadcast_tx_sync`; returns CheckTx's code and log.
    /// The nonce advances only when CheckTx accepts.
    pub async fn send(&mut self, key: &SigningKey, msg: pb::tx_body::Msg) -> Result<(u32, String)> {
        let nonce = self.next(key).await?;
        let tx = self.node.tx_builder().sign(key, nonce, msg);
        let answer = self.node.client().broadcast_tx_sync(tx).await?;
        let code = answer.code.value();
        if code == 0 {
            self.nonces.insert(key.account(), nonce + 1);
        }
        Ok((code, answer.log))
    }

    /// Sends `msg`, requires it to pass CheckTx and its block, and returns
    /// that block's height once the next one is committed.
    pub async fn commit(&mut self, key: &SigningKey, msg: pb::tx_body::Msg) -> Result<u64> {
        let nonce = self.next(key).await?;
        let tx = self.node.tx_builder().sign(key, nonce, msg);
        let result = self.node.client().broadcast_tx_commit(tx).await?;
        anyhow::ensure!(
            result.check_tx.code.value() == 0,
            "check: {}",
            result.check_tx.log
        );
        anyhow::ensure!(
            result.tx_result.code.value() == 0,
            "finalize: {}",
            result.tx_result.log
        );
        self.nonces.insert(key.account(), nonce + 1);
        let height = result.height.value();
        self.node
            .wait_for_height(height + 1, Duration::from_secs(20))
            .await?;
        Ok(height)
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A CometBFT tool (`cometbft` or `abci-cli`): `$COMETBFT_BIN`'s directory,
/// the project's `.tools/bin`, or `PATH`.
pub fn cometbft_tool(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(bin) = std::env::var_os("COMETBFT_BIN") {
        let bin = PathBuf::from(bin);
        if name == "cometbft" {
            candidates.push(bin.clone());
        }
        if let Some(dir) = bin.parent() {
            candidates.push(dir.join(name));
        }
    }
    candidates.push(repo_root().join(".tools/bin").join(name));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` was not found (looked in $COMETBFT_BIN, .tools/bin and PATH): \
             run scripts/install-cometbft.sh first"
            )
        })
}

/// A binary of this workspace, built next to the test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins, \
         which scripts/test.sh does)",
        path.display()
    );
    path
}

/// `N` distinct TCP ports on 127.0.0.1 that were free a moment ago. The
/// listeners are held until all are chosen, so the kernel cannot hand the
/// same ephemeral port out twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0u16; N];
    ports.copy_from_slice(&free_port_list(N));
    ports
}

/// `count` distinct free loopback ports, as [`free_ports`] finds them.
pub fn free_port_list(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound address").port())
        .collect()
}

/// What a test network starts with.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The chain id.
    pub chain_id: String,
    /// Genesis balances.
    pub balances: Vec<(AccountId, u64)>,
    /// Genesis parameter overrides (a JSON object).
    pub params: Value,
    /// CometBFT's `timeout_commit`, in milliseconds.
    pub timeout_commit_ms: u64,
}

impl NetConfig {
    /// A chain with the given funded keys.
    pub fn funded(keys: &[&SigningKey], balance: u64) -> Self {
        Self {
            chain_id: "compute-test".to_owned(),
            balances: keys.iter().map(|k| (k.account(), balance)).collect(),
            params: json!({}),
            timeout_commit_ms: 150,
        }
    }
}

/// Waits until compute-abci has committed block 1. CometBFT reports a
/// height once it stored the block, a moment before the application commits
/// it; queries read the last commit, which holds the genesis writes only
/// from block 1 on.
pub async fn wait_for_first_commit(chain: &ChainClient) -> Result<()> {
    poll_until(
        "compute-abci commits its first block",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let stats = chain.stats().await?;
            Ok((stats.height >= 1).then_some(()))
        },
    )
    .await
}

/// A running single-validator network: `cometbft` plus `compute-abci`.
pub struct Node {
    home: TempDir,
    /// The chain id.
    pub chain_id: String,
    /// CometBFT's RPC port.
    pub rpc_port: u16,
    /// compute-abci's ABCI port.
    pub abci_port: u16,
    p2p_port: u16,
    // Behind a mutex so that waits taking `&self` can notice an early exit.
    cometbft: std::sync::Mutex<Option<Child>>,
    abci: Option<Child>,
}

impl Node {
    /// Initialises a home, writes genesis, and starts both processes; returns
    /// once the chain has committed a block.
    pub async fn start(config: NetConfig) -> Result<Self> {
        let home = tempfile::Builder::new().prefix("compute-net-").tempdir()?;
        let cometbft_home = home.path().join("cometbft");
        cometbft_init(&cometbft_home)?;
        write_genesis(&cometbft_home, &config)?;
        set_fast_blocks(&cometbft_home, config.timeout_commit_ms)?;
        let [rpc_port, abci_port, p2p_port] = free_ports::<3>();
        let mut node = Self {
            home,
            chain_id: config.chain_id,
            rpc_port,
            abci_port,
            p2p_port,
            cometbft: std::sync::Mutex::new(None),
            abci: None,
        };
        node.start_abci()?;
        node.start_cometbft()?;
        node.wait_for_height(1, Duration::from_secs(60)).await?;
        wait_for_first_commit(&node.chain()).await?;
        Ok(node)
    }

    /// The RPC URL of CometBFT.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// The ABCI address of compute-abci.
    pub fn abci_addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.abci_port)
    }

    /// A CometBFT RPC client.
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.rpc_url().as_str()).expect("valid loopback RPC URL")
    }

    /// The shared client of this chain (`compute-client`): typed queries and
    /// transactions signed for its chain id.
    pub fn chain(&self) -> ChainClient {
        ChainClient::new(&self.rpc_url(), self.chain_id.clone()).expect("valid loopback RPC URL")
    }

    /// The temporary home of both processes.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.home.path().join(format!("{name}.log"))
    }

    fn open_log(&self, name: &str) -> Result<fs::File> {
        Ok(fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?)
    }

    /// Starts compute-abci and waits until it accepts connections.
    pub fn start_abci(&mut self) -> Result<()> {
        let log = self.open_log("compute-abci")?;
        let child = Command::new(workspace_bin("compute-abci"))
            .arg("--home")
            .arg(self.home.path().join("abci"))
            .arg("--addr")
            .arg(self.abci_addr())
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn compute-abci")?;
        self.abci = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.abci_port)).is_err() {
            if let Some(status) = self.abci.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "compute-abci exited with {status}:\n{}",
                    self.log_tail("compute-abci")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "compute-abci did not listen within 30 s:\n{}",
                    self.log_tail("compute-abci")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts `cometbft node` (it connects to compute-abci at once).
    pub fn start_cometbft(&mut self) -> Result<()> {
        let log = self.open_log("cometbft")?;
        let child = Command::new(cometbft_tool("cometbft"))
            .arg("node")
            .arg("--home")
            .arg(self.home.path().join("cometbft"))
            .arg("--proxy_app")
            .arg(self.abci_addr())
            .arg("--rpc.laddr")
            .arg(format!("tcp://127.0.0.1:{}", self.rpc_port))
            .arg("--p2p.laddr")
            .arg(format!("tcp://127.0.0.1:{}", self.p2p_port))
            .arg("--p2p.pex=false")
            .arg("--log_level")
            .arg("info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn cometbft")?;
        *self.cometbft_child() = Some(child);
        Ok(())
    }

    /// Kills compute-abci with SIGKILL, as a crash would.
    pub fn kill_abci(&mut self) {
        kill(self.abci.take());
    }

    /// Kills cometbft with SIGKILL.
    pub fn kill_cometbft(&mut self) {
        kill(self.cometbft_child().take());
    }

    /// Whether cometbft is still running.
    pub fn cometbft_running(&self) -> bool {
        self.cometbft_child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn cometbft_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.cometbft.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last lines of a process log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        tail(&self.log_path(name), 4000)
    }

    /// Waits until the chain's latest height is at least `height`; returns it.
    pub async fn wait_for_height(&self, height: u64, timeout: Duration) -> Result<u64> {
        let client = self.client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(status) = client.status().await {
                let latest = status.sync_info.latest_block_height.value();
                if latest >= height {
                    return Ok(latest);
                }
            }
            let exited = !self.cometbft_running();
            if exited || Instant::now() > deadline {
                let why = if exited {
                    "cometbft exited"
                } else {
                    "timed out"
                };
                bail!(
                    "height {height} not reached ({why}, waited at most {timeout:?})\n--- cometbft ---\n{}\n--- compute-abci ---\n{}",
                    self.log_tail("cometbft"),
                    self.log_tail("compute-abci")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs an ABCI query; returns its code, log and parsed JSON value
    /// (`null` when the answer is empty), whatever the code.
    pub async fn query(&self, path: &str) -> Result<(u32, String, Value)> {
        let answer = self.chain().query_answer(path).await?;
        let value = if answer.value.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.value)?
        };
        Ok((answer.code, answer.log, value))
    }

    /// `/account/<id>`.
    pub async fn account(&self, id: &AccountId) -> Result<AccountView> {
        Ok(self.chain().account(id).await?)
    }

    /// The balance of `id`.
    pub async fn balance(&self, id: &AccountId) -> Result<u64> {
        Ok(self.account(id).await?.balance)
    }

    /// The next nonce of `id`.
    pub async fn nonce(&self, id: &AccountId) -> Result<u64> {
        Ok(self.chain().next_nonce(id).await?)
    }

    /// A transaction builder for this chain.
    pub fn tx_builder(&self) -> TxBuilder {
        TxBuilder::new(self.chain_id.clone())
    }

    /// Signs a transfer with the sender's next nonce from the chain.
    pub async fn signed_transfer(
        &self,
        from: &SigningKey,
        to: &AccountId,
        amount: u64,
    ) -> Result<Vec<u8>> {
        let nonce = self.nonce(&from.account()).await?;
        Ok(self.tx_builder().sign(from, nonce, transfer(to, amount)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        kill(self.cometbft_child().take());
        kill(self.abci.take());
        if std::thread::panicking() {
            eprintln!(
                "--- cometbft log tail ---\n{}\n--- compute-abci log tail ---\n{}",
                self.log_tail("cometbft"),
                self.log_tail("compute-abci")
            );
        }
    }
}

/// A `Transfer` message.
pub fn transfer(to: &AccountId, amount: u64) -> pb::tx_body::Msg {
    pb::tx_body::Msg::Transfer(pb::Transfer {
        to: to.0.to_vec(),
        amount,
    })
}

fn kill(child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text
}

/// `cometbft init --home <home>`: a node key, a validator key and a genesis
/// naming that validator.
pub fn cometbft_init(cometbft_home: &Path) -> Result<()> {
    let status = Command::new(cometbft_tool("cometbft"))
        .args(["init", "--home"])
        .arg(cometbft_home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run cometbft init")?;
    if !status.success() {
        bail!("cometbft init failed: {status}");
    }
    Ok(())
}

/// Writes the chain id and the `app_state` into CometBFT's genesis file.
pub fn write_genesis(cometbft_home: &Path, config: &NetConfig) -> Result<()> {
    let path = cometbft_home.join("config/genesis.json");
    let mut genesis: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    genesis["chain_id"] = json!(config.chain_id);
    let accounts: Vec<Value> = config
        .balances
        .iter()
        .map(|(id, balance)| json!({"address": id, "balance": balance}))
        .collect();
    genesis["app_state"] = json!({"accounts": accounts, "params": config.params});
    fs::write(&path, serde_json::to_vec_pretty(&genesis)?)?;
    Ok(())
}

/// Shortens CometBFT's consensus timeouts so tests see a block every
/// `timeout_commit_ms` or so, and lets CometBFT carry the largest
/// transaction any genesis may allow (docs/PARAMETERS.md, "Limits CometBFT
/// must match").
pub fn set_fast_blocks(cometbft_home: &Path, timeout_commit_ms: u64) -> Result<()> {
    use compute_proto::limits::{rpc_body_bytes_for, TX_BYTES_CEILING};
    let path = cometbft_home.join("config/config.toml");
    let text = fs::read_to_string(&path)?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let replaced = if line.starts_with("timeout_commit = ") {
            format!("timeout_commit = \"{timeout_commit_ms}ms\"")
        } else if line.starts_with("timeout_propose = ") {
            "timeout_propose = \"1s\"".to_owned()
        } else if line.starts_with("max_tx_bytes = ") {
            format!("max_tx_bytes = {TX_BYTES_CEILING}")
        } else if line.starts_with("max_body_bytes = ") {
            format!("max_body_bytes = {}", rpc_body_bytes_for(TX_BYTES_CEILING))
        } else {
            line.to_owned()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    fs::write(&path, out)?;
    Ok(())
}

/// Replays every block the node's CometBFT recorded through a fresh
/// in-process state machine (in memory) and checks that the app hash after
/// each height equals the one CometBFT wrote into the next block's header.
/// Returns the number of blocks replayed.
pub async fn replay_and_compare_app_hashes(node: &Node) -> Result<u64> {
    replay_chain(&node.client()).await
}

/// [`replay_and_compare_app_hashes`] against any node's RPC. Each block is
/// finalized with what CometBFT told the application: the last commit's
/// votes, paired with the validator set of the height before in its order
/// (an absent vote names no address), and the block's evidence.
pub async fn replay_chain(client: &HttpClient) -> Result<u64> {
    use compute_abci::store::MemStore;
    use compute_abci::{App, BlockInput, ConsensusInput, Vote};
    use std::collections::BTreeMap;
    use tendermint::block::Height;

    let genesis: tendermint::Genesis<Value> = client.genesis().await?;
    let validators: Vec<[u8; 32]> = genesis
        .validators
        .iter()
        .filter_map(|v| {
            v.pub_key.ed25519().map(|k| {
                let mut out = [0u8; 32];
                out.copy_from_slice(k.as_bytes());
                out
            })
        })
        .collect();
    let mut app = App::new(MemStore::new());
    let genesis_hash = app
        .init_chain(
            genesis.chain_id.as_str(),
            genesis.initial_height,
            &serde_json::to_vec(&genesis.app_state)?,
            &validators,
        )
        .map_err(|e| anyhow!("genesis refused in replay: {e}"))?;
    let latest = client.status().await?.sync_info.latest_block_height.value();
    let first = client.block(1u32).await?.block;
    if first.header.app_hash.as_bytes() != genesis_hash {
        bail!(
            "block 1 carries app hash {} but genesis hashes to {}",
            first.header.app_hash,
            hex::encode(genesis_hash)
        );
    }
    // Validator sets by the hash headers carry, fetched once each.
    let mut sets: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    let mut previous_set_hash: Option<Vec<u8>> = None;
    let mut block = first;
    for height in 1..latest {
        let txs: Vec<Vec<u8>> = block.data.clone();
        let mut votes = Vec::new();
        if let (Some(commit), Some(set_hash)) = (&block.last_commit, &previous_set_hash) {
            if !sets.contains_key(set_hash) {
                let set = client
                    .validators(Height::try_from(height - 1)?, tendermint_rpc::Paging::All)
                    .await?;
                let addresses = set
                    .validators
                    .iter()
                    .map(|v| v.address.as_bytes().to_vec())
                    .collect();
                sets.insert(set_hash.clone(), addresses);
            }
            let addresses = &sets[set_hash];
            if addresses.len() != commit.signatures.len() {
                bail!(
                    "the commit in block {height} has {} signatures for {} validators",
                    commit.signatures.len(),
                    addresses.len()
                );
            }
            for (address, sig) in addresses.iter().zip(&commit.signatures) {
                votes.push((address.clone(), sig.clone()));
            }
        }
        let signers: Vec<Vec<u8>> = votes
            .iter()
            .filter(|(_, sig)| sig.is_commit())
            .map(|(address, _)| address.clone())
            .collect();
        let mut consensus = ConsensusInput {
            votes: votes
                .iter()
                .map(|(address, sig)| Vote {
                    address: address.clone(),
                    missed: sig.is_absent(),
                })
                .collect(),
            misbehavior: Vec::new(),
        };
        for evidence in block.evidence.iter() {
            match evidence {
                tendermint::evidence::Evidence::DuplicateVote(dv) => {
                    consensus.misbehavior.push(compute_abci::Misbehavior {
                        kind: compute_abci::MisbehaviorKind::DuplicateVote,
                        address: dv.vote_a.validator_address.as_bytes().to_vec(),
                        height: i64::try_from(dv.vote_a.height.value())?,
                    });
                }
                other => bail!("block {height} holds evidence the replay cannot read: {other:?}"),
            }
        }
        let output = app.finalize_block_with(
            BlockInput {
                height: i64::try_from(height)?,
                proposer_address: block.header.proposer_address.as_bytes(),
                signer_addresses: &signers,
                txs: &txs,
                hash: block.header.hash().as_bytes(),
                time_seconds: block.header.time.unix_timestamp(),
            },
            &consensus,
        );
        app.commit();
        previous_set_hash = Some(block.header.validators_hash.as_bytes().to_vec());
        let next = client.block(Height::try_from(height + 1)?).await?.block;
        if next.header.app_hash.as_bytes() != output.app_hash {
            bail!(
                "app hash after height {height}: replay computed {}, CometBFT recorded {}",
                hex::encode(output.app_hash),
                next.header.app_hash
            );
        }
        block = next;
    }
    Ok(latest.saturating_sub(1))
}

/// Writes the inputs of a prime-counting job into `dir`, one file per task
/// over `span` numbers each, named in task order (the CLI takes a
/// directory's files by name), and returns them.
pub fn write_primes_inputs(dir: &Path, tasks: u64, span: u64) -> Result<Vec<Vec<u8>>> {
    fs::create_dir_all(dir)?;
    let mut inputs = Vec::new();
    for i in 0..tasks {
        let input = compute_jobs::primes::encode_input(i * span, (i + 1) * span);
        fs::write(dir.join(format!("task-{i:02}.bin")), &input)?;
        inputs.push(input);
    }
    Ok(inputs)
}

/// The arguments of `compute job submit` for the module `wasm` over the
/// input files in `inputs`, signed with the key file `key`, with the terms
/// the test jobs share: 3 replicas, a quorum of 2, 2e8 fuel, price 10 and a
/// deadline of 2000 blocks.
pub fn primes_submit_args(wasm: &Path, inputs: &Path, key: &Path) -> Vec<String> {
    primes_args(wasm, inputs, key).collect()
}

/// As [`primes_submit_args`], followed to the job's end for at most
/// `timeout`, writing the outputs into `out`.
pub fn primes_follow_args(
    wasm: &Path,
    inputs: &Path,
    key: &Path,
    timeout: Duration,
    out: &Path,
) -> Vec<String> {
    primes_args(wasm, inputs, key)
        .chain([
            "--timeout".to_owned(),
            timeout.as_secs().to_string(),
            "--out".to_owned(),
            out.display().to_string(),
        ])
        .collect()
}

fn primes_args(wasm: &Path, inputs: &Path, key: &Path) -> impl Iterator<Item = String> {
    let path = |p: &Path| p.display().to_string();
    [
        "job",
        "submit",
        &path(wasm),
        "--inputs",
        &path(inputs),
        "--key",
        &path(key),
        "--replicas",
        "3",
        "--quorum",
        "2",
        "--fuel",
        "200000000",
        "--price",
        "10",
        "--deadline-blocks",
        "2000",
    ]
    .map(str::to_owned)
    .into_iter()
}

/// A running `compute-node` gateway on free loopback ports, in a temporary
/// home, killed when dropped (its log tail is printed if a test fails).
pub struct Gateway {
    home: TempDir,
    /// The gRPC port.
    pub grpc_port: u16,
    /// The Prometheus metrics port.
    pub metrics_port: u16,
    rpc_url: String,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Gateway {
    /// Starts `compute-node` against CometBFT's RPC at `rpc_url`, with extra
    /// flags such as `--peer <url>`; returns once it accepts connections.
    pub fn start(rpc_url: &str, extra_args: &[String]) -> Result<Self> {
        let home = tempfile::Builder::new().prefix("compute-gw-").tempdir()?;
        let [grpc_port, metrics_port] = free_ports::<2>();
        let mut gateway = Self {
            home,
            grpc_port,
            metrics_port,
            rpc_url: rpc_url.to_owned(),
            extra_args: extra_args.to_vec(),
            child: None,
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    /// Kills the gateway and starts it again on the same home, ports and
    /// flags; returns once it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        kill(self.child.take());
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path().join("compute-node.log"))?;
        let grpc_port = self.grpc_port;
        let child = Command::new(workspace_bin("compute-node"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--rpc")
            .arg(&self.rpc_url)
            .arg("--home")
            .arg(self.home.path().join("gateway"))
            .args(&self.extra_args)
            .env("RUST_LOG", "info,compute_node=debug")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn compute-node")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("compute-node exited with {status}:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "compute-node did not listen within 30 s:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The gRPC URL, e.g. for `--peer`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The gateway's home directory (its blobs are in `blobs/`).
    pub fn home(&self) -> PathBuf {
        self.home.path().join("gateway")
    }

    /// The last lines of the gateway's log.
    pub fn log_tail(&self) -> String {
        tail(&self.home.path().join("compute-node.log"), 4000)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill(self.child.take());
        if std::thread::panicking() {
            eprintln!("--- compute-node log tail ---\n{}", self.log_tail());
        }
    }
}

/// How long a worker may take from spawn to its `worker <hex> ready` line
/// (it registers, which waits for a block, and opens its event stream).
pub const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `compute-sandbox` worker is started with.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// `--capacity`.
    pub capacity: u32,
    /// `--stake`.
    pub stake: u64,
    /// `--cheat`: reveal wrong results on purpose.
    pub cheat: bool,
    /// Further flags.
    pub extra_args: Vec<String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            capacity: 2,
            stake: 0,
            cheat: false,
            extra_args: Vec::new(),
        }
    }
}

/// A `compute-sandbox` worker process with a key and a home of its own in a
/// temporary directory. The home outlives the process, so a worker can be
/// killed and started again on the same journal. The process is killed when
/// this is dropped (its log tail is printed if a test fails).
pub struct WorkerProcess {
    dir: TempDir,
    gateway_url: String,
    options: WorkerOptions,
    /// The worker's account.
    pub account: AccountId,
    child: Option<Child>,
    /// Lines the current process printed on stdout.
    stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WorkerProcess {
    /// Copies `key_file` into a fresh temporary directory, starts the worker
    /// against `gateway_url`, and returns once it printed its ready line.
    pub async fn start(gateway_url: &str, key_file: &Path, options: WorkerOptions) -> Result<Self> {
        let account = compute_proto::keys::KeyFile::load(key_file)?.account();
        let dir = tempfile::Builder::new()
            .prefix("compute-worker-")
            .tempdir()?;
        // `fs::copy` keeps the 0600 mode, so the worker does not warn.
        fs::copy(key_file, dir.path().join("key.json"))
            .with_context(|| format!("copy {}", key_file.display()))?;
        let mut worker = Self {
            dir,
            gateway_url: gateway_url.to_owned(),
            options,
            account,
            child: None,
            stdout_lines: Default::default(),
        };
        worker.spawn()?;
        worker.wait_ready(WORKER_READY_TIMEOUT).await?;
        Ok(worker)
    }

    /// The worker's `--home`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The worker's journal directory.
    pub fn journal_dir(&self) -> PathBuf {
        self.home().join("journal")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("compute-sandbox.log")
    }

    /// The last lines of the worker's log (every start appends to it); a
    /// worker logs a line or two per task step, so the tail is long.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 16000)
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process with SIGKILL, as a crash would; the home stays.
    pub fn kill(&mut self) {
        kill(self.child.take());
    }

    /// Starts the process again with the same key, home and flags; returns
    /// once it printed its ready line.
    pub async fn restart(&mut self) -> Result<()> {
        assert!(self.child.is_none(), "restart a worker only after kill");
        self.spawn()?;
        self.wait_ready(WORKER_READY_TIMEOUT).await
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(workspace_bin("compute-sandbox"));
        command
            .arg("--key")
            .arg(self.dir.path().join("key.json"))
            .arg("--home")
            .arg(self.home())
            .arg("--gateway")
            .arg(&self.gateway_url)
            .arg("--capacity")
            .arg(self.options.capacity.to_string())
            .arg("--stake")
            .arg(self.options.stake.to_string())
            .arg("--poll-secs")
            .arg("1");
        if self.options.cheat {
            command.arg("--cheat");
        }
        let mut child = command
            .args(&self.options.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .context("spawn compute-sandbox")?;
        // Stdout is read on a thread of its own (into the log and a list
        // the ready wait looks at), so the pipe never fills up.
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        self.stdout_lines = std::sync::Arc::clone(&lines);
        let stdout = child.stdout.take().context("worker stdout")?;
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut log = log;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "[stdout] {line}");
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        // A watcher (`--watch` in `extra_args`) says so instead.
        let role = if self.options.extra_args.iter().any(|a| a == "--watch") {
            "watcher"
        } else {
            "worker"
        };
        let ready = format!("{role} {} ready", self.account);
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .stdout_lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|l| l.trim() == ready);
            if seen {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "compute-sandbox {} exited with {status} before it was ready:\n{}",
                    self.account,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "compute-sandbox {} did not print '{ready}' within {timeout:?}:\n{}",
                    self.account,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        kill(self.child.take());
        if std::thread::panicking() {
            eprintln!(
                "--- compute-sandbox {} log tail ---\n{}",
                self.account,
                self.log_tail()
            );
        }
    }
}

/// What a `compute` CLI run printed and how it ended.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit status.
    pub status: std::process::ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

impl CliOutput {
    /// The JSON printed on the last line of stdout (with `--output json`),
    /// after checking that the command succeeded.
    pub fn json(&self) -> Result<Value> {
        if !self.status.success() {
            bail!(
                "compute exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| anyhow!("compute printed nothing on stdout:\n{}", self.stderr))?;
        serde_json::from_str(line)
            .with_context(|| format!("compute printed no JSON: {line}\n{}", self.stderr))
    }
}

/// Runs `compute <args> --output json --node <node's rpc> --gateway
/// <gateway's grpc>` and parses what it printed.
///
/// # Errors
/// As [`run_cli`] and [`CliOutput::json`].
pub async fn cli_json(
    node: &Node,
    gateway: &Gateway,
    args: &[&str],
    timeout: Duration,
) -> Result<Value> {
    let rpc = node.rpc_url();
    let grpc = gateway.url();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", "json", "--node", &rpc, "--gateway", &grpc]);
    run_cli(&all, timeout).await?.json()
}

/// Runs the `compute` CLI with `args`; kills it if it outlives `timeout`.
pub async fn run_cli<I, S>(args: I, timeout: Duration) -> Result<CliOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    // Each test chain is new, though many share a chain id: the light
    // client's trust store is one per call (a `--trust-store` given in
    // `args` takes precedence).
    let trust = tempfile::Builder::new()
        .prefix("compute-trust-")
        .tempdir()?;
    let child = tokio::process::Command::new(workspace_bin("compute"))
        .args(&args)
        .env("COMPUTE_TRUST_STORE", trust.path().join("light.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn compute")?;
    // On timeout the future is dropped with the child, which kills it.
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("compute {args:?} did not finish within {timeout:?}"))??;
    Ok(CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Creates a key file at `path` with `compute keys new`; returns its account.
pub async fn cli_new_key(path: &Path) -> Result<AccountId> {
    let out = run_cli(
        [
            "keys".as_ref(),
            "new".as_ref(),
            path.as_os_str(),
            "--output".as_ref(),
            "json".as_ref(),
        ],
        Duration::from_secs(30),
    )
    .await?
    .json()?;
    let hex = out["account"]
        .as_str()
        .ok_or_else(|| anyhow!("no account in {out}"))?;
    AccountId::from_hex(hex).map_err(|e| anyhow!("bad account '{hex}': {e}"))
}

/// Calls `check` every `interval` until it answers `Some`, at most
/// `timeout` long; `what` names the condition in the error.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not reached within {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Calls through a gateway that several gateway tests make.
pub mod gateway_calls {
    use std::io::{Read, Write};
    use std::time::Duration;

    use anyhow::{bail, ensure, Result};
    use compute_proto::pb::gateway_client::GatewayClient;
    use compute_proto::{pb, ModuleId, SigningKey};
    use prost::Message;
    use tonic::transport::Channel;

    use crate::{Gateway, Node};

    /// A broadcast through the gateway that waits for the block.
    pub fn commit(tx: Vec<u8>) -> pb::BroadcastTxRequest {
        pb::BroadcastTxRequest {
            tx,
            mode: pb::BroadcastMode::Commit as i32,
        }
    }

    /// Registers `worker` (capacity 1) and stores the primes module for `alice`.
    pub async fn register_worker_and_store_module(
        node: &Node,
        client: &mut GatewayClient<Channel>,
        alice: &SigningKey,
        worker: &SigningKey,
    ) -> Result<()> {
        let chain = node.tx_builder();
        let register = chain.sign(
            worker,
            node.nonce(&worker.account()).await?,
            pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                capacity: 1,
                stake: 0,
            }),
        );
        let answer = client.broadcast_tx(commit(register)).await?.into_inner();
        ensure!(answer.code == 0, "register worker: {}", answer.log);
        let store = chain.sign(
            alice,
            node.nonce(&alice.account()).await?,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: compute_jobs::PRIMES_WASM.to_vec(),
            }),
        );
        let answer = client.broadcast_tx(commit(store)).await?.into_inner();
        ensure!(answer.code == 0, "store module: {}", answer.log);
        node.wait_for_height(u64::try_from(answer.height)? + 1, Duration::from_secs(20))
            .await?;
        Ok(())
    }

    /// Posts a one-task, one-replica primes job through the typed call.
    pub async fn post_one_task_job(
        node: &Node,
        client: &mut GatewayClient<Channel>,
        alice: &SigningKey,
        nonce: u64,
    ) -> Result<pb::PostJobResponse> {
        let post = pb::PostJob {
            module_id: ModuleId::of(compute_jobs::PRIMES_WASM).0.to_vec(),
            tasks: vec![pb::TaskInput {
                source: Some(pb::task_input::Source::Inline(b"abc".to_vec())),
                size: 3,
            }],
            policy: Some(pb::Policy {
                kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                    replicas: 1,
                    quorum: 1,
                    max_replicas: 1,
                })),
            }),
            fuel_limit: 2_000_000,
            price_per_mfuel: 1,
            deadline_blocks: 100,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
        };
        let tx = pb::Tx::decode(
            node.tx_builder()
                .sign(alice, nonce, pb::tx_body::Msg::PostJob(post))
                .as_slice(),
        )?;
        Ok(client
            .post_job(pb::SignedTx { tx: Some(tx) })
            .await?
            .into_inner())
    }

    /// `GET /metrics` from a gateway.
    pub fn scrape(gateway: &Gateway) -> Result<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", gateway.metrics_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        if !reply.starts_with("HTTP/1.1 200") {
            bail!("metrics answered {reply}");
        }
        Ok(reply)
    }
}

/// A validator run by `compute-supervisor` (cometbft plus compute-abci as
/// one unit) on free loopback ports. The supervisor writes its pid files
/// into [`SupervisedNode::run_dir`], its own log into `supervisor.log`, and
/// the children's logs into `logs/`. Dropping it sends the supervisor
/// SIGTERM (SIGKILL after a bounded wait) and kills any child it left
/// behind.
pub struct SupervisedNode {
    // Dropped after the processes are stopped (fields drop in order).
    _tmp: Option<TempDir>,
    home: PathBuf,
    /// The chain id.
    pub chain_id: String,
    /// CometBFT's RPC port.
    pub rpc_port: u16,
    /// compute-abci's ABCI port.
    pub abci_port: u16,
    /// CometBFT's P2P port.
    pub p2p_port: u16,
    // Flags after the ones every node gets, kept for restarts.
    extra_args: Vec<String>,
    supervisor: Option<Child>,
}

impl SupervisedNode {
    /// Initialises a home and genesis, starts `compute-supervisor` with the
    /// given extra flags, and returns once compute-abci committed a block.
    pub async fn start(config: NetConfig, extra_args: &[&str]) -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("compute-sup-").tempdir()?;
        let cometbft_home = tmp.path().join("cometbft");
        cometbft_init(&cometbft_home)?;
        write_genesis(&cometbft_home, &config)?;
        set_fast_blocks(&cometbft_home, config.timeout_commit_ms)?;
        let [rpc_port, abci_port, p2p_port] = free_ports::<3>();
        let mut node = Self {
            home: tmp.path().to_owned(),
            _tmp: Some(tmp),
            chain_id: config.chain_id,
            rpc_port,
            abci_port,
            p2p_port,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            supervisor: None,
        };
        node.spawn()?;
        node.wait_for_height(1, Duration::from_secs(60)).await?;
        wait_for_first_commit(&node.chain()).await?;
        Ok(node)
    }

    /// A node whose CometBFT home `<home>/cometbft` is already initialised;
    /// nothing runs until [`SupervisedNode::spawn`].
    pub fn prepared(
        home: PathBuf,
        chain_id: String,
        [rpc_port, abci_port, p2p_port]: [u16; 3],
        extra_args: Vec<String>,
    ) -> Self {
        Self {
            _tmp: None,
            home,
            chain_id,
            rpc_port,
            abci_port,
            p2p_port,
            extra_args,
            supervisor: None,
        }
    }

    /// Starts the supervisor (again), appending to `supervisor.log`.
    pub fn spawn(&mut self) -> Result<()> {
        if self.supervisor.is_some() {
            bail!("the supervisor of {} already runs", self.home.display());
        }
        let cometbft_home = self.cometbft_home();
        let abci_addr = format!("tcp://127.0.0.1:{}", self.abci_port);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("supervisor.log"))?;
        let child = Command::new(workspace_bin("compute-supervisor"))
            .arg("--cometbft-home")
            .arg(&cometbft_home)
            .arg("--cometbft-bin")
            .arg(cometbft_tool("cometbft"))
            .arg(format!("--cometbft-arg=--proxy_app={abci_addr}"))
            .arg(format!(
                "--cometbft-arg=--rpc.laddr=tcp://127.0.0.1:{}",
                self.rpc_port
            ))
            .arg(format!(
                "--cometbft-arg=--p2p.laddr=tcp://127.0.0.1:{}",
                self.p2p_port
            ))
            .arg("--cometbft-arg=--p2p.pex=false")
            .arg("--cometbft-arg=--log_level=info")
            .arg("--abci-bin")
            .arg(workspace_bin("compute-abci"))
            .arg("--abci-arg=--home")
            .arg("--abci-arg")
            .arg(self.home.join("abci"))
            .arg("--abci-arg=--addr")
            .arg(format!("--abci-arg={abci_addr}"))
            .arg("--abci-addr")
            .arg(&abci_addr)
            .arg("--rpc")
            .arg(self.rpc_url())
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--log-dir")
            .arg(self.home.join("logs"))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn compute-supervisor")?;
        self.supervisor = Some(child);
        Ok(())
    }

    /// SIGKILLs the supervisor and both children at once, as a power cut
    /// would; [`SupervisedNode::spawn`] starts the unit again.
    pub fn kill_unit(&mut self) {
        let children: Vec<u32> = ["cometbft", "compute-abci"]
            .iter()
            .filter_map(|name| self.child_pid(name))
            .collect();
        kill(self.supervisor.take());
        for pid in children.into_iter().filter(|p| pid_alive(*p)) {
            let _ = send_signal(pid, "KILL");
        }
    }

    /// Whether the supervisor runs.
    pub fn supervised(&self) -> bool {
        self.supervisor.is_some()
    }

    /// The node's home: `cometbft/`, `abci/`, `run/`, `logs/`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The RPC URL of CometBFT.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// A CometBFT RPC client.
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.rpc_url().as_str()).expect("valid loopback RPC URL")
    }

    /// The shared client of this chain.
    pub fn chain(&self) -> ChainClient {
        ChainClient::new(&self.rpc_url(), self.chain_id.clone()).expect("valid loopback RPC URL")
    }

    /// A transaction builder for this chain.
    pub fn tx_builder(&self) -> TxBuilder {
        TxBuilder::new(self.chain_id.clone())
    }

    /// CometBFT's home.
    pub fn cometbft_home(&self) -> PathBuf {
        self.home.join("cometbft")
    }

    /// The supervisor's `--run-dir`.
    pub fn run_dir(&self) -> PathBuf {
        self.home.join("run")
    }

    /// The pid in `<run-dir>/<name>.pid` (`cometbft`, `compute-abci`).
    pub fn child_pid(&self, name: &str) -> Option<u32> {
        fs::read_to_string(self.run_dir().join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until `<run-dir>/<name>.pid` names a live process other than
    /// `not`; returns its pid.
    pub async fn wait_for_child(
        &self,
        name: &str,
        not: Option<u32>,
        timeout: Duration,
    ) -> Result<u32> {
        poll_until(
            &format!("a new {name} runs"),
            timeout,
            Duration::from_millis(50),
            || async {
                Ok(self
                    .child_pid(name)
                    .filter(|pid| Some(*pid) != not && pid_alive(*pid)))
            },
        )
        .await
        .with_context(|| self.log_tail("supervisor"))
    }

    /// Everything the supervisor logged so far.
    pub fn supervisor_log(&self) -> String {
        fs::read_to_string(self.home.join("supervisor.log")).unwrap_or_default()
    }

    /// How many lines of the supervisor's log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.supervisor_log()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until at least `count` lines of the supervisor's log contain
    /// `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        poll_until(
            &format!("{count} supervisor log lines with '{needle}'"),
            timeout,
            Duration::from_millis(25),
            || async { Ok((self.log_count(needle) >= count).then_some(())) },
        )
        .await
        .with_context(|| self.log_tail("supervisor"))
    }

    /// The latest height, if the RPC answers within a second.
    pub async fn height(&self) -> Option<u64> {
        let status = tokio::time::timeout(Duration::from_secs(1), self.client().status())
            .await
            .ok()?
            .ok()?;
        Some(status.sync_info.latest_block_height.value())
    }

    /// Waits until the latest height is at least `height`; returns it.
    pub async fn wait_for_height(&self, height: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(latest) = self.height().await {
                if latest >= height {
                    return Ok(latest);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "height {height} not reached within {timeout:?}\n--- supervisor ---\n{}\n--- cometbft ---\n{}\n--- compute-abci ---\n{}",
                    self.log_tail("supervisor"),
                    self.log_tail("cometbft"),
                    self.log_tail("compute-abci")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of `supervisor`, `cometbft` or `compute-abci`'s log.
    pub fn log_tail(&self, name: &str) -> String {
        let path = if name == "supervisor" {
            self.home.join("supervisor.log")
        } else {
            self.home.join("logs").join(format!("{name}.log"))
        };
        tail(&path, 6000)
    }

    /// Sends the supervisor SIGTERM and waits up to `timeout` for it to
    /// exit; returns its exit status.
    pub async fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self
            .supervisor
            .take()
            .ok_or_else(|| anyhow!("the supervisor was already stopped"))?;
        send_signal(child.id(), "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                kill(Some(child));
                bail!(
                    "the supervisor did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log_tail("supervisor")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SupervisedNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            let _ = send_signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill(Some(child));
        }
        // Children a killed supervisor left behind.
        for name in ["cometbft", "compute-abci"] {
            if let Some(pid) = self.child_pid(name).filter(|p| pid_alive(*p)) {
                let _ = send_signal(pid, "KILL");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- supervisor log tail ---\n{}\n--- cometbft log tail ---\n{}\n--- compute-abci log tail ---\n{}",
                self.log_tail("supervisor"),
                self.log_tail("cometbft"),
                self.log_tail("compute-abci")
            );
        }
    }
}

/// Sends `signal` (a name such as `STOP`, `KILL`, `TERM`) to `pid` with
/// the `kill` command.
pub fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -s {signal} {pid} failed: {status}");
    }
    Ok(())
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name in parentheses: "pid (comm) S ...".
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// A whole number with thousands separators, for benchmark tables:
/// 12345.6 -> "12,346".
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs a benchmark until it ends, or fails it when the process is
/// interrupted or terminated: its future is dropped, and with it the
/// chains it started, whose drop kills their processes.
///
/// # Errors
/// The benchmark's error, or the signal that stopped it.
pub async fn until_signal(run: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = run => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the chain's processes were stopped"),
        _ = terminate.recv() => bail!("terminated; the chain's processes were stopped"),
    }
}
