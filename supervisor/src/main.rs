//! `compute-supervisor`: runs cometbft and compute-abci as one unit,
//! restarts both when one dies or the node stops making blocks, and repairs
//! the event index after an unclean stop.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use compute_supervisor::duration::parse_duration;
use compute_supervisor::rpc::{split_host_port, RpcEndpoint};
use compute_supervisor::Config;
use tracing_subscriber::EnvFilter;

/// Runs a validator's cometbft and compute-abci as one unit: starts
/// compute-abci, waits for its ABCI socket, starts `cometbft start`;
/// restarts both when either exits or the node's height stops advancing;
/// repairs the event index (`cometbft reindex-event`) after an unclean stop;
/// on SIGTERM/SIGINT stops cometbft, then compute-abci.
///
/// Durations take ms, s, m or h (`500ms`, `30s`, `2m`); a bare number is
/// seconds. Child arguments that start with `-` are best written with `=`,
/// e.g. `--abci-arg=--home --abci-arg=/var/lib/compute/abci`; anything after
/// `--` is appended to compute-abci's arguments. Logs go to stderr, filtered
/// by RUST_LOG (default `info`).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// CometBFT's home directory (holds config/ and data/).
    #[arg(long, env = "COMPUTE_SUPERVISOR_COMETBFT_HOME")]
    cometbft_home: PathBuf,
    /// The cometbft binary (looked up on PATH if it has no slash).
    #[arg(long, default_value = "cometbft")]
    cometbft_bin: PathBuf,
    /// One more argument for `cometbft start --home <home>` (repeatable),
    /// e.g. `--cometbft-arg=--proxy_app=tcp://127.0.0.1:26658`.
    #[arg(long = "cometbft-arg", value_name = "ARG", allow_hyphen_values = true)]
    cometbft_args: Vec<OsString>,
    /// The compute-abci binary (looked up on PATH if it has no slash).
    #[arg(long, default_value = "compute-abci")]
    abci_bin: PathBuf,
    /// One argument for compute-abci (repeatable), e.g. `--abci-arg=--home`.
    #[arg(long = "abci-arg", value_name = "ARG", allow_hyphen_values = true)]
    abci_args: Vec<OsString>,
    /// More compute-abci arguments, after `--`.
    #[arg(last = true, value_name = "ABCI_ARGS")]
    abci_trailing: Vec<OsString>,
    /// Where compute-abci serves ABCI (its --addr); cometbft starts once a
    /// TCP connection there succeeds.
    #[arg(long, default_value = "tcp://127.0.0.1:26658")]
    abci_addr: String,
    /// The own node's CometBFT RPC: http://host:port[/path], https://...,
    /// or tcp://host:port as config.toml writes it.
    #[arg(long, default_value = "http://127.0.0.1:26657")]
    rpc: String,
    /// A peer's CometBFT RPC (repeatable): with peers, a standing height is
    /// a stall only while some peer moves on.
    #[arg(long = "peer-rpc", value_name = "URL")]
    peer_rpc: Vec<String>,
    /// How long the own height may stand still, or the own RPC stay
    /// silent, before the node counts as hung.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// No hang verdict this long after cometbft starts (handshake, replay).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    startup_grace: Duration,
    /// How often /status is polled.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// How long one /status request may take.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    rpc_timeout: Duration,
    /// How long a child may take to exit on SIGTERM before SIGKILL.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    kill_grace: Duration,
    /// How long compute-abci may take to listen on --abci-addr.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    abci_ready_timeout: Duration,
    /// The delay before the first restart; the delay doubles on each
    /// further one, and each is drawn from the upper half of its value
    /// (jitter), so the first lies between half this and this.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    backoff_initial: Duration,
    /// The most the delay before a restart may grow to.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    backoff_max: Duration,
    /// A run that made progress this long resets the delay.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    backoff_reset: Duration,
    /// Give up (exit 1) after this many restarts within --restart-window.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_restarts: u32,
    /// The window of --max-restarts.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    restart_window: Duration,
    /// Re-index events from this many heights below the last one seen.
    #[arg(long, default_value_t = 100)]
    reindex_margin: u64,
    /// How long one `cometbft reindex-event` may take.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    reindex_timeout: Duration,
    /// Do not repair the event index after an unclean stop.
    #[arg(long)]
    no_reindex: bool,
    /// A directory for cometbft.pid, compute-abci.pid, supervisor.pid,
    /// last-height and the needs-reindex marker.
    #[arg(long, env = "COMPUTE_SUPERVISOR_RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Append the children's output to <DIR>/cometbft.log and
    /// <DIR>/compute-abci.log instead of inheriting stdout/stderr.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

fn config(args: Args) -> anyhow::Result<Config> {
    let rpc: RpcEndpoint = args
        .rpc
        .parse()
        .with_context(|| format!("--rpc {}", args.rpc))?;
    let peers = args
        .peer_rpc
        .iter()
        .map(|p| p.parse().with_context(|| format!("--peer-rpc {p}")))
        .collect::<anyhow::Result<Vec<RpcEndpoint>>>()?;
    let abci_addr = split_host_port(&args.abci_addr).with_context(|| {
        format!(
            "--abci-addr {}: expected tcp://host:port, e.g. tcp://127.0.0.1:26658",
            args.abci_addr
        )
    })?;
    anyhow::ensure!(
        !args.poll_interval.is_zero() && !args.rpc_timeout.is_zero(),
        "--poll-interval and --rpc-timeout must be above zero"
    );
    anyhow::ensure!(
        args.stall_timeout >= args.poll_interval,
        "--stall-timeout must be at least --poll-interval"
    );
    let mut abci_args = args.abci_args;
    abci_args.extend(args.abci_trailing);
    Ok(Config {
        cometbft_bin: args.cometbft_bin,
        cometbft_home: args.cometbft_home,
        cometbft_args: args.cometbft_args,
        abci_bin: args.abci_bin,
        abci_args,
        abci_addr,
        rpc,
        peers,
        poll_interval: args.poll_interval,
        rpc_timeout: args.rpc_timeout,
        stall_timeout: args.stall_timeout,
        startup_grace: args.startup_grace,
        kill_grace: args.kill_grace,
        abci_ready_timeout: args.abci_ready_timeout,
        backoff_initial: args.backoff_initial,
        backoff_max: args.backoff_max,
        backoff_reset: args.backoff_reset,
        max_restarts: args.max_restarts,
        restart_window: args.restart_window,
        reindex: !args.no_reindex,
        reindex_margin: args.reindex_margin,
        reindex_timeout: args.reindex_timeout,
        run_dir: args.run_dir,
        log_dir: args.log_dir,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = config(Args::parse())?;
    compute_supervisor::run(config)
        .await
        .context("compute-supervisor")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn child_arguments_with_dashes() {
        let args = Args::try_parse_from([
            "compute-supervisor",
            "--cometbft-home",
            "/h",
            "--abci-arg=--home",
            "--abci-arg",
            "/a",
            "--cometbft-arg=--p2p.pex=false",
            "--peer-rpc",
            "http://127.0.0.1:1",
            "--stall-timeout",
            "3s",
            "--",
            "--addr",
            "tcp://127.0.0.1:5",
        ])
        .unwrap();
        let config = config(args).unwrap();
        assert_eq!(
            config.abci_args,
            ["--home", "/a", "--addr", "tcp://127.0.0.1:5"]
        );
        assert_eq!(config.cometbft_args, ["--p2p.pex=false"]);
        assert_eq!(config.stall_timeout, Duration::from_secs(3));
        assert_eq!(config.peers.len(), 1);
        assert!(config.reindex);
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            &["--stall-timeout", "soon"][..],
            &["--rpc", "127.0.0.1:1"],
            &["--abci-addr", "unix:///x"],
            &["--poll-interval", "0s"],
            &["--max-restarts", "0"],
        ] {
            let mut argv = vec!["compute-supervisor", "--cometbft-home", "/h"];
            argv.extend_from_slice(bad);
            let parsed = Args::try_parse_from(&argv);
            assert!(
                parsed.is_err() || config(parsed.unwrap()).is_err(),
                "{bad:?}"
            );
        }
    }
}
