//! The statuses of jobs, tasks and replicas as typed values.
//!
//! The protobuf enums carry an `UNSPECIFIED` zero and arrive as bare `i32`s;
//! these types do not. State is decoded into them once, at the protobuf
//! boundary (`TryFrom<i32>`), so consensus code matches on a closed enum and
//! never compares `status == X as i32`. Their `name` is the lower-case word
//! the chain's JSON queries print, and their serde form is that same word.

use serde::{Deserialize, Serialize};

use crate::pb;

/// A stored status that is unspecified or out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} status {value} is not a known status")]
pub struct UnknownStatus {
    /// Which kind of status ("job", "task" or "replica").
    pub kind: &'static str,
    /// The raw protobuf value.
    pub value: i32,
}

/// A status name that no status of this kind has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a {kind} status")]
pub struct UnknownStatusName {
    /// Which kind of status ("job", "task" or "replica").
    pub kind: &'static str,
    /// The name given.
    pub name: String,
}

/// Declares a status enum mirroring a protobuf enum without its zero value.
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $pb:ident, $kind:literal {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every status of this kind, in protobuf order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The lower-case word the chain's queries print.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The status a query names, if any.
            pub fn from_name(name: &str) -> Result<Self, UnknownStatusName> {
                match name {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownStatusName { kind: $kind, name: name.to_owned() }),
                }
            }

            /// The protobuf enum value.
            pub fn to_pb(self) -> pb::$pb {
                match self {
                    $($name::$variant => pb::$pb::$variant,)+
                }
            }
        }

        impl TryFrom<pb::$pb> for $name {
            type Error = UnknownStatus;

            fn try_from(value: pb::$pb) -> Result<Self, UnknownStatus> {
                match value {
                    $(pb::$pb::$variant => Ok($name::$variant),)+
                    pb::$pb::Unspecified => Err(UnknownStatus { kind: $kind, value: 0 }),
                }
            }
        }

        impl TryFrom<i32> for $name {
            type Error = UnknownStatus;

            fn try_from(value: i32) -> Result<Self, UnknownStatus> {
                pb::$pb::try_from(value)
                    .map_err(|_| UnknownStatus { kind: $kind, value })
                    .and_then($name::try_from)
            }
        }

        impl From<$name> for i32 {
            fn from(status: $name) -> i32 {
                status.to_pb() as i32
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatusName;

            fn from_str(s: &str) -> Result<Self, UnknownStatusName> {
                $name::from_name(s)
            }
        }
    };
}

status_enum! {
    /// Where a job is.
    JobStatus, JobStatus, "job" {
        /// Tasks are still being assigned, committed or revealed.
        Open = "open",
        /// Every task settled.
        Completed = "completed",
        /// At least one task failed and none is pending.
        Failed = "failed",
        /// The requester cancelled it.
        Cancelled = "cancelled",
    }
}

status_enum! {
    /// Where one task of a job is.
    TaskStatus, TaskStatus, "task" {
        /// Replicas are being assigned and commit their sealed results.
        Commit = "commit",
        /// Every replica has committed; they reveal.
        Reveal = "reveal",
        /// A canonical result was accepted.
        Settled = "settled",
        /// No result was accepted.
        Failed = "failed",
        /// The job was cancelled before this task reached its reveal phase.
        Cancelled = "cancelled",
    }
}

status_enum! {
    /// Where one replica of a task is.
    ReplicaStatus, ReplicaStatus, "replica" {
        /// Assigned; the commit is due.
        Assigned = "assigned",
        /// Committed; the reveal is due once the task opens.
        Committed = "committed",
        /// Revealed a result that matched its commitment.
        Revealed = "revealed",
        /// In the winning group (paid).
        Agreed = "agreed",
        /// Revealed a result outside the winning group.
        Cheated = "cheated",
        /// Missed its commit or reveal deadline.
        Missed = "missed",
        /// Declined by its worker before committing.
        Declined = "declined",
        /// Revealed a result that `verify` refused.
        Refused = "refused",
    }
}

impl JobStatus {
    /// Whether the job has ended (no task will change again).
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Open)
    }
}

impl TaskStatus {
    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Settled | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_number_and_its_name() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::try_from(i32::from(*s)), Ok(*s));
            assert_eq!(JobStatus::from_name(s.name()), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::try_from(i32::from(*s)), Ok(*s));
            assert_eq!(TaskStatus::from_name(s.name()), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for s in ReplicaStatus::ALL {
            assert_eq!(ReplicaStatus::try_from(i32::from(*s)), Ok(*s));
            assert_eq!(ReplicaStatus::from_name(s.name()), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert_eq!(JobStatus::ALL.len(), 4);
        assert_eq!(TaskStatus::ALL.len(), 5);
        assert_eq!(ReplicaStatus::ALL.len(), 8);
    }

    #[test]
    fn unspecified_and_unknown_values_are_refused() {
        for raw in [0, -1, 99, i32::MAX] {
            assert!(JobStatus::try_from(raw).is_err());
            assert!(TaskStatus::try_from(raw).is_err());
            assert!(ReplicaStatus::try_from(raw).is_err());
        }
        assert!(TaskStatus::from_name("unknown").is_err());
        assert!(TaskStatus::from_name("Settled").is_err());
        assert!(serde_json::from_str::<ReplicaStatus>("\"pending\"").is_err());
    }
}
