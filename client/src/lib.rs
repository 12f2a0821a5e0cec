//! The one client of the compute network, shared by the `compute` CLI, the
//! worker and the integration tests.
//!
//! - [`Query`]: every query path with its typed answer
//!   ([`compute_proto::views`]), over either transport;
//! - [`ChainClient`]: a CometBFT node's RPC (one of several, chosen per
//!   sender): chain id, queries, signed transactions waited into a block;
//! - [`submit`]: how a transaction is submitted so that it lands once: the
//!   node's pending nonce, stale nonces re-signed, cache hits looked up by
//!   hash, bounded attempts, every hash announced before it is sent;
//! - [`Gateway`]: a gateway's gRPC API: queries, relayed transactions,
//!   `Subscribe` streams, and blob transfers that are signed by the
//!   uploader's key and chunked on the way up and, on the way down, bounded
//!   by the caller and checked against the blob's hash ([`blob`]);
//! - [`JobWatch`]: following a job by its events, with a fallback tick;
//! - [`Backoff`]: exponential backoff with jitter, and [`retry`];
//! - [`ClientError`]: why a call failed, with the chain's stable
//!   [`compute_proto::Code`] where it answered one.
//!
//! Keys never leave the caller: transactions are signed with
//! `compute_proto`'s one implementation before they are sent, and nothing
//! a gateway returns is trusted without a check.

pub mod backoff;
pub mod blob;
pub mod chain;
pub mod error;
pub mod follow;
pub mod gateway;
pub mod query;
pub mod submit;

pub use backoff::{retry, retry_with, Backoff, RETRY_ATTEMPTS_MAX};
pub use chain::{node_order, parse_tx_hash, ChainClient, NodeStatus, TxReceipt};
pub use error::ClientError;
pub use follow::{JobWatch, Wake};
pub use gateway::{Events, Gateway};
pub use query::{CompletionsOf, JobTasks, JobsFilter, NextNonce, Query, QueryAnswer};
pub use submit::{SubmitEvent, SubmitOptions, SubmitStatus, Submitted, Wait};
