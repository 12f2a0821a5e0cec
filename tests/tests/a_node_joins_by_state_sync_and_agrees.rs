//! A node joins a running network by state sync: three validators take a
//! snapshot every 5 blocks; a fresh full node, configured with CometBFT's
//! `[statesync]` (two validators' RPC, a trusted height and hash from one
//! of them), restores the newest snapshot instead of replaying the chain,
//! block-syncs the rest, and then agrees with the validators: the same app
//! hash at every common height, its own application's app hash equal to
//! the network's, and the same balances, before and after the join.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use compute_client::Query;
use compute_proto::{AccountId, SigningKey};
use compute_tests::testnet::set_config_in_section;
use compute_tests::{poll_until, transfer, NetConfig, SupervisedNode, Testnet, TestnetConfig};
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient};

/// Blocks between snapshots.
const SNAPSHOT_INTERVAL: u64 = 5;
/// Snapshots each node keeps: enough that the one a joining node picks is
/// still there while it fetches it (a snapshot lives 20 × 5 blocks).
const SNAPSHOT_KEEP: u32 = 20;
/// Bounds of the waits.
const BLOCKS_TIMEOUT: Duration = Duration::from_secs(60);
const JOIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Sends a transfer through `node` and waits for its block; returns the
/// block's height.
async fn send_transfer(
    node: &SupervisedNode,
    from: &SigningKey,
    to: &AccountId,
    amount: u64,
) -> Result<u64> {
    let nonce = node.chain().next_nonce(&from.account()).await?;
    let tx = node.tx_builder().sign(from, nonce, transfer(to, amount));
    let result = node.client().broadcast_tx_commit(tx).await?;
    ensure!(
        result.check_tx.code.value() == 0,
        "check: {}",
        result.check_tx.log
    );
    ensure!(
        result.tx_result.code.value() == 0,
        "finalize: {}",
        result.tx_result.log
    );
    Ok(result.height.value())
}

/// The heights of the snapshots published in a node's snapshot directory.
fn snapshot_heights(node: &SupervisedNode) -> Vec<u64> {
    let dir = node.home().join("abci/snapshots");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut heights: Vec<u64> = entries
        .flatten()
        .filter(|e| e.path().join("metadata").is_file())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    heights.sort_unstable();
    heights
}

/// Whether a log file holds a line containing `needle`.
fn logged(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.contains(needle))
}

/// The 32 bytes of an app hash from `/abci_info`: CometBFT writes it in
/// base64, which tendermint-rpc hands over as the text's bytes.
fn app_hash_bytes(raw: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine as _;
    if raw.len() == 32 {
        return Ok(raw.to_vec());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .with_context(|| format!("app hash {raw:?} is neither 32 bytes nor base64"))?;
    ensure!(decoded.len() == 32, "app hash of {} bytes", decoded.len());
    Ok(decoded)
}

/// The block id and app hash of `height` on `client`.
async fn header(client: &HttpClient, height: u64) -> Result<(String, String)> {
    let block = client.block(Height::try_from(height)?).await?;
    Ok((
        block.block_id.hash.to_string(),
        block.block.header.app_hash.to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_joins_by_state_sync_and_agrees() -> Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let bob = SigningKey::from_seed([2; 32]).account();
    let mut net = NetConfig::funded(&[&alice], 1_000_000);
    net.timeout_commit_ms = 250;
    let supervisor_args = [
        "--abci-arg=--snapshot-interval".to_owned(),
        format!("--abci-arg={SNAPSHOT_INTERVAL}"),
        "--abci-arg=--snapshot-keep".to_owned(),
        format!("--abci-arg={SNAPSHOT_KEEP}"),
    ];
    let mut testnet = Testnet::start_with_deferred(
        TestnetConfig {
            net,
            validators: 3,
            full_nodes: 0,
            validator_balance: 1_000_000,
            supervisor_args: supervisor_args.to_vec(),
        },
        1,
    )
    .await?;

    // Transfers before any snapshot could hold them: the joining node
    // must get them from the snapshot, not from blocks.
    let mut sent = 0u64;
    let mut last_transfer = 0;
    for amount in [100, 250, 4_000] {
        last_transfer = send_transfer(&testnet.nodes[0], &alice, &bob, amount).await?;
        sent += amount;
    }

    // A snapshot taken after the transfers, and two blocks after it for
    // the light client (it verifies heights S + 1 and S + 2).
    let snapshot = poll_until(
        "node 0 publishes a snapshot after the transfers",
        BLOCKS_TIMEOUT,
        Duration::from_millis(200),
        || async {
            Ok(snapshot_heights(&testnet.nodes[0])
                .into_iter()
                .rev()
                .find(|h| *h > last_transfer))
        },
    )
    .await?;
    ensure!(
        snapshot % SNAPSHOT_INTERVAL == 0,
        "snapshot at height {snapshot}, not a multiple of {SNAPSHOT_INTERVAL}"
    );
    testnet
        .wait_for_height(&[0, 1, 2], snapshot + 3, BLOCKS_TIMEOUT)
        .await?;

    // The trusted anchor: height and block hash from a validator's /commit.
    let anchor = testnet.nodes[0]
        .client()
        .commit(Height::try_from(snapshot)?)
        .await?;
    let trust_hash = anchor.signed_header.header.hash().to_string();
    let rpc_servers = format!(
        "\"{},{}\"",
        testnet.nodes[0].rpc_url(),
        testnet.nodes[1].rpc_url()
    );
    let joiner_config = testnet.deferred[0]
        .cometbft_home()
        .join("config/config.toml");
    set_config_in_section(
        &joiner_config,
        "statesync",
        &[
            ("enable", "true".to_owned()),
            ("rpc_servers", rpc_servers),
            ("trust_height", snapshot.to_string()),
            ("trust_hash", format!("\"{trust_hash}\"")),
            ("trust_period", "\"168h0m0s\"".to_owned()),
            ("discovery_time", "\"5s\"".to_owned()),
        ],
    )?;
    testnet.deferred[0].spawn()?;
    let joiner = &testnet.deferred[0];
    let joiner_client = joiner.client();

    // compute-abci restored a snapshot (it says so), and CometBFT started
    // its block store above height 1.
    let abci_log = joiner.home().join("logs/compute-abci.log");
    poll_until(
        "the joining node restores a snapshot",
        JOIN_TIMEOUT,
        Duration::from_millis(200),
        || async {
            Ok(logged(
                &abci_log,
                "restored the state from a snapshot by state sync",
            )
            .then_some(()))
        },
    )
    .await
    .with_context(|| {
        format!(
            "--- cometbft ---\n{}\n--- compute-abci ---\n{}",
            joiner.log_tail("cometbft"),
            joiner.log_tail("compute-abci")
        )
    })?;
    ensure!(
        !logged(&abci_log, "finalize_block height=1 "),
        "the joining node executed block 1: it replayed the chain"
    );

    // Caught up: no longer catching up, at the validators' height.
    let target = testnet.nodes[0]
        .height()
        .await
        .context("node 0's RPC is silent")?;
    let status = poll_until(
        "the joining node catches up",
        JOIN_TIMEOUT,
        Duration::from_millis(200),
        || async {
            let Ok(status) = joiner_client.status().await else {
                return Ok(None);
            };
            let sync = &status.sync_info;
            Ok((!sync.catching_up && sync.latest_block_height.value() >= target).then_some(status))
        },
    )
    .await
    .with_context(|| joiner.log_tail("cometbft"))?;
    let earliest = status.sync_info.earliest_block_height.value();
    ensure!(
        earliest > 1,
        "the joining node's block store starts at {earliest}: it did not state sync"
    );
    ensure!(
        earliest <= status.sync_info.latest_block_height.value(),
        "earliest {earliest} above latest"
    );

    // The same block and app hash at every common height, on every node.
    let latest = status.sync_info.latest_block_height.value();
    let clients = testnet.clients();
    let mut compared = 0;
    for height in earliest..=latest {
        let mine = header(&joiner_client, height).await?;
        for (i, client) in clients.iter().enumerate() {
            let theirs = header(client, height).await?;
            if mine != theirs {
                bail!(
                    "height {height}: the joining node has block {} app hash {}, node {i} block {} app hash {}",
                    mine.0, mine.1, theirs.0, theirs.1
                );
            }
        }
        compared += 1;
    }
    ensure!(compared >= 2, "only {compared} common heights compared");
    println!(
        "joined by state sync (trusted height {snapshot}): block store from {earliest}, \
         {compared} common heights agree"
    );

    // The joining node's own application computes the network's app
    // hashes: its Info, at several heights, against the next header.
    for _ in 0..3 {
        let info = joiner_client.abci_info().await?;
        let height = info.last_block_height.value();
        ensure!(height >= earliest, "Info reports {height} below {earliest}");
        testnet.nodes[0]
            .wait_for_height(height + 1, BLOCKS_TIMEOUT)
            .await?;
        let (_, network) = header(&clients[0], height + 1).await?;
        let own = hex::encode_upper(app_hash_bytes(info.last_block_app_hash.as_bytes())?);
        ensure!(
            own == network,
            "after height {height} the joining node's app hash is {own}, the network's {network}"
        );
        joiner.wait_for_height(height + 2, BLOCKS_TIMEOUT).await?;
    }

    // Balances from the snapshot read the same on every node.
    let expected = sent;
    for node in testnet.nodes.iter().chain([joiner]) {
        let balance = node.chain().account(&bob).await?.balance;
        ensure!(
            balance == expected,
            "bob holds {balance} on {}, not {expected}",
            node.rpc_url()
        );
    }
    // A transfer after the join reaches the joining node too.
    let height = send_transfer(&testnet.nodes[1], &alice, &bob, 7).await?;
    joiner.wait_for_height(height + 1, BLOCKS_TIMEOUT).await?;
    let on_joiner = poll_until(
        "the joining node commits the new transfer",
        BLOCKS_TIMEOUT,
        Duration::from_millis(100),
        || async {
            let balance = joiner.chain().account(&bob).await?.balance;
            Ok((balance == expected + 7).then_some(balance))
        },
    )
    .await?;
    let on_validator = testnet.nodes[2].chain().account(&bob).await?.balance;
    ensure!(
        on_joiner == on_validator,
        "bob holds {on_joiner} on the joining node but {on_validator} on node 2"
    );
    Ok(())
}
