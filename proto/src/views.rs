//! The JSON answers of the chain's queries, as typed structs.
//!
//! `compute-abci` builds these to answer `/abci_query`, and every client
//! (the CLI, the worker, the tests) parses answers into the same structs, so
//! renaming a field is a compile error on both sides rather than a silent
//! default. docs/PROTOCOL.md §8 lists the same fields for clients written in
//! other languages.
//!
//! Conventions: ids and hashes are lower-case hex strings, byte strings
//! (outputs, inline inputs, module code) are standard base64 with padding,
//! statuses are lower-case words, every integer is a JSON number (`u64`
//! values may exceed 2^53), and an absent optional value is `null`.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{AccountId, Hash32, JobId, ModuleId};
use crate::status::{JobStatus, ReplicaStatus, TaskStatus};

/// Bytes carried in JSON as a standard base64 string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base64(pub Vec<u8>);

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Base64)
            .map_err(serde::de::Error::custom)
    }
}

/// `/account/<hex>`: an account's balance and next nonce (zero for a key never seen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account's public key.
    pub address: AccountId,
    /// Spendable credits.
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

/// `/nonce/<hex>`: an account's next nonce as of the last block, and the
/// one that also counts the transactions the answering node's mempool
/// holds of it (what a client signs its next transaction with).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceView {
    /// The account's public key.
    pub address: AccountId,
    /// The nonce its next transaction carries as of the last committed
    /// block (as `/account` answers it).
    pub nonce: u64,
    /// The nonce its next transaction carries once the transactions this
    /// node's CheckTx accepted since that block are committed: at least
    /// `nonce`, and `nonce` plus their number.
    pub pending_nonce: u64,
}

/// `/module/<id>[?code=true]`: a stored module's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleView {
    /// The module's id, `sha3_256(wasm)`.
    pub module: ModuleId,
    /// The account that stored it.
    pub owner: AccountId,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it exports `verify`.
    pub has_verify: bool,
    /// The height it was stored at.
    pub height: i64,
    /// Functions it defines.
    pub functions: u32,
    /// Its bytes, with `?code=true` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Base64>,
}

/// `/worker/<hex>`: a registered worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    /// The worker's key.
    pub worker: AccountId,
    /// Tasks it runs at once.
    pub capacity: u32,
    /// Credits locked as a slashable bond.
    pub stake: u64,
    /// Tasks assigned and not yet ended.
    pub active_tasks: u32,
    /// The height it registered at.
    pub registered_height: i64,
    /// Its stake is held until this height, the end of the dispute window
    /// of the last result it was paid for (0: none).
    pub stake_locked_until: i64,
    /// Disputes of results it was paid for that wait for the referee.
    pub disputes_pending: u32,
}

/// A job's policy: `{"quorum": {...}}` or `{"verified": {...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyView {
    /// Replicas vote; `quorum` equal results settle.
    Quorum {
        /// Replicas drawn at first.
        replicas: u32,
        /// Equal results that settle a task.
        quorum: u32,
        /// Replicas a task may draw in all.
        max_replicas: u32,
    },
    /// One worker runs; the module's `verify` judges its output.
    Verified {
        /// Fuel `verify` may burn per judgement.
        verify_fuel: u64,
        /// Workers a task may try in all.
        max_workers: u32,
    },
}

/// A task's input: `{"inline": <base64>}` or `{"hash": <hex>}` (a blob id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputView {
    /// The input bytes, carried in the job.
    Inline(Base64),
    /// The input's blob id on the data plane.
    Hash(Hash32),
}

/// One task a worker holds, in `/worker/<hex>/assignments`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentView {
    /// The job.
    pub job: JobId,
    /// The task's index in the job.
    pub task: u32,
    /// Where the task is.
    pub task_status: TaskStatus,
    /// Where this worker's replica is.
    pub replica_status: ReplicaStatus,
    /// The height by which the replica's next step is due.
    pub deadline_height: i64,
    /// The module to run.
    pub module: ModuleId,
    /// Fuel one run may burn.
    pub fuel_limit: u64,
    /// The job's policy.
    pub policy: Option<PolicyView>,
    /// The task's input.
    pub input: Option<InputView>,
    /// The input's size in bytes.
    pub input_size: u64,
}

/// `/worker/<hex>/assignments`: the tasks a worker holds now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentsView {
    /// The worker asked about.
    pub worker: AccountId,
    /// Its tasks, in (job, task) order.
    pub assignments: Vec<AssignmentView>,
}

/// A job's terms and counters, as `/jobs` lists it and `/job/<id>` begins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job's id.
    pub job: JobId,
    /// The account that posted it.
    pub requester: AccountId,
    /// The module its tasks run.
    pub module: ModuleId,
    /// Where the job is.
    pub status: JobStatus,
    /// Its policy.
    pub policy: Option<PolicyView>,
    /// Fuel one run may burn.
    pub fuel_limit: u64,
    /// Credits paid per million fuel.
    pub price_per_mfuel: u64,
    /// Credits still held for its tasks.
    pub escrow: u64,
    /// Replicas (or workers) a task may draw in all.
    pub max_replicas: u32,
    /// The reputation a worker needs to be drawn, in parts per million.
    pub min_reputation_ppm: u32,
    /// Tasks of this job one worker may hold (0: no limit).
    pub max_tasks_per_worker: u32,
    /// The height it was posted at.
    pub posted_height: i64,
    /// The height past which unfinished tasks fail.
    pub deadline_height: i64,
    /// The height it ended at (0 while open).
    pub ended_height: i64,
    /// Tasks in the job.
    pub task_count: u32,
    /// Tasks settled.
    pub tasks_settled: u32,
    /// Tasks failed.
    pub tasks_failed: u32,
    /// Tasks cancelled.
    pub tasks_cancelled: u32,
}

/// One replica of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The worker drawn.
    pub worker: AccountId,
    /// Where the replica is.
    pub status: ReplicaStatus,
    /// Its draw slot.
    pub slot: u32,
    /// The height it was drawn at.
    pub assigned_height: i64,
    /// The height its next step is due by.
    pub deadline_height: i64,
    /// Its sealed commitment, once committed.
    pub commitment: Option<Hash32>,
    /// Its revealed result hash, once revealed.
    pub result_hash: Option<Hash32>,
    /// Fuel its run reported.
    pub fuel_used: u64,
    /// Its revealed output, when small enough to ride in the reveal.
    pub output: Option<Base64>,
    /// The length of `output` in bytes.
    pub output_bytes: u64,
    /// Credits slashed from its worker for it (a cheat).
    pub slashed: u64,
}

/// A settled task's completion record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionView {
    /// The job.
    pub job: JobId,
    /// The task's index.
    pub task: u32,
    /// The accepted result hash.
    pub result_hash: Hash32,
    /// Fuel the accepted run used.
    pub fuel_used: u64,
    /// The workers paid for it.
    pub workers: Vec<AccountId>,
    /// The height it settled at.
    pub height: i64,
    /// The block time it settled at, in seconds since the Unix epoch.
    pub time_seconds: i64,
    /// The accepted output, when it rode in the reveal.
    pub output: Option<Base64>,
    /// Credits paid out for it.
    pub paid: u64,
    /// Where it stands with respect to disputes.
    pub dispute: DisputeView,
}

/// Where a settled result stands with respect to disputes, at the height
/// the answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// Its job's results may not be disputed (Verified, or a fuel limit over
    /// `max_referee_fuel`): final when settled.
    NotDisputable,
    /// It may be disputed until `until`.
    Open,
    /// A dispute waits for the referee.
    Disputed,
    /// The referee got the same result; the disputer lost its bond.
    Confirmed,
    /// The referee got another result; this record was corrected to it.
    Overturned,
    /// The task's reveals formed no quorum and the chain's referee settled
    /// it: final.
    Refereed,
    /// Its dispute window passed without a dispute.
    Final,
}

impl DisputeStatus {
    /// Where completion `record` stands in the state after block `height`:
    /// a dispute in block `height + 1` is accepted while `height + 1 <=
    /// disputable_until`. The one rule the chain, its answers and clients
    /// read.
    #[must_use]
    pub fn of(record: &crate::pb::Completion, height: i64) -> Self {
        if record.refereed_height > 0 && record.disputed_height == 0 {
            DisputeStatus::Refereed
        } else if record.refereed_height > 0 {
            if record.overturned {
                DisputeStatus::Overturned
            } else {
                DisputeStatus::Confirmed
            }
        } else if record.disputed_height > 0 {
            DisputeStatus::Disputed
        } else if record.disputable_until == 0 {
            DisputeStatus::NotDisputable
        } else if height < record.disputable_until {
            DisputeStatus::Open
        } else {
            DisputeStatus::Final
        }
    }

    /// The status as answers spell it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DisputeStatus::NotDisputable => "not_disputable",
            DisputeStatus::Open => "open",
            DisputeStatus::Disputed => "disputed",
            DisputeStatus::Confirmed => "confirmed",
            DisputeStatus::Overturned => "overturned",
            DisputeStatus::Refereed => "refereed",
            DisputeStatus::Final => "final",
        }
    }

    /// Whether the result can no longer change.
    #[must_use]
    pub fn is_final(self) -> bool {
        !matches!(self, DisputeStatus::Open | DisputeStatus::Disputed)
    }
}

/// The dispute part of a completion record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeView {
    /// Where the result stands.
    pub status: DisputeStatus,
    /// Whether the result can no longer change (`status` is neither `open`
    /// nor `disputed`).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The last height a dispute is accepted at (`null` when not disputable).
    pub until: Option<i64>,
    /// Who disputed it.
    pub disputer: Option<AccountId>,
    /// The height the dispute was accepted at.
    pub disputed_height: Option<i64>,
    /// The height the referee judged it at.
    pub refereed_height: Option<i64>,
}

impl DisputeView {
    /// The dispute state of completion `record` in the state after block
    /// `height` ([`DisputeStatus::of`]). `None` when the record's disputer
    /// is not an account id.
    #[must_use]
    pub fn of(record: &crate::pb::Completion, height: i64) -> Option<Self> {
        let positive = |h: i64| (h > 0).then_some(h);
        let status = DisputeStatus::of(record, height);
        let disputer = if record.disputer.is_empty() {
            None
        } else {
            Some(AccountId::from_slice(&record.disputer).ok()?)
        };
        Some(Self {
            status,
            is_final: status.is_final(),
            until: positive(record.disputable_until),
            disputer,
            disputed_height: positive(record.disputed_height),
            refereed_height: positive(record.refereed_height),
        })
    }
}

/// One task of a job, in `/job/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The task's index.
    pub index: u32,
    /// Its input.
    pub input: Option<InputView>,
    /// The input's size in bytes.
    pub size: u64,
    /// Where the task is.
    pub status: TaskStatus,
    /// Replicas wanted now.
    pub replicas_wanted: u32,
    /// Replicas drawn so far, over all attempts.
    pub attempts: u32,
    /// Its replicas.
    pub replicas: Vec<ReplicaView>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// The height it ended at (0 while pending).
    pub ended_height: i64,
    /// The height its reveals formed no quorum and it went to the referee.
    pub referee_height: Option<i64>,
    /// Its completion record, once settled.
    pub completion: Option<CompletionView>,
}

/// Replica and task counts over a whole job, for progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressView {
    /// Replicas wanted now, over all tasks.
    pub wanted: u64,
    /// Replicas drawn and still live or done (missed and declined excluded).
    pub assigned: u64,
    /// Of those, committed or further.
    pub committed: u64,
    /// Of those, revealed or judged.
    pub revealed: u64,
    /// Tasks settled.
    pub settled: u64,
    /// Tasks failed or cancelled.
    pub failed: u64,
}

/// `/job/<id>[?tasks=false][&after=&limit=]`: a job, its progress, and a page of its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// Its terms and counters.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// Counts over all its tasks.
    pub progress: ProgressView,
    /// A page of its tasks; absent with `tasks=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
    /// The `after` of the next page of tasks, if any.
    #[serde(default)]
    pub next: Option<u32>,
}

/// `/jobs?status=&master=&limit=&after=`: a page of jobs in id order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsPage {
    /// The jobs of this page.
    pub jobs: Vec<JobSummary>,
    /// The `after` of the next page, if any.
    pub next: Option<JobId>,
}

/// One worker in `/workers`, with its reputation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerListing {
    /// The worker's key.
    pub worker: AccountId,
    /// Tasks it runs at once.
    pub capacity: u32,
    /// Credits locked as a slashable bond.
    pub stake: u64,
    /// Tasks assigned and not yet ended.
    pub active_tasks: u32,
    /// Its reputation score in parts per million.
    pub score_ppm: u64,
    /// Replicas settled in the winning group.
    pub agreed: u64,
    /// Fuel of those replicas.
    pub fuel_worked: u64,
    /// Times caught revealing a result outside the winning group.
    pub cheats: u64,
    /// Commit or reveal deadlines missed.
    pub missed: u64,
}

/// `/workers?limit=&after=`: a page of registered workers in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkersPage {
    /// The workers of this page.
    pub workers: Vec<WorkerListing>,
    /// The `after` of the next page, if any.
    pub next: Option<AccountId>,
}

/// `/completions?job=<id>` or `?worker=<hex>`: a page of completion records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionsPage {
    /// The records of this page.
    pub completions: Vec<CompletionView>,
}

/// `/reputation/<hex>`: a key's reputation counters and score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationView {
    /// The key.
    pub key: AccountId,
    /// Its score in parts per million.
    pub score_ppm: u64,
    /// Replicas settled in the winning group, as a worker.
    pub agreed: u64,
    /// Fuel of those replicas.
    pub fuel_worked: u64,
    /// Tasks settled for this key as requester.
    pub tasks_received: u64,
    /// Fuel of those tasks.
    pub fuel_received: u64,
    /// Times caught revealing a result outside the winning group.
    pub cheats: u64,
    /// Cheaters this key's disputes exposed.
    pub cheaters_reported: u64,
    /// Commit or reveal deadlines missed.
    pub missed: u64,
    /// Blocks whose commit this key signed as a validator.
    pub blocks_signed: u64,
    /// Blocks this key proposed as a validator.
    pub blocks_proposed: u64,
    /// Tasks of its Verified jobs that failed because `verify` refused every worker's output.
    pub verifications_failed: u64,
    /// Fuel of the tasks this key's disputes proved wrong: a watcher's
    /// network-support work.
    pub support_fuel: u64,
}

/// Stake of a validator on its way back to the operator's balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnbondingView {
    /// Credits (after any slash).
    pub amount: u64,
    /// The height at whose end they return to the operator's balance.
    pub completion_height: i64,
}

/// `/validator/<hex consensus key or address>` (and each entry of
/// `/validators`): a validator the chain manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorView {
    /// Its 32-byte ed25519 consensus key.
    pub validator: AccountId,
    /// Its 20-byte CometBFT address, 40 lower-case hex characters.
    pub address: String,
    /// The account that bonded it and earns its rewards.
    pub operator: AccountId,
    /// Stake that counts for voting power.
    pub bonded: u64,
    /// Stake unbonding, in completion order.
    pub unbonding: Vec<UnbondingView>,
    /// The voting power last sent to CometBFT (it applies two blocks
    /// later); `null` while CometBFT still holds a genesis validator's
    /// genesis power.
    pub power: Option<u64>,
    /// The power its stake and state give it now; differs from `power`
    /// while an update waits in the queue.
    pub target_power: u64,
    /// Whether an update of its power waits in the queue.
    pub queued: bool,
    /// While jailed, the first height `UnjailValidator` may be sent at.
    pub jailed_until: Option<i64>,
    /// Why it is jailed: `missed_blocks` or `double_sign`; `null` when not.
    pub jail_reason: Option<String>,
    /// Commits it missed within the last `signed_blocks_window` blocks.
    pub missed_blocks: u64,
    /// Credits slashed from it so far.
    pub slashed: u64,
    /// The height it was bonded (or first punished) at.
    pub since_height: i64,
    /// Whether it is one of the validators of CometBFT's genesis.
    pub genesis: bool,
}

/// `/validators?limit=&after=`: a page of validators in address order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsPage {
    /// The validators of this page.
    pub validators: Vec<ValidatorView>,
    /// The `after` (an address) of the next page, if any.
    pub next: Option<String>,
}

/// `/stats`: the committed height, app hash, chain id and chain-wide counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// The last committed height.
    pub height: i64,
    /// The app hash after that height.
    pub app_hash: Hash32,
    /// The chain id transactions are signed for (`null` before genesis).
    pub chain_id: Option<String>,
    /// Transactions executed in blocks.
    pub txs_ok: u64,
    /// Transactions refused in blocks.
    pub txs_failed: u64,
    /// Transfers executed.
    pub transfers: u64,
    /// Fees paid to proposers.
    pub fees_collected: u64,
    /// Credits created at genesis.
    pub credits_minted: u64,
    /// Modules stored so far.
    pub modules: u64,
    /// Workers registered now.
    pub workers: u64,
    /// Jobs posted so far.
    pub jobs_posted: u64,
    /// Jobs neither completed, failed nor cancelled.
    pub jobs_open: u64,
    /// Replica slots filled by the chain.
    pub assignments: u64,
    /// Outputs judged by `verify` on the chain.
    pub verifications: u64,
    /// Fuel the chain spent running `verify`.
    pub verify_fuel_used: u64,
    /// Tasks settled with a canonical result.
    pub tasks_settled: u64,
    /// Tasks that failed (no quorum, or the job's deadline passed).
    pub tasks_failed: u64,
    /// Credits taken from cheaters' stakes and burnt.
    pub credits_slashed: u64,
    /// Disputes accepted.
    pub disputes: u64,
    /// Settled results the referee found wrong and corrected.
    pub results_overturned: u64,
    /// Fuel the chain spent re-running disputed tasks.
    pub referee_fuel_used: u64,
    /// Bonds of disputes whose result the referee confirmed, burnt.
    pub bonds_burnt: u64,
    /// Credits bonded by disputes waiting for the referee.
    pub bonds_held: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_s_dispute_state_follows_its_record_and_the_height() {
        let record = |until, disputed, refereed, overturned| crate::pb::Completion {
            disputable_until: until,
            disputed_height: disputed,
            refereed_height: refereed,
            overturned,
            disputer: if disputed > 0 {
                vec![7; 32]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let status = |r: &crate::pb::Completion, height| DisputeView::of(r, height).unwrap().status;
        assert_eq!(
            status(&record(0, 0, 0, false), 5),
            DisputeStatus::NotDisputable
        );
        // A dispute in block `until` is still accepted: open after `until - 1`.
        assert_eq!(status(&record(10, 0, 0, false), 9), DisputeStatus::Open);
        assert_eq!(status(&record(10, 0, 0, false), 10), DisputeStatus::Final);
        assert_eq!(
            status(&record(10, 8, 0, false), 12),
            DisputeStatus::Disputed
        );
        assert_eq!(
            status(&record(10, 8, 9, false), 12),
            DisputeStatus::Confirmed
        );
        assert_eq!(
            status(&record(10, 8, 9, true), 12),
            DisputeStatus::Overturned
        );
        assert_eq!(status(&record(0, 0, 9, false), 12), DisputeStatus::Refereed);
        let view = DisputeView::of(&record(10, 8, 0, false), 9).unwrap();
        assert!(!view.is_final);
        assert_eq!(view.disputer, Some(AccountId([7; 32])));
        assert_eq!(view.refereed_height, None);
        // A disputer that is no account id is refused, not shown.
        let mut bad = record(10, 8, 0, false);
        bad.disputer = vec![1; 31];
        assert!(DisputeView::of(&bad, 9).is_none());
        for s in [
            DisputeStatus::NotDisputable,
            DisputeStatus::Open,
            DisputeStatus::Disputed,
            DisputeStatus::Confirmed,
            DisputeStatus::Overturned,
            DisputeStatus::Refereed,
            DisputeStatus::Final,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    #[test]
    fn policies_and_inputs_keep_their_tagged_json_shape() {
        let quorum = PolicyView::Quorum {
            replicas: 3,
            quorum: 2,
            max_replicas: 5,
        };
        assert_eq!(
            serde_json::to_value(quorum).unwrap(),
            serde_json::json!({"quorum": {"replicas": 3, "quorum": 2, "max_replicas": 5}})
        );
        let verified = PolicyView::Verified {
            verify_fuel: u64::MAX,
            max_workers: 3,
        };
        let text = serde_json::to_string(&verified).unwrap();
        assert_eq!(
            text,
            r#"{"verified":{"verify_fuel":18446744073709551615,"max_workers":3}}"#
        );
        assert_eq!(serde_json::from_str::<PolicyView>(&text).unwrap(), verified);
        let inline = InputView::Inline(Base64(b"hi".to_vec()));
        assert_eq!(
            serde_json::to_value(&inline).unwrap(),
            serde_json::json!({"inline": "aGk="})
        );
        let hash = InputView::Hash(Hash32([0xab; 32]));
        let text = serde_json::to_string(&hash).unwrap();
        assert_eq!(text, format!(r#"{{"hash":"{}"}}"#, "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<InputView>(&text).unwrap(), hash);
    }

    #[test]
    fn a_missing_or_misspelt_field_is_an_error_not_a_default() {
        let ok = serde_json::json!({"address": "00".repeat(32), "balance": 1, "nonce": 2});
        assert!(serde_json::from_value::<AccountView>(ok).is_ok());
        let missing = serde_json::json!({"address": "00".repeat(32), "balance": 1});
        assert!(serde_json::from_value::<AccountView>(missing).is_err());
        let bad_hex = serde_json::json!({"address": "zz", "balance": 1, "nonce": 2});
        assert!(serde_json::from_value::<AccountView>(bad_hex).is_err());
        assert!(serde_json::from_str::<Base64>("\"not base64!\"").is_err());
    }

    #[test]
    fn u64_values_past_two_to_the_53_survive_a_round_trip() {
        let account = AccountView {
            address: AccountId([7; 32]),
            balance: (1u64 << 53) + 1,
            nonce: u64::MAX,
        };
        let text = serde_json::to_string(&account).unwrap();
        assert!(text.contains("9007199254740993"));
        assert_eq!(serde_json::from_str::<AccountView>(&text).unwrap(), account);
    }
}
