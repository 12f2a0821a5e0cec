//! One sender's `compute transfer`s, sent back to back without waiting for
//! blocks, or all at once, all land with consecutive nonces: the CLI signs
//! with the node's pending nonce (`/nonce`, which counts the mempool while
//! transactions sit there), prints each hash before it is sent, treats a
//! stale nonce or an identical transaction already in the node's cache as
//! a reason to look the hash up and sign again, and reports a transaction
//! sent again with its pinned nonce as committed, once. `--node` takes
//! several nodes and passes over a dead one.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use compute_client::{node_order, Query};
use compute_proto::AccountId;
use compute_tests::{cli_new_key, free_ports, poll_until, run_cli, CliOutput, NetConfig, Node};
use serde_json::Value;

const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// `compute transfer` of `amount` from the key file to `to`, with `extra`
/// arguments, in JSON; the parsed output (the command must succeed).
async fn transfer(
    nodes: &str,
    key: &Path,
    to: &AccountId,
    amount: u64,
    extra: &[&str],
) -> Result<(Value, CliOutput)> {
    let key = key.to_string_lossy();
    let to = to.to_hex();
    let amount = amount.to_string();
    let mut args = vec![
        "transfer", "--key", &key, "--to", &to, "--amount", &amount, "--node", nodes,
    ];
    args.extend_from_slice(extra);
    let out = run_cli(&args, CLI_TIMEOUT).await?;
    Ok((out.json()?, out))
}

/// The hash a submission's JSON names: 64 upper-case hex characters.
fn hash_of(value: &Value) -> Result<String> {
    let hash = value["hash"]
        .as_str()
        .with_context(|| format!("no hash in {value}"))?;
    ensure!(
        hash.len() == 64
            && hash
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "not CometBFT's upper-case hex hash: {hash}"
    );
    Ok(hash.to_owned())
}

/// `compute tx <hash>` in JSON, whatever its exit status.
async fn tx(node: &Node, hash: &str) -> Result<(bool, Value)> {
    let rpc = node.rpc_url();
    let out = run_cli(
        ["tx", hash, "--node", &rpc, "--output", "json"],
        CLI_TIMEOUT,
    )
    .await?;
    let line = out.stdout.lines().last().unwrap_or_default().to_owned();
    let value: Value = serde_json::from_str(&line).with_context(|| format!("no JSON: {out:?}"))?;
    Ok((out.status.success(), value))
}

#[tokio::test]
async fn transfers_sent_without_waiting_are_pending_then_all_land_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let alice_key = dir.path().join("alice.key");
    let alice = cli_new_key(&alice_key).await?;
    let bob = cli_new_key(&dir.path().join("bob.key")).await?;
    // Slow blocks: transactions sit in the mempool between them.
    let config = NetConfig {
        balances: vec![(alice, 1_000_000)],
        timeout_commit_ms: 2_000,
        ..NetConfig::funded(&[], 0)
    };
    let node = Node::start(config).await?;
    let rpc = node.rpc_url();
    let chain = node.chain();

    let mut hashes = Vec::new();
    let mut ahead = 0;
    for i in 0..5u64 {
        let (value, _) = transfer(
            &rpc,
            &alice_key,
            &bob,
            1 + i,
            &["--no-wait", "--output", "json"],
        )
        .await?;
        ensure!(value["status"] == "submitted", "{value}");
        ensure!(value["nonce"] == i, "consecutive nonces: {value}");
        ensure!(value["height"] == 0, "{value}");
        hashes.push(hash_of(&value)?);
        let nonce = chain.nonce(&alice).await?;
        ensure!(nonce.pending_nonce >= nonce.nonce, "{nonce:?}");
        if nonce.pending_nonce > nonce.nonce {
            ahead += 1;
        }
    }
    ensure!(
        ahead > 0,
        "/nonce never counted a transaction waiting in the mempool"
    );
    // A read-only look at the same account: the committed nonce is behind
    // or equal, the pending one counts all five.
    let pending = chain.pending_nonce(&alice).await?;
    ensure!(pending.counts_mempool && pending.nonce == 5, "{pending:?}");

    poll_until(
        "the five transfers are committed",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { Ok((node.nonce(&alice).await? == 5).then_some(())) },
    )
    .await?;
    ensure!(node.balance(&bob).await? == 1 + 2 + 3 + 4 + 5);
    for hash in &hashes {
        let (ok, value) = tx(&node, hash).await?;
        ensure!(ok && value["status"] == "committed", "{hash}: {value}");
    }
    let (ok, value) = tx(&node, &"AB".repeat(32)).await?;
    ensure!(!ok && value["status"] == "not_found", "{value}");

    // In text mode the hash goes to stderr before anything is sent, and
    // the result names it.
    let key = alice_key.to_string_lossy();
    let bob_hex = bob.to_hex();
    let out = run_cli(
        [
            "transfer", "--key", &key, "--to", &bob_hex, "--amount", "9", "--node", &rpc,
        ],
        CLI_TIMEOUT,
    )
    .await?;
    ensure!(out.status.success(), "{out:?}");
    let sending = out
        .stderr
        .lines()
        .find(|l| l.starts_with("sending transaction "))
        .with_context(|| format!("no hash before sending: {out:?}"))?;
    let hash = sending
        .split_whitespace()
        .nth(2)
        .context("a hash")?
        .to_owned();
    ensure!(out.stdout.contains(&hash), "{out:?}");
    ensure!(sending.contains("(nonce 5)"), "{sending}");
    Ok(())
}

#[tokio::test]
async fn concurrent_identical_transfers_and_a_resubmission_each_land_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let alice_key = dir.path().join("alice.key");
    let alice = cli_new_key(&alice_key).await?;
    let bob = cli_new_key(&dir.path().join("bob.key")).await?;
    let config = NetConfig {
        balances: vec![(alice, 1_000_000)],
        timeout_commit_ms: 500,
        ..NetConfig::funded(&[], 0)
    };
    let node = Node::start(config).await?;
    let rpc = node.rpc_url();

    // Four identical transfers at once, each waiting for its block: they
    // read the same pending nonce, so three meet an identical transaction
    // in the node's cache or a used nonce, and sign again.
    let run = || transfer(&rpc, &alice_key, &bob, 7, &["--output", "json"]);
    let (a, b, c, d) = tokio::join!(run(), run(), run(), run());
    let mut nonces = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for result in [a, b, c, d] {
        let (value, out) = result?;
        ensure!(value["status"] == "committed", "{value}\n{}", out.stderr);
        ensure!(value["height"].as_u64().unwrap_or(0) > 0, "{value}");
        nonces.insert(value["nonce"].as_u64().context("a nonce")?);
        hashes.insert(hash_of(&value)?);
    }
    ensure!(
        nonces == (0..4).collect::<BTreeSet<u64>>(),
        "consecutive nonces: {nonces:?}"
    );
    ensure!(hashes.len() == 4);
    ensure!(node.balance(&bob).await? == 28);
    ensure!(node.nonce(&alice).await? == 4);

    // The transfer with nonce 0 sent again, nonce pinned: the node already
    // holds it, and it is committed: a success, with the same hash, landed
    // once.
    let first = {
        let (value, out) = transfer(
            &rpc,
            &alice_key,
            &bob,
            7,
            &["--nonce", "0", "--output", "json"],
        )
        .await?;
        ensure!(value["status"] == "committed", "{value}\n{}", out.stderr);
        ensure!(value["nonce"] == 0, "{value}");
        hash_of(&value)?
    };
    ensure!(hashes.contains(&first), "the same transaction: {first}");
    ensure!(node.balance(&bob).await? == 28, "landed once");
    // The same in text mode: no error, the hash and its block.
    let key = alice_key.to_string_lossy();
    let bob_hex = bob.to_hex();
    let out = run_cli(
        [
            "transfer", "--key", &key, "--to", &bob_hex, "--amount", "7", "--nonce", "0", "--node",
            &rpc,
        ],
        CLI_TIMEOUT,
    )
    .await?;
    ensure!(out.status.success(), "{out:?}");
    ensure!(
        out.stdout.contains(&first) && !out.stderr.contains("error"),
        "{out:?}"
    );

    // A refusal names the hash, in the JSON and on stderr.
    let out = run_cli(
        [
            "transfer",
            "--key",
            &key,
            "--to",
            &bob_hex,
            "--amount",
            "999999999",
            "--node",
            &rpc,
            "--output",
            "json",
        ],
        CLI_TIMEOUT,
    )
    .await?;
    ensure!(!out.status.success(), "{out:?}");
    let value: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or_default())?;
    ensure!(value["code"] == 8, "InsufficientFunds: {value}");
    let refused = hash_of(&value)?;
    ensure!(value["check"] == format!("compute tx {refused}"), "{value}");

    // Two nodes, the first dead: a sender whose account picks the dead one
    // goes on to the next; reads start with the first and do the same.
    let [dead_port] = free_ports::<1>();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let mut urls = vec![dead.clone(), rpc.clone()];
    if node_order(&urls, Some(&alice))[0] != dead {
        urls.reverse();
    }
    ensure!(node_order(&urls, Some(&alice))[0] == dead);
    let (value, out) =
        transfer(&urls.join(","), &alice_key, &bob, 5, &["--output", "json"]).await?;
    ensure!(
        value["status"] == "committed" && value["nonce"] == 4,
        "{value}\n{}",
        out.stderr
    );
    let alice_hex = alice.to_hex();
    let out = run_cli(
        [
            "account", &alice_hex, "--node", &dead, "--node", &rpc, "--output", "json",
        ],
        CLI_TIMEOUT,
    )
    .await?;
    ensure!(out.json()?["nonce"] == 5, "{out:?}");
    Ok(())
}
