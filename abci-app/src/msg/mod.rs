//! Transaction handling in three phases, one module per message.
//!
//! * `check_stateless`: shape only, no state (chain id, fee floor, fields).
//! * `ante`: what every transaction pays before its message runs (nonce and
//!   fee), as in Cosmos: in a block these writes stay even when the message
//!   then fails, so the signer's later transactions are not stuck behind a
//!   nonce gap and a failed message still pays for its place in the block.
//! * `check_stateful` and `execute` of the message, in a buffer dropped when
//!   they fail.

pub mod cancel_job;
pub mod post_job;
pub mod results;
pub mod store_module;
pub mod transfer;
pub mod workers;

use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, AccountId, JobId, SignedTx};
use compute_sandbox::ModuleInfo;

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::state::StateRead;
use crate::store::StateTx;

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
    pub verifier: &'a crate::verify::Verifier,
    /// Whether this runs in a block (FinalizeBlock) rather than in CheckTx:
    /// a fault of this validator halts it in a block and only refuses the
    /// transaction in CheckTx.
    pub in_block: bool,
}

pub use compute_proto::tx::msg_name as name;

/// A message whose shape is checked, with its parsed fields.
pub enum Checked<'a> {
    /// A transfer to a valid account.
    Transfer(&'a pb::Transfer, AccountId),
    /// An admissible module.
    StoreModule(&'a pb::StoreModule, ModuleInfo),
    /// A registration within bounds.
    RegisterWorker(&'a pb::RegisterWorker),
    /// Leaving the pool.
    UnregisterWorker,
    /// A job within the chain's limits.
    PostJob(&'a pb::PostJob, post_job::CheckedJob),
    /// Cancelling a job.
    CancelJob(JobId),
    /// A sealed result.
    CommitResult(&'a pb::CommitResult, results::Target),
    /// An opened result.
    RevealResult(&'a pb::RevealResult, results::Target),
    /// A drawn task given back.
    DeclineTask(&'a pb::DeclineTask, results::Target),
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

/// Checks everything that needs no state. The signature is checked apart
/// (singly in CheckTx, in a batch in FinalizeBlock).
pub fn check_stateless<'t>(tx: &'t SignedTx, ctx: &Ctx<'_>) -> Result<Checked<'t>, Rejection> {
    if tx.body.chain_id != ctx.chain_id {
        return Err(Rejection::WrongChainId {
            expected: ctx.chain_id.to_owned(),
            got: tx.body.chain_id.clone(),
        });
    }
    if tx.body.fee < ctx.params.min_fee {
        return Err(Rejection::FeeTooLow {
            min: ctx.params.min_fee,
            got: tx.body.fee,
        });
    }
    match &tx.msg {
        Msg::Transfer(m) => Ok(Checked::Transfer(m, transfer::check_stateless(m)?)),
        Msg::StoreModule(m) => Ok(Checked::StoreModule(
            m,
            store_module::check_stateless(m, ctx.params)?,
        )),
        Msg::RegisterWorker(m) => {
            workers::check_register_stateless(m, ctx.params)?;
            Ok(Checked::RegisterWorker(m))
        }
        Msg::UnregisterWorker(_) => Ok(Checked::UnregisterWorker),
        Msg::PostJob(m) => Ok(Checked::PostJob(
            m,
            post_job::check_stateless(m, ctx.params)?,
        )),
        Msg::CancelJob(m) => Ok(Checked::CancelJob(cancel_job::check_stateless(m)?)),
        Msg::CommitResult(m) => Ok(Checked::CommitResult(
            m,
            results::check_commit_stateless(m)?,
        )),
        Msg::RevealResult(m) => Ok(Checked::RevealResult(
            m,
            results::check_reveal_stateless(m, ctx.params)?,
        )),
        Msg::DeclineTask(m) => Ok(Checked::DeclineTask(
            m,
            results::check_decline_stateless(m)?,
        )),
        other => Err(Rejection::NotYetSupported(name(other))),
    }
}

/// Checks and charges the nonce and the fee.
pub fn ante(tx: &SignedTx, state: &mut StateTx<'_>, ctx: &Ctx<'_>) -> Result<(), Rejection> {
    let mut account = state.account(&tx.signer);
    let nonce = tx.body.nonce;
    if nonce < account.nonce {
        return Err(Rejection::NonceReplayed {
            account: tx.signer,
            expected: account.nonce,
            got: nonce,
        });
    }
    if nonce > account.nonce {
        return Err(Rejection::NonceGap {
            account: tx.signer,
            expected: account.nonce,
            got: nonce,
        });
    }
    // Nonce and fee change the same record: one read, one write, on the
    // path every transaction takes.
    let fee = tx.body.fee;
    account.balance = account
        .balance
        .checked_sub(fee)
        .ok_or(Rejection::InsufficientFunds {
            account: tx.signer,
            needed: fee,
            available: account.balance,
        })?;
    account.nonce = account
        .nonce
        .checked_add(1)
        .ok_or(Rejection::Overflow("account nonce"))?;
    state.put_account(&tx.signer, &account);
    if fee > 0 {
        if let Some(proposer) = ctx.proposer {
            credit(state, &proposer, fee)?;
        }
        update_stats(state, |s| {
            s.fees_collected = s.fees_collected.saturating_add(fee)
        });
    }
    Ok(())
}

/// Runs the message's stateful check and, when it passes, its execution.
pub fn run(
    tx: &SignedTx,
    checked: &Checked<'_>,
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    match checked {
        Checked::StoreModule(m, info) => {
            store_module::check_stateful(info, &tx.signer, tx.body.fee, ctx.params, state)?;
            store_module::execute(m, info, &tx.signer, ctx, state)
        }
        Checked::RegisterWorker(m) => {
            workers::check_register_stateful(m, &tx.signer, tx.body.fee, ctx.params, state)?;
            workers::execute_register(m, &tx.signer, ctx.height, state)
        }
        Checked::PostJob(m, checked) => {
            post_job::check_stateful(checked, &tx.signer, tx.body.fee, ctx.params, state)?;
            post_job::execute(m, checked, &tx.signer, tx.body.nonce, ctx, state)
        }
        Checked::CancelJob(id) => {
            let job = cancel_job::check_stateful(id, &tx.signer, state)?;
            cancel_job::execute(id, job, &tx.signer, state, ctx)
        }
        Checked::CommitResult(m, target) => {
            let found = results::check_commit_stateful(target, &tx.signer, state)?;
            results::execute_commit(m, target, &tx.signer, found, state, ctx)
        }
        Checked::DeclineTask(m, target) => {
            let found = results::check_decline_stateful(target, &tx.signer, state)?;
            results::execute_decline(m, target, &tx.signer, found, state, ctx)
        }
        Checked::RevealResult(m, target) => {
            let found = results::check_reveal_stateful(m, target, &tx.signer, state)?;
            results::execute_reveal(m, target, &tx.signer, found, state, ctx)
        }
        Checked::UnregisterWorker => {
            let record = workers::check_unregister_stateful(&tx.signer, state)?;
            workers::execute_unregister(&record, &tx.signer, state)
        }
        Checked::Transfer(m, to) => {
            transfer::check_stateful(m, &tx.signer, tx.body.fee, state)?;
            let events = transfer::execute(m, to, &tx.signer, state)?;
            update_stats(state, |s| s.transfers = s.transfers.saturating_add(1));
            Ok(events)
        }
    }
}

/// The event every transaction that passed its ante step emits, so that a
/// client finds all transactions of a key with
/// `tx_search "message.sender='<hex>'"` (the Cosmos convention).
pub fn message_event(tx: &SignedTx) -> Event {
    event(
        "message",
        &[
            ("sender", tx.signer.to_hex(), true),
            ("action", name(&tx.msg).to_owned(), true),
            ("nonce", tx.body.nonce.to_string(), false),
            ("fee", tx.body.fee.to_string(), false),
        ],
    )
}
