//! Why the worker could not start or stopped: the one error type of the
//! service's own steps (home directory, gateway, journal, sandbox,
//! transactions), below every module that can fail with it.

use compute_sandbox::SandboxError;

use crate::gateway::GatewayError;
use crate::journal::JournalError;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The sandbox could not be built.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// The home directory could not be prepared.
    #[error("home directory {path}: {source}")]
    Home {
        /// The path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another worker process uses this home directory.
    #[error(
        "home directory {0} is in use by another worker process; give each worker its own --home"
    )]
    HomeLocked(String),
    /// The chain refused a transaction.
    #[error("the chain refused {what} with code {code}: {log}")]
    Refused {
        /// The transaction.
        what: &'static str,
        /// The ABCI code.
        code: u32,
        /// The chain's explanation.
        log: String,
    },
    /// A transaction could not be placed after several nonce resyncs.
    #[error("{what}: no nonce accepted after {attempts} attempts (last code {code}: {log})")]
    NonceUnsettled {
        /// The transaction.
        what: &'static str,
        /// The attempts made (`SUBMIT_ATTEMPTS_MAX` of `submit`).
        attempts: u32,
        /// The last code.
        code: u32,
        /// The last explanation.
        log: String,
    },
    /// The worker was asked to stop.
    #[error("shutting down")]
    ShuttingDown,
}
