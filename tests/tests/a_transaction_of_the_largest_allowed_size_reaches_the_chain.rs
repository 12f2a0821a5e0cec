//! CometBFT is configured to carry every transaction the chain's
//! `max_tx_bytes` allows: one just under the limit, relayed by a gateway,
//! reaches the application and is judged by it (here refused for its
//! module's size), not refused on the way by CometBFT's RPC body limit,
//! which by default cannot hold a 1 MiB transaction in base64. One just over
//! the limit is refused by the chain with its own code.

use std::time::Duration;

use anyhow::{Context, Result};
use compute_client::Query;
use compute_proto::limits::rpc_body_bytes_for;
use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::{pb, Code, SigningKey};
use compute_tests::{Gateway, NetConfig, Node};

/// The whole test must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// CometBFT's default `[rpc] max_body_bytes`.
const COMETBFT_DEFAULT_BODY_BYTES: u64 = 1_000_000;

#[tokio::test]
async fn a_transaction_of_the_largest_allowed_size_reaches_the_chain() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .context("the scenario did not finish in time")?
}

async fn scenario() -> Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let gateway = Gateway::start(&node.rpc_url(), &[])?;
    let mut client = GatewayClient::connect(gateway.url())
        .await?
        .max_encoding_message_size(8 << 20);
    let params = node.chain().params().await?;
    let nonce = node.nonce(&alice.account()).await?;
    let builder = node.tx_builder();
    let store = |wasm_bytes: usize| {
        builder.sign(
            &alice,
            nonce,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: vec![0x5a; wasm_bytes],
            }),
        )
    };

    // Just under max_tx_bytes: more than CometBFT's default RPC body holds.
    let wasm_bytes = usize::try_from(params.max_tx_bytes - 512)?;
    let largest = store(wasm_bytes);
    let largest_len = u64::try_from(largest.len())?;
    assert!(largest_len <= params.max_tx_bytes, "{largest_len}");
    assert!(
        rpc_body_bytes_for(largest_len) > COMETBFT_DEFAULT_BODY_BYTES,
        "the transaction must need more than CometBFT's default body"
    );
    let answer = client
        .broadcast_tx(pb::BroadcastTxRequest {
            tx: largest,
            mode: pb::BroadcastMode::Sync as i32,
        })
        .await
        .context("a transaction within max_tx_bytes is carried to the chain")?
        .into_inner();
    assert_eq!(answer.codespace, "compute", "{}", answer.log);
    assert_ne!(answer.code, Code::TxTooLarge.value(), "{}", answer.log);
    assert!(
        answer.log.contains("max_module_bytes") || answer.log.contains("module"),
        "the chain judged the message itself: code {} {}",
        answer.code,
        answer.log
    );

    // Just over max_tx_bytes: the chain refuses it with its own code.
    let over = store(usize::try_from(params.max_tx_bytes)?);
    let answer = client
        .broadcast_tx(pb::BroadcastTxRequest {
            tx: over,
            mode: pb::BroadcastMode::Sync as i32,
        })
        .await
        .context("a transaction over max_tx_bytes reaches the chain's CheckTx")?
        .into_inner();
    assert_eq!(answer.code, Code::TxTooLarge.value(), "{}", answer.log);
    assert_eq!(answer.codespace, "compute");
    Ok(())
}
