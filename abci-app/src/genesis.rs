//! The genesis `app_state`: initial balances and parameters.
//!
//! ```json
//! {
//!   "accounts": [{"address": "<64 hex>", "balance": 1000000}],
//!   "params": {"block_reward": 1000}
//! }
//! ```
//! Every field is optional; an empty or `null` app state means no accounts
//! and default parameters.

use std::collections::BTreeMap;

use compute_proto::{pb, AccountId};
use serde::Deserialize;

use crate::params::{self, ParamsError};

/// Why a genesis `app_state` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// The JSON does not parse or has unknown fields.
    #[error("genesis app_state is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// An account is listed twice.
    #[error("genesis account {0} is listed twice")]
    DuplicateAccount(AccountId),
    /// An account is not a key the chain accepts.
    #[error("genesis account {0} {1}")]
    InvalidKey(AccountId, compute_proto::PublicKeyError),
    /// A validator's consensus key is not a key the chain accepts (it is an
    /// account too, paid the block reward).
    #[error("validator key {0} {1}")]
    InvalidValidatorKey(AccountId, compute_proto::PublicKeyError),
    /// The balances add up to more than a u64.
    #[error("genesis balances add up to more than 2^64 - 1 credits")]
    SupplyOverflow,
    /// The parameters are refused.
    #[error(transparent)]
    Params(#[from] ParamsError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppStateJson {
    #[serde(default)]
    accounts: Vec<AccountJson>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountJson {
    address: AccountId,
    balance: u64,
}

/// A parsed, checked genesis state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    /// Initial balances, sorted by account.
    pub balances: BTreeMap<AccountId, u64>,
    /// The chain parameters.
    pub params: pb::Params,
}

impl Genesis {
    /// Parses `app_state_bytes` from `InitChain`.
    ///
    /// # Errors
    /// [`GenesisError`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, GenesisError> {
        let text = std::str::from_utf8(bytes).map_err(|e| GenesisError::Json(e.to_string()))?;
        let trimmed = text.trim();
        let json: AppStateJson = if trimmed.is_empty() || trimmed == "null" {
            AppStateJson {
                accounts: Vec::new(),
                params: None,
            }
        } else {
            serde_json::from_str(trimmed).map_err(|e| GenesisError::Json(e.to_string()))?
        };
        let mut balances = BTreeMap::new();
        let mut supply: u64 = 0;
        for account in json.accounts {
            compute_proto::check_public_key(&account.address.0)
                .map_err(|e| GenesisError::InvalidKey(account.address, e))?;
            supply = supply
                .checked_add(account.balance)
                .ok_or(GenesisError::SupplyOverflow)?;
            if balances.insert(account.address, account.balance).is_some() {
                return Err(GenesisError::DuplicateAccount(account.address));
            }
        }
        let params = params::from_genesis(json.params.as_ref())?;
        Ok(Self { balances, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_app_state_means_defaults() {
        for text in ["", "null", "{}", "  \n"] {
            let g = Genesis::parse(text.as_bytes()).unwrap();
            assert!(g.balances.is_empty());
            assert_eq!(g.params, params::defaults());
        }
    }

    fn key(seed: u8) -> AccountId {
        compute_proto::SigningKey::from_seed([seed; 32]).account()
    }

    #[test]
    fn accounts_and_params_are_read() {
        let a = key(0x11).to_hex();
        let text = format!(
            r#"{{"accounts":[{{"address":"{a}","balance":500}}],"params":{{"min_fee":3}}}}"#
        );
        let g = Genesis::parse(text.as_bytes()).unwrap();
        assert_eq!(g.balances[&key(0x11)], 500);
        assert_eq!(g.params.min_fee, 3);
    }

    #[test]
    fn bad_genesis_is_refused_clearly() {
        let a = key(0x11).to_hex();
        let dup = format!(
            r#"{{"accounts":[{{"address":"{a}","balance":1}},{{"address":"{a}","balance":2}}]}}"#
        );
        assert_eq!(
            Genesis::parse(dup.as_bytes()),
            Err(GenesisError::DuplicateAccount(key(0x11)))
        );
        let overflow = format!(
            r#"{{"accounts":[{{"address":"{a}","balance":18446744073709551615}},{{"address":"{}","balance":1}}]}}"#,
            key(0x22).to_hex()
        );
        assert_eq!(
            Genesis::parse(overflow.as_bytes()),
            Err(GenesisError::SupplyOverflow)
        );
        let identity = format!(
            r#"{{"accounts":[{{"address":"01{}","balance":1}}]}}"#,
            "00".repeat(31)
        );
        assert!(matches!(
            Genesis::parse(identity.as_bytes()),
            Err(GenesisError::InvalidKey(
                _,
                compute_proto::PublicKeyError::SmallOrder
            ))
        ));
        let err = Genesis::parse(br#"{"acounts":[]}"#).unwrap_err();
        assert!(err.to_string().contains("acounts"), "{err}");
        let err = Genesis::parse(br#"{"accounts":[{"address":"xyz","balance":1}]}"#).unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
    }
}
