//! A task's result as the worker commits and reveals it, and the deliberate
//! falsification that `--cheat` applies (for tests and demos only).

use compute_proto::{sha3_256, Hash32};
use compute_sandbox::Execution;

/// What a worker commits to and reveals for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskResult {
    /// The output's blob id when the task completed, a failure hash otherwise.
    pub result_hash: Hash32,
    /// Fuel the task used.
    pub fuel_used: u64,
    /// The output, when the task completed.
    pub output: Option<Vec<u8>>,
}

impl TaskResult {
    /// The result of an execution, as an honest worker reports it.
    #[must_use]
    pub fn honest(execution: &Execution) -> Self {
        Self {
            result_hash: Hash32(execution.result_hash()),
            fuel_used: execution.fuel_used,
            output: execution.output().map(<[u8]>::to_vec),
        }
    }

    /// A wrong result that still looks well formed, so the chain accepts the
    /// reveal and then outvotes and slashes it.
    ///
    /// A completed output gets its last bit flipped (an empty output becomes
    /// one byte) and the hash of the wrong output, so an inline reveal of it
    /// passes the chain's hash check; a failure hash gets one bit flipped.
    /// The fuel is kept: the result, not the fuel, is what is falsified.
    #[must_use]
    pub fn falsified(&self) -> Self {
        match &self.output {
            Some(output) => {
                let mut wrong = output.clone();
                match wrong.last_mut() {
                    Some(last) => *last ^= 1,
                    None => wrong.push(1),
                }
                Self {
                    result_hash: Hash32(sha3_256(&wrong)),
                    fuel_used: self.fuel_used,
                    output: Some(wrong),
                }
            }
            None => {
                let mut hash = self.result_hash;
                hash.0[0] ^= 1;
                Self {
                    result_hash: hash,
                    fuel_used: self.fuel_used,
                    output: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_sandbox::{Failure, Outcome};

    #[test]
    fn an_honest_result_is_the_execution_s_hash_fuel_and_output() {
        let execution = Execution {
            outcome: Outcome::Completed(b"42".to_vec()),
            fuel_used: 77,
        };
        let result = TaskResult::honest(&execution);
        assert_eq!(result.result_hash.0, sha3_256(b"42"));
        assert_eq!(result.fuel_used, 77);
        assert_eq!(result.output.as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn a_falsified_output_differs_and_hashes_to_its_own_hash() {
        let honest = TaskResult::honest(&Execution {
            outcome: Outcome::Completed(vec![1, 2, 3]),
            fuel_used: 10,
        });
        let wrong = honest.falsified();
        assert_ne!(wrong.result_hash, honest.result_hash);
        assert_eq!(wrong.output.as_deref(), Some(&[1u8, 2, 2][..]));
        assert_eq!(
            wrong.result_hash.0,
            sha3_256(wrong.output.as_deref().unwrap_or_default())
        );
        assert_eq!(wrong.fuel_used, honest.fuel_used);
    }

    #[test]
    fn an_empty_output_is_falsified_into_one_byte() {
        let honest = TaskResult::honest(&Execution {
            outcome: Outcome::Completed(Vec::new()),
            fuel_used: 1,
        });
        let wrong = honest.falsified();
        assert_eq!(wrong.output.as_deref(), Some(&[1u8][..]));
        assert_eq!(wrong.result_hash.0, sha3_256(&[1]));
        assert_ne!(wrong.result_hash, honest.result_hash);
    }

    #[test]
    fn a_falsified_failure_flips_one_bit_of_its_hash() {
        let honest = TaskResult::honest(&Execution {
            outcome: Outcome::Failed(Failure::OutOfFuel),
            fuel_used: 5,
        });
        let wrong = honest.falsified();
        assert_eq!(wrong.output, None);
        let differing_bits: u32 = honest
            .result_hash
            .0
            .iter()
            .zip(wrong.result_hash.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(differing_bits, 1);
    }
}
