//! A signed transfer goes through CometBFT into a block, changes both
//! balances, is readable through `/abci_query`, and is found by `tx_search`
//! on its indexed event attributes.

use std::time::Duration;

use compute_proto::SigningKey;
use compute_tests::{NetConfig, Node};
use tendermint_rpc::query::Query;
use tendermint_rpc::{Client, Order};

#[tokio::test]
async fn a_transfer_is_committed_and_visible_through_abci_query() -> anyhow::Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let bob = SigningKey::from_seed([2; 32]).account();
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;

    let tx = node.signed_transfer(&alice, &bob, 1_234).await?;
    let result = node.client().broadcast_tx_commit(tx).await?;
    assert_eq!(
        result.check_tx.code.value(),
        0,
        "check_tx: {}",
        result.check_tx.log
    );
    assert_eq!(
        result.tx_result.code.value(),
        0,
        "finalize: {}",
        result.tx_result.log
    );
    assert!(result.height.value() >= 1);

    // broadcast_tx_commit returns once the block is committed; the app's
    // query state follows right after Commit.
    node.wait_for_height(result.height.value() + 1, Duration::from_secs(20))
        .await?;
    let account = node.account(&alice.account()).await?;
    assert_eq!(account.balance, 1_000_000 - 1_234);
    assert_eq!(account.nonce, 1);
    assert_eq!(account.address, alice.account());
    assert_eq!(node.balance(&bob).await?, 1_234);

    let (code, _, stats) = node.query("/stats").await?;
    assert_eq!(code, 0);
    assert_eq!(stats["transfers"], 1);
    assert_eq!(stats["txs_ok"], 1);
    assert_eq!(stats["chain_id"], "compute-test");

    let (code, _, params) = node.query("/params").await?;
    assert_eq!(code, 0);
    assert_eq!(params["max_tx_bytes"], 1_048_576);

    let by_recipient = search(&node, &format!("transfer.recipient='{bob}'")).await?;
    assert_eq!(
        by_recipient,
        vec![result.hash],
        "tx_search finds the transfer by recipient"
    );
    let by_sender = search(&node, &format!("message.sender='{}'", alice.account())).await?;
    assert_eq!(
        by_sender,
        vec![result.hash],
        "tx_search finds the transaction by sender"
    );
    Ok(())
}

/// The hashes of the transactions `tx_search` finds for `query`.
async fn search(node: &Node, query: &str) -> anyhow::Result<Vec<tendermint::Hash>> {
    let query: Query = query.parse()?;
    let found = node
        .client()
        .tx_search(query, false, 1, 10, Order::Ascending)
        .await?;
    assert_eq!(found.total_count as usize, found.txs.len());
    Ok(found.txs.iter().map(|t| t.hash).collect())
}

#[tokio::test]
async fn bad_query_paths_answer_a_code_and_a_helpful_log() -> anyhow::Result<()> {
    let node = Node::start(NetConfig::funded(&[], 0)).await?;
    let (code, log, _) = node.query("/nope").await?;
    assert_eq!(code, 100);
    assert!(log.contains("/account/<hex>"), "{log}");
    let (code, log, _) = node.query("/account/xyz").await?;
    assert_eq!(code, 101);
    assert!(log.contains("64"), "{log}");
    let (code, _, _) = node.query("").await?;
    assert_eq!(code, 100);
    // An account never seen is a zero account, not an error.
    let nobody = SigningKey::from_seed([9; 32]).account();
    assert_eq!(node.balance(&nobody).await?, 0);
    Ok(())
}
