//! What work costs: a replica's pay, a job's escrow, and what a task still
//! in its reveal phase may yet be owed.
//!
//! The escrow rounds up and the pay rounds down, so the escrow a job holds
//! from `PostJob` on always covers everything settlement may pay from it.

use compute_proto::pb;

use crate::task::quorum_of;

/// `fuel x price / 10^6`, rounded down: what one replica of the winning
/// group is paid. The escrow rounds the other way, so it always covers it.
pub fn price_of(fuel: u64, price_per_mfuel: u64) -> u64 {
    let product = u128::from(fuel).saturating_mul(u128::from(price_per_mfuel));
    u64::try_from(product / 1_000_000).unwrap_or(u64::MAX)
}

/// `ceil(tasks * replicas * fuel * price / 1e6)`, or `None` past `u64`.
pub fn escrow(tasks: u64, replicas: u32, fuel_limit: u64, price_per_mfuel: u64) -> Option<u64> {
    let product = u128::from(tasks)
        .checked_mul(u128::from(replicas))?
        .checked_mul(u128::from(fuel_limit))?
        .checked_mul(u128::from(price_per_mfuel))?;
    u64::try_from(product.div_ceil(1_000_000)).ok()
}

/// The fuel one replica of `job` may be owed: its run and, for a Verified
/// job, the verification of its output.
pub fn replica_fuel(job: &pb::Job) -> u64 {
    let verify = match job.policy.and_then(|p| p.kind) {
        Some(pb::policy::Kind::Verified(v)) => v.verify_fuel,
        _ => 0,
    };
    job.fuel_limit.saturating_add(verify)
}

/// What a task still in its reveal phase may be owed at most: every replica
/// it may still pay (for a Verified task, every worker it may try).
pub fn task_reserve(job: &pb::Job, task: &pb::Task) -> u64 {
    let replicas = match quorum_of(job) {
        Some(_) => task.wanted,
        None => job.max_replicas,
    };
    escrow(1, replicas, replica_fuel(job), job.price_per_mfuel).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escrow_rounds_up_and_refuses_overflow() {
        assert_eq!(escrow(1, 1, 1, 1), Some(1));
        assert_eq!(escrow(2, 3, 1_000_000, 5), Some(30));
        assert_eq!(escrow(1, 1, 999_999, 1), Some(1));
        assert_eq!(escrow(0, 3, 1_000_000, 5), Some(0));
        assert_eq!(escrow(1024, 7, u64::MAX, u64::MAX), None);
    }
}
