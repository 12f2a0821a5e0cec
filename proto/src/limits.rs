//! Limits that two programs must agree on, in one place.
//!
//! The chain's own limits are genesis parameters (`docs/PARAMETERS.md`);
//! the constants here bound what those parameters may be, so that every
//! part of the network can carry what the chain accepts. Each name ends in
//! its unit.

/// The largest `max_tx_bytes` a genesis may set, and the largest
/// transaction a gateway relays: gRPC's default message limit. Genesis
/// refuses a larger `max_tx_bytes`, so no transaction the chain would accept
/// is too large for a gateway.
pub const TX_BYTES_CEILING: u64 = 4 * 1024 * 1024;

/// The smallest `max_tx_bytes` a genesis may set.
pub const TX_BYTES_FLOOR: u64 = 4 * TX_ENVELOPE_BYTES;

/// Envelope bytes a transaction needs around its largest field (signature,
/// signer, chain id, nonce, fee, message tags).
pub const TX_ENVELOPE_BYTES: u64 = 1024;

/// The body of a CometBFT JSON-RPC `broadcast_tx_*` request that carries a
/// transaction of `tx_bytes`: base64 (4 bytes per 3) plus the JSON around
/// it. CometBFT's `[rpc] max_body_bytes` must be at least this for the
/// chain's `max_tx_bytes`, and its `[mempool] max_tx_bytes` at least
/// `max_tx_bytes` itself.
pub const fn rpc_body_bytes_for(tx_bytes: u64) -> u64 {
    tx_bytes
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(RPC_ENVELOPE_BYTES)
}

/// The most entries one page of a listing query holds (`limit` runs from 1
/// to this); the chain answers and clients page by the same number.
pub const QUERY_PAGE_ENTRIES_MAX: u32 = 500;

/// JSON-RPC bytes around a broadcast transaction's base64.
pub const RPC_ENVELOPE_BYTES: u64 = 1024;

const _: () = assert!(TX_BYTES_FLOOR < TX_BYTES_CEILING);
const _: () = assert!(rpc_body_bytes_for(TX_BYTES_CEILING) > TX_BYTES_CEILING);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpc_body_holds_the_base64_of_its_transaction() {
        assert_eq!(rpc_body_bytes_for(0), RPC_ENVELOPE_BYTES);
        assert_eq!(rpc_body_bytes_for(3), 4 + RPC_ENVELOPE_BYTES);
        assert_eq!(rpc_body_bytes_for(4), 8 + RPC_ENVELOPE_BYTES);
        assert_eq!(
            rpc_body_bytes_for(1_048_576),
            1_398_104 + RPC_ENVELOPE_BYTES
        );
        assert_eq!(rpc_body_bytes_for(u64::MAX), u64::MAX);
    }
}
