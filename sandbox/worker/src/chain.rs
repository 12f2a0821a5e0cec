//! The chain's JSON answers that the worker reads, as typed values.
//!
//! Every answer but `/params` is one of `compute_proto::views`, the structs
//! the chain itself serialises, so a field renamed on the chain is a compile
//! error here, and a status the worker does not know fails to parse rather
//! than being read as some other status. `/params` is read through a subset
//! ([`ChainParams`]): parameters are added over time, and the worker needs
//! two of them.

use compute_proto::views::{AssignmentView, PolicyView};
use serde::Deserialize;

use crate::journal::TaskKey;

pub use compute_proto::views::{
    AccountView, AssignmentsView, InputView, ModuleView, StatsView, WorkerView,
};

/// `/params`, the fields the worker uses.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct ChainParams {
    /// Pages (64 KiB) of linear memory a task may reach.
    pub sandbox_memory_pages: u64,
    /// The largest output a reveal may carry inline.
    pub max_inline_output_bytes: u64,
    /// The smallest bond of a dispute (what a watcher bonds by default);
    /// absent from chains older than disputes.
    #[serde(default)]
    pub min_dispute_bond: Option<u64>,
}

/// One task the worker holds.
pub type Assignment = AssignmentView;

/// How the chain judges a job's outputs, as far as the worker acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPolicy {
    /// Replicas vote on the result; also what a job without a policy gets.
    Quorum,
    /// One replica; every validator runs the module's `verify` on its
    /// output with `verify_fuel` as the only bound.
    Verified {
        /// The fuel `verify` runs with.
        verify_fuel: u64,
    },
}

impl From<Option<PolicyView>> for JobPolicy {
    fn from(view: Option<PolicyView>) -> Self {
        match view {
            Some(PolicyView::Verified { verify_fuel, .. }) => JobPolicy::Verified { verify_fuel },
            Some(PolicyView::Quorum { .. }) | None => JobPolicy::Quorum,
        }
    }
}

/// The journal key of an assignment's task.
#[must_use]
pub fn task_key(assignment: &Assignment) -> TaskKey {
    TaskKey {
        job: assignment.job,
        task: assignment.task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_proto::views::Base64;
    use compute_proto::{Hash32, JobId, ModuleId, ReplicaStatus, TaskStatus};

    fn assignment_json(task: &str, replica: &str, policy: &str) -> String {
        format!(
            r#"{{"job":"{job}","task":3,"task_status":"{task}","replica_status":"{replica}",
              "deadline_height":40,"module":"{module}","fuel_limit":1000,"policy":{policy},
              "input":{{"inline":"aGk="}},"input_size":2}}"#,
            job = JobId([1; 32]),
            module = ModuleId([2; 32]),
        )
    }

    #[test]
    fn an_assignments_answer_parses() {
        let json = format!(
            r#"{{"worker":"{w}","assignments":[{a},
                {{"job":"{job}","task":4,"task_status":"reveal","replica_status":"committed",
                  "deadline_height":41,"module":"{module}","fuel_limit":1000,"policy":null,
                  "input":{{"hash":"{h}"}},"input_size":9}}]}}"#,
            w = "ab".repeat(32),
            a = assignment_json("commit", "assigned", "null"),
            job = JobId([1; 32]),
            module = ModuleId([2; 32]),
            h = "cd".repeat(32),
        );
        let answer: AssignmentsView = serde_json::from_str(&json).unwrap();
        assert_eq!(answer.assignments.len(), 2);
        let first = &answer.assignments[0];
        assert_eq!(
            task_key(first),
            TaskKey {
                job: JobId([1; 32]),
                task: 3
            }
        );
        assert_eq!(first.task_status, TaskStatus::Commit);
        assert_eq!(first.replica_status, ReplicaStatus::Assigned);
        assert_eq!(first.input, Some(InputView::Inline(Base64(b"hi".to_vec()))));
        let second = &answer.assignments[1];
        assert_eq!(second.task_status, TaskStatus::Reveal);
        assert_eq!(second.replica_status, ReplicaStatus::Committed);
        assert_eq!(second.input, Some(InputView::Hash(Hash32([0xcd; 32]))));
    }

    #[test]
    fn an_assignment_with_a_status_the_worker_does_not_know_is_an_error() {
        let parse = |task: &str, replica: &str| {
            serde_json::from_str::<Assignment>(&assignment_json(task, replica, "null"))
                .map(|a| (a.task_status, a.replica_status))
        };
        assert_eq!(
            parse("settled", "agreed").unwrap(),
            (TaskStatus::Settled, ReplicaStatus::Agreed)
        );
        for (task, replica) in [
            ("unknown", "assigned"),
            ("commit", "unknown"),
            ("something-new", "assigned"),
            ("Commit", "assigned"),
            ("commit", ""),
        ] {
            assert!(parse(task, replica).is_err(), "{task} {replica}");
        }
    }

    #[test]
    fn the_policy_listed_with_an_assignment_decides_how_the_worker_checks() {
        let policy = |json: &str| {
            JobPolicy::from(
                serde_json::from_str::<Assignment>(&assignment_json("commit", "assigned", json))
                    .unwrap()
                    .policy,
            )
        };
        assert_eq!(
            policy(r#"{"verified":{"verify_fuel":5000000,"max_workers":3}}"#),
            JobPolicy::Verified {
                verify_fuel: 5_000_000
            }
        );
        assert_eq!(
            policy(r#"{"quorum":{"replicas":3,"quorum":2,"max_replicas":5}}"#),
            JobPolicy::Quorum
        );
        assert_eq!(policy("null"), JobPolicy::Quorum);
        // A policy half written is not the answer expected.
        assert!(serde_json::from_str::<Assignment>(&assignment_json(
            "commit",
            "assigned",
            r#"{"verified":{}}"#
        ))
        .is_err());
    }
}
