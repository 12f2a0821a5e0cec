//! Every state key is built here. Integers in keys are big-endian so that
//! prefix scans come out in numeric order.

use compute_proto::{AccountId, JobId, ModuleId};

/// Prefix of account records (the wire contract's, `compute_proto::state`).
pub const ACCOUNT_PREFIX: &[u8] = compute_proto::state::ACCOUNT_PREFIX;
/// Prefix of the validator registry (consensus address to account).
pub const VALIDATOR_PREFIX: &[u8] = b"val/";
/// Prefix of module metadata.
pub const MODULE_PREFIX: &[u8] = b"mod/";
/// Prefix of module bytes.
pub const MODULE_CODE_PREFIX: &[u8] = b"modcode/";
/// Prefix of registered workers (the wire contract's, `compute_proto::state`).
pub const WORKER_PREFIX: &[u8] = compute_proto::state::WORKER_PREFIX;
/// Prefix of jobs (the wire contract's, `compute_proto::state`).
pub const JOB_PREFIX: &[u8] = compute_proto::state::JOB_PREFIX;
/// Prefix of tasks, by job then big-endian index.
pub const TASK_PREFIX: &[u8] = b"task/";
/// Prefix of reputation records.
pub const REPUTATION_PREFIX: &[u8] = b"rep/";
/// Prefix of the tasks with an open replica slot.
pub const PENDING_PREFIX: &[u8] = b"pend/";
/// Prefix of the assignment index, by worker then job then task.
pub const ASSIGNMENT_PREFIX: &[u8] = b"wasg/";
/// Prefix of the deadline index, by height then job then task.
pub const DEADLINE_PREFIX: &[u8] = b"dl/";
/// Prefix of completion records, by job then task (the wire contract's,
/// `compute_proto::state`).
pub const COMPLETION_PREFIX: &[u8] = compute_proto::state::COMPLETION_PREFIX;
/// Prefix of the count of a job's tasks each worker was ever given, by job
/// then worker.
pub const WORKER_JOB_PREFIX: &[u8] = b"wjob/";
/// Prefix of the index of completions by worker.
pub const WORKER_COMPLETION_PREFIX: &[u8] = b"wdone/";
/// Prefix of the index of jobs by requester.
pub const REQUESTER_PREFIX: &[u8] = b"mjob/";

/// Prefix of validator records, by 20-byte consensus address.
pub const VALIDATOR_RECORD_PREFIX: &[u8] = b"vrec/";
/// Prefix of the index of validators by operator account.
pub const VALIDATOR_OPERATOR_PREFIX: &[u8] = b"vop/";
/// Prefix of the validator update queue, by priority byte then sequence.
pub const VALIDATOR_UPDATE_PREFIX: &[u8] = b"vupd/";
/// Prefix of the unbonding queue, by completion height then address.
pub const UNBONDING_PREFIX: &[u8] = b"vunb/";
/// Prefix of validators' liveness records, by address.
pub const LIVENESS_PREFIX: &[u8] = b"vlive/";

/// Prefix of the verify queue, by big-endian sequence number.
pub const VERIFY_QUEUE_PREFIX: &[u8] = b"vq/";

/// Prefix of the dispute queue, by big-endian sequence number.
pub const DISPUTE_QUEUE_PREFIX: &[u8] = b"dq/";

/// The task index a deadline entry uses for the job's own deadline.
pub const WHOLE_JOB: u32 = u32::MAX;

/// One entry of the dispute queue.
pub fn dispute_queue(sequence: u64) -> Vec<u8> {
    [DISPUTE_QUEUE_PREFIX, &sequence.to_be_bytes()].concat()
}

/// The sequence number the next dispute gets.
pub fn dispute_queue_next() -> Vec<u8> {
    b"meta/dispute_queue_next".to_vec()
}

/// One entry of the verify queue.
pub fn verify_queue(sequence: u64) -> Vec<u8> {
    [VERIFY_QUEUE_PREFIX, &sequence.to_be_bytes()].concat()
}

/// The sequence number the next verify queue entry gets.
pub fn verify_queue_next() -> Vec<u8> {
    b"meta/verify_queue_next".to_vec()
}

/// The account record of `id`.
pub fn account(id: &AccountId) -> Vec<u8> {
    [ACCOUNT_PREFIX, id.as_bytes()].concat()
}

/// The account behind a 20-byte CometBFT validator address.
pub fn validator(address: &[u8]) -> Vec<u8> {
    [VALIDATOR_PREFIX, address].concat()
}

/// The record of the validator with this 20-byte consensus address.
pub fn validator_record(address: &[u8; 20]) -> Vec<u8> {
    [VALIDATOR_RECORD_PREFIX, address.as_slice()].concat()
}

/// The address of the validator `operator` bonded.
pub fn validator_operator(operator: &AccountId) -> Vec<u8> {
    [VALIDATOR_OPERATOR_PREFIX, operator.as_bytes()].concat()
}

/// An entry of the validator update queue: `priority` 0 (a punishment)
/// goes before 1 (anything else), then first come first served.
pub fn validator_update(priority: u8, sequence: u64) -> Vec<u8> {
    [
        VALIDATOR_UPDATE_PREFIX,
        &[priority],
        &sequence.to_be_bytes(),
    ]
    .concat()
}

/// The sequence number the next validator update queue entry gets.
pub fn validator_update_next() -> Vec<u8> {
    b"meta/validator_update_next".to_vec()
}

/// How many validator records exist.
pub fn validator_count() -> Vec<u8> {
    b"meta/validator_count".to_vec()
}

/// Stake of the validator at `address` that returns at the end of `height`.
pub fn unbonding(height: u64, address: &[u8; 20]) -> Vec<u8> {
    [UNBONDING_PREFIX, &height.to_be_bytes(), address.as_slice()].concat()
}

/// The liveness record of the validator at `address`.
pub fn liveness(address: &[u8; 20]) -> Vec<u8> {
    [LIVENESS_PREFIX, address.as_slice()].concat()
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
    compute_proto::state::job_key(id)
}

/// Every task of a job, as a scan prefix.
pub fn tasks_of(job: &JobId) -> Vec<u8> {
    [TASK_PREFIX, job.as_bytes()].concat()
}

/// One task of a job.
pub fn task(job: &JobId, index: u32) -> Vec<u8> {
    [TASK_PREFIX, job.as_bytes(), &index.to_be_bytes()].concat()
}

/// A task with an open replica slot.
pub fn pending(job: &JobId, index: u32) -> Vec<u8> {
    [PENDING_PREFIX, job.as_bytes(), &index.to_be_bytes()].concat()
}

/// Where the last block's assignment scan stopped (the pending key).
pub fn pending_cursor() -> Vec<u8> {
    b"pendcursor".to_vec()
}

/// Every assignment of a worker, as a scan prefix.
pub fn assignments_of(worker: &AccountId) -> Vec<u8> {
    [ASSIGNMENT_PREFIX, worker.as_bytes()].concat()
}

/// A worker's assignments within one job, as a scan prefix.
pub fn assignments_in_job(worker: &AccountId, job: &JobId) -> Vec<u8> {
    [ASSIGNMENT_PREFIX, worker.as_bytes(), job.as_bytes()].concat()
}

/// One assignment of a worker.
pub fn assignment(worker: &AccountId, job: &JobId, index: u32) -> Vec<u8> {
    [
        ASSIGNMENT_PREFIX,
        worker.as_bytes(),
        job.as_bytes(),
        &index.to_be_bytes(),
    ]
    .concat()
}

/// A deadline entry: task `index` of `job` (or [`WHOLE_JOB`]) is due at `height`.
pub fn deadline(height: u64, job: &JobId, index: u32) -> Vec<u8> {
    [
        DEADLINE_PREFIX,
        &height.to_be_bytes(),
        job.as_bytes(),
        &index.to_be_bytes(),
    ]
    .concat()
}

/// The completion record of a settled task.
pub fn completion(job: &JobId, index: u32) -> Vec<u8> {
    compute_proto::state::completion_key(job, index)
}

/// Every completion of a job, as a scan prefix.
pub fn completions_of(job: &JobId) -> Vec<u8> {
    [COMPLETION_PREFIX, job.as_bytes()].concat()
}

/// How many of `job`'s tasks `worker` was ever given (the data-scattering cap).
pub fn worker_job(worker: &AccountId, job: &JobId) -> Vec<u8> {
    [WORKER_JOB_PREFIX, job.as_bytes(), worker.as_bytes()].concat()
}

/// Every worker's count of `job`'s tasks, as a scan prefix.
pub fn workers_of_job(job: &JobId) -> Vec<u8> {
    [WORKER_JOB_PREFIX, job.as_bytes()].concat()
}

/// Every completion `worker` took part in, as a scan prefix.
pub fn worker_completions(worker: &AccountId) -> Vec<u8> {
    [WORKER_COMPLETION_PREFIX, worker.as_bytes()].concat()
}

/// One completion `worker` took part in.
pub fn worker_completion(worker: &AccountId, job: &JobId, index: u32) -> Vec<u8> {
    [
        WORKER_COMPLETION_PREFIX,
        worker.as_bytes(),
        job.as_bytes(),
        &index.to_be_bytes(),
    ]
    .concat()
}

/// A job in its requester's index.
pub fn requester_job(requester: &AccountId, job: &JobId) -> Vec<u8> {
    [REQUESTER_PREFIX, requester.as_bytes(), job.as_bytes()].concat()
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
        let fixed = [params(), chain_id(), stats(), pending_cursor()];
        let prefixes = [
            ACCOUNT_PREFIX,
            VALIDATOR_PREFIX,
            MODULE_PREFIX,
            MODULE_CODE_PREFIX,
            WORKER_PREFIX,
            JOB_PREFIX,
            TASK_PREFIX,
            REPUTATION_PREFIX,
            PENDING_PREFIX,
            ASSIGNMENT_PREFIX,
            DEADLINE_PREFIX,
            COMPLETION_PREFIX,
            REQUESTER_PREFIX,
            WORKER_JOB_PREFIX,
            WORKER_COMPLETION_PREFIX,
            VERIFY_QUEUE_PREFIX,
            DISPUTE_QUEUE_PREFIX,
            VALIDATOR_RECORD_PREFIX,
            VALIDATOR_OPERATOR_PREFIX,
            VALIDATOR_UPDATE_PREFIX,
            UNBONDING_PREFIX,
            LIVENESS_PREFIX,
            b"meta/",
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
