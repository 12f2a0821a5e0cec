//! The worker service of the compute network (the `compute-sandbox` binary).
//!
//! With a worker key and a gateway address, a worker registers its key,
//! follows the tasks the chain assigns it, fetches each module (cached on
//! disk) and input (checked against its hash), runs the task in the
//! deterministic sandbox, stores the output in the gateway's blob store, and
//! signs `CommitResult` and then `RevealResult`. It talks only to the gateway
//! (gRPC, through [`compute_client::Gateway`], whose jittered backoff and
//! retries it uses too), never to CometBFT.
//!
//! - [`worker`]: the service's configuration, startup and main loop
//!   (events, periodic reconciliation, shutdown);
//! - [`reconcile`]: each task's next step from the chain's view and the
//!   journal ([`decide`]), and the handlers that take it;
//! - [`pipeline`]: from an assignment to a sealed result (fetch module and
//!   input, run, own verify, store the output, prepare the journal entry);
//! - [`submit`]: the worker's transactions (register, commit, reveal,
//!   decline) and its nonce;
//! - [`home`]: the lock that keeps one worker process per home directory;
//! - [`error`]: why the worker could not start or stopped;
//! - [`journal`]: the write-ahead journal that makes restarts safe;
//! - [`chain`]: the chain's JSON answers and the ABCI codes the worker acts on;
//! - [`deny`]: the local deny list of modules;
//! - [`modules`]: the on-disk module cache;
//! - [`result`]: results as committed, and the `--cheat` falsification;
//! - [`selfcheck`]: the worker's own `verify` of a `Verified` job's output
//!   before it commits (commit, or decline and why).
//!
//! See `docs/WORKER.md` for flags, the journal format and restart behaviour.

pub mod chain;
pub mod deny;
pub mod error;
pub mod home;
pub mod journal;
pub mod modules;
pub mod pipeline;
pub mod reconcile;
pub mod result;
pub mod selfcheck;
pub mod submit;
mod sync;
pub mod watch;
pub mod worker;

pub use deny::DenyList;
pub use error::WorkerError;
pub use journal::{Entry, EntryState, Journal, TaskKey};
pub use reconcile::{decide, Action};
pub use result::TaskResult;
pub use watch::{WatchConfig, Watcher};
pub use worker::{Worker, WorkerConfig};
