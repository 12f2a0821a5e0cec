//! The compute network's client side: the `compute` command-line tool and
//! the `compute-node` gateway.
//!
//! [`chain`] talks to a CometBFT node's RPC: it reads accounts through
//! `/abci_query` and broadcasts transactions signed locally. Keys never
//! leave the machine that holds them. [`gateway`] is the library behind the
//! `compute-node` binary. [`jobs`] is what a requester does: upload,
//! post, follow and fetch results.

pub mod chain;
pub mod gateway;
pub mod jobs;
