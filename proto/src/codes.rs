//! Result codes: the stable numbers of codespace [`CODESPACE`] that the
//! chain answers transactions and queries with.
//!
//! A number, once released, never changes meaning; new codes get new
//! numbers. The chain, the gateway, workers and the CLI all read them from
//! here; `codes_are_pinned` guards the table.

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
    /// The signer operates no validator.
    UnknownValidator = 33,
    /// The consensus key backs another account's validator.
    ValidatorKeyTaken = 34,
    /// The signer already operates a validator with another consensus key.
    ValidatorExists = 35,
    /// The chain holds `max_validators` validator records.
    TooManyValidators = 36,
    /// The validator's stake would be below `min_validator_stake`.
    ValidatorStakeTooLow = 37,
    /// The validator has less bonded stake than asked to unbond.
    InsufficientStake = 38,
    /// The validator has `max_unbonding_entries` unbondings in progress.
    TooManyUnbondings = 39,
    /// The validator's jail time is not over.
    ValidatorJailed = 40,
    /// The validator is not jailed.
    NotJailed = 41,
    /// The task's result cannot be disputed (its policy, its fuel limit, or a
    /// dispute already judged or pending).
    NotDisputable = 42,
    /// The task's dispute window has passed.
    DisputeWindowClosed = 43,
    /// The dispute's bond is below `min_dispute_bond`.
    DisputeBondTooLow = 44,
    /// The dispute's input is missing, superfluous or not the task's input.
    DisputeInputMismatch = 45,
    /// The worker's stake is held until its last paid task's dispute window
    /// ends.
    StakeLocked = 46,
    /// The dispute queue holds its most entries.
    DisputeQueueFull = 47,
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
    /// Every code, in increasing number order.
    pub const ALL: &'static [Code] = &[
        Code::Ok,
        Code::TxTooLarge,
        Code::TxMalformed,
        Code::InvalidSigner,
        Code::InvalidSignature,
        Code::WrongChainId,
        Code::NonceReplayed,
        Code::NonceGap,
        Code::InsufficientFunds,
        Code::FeeTooLow,
        Code::InvalidMessage,
        Code::TooManyPending,
        Code::NotYetSupported,
        Code::Overflow,
        Code::NotInitialised,
        Code::InvalidModule,
        Code::ModuleExists,
        Code::WorkerExists,
        Code::UnknownWorker,
        Code::WorkerBusy,
        Code::TooManyWorkers,
        Code::StakeTooLow,
        Code::UnknownModule,
        Code::UnknownJob,
        Code::NotJobOwner,
        Code::JobNotOpen,
        Code::TooManyOpenJobs,
        Code::UnknownTask,
        Code::NotAssigned,
        Code::WrongPhase,
        Code::CommitmentMismatch,
        Code::TxNotCanonical,
        Code::ModuleBudgetExceeded,
        Code::UnknownValidator,
        Code::ValidatorKeyTaken,
        Code::ValidatorExists,
        Code::TooManyValidators,
        Code::ValidatorStakeTooLow,
        Code::InsufficientStake,
        Code::TooManyUnbondings,
        Code::ValidatorJailed,
        Code::NotJailed,
        Code::NotDisputable,
        Code::DisputeWindowClosed,
        Code::DisputeBondTooLow,
        Code::DisputeInputMismatch,
        Code::StakeLocked,
        Code::DisputeQueueFull,
        Code::UnknownQuery,
        Code::BadQuery,
        Code::NotFound,
        Code::HeightUnavailable,
    ];

    /// The number sent in ABCI responses.
    #[must_use]
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// The code with number `n`, or `None` if no code has that number.
    #[must_use]
    pub const fn from_u32(n: u32) -> Option<Code> {
        match n {
            0 => Some(Code::Ok),
            1 => Some(Code::TxTooLarge),
            2 => Some(Code::TxMalformed),
            3 => Some(Code::InvalidSigner),
            4 => Some(Code::InvalidSignature),
            5 => Some(Code::WrongChainId),
            6 => Some(Code::NonceReplayed),
            7 => Some(Code::NonceGap),
            8 => Some(Code::InsufficientFunds),
            9 => Some(Code::FeeTooLow),
            10 => Some(Code::InvalidMessage),
            11 => Some(Code::TooManyPending),
            12 => Some(Code::NotYetSupported),
            13 => Some(Code::Overflow),
            14 => Some(Code::NotInitialised),
            15 => Some(Code::InvalidModule),
            16 => Some(Code::ModuleExists),
            17 => Some(Code::WorkerExists),
            18 => Some(Code::UnknownWorker),
            19 => Some(Code::WorkerBusy),
            20 => Some(Code::TooManyWorkers),
            21 => Some(Code::StakeTooLow),
            22 => Some(Code::UnknownModule),
            23 => Some(Code::UnknownJob),
            24 => Some(Code::NotJobOwner),
            25 => Some(Code::JobNotOpen),
            26 => Some(Code::TooManyOpenJobs),
            27 => Some(Code::UnknownTask),
            28 => Some(Code::NotAssigned),
            29 => Some(Code::WrongPhase),
            30 => Some(Code::CommitmentMismatch),
            31 => Some(Code::TxNotCanonical),
            32 => Some(Code::ModuleBudgetExceeded),
            33 => Some(Code::UnknownValidator),
            34 => Some(Code::ValidatorKeyTaken),
            35 => Some(Code::ValidatorExists),
            36 => Some(Code::TooManyValidators),
            37 => Some(Code::ValidatorStakeTooLow),
            38 => Some(Code::InsufficientStake),
            39 => Some(Code::TooManyUnbondings),
            40 => Some(Code::ValidatorJailed),
            41 => Some(Code::NotJailed),
            42 => Some(Code::NotDisputable),
            43 => Some(Code::DisputeWindowClosed),
            44 => Some(Code::DisputeBondTooLow),
            45 => Some(Code::DisputeInputMismatch),
            46 => Some(Code::StakeLocked),
            47 => Some(Code::DisputeQueueFull),
            100 => Some(Code::UnknownQuery),
            101 => Some(Code::BadQuery),
            102 => Some(Code::NotFound),
            103 => Some(Code::HeightUnavailable),
            _ => None,
        }
    }

    /// The stable name of the code, as `docs/CHAIN.md` lists it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Code::Ok => "Ok",
            Code::TxTooLarge => "TxTooLarge",
            Code::TxMalformed => "TxMalformed",
            Code::InvalidSigner => "InvalidSigner",
            Code::InvalidSignature => "InvalidSignature",
            Code::WrongChainId => "WrongChainId",
            Code::NonceReplayed => "NonceReplayed",
            Code::NonceGap => "NonceGap",
            Code::InsufficientFunds => "InsufficientFunds",
            Code::FeeTooLow => "FeeTooLow",
            Code::InvalidMessage => "InvalidMessage",
            Code::TooManyPending => "TooManyPending",
            Code::NotYetSupported => "NotYetSupported",
            Code::Overflow => "Overflow",
            Code::NotInitialised => "NotInitialised",
            Code::InvalidModule => "InvalidModule",
            Code::ModuleExists => "ModuleExists",
            Code::WorkerExists => "WorkerExists",
            Code::UnknownWorker => "UnknownWorker",
            Code::WorkerBusy => "WorkerBusy",
            Code::TooManyWorkers => "TooManyWorkers",
            Code::StakeTooLow => "StakeTooLow",
            Code::UnknownModule => "UnknownModule",
            Code::UnknownJob => "UnknownJob",
            Code::NotJobOwner => "NotJobOwner",
            Code::JobNotOpen => "JobNotOpen",
            Code::TooManyOpenJobs => "TooManyOpenJobs",
            Code::UnknownTask => "UnknownTask",
            Code::NotAssigned => "NotAssigned",
            Code::WrongPhase => "WrongPhase",
            Code::CommitmentMismatch => "CommitmentMismatch",
            Code::TxNotCanonical => "TxNotCanonical",
            Code::ModuleBudgetExceeded => "ModuleBudgetExceeded",
            Code::UnknownValidator => "UnknownValidator",
            Code::ValidatorKeyTaken => "ValidatorKeyTaken",
            Code::ValidatorExists => "ValidatorExists",
            Code::TooManyValidators => "TooManyValidators",
            Code::ValidatorStakeTooLow => "ValidatorStakeTooLow",
            Code::InsufficientStake => "InsufficientStake",
            Code::TooManyUnbondings => "TooManyUnbondings",
            Code::ValidatorJailed => "ValidatorJailed",
            Code::NotJailed => "NotJailed",
            Code::NotDisputable => "NotDisputable",
            Code::DisputeWindowClosed => "DisputeWindowClosed",
            Code::DisputeBondTooLow => "DisputeBondTooLow",
            Code::DisputeInputMismatch => "DisputeInputMismatch",
            Code::StakeLocked => "StakeLocked",
            Code::DisputeQueueFull => "DisputeQueueFull",
            Code::UnknownQuery => "UnknownQuery",
            Code::BadQuery => "BadQuery",
            Code::NotFound => "NotFound",
            Code::HeightUnavailable => "HeightUnavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists each code once with its released number, as both a table and an
    /// exhaustive `match` over the same list: a new variant does not compile
    /// until it is listed here, and listing one twice is an unreachable
    /// pattern (denied), so the table has exactly one row per variant.
    macro_rules! pinned {
        ($($code:ident = $number:literal,)*) => {
            /// Every code with its released number.
            const PINNED: &[(Code, u32)] = &[$((Code::$code, $number)),*];

            /// The released number of `code`.
            #[deny(unreachable_patterns)]
            const fn pinned_number(code: Code) -> u32 {
                match code {
                    $(Code::$code => $number,)*
                }
            }
        };
    }

    pinned! {
        Ok = 0,
        TxTooLarge = 1,
        TxMalformed = 2,
        InvalidSigner = 3,
        InvalidSignature = 4,
        WrongChainId = 5,
        NonceReplayed = 6,
        NonceGap = 7,
        InsufficientFunds = 8,
        FeeTooLow = 9,
        InvalidMessage = 10,
        TooManyPending = 11,
        NotYetSupported = 12,
        Overflow = 13,
        NotInitialised = 14,
        InvalidModule = 15,
        ModuleExists = 16,
        WorkerExists = 17,
        UnknownWorker = 18,
        WorkerBusy = 19,
        TooManyWorkers = 20,
        StakeTooLow = 21,
        UnknownModule = 22,
        UnknownJob = 23,
        NotJobOwner = 24,
        JobNotOpen = 25,
        TooManyOpenJobs = 26,
        UnknownTask = 27,
        NotAssigned = 28,
        WrongPhase = 29,
        CommitmentMismatch = 30,
        TxNotCanonical = 31,
        ModuleBudgetExceeded = 32,
        UnknownValidator = 33,
        ValidatorKeyTaken = 34,
        ValidatorExists = 35,
        TooManyValidators = 36,
        ValidatorStakeTooLow = 37,
        InsufficientStake = 38,
        TooManyUnbondings = 39,
        ValidatorJailed = 40,
        NotJailed = 41,
        NotDisputable = 42,
        DisputeWindowClosed = 43,
        DisputeBondTooLow = 44,
        DisputeInputMismatch = 45,
        StakeLocked = 46,
        DisputeQueueFull = 47,
        UnknownQuery = 100,
        BadQuery = 101,
        NotFound = 102,
        HeightUnavailable = 103,
    }

    /// Released numbers never change; a new code gets a new number.
    #[test]
    fn codes_are_pinned() {
        for &(code, number) in PINNED {
            assert_eq!(code.value(), number, "{code:?} changed its number");
            assert_eq!(pinned_number(code), number, "{code:?}");
            assert_eq!(Code::from_u32(number), Some(code), "from_u32({number})");
            assert_eq!(code.name(), format!("{code:?}"), "name of {code:?}");
        }
    }

    /// `Code::ALL` lists every variant once, in number order.
    #[test]
    fn all_lists_every_code_in_order() {
        let listed: Vec<Code> = PINNED.iter().map(|&(code, _)| code).collect();
        assert_eq!(Code::ALL, listed.as_slice());
        assert!(
            PINNED.windows(2).all(|w| w[0].1 < w[1].1),
            "PINNED is not in number order"
        );
        for &code in Code::ALL {
            assert_eq!(Code::from_u32(code.value()), Some(code), "{code:?}");
        }
    }

    /// `docs/CHAIN.md` lists every code with its number and name.
    #[test]
    fn chain_md_lists_every_code() {
        let doc = include_str!("../../docs/CHAIN.md");
        let section = doc
            .split("## Result codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/CHAIN.md has a Result codes section");
        let listed: Vec<(u32, &str)> = section
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let number = cells.next()?.parse().ok()?;
                Some((number, cells.next()?))
            })
            .collect();
        let pinned: Vec<(u32, &str)> = PINNED
            .iter()
            .map(|&(code, number)| (number, code.name()))
            .collect();
        assert_eq!(listed, pinned);
    }

    /// Numbers no code has decode to `None`.
    #[test]
    fn unused_numbers_are_not_codes() {
        for n in 0..=200u32 {
            let listed = PINNED.iter().any(|&(_, number)| number == n);
            assert_eq!(Code::from_u32(n).is_some(), listed, "from_u32({n})");
        }
        assert_eq!(Code::from_u32(u32::MAX), None);
    }
}
