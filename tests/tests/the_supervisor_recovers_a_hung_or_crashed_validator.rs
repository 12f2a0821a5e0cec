//! `compute-supervisor` keeps a validator going through the faults a
//! 4-validator fault run found, and repairs what they broke:
//!
//! 1. cometbft SIGSTOPped: its RPC falls silent; the supervisor judges the
//!    node hung within a bounded time, kills and restarts both children.
//! 2. compute-abci SIGSTOPped (finding F1's shape: cometbft waits in
//!    Commit→Flush with its RPC still answering /status at the old height):
//!    the height rule catches it; cometbft ignores SIGTERM and is SIGKILLed.
//! 3. compute-abci SIGKILLed: cometbft is stopped and both restart.
//! 4. A transfer commits and cometbft is SIGKILLed right after (finding F2:
//!    blocks committed just before a kill were never indexed). The index is
//!    also deleted while both are down, so the loss is certain rather than
//!    a race; after recovery `/tx` and `tx_search` find every transfer,
//!    because the supervisor ran `cometbft reindex-event` before cometbft
//!    started again.
//!
//! Then SIGTERM stops the unit cleanly: cometbft first, no pid files and no
//! repair marker left. Everything is asserted from outside (RPC heights, tx
//! lookups, pids) and from the supervisor's log.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use compute_client::Query as _;
use compute_proto::{AccountId, SigningKey};
use compute_tests::{pid_alive, send_signal, transfer, NetConfig, SupervisedNode};
use tendermint_rpc::query::Query;
use tendermint_rpc::{Client, Order};

/// The supervisor's stall timeout in this test.
const STALL: Duration = Duration::from_secs(3);
/// Its startup grace: no hang verdict this long after cometbft starts.
const GRACE: Duration = Duration::from_secs(4);
/// The longest a detection may take: the stall timeout plus a poll, an RPC
/// timeout and slack for a loaded machine.
const DETECT_WITHIN: Duration = Duration::from_secs(10);

const STARTED: &str = "started cometbft";
const RESTARTING: &str = "restarting compute-abci and cometbft";

#[tokio::test]
async fn the_supervisor_recovers_a_hung_or_crashed_validator() -> Result<()> {
    let alice = SigningKey::from_seed([31; 32]);
    let bob = SigningKey::from_seed([32; 32]).account();
    let mut node = SupervisedNode::start(
        NetConfig::funded(&[&alice], 1_000_000),
        &[
            "--stall-timeout",
            "3s",
            "--startup-grace",
            "4s",
            "--poll-interval",
            "200ms",
            "--rpc-timeout",
            "1s",
            "--kill-grace",
            "2s",
            "--backoff-initial",
            "1s",
            "--backoff-max",
            "2s",
            // The whole (short) chain: the index is deleted in step 4.
            "--reindex-margin",
            "100000",
        ],
    )
    .await?;
    let early = commit_transfer(&node, &alice, &bob, 5).await?;

    // 1. cometbft stopped: its RPC accepts connections but never answers.
    let detected = fault_and_recover(&node, "cometbft", "STOP", "its RPC has not answered").await?;
    ensure!(
        detected <= DETECT_WITHIN,
        "a silent RPC was detected only after {detected:?}"
    );

    // 2. compute-abci stopped: cometbft's RPC answers, its height stands.
    let kills = node.log_count("sending SIGKILL");
    let detected =
        fault_and_recover(&node, "compute-abci", "STOP", "its height has stood at").await?;
    ensure!(
        detected <= DETECT_WITHIN,
        "a standing height was detected only after {detected:?}"
    );
    ensure!(
        node.log_count("sending SIGKILL") > kills,
        "a cometbft stuck on its app needs SIGKILL:\n{}",
        node.log_tail("supervisor")
    );

    // 3. compute-abci crashes: cometbft is stopped with it, both restart.
    fault_and_recover(&node, "compute-abci", "KILL", "compute-abci exited").await?;

    // 4. A transfer commits; cometbft is killed at once.
    let restarts = node.log_count(RESTARTING);
    let repairs = node.log_count("re-indexed events of heights");
    let repairs_started = node.log_count("repairing the event index");
    let cometbft = node.child_pid("cometbft").context("cometbft pid file")?;
    let nonce = node.chain().next_nonce(&alice.account()).await?;
    let tx = node.tx_builder().sign(&alice, nonce, transfer(&bob, 7));
    let late = node.client().broadcast_tx_commit(tx).await?;
    send_signal(cometbft, "KILL")?;
    ensure!(
        late.check_tx.code.value() == 0 && late.tx_result.code.value() == 0,
        "transfer refused: {} {}",
        late.check_tx.log,
        late.tx_result.log
    );
    let late_height = late.height.value();
    node.wait_for_log(RESTARTING, restarts + 1, Duration::from_secs(20))
        .await?;
    // Both are down now, for the backoff. Lose the index for sure (a kill
    // right after the commit loses the last blocks' entries only if it wins
    // a race with CometBFT's indexer).
    std::fs::remove_dir_all(node.cometbft_home().join("data/tx_index.db"))
        .context("delete the tx index")?;
    ensure!(
        node.log_count("repairing the event index") == repairs_started,
        "the repair began before the index was deleted: the test proves nothing"
    );
    node.wait_for_log(
        "re-indexed events of heights",
        repairs + 1,
        Duration::from_secs(30),
    )
    .await?;
    node.wait_for_child("cometbft", Some(cometbft), Duration::from_secs(30))
        .await?;
    node.wait_for_height(late_height + 2, Duration::from_secs(30))
        .await?;

    let log = node.supervisor_log();
    let (start, end) = last_repaired_range(&log).context("no repaired range in the log")?;
    ensure!(
        start <= early.1 && late_height <= end,
        "the repair covered {start}..={end}, not heights {} and {late_height}",
        early.1
    );
    let client = node.client();
    for (hash, height) in [early, (late.hash, late_height)] {
        let found = client
            .tx(hash, false)
            .await
            .with_context(|| format!("/tx does not find {hash} (height {height})"))?;
        ensure!(found.height.value() == height && found.tx_result.code.value() == 0);
        let by_height = search(&node, &format!("tx.height={height}")).await?;
        ensure!(
            by_height.contains(&hash),
            "tx_search tx.height={height}: {by_height:?}"
        );
    }
    let by_recipient = search(&node, &format!("transfer.recipient='{bob}'")).await?;
    ensure!(
        by_recipient == vec![early.0, late.hash],
        "tx_search by recipient finds {by_recipient:?}"
    );
    ensure!(node.chain().account(&bob).await?.balance == 12);

    // SIGTERM: cometbft is stopped before compute-abci, and cleanly.
    let status = node.stop(Duration::from_secs(30)).await?;
    ensure!(status.success(), "the supervisor exited with {status}");
    let log = node.supervisor_log();
    let shutdown = log
        .rfind("shutting down: stopping cometbft, then compute-abci")
        .context("no shutdown line")?;
    let tail = &log[shutdown..];
    let cometbft_stop = tail
        .find("child=cometbft")
        .context("cometbft not stopped")?;
    let abci_stop = tail
        .find("child=compute-abci")
        .context("compute-abci not stopped")?;
    ensure!(
        cometbft_stop < abci_stop,
        "compute-abci was stopped first:\n{tail}"
    );
    ensure!(tail.contains("stopped cleanly"), "{tail}");
    let run_dir = node.run_dir();
    for file in [
        "cometbft.pid",
        "compute-abci.pid",
        "supervisor.pid",
        "needs-reindex",
    ] {
        ensure!(
            !run_dir.join(file).exists(),
            "{file} is left in the run directory"
        );
    }
    Ok(())
}

/// Signs and commits a transfer of `amount` to `to`; returns its hash and
/// height.
async fn commit_transfer(
    node: &SupervisedNode,
    from: &SigningKey,
    to: &AccountId,
    amount: u64,
) -> Result<(tendermint::Hash, u64)> {
    let nonce = node.chain().next_nonce(&from.account()).await?;
    let tx = node.tx_builder().sign(from, nonce, transfer(to, amount));
    let result = node.client().broadcast_tx_commit(tx).await?;
    ensure!(
        result.check_tx.code.value() == 0 && result.tx_result.code.value() == 0,
        "transfer refused: {} {}",
        result.check_tx.log,
        result.tx_result.log
    );
    Ok((result.hash, result.height.value()))
}

/// Waits out the startup grace, sends `signal` to the child `victim`, and
/// waits for the supervisor to log `expect`, to replace both children and
/// for blocks to advance again. Returns how long the detection took.
async fn fault_and_recover(
    node: &SupervisedNode,
    victim: &str,
    signal: &str,
    expect: &str,
) -> Result<Duration> {
    // The hang verdict is off for the startup grace after cometbft started.
    tokio::time::sleep(GRACE).await;
    let height = node.wait_for_height(1, Duration::from_secs(10)).await?;
    let generation = node.log_count(STARTED);
    let seen = node.log_count(expect);
    let cometbft = node.child_pid("cometbft").context("cometbft pid file")?;
    let abci = node
        .child_pid("compute-abci")
        .context("compute-abci pid file")?;
    let pid = if victim == "cometbft" { cometbft } else { abci };
    send_signal(pid, signal)?;
    let sent = Instant::now();
    node.wait_for_log(expect, seen + 1, DETECT_WITHIN + STALL)
        .await
        .with_context(|| format!("after SIGSTOP/KILL of {victim}"))?;
    let detected = sent.elapsed();
    node.wait_for_log(STARTED, generation + 1, Duration::from_secs(30))
        .await?;
    for (name, old) in [("cometbft", cometbft), ("compute-abci", abci)] {
        ensure!(!pid_alive(old), "the old {name} ({old}) still runs");
        node.wait_for_child(name, Some(old), Duration::from_secs(10))
            .await?;
    }
    node.wait_for_height(height + 3, Duration::from_secs(30))
        .await?;
    Ok(detected)
}

/// The hashes `tx_search` finds for `query`.
async fn search(node: &SupervisedNode, query: &str) -> Result<Vec<tendermint::Hash>> {
    let parsed: Query = query.parse()?;
    let found = node
        .client()
        .tx_search(parsed, false, 1, 100, Order::Ascending)
        .await
        .with_context(|| format!("tx_search {query}"))?;
    Ok(found.txs.iter().map(|t| t.hash).collect())
}

/// The last "re-indexed events of heights S..=E" in the supervisor's log.
fn last_repaired_range(log: &str) -> Option<(u64, u64)> {
    let marker = "re-indexed events of heights ";
    let at = log.rfind(marker)? + marker.len();
    let range = log[at..].split_whitespace().next()?;
    let (start, end) = range.split_once("..=")?;
    Some((start.parse().ok()?, end.parse().ok()?))
}
