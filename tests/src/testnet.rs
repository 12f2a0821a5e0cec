//! A network of several nodes on loopback: each a [`SupervisedNode`]
//! (compute-supervisor running cometbft and compute-abci) with its own home
//! and ports, all under one genesis, every node a persistent peer of every
//! other. The first nodes are genesis validators (power 10 each, what
//! `cometbft init` gives); the rest start as full nodes that may bond later.
//! [`Testnet::start_with_deferred`] also prepares nodes that do not start
//! (home, genesis, peers, config), so that a test can change their
//! configuration (state sync, say) and start them later.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use compute_proto::SigningKey;
use serde_json::{json, Value};
use tempfile::TempDir;
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient, Paging};

use crate::{
    cometbft_init, cometbft_tool, free_port_list, set_fast_blocks, wait_for_first_commit,
    NetConfig, SupervisedNode,
};

/// What a testnet starts with.
#[derive(Clone, Debug)]
pub struct TestnetConfig {
    /// Chain id, genesis balances, parameters and block time.
    pub net: NetConfig,
    /// Genesis validators: nodes `0..validators`.
    pub validators: usize,
    /// Full nodes after them.
    pub full_nodes: usize,
    /// What each genesis validator's own account (its consensus key) holds.
    pub validator_balance: u64,
    /// Flags every supervisor gets (after those naming ports and homes).
    pub supervisor_args: Vec<String>,
}

/// A running testnet; dropping it stops every node.
pub struct Testnet {
    /// The nodes, in order (validators first).
    pub nodes: Vec<SupervisedNode>,
    /// Nodes prepared but not started ([`Testnet::start_with_deferred`]):
    /// full nodes whose persistent peers are all the others. Start one
    /// with [`SupervisedNode::spawn`].
    pub deferred: Vec<SupervisedNode>,
    /// The chain id.
    pub chain_id: String,
    // Deleted after the nodes stopped (fields drop in order).
    dir: TempDir,
}

impl Testnet {
    /// Creates every home, writes one genesis and the peer lists, starts
    /// every node, and returns once each has committed a block.
    pub async fn start(config: TestnetConfig) -> Result<Self> {
        Self::start_with_deferred(config, 0).await
    }

    /// As [`Testnet::start`], and prepares `deferred` more full nodes
    /// (home, genesis, peers, config, supervisor flags with `--peer-rpc`
    /// for every started node) without starting them: they are in
    /// [`Testnet::deferred`]. The started nodes do not dial them; each
    /// deferred node dials every other node once it runs.
    pub async fn start_with_deferred(config: TestnetConfig, deferred: usize) -> Result<Self> {
        let started = config.validators + config.full_nodes;
        let count = started + deferred;
        ensure!(config.validators >= 1, "a testnet needs a validator");
        let dir = tempfile::Builder::new()
            .prefix("compute-testnet-")
            .tempdir()?;
        let homes: Vec<PathBuf> = (0..count)
            .map(|i| dir.path().join(format!("node{i}")))
            .collect();
        for home in &homes {
            cometbft_init(&home.join("cometbft"))?;
        }
        let ports = free_port_list(3 * count);
        let ports: Vec<[u16; 3]> = ports.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
        let mut ids = Vec::new();
        for home in &homes {
            ids.push(node_id(&home.join("cometbft"))?);
        }

        let genesis = testnet_genesis(&homes, &config)?;
        for (i, home) in homes.iter().enumerate() {
            let cometbft_home = home.join("cometbft");
            fs::write(cometbft_home.join("config/genesis.json"), &genesis)?;
            set_fast_blocks(&cometbft_home, config.net.timeout_commit_ms)?;
            // A started node's peers are the started ones; a deferred
            // node's are all the others.
            let peer_count = if i < started { started } else { count };
            let peers: Vec<String> = (0..peer_count)
                .filter(|j| *j != i)
                .map(|j| format!("{}@127.0.0.1:{}", ids[j], ports[j][2]))
                .collect();
            set_config(
                &cometbft_home.join("config/config.toml"),
                &[
                    ("persistent_peers", format!("\"{}\"", peers.join(","))),
                    // Every peer is 127.0.0.1.
                    ("allow_duplicate_ip", "true".to_owned()),
                    ("addr_book_strict", "false".to_owned()),
                ],
            )?;
        }

        let mut nodes = Vec::new();
        let mut waiting = Vec::new();
        for (i, home) in homes.iter().enumerate() {
            let mut args: Vec<String> = (0..started)
                .filter(|j| *j != i)
                .map(|j| format!("--peer-rpc=http://127.0.0.1:{}", ports[j][0]))
                .collect();
            args.extend(config.supervisor_args.iter().cloned());
            let mut node =
                SupervisedNode::prepared(home.clone(), config.net.chain_id.clone(), ports[i], args);
            if i < started {
                node.spawn()?;
                nodes.push(node);
            } else {
                waiting.push(node);
            }
        }
        let testnet = Self {
            nodes,
            deferred: waiting,
            chain_id: config.net.chain_id,
            dir,
        };
        for node in &testnet.nodes {
            node.wait_for_height(1, Duration::from_secs(90)).await?;
            wait_for_first_commit(&node.chain()).await?;
        }
        Ok(testnet)
    }

    /// The testnet's directory: `node0/`, `node1/`, ...
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s `priv_validator_key.json`.
    pub fn priv_validator_key_file(&self, i: usize) -> PathBuf {
        self.nodes[i]
            .cometbft_home()
            .join("config/priv_validator_key.json")
    }

    /// Node `i`'s consensus key.
    pub fn consensus_key(&self, i: usize) -> Result<SigningKey> {
        consensus_key(&self.nodes[i].cometbft_home())
    }

    /// Node `i`'s 20-byte validator address, as CometBFT prints it.
    pub fn validator_address(&self, i: usize) -> Result<String> {
        let text = fs::read_to_string(self.priv_validator_key_file(i))?;
        let key: Value = serde_json::from_str(&text)?;
        key["address"]
            .as_str()
            .map(str::to_uppercase)
            .context("priv_validator_key.json has no address")
    }

    /// Every node's latest height (`None` for one whose RPC is silent).
    pub async fn heights(&self) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            out.push(node.height().await);
        }
        out
    }

    /// Waits until each of the nodes `which` reports at least `height`.
    pub async fn wait_for_height(
        &self,
        which: &[usize],
        height: u64,
        timeout: Duration,
    ) -> Result<()> {
        for &i in which {
            self.nodes[i]
                .wait_for_height(height, timeout)
                .await
                .with_context(|| format!("node {i}"))?;
        }
        Ok(())
    }

    /// The addresses in CometBFT's validator set at the latest height, as
    /// node `i` reports it.
    pub async fn cometbft_validators(&self, i: usize) -> Result<Vec<String>> {
        let client = self.nodes[i].client();
        let height = client.status().await?.sync_info.latest_block_height;
        let set = client.validators(height, Paging::All).await?;
        Ok(set
            .validators
            .iter()
            .map(|v| v.address.to_string().to_uppercase())
            .collect())
    }

    /// Checks that every node holds the same block, with the same app hash,
    /// at every height from 1 to `height`; returns how many it compared.
    pub async fn check_agreement(&self, height: u64) -> Result<u64> {
        // `/blockchain` answers at most 20 headers per call.
        const PAGE: u64 = 20;
        let mut reference: Vec<(String, String)> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let client = node.client();
            let mut headers = Vec::new();
            let mut low = 1;
            while low <= height {
                let high = (low + PAGE - 1).min(height);
                let page = client
                    .blockchain(Height::try_from(low)?, Height::try_from(high)?)
                    .await
                    .with_context(|| format!("node {i}: /blockchain {low}..{high}"))?;
                let mut metas = page.block_metas;
                metas.sort_by_key(|m| m.header.height);
                for meta in metas {
                    headers.push((
                        meta.block_id.hash.to_string(),
                        meta.header.app_hash.to_string(),
                    ));
                }
                low = high + 1;
            }
            ensure!(
                headers.len() as u64 == height,
                "node {i} returned {} headers for heights 1..={height}",
                headers.len()
            );
            if i == 0 {
                reference = headers;
                continue;
            }
            for (h, (mine, first)) in headers.iter().zip(&reference).enumerate() {
                if mine != first {
                    bail!(
                        "height {}: node {i} has block {} with app hash {}, node 0 block {} with app hash {}",
                        h + 1,
                        mine.0,
                        mine.1,
                        first.0,
                        first.1
                    );
                }
            }
        }
        Ok(height)
    }

    /// The RPC clients of every node.
    pub fn clients(&self) -> Vec<HttpClient> {
        self.nodes.iter().map(SupervisedNode::client).collect()
    }

    /// Waits until node `i`'s log `name` (`compute-abci` or `cometbft`)
    /// gains a line containing `needle` after what it holds now; polls
    /// every few milliseconds so that the caller can act at once.
    pub async fn wait_for_new_log_line(
        &self,
        i: usize,
        name: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.nodes[i]
            .home()
            .join("logs")
            .join(format!("{name}.log"));
        let mut file = fs::File::open(&path).with_context(|| path.display().to_string())?;
        file.seek(SeekFrom::End(0))?;
        let deadline = std::time::Instant::now() + timeout;
        // Bytes read but not yet ending in a newline stay for the next read.
        let mut pending = Vec::new();
        loop {
            let mut fresh = Vec::new();
            file.read_to_end(&mut fresh)?;
            pending.extend_from_slice(&fresh);
            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                if String::from_utf8_lossy(&pending[..end]).contains(needle) {
                    return Ok(());
                }
                pending.drain(..=end);
            }
            if std::time::Instant::now() > deadline {
                bail!("node {i}'s {name} logged no '{needle}' within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The accounts genesis funds: the configured balances, then each genesis
/// validator's consensus key as an account.
fn testnet_genesis(homes: &[PathBuf], config: &TestnetConfig) -> Result<String> {
    let first = homes[0].join("cometbft/config/genesis.json");
    let mut genesis: Value = serde_json::from_str(&fs::read_to_string(first)?)?;
    let mut validators = Vec::new();
    let mut accounts: Vec<Value> = config
        .net
        .balances
        .iter()
        .map(|(id, balance)| json!({"address": id, "balance": balance}))
        .collect();
    for (i, home) in homes.iter().take(config.validators).enumerate() {
        let text = fs::read_to_string(home.join("cometbft/config/priv_validator_key.json"))?;
        let key: Value = serde_json::from_str(&text)?;
        validators.push(json!({
            "address": key["address"],
            "pub_key": key["pub_key"],
            "power": "10",
            "name": format!("node{i}"),
        }));
        let account = consensus_key(&home.join("cometbft"))?.account();
        accounts.push(json!({"address": account, "balance": config.validator_balance}));
    }
    genesis["chain_id"] = json!(config.net.chain_id);
    genesis["validators"] = json!(validators);
    genesis["app_state"] = json!({"accounts": accounts, "params": config.net.params});
    Ok(serde_json::to_string_pretty(&genesis)?)
}

/// The consensus key in `<cometbft_home>/config/priv_validator_key.json`
/// (base64 of seed and public key).
fn consensus_key(cometbft_home: &Path) -> Result<SigningKey> {
    let text = fs::read_to_string(cometbft_home.join("config/priv_validator_key.json"))?;
    let file: Value = serde_json::from_str(&text)?;
    let value = file["priv_key"]["value"]
        .as_str()
        .context("priv_key.value")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(value)?;
    ensure!(
        bytes.len() == 64,
        "priv_key.value holds {} bytes",
        bytes.len()
    );
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let key = SigningKey::from_seed(seed);
    ensure!(
        key.account().0.as_slice() == &bytes[32..],
        "priv_key.value's public half does not match its seed"
    );
    Ok(key)
}

/// `cometbft show-node-id`.
fn node_id(cometbft_home: &Path) -> Result<String> {
    let output = Command::new(cometbft_tool("cometbft"))
        .args(["show-node-id", "--home"])
        .arg(cometbft_home)
        .stderr(Stdio::null())
        .output()
        .context("run cometbft show-node-id")?;
    ensure!(
        output.status.success(),
        "cometbft show-node-id failed: {}",
        output.status
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Replaces the value of each `key = ...` line inside the `[section]` of a
/// TOML file such as CometBFT's `config.toml` (values are written as
/// given: quote strings). Fails when the section lacks one of the keys.
pub fn set_config_in_section(
    path: &Path,
    section: &str,
    settings: &[(&str, String)],
) -> Result<()> {
    let text = fs::read_to_string(path)?;
    let header = format!("[{section}]");
    let mut out = String::with_capacity(text.len());
    let mut seen = vec![false; settings.len()];
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with('[') {
            inside = line.trim() == header;
        }
        let found = settings
            .iter()
            .position(|(key, _)| inside && line.starts_with(&format!("{key} = ")));
        match found {
            Some(k) => {
                seen[k] = true;
                out.push_str(&format!("{} = {}", settings[k].0, settings[k].1));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        bail!(
            "{} has no line for {} in [{section}]",
            path.display(),
            settings[k].0
        );
    }
    fs::write(path, out)?;
    Ok(())
}

/// Replaces the value of each `key = ...` line of a TOML file.
fn set_config(path: &Path, settings: &[(&str, String)]) -> Result<()> {
    let text = fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len());
    let mut seen = vec![false; settings.len()];
    for line in text.lines() {
        let found = settings
            .iter()
            .position(|(key, _)| line.starts_with(&format!("{key} = ")));
        match found {
            Some(k) => {
                seen[k] = true;
                out.push_str(&format!("{} = {}", settings[k].0, settings[k].1));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        bail!("{} has no line for {}", path.display(), settings[k].0);
    }
    fs::write(path, out)?;
    Ok(())
}
