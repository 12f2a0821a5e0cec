//! Submission: building, signing and sending the worker's transactions
//! (`RegisterWorker`, `CommitResult`, `RevealResult`, `DeclineTask`) with
//! the account's nonce kept in step with the chain, and reading the
//! chain's answer as what the journal should now record.
//!
//! Commits and reveals are grouped: while one transaction is on its way,
//! the results that become ready queue up, and the next transaction carries
//! all of them (`CommitResults`, `RevealResults`), so a busy worker spends
//! one transaction on many tasks. A batch is all or nothing on the chain:
//! when it is refused for one entry, that entry is settled as a single
//! message's refusal would be and the rest is sent again.

use compute_client::{retry, Backoff, Gateway, Query as _};
use compute_proto::tx::{refused_entry, MAX_BATCH_ENTRIES};
use compute_proto::{commitment, pb, AccountId, Code, SigningKey, TxBuilder};
use prost::Message as _;
use tokio::sync::{oneshot, watch};

use crate::chain::{AccountView, WorkerView};
use crate::error::WorkerError;
use crate::journal::{Entry, EntryState, TaskKey};

/// Attempts to get one transaction accepted (nonce resyncs included).
pub const SUBMIT_ATTEMPTS_MAX: u32 = 6;

/// Longest reason the chain accepts in a `DeclineTask`.
pub const DECLINE_REASON_BYTES_MAX: usize = 256;

/// Message bytes one batched transaction carries at most (entries beyond
/// wait for the next); a batch the chain finds too large is halved.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;

/// Which typed call carries a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxKind {
    Register,
    Commit,
    Reveal,
    Decline,
    Dispute,
}

impl TxKind {
    fn name(self) -> &'static str {
        match self {
            TxKind::Register => "RegisterWorker",
            TxKind::Commit => "CommitResult",
            TxKind::Reveal => "RevealResult",
            TxKind::Decline => "DeclineTask",
            TxKind::Dispute => "Dispute",
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
    commits: Batcher,
    reveals: Batcher,
}

/// Results waiting to go out together, and who sends them.
#[derive(Default)]
struct Batcher {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    /// Held by the caller that sends what is waiting.
    sending: tokio::sync::Mutex<()>,
}

/// A result waiting to be sent, and where its delivery goes.
struct Waiting {
    part: Part,
    done: oneshot::Sender<Delivery>,
}

/// One entry of a commit or reveal batch, ready to send.
#[derive(Clone)]
enum Part {
    Commit(TaskKey, pb::CommitResult),
    Reveal(TaskKey, pb::RevealResult, Box<Entry>),
}

impl Part {
    fn key(&self) -> TaskKey {
        match self {
            Part::Commit(key, _) | Part::Reveal(key, _, _) => *key,
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Part::Commit(_, m) => m.encoded_len(),
            Part::Reveal(_, m, _) => m.encoded_len(),
        }
    }
}

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The oldest waiting parts, within [`MAX_BATCH_ENTRIES`] and
    /// [`BATCH_BYTES_MAX`] (at least one).
    fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.lock();
        let mut bytes = 0usize;
        let mut count = 0usize;
        for w in waiting.iter() {
            bytes = bytes.saturating_add(w.part.encoded_len());
            if count > 0 && (count >= MAX_BATCH_ENTRIES || bytes > BATCH_BYTES_MAX) {
                break;
            }
            count = count.saturating_add(1);
        }
        waiting.drain(..count).collect()
    }
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
            commits: Batcher::default(),
            reveals: Batcher::default(),
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

    /// Sends a watcher's `Dispute` and waits for its block; returns the
    /// height it was accepted at.
    ///
    /// # Errors
    /// When the chain refuses it, or it cannot be placed.
    pub async fn dispute(&self, dispute: pb::Dispute) -> Result<u64, WorkerError> {
        let answer = self
            .submit(pb::tx_body::Msg::Dispute(dispute), TxKind::Dispute)
            .await?;
        if answer.code != Code::Ok.value() {
            return Err(WorkerError::Refused {
                what: TxKind::Dispute.name(),
                code: answer.code,
                log: answer.log,
            });
        }
        Ok(u64::try_from(answer.height).unwrap_or(0))
    }

    /// Signs and sends `msg` with the next nonce, resyncing the nonce from
    /// the chain when it was replayed or skipped ahead. Registration and
    /// disputes wait for their block; commits and reveals return after CheckTx, so a
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
            if *self.shutdown.borrow() && matches!(kind, TxKind::Register | TxKind::Dispute) {
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
                TxKind::Register | TxKind::Dispute => {
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

    /// Sends the commitment that seals the journaled result `entry`, with
    /// whatever other commitments are ready.
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
        let part = Part::Commit(
            key,
            pb::CommitResult {
                job_id: entry.job.0.to_vec(),
                task: entry.task,
                commitment: sealed.to_vec(),
            },
        );
        self.enqueue(&self.commits, part).await
    }

    /// Sends the reveal of the journaled result `entry`, which opens its
    /// commitment, with whatever other reveals are ready.
    pub async fn reveal(&self, entry: &Entry) -> Delivery {
        let key = entry.key();
        let (salt, output) = match (entry.salt_bytes(), entry.inline_output()) {
            (Ok(salt), Ok(output)) => (salt, output),
            (Err(reason), _) | (_, Err(reason)) => {
                tracing::error!(task = %key, reason, "journal entry unusable");
                return Delivery::Abandoned;
            }
        };
        let part = Part::Reveal(
            key,
            pb::RevealResult {
                job_id: entry.job.0.to_vec(),
                task: entry.task,
                result_hash: entry.result_hash.0.to_vec(),
                fuel_used: entry.fuel_used,
                salt,
                output: output.unwrap_or_default(),
            },
            Box::new(entry.clone()),
        );
        self.enqueue(&self.reveals, part).await
    }

    /// Queues `part` and, unless another caller is sending, sends what is
    /// waiting until nothing is; returns `part`'s delivery.
    async fn enqueue(&self, batcher: &Batcher, part: Part) -> Delivery {
        let (done, delivered) = oneshot::channel();
        batcher.lock().push(Waiting { part, done });
        loop {
            let Ok(sending) = batcher.sending.try_lock() else {
                // The sender looks again after it lets go.
                break;
            };
            let batch = batcher.take();
            if batch.is_empty() {
                drop(sending);
                if batcher.lock().is_empty() {
                    break;
                }
                continue;
            }
            self.send_batch(batch).await;
            drop(sending);
        }
        delivered.await.unwrap_or(Delivery::Open)
    }

    /// Sends `batch` as one transaction (a single message when it holds one
    /// part); an entry the chain refuses gets that refusal's delivery and
    /// the rest is sent again; a batch too large is halved.
    async fn send_batch(&self, mut batch: Vec<Waiting>) {
        // Each round settles at least one part or halves the batch.
        let mut queue = std::collections::VecDeque::new();
        for _ in 0..(2 * MAX_BATCH_ENTRIES + 2) {
            if batch.is_empty() {
                match queue.pop_front() {
                    Some(next) => batch = next,
                    None => return,
                }
            }
            let parts: Vec<Part> = batch.iter().map(|w| w.part.clone()).collect();
            let (msg, kind) = message_of(&parts);
            let answer = match self.submit(msg, kind).await {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::warn!(tasks = parts.len(), %error, "{} not sent; will try again", kind.name());
                    settle_all(std::mem::take(&mut batch), Delivery::Open);
                    continue;
                }
            };
            let code = Code::from_u32(answer.code);
            if code == Some(Code::TxTooLarge) && batch.len() > 1 {
                let half = batch.split_off(batch.len() / 2);
                queue.push_front(half);
                continue;
            }
            let named = refused_entry(&answer.log).filter(|i| *i < batch.len() && batch.len() > 1);
            match named {
                Some(index) if code != Some(Code::Ok) => {
                    // Only that entry was refused: settle it, resend the rest.
                    let refused = batch.remove(index);
                    let delivery = delivery_of(&refused.part, &answer);
                    let _ = refused.done.send(delivery);
                }
                _ => {
                    for waiting in batch.drain(..) {
                        let delivery = delivery_of(&waiting.part, &answer);
                        let _ = waiting.done.send(delivery);
                    }
                }
            }
        }
        // Out of rounds: what is left is tried again by the next reconcile.
        settle_all(batch, Delivery::Open);
        for rest in queue {
            settle_all(rest, Delivery::Open);
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
/// The transaction of `parts` (all commits or all reveals): the single
/// message for one part, the batch for more.
fn message_of(parts: &[Part]) -> (pb::tx_body::Msg, TxKind) {
    use pb::tx_body::Msg;
    match parts {
        [Part::Commit(_, m)] => (Msg::CommitResult(m.clone()), TxKind::Commit),
        [Part::Reveal(_, m, _)] => (Msg::RevealResult(m.clone()), TxKind::Reveal),
        [Part::Commit(..), ..] => {
            let entries = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Commit(_, m) => Some(m.clone()),
                    Part::Reveal(..) => None,
                })
                .collect();
            (
                Msg::CommitResults(pb::CommitResults { entries }),
                TxKind::Commit,
            )
        }
        _ => {
            let entries = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Reveal(_, m, _) => Some(m.clone()),
                    Part::Commit(..) => None,
                })
                .collect();
            (
                Msg::RevealResults(pb::RevealResults { entries }),
                TxKind::Reveal,
            )
        }
    }
}

/// What the chain's `answer` means for `part` (for a refused batch, the
/// refusal of the entry it names).
fn delivery_of(part: &Part, answer: &pb::BroadcastTxResponse) -> Delivery {
    let key = part.key();
    let code = Code::from_u32(answer.code);
    match (part, code) {
        (Part::Commit(..), Some(Code::Ok)) => {
            tracing::info!(task = %key, height = answer.height, "committed");
            Delivery::Landed(EntryState::Committed)
        }
        (Part::Commit(..), Some(Code::WrongPhase)) => {
            tracing::info!(task = %key, log = %answer.log, "already committed (or the commit phase is over)");
            Delivery::Landed(EntryState::Committed)
        }
        (Part::Commit(..), Some(Code::NotAssigned)) => {
            tracing::warn!(task = %key, log = %answer.log, "no longer assigned; commit dropped");
            Delivery::Open
        }
        (Part::Commit(..), _) => {
            tracing::error!(task = %key, code = answer.code, log = %answer.log, "commit refused");
            Delivery::Open
        }
        (Part::Reveal(_, _, entry), Some(Code::Ok)) => {
            tracing::info!(task = %key, height = answer.height, result_hash = %entry.result_hash, fuel_used = entry.fuel_used, cheat = entry.cheat, "revealed");
            Delivery::Landed(EntryState::Revealed)
        }
        (Part::Reveal(..), Some(Code::WrongPhase)) => {
            tracing::info!(task = %key, log = %answer.log, "already revealed (or the reveal phase is over)");
            Delivery::Landed(EntryState::Revealed)
        }
        (Part::Reveal(..), Some(Code::CommitmentMismatch)) => {
            tracing::error!(task = %key, log = %answer.log, "the journal does not open this worker's commitment; giving up on the reveal");
            Delivery::Abandoned
        }
        (Part::Reveal(..), _) => {
            tracing::error!(task = %key, code = answer.code, log = %answer.log, "reveal refused");
            Delivery::Open
        }
    }
}

/// Gives every part of `batch` the same delivery.
fn settle_all(batch: Vec<Waiting>, delivery: Delivery) {
    for waiting in batch {
        let _ = waiting.done.send(delivery);
    }
}

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

    fn commit_part(task: u32, commitment_bytes: usize) -> Part {
        let job = compute_proto::JobId([7; 32]);
        Part::Commit(
            TaskKey { job, task },
            pb::CommitResult {
                job_id: job.0.to_vec(),
                task,
                commitment: vec![1; commitment_bytes],
            },
        )
    }

    fn queued(
        batcher: &Batcher,
        parts: impl IntoIterator<Item = Part>,
    ) -> Vec<oneshot::Receiver<Delivery>> {
        parts
            .into_iter()
            .map(|part| {
                let (done, delivered) = oneshot::channel();
                batcher.lock().push(Waiting { part, done });
                delivered
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_the_oldest_waiting_within_its_count_and_bytes() {
        let batcher = Batcher::default();
        let _receivers = queued(
            &batcher,
            (0..MAX_BATCH_ENTRIES as u32 + 5).map(|t| commit_part(t, 0)),
        );
        let first = batcher.take();
        assert_eq!(first.len(), MAX_BATCH_ENTRIES);
        assert_eq!(first[0].part.key().task, 0);
        assert_eq!(batcher.take().len(), 5);
        assert!(batcher.take().is_empty());

        // Large entries: the bytes bound cuts first, but one always goes.
        let _more = queued(
            &batcher,
            (0..4).map(|t| commit_part(t, BATCH_BYTES_MAX / 3)),
        );
        assert_eq!(batcher.take().len(), 2);
        let _huge = queued(&batcher, [commit_part(9, BATCH_BYTES_MAX * 2)]);
        assert_eq!(batcher.take().len(), 2);
        assert_eq!(batcher.take().len(), 1);
    }

    #[test]
    fn one_part_goes_as_the_single_message_and_more_as_the_batch() {
        use pb::tx_body::Msg;
        let (msg, kind) = message_of(&[commit_part(1, 32)]);
        assert!(matches!(msg, Msg::CommitResult(_)));
        assert_eq!(kind, TxKind::Commit);
        let (msg, _) = message_of(&[commit_part(1, 32), commit_part(2, 32)]);
        match msg {
            Msg::CommitResults(batch) => {
                let tasks: Vec<u32> = batch.entries.iter().map(|e| e.task).collect();
                assert_eq!(tasks, [1, 2]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_batch_names_its_entry_for_the_worker() {
        let log = format!(
            "{}task 3 of job ab is not in its commit phase",
            compute_proto::tx::entry_refusal_prefix("CommitResults", 4)
        );
        assert_eq!(refused_entry(&log), Some(4));
        assert_eq!(refused_entry("account has 3 credits"), None);
        assert_eq!(
            refused_entry("entry x of CommitResults (counting from 0): "),
            None
        );
    }
}
