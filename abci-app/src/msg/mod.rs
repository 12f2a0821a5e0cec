//! Transaction handling in three phases, one module per message.
//!
//! * `check_stateless`: shape only, no state (chain id, fee floor, fields).
//! * `ante`: what every transaction pays before its message runs (nonce and
//!   fee), as in Cosmos: in a block these writes stay even when the message
//!   then fails, so the signer's later transactions are not stuck behind a
//!   nonce gap and a failed message still pays for its place in the block.
//! * `check_stateful` and `execute` of the message, in a buffer dropped when
//!   they fail.
//!
//! Each message's three phases live in its own file; [`replica`] holds what
//! the three messages of a drawn worker share. The ledger primitives they
//! use are in [`crate::ledger`], the task's life after a message in
//! [`crate::settlement`].

pub mod bond_validator;
pub mod cancel_job;
pub mod commit;
pub mod decline;
pub mod dispute;
pub mod post_job;
pub mod register_worker;
pub mod replica;
pub mod reveal;
pub mod store_module;
pub mod transfer;
pub mod unbond_validator;
pub mod unjail_validator;
pub mod unregister_worker;

use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, AccountId, JobId, SignedTx};
use compute_sandbox::ModuleInfo;

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, update_stats, Ctx};
use crate::state::StateRead;
use crate::store::StateTx;
use replica::Target;

/// The name of a message, as events and logs print it.
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
    CommitResult(&'a pb::CommitResult, Target),
    /// An opened result.
    RevealResult(&'a pb::RevealResult, Target),
    /// A drawn task given back.
    DeclineTask(&'a pb::DeclineTask, Target),
    /// Stake bonded behind a valid consensus key.
    BondValidator(&'a pb::BondValidator, [u8; 32]),
    /// Stake to unbond.
    UnbondValidator(&'a pb::UnbondValidator),
    /// A jailed validator back to the set.
    UnjailValidator,
    /// Many sealed results.
    CommitResults(Vec<(&'a pb::CommitResult, Target)>),
    /// Many opened results.
    RevealResults(Vec<(&'a pb::RevealResult, Target)>),
    /// Many jobs.
    PostJobs(Vec<(&'a pb::PostJob, post_job::CheckedJob)>),
    /// A settled result disputed.
    Dispute(&'a pb::Dispute, JobId),
}

/// The most entries a batched message (`CommitResults`, `RevealResults`,
/// `PostJobs`) may carry; the transaction's size bounds them too.
pub use compute_proto::tx::MAX_BATCH_ENTRIES;

/// Checks a batch's count, then each entry with `check` (its refusal names
/// the entry).
fn check_entries<'a, M, C>(
    msg: &'static str,
    entries: &'a [M],
    check: impl Fn(&'a M) -> Result<C, Rejection>,
) -> Result<Vec<(&'a M, C)>, Rejection> {
    if entries.is_empty() || entries.len() > MAX_BATCH_ENTRIES {
        return Err(Rejection::InvalidMessage {
            msg,
            reason: format!(
                "a batch has 1 to {MAX_BATCH_ENTRIES} entries, this one has {}",
                entries.len()
            ),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, m)| {
            check(m)
                .map(|c| (m, c))
                .map_err(|e| entry_refused(msg, index, e))
        })
        .collect()
}

/// The refusal of a batch for the refusal of its entry `index`.
fn entry_refused(msg: &'static str, index: usize, inner: Rejection) -> Rejection {
    Rejection::Entry {
        msg,
        index,
        inner: Box::new(inner),
    }
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
            register_worker::check_stateless(m, ctx.params)?;
            Ok(Checked::RegisterWorker(m))
        }
        Msg::UnregisterWorker(m) => {
            unregister_worker::check_stateless(m)?;
            Ok(Checked::UnregisterWorker)
        }
        Msg::PostJob(m) => Ok(Checked::PostJob(
            m,
            post_job::check_stateless(m, ctx.params)?,
        )),
        Msg::CancelJob(m) => Ok(Checked::CancelJob(cancel_job::check_stateless(m)?)),
        Msg::CommitResult(m) => Ok(Checked::CommitResult(m, commit::check_stateless(m)?)),
        Msg::RevealResult(m) => Ok(Checked::RevealResult(
            m,
            reveal::check_stateless(m, ctx.params)?,
        )),
        Msg::DeclineTask(m) => Ok(Checked::DeclineTask(m, decline::check_stateless(m)?)),
        Msg::BondValidator(m) => Ok(Checked::BondValidator(
            m,
            bond_validator::check_stateless(m)?,
        )),
        Msg::UnbondValidator(m) => {
            unbond_validator::check_stateless(m)?;
            Ok(Checked::UnbondValidator(m))
        }
        Msg::UnjailValidator(m) => {
            unjail_validator::check_stateless(m)?;
            Ok(Checked::UnjailValidator)
        }
        Msg::CommitResults(m) => Ok(Checked::CommitResults(check_entries(
            "CommitResults",
            &m.entries,
            commit::check_stateless,
        )?)),
        Msg::RevealResults(m) => Ok(Checked::RevealResults(check_entries(
            "RevealResults",
            &m.entries,
            |e| reveal::check_stateless(e, ctx.params),
        )?)),
        Msg::PostJobs(m) => Ok(Checked::PostJobs(check_entries(
            "PostJobs",
            &m.jobs,
            |e| post_job::check_stateless(e, ctx.params),
        )?)),
        Msg::Dispute(m) => Ok(Checked::Dispute(m, dispute::check_stateless(m)?)),
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
            register_worker::check_stateful(m, &tx.signer, tx.body.fee, ctx.params, state)?;
            register_worker::execute(m, &tx.signer, ctx.height, state)
        }
        Checked::PostJob(m, checked) => {
            post_job::check_stateful(checked, &tx.signer, tx.body.fee, ctx.params, state)?;
            let id = JobId::derive(&tx.signer, tx.body.nonce);
            post_job::execute(m, checked, &tx.signer, id, ctx, state)
        }
        // A batch runs its entries in order on one buffer: an entry sees
        // the ones before it, and the first refusal drops them all.
        Checked::PostJobs(jobs) => {
            let mut events = Vec::new();
            for (index, (m, checked)) in (0u32..).zip(jobs) {
                let refused = |e| entry_refused("PostJobs", index as usize, e);
                post_job::check_stateful(checked, &tx.signer, tx.body.fee, ctx.params, state)
                    .map_err(refused)?;
                let id = JobId::derive_in_batch(&tx.signer, tx.body.nonce, index);
                events.extend(
                    post_job::execute(m, checked, &tx.signer, id, ctx, state).map_err(refused)?,
                );
            }
            Ok(events)
        }
        Checked::CommitResults(entries) => {
            let mut events = Vec::new();
            for (index, (m, target)) in entries.iter().enumerate() {
                let refused = |e| entry_refused("CommitResults", index, e);
                let found = commit::check_stateful(target, &tx.signer, state).map_err(refused)?;
                events.extend(commit::execute(m, &tx.signer, found, state, ctx).map_err(refused)?);
            }
            Ok(events)
        }
        Checked::RevealResults(entries) => {
            let mut events = Vec::new();
            for (index, (m, target)) in entries.iter().enumerate() {
                let refused = |e| entry_refused("RevealResults", index, e);
                let found =
                    reveal::check_stateful(m, target, &tx.signer, state).map_err(refused)?;
                events.extend(reveal::execute(m, &tx.signer, found, state, ctx).map_err(refused)?);
            }
            Ok(events)
        }
        Checked::Dispute(m, id) => {
            let found = dispute::check_stateful(m, id, &tx.signer, tx.body.fee, ctx, state)?;
            dispute::execute(m, id, found, &tx.signer, ctx, state)
        }
        Checked::CancelJob(id) => {
            let job = cancel_job::check_stateful(id, &tx.signer, state)?;
            cancel_job::execute(id, job, &tx.signer, state, ctx)
        }
        Checked::CommitResult(m, target) => {
            let found = commit::check_stateful(target, &tx.signer, state)?;
            commit::execute(m, &tx.signer, found, state, ctx)
        }
        Checked::DeclineTask(m, target) => {
            let found = decline::check_stateful(target, &tx.signer, state)?;
            decline::execute(m, &tx.signer, found, state, ctx)
        }
        Checked::RevealResult(m, target) => {
            let found = reveal::check_stateful(m, target, &tx.signer, state)?;
            reveal::execute(m, &tx.signer, found, state, ctx)
        }
        Checked::UnregisterWorker => {
            let record = unregister_worker::check_stateful(&tx.signer, ctx.height_i64(), state)?;
            unregister_worker::execute(&record, &tx.signer, state)
        }
        Checked::BondValidator(m, key) => {
            bond_validator::check_stateful(m, key, &tx.signer, tx.body.fee, ctx.params, state)?;
            bond_validator::execute(m, key, &tx.signer, ctx, state)
        }
        Checked::UnbondValidator(m) => {
            let unbonding = unbond_validator::check_stateful(m, &tx.signer, ctx, state)?;
            unbond_validator::execute(unbonding, &tx.signer, ctx, state)
        }
        Checked::UnjailValidator => {
            let (address, record) = unjail_validator::check_stateful(&tx.signer, ctx, state)?;
            unjail_validator::execute(address, record, &tx.signer, ctx, state)
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
