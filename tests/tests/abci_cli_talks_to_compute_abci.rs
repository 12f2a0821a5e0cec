//! CometBFT's own `abci-cli` can talk to `compute-abci`: `info`, `query`,
//! and `check_tx` with a malformed transaction answering a clear code.

use std::process::Command;

use compute_proto::SigningKey;
use compute_tests::{cometbft_tool, NetConfig, Node};

fn abci_cli(node: &Node, args: &[&str]) -> String {
    let out = Command::new(cometbft_tool("abci-cli"))
        .args(args)
        .arg("--address")
        .arg(node.abci_addr())
        .arg("--log_level")
        .arg("error")
        .output()
        .expect("run abci-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "abci-cli {args:?} failed: {text}");
    text
}

#[tokio::test]
async fn abci_cli_talks_to_compute_abci() -> anyhow::Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let node = Node::start(NetConfig::funded(&[&alice], 777)).await?;

    let info = abci_cli(&node, &["info"]);
    assert!(info.contains("-> code: OK"), "{info}");
    assert!(info.contains("-> data: compute-abci"), "{info}");

    let query = abci_cli(
        &node,
        &[
            "query",
            "--path",
            &format!("/account/{}", alice.account()),
            "\"\"",
        ],
    );
    assert!(query.contains("-> code: OK"), "{query}");
    assert!(query.contains(r#""balance":777"#), "{query}");

    let unknown = abci_cli(&node, &["query", "--path", "/no/such/path", "\"\""]);
    assert!(unknown.contains("-> code: 100"), "{unknown}");
    assert!(unknown.contains("unknown query path"), "{unknown}");

    let check = abci_cli(&node, &["check_tx", "0xdeadbeef"]);
    assert!(check.contains("-> code: 2"), "{check}");
    assert!(check.contains("not a compute.v1.Tx"), "{check}");
    Ok(())
}
