//! A real node (cometbft + compute-abci) answers `abci_query` with
//! `prove=true`; the client library checks the answer the way a user who
//! trusts no node would: the header of block `height + 1` is verified from
//! genesis by the light client (validators' signatures), and each proof op
//! against that header's app hash. The proven raw value decodes to the
//! record the JSON answer shows, a missing worker is proven absent, and a
//! proof checked against another height's app hash is refused.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_client::light::{LightClient, LightOptions, RpcSource, TrustAnchor, TrustedStore};
use compute_client::proof::proven_state;
use compute_proto::{pb, SigningKey};
use compute_tests::{NetConfig, Node, Signer};
use prost::Message as _;
use tendermint::merkle::proof::ProofOp;
use tendermint_rpc::Client;

/// Asks `path` with proofs at the latest height; returns the answer's
/// height, JSON value and proof ops.
async fn ask(node: &Node, path: &str) -> Result<(u64, Vec<u8>, Vec<ProofOp>, u32)> {
    let answer = node
        .client()
        .abci_query(Some(path.to_owned()), Vec::new(), None, true)
        .await?;
    let ops = answer.proof.map(|p| p.ops).unwrap_or_default();
    Ok((
        answer.height.value(),
        answer.value,
        ops,
        answer.code.value(),
    ))
}

#[tokio::test]
async fn a_proven_query_verifies_against_a_light_client_header() -> Result<()> {
    let alice = SigningKey::from_seed([41; 32]);
    let bob = SigningKey::from_seed([42; 32]).account();
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let mut signer = Signer::new(&node);
    signer
        .commit(&alice, compute_tests::transfer(&bob, 250))
        .await?;

    let (height, value, ops, code) = ask(&node, &format!("/account/{bob}")).await?;
    ensure!(code == 0, "/account answered code {code}");
    ensure!(ops.len() == 1, "one key behind /account: {ops:?}");
    // The app hash after `height` is in block height + 1's header.
    node.wait_for_height(height + 1, Duration::from_secs(30))
        .await?;
    let source = RpcSource::new(&node.rpc_url(), 5_000)?;
    let mut light = LightClient::new(
        source,
        LightOptions::new(Duration::from_secs(3600)),
        TrustedStore::in_memory(),
    )?;
    light
        .anchor(&TrustAnchor::Genesis { genesis: None })
        .await?;
    let (header, root) = light.state_root_for_query(height).await?;
    ensure!(
        header.height() == height + 1,
        "verified {}",
        header.height()
    );
    let proven = proven_state(&root, &ops)?;
    let raw = proven
        .get(&ops[0].key)
        .flatten()
        .context("bob's account is proven present")?;
    let account = pb::Account::decode(raw)?;
    let view: serde_json::Value = serde_json::from_slice(&value)?;
    ensure!(
        account.balance == 250 && view["balance"] == 250,
        "{account:?} {view}"
    );

    // Absent: a worker that never registered.
    let (height, _, ops, code) = ask(&node, &format!("/worker/{bob}")).await?;
    ensure!(code == 102, "an unknown worker is not found (code {code})");
    node.wait_for_height(height + 1, Duration::from_secs(30))
        .await?;
    let (_, root) = light.state_root_for_query(height).await?;
    let proven = proven_state(&root, &ops)?;
    ensure!(
        !proven.is_empty() && proven.iter().all(|(_, v)| v.is_none()),
        "the worker key is proven absent"
    );

    // The same proofs do not hold against block 2's app hash.
    let (_, genesis_root) = light.state_root_for_query(1).await?;
    ensure!(
        proven_state(&genesis_root, &ops).is_err(),
        "a proof holds against its own app hash only"
    );
    Ok(())
}
