//! Rejection codes: stable numbers in codespace `compute`, and the typed
//! errors that map to them.
//!
//! A number, once released, never changes meaning; new codes get new
//! numbers. `codes_are_pinned` guards the table.

use compute_proto::{AccountId, JobId, ModuleId, TxError};

/// The ABCI codespace of every rejection.
pub const CODESPACE: &str = "compute";

/// A stable ABCI result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    /// Success.
    Ok = 0,
    /// The transaction is larger than `max_tx_bytes`.
    TxTooLarge = 1,
    /// The bytes are not a `Tx` with a decodable `TxBody` and one message.
    TxMalformed = 2,
    /// The signer is not a valid ed25519 public key.
    InvalidSigner = 3,
    /// The signature does not verify.
    InvalidSignature = 4,
    /// The transaction names another chain.
    WrongChainId = 5,
    /// The nonce was already used.
    NonceReplayed = 6,
    /// The nonce skips ahead of the account's sequence.
    NonceGap = 7,
    /// The account cannot pay.
    InsufficientFunds = 8,
    /// The fee is below the chain's minimum.
    FeeTooLow = 9,
    /// A message field is out of range or inconsistent.
    InvalidMessage = 10,
    /// The account has too many transactions waiting in the mempool.
    TooManyPending = 11,
    /// The message type is declared but not yet executed by this version.
    NotYetSupported = 12,
    /// An amount would overflow.
    Overflow = 13,
    /// The chain has not received its genesis yet.
    NotInitialised = 14,
    /// A module failed validation.
    InvalidModule = 15,
    /// The module is already stored.
    ModuleExists = 16,
    /// The key is already a registered worker.
    WorkerExists = 17,
    /// The key is not a registered worker.
    UnknownWorker = 18,
    /// The worker still holds tasks.
    WorkerBusy = 19,
    /// The worker pool is full.
    TooManyWorkers = 20,
    /// The stake is below the chain's minimum.
    StakeTooLow = 21,
    /// No module with that id is stored.
    UnknownModule = 22,
    /// No job with that id exists.
    UnknownJob = 23,
    /// Only the job's requester may do this.
    NotJobOwner = 24,
    /// The job is no longer open.
    JobNotOpen = 25,
    /// The chain holds `max_open_jobs` open jobs.
    TooManyOpenJobs = 26,
    /// The job has no task with that index.
    UnknownTask = 27,
    /// The signer holds no replica of the task.
    NotAssigned = 28,
    /// The task or the replica is not in the phase this message needs.
    WrongPhase = 29,
    /// The reveal does not open the replica's commitment.
    CommitmentMismatch = 30,
    /// The envelope or the body is not the canonical encoding of what it
    /// decodes to (unknown, repeated or default-valued fields, long varints,
    /// fields out of order).
    TxNotCanonical = 31,
    /// The block's modules already cost `max_compile_units_per_block` to
    /// compile.
    ModuleBudgetExceeded = 32,
    /// The query path is not known.
    UnknownQuery = 100,
    /// A query argument is malformed.
    BadQuery = 101,
    /// The queried record does not exist.
    NotFound = 102,
    /// The queried height is not available.
    HeightUnavailable = 103,
}

impl Code {
    /// The number sent in ABCI responses.
    pub const fn value(self) -> u32 {
        self as u32
    }
}

/// Why a transaction is rejected; each variant maps to one [`Code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes failed decoding or the signature check.
    #[error("{0}")]
    Tx(#[from] TxError),
    /// `TxBody.chain_id` is not this chain's.
    #[error("transaction is for chain '{got}' but this chain is '{expected}': sign it with the right chain id")]
    WrongChainId {
        /// This chain.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// The nonce is below the account's sequence.
    #[error("nonce {got} of {account} was already used: the next nonce is {expected} (query /account/{account})")]
    NonceReplayed {
        /// The signer.
        account: AccountId,
        /// The sequence.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce is above the account's sequence.
    #[error("nonce {got} of {account} skips ahead: the next nonce is {expected}; send the missing transactions first")]
    NonceGap {
        /// The signer.
        account: AccountId,
        /// The sequence.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The account's balance does not cover what the transaction spends.
    #[error("account {account} has {available} credits but this transaction needs {needed}")]
    InsufficientFunds {
        /// The payer.
        account: AccountId,
        /// What it needs.
        needed: u64,
        /// What it has.
        available: u64,
    },
    /// The fee is below `min_fee`.
    #[error("fee {got} is below the chain's minimum fee of {min}")]
    FeeTooLow {
        /// The parameter.
        min: u64,
        /// The transaction's.
        got: u64,
    },
    /// A message field is wrong.
    #[error("invalid {msg}: {reason}")]
    InvalidMessage {
        /// The message type.
        msg: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Too many of the account's transactions wait in the mempool.
    #[error(
        "account {account} already has {max} transactions waiting; wait for a block and retry"
    )]
    TooManyPending {
        /// The signer.
        account: AccountId,
        /// `max_pending_txs_per_account`.
        max: u32,
    },
    /// The message is declared but not executed by this version.
    #[error("{0} is not supported yet by this chain version")]
    NotYetSupported(&'static str),
    /// An amount would overflow a `u64`.
    #[error("{0} would overflow")]
    Overflow(&'static str),
    /// No `InitChain` has been received.
    #[error("the chain has no genesis yet: wait until the node has started")]
    NotInitialised,
    /// The module is not an admissible job.
    #[error("module refused: {0}")]
    InvalidModule(String),
    /// The module is already stored.
    #[error("module {0} is already stored: post jobs against it by id")]
    ModuleExists(ModuleId),
    /// The key is already a worker.
    #[error("{0} is already a registered worker: unregister first to change capacity or stake")]
    WorkerExists(AccountId),
    /// The key is not a worker.
    #[error("{0} is not a registered worker: send RegisterWorker first")]
    UnknownWorker(AccountId),
    /// The worker still holds tasks.
    #[error("worker {worker} still holds {active} tasks: finish them before unregistering")]
    WorkerBusy {
        /// The worker.
        worker: AccountId,
        /// Its unsettled tasks.
        active: u32,
    },
    /// The pool holds `max_workers` already.
    #[error("the worker pool is full ({max} workers, the chain's max_workers)")]
    TooManyWorkers {
        /// `max_workers`.
        max: u32,
    },
    /// No module with that id is stored.
    #[error("no module {0} is stored: send StoreModule with its bytes first")]
    UnknownModule(ModuleId),
    /// No job with that id exists.
    #[error("no job {0} exists")]
    UnknownJob(JobId),
    /// The signer is not the job's requester.
    #[error("only the requester {requester} may cancel job {job}")]
    NotJobOwner {
        /// The job.
        job: JobId,
        /// Its requester.
        requester: AccountId,
    },
    /// The job is completed, failed or cancelled.
    #[error("job {job} is {status}, no longer open")]
    JobNotOpen {
        /// The job.
        job: JobId,
        /// Its status.
        status: &'static str,
    },
    /// `max_open_jobs` jobs are open.
    #[error("the chain already holds {max} open jobs (max_open_jobs); retry later")]
    TooManyOpenJobs {
        /// `max_open_jobs`.
        max: u32,
    },
    /// The stake is below `min_worker_stake`.
    #[error("stake {got} is below the chain's minimum worker stake of {min}")]
    StakeTooLow {
        /// `min_worker_stake`.
        min: u64,
        /// The message's.
        got: u64,
    },
    /// The job has fewer tasks.
    #[error("job {job} has no task {task} (it has {count})")]
    UnknownTask {
        /// The job.
        job: JobId,
        /// The index asked for.
        task: u32,
        /// Tasks the job has.
        count: u32,
    },
    /// The signer is not one of the task's workers.
    #[error("{worker} is not assigned to task {task} of job {job}: only the workers the chain drew may commit or reveal (see /worker/{worker}/assignments)")]
    NotAssigned {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
        /// The signer.
        worker: AccountId,
    },
    /// The message comes in the wrong phase.
    #[error("task {task} of job {job} is {phase}: {hint}")]
    WrongPhase {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
        /// Where the task or replica is.
        phase: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// The revealed values do not hash to the commitment.
    #[error("the reveal for task {task} of job {job} does not match the worker's commitment: reveal the result hash, fuel and salt that were committed")]
    CommitmentMismatch {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
    },
    /// Compiling this module would pass the block's compile budget.
    #[error("this block's modules already cost {used} compile units and this one costs {units}, past max_compile_units_per_block {max}: the transaction is still valid, send it again for a later block")]
    ModuleBudgetExceeded {
        /// Compile units of the block's modules so far.
        used: u64,
        /// This module's compile units.
        units: u64,
        /// The budget.
        max: u64,
    },
}

impl Rejection {
    /// The stable code of this rejection.
    pub fn code(&self) -> Code {
        match self {
            Rejection::Tx(e) => match e {
                TxError::Oversized { .. } => Code::TxTooLarge,
                TxError::Malformed(_)
                | TxError::BodyMalformed(_)
                | TxError::MissingMessage
                | TxError::SignerLength(_)
                | TxError::SignatureLength(_) => Code::TxMalformed,
                TxError::SignerInvalid(_) => Code::InvalidSigner,
                TxError::NonCanonical { .. } => Code::TxNotCanonical,
                TxError::BadSignature(_) => Code::InvalidSignature,
            },
            Rejection::WrongChainId { .. } => Code::WrongChainId,
            Rejection::NonceReplayed { .. } => Code::NonceReplayed,
            Rejection::NonceGap { .. } => Code::NonceGap,
            Rejection::InsufficientFunds { .. } => Code::InsufficientFunds,
            Rejection::FeeTooLow { .. } => Code::FeeTooLow,
            Rejection::InvalidMessage { .. } => Code::InvalidMessage,
            Rejection::TooManyPending { .. } => Code::TooManyPending,
            Rejection::NotYetSupported(_) => Code::NotYetSupported,
            Rejection::Overflow(_) => Code::Overflow,
            Rejection::NotInitialised => Code::NotInitialised,
            Rejection::InvalidModule(_) => Code::InvalidModule,
            Rejection::ModuleExists(_) => Code::ModuleExists,
            Rejection::WorkerExists(_) => Code::WorkerExists,
            Rejection::UnknownWorker(_) => Code::UnknownWorker,
            Rejection::WorkerBusy { .. } => Code::WorkerBusy,
            Rejection::TooManyWorkers { .. } => Code::TooManyWorkers,
            Rejection::StakeTooLow { .. } => Code::StakeTooLow,
            Rejection::UnknownModule(_) => Code::UnknownModule,
            Rejection::UnknownJob(_) => Code::UnknownJob,
            Rejection::NotJobOwner { .. } => Code::NotJobOwner,
            Rejection::JobNotOpen { .. } => Code::JobNotOpen,
            Rejection::TooManyOpenJobs { .. } => Code::TooManyOpenJobs,
            Rejection::UnknownTask { .. } => Code::UnknownTask,
            Rejection::NotAssigned { .. } => Code::NotAssigned,
            Rejection::WrongPhase { .. } => Code::WrongPhase,
            Rejection::CommitmentMismatch { .. } => Code::CommitmentMismatch,
            Rejection::ModuleBudgetExceeded { .. } => Code::ModuleBudgetExceeded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Released numbers never change; a new code gets a new number.
    #[test]
    fn codes_are_pinned() {
        let table = [
            (Code::Ok, 0),
            (Code::TxTooLarge, 1),
            (Code::TxMalformed, 2),
            (Code::InvalidSigner, 3),
            (Code::InvalidSignature, 4),
            (Code::WrongChainId, 5),
            (Code::NonceReplayed, 6),
            (Code::NonceGap, 7),
            (Code::InsufficientFunds, 8),
            (Code::FeeTooLow, 9),
            (Code::InvalidMessage, 10),
            (Code::TooManyPending, 11),
            (Code::NotYetSupported, 12),
            (Code::Overflow, 13),
            (Code::NotInitialised, 14),
            (Code::InvalidModule, 15),
            (Code::ModuleExists, 16),
            (Code::WorkerExists, 17),
            (Code::UnknownWorker, 18),
            (Code::WorkerBusy, 19),
            (Code::TooManyWorkers, 20),
            (Code::StakeTooLow, 21),
            (Code::UnknownModule, 22),
            (Code::UnknownJob, 23),
            (Code::NotJobOwner, 24),
            (Code::JobNotOpen, 25),
            (Code::TooManyOpenJobs, 26),
            (Code::UnknownTask, 27),
            (Code::NotAssigned, 28),
            (Code::WrongPhase, 29),
            (Code::CommitmentMismatch, 30),
            (Code::TxNotCanonical, 31),
            (Code::ModuleBudgetExceeded, 32),
            (Code::UnknownQuery, 100),
            (Code::BadQuery, 101),
            (Code::NotFound, 102),
            (Code::HeightUnavailable, 103),
        ];
        for (code, number) in table {
            // The exhaustive match makes a new variant fail to compile here
            // until it is added to the table.
            let listed = match code {
                Code::Ok
                | Code::TxTooLarge
                | Code::TxMalformed
                | Code::InvalidSigner
                | Code::InvalidSignature
                | Code::WrongChainId
                | Code::NonceReplayed
                | Code::NonceGap
                | Code::InsufficientFunds
                | Code::FeeTooLow
                | Code::InvalidMessage
                | Code::TooManyPending
                | Code::NotYetSupported
                | Code::Overflow
                | Code::NotInitialised
                | Code::InvalidModule
                | Code::ModuleExists
                | Code::WorkerExists
                | Code::UnknownWorker
                | Code::WorkerBusy
                | Code::TooManyWorkers
                | Code::StakeTooLow
                | Code::UnknownModule
                | Code::UnknownJob
                | Code::NotJobOwner
                | Code::JobNotOpen
                | Code::TooManyOpenJobs
                | Code::UnknownTask
                | Code::NotAssigned
                | Code::WrongPhase
                | Code::CommitmentMismatch
                | Code::TxNotCanonical
                | Code::ModuleBudgetExceeded
                | Code::UnknownQuery
                | Code::BadQuery
                | Code::NotFound
                | Code::HeightUnavailable => true,
            };
            assert!(listed);
            assert_eq!(code.value(), number, "{code:?}");
        }
    }
}
