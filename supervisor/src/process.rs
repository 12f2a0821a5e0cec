//! The two children: spawning, signalling, and stopping them for sure.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

/// How long a SIGKILLed process may take to be reaped before it is given up
/// on (a process in uninterruptible sleep dies only when its I/O ends).
pub const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The ABCI application, `compute-abci`.
    Abci,
    /// The consensus engine, `cometbft`.
    Cometbft,
}

impl Role {
    /// The name used in logs and pid files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Abci => "compute-abci",
            Self::Cometbft => "cometbft",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a child could not be started or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {role} ({program}): {source}")]
    Spawn {
        /// Which child.
        role: Role,
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Its log file could not be opened.
    #[error("cannot open the log file {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The operating system gave it no pid (it exited at once).
    #[error("{0} has no pid: it exited at once")]
    NoPid(Role),
}

/// A running child.
#[derive(Debug)]
pub struct Supervised {
    /// Which child.
    pub role: Role,
    /// Its pid.
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
    child: Child,
    exit: Option<ExitStatus>,
}

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// It had already exited (with this status).
    AlreadyExited(ExitStatus),
    /// It exited on SIGTERM within the grace.
    Terminated(ExitStatus),
    /// It needed SIGKILL.
    Killed(Option<ExitStatus>),
}

impl StopOutcome {
    /// Whether it stopped in an orderly way: on SIGTERM, or by itself with
    /// success.
    pub fn is_clean(self) -> bool {
        match self {
            Self::Terminated(_) => true,
            Self::AlreadyExited(status) => status.success(),
            Self::Killed(_) => false,
        }
    }
}

/// Starts `program args...` as `role` in a process group of its own (so a
/// terminal's Ctrl-C reaches only the supervisor, which stops the children
/// in order), with its output appended to `log` or inherited.
pub fn spawn(
    role: Role,
    program: &Path,
    args: &[OsString],
    log: Option<&Path>,
) -> Result<Supervised, ProcessError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(path) = log {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ProcessError::Log {
                    path: path.to_owned(),
                    source,
                })
        };
        command.stdout(open()?).stderr(open()?);
    }
    let child = command.spawn().map_err(|source| ProcessError::Spawn {
        role,
        program: program.display().to_string(),
        source,
    })?;
    let pid = child.id().ok_or(ProcessError::NoPid(role))?;
    Ok(Supervised {
        role,
        pid,
        started: Instant::now(),
        child,
        exit: None,
    })
}

/// Sends `signal` to `pid`; false when there is no such process (or `pid`
/// is not a valid one).
pub fn send_signal(pid: u32, signal: Signal) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    rustix::process::kill_process(pid, signal).is_ok()
}

/// Whether a process with this pid exists (a zombie counts).
pub fn is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    rustix::process::test_kill_process(pid).is_ok()
}

impl Supervised {
    /// Waits until the child exits (cancel-safe); an error of the wait
    /// itself is logged and the child counted as gone.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        match self.child.wait().await {
            Ok(status) => {
                self.exit = Some(status);
                Some(status)
            }
            Err(error) => {
                tracing::error!(child = %self.role, pid = self.pid, %error, "cannot wait for the child");
                None
            }
        }
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// Sends SIGTERM (and SIGCONT, so that a stopped process can act on
    /// it), waits up to `grace`, then SIGKILL (which also ends a stopped
    /// process) and waits up to [`REAP_TIMEOUT`].
    pub async fn stop(&mut self, grace: Duration) -> StopOutcome {
        if let Some(status) = self.try_exit() {
            return StopOutcome::AlreadyExited(status);
        }
        tracing::info!(child = %self.role, pid = self.pid, grace_ms = grace.as_millis() as u64, "sending SIGTERM");
        send_signal(self.pid, Signal::TERM);
        send_signal(self.pid, Signal::CONT);
        if let Ok(Some(status)) = tokio::time::timeout(grace, self.wait()).await {
            tracing::info!(child = %self.role, pid = self.pid, %status, "stopped on SIGTERM");
            return StopOutcome::Terminated(status);
        }
        tracing::warn!(child = %self.role, pid = self.pid, "did not exit on SIGTERM within the grace; sending SIGKILL");
        if let Err(error) = self.child.start_kill() {
            tracing::warn!(child = %self.role, pid = self.pid, %error, "SIGKILL failed");
        }
        match tokio::time::timeout(REAP_TIMEOUT, self.wait()).await {
            Ok(status) => {
                let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                tracing::info!(child = %self.role, pid = self.pid, %status, "killed");
                StopOutcome::Killed(self.exit)
            }
            Err(_) => {
                tracing::error!(
                    child = %self.role,
                    pid = self.pid,
                    "still not gone {} s after SIGKILL (uninterruptible I/O?); going on without it",
                    REAP_TIMEOUT.as_secs()
                );
                StopOutcome::Killed(None)
            }
        }
    }
}

/// The file name of the command a process runs (`argv[0]` in
/// `/proc/<pid>/cmdline`), if readable.
pub fn command_name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let argv0 = String::from_utf8_lossy(argv0);
    Path::new(argv0.as_ref())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Ends a process that is not our child (a leftover of an earlier
/// supervisor): SIGTERM, then SIGKILL after `grace`; true when it is gone.
pub async fn stop_foreign(pid: u32, grace: Duration) -> bool {
    send_signal(pid, Signal::TERM);
    send_signal(pid, Signal::CONT);
    if wait_gone(pid, grace).await {
        return true;
    }
    send_signal(pid, Signal::KILL);
    wait_gone(pid, REAP_TIMEOUT).await
}

async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // A leftover is not our child: once it died, init reaps it.
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stopped_child_that_ignores_sigterm_is_killed() {
        // `sh -c 'trap "" TERM; ...'` ignores SIGTERM; SIGSTOP it as well.
        let mut child = spawn(
            Role::Cometbft,
            Path::new("sh"),
            &["-c".into(), "trap '' TERM; sleep 30".into()],
            None,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(send_signal(child.pid, Signal::STOP));
        let started = Instant::now();
        let outcome = child.stop(Duration::from_millis(300)).await;
        assert!(
            matches!(outcome, StopOutcome::Killed(Some(_))),
            "{outcome:?}"
        );
        assert!(!outcome.is_clean());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(child.try_exit().is_some());
    }

    #[tokio::test]
    async fn a_stopped_child_that_heeds_sigterm_stops_cleanly() {
        let mut child = spawn(Role::Abci, Path::new("sleep"), &["30".into()], None).unwrap();
        assert!(send_signal(child.pid, Signal::STOP));
        let outcome = child.stop(Duration::from_secs(5)).await;
        assert!(matches!(outcome, StopOutcome::Terminated(_)), "{outcome:?}");
        // Stopping it again is harmless.
        assert!(matches!(
            child.stop(Duration::from_secs(5)).await,
            StopOutcome::AlreadyExited(_)
        ));
    }

    #[test]
    fn signals_to_no_process_are_refused() {
        assert!(!send_signal(0, Signal::TERM));
        assert!(!send_signal(u32::MAX, Signal::TERM));
        assert!(!is_alive(0));
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let err = spawn(Role::Abci, Path::new("/nonexistent/x"), &[], None).unwrap_err();
            assert!(
                err.to_string().contains("cannot start compute-abci"),
                "{err}"
            );
        });
    }

    #[test]
    fn our_own_command_name_is_readable() {
        let name = command_name(std::process::id()).unwrap();
        assert!(!name.is_empty());
    }
}
