//! `compute-supervisor`: runs a validator's `cometbft` and `compute-abci` as
//! one unit.
//!
//! * Starts compute-abci, waits for its ABCI socket, then starts
//!   `cometbft start`.
//! * When either child exits, stops the other (SIGTERM, then SIGKILL after a
//!   grace) and restarts both after a bounded backoff.
//! * Judges health by height progress, not by RPC liveness: a node whose
//!   height stands still while its peers move on (or, without peers, at
//!   all), or whose RPC stays silent, is hung and restarted
//!   ([`health`]).
//! * After an unclean stop it repairs CometBFT's event index with
//!   `cometbft reindex-event` before cometbft starts again ([`reindex`]).
//! * On SIGTERM or SIGINT it stops cometbft first, then compute-abci.
//!
//! docs/OPERATIONS.md describes its use; deploy/ holds systemd units.

pub mod backoff;
pub mod duration;
pub mod health;
pub mod process;
pub mod reindex;
pub mod rpc;
pub mod rundir;
pub mod unit;

pub use unit::{run, Config, SupervisorError};

#[cfg(test)]
mod no_panics {
    /// Every parser of outside input answers garbage with an error, never a
    /// panic: random bytes, and random cuts and flips of good inputs.
    #[test]
    fn parsers_survive_random_input() {
        let good = [
            "event re-index failed:  height is not available (requested start height: 1000, store height: 19)",
            "panic: not able to load ABCI Response at height 20 from the statestore",
            "set the end block height to the latest height of the blockstore 19 \nevent re-index finished",
            "http://127.0.0.1:26657/x",
            "https://u:p@[::1]/rpc",
            "tcp://[::1]:26658",
            "30s",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..4000u32 {
            let mut bytes: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                good[(next() % good.len() as u64) as usize]
                    .as_bytes()
                    .to_vec()
            };
            if !bytes.is_empty() {
                let cut = (next() % bytes.len() as u64) as usize;
                if next() % 2 == 0 {
                    bytes.truncate(cut);
                } else {
                    bytes[cut] = next() as u8;
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = text.parse::<crate::rpc::RpcEndpoint>();
            let _ = crate::rpc::split_host_port(&text);
            let _ = crate::duration::parse_duration(&text);
            let start = next() % 50;
            let end = (next() % 3 == 0).then(|| next() % 50);
            let _ = crate::reindex::classify(next() % 2 == 0, &text, start, end, next() % 200);
        }
    }
}
