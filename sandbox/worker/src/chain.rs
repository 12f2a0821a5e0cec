//! The chain's JSON answers that the worker reads, as typed values.
//!
//! Unknown fields are ignored, so the chain may add fields without breaking
//! workers; missing fields the worker needs are errors, and so are statuses
//! it does not know (they are `compute_proto`'s closed enums, read from
//! their lower-case words). Every answer the worker reads is one of the
//! types here, parsed by serde; nothing else reads the chain's JSON.

use compute_proto::{JobId, ModuleId, ReplicaStatus, TaskStatus};
use serde::{Deserialize, Deserializer};

use crate::journal::TaskKey;

/// `/stats`, the fields the worker uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Stats {
    /// The chain id transactions are signed for.
    pub chain_id: String,
    /// The last committed height.
    pub height: u64,
}

/// `/params`, the fields the worker uses.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct ChainParams {
    /// Pages (64 KiB) of linear memory a task may reach.
    pub sandbox_memory_pages: u64,
    /// The largest output a reveal may carry inline.
    pub max_inline_output_bytes: u64,
}

/// `/account/<hex>`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Account {
    /// The next nonce the account must use.
    pub nonce: u64,
    /// Spendable credits.
    pub balance: u64,
}

/// `/worker/<hex>`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct WorkerRecord {
    /// Tasks the chain may assign at once.
    pub capacity: u32,
    /// Credits locked as a bond.
    pub stake: u64,
    /// Tasks held now.
    pub active_tasks: u32,
}

/// `/worker/<hex>/assignments`.
#[derive(Clone, Debug, Deserialize)]
pub struct Assignments {
    /// The tasks the worker holds now.
    pub assignments: Vec<Assignment>,
}

/// Where a task's input is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRef {
    /// The input itself, base64.
    Inline(String),
    /// The sha3-256 of the input blob, hex.
    Hash(String),
}

/// One task the worker holds.
#[derive(Clone, Debug, Deserialize)]
pub struct Assignment {
    /// The job.
    pub job: JobId,
    /// The task's index.
    pub task: u32,
    /// Where the task is; a word the worker does not know fails the whole
    /// answer rather than being read as some status.
    pub task_status: TaskStatus,
    /// Where this worker's replica of the task is.
    pub replica_status: ReplicaStatus,
    /// The replica's current deadline.
    pub deadline_height: u64,
    /// The job's module.
    pub module: ModuleId,
    /// The fuel one replica may use.
    pub fuel_limit: u64,
    /// The task's input.
    pub input: Option<InputRef>,
    /// The input's length in bytes.
    #[serde(default)]
    pub input_size: u64,
    /// The job's policy, when the chain lists it with the assignment;
    /// otherwise the worker reads it once per job from `/job/<id>`.
    #[serde(default, deserialize_with = "present")]
    pub policy: Option<JobPolicy>,
}

/// Deserializes a field that is present (`null` included) as `Some`, so
/// that a missing field (`None`, by `default`) stays distinguishable from a
/// job without a policy.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// How the chain judges a job's outputs, as far as the worker acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "Option<PolicyView>")]
pub enum JobPolicy {
    /// Replicas vote on the result. Also what a job without a policy gets,
    /// and what a policy kind this worker does not know is treated as (the
    /// worker then behaves as it always did).
    Quorum,
    /// One replica; every validator runs the module's `verify` on its
    /// output with `verify_fuel` as the only bound.
    Verified {
        /// The fuel `verify` runs with.
        verify_fuel: u64,
    },
}

/// The policy as the chain writes it: `{"quorum": {...}}`,
/// `{"verified": {"verify_fuel": N}}` or `null`.
#[derive(Deserialize)]
struct PolicyView {
    verified: Option<VerifiedView>,
}

#[derive(Deserialize)]
struct VerifiedView {
    verify_fuel: u64,
}

impl From<Option<PolicyView>> for JobPolicy {
    fn from(view: Option<PolicyView>) -> Self {
        match view.and_then(|v| v.verified) {
            Some(VerifiedView { verify_fuel }) => JobPolicy::Verified { verify_fuel },
            None => JobPolicy::Quorum,
        }
    }
}

/// `/job/<id>?tasks=false`, the field the worker uses. A job's terms never
/// change, so the worker reads them once per job.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct JobTerms {
    /// How the job's outputs are judged (`null` for the default quorum,
    /// but never missing: an answer without it is not the one expected).
    #[serde(deserialize_with = "required")]
    pub policy: JobPolicy,
}

/// Deserializes a field that must be present even though `null` is one of
/// its values (serde would otherwise read a missing field as `null`).
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    T::deserialize(deserializer)
}

impl Assignment {
    /// The task's key.
    #[must_use]
    pub fn key(&self) -> TaskKey {
        TaskKey {
            job: self.job,
            task: self.task,
        }
    }
}

/// `/module/<id>?code=true`, the field the worker uses.
#[derive(Clone, Debug, Deserialize)]
pub struct ModuleCode {
    /// The module's bytes, base64.
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignments_answer_parses() {
        let job = JobId([1; 32]);
        let module = ModuleId([2; 32]);
        let json = format!(
            r#"{{"worker":"{w}","assignments":[
                {{"job":"{job}","task":3,"task_status":"commit","replica_status":"assigned",
                  "deadline_height":40,"module":"{module}","fuel_limit":1000,
                  "input":{{"inline":"aGk="}},"input_size":2}},
                {{"job":"{job}","task":4,"task_status":"reveal","replica_status":"committed",
                  "deadline_height":41,"module":"{module}","fuel_limit":1000,
                  "input":{{"hash":"{h}"}},"input_size":9}}]}}"#,
            w = "ab".repeat(32),
            h = "cd".repeat(32),
        );
        let answer: Assignments = serde_json::from_str(&json).unwrap();
        assert_eq!(answer.assignments.len(), 2);
        let first = &answer.assignments[0];
        assert_eq!(first.key(), TaskKey { job, task: 3 });
        assert_eq!(first.task_status, TaskStatus::Commit);
        assert_eq!(first.replica_status, ReplicaStatus::Assigned);
        assert_eq!(answer.assignments[1].task_status, TaskStatus::Reveal);
        assert_eq!(
            answer.assignments[1].replica_status,
            ReplicaStatus::Committed
        );
        assert_eq!(first.input, Some(InputRef::Inline("aGk=".to_owned())));
        assert_eq!(
            answer.assignments[1].input,
            Some(InputRef::Hash("cd".repeat(32)))
        );
        // Today's chain does not list the policy with an assignment.
        assert_eq!(first.policy, None);
    }

    #[test]
    fn an_assignment_with_a_status_the_worker_does_not_know_is_an_error() {
        let job = JobId([1; 32]);
        let module = ModuleId([2; 32]);
        let with = |task: &str, replica: &str| {
            format!(
                r#"{{"job":"{job}","task":0,"task_status":"{task}","replica_status":"{replica}",
                  "deadline_height":40,"module":"{module}","fuel_limit":1000,
                  "input":{{"inline":"aGk="}},"input_size":2}}"#
            )
        };
        let parse = |task: &str, replica: &str| {
            serde_json::from_str::<Assignment>(&with(task, replica))
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
    fn a_policy_listed_with_an_assignment_is_used_even_when_null() {
        let job = JobId([1; 32]);
        let module = ModuleId([2; 32]);
        let with = |policy: &str| {
            format!(
                r#"{{"job":"{job}","task":0,"task_status":"commit","replica_status":"assigned",
                  "deadline_height":40,"module":"{module}","fuel_limit":1000,
                  "input":{{"inline":"aGk="}},"input_size":2,"policy":{policy}}}"#
            )
        };
        let parse = |policy: &str| {
            serde_json::from_str::<Assignment>(&with(policy))
                .unwrap()
                .policy
        };
        assert_eq!(
            parse(r#"{"verified":{"verify_fuel":5000000}}"#),
            Some(JobPolicy::Verified {
                verify_fuel: 5_000_000
            })
        );
        assert_eq!(parse("null"), Some(JobPolicy::Quorum));
    }

    #[test]
    fn a_job_s_policy_parses_from_its_terms() {
        let parse = |json: &str| serde_json::from_str::<JobTerms>(json).map(|t| t.policy);
        assert_eq!(
            parse(r#"{"job":"ab","policy":{"verified":{"verify_fuel":77}},"fuel_limit":9}"#)
                .unwrap(),
            JobPolicy::Verified { verify_fuel: 77 }
        );
        assert_eq!(
            parse(r#"{"policy":{"quorum":{"replicas":3,"quorum":2,"max_replicas":5}}}"#).unwrap(),
            JobPolicy::Quorum
        );
        assert_eq!(parse(r#"{"policy":null}"#).unwrap(), JobPolicy::Quorum);
        // A kind this worker does not know: it behaves as it always did.
        assert_eq!(
            parse(r#"{"policy":{"someday":{"x":1}}}"#).unwrap(),
            JobPolicy::Quorum
        );
        // An answer without the field is not the answer expected.
        assert!(parse(r#"{"status":"open"}"#).is_err());
        assert!(parse(r#"{"policy":{"verified":{}}}"#).is_err());
    }
}
