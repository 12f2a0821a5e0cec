//! `compute` verifies what it reads: a small HTTP proxy in front of a real
//! node (cometbft + compute-abci) alters what the node says, and the CLI,
//! pointed at the proxy, refuses each lie and names it: an altered balance,
//! a dropped proof, a flipped byte of a proof, and a forged header. An
//! honest proxy passes, `compute verify query` shows the header and the
//! proven key, and with `--trust-node` the altered balance is believed,
//! which is the attack that verification stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use compute_proto::SigningKey;
use compute_tests::{run_cli, transfer, NetConfig, Node, Signer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// The balance the transfer gives bob.
const AMOUNT: u64 = 250;

/// What the proxy changes in the node's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lie {
    None,
    /// `abci_query`'s JSON value: the balance plus 1,000.
    AlterValue,
    /// `abci_query`'s proof ops: dropped.
    DropProof,
    /// `abci_query`'s first proof op: one byte of its proof flipped.
    TamperProof,
    /// `commit`'s header: another app hash.
    ForgeHeader,
    /// `abci_query`'s height: the one before, whatever was asked.
    OtherHeight,
}

/// Serves on a free loopback port until dropped; returns its URL.
async fn proxy(upstream: u16, lie: Lie) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = serve(stream, upstream, lie).await;
            });
        }
    });
    Ok((url, task))
}

/// One request: read it, ask the node (HTTP/1.0, so the answer ends with
/// the connection), change the answer, reply and close.
async fn serve(mut client: TcpStream, upstream: u16, lie: Lie) -> Result<()> {
    let (head, body) = read_request(&mut client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut node = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let method = if body.is_empty() { "GET" } else { "POST" };
    let forwarded = format!(
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    node.write_all(forwarded.as_bytes()).await?;
    node.write_all(&body).await?;
    let mut answer = Vec::new();
    node.read_to_end(&mut answer).await?;
    let split = find(&answer, b"\r\n\r\n").context("an HTTP answer")?;
    let answer_body = &answer[split + 4..];
    let rpc_method = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let changed = alter(answer_body, &rpc_method, lie).unwrap_or_else(|_| answer_body.to_vec());
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        changed.len()
    );
    client.write_all(reply.as_bytes()).await?;
    client.write_all(&changed).await?;
    client.shutdown().await?;
    Ok(())
}

async fn read_request(stream: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed before a request");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        ensure!(buf.len() < 1 << 20, "request head too large");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The node's JSON-RPC answer to `method`, with the lie told.
fn alter(body: &[u8], method: &str, lie: Lie) -> Result<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(body)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    match (lie, method) {
        (Lie::AlterValue, "abci_query") => {
            let response = &mut value["result"]["response"];
            let raw = b64.decode(response["value"].as_str().context("a value")?)?;
            let mut answer: Value = serde_json::from_slice(&raw)?;
            let balance = answer["balance"].as_u64().context("a balance")?;
            answer["balance"] = (balance + 1_000).into();
            response["value"] = b64.encode(serde_json::to_vec(&answer)?).into();
        }
        (Lie::DropProof, "abci_query") => {
            value["result"]["response"]["proofOps"] = Value::Null;
        }
        (Lie::TamperProof, "abci_query") => {
            let op = &mut value["result"]["response"]["proofOps"]["ops"][0];
            let mut data = b64.decode(op["data"].as_str().context("proof data")?)?;
            let middle = data.len() / 2;
            data[middle] ^= 0x01;
            op["data"] = b64.encode(data).into();
        }
        (Lie::OtherHeight, "abci_query") => {
            let response = &mut value["result"]["response"];
            let height: u64 = response["height"].as_str().context("a height")?.parse()?;
            response["height"] = height.saturating_sub(1).to_string().into();
        }
        (Lie::ForgeHeader, "commit") => {
            value["result"]["signed_header"]["header"]["app_hash"] = "AB".repeat(32).into();
        }
        _ => {}
    }
    Ok(serde_json::to_vec(&value)?)
}

/// `compute <args> --node <url>` with a fresh trust store anchored at the
/// node's genesis file; returns whether it succeeded, stdout and stderr.
async fn cli(
    node: &Node,
    url: &str,
    store: &std::path::Path,
    args: &[&str],
) -> Result<(bool, String, String)> {
    let genesis = node.home().join("cometbft/config/genesis.json");
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend([
        "--node".to_owned(),
        url.to_owned(),
        "--trust-store".to_owned(),
        store.display().to_string(),
        "--genesis".to_owned(),
        genesis.display().to_string(),
    ]);
    let out = run_cli(&all, CLI_TIMEOUT).await?;
    Ok((out.status.success(), out.stdout, out.stderr))
}

#[tokio::test]
async fn a_lying_node_is_caught_by_the_cli() -> Result<()> {
    let alice = SigningKey::from_seed([51; 32]);
    let bob = SigningKey::from_seed([52; 32]).account();
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let mut signer = Signer::new(&node);
    signer.commit(&alice, transfer(&bob, AMOUNT)).await?;
    let dir = tempfile::tempdir()?;
    let path = format!("/account/{bob}");
    let stores = Arc::new(dir.path().to_owned());
    let store = |name: &str| stores.join(format!("{name}.json"));

    // Honest: verified, and `verify query` shows what proves it.
    let (url, _honest) = proxy(node.rpc_port, Lie::None).await?;
    let (ok, stdout, stderr) = cli(
        &node,
        &url,
        &store("honest"),
        &["--output", "json", "query", &path],
    )
    .await?;
    ensure!(ok, "an honest answer verifies: {stderr}");
    let answer: Value = serde_json::from_str(stdout.trim())?;
    ensure!(answer["balance"] == AMOUNT, "{answer}");
    let (ok, stdout, stderr) = cli(
        &node,
        &url,
        &store("honest"),
        &["--output", "json", "verify", "query", &path],
    )
    .await?;
    ensure!(ok, "verify query: {stderr}");
    let report: Value = serde_json::from_str(stdout.trim())?;
    let height = report["height"].as_u64().context("height")?;
    ensure!(
        report["verified_header"]["height"] == height + 1,
        "{report}"
    );
    ensure!(report["proven"][0]["present"] == true, "{report}");
    ensure!(report["answer"]["balance"] == AMOUNT, "{report}");

    // Each lie is refused, and named.
    for (lie, says) in [
        (Lie::AlterValue, "lied in /account"),
        (Lie::DropProof, "without proofs"),
        (Lie::TamperProof, "proof that does not hold"),
        (Lie::ForgeHeader, "lied about block"),
    ] {
        let (url, _task) = proxy(node.rpc_port, lie).await?;
        let name = format!("{lie:?}");
        let (ok, stdout, stderr) = cli(&node, &url, &store(&name), &["query", &path]).await?;
        ensure!(!ok, "{lie:?} was believed: {stdout}");
        ensure!(
            stderr.contains(says) && stderr.contains(&url),
            "{lie:?}: the error names neither the lie ('{says}') nor the node {url}: {stderr}"
        );
    }

    // A read at a height is answered for that height, or refused.
    let (url, _task) = proxy(node.rpc_port, Lie::OtherHeight).await?;
    let asked = height.to_string();
    let (ok, stdout, stderr) = cli(
        &node,
        &url,
        &store("other-height"),
        &["verify", "query", &path, "--height", &asked],
    )
    .await?;
    ensure!(!ok, "an answer for another height was believed: {stdout}");
    ensure!(
        stderr.contains(&format!(
            "asked for height {height}, it answered for height {}",
            height - 1
        )),
        "{stderr}"
    );

    // The typed read commands verify too: a reputation without its proof
    // is refused.
    let (url, _task) = proxy(node.rpc_port, Lie::DropProof).await?;
    let bob_hex = bob.to_hex();
    let (ok, stdout, stderr) =
        cli(&node, &url, &store("reputation"), &["reputation", &bob_hex]).await?;
    ensure!(!ok, "a reputation without proof was believed: {stdout}");
    ensure!(stderr.contains("without proofs"), "{stderr}");

    // Without verification, the altered balance is believed.
    let (url, _task) = proxy(node.rpc_port, Lie::AlterValue).await?;
    let (ok, stdout, stderr) = cli(
        &node,
        &url,
        &store("trusting"),
        &["--trust-node", "--output", "json", "query", &path],
    )
    .await?;
    ensure!(ok, "{stderr}");
    let believed: Value = serde_json::from_str(stdout.trim())?;
    ensure!(believed["balance"] == AMOUNT + 1_000, "{believed}");
    Ok(())
}
