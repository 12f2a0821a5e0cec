//! The ledger primitives every step of the protocol shares: the context a
//! transaction or an end-of-block step runs in ([`Ctx`]), moving credits
//! ([`debit`], [`credit`], [`require_funds`]) and the chain-wide counters
//! ([`update_stats`]).
//!
//! It depends on nothing of the protocol above it (messages, assignment,
//! deadlines, settlement, the verify queue), so each of those can use it
//! without depending on another.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::state::StateRead;
use crate::store::StateTx;
use crate::verify::Verifier;

/// What a transaction needs to know about the block it runs in.
#[derive(Clone, Debug)]
pub struct Ctx<'a> {
    /// The chain parameters.
    pub params: &'a pb::Params,
    /// The chain id.
    pub chain_id: &'a str,
    /// The height being built (in CheckTx, the next height).
    pub height: u64,
    /// The account credited with fees; `None` in CheckTx.
    pub proposer: Option<AccountId>,
    /// The block time in seconds since the Unix epoch (0 in CheckTx).
    pub time_seconds: i64,
    /// Compiles stored modules and runs `verify` for Verified jobs.
    pub verifier: &'a Verifier,
    /// Whether this runs in a block (FinalizeBlock) rather than in CheckTx:
    /// a fault of this validator halts it in a block and only refuses the
    /// transaction in CheckTx.
    pub in_block: bool,
}

impl Ctx<'_> {
    /// The height being built, as records store heights.
    pub fn height_i64(&self) -> i64 {
        i64::try_from(self.height).unwrap_or(i64::MAX)
    }
}

/// Checks that `payer` holds `amount` after its ante step paid `fee`; the
/// error reports both as the person sees them, before the fee.
pub fn require_funds(
    state: &impl StateRead,
    payer: &AccountId,
    amount: u64,
    fee: u64,
) -> Result<(), Rejection> {
    // What the person asked to spend in all, which must itself be a number.
    amount
        .checked_add(fee)
        .ok_or(Rejection::Overflow("amount + fee"))?;
    let balance = state.account(payer).balance;
    if balance < amount {
        return Err(Rejection::InsufficientFunds {
            account: *payer,
            needed: amount.saturating_add(fee),
            available: balance.saturating_add(fee),
        });
    }
    Ok(())
}

/// `amount x ppm / 10^6`, rounded down (never more than `amount`): the part
/// of a stake a slash takes, of a pool a bounty gets.
pub fn ppm_share(amount: u64, ppm: u32) -> u64 {
    let cut = u128::from(amount).saturating_mul(u128::from(ppm)) / 1_000_000;
    u64::try_from(cut).unwrap_or(amount).min(amount)
}

/// Applies `change` to the chain-wide counters.
pub fn update_stats(state: &mut StateTx<'_>, change: impl FnOnce(&mut pb::Stats)) {
    let mut stats = state.stats();
    change(&mut stats);
    state.put_stats(&stats);
}

/// Takes `amount` from `id`'s balance.
pub fn debit(state: &mut StateTx<'_>, id: &AccountId, amount: u64) -> Result<(), Rejection> {
    let mut account = state.account(id);
    account.balance = account
        .balance
        .checked_sub(amount)
        .ok_or(Rejection::InsufficientFunds {
            account: *id,
            needed: amount,
            available: account.balance,
        })?;
    state.put_account(id, &account);
    Ok(())
}

/// Adds `amount` to `id`'s balance.
pub fn credit(state: &mut StateTx<'_>, id: &AccountId, amount: u64) -> Result<(), Rejection> {
    let mut account = state.account(id);
    account.balance = account
        .balance
        .checked_add(amount)
        .ok_or(Rejection::Overflow("balance"))?;
    state.put_account(id, &account);
    Ok(())
}
