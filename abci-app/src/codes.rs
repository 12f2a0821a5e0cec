//! Rejections: the typed errors of transactions and the stable codes they
//! map to.
//!
//! The codes themselves ([`Code`], codespace [`CODESPACE`]) live in
//! `compute-proto`, so that workers and the CLI read the same numbers without
//! depending on this crate; they are re-exported here.

use compute_proto::{AccountId, JobId, ModuleId, TxError};

pub use compute_proto::{Code, CODESPACE};

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
    /// The signer operates no validator.
    #[error("{0} operates no validator: send BondValidator first (see /validators)")]
    UnknownValidator(AccountId),
    /// The consensus key backs another account's validator.
    #[error(
        "consensus key {key} {why}: use the pub_key of your own node's priv_validator_key.json"
    )]
    ValidatorKeyTaken {
        /// The key.
        key: AccountId,
        /// Whose it is.
        why: String,
    },
    /// The signer already operates a validator with another key.
    #[error("{operator} already operates the validator with consensus key {key}: bond more to that key, or unbond it completely and wait for its record to go")]
    ValidatorExists {
        /// The signer.
        operator: AccountId,
        /// The key of its validator.
        key: AccountId,
    },
    /// The chain holds `max_validators` validator records.
    #[error("the chain already holds {max} validator records (max_validators); retry when one has unbonded")]
    TooManyValidators {
        /// `max_validators`.
        max: u32,
    },
    /// The validator's stake would be below `min_validator_stake`.
    #[error("{what} would leave {stake} credits bonded, below the chain's minimum validator stake of {min}: {hint}")]
    ValidatorStakeTooLow {
        /// What was asked.
        what: &'static str,
        /// The stake it would leave.
        stake: u64,
        /// `min_validator_stake`.
        min: u64,
        /// What to do instead.
        hint: &'static str,
    },
    /// Unbonding more than is bonded.
    #[error("validator {key} has {bonded} credits bonded and cannot unbond {}; amount 0 unbonds all that is bonded", asked_to_unbond(.asked))]
    InsufficientStake {
        /// The validator's key.
        key: AccountId,
        /// What is bonded.
        bonded: u64,
        /// What was asked.
        asked: u64,
    },
    /// The validator has `max_unbonding_entries` unbondings in progress.
    #[error("validator {key} already has {max} unbondings in progress (max_unbonding_entries); wait until the first returns at height {next}")]
    TooManyUnbondings {
        /// The validator's key.
        key: AccountId,
        /// `max_unbonding_entries`.
        max: u32,
        /// The first completion height.
        next: i64,
    },
    /// The validator's jail time is not over.
    #[error("validator {key} is jailed ({reason}) until height {until}: send UnjailValidator at that height or later")]
    ValidatorJailed {
        /// The validator's key.
        key: AccountId,
        /// Why.
        reason: &'static str,
        /// The first height it may unjail at.
        until: i64,
    },
    /// The validator is not jailed.
    #[error("validator {0} is not jailed: there is nothing to unjail")]
    NotJailed(AccountId),
    /// The task's result cannot be disputed.
    #[error("task {task} of job {job} cannot be disputed: {why}")]
    NotDisputable {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
        /// Why, and what to do instead.
        why: String,
    },
    /// The dispute window has passed.
    #[error("task {task} of job {job} settled at height {settled} and could be disputed until height {until}: its result is final")]
    DisputeWindowClosed {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
        /// The height it settled at.
        settled: i64,
        /// The last height a dispute was accepted at.
        until: i64,
    },
    /// The bond is below `min_dispute_bond`.
    #[error("a dispute bonds at least {min} credits (min_dispute_bond), this one bonds {got}")]
    DisputeBondTooLow {
        /// `min_dispute_bond`.
        min: u64,
        /// The message's.
        got: u64,
    },
    /// The dispute's input is not the task's.
    #[error("the input of the dispute of task {task} of job {job} {why}")]
    DisputeInputMismatch {
        /// The job.
        job: JobId,
        /// The task.
        task: u32,
        /// What is wrong.
        why: String,
    },
    /// The dispute queue is full.
    #[error("{waiting} disputes already wait for the referee (at most {max}): send the dispute again in a later block, within the task's dispute window")]
    DisputeQueueFull {
        /// Entries waiting.
        waiting: u64,
        /// The bound.
        max: u64,
    },
    /// The worker's stake is held for the disputes of its paid tasks.
    #[error("worker {worker} cannot leave yet: {why}")]
    StakeLocked {
        /// The worker.
        worker: AccountId,
        /// Until when, and why.
        why: String,
    },
    /// An entry of a batched message (`CommitResults`, `RevealResults`,
    /// `PostJobs`) was refused, so the whole transaction is; the code is the
    /// entry's own.
    #[error("{}{inner}; nothing in the transaction was applied, send it again without that entry", compute_proto::tx::entry_refusal_prefix(.msg, *.index))]
    Entry {
        /// The batched message.
        msg: &'static str,
        /// The entry's position.
        index: usize,
        /// Why the entry was refused.
        inner: Box<Rejection>,
    },
}

/// How an unbonding's amount reads in a rejection (0 means all).
fn asked_to_unbond(asked: &u64) -> String {
    if *asked == 0 {
        "all of it (nothing is bonded)".to_owned()
    } else {
        asked.to_string()
    }
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
            Rejection::UnknownValidator(_) => Code::UnknownValidator,
            Rejection::ValidatorKeyTaken { .. } => Code::ValidatorKeyTaken,
            Rejection::ValidatorExists { .. } => Code::ValidatorExists,
            Rejection::TooManyValidators { .. } => Code::TooManyValidators,
            Rejection::ValidatorStakeTooLow { .. } => Code::ValidatorStakeTooLow,
            Rejection::InsufficientStake { .. } => Code::InsufficientStake,
            Rejection::TooManyUnbondings { .. } => Code::TooManyUnbondings,
            Rejection::ValidatorJailed { .. } => Code::ValidatorJailed,
            Rejection::NotJailed(_) => Code::NotJailed,
            Rejection::NotDisputable { .. } => Code::NotDisputable,
            Rejection::DisputeWindowClosed { .. } => Code::DisputeWindowClosed,
            Rejection::DisputeBondTooLow { .. } => Code::DisputeBondTooLow,
            Rejection::DisputeInputMismatch { .. } => Code::DisputeInputMismatch,
            Rejection::StakeLocked { .. } => Code::StakeLocked,
            Rejection::DisputeQueueFull { .. } => Code::DisputeQueueFull,
            Rejection::Entry { inner, .. } => inner.code(),
        }
    }
}
