//! Crash recovery: `compute-abci` is killed with SIGKILL while blocks with
//! transfers are being made. After a restart CometBFT's handshake replays
//! what the app lacks, the chain goes on, balances are intact, and every app
//! hash CometBFT recorded agrees with an independent in-process replay.

use std::time::Duration;

use compute_proto::SigningKey;
use compute_tests::{replay_and_compare_app_hashes, NetConfig, Node};
use tendermint_rpc::Client;

#[tokio::test]
async fn compute_abci_recovers_from_kill_9() -> anyhow::Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let bob = SigningKey::from_seed([2; 32]).account();
    let mut node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let client = node.client();

    let mut sent = 0u64;
    for amount in 1..=5u64 {
        let tx = node.signed_transfer(&alice, &bob, amount).await?;
        let r = client.broadcast_tx_commit(tx).await?;
        assert_eq!(r.tx_result.code.value(), 0, "{}", r.tx_result.log);
        sent += amount;
    }
    // Queue more transfers without waiting, then crash while they are in
    // flight: some may be committed, some replayed, none lost or doubled.
    let nonce = node.nonce(&alice.account()).await?;
    for i in 0..5u64 {
        let tx = node
            .tx_builder()
            .sign(&alice, nonce + i, compute_tests::transfer(&bob, 10));
        let r = client.broadcast_tx_sync(tx).await?;
        assert_eq!(r.code.value(), 0, "{}", r.log);
    }
    sent += 50;
    node.kill_abci();
    // CometBFT stops itself when its application connection breaks; give it
    // a bounded moment, then make sure it is gone.
    for _ in 0..50 {
        if !node.cometbft_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.kill_cometbft();

    node.start_abci()?;
    node.start_cometbft()?;
    let status = {
        let mut last = None;
        for _ in 0..100 {
            if let Ok(s) = client.status().await {
                last = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last.ok_or_else(|| {
            anyhow::anyhow!("CometBFT did not come back:\n{}", node.log_tail("cometbft"))
        })?
    };
    let resumed = status.sync_info.latest_block_height.value();
    node.wait_for_height(resumed + 3, Duration::from_secs(60))
        .await?;

    // The transactions that were in flight either were committed before the
    // crash or are still in CometBFT's mempool (it persists nothing of it):
    // resend any that are missing so the final balance is exact.
    let nonce_now = node.nonce(&alice.account()).await?;
    for n in nonce_now..nonce + 5 {
        let tx = node
            .tx_builder()
            .sign(&alice, n, compute_tests::transfer(&bob, 10));
        let r = client.broadcast_tx_commit(tx).await?;
        assert_eq!(r.tx_result.code.value(), 0, "{}", r.tx_result.log);
    }
    let height = node.wait_for_height(1, Duration::from_secs(5)).await?;
    node.wait_for_height(height + 1, Duration::from_secs(20))
        .await?;
    assert_eq!(node.balance(&bob).await?, sent);
    assert_eq!(node.balance(&alice.account()).await?, 1_000_000 - sent);
    assert_eq!(node.nonce(&alice.account()).await?, 10);

    // The app's own record agrees with CometBFT's, and an independent replay
    // of every block agrees with both.
    let (_, _, stats) = node.query("/stats").await?;
    let app_height = stats["height"].as_u64().unwrap();
    // The app hash after height h is recorded in the header of block h + 1.
    node.wait_for_height(app_height + 1, Duration::from_secs(20))
        .await?;
    let header = client
        .block(tendermint::block::Height::try_from(app_height + 1)?)
        .await?
        .block
        .header;
    assert_eq!(stats["app_hash"], hex::encode(header.app_hash.as_bytes()));
    let info = client.abci_info().await?;
    assert!(info.last_block_height.value() >= app_height);
    let replayed = replay_and_compare_app_hashes(&node).await?;
    assert!(
        replayed > resumed,
        "replayed {replayed} blocks, crash was near {resumed}"
    );
    Ok(())
}
