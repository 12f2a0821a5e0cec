//! Every kind of bad transaction is refused by CheckTx with its stable code
//! and a readable log, and nothing about the state changes.

use compute_proto::{pb, SigningKey, TxBuilder};
use compute_tests::{transfer, NetConfig, Node};
use prost::Message;
use serde_json::json;
use tendermint_rpc::Client;

#[tokio::test]
async fn rejected_transactions_leave_the_state_unchanged() -> anyhow::Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let bob = SigningKey::from_seed([2; 32]).account();
    let mut config = NetConfig::funded(&[&alice], 1_000);
    // A small transaction limit, so that "oversized" is the app's verdict and
    // not CometBFT's mempool's.
    config.params = json!({
        "max_tx_bytes": 8192,
        "max_module_bytes": 4096,
        "max_inline_input_bytes": 2048,
        "max_inline_output_bytes": 2048,
    });
    let node = Node::start(config).await?;
    let client = node.client();

    // One good transfer so that nonce 0 is used.
    let first = node.signed_transfer(&alice, &bob, 100).await?;
    let committed = client.broadcast_tx_commit(first.clone()).await?;
    assert_eq!(
        committed.tx_result.code.value(),
        0,
        "{}",
        committed.tx_result.log
    );

    let before_alice = node.account(&alice.account()).await?;
    let before_bob = node.account(&bob).await?;
    let (_, _, before_stats) = node.query("/stats").await?;

    let chain = node.tx_builder();
    let mut bad_signature = pb::Tx::decode(chain.sign(&alice, 1, transfer(&bob, 5)).as_slice())?;
    bad_signature.signature[10] ^= 0x40;
    let mut oversized = pb::Transfer {
        to: bob.0.to_vec(),
        amount: 1,
    };
    oversized.to.resize(10_000, 0);

    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        (
            "bad signature",
            bad_signature.encode_to_vec(),
            4,
            "signature does not verify",
        ),
        (
            "wrong chain id",
            TxBuilder::new("another-chain").sign(&alice, 1, transfer(&bob, 5)),
            5,
            "another-chain",
        ),
        // Not byte-identical to the committed tx (CometBFT's cache would catch
        // that first): the same nonce with another amount.
        (
            "replayed nonce",
            chain.sign(&alice, 0, transfer(&bob, 7)),
            6,
            "already used",
        ),
        (
            "nonce gap",
            chain.sign(&alice, 5, transfer(&bob, 5)),
            7,
            "skips ahead",
        ),
        (
            "insufficient balance",
            chain.sign(&alice, 1, transfer(&bob, 1_000_000)),
            8,
            "credits",
        ),
        (
            "malformed bytes",
            vec![0xff, 0x00, 0x13, 0x37],
            2,
            "not a compute.v1.Tx",
        ),
        (
            "oversized",
            chain.sign(&alice, 1, pb::tx_body::Msg::Transfer(oversized)),
            1,
            "limit of 8192 bytes",
        ),
        (
            "zero amount",
            chain.sign(&alice, 1, transfer(&bob, 0)),
            10,
            "amount must be positive",
        ),
        (
            "dispute of no job",
            chain.sign(
                &alice,
                1,
                pb::tx_body::Msg::Dispute(pb::Dispute {
                    job_id: vec![0; 32],
                    bond: 1_000,
                    ..Default::default()
                }),
            ),
            23,
            "no job",
        ),
    ];
    for (name, bytes, code, log_part) in cases {
        let answer = client.broadcast_tx_sync(bytes).await?;
        assert_eq!(answer.code.value(), code, "{name}: {}", answer.log);
        assert_eq!(answer.codespace, "compute", "{name}");
        assert!(
            answer.log.contains(log_part),
            "{name}: log {:?} lacks {log_part:?}",
            answer.log
        );
    }
    // The exact bytes of the committed transfer: refused either by CometBFT's
    // cache or by the app's nonce check, never executed twice.
    match client.broadcast_tx_sync(first).await {
        Ok(answer) => assert_eq!(answer.code.value(), 6, "{}", answer.log),
        Err(e) => assert!(e.to_string().contains("cache"), "{e}"),
    }

    // Let a few blocks pass: nothing may have reached one.
    let height = node
        .wait_for_height(
            committed.height.value() + 3,
            std::time::Duration::from_secs(30),
        )
        .await?;
    assert!(height > committed.height.value());
    assert_eq!(node.account(&alice.account()).await?, before_alice);
    assert_eq!(node.account(&bob).await?, before_bob);
    let (_, _, after_stats) = node.query("/stats").await?;
    for counter in ["txs_ok", "txs_failed", "transfers"] {
        assert_eq!(after_stats[counter], before_stats[counter], "{counter}");
    }
    Ok(())
}
