//! `compute-sandbox`: the worker service of the compute network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use compute_proto::keys::KeyFile;
use compute_worker::{DenyList, WatchConfig, Watcher, Worker, WorkerConfig};
use tokio::sync::watch;

/// Runs compute tasks assigned by the chain, in a deterministic WebAssembly
/// sandbox, and commits and reveals their results through a gateway.
#[derive(Debug, Parser)]
#[command(name = "compute-sandbox", version, about, long_about = None)]
struct Args {
    /// The worker's key file (`compute keys` format, readable by its owner only).
    #[arg(long, env = "COMPUTE_WORKER_KEY")]
    key: PathBuf,
    /// The gateway's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:9090", env = "COMPUTE_GATEWAY")]
    gateway: String,
    /// The worker's own directory: journal, module cache, compiled modules.
    #[arg(long, env = "COMPUTE_WORKER_HOME")]
    home: PathBuf,
    /// Tasks the chain may assign to this worker at once (registered with
    /// the chain on first start). Tasks beyond --parallel wait their turn.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Tasks run at once [default: this machine's cores, at most --capacity].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    parallel: Option<u32>,
    /// Credits locked as a slashable stake when registering.
    #[arg(long, default_value_t = 0)]
    stake: u64,
    /// Fee offered with every transaction.
    #[arg(long, default_value_t = 0)]
    fee: u64,
    /// A deny list: one hex module id per line, `#` for comments. Modules on
    /// it are never compiled or run.
    #[arg(long)]
    deny: Option<PathBuf>,
    /// FOR TESTS AND DEMOS ONLY: commit and reveal wrong results, so that
    /// the chain outvotes and slashes this worker.
    #[arg(long)]
    cheat: bool,
    /// Watch instead of work: re-run a sample of the tasks the chain
    /// settles and dispute every result that differs (bonding credits of
    /// this key; the bounty comes from the workers proven wrong). A
    /// watcher does not register and holds no task.
    #[arg(long, conflicts_with = "cheat")]
    watch: bool,
    /// With --watch: the share of settlements re-run, in percent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100), requires = "watch")]
    watch_sample: u32,
    /// With --watch: credits bonded per dispute [default: the chain's
    /// min_dispute_bond].
    #[arg(long, requires = "watch")]
    watch_bond: Option<u64>,
    /// Seconds between reconciliations with the chain when no event arrives.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    poll_secs: u64,
}

/// glibc malloc arenas the worker may use. Every thread that allocates
/// under contention gets an arena of its own (up to 8 per core by default)
/// and each keeps the free memory it once held: task threads and the
/// compiler's threads, over many distinct modules, left workers with
/// resident memory that grew and never came back. Two arenas measured the
/// same speed and less memory held, more so with more threads
/// (docs/BENCHMARKS.md, "Many distinct modules").
const MALLOC_ARENAS_MAX: i32 = 2;

/// Caps glibc's malloc arenas; done first in `main`, before any thread.
/// `MALLOC_ARENA_MAX` in the environment, when set, wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets a tuning parameter of glibc's allocator;
    // it takes plain integers, and is called before any other thread exists.
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX) };
    if set == 0 {
        // glibc refused the value: the default arenas are kept, which only
        // costs memory.
        eprintln!("compute-sandbox: cannot limit malloc arenas; keeping glibc's default");
    }
}

/// Other allocators need no tuning.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> Result<()> {
    limit_malloc_arenas();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    check_key_permissions(&args.key);
    let key = KeyFile::load(&args.key)?;
    let deny = match &args.deny {
        Some(path) => DenyList::load(path)?,
        None => DenyList::empty(),
    };
    if args.watch {
        return watch(args, key, deny).await;
    }
    if args.cheat {
        for _ in 0..3 {
            tracing::warn!("CHEAT MODE IS ON: this worker reveals WRONG results on purpose and will be slashed (--cheat is for tests and demos only)");
        }
    }
    let parallel = args
        .parallel
        .unwrap_or_else(|| default_parallel(args.capacity));
    tracing::info!(
        worker = %key.account(),
        gateway = %args.gateway,
        home = %args.home.display(),
        capacity = args.capacity,
        parallel,
        denied_modules = deny.len(),
        "starting"
    );
    let config = WorkerConfig {
        gateway_url: args.gateway,
        home: args.home,
        capacity: args.capacity,
        parallel,
        stake: args.stake,
        fee: args.fee,
        deny,
        cheat: args.cheat,
        poll: Duration::from_secs(args.poll_secs),
    };

    let stop_rx = stop_on_signal();

    let worker = match Worker::start(config, key, stop_rx).await {
        Ok(worker) => worker,
        Err(compute_worker::WorkerError::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    worker.run(|account| say_ready("worker", account)).await?;
    Ok(())
}

/// `--watch`: runs a watcher until a signal.
async fn watch(args: Args, key: compute_proto::SigningKey, deny: DenyList) -> Result<()> {
    let parallel = args.parallel.unwrap_or_else(|| default_parallel(u32::MAX));
    tracing::info!(
        watcher = %key.account(),
        gateway = %args.gateway,
        sample_percent = args.watch_sample,
        parallel,
        "starting as a watcher"
    );
    let config = WatchConfig {
        gateway_url: args.gateway,
        home: args.home,
        sample_percent: args.watch_sample,
        bond: args.watch_bond,
        fee: args.fee,
        parallel,
        deny,
    };
    let stop_rx = stop_on_signal();
    let watcher = match Watcher::start(config, key, stop_rx).await {
        Ok(watcher) => watcher,
        Err(compute_worker::WorkerError::ShuttingDown) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    watcher.run(|account| say_ready("watcher", account)).await?;
    Ok(())
}

/// A shutdown flag that turns true on SIGINT or SIGTERM.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping");
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// The line on stdout that scripts and tests wait for: `<role> <key> ready`.
fn say_ready(role: &str, account: compute_proto::AccountId) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{role} {account} ready");
    let _ = out.flush();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Warns when the key file is readable by others than its owner.
fn check_key_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the key file is readable by others; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
    }
}

/// Tasks run at once when `--parallel` is not given: one per core this
/// process may use, and never more than the capacity.
fn default_parallel(capacity: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores)
        .unwrap_or(u32::MAX)
        .clamp(1, capacity.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
        let args =
            Args::try_parse_from(["compute-sandbox", "--key", "k.json", "--home", "h"]).unwrap();
        assert_eq!(args.capacity, 2);
        assert_eq!(args.parallel, None);
        assert_eq!(args.poll_secs, 2);
        assert!(!args.cheat);
        for flag in ["--capacity", "--parallel"] {
            let zero = ["compute-sandbox", "--key", "k", "--home", "h", flag, "0"];
            assert!(Args::try_parse_from(zero).is_err(), "{flag} 0");
        }
    }

    #[test]
    fn tasks_run_at_once_default_to_the_cores_within_the_capacity() {
        assert_eq!(default_parallel(1), 1);
        let many = default_parallel(u32::MAX);
        assert!(many >= 1);
        assert_eq!(default_parallel(many), many);
    }
}
