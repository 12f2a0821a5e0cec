//! `compute-abci`: serves the compute network's state machine to CometBFT.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use compute_abci::abci::AbciApp;
use compute_abci::server::Server;
use compute_abci::snapshot::{SnapshotConfig, Snapshots};
use compute_abci::store::RocksStore;
use compute_abci::App;
use tracing_subscriber::EnvFilter;

/// The compute network's ABCI application (CometBFT v0.38).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Home directory; the state database lives in `<home>/data/state.db`.
    #[arg(long, env = "COMPUTE_ABCI_HOME", default_value_os_t = default_home())]
    home: PathBuf,
    /// Address to serve ABCI on (TCP only), as `tcp://host:port` or `host:port`.
    #[arg(
        long,
        env = "COMPUTE_ABCI_ADDR",
        default_value = "tcp://127.0.0.1:26658"
    )]
    addr: String,
    /// Bytes read from an ABCI connection at a time; large blocks want many.
    #[arg(long, default_value_t = 8 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..=(1 << 30)))]
    read_buf_bytes: u64,
    /// Heights of state kept for queries and proofs at past heights (the
    /// last commit included); older versions of the state tree are pruned.
    #[arg(long, default_value_t = compute_abci::app::DEFAULT_STATE_HISTORY,
          value_parser = clap::value_parser!(u64).range(1..))]
    state_history: u64,
    /// Take a state-sync snapshot after the commit of every height
    /// divisible by this many blocks, into `<home>/snapshots`; 0 takes
    /// none (snapshots already there are still served).
    #[arg(long, default_value_t = 1000)]
    snapshot_interval: u64,
    /// Snapshots kept (the newest) and listed to peers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    snapshot_keep: u32,
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".compute-abci")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let db_path = args.home.join("data").join("state.db");
    std::fs::create_dir_all(&db_path)
        .with_context(|| format!("cannot create the state directory {}", db_path.display()))?;
    let store = RocksStore::open(&db_path)?;
    // Modules compiled when stored are kept beside the state, so that a
    // restart does not compile them again.
    let app = App::new(store)
        .with_module_cache(args.home.join("compiled"))
        .with_state_history(args.state_history);
    let last = app.last_commit();
    tracing::info!(
        home = %args.home.display(),
        height = last.height,
        app_hash = %hex::encode(last.app_hash),
        "state opened"
    );
    let snapshots = Snapshots::open(SnapshotConfig {
        dir: args.home.join("snapshots"),
        interval_blocks: args.snapshot_interval,
        keep: args.snapshot_keep,
    })
    .context("cannot open the snapshot directory")?;
    tracing::info!(
        dir = %snapshots.config().dir.display(),
        interval_blocks = args.snapshot_interval,
        keep = args.snapshot_keep,
        "state-sync snapshots"
    );
    let addr = args.addr.strip_prefix("tcp://").unwrap_or(&args.addr);
    if args.addr.starts_with("unix://") {
        anyhow::bail!("unix sockets are not supported: use --addr tcp://127.0.0.1:26658 and the same proxy_app in CometBFT");
    }
    let read_bytes = usize::try_from(args.read_buf_bytes).unwrap_or(usize::MAX);
    let server = Server::bind(
        addr,
        AbciApp::new(app).with_snapshots(snapshots),
        read_bytes,
    )
    .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %server.local_addr()?, "serving ABCI");
    server.listen().context("ABCI server stopped")?;
    Ok(())
}
