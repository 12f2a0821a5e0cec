//! Every state key is built here. Integers in keys are big-endian so that
//! prefix scans come out in numeric order.

use compute_proto::{AccountId, JobId, ModuleId};

/// Prefix of account records.
pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
/// Prefix of the validator registry (consensus address to account).
pub const VALIDATOR_PREFIX: &[u8] = b"val/";
/// Prefix of module metadata.
pub const MODULE_PREFIX: &[u8] = b"mod/";
/// Prefix of module bytes.
pub const MODULE_CODE_PREFIX: &[u8] = b"modcode/";
/// Prefix of registered workers.
pub const WORKER_PREFIX: &[u8] = b"wrk/";
/// Prefix of jobs.
pub const JOB_PREFIX: &[u8] = b"job/";
/// Prefix of tasks, by job then big-endian index.
pub const TASK_PREFIX: &[u8] = b"task/";
/// Prefix of reputation records.
pub const REPUTATION_PREFIX: &[u8] = b"rep/";

/// The account record of `id`.
pub fn account(id: &AccountId) -> Vec<u8> {
    [ACCOUNT_PREFIX, id.as_bytes()].concat()
}

/// The account behind a 20-byte CometBFT validator address.
pub fn validator(address: &[u8]) -> Vec<u8> {
    [VALIDATOR_PREFIX, address].concat()
}

/// The metadata of a stored module.
pub fn module(id: &ModuleId) -> Vec<u8> {
    [MODULE_PREFIX, id.as_bytes()].concat()
}

/// The bytes of a stored module.
pub fn module_code(id: &ModuleId) -> Vec<u8> {
    [MODULE_CODE_PREFIX, id.as_bytes()].concat()
}

/// A registered worker.
pub fn worker(id: &AccountId) -> Vec<u8> {
    [WORKER_PREFIX, id.as_bytes()].concat()
}

/// The reputation of a key.
pub fn reputation(id: &AccountId) -> Vec<u8> {
    [REPUTATION_PREFIX, id.as_bytes()].concat()
}

/// A job.
pub fn job(id: &JobId) -> Vec<u8> {
    [JOB_PREFIX, id.as_bytes()].concat()
}

/// Every task of a job, as a scan prefix.
pub fn tasks_of(job: &JobId) -> Vec<u8> {
    [TASK_PREFIX, job.as_bytes()].concat()
}

/// One task of a job.
pub fn task(job: &JobId, index: u32) -> Vec<u8> {
    [TASK_PREFIX, job.as_bytes(), &index.to_be_bytes()].concat()
}

/// The chain parameters.
pub fn params() -> Vec<u8> {
    b"params".to_vec()
}

/// The chain id, fixed at genesis.
pub fn chain_id() -> Vec<u8> {
    b"chain_id".to_vec()
}

/// Chain-wide counters.
pub fn stats() -> Vec<u8> {
    b"stats".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap() {
        let fixed = [params(), chain_id(), stats()];
        let prefixes = [
            ACCOUNT_PREFIX,
            VALIDATOR_PREFIX,
            MODULE_PREFIX,
            MODULE_CODE_PREFIX,
            WORKER_PREFIX,
            JOB_PREFIX,
            TASK_PREFIX,
            REPUTATION_PREFIX,
        ];
        for (i, prefix) in prefixes.iter().enumerate() {
            for key in &fixed {
                assert!(!key.starts_with(prefix) && !prefix.starts_with(key));
            }
            for (j, other) in prefixes.iter().enumerate() {
                assert!(
                    i == j || !other.starts_with(prefix),
                    "{other:?} under {prefix:?}"
                );
            }
        }
    }
}
