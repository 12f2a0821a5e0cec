//! `Transfer{to, amount}`: moves credits from the signer to another account.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, debit, require_funds};
use crate::state::StateRead;
use crate::store::StateTx;

const MSG: &str = "Transfer";

/// Shape: a recipient that is an ed25519 public key, a positive amount.
pub fn check_stateless(msg: &pb::Transfer) -> Result<AccountId, Rejection> {
    let invalid = |reason: String| Rejection::InvalidMessage { msg: MSG, reason };
    let to = AccountId::from_slice(&msg.to)
        .map_err(|_| invalid(format!("recipient must be 32 bytes, got {}", msg.to.len())))?;
    // Credits sent to bytes that are no public key could never be spent,
    // and credits sent to a small-order key could be spent by anyone.
    compute_proto::check_public_key(&to.0).map_err(|e| invalid(format!("recipient {to} {e}")))?;
    if msg.amount == 0 {
        return Err(invalid("amount must be positive".into()));
    }
    Ok(to)
}

/// Funds: the signer holds `amount` after paying `fee`.
pub fn check_stateful(
    msg: &pb::Transfer,
    signer: &AccountId,
    fee: u64,
    state: &impl StateRead,
) -> Result<(), Rejection> {
    require_funds(state, signer, msg.amount, fee)
}

/// Moves the credits.
pub fn execute(
    msg: &pb::Transfer,
    to: &AccountId,
    signer: &AccountId,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    // Debit before credit: a self-transfer sees its own debit and ends where
    // it started.
    debit(state, signer, msg.amount)?;
    credit(state, to, msg.amount)?;
    Ok(vec![event(
        "transfer",
        &[
            ("sender", signer.to_hex(), true),
            ("recipient", to.to_hex(), true),
            ("amount", msg.amount.to_string(), false),
        ],
    )])
}
