//! Transfers per second through a real single-validator chain (CometBFT's
//! RPC, mempool and consensus, the ABCI socket, compute-abci on RocksDB),
//! against the state machine alone on the same transactions in the same run.
//!
//! ```sh
//! cargo build --workspace --bins --examples
//! "$CARGO_TARGET_DIR/debug/examples/chain_throughput" [accounts] [txs-per-account] [sync|async]
//! ```
//!
//! `sync` (the default) waits for each transaction's CheckTx before sending
//! the account's next; `async` does not wait, which shows how much of the
//! intake is the round trip rather than CheckTx itself.
//!
//! A measurement, not a test: it prints the figures for docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use compute_abci::store::RocksStore;
use compute_abci::{App, BlockInput, Code};
use compute_proto::{SigningKey, TxBuilder};
use compute_tests::{transfer, NetConfig, Node};
use serde_json::json;
use tendermint_rpc::Client;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let accounts: u64 = args.next().map_or(Ok(40), |a| a.parse())?;
    let per_account: u64 = args.next().map_or(Ok(50), |a| a.parse())?;
    let wait_for_check = match args.next().as_deref() {
        None | Some("sync") => true,
        Some("async") => false,
        Some(other) => bail!("mode '{other}' is neither sync nor async"),
    };
    let total = accounts * per_account;
    let keys: Vec<SigningKey> = (0..accounts)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_seed(seed)
        })
        .collect();
    let sink = SigningKey::from_seed([99; 32]).account();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let mut config = NetConfig::funded(&refs, 1_000_000_000);
    config.params = json!({"max_pending_txs_per_account": per_account.max(1)});
    let builder = TxBuilder::new(config.chain_id.clone());
    // Every account's transfers, signed up front, in nonce order.
    let signed: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            (0..per_account)
                .map(|nonce| builder.sign(k, nonce, transfer(&sink, 1)))
                .collect()
        })
        .collect();

    // Baseline: the state machine alone, every transaction in one block.
    let flat: Vec<Vec<u8>> = signed.iter().flatten().cloned().collect();
    let dir = tempfile::tempdir()?;
    let mut app = App::new(RocksStore::open(dir.path())?);
    let genesis = json!({
        "accounts": keys.iter().map(|k| json!({"address": k.account(), "balance": 1_000_000_000u64})).collect::<Vec<_>>(),
        "params": config.params,
    });
    app.init_chain(&config.chain_id, 1, genesis.to_string().as_bytes(), &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let out = app.finalize_block(BlockInput {
        height: 1,
        proposer_address: &[0; 20],
        signer_addresses: &[],
        txs: &flat,
        hash: &[1; 32],
        time_seconds: 0,
    });
    app.commit();
    let alone = started.elapsed();
    ensure!(
        out.tx_results.iter().all(|r| r.code == Code::Ok),
        "baseline refused a transfer"
    );

    // The chain: each account sends its transfers in order, all accounts at once.
    let node = Node::start(config).await?;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for txs in signed {
        let client = node.client();
        senders.spawn(async move {
            for tx in txs {
                if wait_for_check {
                    let answer = client.broadcast_tx_sync(tx).await?;
                    if answer.code.is_err() {
                        bail!("CheckTx refused a transfer: {}", answer.log);
                    }
                } else {
                    client.broadcast_tx_async(tx).await?;
                }
            }
            Ok(())
        });
    }
    while let Some(done) = senders.join_next().await {
        done??;
    }
    let accepted = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, _, stats) = node.query("/stats").await?;
        if stats["transfers"].as_u64().unwrap_or(0) >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} transfers committed after 300 s",
                stats["transfers"]
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let committed = started.elapsed();
    let status = node.client().status().await.context("status")?;
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{total} transfers from {accounts} accounts, {}",
        if wait_for_check {
            "broadcast_tx_sync"
        } else {
            "broadcast_tx_async"
        }
    );
    println!(
        "state machine alone (FinalizeBlock + Commit on RocksDB): {:.1} ms, {:.0} tx/s",
        alone.as_secs_f64() * 1e3,
        rate(total, alone)
    );
    println!(
        "through the chain: all sent after {:.2} s ({:.0} tx/s), all committed after {:.2} s ({:.0} tx/s), {} blocks",
        accepted.as_secs_f64(),
        rate(total, accepted),
        committed.as_secs_f64(),
        rate(total, committed),
        status.sync_info.latest_block_height.value()
    );
    println!(
        "chain / state machine: {:.3}x",
        rate(total, committed) / rate(total, alone)
    );
    Ok(())
}
