//! The honest worker's own check of a `Verified` job's output before it
//! commits to it.
//!
//! The chain judges a `Verified` output by running the module's
//! `verify(input, output)` export; an output `verify` refuses can be
//! punished once another worker's output for the task has passed. So an
//! honest worker runs the same `verify`, under the same limits as the
//! chain, and commits only when it accepts. Whatever it cannot stand behind
//! (a refused output, a failed run, an output that cannot be revealed
//! inline, a verify it could not run) it gives back with `DeclineTask`,
//! which costs nothing. Jobs under a quorum policy are unaffected.
//!
//! The decisions are pure functions, so they are tested without a chain.

use compute_sandbox::limits::WASM_PAGE_BYTES;
use compute_sandbox::{
    EngineSettings, Execution, Outcome, TaskLimits, Verdict, Verification, WorkerFault,
};

use crate::chain::JobPolicy;

/// What to do with a task's execution before anything is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Commit it: a quorum job, or a cheat that skips the check.
    Commit,
    /// Run the module's `verify` on the output with this fuel first.
    Verify {
        /// The job's `verify_fuel`.
        verify_fuel: u64,
    },
    /// Give the task back; the reason goes into `DeclineTask`.
    Decline(String),
}

/// What the worker's own `verify` decided for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `verify` accepted the output: commit it.
    Commit,
    /// Give the task back; the reason goes into `DeclineTask`.
    Decline(String),
}

/// Decides what follows a run of a task of a job under `policy`.
///
/// A `Verified` output is only worth committing if it can be revealed
/// inline (the chain runs `verify` on the reveal and refuses a reveal
/// without its output), so a failed run, an empty output and an output over
/// `inline_output_bytes_max` are declined at once. A cheat (`--cheat`, tests
/// and demos only) skips the check, so that the chain has something to
/// catch.
#[must_use]
pub fn after_run(
    policy: JobPolicy,
    execution: &Execution,
    inline_output_bytes_max: u64,
    cheat: bool,
) -> Step {
    let JobPolicy::Verified { verify_fuel } = policy else {
        return Step::Commit;
    };
    if cheat {
        return Step::Commit;
    }
    match &execution.outcome {
        Outcome::Failed(failure) => Step::Decline(format!(
            "the run failed ({failure}); a Verified job needs an output to reveal"
        )),
        Outcome::Completed(output) if output.is_empty() => Step::Decline(
            "the run returned an empty output, which a Verified job cannot reveal inline"
                .to_owned(),
        ),
        Outcome::Completed(output)
            if u64::try_from(output.len()).unwrap_or(u64::MAX) > inline_output_bytes_max =>
        {
            Step::Decline(format!(
                "the output of {} bytes is above max_inline_output_bytes {inline_output_bytes_max}; a Verified job must reveal it inline",
                output.len()
            ))
        }
        Outcome::Completed(_) => Step::Verify { verify_fuel },
    }
}

/// Decides from the worker's own `verify` run: only an accepted output is
/// committed. A fault of this worker while verifying (watchdog, host
/// exhaustion) is a decline too: the worker cannot stand behind the output.
#[must_use]
pub fn after_verify(verification: &Result<Verification, WorkerFault>) -> Decision {
    match verification {
        Ok(Verification {
            verdict: Verdict::Accepted,
            ..
        }) => Decision::Commit,
        Ok(Verification {
            verdict: Verdict::Rejected,
            fuel_used,
        }) => Decision::Decline(format!(
            "own verify refused the output (verify returned 0 after {fuel_used} fuel)"
        )),
        Ok(Verification {
            verdict: Verdict::Failed(failure),
            ..
        }) => Decision::Decline(format!("own verify failed on the output: {failure}")),
        Err(fault) => {
            Decision::Decline(format!("own verify could not run on this worker: {fault}"))
        }
    }
}

/// The limits `verify` runs under, exactly as the chain sets them
/// (`abci-app/src/verify.rs`): the job's `verify_fuel`, a memory of
/// `sandbox_memory_pages` pages capped at the default engine's memory, an
/// input bound that admits both the input and the output, and no room for
/// an output. Only the watchdog differs: the chain's is set beyond any fuel
/// budget so no validator's speed decides a verdict, while here expiry is a
/// fault of this worker, which then declines.
#[must_use]
pub fn verify_limits(
    sandbox_memory_pages: u64,
    verify_fuel: u64,
    input_bytes: usize,
    output_bytes: usize,
    timeout_ms: u64,
) -> TaskLimits {
    let memory = sandbox_memory_pages.saturating_mul(WASM_PAGE_BYTES);
    TaskLimits {
        fuel_max: verify_fuel,
        memory_bytes_max: memory.min(EngineSettings::default().memory_bytes_max),
        input_bytes_max: u32::try_from(input_bytes.max(output_bytes)).unwrap_or(u32::MAX),
        output_bytes_max: 1,
        timeout_ms,
        ..TaskLimits::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_sandbox::Failure;

    const VERIFIED: JobPolicy = JobPolicy::Verified { verify_fuel: 5_000 };

    fn completed(output: &[u8]) -> Execution {
        Execution {
            outcome: Outcome::Completed(output.to_vec()),
            fuel_used: 100,
        }
    }

    fn failed(failure: Failure) -> Execution {
        Execution {
            outcome: Outcome::Failed(failure),
            fuel_used: 100,
        }
    }

    fn declined(step: &Step) -> &str {
        match step {
            Step::Decline(reason) => reason,
            other => panic!("expected a decline, got {other:?}"),
        }
    }

    #[test]
    fn a_quorum_job_commits_whatever_the_run_gave() {
        for execution in [
            completed(b"42"),
            completed(b""),
            failed(Failure::OutOfFuel),
            failed(Failure::Unreachable),
        ] {
            assert_eq!(
                after_run(JobPolicy::Quorum, &execution, 4, false),
                Step::Commit
            );
        }
    }

    #[test]
    fn a_verified_output_that_can_be_revealed_is_verified_with_the_job_s_fuel() {
        assert_eq!(
            after_run(VERIFIED, &completed(b"1234"), 4, false),
            Step::Verify { verify_fuel: 5_000 }
        );
    }

    #[test]
    fn a_verified_task_whose_run_failed_is_declined_with_the_failure() {
        let out_of_fuel = after_run(VERIFIED, &failed(Failure::OutOfFuel), 1024, false);
        assert!(declined(&out_of_fuel).starts_with("the run failed ("));
        assert!(declined(&out_of_fuel).contains(&Failure::OutOfFuel.to_string()));
        let trap = after_run(VERIFIED, &failed(Failure::Unreachable), 1024, false);
        assert!(declined(&trap).contains(&Failure::Unreachable.to_string()));
    }

    #[test]
    fn a_verified_output_that_cannot_be_revealed_inline_is_declined() {
        let empty = after_run(VERIFIED, &completed(b""), 1024, false);
        assert!(declined(&empty).contains("empty output"));
        let large = after_run(VERIFIED, &completed(b"12345"), 4, false);
        assert!(declined(&large).contains("5 bytes is above max_inline_output_bytes 4"));
    }

    #[test]
    fn a_cheat_skips_its_own_check() {
        for execution in [completed(b"42"), completed(b""), failed(Failure::OutOfFuel)] {
            assert_eq!(after_run(VERIFIED, &execution, 1, true), Step::Commit);
        }
    }

    #[test]
    fn only_an_accepted_output_is_committed() {
        assert_eq!(
            after_verify(&Ok(Verification {
                verdict: Verdict::Accepted,
                fuel_used: 10,
            })),
            Decision::Commit
        );
        let decline = |verification| match after_verify(&verification) {
            Decision::Decline(reason) => reason,
            Decision::Commit => panic!("committed {verification:?}"),
        };
        let refused = decline(Ok(Verification {
            verdict: Verdict::Rejected,
            fuel_used: 10,
        }));
        assert!(refused.starts_with("own verify refused the output"));
        let out_of_fuel = decline(Ok(Verification {
            verdict: Verdict::Failed(Failure::OutOfFuel),
            fuel_used: 5_000,
        }));
        assert!(out_of_fuel.starts_with("own verify failed on the output"));
        assert!(out_of_fuel.contains(&Failure::OutOfFuel.to_string()));
        let missing = decline(Ok(Verification {
            verdict: Verdict::Failed(Failure::VerifyMissing),
            fuel_used: 0,
        }));
        assert!(missing.contains(&Failure::VerifyMissing.to_string()));
        for fault in [
            WorkerFault::Timeout { timeout_ms: 7 },
            WorkerFault::HostExhausted("pool".to_owned()),
        ] {
            let reason = decline(Err(fault.clone()));
            assert!(reason.starts_with("own verify could not run on this worker"));
            assert!(reason.contains(&fault.to_string()));
        }
    }

    #[test]
    fn verify_runs_under_the_chain_s_limits() {
        let limits = verify_limits(16, 5_000, 40, 8, 60_000);
        assert_eq!(limits.fuel_max, 5_000);
        assert_eq!(limits.memory_bytes_max, 16 * WASM_PAGE_BYTES);
        assert_eq!(limits.input_bytes_max, 40);
        assert_eq!(limits.output_bytes_max, 1);
        assert_eq!(limits.timeout_ms, 60_000);
        assert_eq!(
            limits.table_elements_max,
            TaskLimits::default().table_elements_max
        );
        // The output bounds the copy-in when it is the longer of the two.
        assert_eq!(verify_limits(16, 1, 3, 9, 1).input_bytes_max, 9);
        // The chain's verifier caps memory at its engine's default.
        assert_eq!(
            verify_limits(u64::MAX, 1, 0, 0, 1).memory_bytes_max,
            EngineSettings::default().memory_bytes_max
        );
    }
}
