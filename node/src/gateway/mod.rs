//! The `compute-node` gateway: a gRPC server that relays already-signed
//! transactions to CometBFT, proxies ABCI queries, streams chain events from
//! CometBFT's websocket, and serves a content-addressed blob store that
//! fetches missing blobs from peer gateways and verifies every byte against
//! its SHA3-256 hash. It never holds a key, so it can delay but never forge.

pub mod auth;
pub mod error;
pub mod events;
#[cfg(test)]
mod fanout_tests;
pub mod limits;
pub mod metrics;
pub mod pins;
pub mod relay;
pub mod retention;
pub mod server;
pub mod service;
pub mod store;

pub use error::{GatewayError, NodeError};
pub use server::{bind, serve, serve_with, GatewayConfig, Listeners, ServerError};
pub use service::GatewayService;
pub use store::{BlobStore, StoreError};
