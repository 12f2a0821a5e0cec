//! `compute-node`: the gateway a peer runs next to its CometBFT node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use compute_node::gateway::{self, GatewayConfig};
use tracing_subscriber::EnvFilter;

/// How long calls in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// The compute network's gateway: relays signed transactions to CometBFT,
/// proxies queries, streams chain events and serves verified blobs over gRPC.
/// It never holds a key.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of the gRPC server.
    #[arg(long, env = "COMPUTE_GATEWAY_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// CometBFT RPC of the node running compute-abci (its websocket is at /websocket).
    #[arg(long, env = "COMPUTE_NODE", default_value = "http://127.0.0.1:26657")]
    rpc: String,
    /// Home directory; blobs are stored in <home>/blobs.
    #[arg(long, env = "COMPUTE_GATEWAY_HOME", default_value = ".compute-node")]
    home: PathBuf,
    /// Address of the Prometheus endpoint (GET /metrics); none when omitted.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// gRPC URL of another gateway to fetch missing blobs from (repeatable, asked in order).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Largest blob accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_blob_bytes: u64,
    /// Total bytes the blob store may hold.
    #[arg(long, default_value_t = 4 << 30)]
    quota_bytes: u64,
    /// Most Subscribe streams open at once; they all share one CometBFT
    /// websocket subscription, so this bounds only the gateway's own memory.
    #[arg(long, alias = "max-subscriptions", default_value_t = 4096)]
    max_subscribers: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.home)
        .with_context(|| format!("create home directory {}", args.home.display()))?;
    let config = GatewayConfig {
        listen: args.listen,
        rpc_url: args.rpc,
        home: args.home,
        metrics: args.metrics,
        peers: args.peers,
        max_blob_bytes: args.max_blob_bytes,
        quota_bytes: args.quota_bytes,
        subscriptions_max: args.max_subscribers,
    };
    let listeners = gateway::bind(&config).await?;
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        wait_for_signal().await;
        let _ = signalled_tx.send(());
    };
    let server = gateway::serve(config, listeners, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.context("gateway failed"),
        _ = signalled_rx => {}
    }
    match tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), server).await {
        Ok(result) => result.context("gateway failed"),
        Err(_) => {
            tracing::warn!("calls still in flight after {SHUTDOWN_GRACE_MS} ms; exiting anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the gateway");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
