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
//!   [`compute_proto::Code`] where it answered one;
//! - [`light`]: a light client of CometBFT ([`LightClient`]): from a
//!   [`TrustAnchor`] (a header hash, or genesis), headers are verified by
//!   the validators' signatures, skipping with bisection, within a
//!   trusting period, with a bounded number of RPC calls, and a node that
//!   serves a block that does not verify is named ([`LightError::Lie`]);
//!   verified headers are kept in a [`TrustedStore`], in memory or in a
//!   JSON file, across runs;
//! - [`proof`]: the ICS-23 proofs (`ics23:jmt`) that come with a query
//!   asked with `prove = true`, checked against the app hash of a verified
//!   header ([`TrustedBlock::state_root`]): [`proven_state`] gives what the
//!   tree holds under each proven key, [`verify_proof_ops`] checks claimed
//!   values; a failure is a [`ProofError`] naming the key.
//!
//! To believe an answer read at height `h`: verify block `h + 1` with
//! [`LightClient::state_root_for_query`], then its proof ops against that
//! root.
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
pub mod light;
pub mod proof;
pub mod query;
pub mod submit;
pub mod verified;

pub use backoff::{retry, retry_with, Backoff, RETRY_ATTEMPTS_MAX};
pub use chain::{node_order, parse_tx_hash, ChainClient, NodeStatus, TxReceipt};
pub use error::ClientError;
pub use follow::{JobWatch, Wake};
pub use gateway::{Events, Gateway};
pub use light::{
    GenesisInfo, Lie, LightClient, LightError, LightOptions, LightSource, RpcSource, TrustAnchor,
    TrustedBlock, TrustedStore,
};
pub use proof::{
    prove_entry, proven_state, verify_proof_op, verify_proof_ops, ProofError, ProvenState,
    StateKey, StateRoot, PROOF_OP_TYPE,
};
pub use query::{CompletionsOf, JobTasks, JobsFilter, NextNonce, Query, QueryAnswer};
pub use submit::{SubmitEvent, SubmitOptions, SubmitStatus, Submitted, Wait};
