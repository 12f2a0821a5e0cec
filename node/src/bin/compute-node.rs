//! `compute-node`: the gateway a peer runs next to its CometBFT node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use compute_node::gateway::limits::LimitsConfig;
use compute_node::gateway::{self, pins, GatewayConfig};
use compute_proto::BlobId;
use tracing_subscriber::EnvFilter;

/// How long calls in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// The compute network's gateway: relays signed transactions to CometBFT,
/// proxies queries, streams chain events and serves verified blobs over gRPC.
/// It never holds a key.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Without a command, the gateway serves.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address of the gRPC server.
    #[arg(long, env = "COMPUTE_GATEWAY_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// CometBFT RPC of the node running compute-abci (its websocket is at /websocket).
    #[arg(long, env = "COMPUTE_NODE", default_value = "http://127.0.0.1:26657")]
    rpc: String,
    /// Home directory; blobs are stored in <home>/blobs, operator pins in <home>/pins.
    #[arg(
        long,
        global = true,
        env = "COMPUTE_GATEWAY_HOME",
        default_value = ".compute-node"
    )]
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
    /// Unreferenced blobs are evicted, oldest first, while the store holds
    /// more than this share of --quota-bytes (percent)...
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    high_water_percent: u8,
    /// ...until it holds at most this share (percent).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    low_water_percent: u8,
    /// Bytes of blobs that no job references which one account may keep here.
    #[arg(long, default_value_t = 256 << 20)]
    account_quota_bytes: u64,
    /// Seconds an unreferenced blob is kept after its upload before it may be
    /// evicted (covers inputs uploaded before their job is posted, and outputs
    /// before they are revealed).
    #[arg(long, default_value_t = 3600)]
    grace_secs: u64,
    /// Blocks a settled task's output stays referenced after settlement.
    #[arg(long, default_value_t = 100_000)]
    retain_blocks: u64,
    /// Credits an account must hold to upload blobs, unless it is a
    /// registered worker.
    #[arg(long, default_value_t = 1000)]
    upload_min_balance: u64,
    /// Calls per second one client IP address may sustain.
    #[arg(long, default_value_t = LimitsConfig::default().client_requests_per_second)]
    client_requests_per_second: u32,
    /// Calls one client IP address may make in a burst.
    #[arg(long, default_value_t = LimitsConfig::default().client_request_burst)]
    client_request_burst: u32,
    /// Streams (Subscribe, GetBlob, PutBlob) one client IP address may hold open at once.
    #[arg(long, default_value_t = LimitsConfig::default().client_streams_max)]
    client_streams_max: u32,
    /// Uploads per minute one account may sustain.
    #[arg(long, default_value_t = LimitsConfig::default().account_uploads_per_minute)]
    account_uploads_per_minute: u32,
    /// Uploads one account may make in a burst.
    #[arg(long, default_value_t = LimitsConfig::default().account_upload_burst)]
    account_upload_burst: u32,
    /// Seconds an upload may take to send its first chunk, the signed header.
    #[arg(long, default_value_t = LimitsConfig::default().upload_header_timeout_secs)]
    upload_header_timeout_secs: u64,
}

/// Operator commands on the gateway's home; a running gateway picks up
/// changes to its pins within seconds.
#[derive(Subcommand, Debug)]
enum Command {
    /// Pins blobs so that they are never evicted, whether or not a job
    /// references them.
    Pin {
        /// Blob ids (64 hex).
        #[arg(required = true)]
        ids: Vec<BlobId>,
    },
    /// Removes operator pins (the chain's references still protect a blob).
    Unpin {
        /// Blob ids (64 hex).
        #[arg(required = true)]
        ids: Vec<BlobId>,
    },
    /// Lists the operator's pins.
    Pins,
}

/// Runs an operator command.
fn run_command(home: &Path, command: Command) -> Result<()> {
    let path = pins::path_in(home);
    match command {
        Command::Pin { ids } => {
            std::fs::create_dir_all(home)
                .with_context(|| format!("create home directory {}", home.display()))?;
            let added = pins::add(&path, &ids)?;
            println!(
                "pinned {added} new of {} blobs in {}",
                ids.len(),
                path.display()
            );
        }
        Command::Unpin { ids } => {
            let removed = pins::remove(&path, &ids)?;
            println!(
                "unpinned {removed} of {} blobs in {}",
                ids.len(),
                path.display()
            );
        }
        Command::Pins => {
            let mut ids: Vec<BlobId> = pins::load(&path)?.into_iter().collect();
            ids.sort_unstable();
            for id in ids {
                println!("{id}");
            }
        }
    }
    Ok(())
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
    if let Some(command) = args.command {
        return run_command(&args.home, command);
    }
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
        high_water_percent: args.high_water_percent,
        low_water_percent: args.low_water_percent,
        account_quota_bytes: args.account_quota_bytes,
        grace: Duration::from_secs(args.grace_secs),
        retain_blocks: args.retain_blocks,
        limits: LimitsConfig {
            client_requests_per_second: args.client_requests_per_second,
            client_request_burst: args.client_request_burst,
            client_streams_max: args.client_streams_max,
            account_uploads_per_minute: args.account_uploads_per_minute,
            account_upload_burst: args.account_upload_burst,
            upload_header_timeout_secs: args.upload_header_timeout_secs,
        },
        upload_min_balance: args.upload_min_balance,
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
