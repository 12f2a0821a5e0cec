//! Every state key is built here. Integers in keys are big-endian so that
//! prefix scans come out in numeric order.

use compute_proto::AccountId;

/// Prefix of account records.
pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
/// Prefix of the validator registry (consensus address to account).
pub const VALIDATOR_PREFIX: &[u8] = b"val/";

/// The account record of `id`.
pub fn account(id: &AccountId) -> Vec<u8> {
    [ACCOUNT_PREFIX, id.as_bytes()].concat()
}

/// The account behind a 20-byte CometBFT validator address.
pub fn validator(address: &[u8]) -> Vec<u8> {
    [VALIDATOR_PREFIX, address].concat()
}

/// The chain parameters.
pub fn params() -> Vec<u8> {
    b"params".to_vec()
}

/// The chain id, fixed at genesis.
pub fn chain_id() -> Vec<u8> {
    b"chain_id".to_vec()
}

/// Chain-wide counters.
pub fn stats() -> Vec<u8> {
    b"stats".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap() {
        let fixed = [params(), chain_id(), stats()];
        for prefix in [ACCOUNT_PREFIX, VALIDATOR_PREFIX] {
            for key in &fixed {
                assert!(!key.starts_with(prefix) && !prefix.starts_with(key));
            }
        }
        assert!(!ACCOUNT_PREFIX.starts_with(VALIDATOR_PREFIX));
        assert!(!VALIDATOR_PREFIX.starts_with(ACCOUNT_PREFIX));
    }
}
