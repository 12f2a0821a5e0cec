//! Query paths served through CometBFT's `/abci_query`. Answers are JSON.
//!
//! | path | answer |
//! | --- | --- |
//! | `/account/<hex>` | `{"address", "balance", "nonce"}` (zero for a key never seen) |
//! | `/params` | every chain parameter |
//! | `/stats` | height, app hash, chain id and chain-wide counters |

use compute_proto::AccountId;
use serde_json::json;

use crate::app::LastCommit;
use crate::codes::Code;
use crate::state::StateRead;
use crate::store::KvRead;

/// The paths this node serves, for error messages.
const KNOWN_PATHS: &str = "/account/<hex>, /params, /stats";

/// A failed query: its code and a message naming the fix.
pub type QueryError = (Code, String);

/// Answers `path` from `state` (the last committed state at `height`).
///
/// # Errors
/// `UnknownQuery` for a path this node does not serve, `BadQuery` for a
/// malformed argument, `NotFound` for a missing record.
pub fn route(
    state: &dyn KvRead,
    path: &str,
    height: i64,
    last: &LastCommit,
) -> Result<Vec<u8>, QueryError> {
    let (route, _query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = route.trim_matches('/').split('/').collect();
    let value = match segments.as_slice() {
        ["account", hex] => {
            let id = parse_account(hex)?;
            let account = state.account(&id);
            json!({
                "address": id,
                "balance": account.balance,
                "nonce": account.nonce,
            })
        }
        ["account"] => {
            return Err((
                Code::BadQuery,
                "missing account id: ask /account/<64 hex characters>".to_owned(),
            ))
        }
        ["params"] => {
            let params = state
                .params()
                .ok_or_else(|| (Code::NotFound, "the chain has no genesis yet".to_owned()))?;
            serde_json::to_value(params).map_err(internal)?
        }
        ["stats"] => {
            let stats = state.stats();
            json!({
                "height": height,
                "app_hash": hex::encode(last.app_hash),
                "chain_id": state.chain_id(),
                "txs_ok": stats.txs_ok,
                "txs_failed": stats.txs_failed,
                "transfers": stats.transfers,
                "fees_collected": stats.fees_collected,
                "credits_minted": stats.credits_minted,
            })
        }
        _ => {
            return Err((
                Code::UnknownQuery,
                format!("unknown query path '{path}': this node serves {KNOWN_PATHS}"),
            ))
        }
    };
    serde_json::to_vec(&value).map_err(internal)
}

fn parse_account(hex: &str) -> Result<AccountId, QueryError> {
    AccountId::from_hex(hex).map_err(|e| {
        (
            Code::BadQuery,
            format!("'{hex}' is not an account id ({e}): use the 64-hex-character public key"),
        )
    })
}

fn internal(e: serde_json::Error) -> QueryError {
    (Code::BadQuery, format!("could not encode the answer: {e}"))
}
