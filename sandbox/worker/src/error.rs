//! Why the worker could not start or stopped: the one error type of the
//! service's own steps (home directory, gateway, journal, sandbox,
//! transactions), below every module that can fail with it.

use compute_client::ClientError;
use compute_sandbox::SandboxError;

use crate::journal::JournalError;

/// Why the worker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The gateway failed, or the chain refused a query through it.
    #[error("{}", gateway_reason(.0))]
    Gateway(#[from] ClientError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The sandbox could not be built.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// A settled task could not be re-run (its module or input could not be
    /// fetched, or this machine could not run it).
    #[error("re-running a settled task failed: {0}")]
    Rerun(String),
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

/// A gateway failure as a person reads it. The client's wording of a
/// timeout or a bad URL is the same for every transport; the worker's only
/// transport is its gateway (`--gateway`), so those say so. Every other
/// failure already names the gateway call, the query path or the blob.
pub(crate) fn gateway_reason(error: &ClientError) -> String {
    match error {
        ClientError::Timeout { .. } | ClientError::BadUrl { .. } => format!("gateway {error}"),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_failures_name_the_gateway() {
        let timeout = WorkerError::from(ClientError::Timeout {
            call: "Query",
            timeout_ms: 30_000,
        });
        assert_eq!(
            timeout.to_string(),
            "gateway Query took longer than 30000 ms"
        );
        let url = WorkerError::from(ClientError::BadUrl {
            url: "nope".to_owned(),
            detail: "invalid format".to_owned(),
        });
        assert_eq!(
            url.to_string(),
            "gateway URL 'nope' is not valid: invalid format"
        );
        // Already specific: left as the client words it.
        let not_found = WorkerError::from(ClientError::NotFound {
            path: "/params".to_owned(),
            log: "no such path".to_owned(),
        });
        assert_eq!(not_found.to_string(), "not found: /params: no such path");
    }
}
