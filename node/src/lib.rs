//! The compute network's client side: the `compute` command-line tool and
//! the `compute-node` gateway.
//!
//! [`gateway`] is the library behind the `compute-node` binary. [`jobs`] is
//! what a requester does: upload, post, follow and fetch results, through
//! the shared client (`compute-client`), which talks to CometBFT's RPC and
//! to gateways. Keys never leave the machine that holds them.

pub mod gateway;
pub mod jobs;
pub mod verify;
