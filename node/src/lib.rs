//! The compute network's client side: the `compute` command-line tool (and,
//! later, the `compute-node` gateway).
//!
//! [`chain`] talks to a CometBFT node's RPC: it reads accounts through
//! `/abci_query` and broadcasts transactions signed locally. Keys never
//! leave the machine that holds them.

pub mod chain;
