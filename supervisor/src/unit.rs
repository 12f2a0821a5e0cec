//! The supervised unit: compute-abci and cometbft started, watched, stopped
//! and restarted together.
//!
//! One generation of the unit: start compute-abci, wait for its ABCI socket,
//! start cometbft, then watch both children and the node's height until a
//! child exits, the node is judged hung, or a shutdown signal comes. Then
//! both are stopped (cometbft first), and unless it was a shutdown the
//! next generation follows after a backoff, with the event index repaired
//! first (see [`crate::reindex`]).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal as UnixSignal, SignalKind};
use tokio::task::JoinSet;

use crate::backoff::{BudgetSpent, RestartPolicy};
use crate::health::{HangReason, StallDetector, StallRules, Verdict};
use crate::process::{self, Role, StopOutcome, Supervised};
use crate::reindex::{self, ReindexOutcome, ReindexRequest};
use crate::rpc::{NodeStatus, RpcEndpoint, RpcError, StatusClient};
use crate::rundir::{RunDir, RunDirError};

/// Everything the supervisor is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `cometbft` binary.
    pub cometbft_bin: PathBuf,
    /// CometBFT's home (`--home` of `cometbft start` and `reindex-event`).
    pub cometbft_home: PathBuf,
    /// Further arguments of `cometbft start`.
    pub cometbft_args: Vec<OsString>,
    /// The `compute-abci` binary.
    pub abci_bin: PathBuf,
    /// Its arguments.
    pub abci_args: Vec<OsString>,
    /// Where compute-abci serves ABCI (host and port), waited for before
    /// cometbft starts.
    pub abci_addr: (String, u16),
    /// The own node's RPC.
    pub rpc: RpcEndpoint,
    /// Peers' RPCs, to tell a stalled node from a stalled network.
    pub peers: Vec<RpcEndpoint>,
    /// How often `/status` is polled.
    pub poll_interval: Duration,
    /// How long one `/status` may take.
    pub rpc_timeout: Duration,
    /// How long the height may stand still (or the RPC stay silent).
    pub stall_timeout: Duration,
    /// No stall verdict this long after cometbft started.
    pub startup_grace: Duration,
    /// How long a child may take to exit on SIGTERM before SIGKILL.
    pub kill_grace: Duration,
    /// How long compute-abci may take to listen.
    pub abci_ready_timeout: Duration,
    /// The first delay before a restart.
    pub backoff_initial: Duration,
    /// The longest delay before a restart.
    pub backoff_max: Duration,
    /// A run healthy this long resets the delay.
    pub backoff_reset: Duration,
    /// At most this many restarts within `restart_window`; then exit 1.
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    pub restart_window: Duration,
    /// Whether to repair the event index after an unclean stop.
    pub reindex: bool,
    /// How many heights below the last one seen to re-index from.
    pub reindex_margin: u64,
    /// How long one `reindex-event` run may take.
    pub reindex_timeout: Duration,
    /// The run directory (pid files, last height, marker).
    pub run_dir: Option<PathBuf>,
    /// Where the children's output goes (`cometbft.log`,
    /// `compute-abci.log`); inherited when none.
    pub log_dir: Option<PathBuf>,
}

/// Why the supervisor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The run directory could not be written.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// An RPC client could not be set up.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Too many restarts.
    #[error("{budget}; the last failure: {last}")]
    GaveUp {
        /// The spent budget.
        budget: BudgetSpent,
        /// The last failure.
        last: String,
    },
}

/// SIGTERM and SIGINT.
pub struct Signals {
    term: UnixSignal,
    int: UnixSignal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Self, SupervisorError> {
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?,
        })
    }

    /// Waits for one; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            s = self.term.recv() => if s.is_some() { "SIGTERM" } else { "closed signal stream" },
            s = self.int.recv() => if s.is_some() { "SIGINT" } else { "closed signal stream" },
        }
    }
}

/// Runs the unit until a shutdown signal (Ok) or until the restart budget
/// is spent (Err).
pub async fn run(config: Config) -> Result<(), SupervisorError> {
    let mut signals = Signals::install()?;
    let run_dir = RunDir::open(config.run_dir.as_deref())?;
    let mut unit = Unit::new(config, run_dir.clone())?;
    let result = unit.run(&mut signals).await;
    run_dir.close();
    result
}

/// How one generation ended.
enum End {
    /// A shutdown signal; whether both stopped cleanly.
    Shutdown { clean: bool },
    /// A failure: restart.
    Failed {
        reason: String,
        healthy_for: Duration,
    },
}

/// What ended the watch of a running unit.
enum Event {
    Exited(Role, Option<ExitStatus>),
    Hung(HangReason),
    Shutdown(&'static str),
}

enum AbciReady {
    Ready,
    Exited(Option<ExitStatus>),
    TimedOut,
    Shutdown(&'static str),
}

struct ExitText(Option<ExitStatus>);

impl fmt::Display for ExitText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(status) => write!(f, "{status}"),
            None => f.write_str("unknown status"),
        }
    }
}

struct Unit {
    config: Config,
    run_dir: RunDir,
    restarts: RestartPolicy,
    /// Asks the own node for `/status`.
    own: StatusClient,
    /// Asks each peer.
    peers: Vec<StatusClient>,
    /// The highest height the own node reported (or `reindex-event` named).
    last_height: Option<u64>,
    /// Why the event index may have lost entries; cleared by a repair.
    needs_reindex: Option<String>,
    height_rule_without_peers: bool,
}

impl Unit {
    fn new(config: Config, run_dir: RunDir) -> Result<Self, SupervisorError> {
        let own = StatusClient::new(&config.rpc, config.rpc_timeout)?;
        let peers = config
            .peers
            .iter()
            .map(|peer| StatusClient::new(peer, config.rpc_timeout))
            .collect::<Result<Vec<_>, RpcError>>()?;
        let restarts = RestartPolicy::new(
            config.backoff_initial,
            config.backoff_max,
            config.backoff_reset,
            config.max_restarts,
            config.restart_window,
        );
        let last_height = run_dir.last_height();
        let height_rule_without_peers =
            config.peers.is_empty() && !makes_no_empty_blocks(&config.cometbft_home);
        Ok(Self {
            config,
            run_dir,
            restarts,
            own,
            peers,
            last_height,
            needs_reindex: None,
            height_rule_without_peers,
        })
    }

    async fn run(&mut self, signals: &mut Signals) -> Result<(), SupervisorError> {
        if self.config.peers.is_empty() && !self.height_rule_without_peers {
            tracing::warn!(
                "config.toml has create_empty_blocks = false and no --peer-rpc is given: a \
                 standing height is then normal, so only a silent RPC counts as a stall"
            );
        }
        self.stop_leftovers().await;
        if let Some(why) = self.run_dir.needs_reindex() {
            tracing::warn!(
                previous = %why,
                "the previous run did not stop cleanly; the event index is repaired before cometbft starts"
            );
            self.needs_reindex = Some(format!("previous run: {why}"));
        }
        tracing::info!(
            cometbft_home = %self.config.cometbft_home.display(),
            rpc = %self.config.rpc,
            peers = self.config.peers.len(),
            stall_timeout_ms = self.config.stall_timeout.as_millis() as u64,
            "supervisor started"
        );
        // Each pass is one generation of the unit; the restart budget ends
        // the loop (and every wait inside a pass is bounded).
        loop {
            if let Some(why) = self.needs_reindex.clone() {
                tokio::select! {
                    repaired = self.repair(&why) => if repaired {
                        self.needs_reindex = None;
                    },
                    sig = signals.recv() => {
                        tracing::info!(signal = sig, "shutting down during the index repair (it is done on the next start)");
                        return Ok(());
                    }
                }
            }
            self.run_dir
                .mark_needs_reindex("cometbft was started and not stopped cleanly")?;
            match self.generation(signals).await {
                End::Shutdown { clean } => {
                    if clean && self.needs_reindex.is_none() {
                        self.run_dir.clear_needs_reindex();
                        tracing::info!("stopped cleanly");
                    } else {
                        self.run_dir.mark_needs_reindex(
                            "a child had to be killed at shutdown, or a repair is pending",
                        )?;
                        tracing::warn!(
                            "stopped, not cleanly: the next start repairs the event index first"
                        );
                    }
                    return Ok(());
                }
                End::Failed {
                    reason,
                    healthy_for,
                } => {
                    self.needs_reindex = Some(reason.clone());
                    self.run_dir.mark_needs_reindex(&reason)?;
                    let delay = match self.restarts.next(Instant::now(), healthy_for) {
                        Ok(delay) => delay,
                        Err(budget) => {
                            tracing::error!(%reason, "{budget}");
                            return Err(SupervisorError::GaveUp {
                                budget,
                                last: reason,
                            });
                        }
                    };
                    tracing::warn!(
                        %reason,
                        "restarting compute-abci and cometbft in {:.1} s",
                        delay.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        sig = signals.recv() => {
                            tracing::info!(signal = sig, "shutting down (both children are stopped)");
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Ends children that an earlier supervisor left running (it was
    /// killed): their pid files name them, and their command must match.
    async fn stop_leftovers(&mut self) {
        for (role, bin) in [
            (Role::Cometbft, self.config.cometbft_bin.clone()),
            (Role::Abci, self.config.abci_bin.clone()),
        ] {
            let Some(pid) = self.run_dir.read_pid(role) else {
                continue;
            };
            let expected = bin.file_name().map(|n| n.to_string_lossy().into_owned());
            let running = process::command_name(pid);
            if process::is_alive(pid) && running.is_some() && running == expected {
                tracing::warn!(child = %role, pid, "a {role} of an earlier run is still running; stopping it");
                if !process::stop_foreign(pid, self.config.kill_grace).await {
                    tracing::error!(child = %role, pid, "the leftover {role} does not go away");
                }
                self.needs_reindex
                    .get_or_insert_with(|| format!("a leftover {role} was stopped"));
            }
            self.run_dir.remove_pid(role);
        }
    }

    /// Re-indexes events from a margin below the last height seen; true
    /// when the index is known to be whole again.
    async fn repair(&mut self, why: &str) -> bool {
        if !self.config.reindex {
            // The marker stays, so that a later run without the flag repairs.
            tracing::warn!(%why, "not repairing the event index (--no-reindex)");
            return false;
        }
        let start = match self.last_height {
            Some(height) => height.saturating_sub(self.config.reindex_margin).max(1),
            None => 0,
        };
        tracing::info!(
            %why,
            start,
            last_height = ?self.last_height,
            "repairing the event index with cometbft reindex-event"
        );
        let request = ReindexRequest {
            cometbft_bin: &self.config.cometbft_bin,
            home: &self.config.cometbft_home,
            start,
            margin: self.config.reindex_margin,
            timeout: self.config.reindex_timeout,
        };
        match reindex::reindex(&request).await {
            Ok(ReindexOutcome::Done { start, end }) => {
                match end {
                    Some(end) => {
                        tracing::info!(start, end, "re-indexed events of heights {start}..={end}");
                        self.note_height(end);
                    }
                    None => tracing::info!(start, "re-indexed events from height {start}"),
                }
                true
            }
            Ok(ReindexOutcome::Empty) => {
                tracing::info!("the block store is empty: nothing to re-index");
                true
            }
            Ok(ReindexOutcome::Disabled) => {
                tracing::info!(
                    "the node indexes nothing (indexer = \"null\"): nothing to re-index"
                );
                true
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    "the event index could not be repaired; with the node stopped run \
                     `cometbft reindex-event --home {} --start-height {start}` by hand \
                     (docs/OPERATIONS.md)",
                    self.config.cometbft_home.display()
                );
                false
            }
        }
    }

    fn note_height(&mut self, height: u64) {
        if self.last_height.is_some_and(|h| h >= height) {
            return;
        }
        self.last_height = Some(height);
        if let Err(error) = self.run_dir.write_last_height(height) {
            tracing::warn!(%error, "cannot record the last height");
        }
    }

    fn child_log(&self, role: Role) -> Option<PathBuf> {
        self.config
            .log_dir
            .as_ref()
            .map(|d| d.join(format!("{}.log", role.name())))
    }

    fn spawn(&self, role: Role) -> Result<Supervised, String> {
        let (bin, args) = match role {
            Role::Abci => (self.config.abci_bin.clone(), self.config.abci_args.clone()),
            Role::Cometbft => {
                let mut args: Vec<OsString> = vec!["start".into(), "--home".into()];
                args.push(self.config.cometbft_home.clone().into_os_string());
                args.extend(self.config.cometbft_args.iter().cloned());
                (self.config.cometbft_bin.clone(), args)
            }
        };
        let log = self.child_log(role);
        if let Some(dir) = log.as_deref().and_then(Path::parent) {
            if let Err(error) = std::fs::create_dir_all(dir) {
                return Err(format!("cannot create {}: {error}", dir.display()));
            }
        }
        let child = process::spawn(role, &bin, &args, log.as_deref()).map_err(|e| e.to_string())?;
        tracing::info!(child = %role, pid = child.pid, "started {role}");
        if let Err(error) = self.run_dir.write_pid(role, child.pid) {
            tracing::warn!(%error, "cannot write the pid file");
        }
        Ok(child)
    }

    async fn stop(&self, child: &mut Supervised) -> StopOutcome {
        let outcome = child.stop(self.config.kill_grace).await;
        self.run_dir.remove_pid(child.role);
        outcome
    }

    async fn generation(&mut self, signals: &mut Signals) -> End {
        let failed = |reason: String| End::Failed {
            reason,
            healthy_for: Duration::ZERO,
        };
        let mut abci = match self.spawn(Role::Abci) {
            Ok(child) => child,
            Err(reason) => return failed(reason),
        };
        match self.wait_abci_ready(&mut abci, signals).await {
            AbciReady::Ready => {
                tracing::info!(addr = %format!("{}:{}", self.config.abci_addr.0, self.config.abci_addr.1), "compute-abci is listening");
            }
            AbciReady::Exited(status) => {
                self.run_dir.remove_pid(Role::Abci);
                return failed(format!(
                    "compute-abci exited ({}) before it listened",
                    ExitText(status)
                ));
            }
            AbciReady::TimedOut => {
                self.stop(&mut abci).await;
                return failed(format!(
                    "compute-abci did not listen on {}:{} within {:?}",
                    self.config.abci_addr.0,
                    self.config.abci_addr.1,
                    self.config.abci_ready_timeout
                ));
            }
            AbciReady::Shutdown(sig) => {
                tracing::info!(signal = sig, "shutting down: stopping compute-abci");
                let clean = self.stop(&mut abci).await.is_clean();
                return End::Shutdown { clean };
            }
        }
        let mut cometbft = match self.spawn(Role::Cometbft) {
            Ok(child) => child,
            Err(reason) => {
                self.stop(&mut abci).await;
                return failed(reason);
            }
        };
        let (event, healthy_for) = self.watch(&mut abci, &mut cometbft, signals).await;
        match event {
            Event::Exited(role, status) => {
                let other = match role {
                    Role::Abci => &mut cometbft,
                    Role::Cometbft => &mut abci,
                };
                tracing::warn!(
                    child = %role,
                    status = %ExitText(status),
                    "{role} exited ({}); stopping {}",
                    ExitText(status),
                    other.role
                );
                self.run_dir.remove_pid(role);
                self.stop(other).await;
                End::Failed {
                    reason: format!("{role} exited ({})", ExitText(status)),
                    healthy_for,
                }
            }
            Event::Hung(reason) => {
                tracing::warn!("the node is hung: {reason}; stopping cometbft and compute-abci");
                self.stop(&mut cometbft).await;
                self.stop(&mut abci).await;
                End::Failed {
                    reason: format!("the node was hung: {reason}"),
                    healthy_for,
                }
            }
            Event::Shutdown(sig) => {
                tracing::info!(
                    signal = sig,
                    "shutting down: stopping cometbft, then compute-abci"
                );
                let cometbft_stop = self.stop(&mut cometbft).await;
                let abci_stop = self.stop(&mut abci).await;
                End::Shutdown {
                    clean: cometbft_stop.is_clean() && abci_stop.is_clean(),
                }
            }
        }
    }

    async fn wait_abci_ready(&self, abci: &mut Supervised, signals: &mut Signals) -> AbciReady {
        let deadline = Instant::now() + self.config.abci_ready_timeout;
        let (host, port) = (&self.config.abci_addr.0, self.config.abci_addr.1);
        loop {
            if let Some(status) = abci.try_exit() {
                return AbciReady::Exited(Some(status));
            }
            let connect = tokio::net::TcpStream::connect((host.as_str(), port));
            if let Ok(Ok(_stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return AbciReady::Ready;
            }
            if Instant::now() >= deadline {
                return AbciReady::TimedOut;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                status = abci.wait() => return AbciReady::Exited(status),
                sig = signals.recv() => return AbciReady::Shutdown(sig),
            }
        }
    }

    /// Watches the running unit; returns what ended the watch and how long
    /// the node made progress.
    async fn watch(
        &mut self,
        abci: &mut Supervised,
        cometbft: &mut Supervised,
        signals: &mut Signals,
    ) -> (Event, Duration) {
        let started = Instant::now();
        let rules = StallRules {
            stall_timeout: self.config.stall_timeout,
            startup_grace: self.config.startup_grace,
            height_rule_without_peers: self.height_rule_without_peers,
        };
        let mut detector = StallDetector::new(rules, started, self.config.peers.len());
        let mut last_progress = started;
        let mut answered = false;
        let mut next_poll = tokio::time::Instant::now() + self.config.poll_interval;
        // Ends on a child's exit, a hang or a signal; each pass waits at most
        // a poll interval plus one bounded poll.
        loop {
            let own = self.own.clone();
            let peers = self.peers.clone();
            let timeout = self.config.rpc_timeout;
            let poll = async move {
                tokio::time::sleep_until(next_poll).await;
                poll_all(own, peers, timeout).await
            };
            let event = tokio::select! {
                status = abci.wait() => Event::Exited(Role::Abci, status),
                status = cometbft.wait() => Event::Exited(Role::Cometbft, status),
                sig = signals.recv() => Event::Shutdown(sig),
                (own, peers) = poll => {
                    next_poll = tokio::time::Instant::now() + self.config.poll_interval;
                    let now = Instant::now();
                    let own = own.map(|s| s.height).map_err(|e| e.to_string());
                    if let Err(error) = &own {
                        tracing::debug!(%error, "own /status failed");
                    }
                    if let Some(height) = detector.observe_own(now, own) {
                        if !answered {
                            tracing::info!(height, "cometbft answers at height {height}");
                            answered = true;
                        }
                        tracing::debug!(height, "height advanced");
                        last_progress = now;
                        self.note_height(height);
                    }
                    for (index, peer) in peers.into_iter().enumerate() {
                        detector.observe_peer(index, now, peer.ok().map(|s| s.height));
                    }
                    match detector.verdict(now) {
                        Verdict::Healthy => continue,
                        Verdict::Hung(reason) => Event::Hung(reason),
                    }
                }
            };
            return (event, last_progress.saturating_duration_since(started));
        }
    }
}

type PollResult = Result<NodeStatus, RpcError>;

/// Polls the own node and every peer at once; each call is bounded by the
/// clients' `timeout`.
async fn poll_all(
    own: StatusClient,
    peers: Vec<StatusClient>,
    timeout: Duration,
) -> (PollResult, Vec<PollResult>) {
    let mut set = JoinSet::new();
    let count = peers.len();
    set.spawn(async move { (0usize, own.status().await) });
    for (i, peer) in peers.into_iter().enumerate() {
        set.spawn(async move { (i + 1, peer.status().await) });
    }
    let mut own_result: PollResult = Err(RpcError::Timeout(timeout));
    let mut peer_results: Vec<PollResult> = (0..count)
        .map(|_| Err(RpcError::Timeout(timeout)))
        .collect();
    while let Some(joined) = set.join_next().await {
        let Ok((index, result)) = joined else {
            continue;
        };
        if index == 0 {
            own_result = result;
        } else if let Some(slot) = peer_results.get_mut(index - 1) {
            *slot = result;
        }
    }
    (own_result, peer_results)
}

/// Whether CometBFT's config.toml says `create_empty_blocks = false` (the
/// height then stands still while there are no transactions).
fn makes_no_empty_blocks(home: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(home.join("config").join("config.toml")) else {
        return false;
    };
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        line.split_once('=').is_some_and(|(key, value)| {
            key.trim() == "create_empty_blocks" && value.trim() == "false"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blocks_setting() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!makes_no_empty_blocks(tmp.path()));
        std::fs::create_dir_all(tmp.path().join("config")).unwrap();
        let file = tmp.path().join("config/config.toml");
        std::fs::write(
            &file,
            "create_empty_blocks = true\ncreate_empty_blocks_interval = \"0s\"\n",
        )
        .unwrap();
        assert!(!makes_no_empty_blocks(tmp.path()));
        std::fs::write(
            &file,
            "# create_empty_blocks = false\ncreate_empty_blocks = false # no\n",
        )
        .unwrap();
        assert!(makes_no_empty_blocks(tmp.path()));
    }
}
