//! Submitting a signed transaction so that it lands once, or says why not.
//!
//! A client that reads an account's nonce, signs and broadcasts meets three
//! ordinary situations that are not failures of the transaction:
//!
//! - the nonce it read was stale (the node answered from a block behind,
//!   or the account's earlier transactions sit in another node's mempool):
//!   CheckTx refuses it as [`Code::NonceReplayed`] or [`Code::NonceGap`];
//! - the node already holds exactly these bytes ("tx already exists in
//!   cache"): the same transaction was sent before, by this call after a
//!   lost answer, by the caller who pinned the nonce, or, with identical
//!   bytes, by an earlier transaction of the same content and nonce;
//! - the node's wait for the block ended first (CometBFT's
//!   `timeout_broadcast_tx_commit`): the transaction was accepted and may
//!   land later.
//!
//! [`submit`] handles them with bounded attempts and [`Backoff`] delays:
//! on a cache hit it first looks the hash up (`/tx`); a committed copy is
//! this submission's success when these bytes are this submission's (sent
//! by it before, or signed with a nonce the caller pinned), and otherwise
//! proof that the nonce was stale. A stale nonce is read again (the node's
//! pending nonce, [`Query::pending_nonce`]) and the message signed again.
//! Bytes that may have reached a mempool are never replaced by a
//! transaction with another nonce unless they provably cannot land (refused
//! by CheckTx or by their block): both could land otherwise. Every hash is
//! reported to an observer before it is sent, so that a caller can print it
//! first.

use std::future::Future;
use std::time::Duration;

use compute_proto::{AccountId, Code};
use sha2::{Digest, Sha256};

use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::query::Query;

/// CometBFT's name of a transaction: the upper-case hex of the sha256 of
/// its bytes, as `/tx?hash=0x...` takes it and CometBFT prints it.
#[must_use]
pub fn tx_hash(tx: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(tx))
}

/// What a submission waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// CheckTx's answer only (`broadcast_tx_sync`): accepted into the
    /// node's mempool.
    CheckTx,
    /// The committed block (`broadcast_tx_commit`, then `/tx` lookups up to
    /// [`SubmitOptions::commit_wait`]).
    Commit,
}

/// A block's verdict on a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Included {
    /// The block's height.
    pub height: u64,
    /// The chain's code (0 when executed).
    pub code: u32,
    /// What the chain logged.
    pub log: String,
}

/// What a node answered to one broadcast.
#[derive(Debug)]
pub enum Sent {
    /// CheckTx refused it with `code`.
    Refused {
        /// The chain's code.
        code: u32,
        /// Why.
        log: String,
    },
    /// CheckTx accepted it (with [`Wait::CheckTx`]).
    Accepted,
    /// It is in a committed block, with the block's verdict.
    Included(Included),
    /// CheckTx accepted it, and the node's wait for the block ended first.
    NotYetIncluded,
    /// The node already holds these exact bytes ("tx already exists in
    /// cache"); CheckTx did not run.
    AlreadyKnown,
    /// The node could not take it now (its mempool is full, too many
    /// subscriptions); it did not reach CheckTx.
    Busy(String),
    /// A definite failure that sending again cannot change (too large).
    Final(ClientError),
    /// No answer (transport failure, timeout): it may or may not have
    /// reached the node.
    NoAnswer(ClientError),
}

/// A node that [`submit`] can send to: [`crate::ChainClient`] over
/// CometBFT's RPC; the tests' scripted nodes.
pub trait TxNode: Query {
    /// Where it is, for messages.
    fn node_url(&self) -> &str;

    /// Broadcasts `tx` and waits as `wait` says.
    fn send(&self, tx: Vec<u8>, wait: Wait) -> impl Future<Output = Sent> + Send;

    /// The committed transaction named `hash` (upper-case hex), or `None`
    /// when no committed block holds it (yet).
    ///
    /// # Errors
    /// The node cannot say (its transaction index is disabled, transport).
    fn lookup(
        &self,
        hash: &str,
    ) -> impl Future<Output = Result<Option<Included>, ClientError>> + Send;
}

/// How [`submit`] sends and retries.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Sign with this nonce and never sign again with another (the caller
    /// decided it); `None` takes the node's pending nonce.
    pub nonce: Option<u64>,
    /// What to wait for.
    pub wait: Wait,
    /// Broadcasts at most, re-signed ones included.
    pub attempts_max: u32,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// How long to keep looking a transaction up after CheckTx accepted it
    /// and the node's own wait for its block ended.
    pub commit_wait: Duration,
    /// How often to look it up meanwhile.
    pub poll: Duration,
}

/// Broadcasts of one submission at most, by default.
pub const SUBMIT_ATTEMPTS_MAX: u32 = 6;

impl Default for SubmitOptions {
    /// The pending nonce, waiting for the block, 6 attempts 200 ms to 3 s
    /// apart, and 30 s of lookups after CometBFT's own wait.
    fn default() -> Self {
        Self {
            nonce: None,
            wait: Wait::Commit,
            attempts_max: SUBMIT_ATTEMPTS_MAX,
            backoff: Backoff::new(200, 3_000),
            commit_wait: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }
}

/// What a submission tells its observer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitEvent {
    /// The node does not serve `/nonce` (it is older): the committed nonce
    /// is used, which does not count the node's mempool.
    CommittedNonceOnly {
        /// The node.
        url: String,
    },
    /// About to broadcast: the transaction is known by `hash` from now on.
    Sending {
        /// Its hash.
        hash: String,
        /// Its nonce.
        nonce: u64,
        /// The broadcast's number, from 1.
        attempt: u32,
        /// The node.
        url: String,
    },
    /// The same bytes are sent again after `delay`.
    Retrying {
        /// Their hash.
        hash: String,
        /// Why.
        reason: String,
        /// How long until then.
        delay: Duration,
    },
    /// The transaction `hash` is not this submission's (its nonce was
    /// stale); the message is signed again with a fresh nonce.
    Superseded {
        /// The hash: a transaction that was refused and cannot land, or
        /// (with `copy`) an identical earlier one of the same content and
        /// nonce, which is that one's and may well land.
        hash: String,
        /// Its nonce.
        nonce: u64,
        /// Why.
        reason: String,
        /// Whether `hash` names an identical earlier transaction rather
        /// than one this submission got refused.
        copy: bool,
    },
    /// CheckTx accepted it; its block is awaited with lookups.
    Waiting {
        /// Its hash.
        hash: String,
    },
}

/// How far a submitted transaction got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitStatus {
    /// Executed in a committed block.
    Committed,
    /// Accepted by CheckTx into the node's mempool, not yet seen in a
    /// committed block: it may still land (look it up by its hash).
    Submitted,
}

/// A transaction the chain accepted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Submitted {
    /// Its hash (upper-case hex, as CometBFT names it).
    pub hash: String,
    /// Its nonce.
    pub nonce: u64,
    /// How far it got.
    pub status: SubmitStatus,
    /// Its block, 0 unless committed.
    pub height: u64,
    /// The chain's code: always 0 here.
    pub code: u32,
    /// What the chain logged.
    pub log: String,
    /// Transactions of this submission signed before it that were refused
    /// for a stale nonce and cannot land (not listed: a hash that turned
    /// out to name an identical earlier transaction, which is not this
    /// one).
    pub superseded: Vec<String>,
    /// Broadcasts it took.
    pub attempts: u32,
}

impl Submitted {
    /// Whether it is in a committed block.
    #[must_use]
    pub fn is_committed(&self) -> bool {
        self.status == SubmitStatus::Committed
    }

    /// As a [`crate::TxReceipt`] (height 0 when not yet committed).
    #[must_use]
    pub fn receipt(&self) -> crate::TxReceipt {
        crate::TxReceipt {
            hash: self.hash.clone(),
            height: self.height,
            code: self.code,
            log: self.log.clone(),
        }
    }
}

/// Why a hash is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// The node holds these bytes already.
    InCache,
    /// CheckTx says the nonce was used; perhaps by these very bytes.
    Replayed,
}

/// What [`submit`] does next.
#[derive(Debug)]
enum Step {
    /// Finished.
    Done {
        status: SubmitStatus,
        height: u64,
        log: String,
    },
    /// Failed for good.
    Fail(ClientError),
    /// Look the hash up, then decide.
    LookUp(Cause),
    /// Look the hash up until it is committed or the wait ends.
    WaitCommit,
    /// Send the same bytes again; `error` when no attempt is left.
    Resend { reason: String, error: ClientError },
    /// Read the nonce again and sign again; `error` when no attempt is left.
    /// `copy`: the bytes are an identical copy of another transaction (same
    /// content and nonce), which is that one's, not this submission's.
    Resign {
        reason: String,
        error: ClientError,
        copy: bool,
    },
}

/// What the decisions know of the transaction.
#[derive(Clone, Copy, Debug)]
struct Ctx<'a> {
    hash: &'a str,
    url: &'a str,
    nonce: u64,
    /// The caller pinned the nonce: never re-signed.
    pinned: bool,
    /// These bytes are this submission's: pinned, or sent by it before.
    ours: bool,
    wait: Wait,
}

impl Ctx<'_> {
    fn rejected(&self, code: Code, log: String, height: u64) -> ClientError {
        ClientError::TxRejected {
            code,
            log,
            hash: self.hash.to_owned(),
            height,
        }
    }

    fn unknown(&self, detail: String) -> ClientError {
        ClientError::TxOutcomeUnknown {
            hash: self.hash.to_owned(),
            nonce: self.nonce,
            detail,
        }
    }
}

/// The next step after a broadcast answered `sent`.
fn decide(sent: Sent, ctx: &Ctx<'_>) -> Step {
    match sent {
        Sent::Accepted => Step::Done {
            status: SubmitStatus::Submitted,
            height: 0,
            log: String::new(),
        },
        // Executed because of this send: these bytes are this submission's.
        Sent::Included(included) => decide_included(included, &Ctx { ours: true, ..*ctx }),
        Sent::NotYetIncluded => match ctx.wait {
            Wait::Commit => Step::WaitCommit,
            Wait::CheckTx => Step::Done {
                status: SubmitStatus::Submitted,
                height: 0,
                log: String::new(),
            },
        },
        Sent::AlreadyKnown => Step::LookUp(Cause::InCache),
        Sent::Refused { code: raw, log } => {
            let Some(code) = Code::from_u32(raw) else {
                return Step::Fail(ClientError::UnknownCode {
                    what: format!("transaction {}", ctx.hash),
                    code: raw,
                    log,
                });
            };
            match code {
                // Perhaps these very bytes used it: a pinned nonce, or a
                // resend after a lost answer.
                Code::NonceReplayed if ctx.pinned || ctx.ours => Step::LookUp(Cause::Replayed),
                Code::NonceReplayed | Code::NonceGap if !ctx.pinned => Step::Resign {
                    reason: format!("nonce {} is stale: {log}", ctx.nonce),
                    error: ctx.rejected(code, log, 0),
                    copy: false,
                },
                // Earlier transactions of the account fill the mempool:
                // after a block there is room.
                Code::TooManyPending => Step::Resend {
                    reason: log.clone(),
                    error: ctx.rejected(code, log, 0),
                },
                code => Step::Fail(ctx.rejected(code, log, 0)),
            }
        }
        Sent::Busy(detail) => Step::Resend {
            reason: detail.clone(),
            error: ClientError::Node {
                call: "broadcast",
                url: ctx.url.to_owned(),
                detail,
            },
        },
        Sent::Final(error) => Step::Fail(error),
        Sent::NoAnswer(error) => Step::Resend {
            reason: error.to_string(),
            error: ctx.unknown(format!("no answer from the node: {error}")),
        },
    }
}

/// The next step after the block's verdict.
fn decide_included(included: Included, ctx: &Ctx<'_>) -> Step {
    let Included { height, code, log } = included;
    match Code::from_u32(code) {
        Some(Code::Ok) => Step::Done {
            status: SubmitStatus::Committed,
            height,
            log,
        },
        // Refused by its ante step in the block: it changed nothing, and
        // these bytes can never land.
        c @ Some(Code::NonceReplayed | Code::NonceGap) if !ctx.pinned => Step::Resign {
            reason: format!("nonce {} was stale in block {height}: {log}", ctx.nonce),
            error: ctx.rejected(c.unwrap_or(Code::NonceReplayed), log, height),
            copy: !ctx.ours,
        },
        Some(c) => Step::Fail(ctx.rejected(c, log, height)),
        None => Step::Fail(ClientError::UnknownCode {
            what: format!("transaction {} in block {height}", ctx.hash),
            code,
            log,
        }),
    }
}

/// The next step after looking the hash up for `cause`.
fn decide_lookup(
    found: Result<Option<Included>, ClientError>,
    cause: Cause,
    ctx: &Ctx<'_>,
) -> Step {
    match (cause, found) {
        // A committed copy of bytes that are not this submission's is an
        // earlier transaction with the same content and nonce: the nonce
        // was stale, and this one is still to be sent.
        (Cause::InCache, Ok(Some(included)))
            if !ctx.ours && Code::from_u32(included.code) == Some(Code::Ok) =>
        {
            Step::Resign {
                reason: format!(
                    "an identical earlier transaction (same content, nonce {}) is already committed in block {}: the nonce was stale",
                    ctx.nonce, included.height
                ),
                error: ctx.rejected(
                    Code::NonceReplayed,
                    format!(
                        "nonce {} is used by an identical earlier transaction (committed in block {}), not by this one, which was not sent",
                        ctx.nonce, included.height
                    ),
                    0,
                ),
                copy: true,
            }
        }
        (_, Ok(Some(included))) => decide_included(included, ctx),
        // This submission's bytes, in the mempool: they will land.
        (Cause::InCache, Ok(None)) if ctx.ours => match ctx.wait {
            Wait::Commit => Step::WaitCommit,
            Wait::CheckTx => Step::Done {
                status: SubmitStatus::Submitted,
                height: 0,
                log: String::new(),
            },
        },
        (Cause::InCache, Err(error)) if ctx.ours => Step::Fail(ctx.unknown(format!(
            "the node already holds it, and could not say whether it is committed: {error}"
        ))),
        // Someone's identical bytes wait in the node: the nonce read did
        // not count them. These bytes were never this submission's.
        (Cause::InCache, _) => Step::Resign {
            reason: format!(
                "an identical earlier transaction (same content, nonce {}) waits in the node's mempool: the nonce was stale",
                ctx.nonce
            ),
            error: ctx.rejected(
                Code::NonceReplayed,
                format!(
                    "nonce {} is taken by an identical earlier transaction waiting in the mempool, not by this one, which was not sent",
                    ctx.nonce
                ),
                0,
            ),
            copy: true,
        },
        (Cause::Replayed, Ok(None)) if ctx.pinned => Step::Fail(ctx.rejected(
            Code::NonceReplayed,
            format!(
                "nonce {} was already used by another transaction than {}",
                ctx.nonce, ctx.hash
            ),
            0,
        )),
        // Used by another transaction: these bytes can never land.
        (Cause::Replayed, Ok(None)) => Step::Resign {
            reason: format!("nonce {} was used by another transaction", ctx.nonce),
            error: ctx.rejected(
                Code::NonceReplayed,
                format!("nonce {} was already used", ctx.nonce),
                0,
            ),
            copy: false,
        },
        (Cause::Replayed, Err(error)) => Step::Fail(ctx.unknown(format!(
            "its nonce is used, and the node could not say whether by this transaction: {error}"
        ))),
    }
}

/// The nonce to sign with, as the node counts it.
async fn fresh_nonce<N: TxNode>(
    node: &N,
    account: &AccountId,
    observe: &(dyn Fn(&SubmitEvent) + Send + Sync),
    warned: &mut bool,
) -> Result<u64, ClientError> {
    let next = node.pending_nonce(account).await?;
    if !next.counts_mempool && !*warned {
        *warned = true;
        observe(&SubmitEvent::CommittedNonceOnly {
            url: node.node_url().to_owned(),
        });
    }
    Ok(next.nonce)
}

/// Looks `hash` up; when CheckTx said its nonce is used, again a few times
/// while it is not found, since a node indexes a block's transactions a
/// moment after committing it.
async fn look_up<N: TxNode>(
    node: &N,
    hash: &str,
    cause: Cause,
    poll: Duration,
) -> Result<Option<Included>, ClientError> {
    let tries = if cause == Cause::Replayed { 4 } else { 1 };
    for i in 0..tries {
        match node.lookup(hash).await {
            Ok(None) if i + 1 < tries => tokio::time::sleep(poll).await,
            other => return other,
        }
    }
    Ok(None)
}

/// Looks `hash` up every `poll` until it is committed or `wait` passes.
async fn wait_commit<N: TxNode>(
    node: &N,
    hash: &str,
    wait: Duration,
    poll: Duration,
) -> Result<Option<Included>, ClientError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let found = node.lookup(hash).await;
        if !matches!(found, Ok(None)) || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Signs with `sign` (given a nonce) for `account`, sends it to `node`,
/// and handles stale nonces, cache hits and slow blocks as the module
/// documentation says; every hash goes to `observe` before it is sent.
///
/// # Errors
/// [`ClientError::TxRejected`] when the chain refuses it (its hash and, if
/// refused in a block, the height), [`ClientError::TxOutcomeUnknown`] when
/// it may have reached a mempool but its fate is not known, the failure to
/// read the nonce, and [`ClientError::TxTooLarge`].
pub async fn submit<N: TxNode>(
    node: &N,
    account: &AccountId,
    sign: impl Fn(u64) -> Vec<u8>,
    options: &SubmitOptions,
    observe: &(dyn Fn(&SubmitEvent) + Send + Sync),
) -> Result<Submitted, ClientError> {
    let pinned = options.nonce.is_some();
    let mut warned = false;
    let mut backoff = options.backoff.clone();
    let mut nonce = match options.nonce {
        Some(n) => n,
        None => fresh_nonce(node, account, observe, &mut warned).await?,
    };
    let mut tx = sign(nonce);
    let mut hash = tx_hash(&tx);
    // Times these bytes were sent by this submission.
    let mut sends: u32 = 0;
    let mut superseded: Vec<String> = Vec::new();
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        observe(&SubmitEvent::Sending {
            hash: hash.clone(),
            nonce,
            attempt,
            url: node.node_url().to_owned(),
        });
        let sent = node.send(tx.clone(), options.wait).await;
        let ctx = Ctx {
            hash: &hash,
            url: node.node_url(),
            nonce,
            pinned,
            ours: pinned || sends > 0,
            wait: options.wait,
        };
        sends = sends.saturating_add(1);
        let mut step = decide(sent, &ctx);
        if let Step::LookUp(cause) = step {
            let found = look_up(node, &hash, cause, options.poll).await;
            // Sent now, so these bytes are this submission's from here on
            // only if they were before (a cache hit on the first send is
            // someone else's copy).
            step = decide_lookup(found, cause, &ctx);
        }
        if let Step::WaitCommit = step {
            observe(&SubmitEvent::Waiting { hash: hash.clone() });
            step = match wait_commit(node, &hash, options.commit_wait, options.poll).await {
                Ok(Some(included)) => decide_included(included, &Ctx { ours: true, ..ctx }),
                // Accepted, not yet seen in a block: it may still land.
                Ok(None) | Err(_) => Step::Done {
                    status: SubmitStatus::Submitted,
                    height: 0,
                    log: String::new(),
                },
            };
        }
        match step {
            Step::Done {
                status,
                height,
                log,
            } => {
                return Ok(Submitted {
                    hash,
                    nonce,
                    status,
                    height,
                    code: Code::Ok.value(),
                    log,
                    superseded,
                    attempts: attempt,
                })
            }
            Step::Fail(error) => return Err(error),
            // Resolved above; a lookup is never decided into another.
            Step::LookUp(_) | Step::WaitCommit => {
                return Err(ClientError::TxOutcomeUnknown {
                    hash,
                    nonce,
                    detail: "it was not looked up".to_owned(),
                })
            }
            Step::Resend { reason, error } => {
                if attempt >= options.attempts_max {
                    return Err(error);
                }
                let delay = backoff.next_delay();
                observe(&SubmitEvent::Retrying {
                    hash: hash.clone(),
                    reason,
                    delay,
                });
                tokio::time::sleep(delay).await;
            }
            Step::Resign {
                reason,
                error,
                copy,
            } => {
                if attempt >= options.attempts_max {
                    return Err(error);
                }
                observe(&SubmitEvent::Superseded {
                    hash: hash.clone(),
                    nonce,
                    reason,
                    copy,
                });
                tokio::time::sleep(backoff.next_delay()).await;
                nonce = fresh_nonce(node, account, observe, &mut warned).await?;
                tx = sign(nonce);
                let fresh = tx_hash(&tx);
                if fresh != hash {
                    let old = std::mem::replace(&mut hash, fresh);
                    // A copy's hash names the other transaction.
                    if !copy {
                        superseded.push(old);
                    }
                    sends = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryAnswer;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    /// A node that answers from a script.
    struct Scripted {
        /// Answers to broadcasts, in order; `NoAnswer` when it runs out.
        sends: Mutex<VecDeque<Sent>>,
        /// What `/nonce` answers, in order (the last one repeats); `None`
        /// for a node that does not serve it.
        nonces: Mutex<VecDeque<(u64, u64)>>,
        serves_nonce: bool,
        /// The committed nonce `/account` answers.
        committed: u64,
        /// Committed transactions by hash.
        committed_txs: Mutex<HashMap<String, Included>>,
        /// Every transaction sent, in order.
        log: Mutex<Vec<Vec<u8>>>,
    }

    impl Scripted {
        fn new(sends: Vec<Sent>, nonces: Vec<(u64, u64)>) -> Self {
            Self {
                sends: Mutex::new(sends.into()),
                nonces: Mutex::new(nonces.into()),
                serves_nonce: true,
                committed: 0,
                committed_txs: Mutex::default(),
                log: Mutex::default(),
            }
        }

        fn commit(&self, tx: &[u8], included: Included) {
            self.committed_txs
                .lock()
                .unwrap()
                .insert(tx_hash(tx), included);
        }

        fn sent(&self) -> Vec<Vec<u8>> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Query for Scripted {
        async fn query_answer(&self, path: &str) -> Result<QueryAnswer, ClientError> {
            let id = "ab".repeat(32);
            if path == format!("/nonce/{id}") {
                if !self.serves_nonce {
                    return Ok(QueryAnswer {
                        code: Code::UnknownQuery.value(),
                        log: "unknown query path".to_owned(),
                        ..QueryAnswer::default()
                    });
                }
                let mut nonces = self.nonces.lock().unwrap();
                let (nonce, pending) = if nonces.len() > 1 {
                    nonces.pop_front().unwrap()
                } else {
                    *nonces.front().unwrap()
                };
                let value =
                    format!(r#"{{"address":"{id}","nonce":{nonce},"pending_nonce":{pending}}}"#);
                return Ok(QueryAnswer {
                    value: value.into_bytes(),
                    ..QueryAnswer::default()
                });
            }
            assert_eq!(path, format!("/account/{id}"));
            let value = format!(
                r#"{{"address":"{id}","balance":10,"nonce":{}}}"#,
                self.committed
            );
            Ok(QueryAnswer {
                value: value.into_bytes(),
                ..QueryAnswer::default()
            })
        }
    }

    impl TxNode for Scripted {
        fn node_url(&self) -> &str {
            "scripted"
        }

        async fn send(&self, tx: Vec<u8>, _wait: Wait) -> Sent {
            self.log.lock().unwrap().push(tx);
            self.sends
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Sent::NoAnswer(ClientError::Timeout {
                    call: "broadcast",
                    timeout_ms: 1,
                }))
        }

        async fn lookup(&self, hash: &str) -> Result<Option<Included>, ClientError> {
            Ok(self.committed_txs.lock().unwrap().get(hash).cloned())
        }
    }

    const ACCOUNT: AccountId = AccountId([0xab; 32]);

    /// A transaction's bytes: its nonce and a fixed message.
    fn sign(nonce: u64) -> Vec<u8> {
        format!("transfer 5 with nonce {nonce}").into_bytes()
    }

    fn nonce_of(tx: &[u8]) -> u64 {
        String::from_utf8_lossy(tx)
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn options(nonce: Option<u64>) -> SubmitOptions {
        SubmitOptions {
            nonce,
            backoff: Backoff::seeded(1, 2, 0),
            commit_wait: Duration::from_millis(20),
            poll: Duration::from_millis(1),
            ..SubmitOptions::default()
        }
    }

    fn ok_in(height: u64) -> Sent {
        Sent::Included(Included {
            height,
            code: 0,
            log: String::new(),
        })
    }

    fn refused(code: Code) -> Sent {
        Sent::Refused {
            code: code.value(),
            log: format!("{} refused", code.name()),
        }
    }

    async fn run(
        node: &Scripted,
        options: &SubmitOptions,
    ) -> (Result<Submitted, ClientError>, Vec<SubmitEvent>) {
        let events = Mutex::new(Vec::new());
        let observe = |e: &SubmitEvent| events.lock().unwrap().push(e.clone());
        let result = submit(node, &ACCOUNT, sign, options, &observe).await;
        (result, events.into_inner().unwrap())
    }

    #[tokio::test]
    async fn the_pending_nonce_is_signed_and_the_hash_announced_before_sending() {
        let node = Scripted::new(vec![ok_in(7)], vec![(3, 5)]);
        let (result, events) = run(&node, &options(None)).await;
        let done = result.unwrap();
        assert_eq!((done.nonce, done.height, done.attempts), (5, 7, 1));
        assert!(done.is_committed());
        assert_eq!(done.hash, tx_hash(&sign(5)));
        assert_eq!(done.hash.len(), 64);
        assert_eq!(done.hash, done.hash.to_uppercase());
        assert_eq!(
            events,
            vec![SubmitEvent::Sending {
                hash: done.hash.clone(),
                nonce: 5,
                attempt: 1,
                url: "scripted".to_owned()
            }]
        );
    }

    #[tokio::test]
    async fn a_cache_hit_on_a_committed_copy_is_a_stale_nonce_then_a_fresh_one_is_signed() {
        // An earlier transfer of the same content took nonce 3; the node
        // answering the nonce was a block behind.
        let node = Scripted::new(vec![Sent::AlreadyKnown, ok_in(9)], vec![(3, 3), (4, 4)]);
        node.commit(
            &sign(3),
            Included {
                height: 8,
                code: 0,
                log: String::new(),
            },
        );
        let (result, events) = run(&node, &options(None)).await;
        let done = result.unwrap();
        assert_eq!((done.nonce, done.height, done.attempts), (4, 9, 2));
        // Nonce 3's hash is the earlier transfer's, not this one's.
        assert!(done.superseded.is_empty());
        assert_eq!(node.sent(), vec![sign(3), sign(4)]);
        assert!(events.iter().any(|e| matches!(
            e,
            SubmitEvent::Superseded {
                nonce: 3,
                copy: true,
                ..
            }
        )));
    }

    #[tokio::test]
    async fn a_cache_hit_on_a_pinned_nonce_that_is_committed_is_success() {
        // The same transaction sent again (the caller pinned its nonce).
        let node = Scripted::new(vec![Sent::AlreadyKnown], vec![(9, 9)]);
        node.commit(
            &sign(3),
            Included {
                height: 8,
                code: 0,
                log: String::new(),
            },
        );
        let (result, _) = run(&node, &options(Some(3))).await;
        let done = result.unwrap();
        assert_eq!((done.nonce, done.height), (3, 8));
        assert_eq!(done.status, SubmitStatus::Committed);
        assert!(done.superseded.is_empty());
        assert_eq!(node.sent(), vec![sign(3)]);
    }

    #[tokio::test]
    async fn a_lost_answer_is_sent_again_and_the_cache_hit_then_is_this_transaction() {
        let node = Scripted::new(
            vec![
                Sent::NoAnswer(ClientError::Timeout {
                    call: "broadcast_tx_commit",
                    timeout_ms: 1,
                }),
                Sent::AlreadyKnown,
            ],
            vec![(0, 0)],
        );
        node.commit(
            &sign(0),
            Included {
                height: 2,
                code: 0,
                log: String::new(),
            },
        );
        let (result, events) = run(&node, &options(None)).await;
        let done = result.unwrap();
        assert_eq!((done.nonce, done.height, done.attempts), (0, 2, 2));
        assert!(done.superseded.is_empty(), "never re-signed");
        assert_eq!(node.sent(), vec![sign(0), sign(0)]);
        assert!(matches!(events[1], SubmitEvent::Retrying { .. }));
    }

    #[tokio::test]
    async fn our_copy_in_the_mempool_is_awaited_then_reported_as_submitted() {
        let lost = || {
            Sent::NoAnswer(ClientError::Timeout {
                call: "broadcast_tx_commit",
                timeout_ms: 1,
            })
        };
        let node = Scripted::new(vec![lost(), Sent::AlreadyKnown], vec![(0, 0)]);
        let (result, events) = run(&node, &options(None)).await;
        let done = result.unwrap();
        assert_eq!(done.status, SubmitStatus::Submitted);
        assert_eq!(done.height, 0);
        assert!(events
            .iter()
            .any(|e| matches!(e, SubmitEvent::Waiting { .. })));
        // CometBFT's own wait ended first: the same.
        let node = Scripted::new(vec![Sent::NotYetIncluded], vec![(0, 0)]);
        let (result, _) = run(&node, &options(None)).await;
        assert_eq!(result.unwrap().status, SubmitStatus::Submitted);
        assert_eq!(node.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_slow_block_that_lands_during_the_wait_is_committed() {
        let node = Scripted::new(vec![Sent::NotYetIncluded], vec![(0, 0)]);
        node.commit(
            &sign(0),
            Included {
                height: 4,
                code: 0,
                log: String::new(),
            },
        );
        let (result, _) = run(&node, &options(None)).await;
        let done = result.unwrap();
        assert_eq!((done.status, done.height), (SubmitStatus::Committed, 4));
    }

    #[tokio::test]
    async fn stale_nonces_too_low_or_too_high_are_read_again_and_re_signed() {
        for code in [Code::NonceReplayed, Code::NonceGap] {
            let node = Scripted::new(vec![refused(code), ok_in(3)], vec![(1, 2), (1, 1)]);
            let (result, _) = run(&node, &options(None)).await;
            let done = result.unwrap();
            assert_eq!((done.nonce, done.attempts), (1, 2), "{code:?}");
            assert_eq!(done.superseded, vec![tx_hash(&sign(2))]);
        }
        // Refused in its block by the ante step (two nodes took the same
        // nonce): it changed nothing, and a fresh nonce is signed.
        let in_block = Sent::Included(Included {
            height: 5,
            code: Code::NonceReplayed.value(),
            log: "used".to_owned(),
        });
        let node = Scripted::new(vec![in_block, ok_in(6)], vec![(0, 0), (1, 1)]);
        let done = run(&node, &options(None)).await.0.unwrap();
        assert_eq!((done.nonce, done.height), (1, 6));
    }

    #[tokio::test]
    async fn a_pinned_nonce_is_never_re_signed() {
        let node = Scripted::new(vec![refused(Code::NonceGap)], vec![(0, 0)]);
        let error = run(&node, &options(Some(5))).await.0.unwrap_err();
        assert_eq!(error.code(), Some(Code::NonceGap));
        assert_eq!(error.tx_hash(), Some(tx_hash(&sign(5)).as_str()));
        // Used by another transaction: refused, with the hash.
        let node = Scripted::new(vec![refused(Code::NonceReplayed)], vec![(0, 0)]);
        let error = run(&node, &options(Some(5))).await.0.unwrap_err();
        assert_eq!(error.code(), Some(Code::NonceReplayed));
        assert_eq!(node.sent(), vec![sign(5)]);
    }

    #[tokio::test]
    async fn a_node_without_the_pending_path_gives_the_committed_nonce() {
        let mut node = Scripted::new(vec![ok_in(2)], vec![(0, 0)]);
        node.serves_nonce = false;
        node.committed = 4;
        let (result, events) = run(&node, &options(None)).await;
        assert_eq!(result.unwrap().nonce, 4);
        assert!(matches!(events[0], SubmitEvent::CommittedNonceOnly { .. }));
    }

    #[tokio::test]
    async fn refusals_fail_at_once_with_the_hash_and_the_block() {
        let node = Scripted::new(vec![refused(Code::InsufficientFunds)], vec![(0, 0)]);
        let error = run(&node, &options(None)).await.0.unwrap_err();
        assert_eq!(error.code(), Some(Code::InsufficientFunds));
        assert_eq!(node.sent().len(), 1);
        let failed = Sent::Included(Included {
            height: 12,
            code: Code::UnknownJob.value(),
            log: "no job".to_owned(),
        });
        let node = Scripted::new(vec![failed], vec![(0, 0)]);
        let error = run(&node, &options(None)).await.0.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::TxRejected {
                    code: Code::UnknownJob,
                    height: 12,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_a_lost_transaction_is_named_by_its_hash() {
        // No answer, ever.
        let node = Scripted::new(Vec::new(), vec![(0, 0)]);
        let error = run(&node, &options(None)).await.0.unwrap_err();
        assert!(
            matches!(error, ClientError::TxOutcomeUnknown { .. }),
            "{error}"
        );
        assert_eq!(error.tx_hash(), Some(tx_hash(&sign(0)).as_str()));
        assert_eq!(node.sent().len() as u32, SUBMIT_ATTEMPTS_MAX);
        assert!(
            node.sent().iter().all(|tx| nonce_of(tx) == 0),
            "never re-signed"
        );
        // A nonce that stays stale: refused after the last attempt.
        let node = Scripted::new(
            (0..10).map(|_| refused(Code::NonceReplayed)).collect(),
            vec![(0, 0)],
        );
        let error = run(&node, &options(None)).await.0.unwrap_err();
        assert_eq!(error.code(), Some(Code::NonceReplayed));
        assert_eq!(node.sent().len() as u32, SUBMIT_ATTEMPTS_MAX);
    }

    #[tokio::test]
    async fn a_full_mempool_or_too_many_pending_waits_and_sends_the_same_bytes() {
        let node = Scripted::new(
            vec![
                Sent::Busy("mempool is full".to_owned()),
                refused(Code::TooManyPending),
                ok_in(3),
            ],
            vec![(0, 0)],
        );
        let done = run(&node, &options(None)).await.0.unwrap();
        assert_eq!(done.attempts, 3);
        assert_eq!(node.sent(), vec![sign(0), sign(0), sign(0)]);
    }

    #[test]
    fn the_hash_is_cometbfts_upper_case_sha256() {
        assert_eq!(
            tx_hash(b""),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        );
    }
}
