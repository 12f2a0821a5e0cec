//! What running a task produces, and how outcomes are classified.
//!
//! There are two kinds of ending, and the difference is the point of this
//! module:
//!
//! - an [`Execution`]: a completed output or a deterministic [`Failure`],
//!   with the fuel used. Every honest worker gets the same one, so it is
//!   hashed, committed, revealed and paid like any result;
//! - a [`WorkerFault`]: something about this worker's machine (native stack,
//!   wall clock, exhausted host resources, a bug). It is reported, never
//!   hashed as a result and never paid.

use compute_proto::hash::{hash_parts, Tag};
use compute_proto::sha3_256;

/// Domain tag of the hash of a failure outcome: `H(tag, code)` as in DESIGN
/// section 2, so a failure hash cannot be produced by accident by an output.
pub const FAILURE_HASH_TAG: &[u8] = Tag::Failure.as_str().as_bytes();

/// A deterministic failure of a task. The numbers are part of the protocol
/// (they are hashed) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Failure {
    /// The task used all its fuel.
    OutOfFuel = 1,
    /// Linear memory would have grown past the task's limit (or its initial
    /// size is already past it).
    MemoryLimit = 2,
    /// A table would have grown past the task's limit.
    TableLimit = 3,
    /// Nested calls exceeded the logical depth budget.
    DepthLimit = 4,
    /// `run` returned an output longer than the task's limit.
    OutputTooLarge = 5,
    /// `run` returned an output range outside linear memory.
    OutputOutOfBounds = 6,
    /// `alloc` returned a range outside linear memory for the input.
    InputOutOfBounds = 7,
    /// The input is longer than the task's limit.
    InputTooLarge = 8,
    /// `verify` was asked of a module that does not export it.
    VerifyMissing = 9,
    /// An `unreachable` instruction (a Rust panic, for example).
    Unreachable = 16,
    /// A load or store outside linear memory.
    MemoryOutOfBounds = 17,
    /// A table access outside the table.
    TableOutOfBounds = 18,
    /// An indirect call to a null table entry.
    IndirectCallToNull = 19,
    /// An indirect call with the wrong signature.
    BadSignature = 20,
    /// Integer overflow (`i32.div_s` of `MIN` by `-1`).
    IntegerOverflow = 21,
    /// Integer division by zero.
    IntegerDivisionByZero = 22,
    /// A float to integer conversion out of range or of a NaN.
    BadConversionToInteger = 23,
}

impl Failure {
    /// Every failure, for exhaustive tests.
    pub const ALL: [Failure; 17] = [
        Failure::OutOfFuel,
        Failure::MemoryLimit,
        Failure::TableLimit,
        Failure::DepthLimit,
        Failure::OutputTooLarge,
        Failure::OutputOutOfBounds,
        Failure::InputOutOfBounds,
        Failure::InputTooLarge,
        Failure::VerifyMissing,
        Failure::Unreachable,
        Failure::MemoryOutOfBounds,
        Failure::TableOutOfBounds,
        Failure::IndirectCallToNull,
        Failure::BadSignature,
        Failure::IntegerOverflow,
        Failure::IntegerDivisionByZero,
        Failure::BadConversionToInteger,
    ];

    /// The stable number of this failure.
    #[must_use]
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The failure with this number.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|failure| failure.code() == code)
    }

    /// A sentence for people.
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Failure::OutOfFuel => "the task ran out of fuel",
            Failure::MemoryLimit => "the task reached its memory limit",
            Failure::TableLimit => "the task reached its table limit",
            Failure::DepthLimit => "the task nested calls deeper than the depth limit",
            Failure::OutputTooLarge => "the task's output is larger than its limit",
            Failure::OutputOutOfBounds => "the task returned an output outside its memory",
            Failure::InputOutOfBounds => "the module's alloc returned a buffer outside its memory",
            Failure::InputTooLarge => "the input is larger than the task's limit",
            Failure::VerifyMissing => "the module has no verify export",
            Failure::Unreachable => "the task trapped: unreachable executed (a panic?)",
            Failure::MemoryOutOfBounds => "the task trapped: memory access out of bounds",
            Failure::TableOutOfBounds => "the task trapped: table access out of bounds",
            Failure::IndirectCallToNull => "the task trapped: indirect call to a null entry",
            Failure::BadSignature => "the task trapped: indirect call signature mismatch",
            Failure::IntegerOverflow => "the task trapped: integer overflow",
            Failure::IntegerDivisionByZero => "the task trapped: integer division by zero",
            Failure::BadConversionToInteger => {
                "the task trapped: invalid float to integer conversion"
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// How a task ended, deterministically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `run` returned these bytes.
    Completed(Vec<u8>),
    /// The task failed in a way every honest worker reproduces.
    Failed(Failure),
}

/// A task's result: the outcome and the fuel it used. Both are agreed on by
/// every honest worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How the task ended.
    pub outcome: Outcome,
    /// Fuel burnt by `alloc` and `run` (and instantiation, which burns none
    /// since modules have no start function); the fuel limit itself when the
    /// task ran out.
    pub fuel_used: u64,
}

impl Execution {
    /// The hash a worker commits to: the output's blob id
    /// (`sha3_256(output)`) when the task completed, and
    /// `sha3_256("compute/failure/v1" || 0x00 || code as u32 big-endian)`
    /// when it failed.
    #[must_use]
    pub fn result_hash(&self) -> [u8; 32] {
        match &self.outcome {
            Outcome::Completed(output) => sha3_256(output),
            Outcome::Failed(failure) => hash_parts(Tag::Failure, &[&failure.code().to_be_bytes()]),
        }
    }

    /// The output, if the task completed.
    #[must_use]
    pub fn output(&self) -> Option<&[u8]> {
        match &self.outcome {
            Outcome::Completed(output) => Some(output),
            Outcome::Failed(_) => None,
        }
    }
}

/// What `verify` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `verify` returned 1.
    Accepted,
    /// `verify` returned anything else.
    Rejected,
    /// `verify` failed deterministically (for example, out of fuel).
    Failed(Failure),
}

/// A verification: the verdict and the fuel it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// What `verify` decided.
    pub verdict: Verdict,
    /// Fuel used by `alloc` (twice) and `verify`.
    pub fuel_used: u64,
}

/// A fault of this worker, not of the task: reported, never a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerFault {
    /// The native stack ran out before the logical depth limit; frame sizes
    /// differ between machines, so this says nothing about the task.
    #[error("native stack overflow before the logical depth limit")]
    NativeStackOverflow,
    /// The wall-clock watchdog fired.
    #[error("the wall-clock watchdog fired after {timeout_ms} ms")]
    Timeout {
        /// The watchdog's limit.
        timeout_ms: u64,
    },
    /// The host ran out of a resource (pool slots, address space).
    #[error("host resources exhausted: {0}")]
    HostExhausted(String),
    /// The task asks for more than this worker's engine was built for.
    #[error("this worker cannot run the task: {0}")]
    Unsupported(String),
    /// Anything else: a bug in the runtime.
    #[error("internal error: {0}")]
    Internal(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These numbers are hashed into results: they never change.
    #[test]
    fn failure_codes_are_pinned() {
        let pinned: Vec<(Failure, u32)> = Failure::ALL.iter().map(|f| (*f, f.code())).collect();
        assert_eq!(
            pinned.iter().map(|(_, code)| *code).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 20, 21, 22, 23]
        );
        for (failure, code) in pinned {
            assert_eq!(Failure::from_code(code), Some(failure));
            // An exhaustive match: adding a variant fails to compile here
            // until it gets a message.
            assert!(!failure.message().is_empty());
        }
        assert_eq!(Failure::from_code(0), None);
    }

    #[test]
    fn failure_hash_is_tagged_and_output_hash_is_the_blob_id() {
        let failed = Execution {
            outcome: Outcome::Failed(Failure::OutOfFuel),
            fuel_used: 5,
        };
        let tagged = [FAILURE_HASH_TAG, &[0], &1u32.to_be_bytes()].concat();
        assert_eq!(failed.result_hash(), sha3_256(&tagged));
        let completed = Execution {
            outcome: Outcome::Completed(vec![1, 2]),
            fuel_used: 5,
        };
        assert_eq!(completed.result_hash(), sha3_256(&[1, 2]));
        assert_eq!(completed.output(), Some(&[1u8, 2][..]));
        assert_eq!(failed.output(), None);
    }
}
