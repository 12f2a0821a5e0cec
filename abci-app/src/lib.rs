//! `compute-abci`: the compute network's state machine.
//!
//! The ledger of credits, jobs, completions and reputation, executed by every
//! validator as an ABCI application behind CometBFT v0.38. The state machine
//! ([`app::App`]) is generic over a [`store::Store`] and knows nothing of
//! sockets; [`abci`] serves it to CometBFT and [`store::RocksStore`] keeps it
//! on disk. Determinism rules: no floats, no clock, no unordered iteration
//! into state, checked arithmetic, bounded collections.

#![warn(clippy::arithmetic_side_effects)]

pub mod abci;
pub mod app;
pub mod apphash;
pub mod assignment;
pub mod codes;
pub mod deadlines;
pub mod disputes;
pub mod draw_index;
pub mod events;
pub mod genesis;
pub mod judge;
pub mod ledger;
pub mod msg;
pub mod params;
pub mod price;
pub mod query;
pub mod referee;
pub mod reputation;
pub mod server;
pub mod settlement;
pub mod sigcache;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod task;
pub mod tree;
pub mod validators;
pub mod verify;

pub use app::{App, BlockInput, BlockOutput, TxOutcome};
pub use apphash::LastCommit;
pub use codes::{Code, Rejection, CODESPACE};
pub use validators::{ConsensusInput, Misbehavior, MisbehaviorKind, ValidatorUpdate, Vote};
