//! Submission: building, signing and sending the worker's transactions
//! (`RegisterWorker`, `CommitResult`, `RevealResult`, `DeclineTask`) with
//! the account's nonce kept in step with the chain, and reading the
//! chain's answer as what the journal should now record.

use compute_client::{retry, Backoff, Gateway, Query as _};
use compute_proto::{commitment, pb, AccountId, Code, SigningKey, TxBuilder};
use tokio::sync::watch;

use crate::chain::{AccountView, WorkerView};
use crate::error::WorkerError;
use crate::journal::{Entry, EntryState, TaskKey};

/// Attempts to get one transaction accepted (nonce resyncs included).
pub const SUBMIT_ATTEMPTS_MAX: u32 = 6;

/// Longest reason the chain accepts in a `DeclineTask`.
pub const DECLINE_REASON_BYTES_MAX: usize = 256;

/// Which typed call carries a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxKind {
    Register,
    Commit,
    Reveal,
    Decline,
}

impl TxKind {
    fn name(self) -> &'static str {
        match self {
            TxKind::Register => "RegisterWorker",
            TxKind::Commit => "CommitResult",
            TxKind::Reveal => "RevealResult",
            TxKind::Decline => "DeclineTask",
        }
    }
}

/// What became of a commit or a reveal, for the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The chain has it (now or from an earlier attempt): the journal
    /// records this state.
    Landed(EntryState),
    /// Not known to have landed; the next reconcile decides again.
    Open,
    /// This worker cannot make it land: the task is not tried again while
    /// it stays assigned.
    Abandoned,
}

/// Signs and sends the worker's transactions, one at a time, with the
/// account's next nonce.
pub struct Submitter {
    key: SigningKey,
    account: AccountId,
    gateway: Gateway,
    builder: TxBuilder,
    /// The next nonce to use, `None` until read (again) from the chain.
    nonce: tokio::sync::Mutex<Option<u64>>,
    shutdown: watch::Receiver<bool>,
}

impl Submitter {
    /// A submitter for `key`'s account that signs with `builder` (chain id
    /// and fee) and sends through `gateway`.
    #[must_use]
    pub fn new(
        key: SigningKey,
        gateway: Gateway,
        builder: TxBuilder,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            account: key.account(),
            key,
            gateway,
            builder,
            nonce: tokio::sync::Mutex::new(None),
            shutdown,
        }
    }

    /// The account that signs.
    #[must_use]
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Registers the worker with `capacity` and `stake` unless the chain
    /// already knows it (then the registered terms stay, and a difference
    /// from the flags is logged).
    ///
    /// # Errors
    /// When the gateway fails or the chain refuses the registration.
    pub async fn register(&self, capacity: u32, stake: u64) -> Result<(), WorkerError> {
        let record: Result<WorkerView, _> = retry("worker record", &self.shutdown, || {
            self.gateway.worker(&self.account)
        })
        .await;
        match record {
            Ok(record) => {
                tracing::info!(
                    capacity = record.capacity,
                    stake = record.stake,
                    active_tasks = record.active_tasks,
                    "already registered"
                );
                if record.capacity != capacity || record.stake != stake {
                    tracing::warn!(
                        registered_capacity = record.capacity,
                        registered_stake = record.stake,
                        capacity,
                        stake,
                        "registered terms differ from the flags; the chain keeps the registered ones (unregister to change them)"
                    );
                }
                Ok(())
            }
            Err(e) if e.is_not_found() => {
                let msg = pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker { capacity, stake });
                let answer = self.submit(msg, TxKind::Register).await?;
                match Code::from_u32(answer.code) {
                    Some(Code::Ok) => {
                        tracing::info!(capacity, stake, height = answer.height, "registered");
                        Ok(())
                    }
                    Some(Code::WorkerExists) => Ok(()),
                    _ => Err(WorkerError::Refused {
                        what: "RegisterWorker",
                        code: answer.code,
                        log: answer.log,
                    }),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs and sends `msg` with the next nonce, resyncing the nonce from
    /// the chain when it was replayed or skipped ahead. Registration waits
    /// for its block; commits and reveals return after CheckTx, so a
    /// worker's transactions for several tasks share a block instead of
    /// taking one block each (CheckTx queues an account's nonces in order).
    /// The chain's state, reconciled continuously, confirms them: a commit
    /// that never lands is sent again from the journal, and one that did is
    /// answered with WrongPhase, which is recorded as committed.
    async fn submit(
        &self,
        msg: pb::tx_body::Msg,
        kind: TxKind,
    ) -> Result<pb::BroadcastTxResponse, WorkerError> {
        let mut slot = self.nonce.lock().await;
        let mut backoff = Backoff::default();
        let mut last = (0u32, String::new());
        for _ in 0..SUBMIT_ATTEMPTS_MAX {
            if *self.shutdown.borrow() && kind == TxKind::Register {
                return Err(WorkerError::ShuttingDown);
            }
            let nonce = match *slot {
                Some(nonce) => nonce,
                None => {
                    let account: AccountView = retry("account", &self.shutdown, || {
                        self.gateway.account(&self.account)
                    })
                    .await?;
                    tracing::debug!(
                        nonce = account.nonce,
                        balance = account.balance,
                        "nonce synced"
                    );
                    *slot = Some(account.nonce);
                    account.nonce
                }
            };
            let bytes = self.builder.sign(&self.key, nonce, msg.clone());
            let sent = match kind {
                TxKind::Register => {
                    self.gateway
                        .broadcast(bytes, pb::BroadcastMode::Commit)
                        .await
                }
                TxKind::Commit | TxKind::Reveal | TxKind::Decline => {
                    self.gateway.broadcast(bytes, pb::BroadcastMode::Sync).await
                }
            };
            match sent {
                Ok(answer)
                    if matches!(
                        Code::from_u32(answer.code),
                        Some(Code::NonceReplayed | Code::NonceGap | Code::TooManyPending)
                    ) =>
                {
                    tracing::debug!(code = answer.code, log = %answer.log, nonce, "nonce out of step; resyncing");
                    *slot = None;
                    last = (answer.code, answer.log);
                }
                Ok(answer) => {
                    // Accepted, or refused in a block (the nonce is used
                    // either way); refused by CheckTx leaves it unused.
                    if answer.code == Code::Ok.value() || answer.height > 0 {
                        *slot = Some(nonce.saturating_add(1));
                    }
                    return Ok(answer);
                }
                Err(e) if e.is_transient() => {
                    // The transaction may or may not have landed.
                    tracing::warn!(error = %e, tx = kind.name(), "sending failed; retrying");
                    *slot = None;
                    last = (0, e.to_string());
                }
                Err(e) => {
                    *slot = None;
                    return Err(e.into());
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Err(WorkerError::NonceUnsettled {
            what: kind.name(),
            attempts: SUBMIT_ATTEMPTS_MAX,
            code: last.0,
            log: last.1,
        })
    }

    /// Sends the commitment that seals the journaled result `entry`.
    pub async fn commit(&self, entry: &Entry) -> Delivery {
        let key = entry.key();
        let salt = match entry.salt_bytes() {
            Ok(salt) => salt,
            Err(reason) => {
                tracing::error!(task = %key, reason, "journal entry unusable");
                return Delivery::Open;
            }
        };
        let sealed = commitment(
            &entry.job.0,
            entry.task,
            &self.account.0,
            &entry.result_hash.0,
            entry.fuel_used,
            &salt,
        );
        let msg = pb::tx_body::Msg::CommitResult(pb::CommitResult {
            job_id: entry.job.0.to_vec(),
            task: entry.task,
            commitment: sealed.to_vec(),
        });
        match self.submit(msg, TxKind::Commit).await {
            Ok(answer) => match Code::from_u32(answer.code) {
                Some(Code::Ok) => {
                    tracing::info!(task = %key, height = answer.height, "committed");
                    Delivery::Landed(EntryState::Committed)
                }
                Some(Code::WrongPhase) => {
                    tracing::info!(task = %key, log = %answer.log, "already committed (or the commit phase is over)");
                    Delivery::Landed(EntryState::Committed)
                }
                Some(Code::NotAssigned) => {
                    tracing::warn!(task = %key, log = %answer.log, "no longer assigned; commit dropped");
                    Delivery::Open
                }
                _ => {
                    tracing::error!(task = %key, code = answer.code, log = %answer.log, "commit refused");
                    Delivery::Open
                }
            },
            Err(error) => {
                tracing::warn!(task = %key, %error, "commit not sent; will try again");
                Delivery::Open
            }
        }
    }

    /// Sends the reveal of the journaled result `entry`, which opens its
    /// commitment.
    pub async fn reveal(&self, entry: &Entry) -> Delivery {
        let key = entry.key();
        let (salt, output) = match (entry.salt_bytes(), entry.inline_output()) {
            (Ok(salt), Ok(output)) => (salt, output),
            (Err(reason), _) | (_, Err(reason)) => {
                tracing::error!(task = %key, reason, "journal entry unusable");
                return Delivery::Abandoned;
            }
        };
        let msg = pb::tx_body::Msg::RevealResult(pb::RevealResult {
            job_id: entry.job.0.to_vec(),
            task: entry.task,
            result_hash: entry.result_hash.0.to_vec(),
            fuel_used: entry.fuel_used,
            salt,
            output: output.unwrap_or_default(),
        });
        match self.submit(msg, TxKind::Reveal).await {
            Ok(answer) => match Code::from_u32(answer.code) {
                Some(Code::Ok) => {
                    tracing::info!(task = %key, height = answer.height, result_hash = %entry.result_hash, fuel_used = entry.fuel_used, cheat = entry.cheat, "revealed");
                    Delivery::Landed(EntryState::Revealed)
                }
                Some(Code::WrongPhase) => {
                    tracing::info!(task = %key, log = %answer.log, "already revealed (or the reveal phase is over)");
                    Delivery::Landed(EntryState::Revealed)
                }
                Some(Code::CommitmentMismatch) => {
                    tracing::error!(task = %key, log = %answer.log, "the journal does not open this worker's commitment; giving up on the reveal");
                    Delivery::Abandoned
                }
                _ => {
                    tracing::error!(task = %key, code = answer.code, log = %answer.log, "reveal refused");
                    Delivery::Open
                }
            },
            Err(error) => {
                tracing::warn!(task = %key, %error, "reveal not sent; will try again");
                Delivery::Open
            }
        }
    }

    /// Gives a drawn task back to the chain, which draws another worker at
    /// once instead of waiting out the commit deadline. `reason` is cut to
    /// [`DECLINE_REASON_BYTES_MAX`] bytes.
    pub async fn decline(&self, key: TaskKey, reason: &str) {
        let msg = pb::tx_body::Msg::DeclineTask(pb::DeclineTask {
            job_id: key.job.0.to_vec(),
            task: key.task,
            reason: decline_reason(reason),
        });
        match self.submit(msg, TxKind::Decline).await {
            Ok(answer) if answer.code == Code::Ok.value() => {
                tracing::info!(task = %key, "declined");
            }
            Ok(answer) => {
                tracing::warn!(task = %key, code = answer.code, log = %answer.log, "decline refused; the chain will count a missed deadline")
            }
            Err(error) => {
                tracing::warn!(task = %key, %error, "decline not sent; the chain will count a missed deadline")
            }
        }
    }
}

/// `reason` cut to at most [`DECLINE_REASON_BYTES_MAX`] bytes, on a
/// character boundary.
fn decline_reason(reason: &str) -> String {
    let mut reason = reason.to_owned();
    if reason.len() > DECLINE_REASON_BYTES_MAX {
        let mut end = DECLINE_REASON_BYTES_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_decline_reason_is_cut_on_a_character_boundary() {
        assert_eq!(decline_reason("short"), "short");
        let exact = "x".repeat(DECLINE_REASON_BYTES_MAX);
        assert_eq!(decline_reason(&exact), exact);
        // 255 one-byte characters then a two-byte one that straddles the cut.
        let straddling = format!("{}é and more", "x".repeat(DECLINE_REASON_BYTES_MAX - 1));
        let cut = decline_reason(&straddling);
        assert_eq!(cut, "x".repeat(DECLINE_REASON_BYTES_MAX - 1));
        assert!(cut.len() <= DECLINE_REASON_BYTES_MAX);
    }
}
