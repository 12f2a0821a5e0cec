//! Query answers believed without believing the node: the answer is asked
//! with proofs, the header that carries the app hash after its height is
//! verified by the light client ([`crate::light`]), and every proof op is
//! checked against that app hash ([`crate::proof`]).
//!
//! **What is checked.** That every raw state key the node says the answer
//! rests on is proven present with its value, or absent, in the verified
//! state; that an answer which reads state carries proofs at all; and, for
//! the records whose JSON this module can recompute from the raw value
//! (`/account`, `/nonce`'s `nonce`, `/worker`), that the JSON answer says
//! what the proven record says.
//!
//! **What is not.** Other answers' JSON is the node's rendering of proven
//! records: the records are proven, the rendering is not recomputed. A list
//! proves each entry it returns, not that none was left out; `/stats`'s
//! height and app hash and `/nonce`'s `pending_nonce` are not state.

use std::time::{Duration, Instant};

use compute_proto::views::{
    AccountView, CompletionsPage, DisputeView, JobView, NonceView, WorkerView,
};
use compute_proto::{pb, AccountId, Code, JobId};
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient};

use crate::light::{LightClient, LightError, LightSource, TrustedBlock};
use crate::proof::{proven_state, ProofError, ProvenState};

/// Why an answer could not be believed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The node did not answer.
    #[error("abci_query {path} at {node} failed: {detail}")]
    Node {
        /// The node's URL.
        node: String,
        /// The query path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The header could not be verified, or the node lied about it.
    #[error(transparent)]
    Light(#[from] LightError),
    /// A proof did not verify against the verified app hash.
    #[error(
        "node {node} answered {path} at height {height} with a proof that does not hold: {source}"
    )]
    Proof {
        /// The node's URL.
        node: String,
        /// The query path.
        path: String,
        /// The answer's height.
        height: u64,
        /// What failed.
        source: Box<ProofError>,
    },
    /// The answer reads state but carries no proof.
    #[error("node {node} answered {path} at height {height} without proofs: it cannot be verified (pass --trust-node to believe it anyway)")]
    NoProof {
        /// The node's URL.
        node: String,
        /// The query path.
        path: String,
        /// The answer's height.
        height: u64,
    },
    /// The JSON answer says other than the proven record.
    #[error("node {node} lied in {path} at height {height}: it answered {field} = {answered}, the proven state holds {proven}")]
    Inconsistent {
        /// The node's URL.
        node: String,
        /// The query path.
        path: String,
        /// The answer's height.
        height: u64,
        /// The field.
        field: &'static str,
        /// What the node said.
        answered: String,
        /// What the proof shows.
        proven: String,
    },
    /// The block after the answer's height did not come in time.
    #[error(
        "block {height} (which carries the app hash of the answer) did not come within {waited:?}"
    )]
    NoNextBlock {
        /// The block waited for.
        height: u64,
        /// How long.
        waited: Duration,
    },
}

/// A query answer with what proves it.
#[derive(Clone, Debug)]
pub struct VerifiedAnswer {
    /// The query path.
    pub path: String,
    /// The ABCI code (0, or 102 for a record proven absent).
    pub code: u32,
    /// The node's log (why a record was not found).
    pub log: String,
    /// The height the answer is for.
    pub height: u64,
    /// The JSON answer (empty when the code is not 0).
    pub value: Vec<u8>,
    /// The raw state the answer rests on, proven.
    pub proven: ProvenState,
    /// The verified block whose header carries the app hash after
    /// `height`: block `height + 1`.
    pub header: TrustedBlock,
}

/// Asks `path` (at `height`, or the latest when `None`) of the node at
/// `rpc` with proofs, waits up to `wait` for the block after the answer's
/// height, verifies its header with `light` and the proofs against its app
/// hash, and checks the answers it can recompute.
///
/// # Errors
/// [`VerifyError`], naming the node and what it got wrong.
pub async fn verified_query<S: LightSource>(
    rpc: &HttpClient,
    node: &str,
    light: &mut LightClient<S>,
    path: &str,
    height: Option<u64>,
    wait: Duration,
) -> Result<VerifiedAnswer, VerifyError> {
    let node_error = |detail: String| VerifyError::Node {
        node: node.to_owned(),
        path: path.to_owned(),
        detail,
    };
    let asked = height
        .map(Height::try_from)
        .transpose()
        .map_err(|e| node_error(e.to_string()))?;
    let answer = rpc
        .abci_query(Some(path.to_owned()), Vec::new(), asked, true)
        .await
        .map_err(|e| node_error(e.to_string()))?;
    let code = answer.code.value();
    let answered = answer.height.value();
    if let Some(asked) = height.filter(|&h| h > 0 && h != answered) {
        return Err(node_error(format!(
            "asked for height {asked}, it answered for height {answered}"
        )));
    }
    if code != Code::Ok.value() && code != Code::NotFound.value() {
        return Err(node_error(format!("code {code}: {}", answer.log)));
    }
    let ops = answer.proof.map(|p| p.ops).unwrap_or_default();
    if ops.is_empty() && code == Code::Ok.value() && reads_records_by_key(path) {
        return Err(VerifyError::NoProof {
            node: node.to_owned(),
            path: path.to_owned(),
            height: answered,
        });
    }
    wait_for_block(rpc, answered.saturating_add(1), wait).await?;
    let (header, root) = light.state_root_for_query(answered).await?;
    let proven = proven_state(&root, &ops).map_err(|source| VerifyError::Proof {
        node: node.to_owned(),
        path: path.to_owned(),
        height: answered,
        source: Box::new(source),
    })?;
    let verified = VerifiedAnswer {
        path: path.to_owned(),
        code,
        log: answer.log,
        height: answered,
        value: answer.value,
        proven,
        header,
    };
    check_answer(&verified, node)?;
    Ok(verified)
}

/// Whether `path` reads records by key (so that its answer must carry a
/// proof, and a node serves it at past heights too) rather than listing.
#[must_use]
pub fn reads_records_by_key(path: &str) -> bool {
    let route = path.split('?').next().unwrap_or("").trim_matches('/');
    let mut segments = route.split('/');
    let first = segments.next().unwrap_or("");
    let rest: Vec<&str> = segments.collect();
    matches!(
        (first, rest.as_slice()),
        (
            "account" | "nonce" | "worker" | "job" | "module" | "reputation" | "validator",
            [_]
        ) | ("params" | "stats", [])
    )
}

/// Waits until the node reports `height`.
async fn wait_for_block(rpc: &HttpClient, height: u64, wait: Duration) -> Result<(), VerifyError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(status) = rpc.status().await {
            if status.sync_info.latest_block_height.value() >= height {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(VerifyError::NoNextBlock {
                height,
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an answer says, and what its proofs show (the header they were
/// checked against aside).
struct Claim<'a> {
    path: &'a str,
    code: u32,
    height: u64,
    value: &'a [u8],
    proven: &'a ProvenState,
}

impl Claim<'_> {
    /// The error of an answer whose `field` says `answered` where its
    /// proven records say `proven`.
    fn inconsistent(
        &self,
        node: &str,
        field: &'static str,
        answered: String,
        proven: String,
    ) -> VerifyError {
        VerifyError::Inconsistent {
            node: node.to_owned(),
            path: self.path.to_owned(),
            height: self.height,
            field,
            answered,
            proven,
        }
    }
}

/// Recomputes what it can of the JSON answer from the proven records.
fn check_answer(verified: &VerifiedAnswer, node: &str) -> Result<(), VerifyError> {
    check_claim(
        &Claim {
            path: &verified.path,
            code: verified.code,
            height: verified.height,
            value: &verified.value,
            proven: &verified.proven,
        },
        node,
    )
}

/// [`check_answer`] of an answer's parts.
fn check_claim(answer: &Claim<'_>, node: &str) -> Result<(), VerifyError> {
    let route: Vec<&str> = answer
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .split('/')
        .collect();
    let inconsistent = |field: &'static str, answered: String, proven: String| {
        Err(answer.inconsistent(node, field, answered, proven))
    };
    match route.as_slice() {
        ["account", hex] | ["nonce", hex] => {
            let Ok(id) = AccountId::from_hex(hex) else {
                return Ok(());
            };
            let record = proven_record::<pb::Account>(
                answer,
                &compute_proto::state::account_key(&id),
                node,
            )?
            .unwrap_or_default();
            let (balance, nonce) = if route[0] == "account" {
                let view: AccountView = parse_view(answer, node)?;
                (Some(view.balance), view.nonce)
            } else {
                let view: NonceView = parse_view(answer, node)?;
                (None, view.nonce)
            };
            if let Some(balance) = balance.filter(|b| *b != record.balance) {
                return inconsistent("balance", balance.to_string(), record.balance.to_string());
            }
            if nonce != record.nonce {
                return inconsistent("nonce", nonce.to_string(), record.nonce.to_string());
            }
            Ok(())
        }
        ["worker", hex] => {
            let Ok(id) = AccountId::from_hex(hex) else {
                return Ok(());
            };
            let record =
                proven_record::<pb::Worker>(answer, &compute_proto::state::worker_key(&id), node)?;
            match (record, answer.code == Code::Ok.value()) {
                (None, false) => Ok(()),
                (None, true) => {
                    inconsistent("worker", "a registered worker".into(), "no worker".into())
                }
                (Some(_), false) => {
                    inconsistent("worker", "not found".into(), "a registered worker".into())
                }
                (Some(record), true) => {
                    let view: WorkerView = parse_view(answer, node)?;
                    if view.stake != record.stake {
                        return inconsistent(
                            "stake",
                            view.stake.to_string(),
                            record.stake.to_string(),
                        );
                    }
                    if view.capacity != record.capacity {
                        return inconsistent(
                            "capacity",
                            view.capacity.to_string(),
                            record.capacity.to_string(),
                        );
                    }
                    Ok(())
                }
            }
        }
        ["job", hex] => {
            let Ok(id) = JobId::from_hex(hex) else {
                return Ok(());
            };
            let record =
                proven_record::<pb::Job>(answer, &compute_proto::state::job_key(&id), node)?;
            match (record, answer.code == Code::Ok.value()) {
                (None, false) => Ok(()),
                (None, true) => inconsistent("job", "a job".into(), "no job".into()),
                (Some(_), false) => inconsistent("job", "not found".into(), "a job".into()),
                (Some(record), true) => {
                    let view: JobView = parse_view(answer, node)?;
                    let s = &view.summary;
                    let checks = [
                        field("job", s.job, id),
                        field("status", i32::from(s.status), record.status),
                        field("task_count", s.task_count, record.task_count),
                        field("tasks_settled", s.tasks_settled, record.tasks_settled),
                        field("tasks_failed", s.tasks_failed, record.tasks_failed),
                        field("tasks_cancelled", s.tasks_cancelled, record.tasks_cancelled),
                        field("ended_height", s.ended_height, record.ended_height),
                        field("escrow", s.escrow, record.escrow),
                        field("requester", s.requester, hex::encode(&record.requester)),
                        field("module", s.module, hex::encode(&record.module_id)),
                    ];
                    match first_mismatch(checks) {
                        Some((field, answered, proven)) => inconsistent(field, answered, proven),
                        None => Ok(()),
                    }
                }
            }
        }
        ["completions"] => check_completions(answer, node),
        _ => Ok(()),
    }
}

/// Each completion a `/completions` page lists must be its proven record,
/// field for field, and belong to the job or worker asked about: a page
/// cannot change a result hash, nor pass off another job's records.
fn check_completions(answer: &Claim<'_>, node: &str) -> Result<(), VerifyError> {
    if answer.code != Code::Ok.value() {
        return Ok(());
    }
    let inconsistent = |field: &'static str, answered: String, proven: String| {
        Err(answer.inconsistent(node, field, answered, proven))
    };
    let query = answer.path.split_once('?').map_or("", |(_, q)| q);
    let arg = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    let job = arg("job").and_then(|hex| JobId::from_hex(hex).ok());
    let worker = arg("worker").and_then(|hex| AccountId::from_hex(hex).ok());
    let page: CompletionsPage = parse_view(answer, node)?;
    for c in &page.completions {
        let at = format!("task {} of job {}", c.task, c.job);
        if job.is_some_and(|job| job != c.job) {
            return inconsistent(
                "job",
                at,
                format!("a completion of job {}", job.unwrap_or(c.job)),
            );
        }
        if worker.is_some_and(|w| !c.workers.contains(&w)) {
            return inconsistent("workers", at, "a completion the worker was paid for".into());
        }
        let key = compute_proto::state::completion_key(&c.job, c.task);
        let Some(record) = proven_record::<pb::Completion>(answer, &key, node)? else {
            return inconsistent("completion", at, "no completion".into());
        };
        let workers: Vec<&[u8]> = c.workers.iter().map(|w| w.as_bytes().as_slice()).collect();
        let proven_workers: Vec<&[u8]> = record.workers.iter().map(Vec::as_slice).collect();
        let output = c.output.as_ref().map_or(&[][..], |o| o.0.as_slice());
        let checks = [
            field(
                "result_hash",
                hex::encode(c.result_hash.0),
                hex::encode(&record.result_hash),
            ),
            field("fuel_used", c.fuel_used, record.fuel_used),
            field("paid", c.paid, record.paid),
            field("height", c.height, record.height),
            field("time_seconds", c.time_seconds, record.time_seconds),
            field(
                "workers",
                format!("{workers:x?}"),
                format!("{proven_workers:x?}"),
            ),
            field("output", hex::encode(output), hex::encode(&record.output)),
            field(
                "job",
                hex::encode(c.job.as_bytes()),
                hex::encode(&record.job_id),
            ),
            field("task", c.task, record.task),
            field(
                "dispute",
                format!("{:?}", Some(&c.dispute)),
                format!(
                    "{:?}",
                    DisputeView::of(&record, i64::try_from(answer.height).unwrap_or(i64::MAX))
                        .as_ref()
                ),
            ),
        ];
        if let Some((field, answered, proven)) = first_mismatch(checks) {
            return inconsistent(field, format!("{at}: {answered}"), proven);
        }
    }
    Ok(())
}

/// One field of a view beside the proven record's, both as text.
fn field(
    name: &'static str,
    answered: impl std::fmt::Display,
    proven: impl std::fmt::Display,
) -> (&'static str, String, String) {
    (name, answered.to_string(), proven.to_string())
}

/// The first field whose view and record differ.
fn first_mismatch<const N: usize>(
    fields: [(&'static str, String, String); N],
) -> Option<(&'static str, String, String)> {
    fields
        .into_iter()
        .find(|(_, answered, proven)| answered != proven)
}

/// The proven record under `key`, decoded; an error when the answer did
/// not prove the key it must rest on.
fn proven_record<M: prost::Message + Default>(
    answer: &Claim<'_>,
    key: &[u8],
    node: &str,
) -> Result<Option<M>, VerifyError> {
    let proof_error = |source: ProofError| VerifyError::Proof {
        node: node.to_owned(),
        path: answer.path.to_owned(),
        height: answer.height,
        source: Box::new(source),
    };
    match answer.proven.get(key) {
        None => Err(proof_error(ProofError::MissingProof {
            key: crate::proof::StateKey(key.to_vec()),
        })),
        Some(None) => Ok(None),
        Some(Some(raw)) => M::decode(raw).map(Some).map_err(|e| {
            proof_error(ProofError::Malformed {
                key: crate::proof::StateKey(key.to_vec()),
                detail: format!("the proven value does not decode: {e}"),
            })
        }),
    }
}

/// The JSON answer as a view.
fn parse_view<T: serde::de::DeserializeOwned>(
    answer: &Claim<'_>,
    node: &str,
) -> Result<T, VerifyError> {
    serde_json::from_slice(answer.value).map_err(|e| VerifyError::Node {
        node: node.to_owned(),
        path: answer.path.to_owned(),
        detail: format!("the answer is not the expected JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_proto::views::{Base64, CompletionView, JobSummary, ProgressView};
    use compute_proto::{Hash32, JobStatus};
    use prost::Message as _;

    fn record(job: &JobId, task: u32, workers: &[AccountId]) -> pb::Completion {
        pb::Completion {
            job_id: job.as_bytes().to_vec(),
            task,
            result_hash: vec![7; 32],
            fuel_used: 500,
            workers: workers.iter().map(|w| w.as_bytes().to_vec()).collect(),
            height: 9,
            time_seconds: 1_700_000_000,
            output: b"out".to_vec(),
            paid: 2,
            ..Default::default()
        }
    }

    fn view(r: &pb::Completion) -> CompletionView {
        CompletionView {
            job: JobId::from_slice(&r.job_id).unwrap(),
            task: r.task,
            result_hash: Hash32(r.result_hash.clone().try_into().unwrap()),
            fuel_used: r.fuel_used,
            workers: r
                .workers
                .iter()
                .map(|w| AccountId::from_slice(w).unwrap())
                .collect(),
            height: r.height,
            time_seconds: r.time_seconds,
            output: Some(Base64(r.output.clone())),
            paid: r.paid,
            dispute: compute_proto::views::DisputeView::of(r, r.height).unwrap(),
        }
    }

    /// Checks a `/completions` page at `path` listing `listed`, with the
    /// records in `proven` proven.
    fn check(
        path: &str,
        listed: &[CompletionView],
        proven: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), VerifyError> {
        let value = serde_json::to_vec(&CompletionsPage {
            completions: listed.to_vec(),
        })
        .unwrap();
        let proven = ProvenState::of(proven.iter().cloned());
        check_claim(
            &Claim {
                path,
                code: 0,
                height: 9,
                value: &value,
                proven: &proven,
            },
            "http://node",
        )
    }

    fn field_of(result: Result<(), VerifyError>) -> &'static str {
        match result {
            Err(VerifyError::Inconsistent { field, .. }) => field,
            other => panic!("not an inconsistency: {other:?}"),
        }
    }

    #[test]
    fn a_job_must_say_what_its_proven_record_says() {
        let id = JobId([5; 32]);
        let record = pb::Job {
            requester: vec![6; 32],
            module_id: vec![7; 32],
            task_count: 4,
            status: i32::from(JobStatus::Open),
            tasks_settled: 1,
            escrow: 40,
            ..pb::Job::default()
        };
        let summary = JobSummary {
            job: id,
            requester: AccountId([6; 32]),
            module: compute_proto::ModuleId([7; 32]),
            status: JobStatus::Open,
            policy: None,
            fuel_limit: 0,
            price_per_mfuel: 0,
            escrow: 40,
            max_replicas: 0,
            min_reputation_ppm: 0,
            max_tasks_per_worker: 0,
            posted_height: 0,
            deadline_height: 0,
            ended_height: 0,
            task_count: 4,
            tasks_settled: 1,
            tasks_failed: 0,
            tasks_cancelled: 0,
        };
        let check_job = |summary: &JobSummary, proven: Option<&pb::Job>| {
            let value = serde_json::to_vec(&JobView {
                summary: summary.clone(),
                progress: ProgressView::default(),
                tasks: None,
                next: None,
            })
            .unwrap();
            let proven = ProvenState::of([(
                compute_proto::state::job_key(&id),
                proven.map(prost::Message::encode_to_vec),
            )]);
            check_claim(
                &Claim {
                    path: &format!("/job/{id}?tasks=false"),
                    code: 0,
                    height: 9,
                    value: &value,
                    proven: &proven,
                },
                "http://node",
            )
        };
        check_job(&summary, Some(&record)).unwrap();
        let mut lied = summary.clone();
        lied.status = JobStatus::Completed;
        assert_eq!(field_of(check_job(&lied, Some(&record))), "status");
        let mut lied = summary.clone();
        lied.tasks_failed = 3;
        assert_eq!(field_of(check_job(&lied, Some(&record))), "tasks_failed");
        assert_eq!(field_of(check_job(&summary, None)), "job");
    }

    #[test]
    fn a_completions_page_must_be_its_proven_records_of_the_job_asked() {
        let job = JobId([1; 32]);
        let other = JobId([2; 32]);
        let ada = AccountId([3; 32]);
        let bo = AccountId([4; 32]);
        let ours = record(&job, 0, &[ada]);
        let theirs = record(&other, 0, &[bo]);
        let key = |r: &pb::Completion| {
            compute_proto::state::completion_key(&JobId::from_slice(&r.job_id).unwrap(), r.task)
        };
        let proven = [
            (key(&ours), Some(ours.encode_to_vec())),
            (key(&theirs), Some(theirs.encode_to_vec())),
        ];
        let by_job = format!("/completions?job={job}&limit=10");
        check(&by_job, &[view(&ours)], &proven).unwrap();
        check(
            &format!("/completions?worker={ada}"),
            &[view(&ours)],
            &proven,
        )
        .unwrap();

        // A result hash, an output or a payment other than the record's.
        let mut lied = view(&ours);
        lied.result_hash = Hash32([8; 32]);
        assert_eq!(field_of(check(&by_job, &[lied], &proven)), "result_hash");
        let mut lied = view(&ours);
        lied.output = Some(Base64(b"forged".to_vec()));
        assert_eq!(field_of(check(&by_job, &[lied], &proven)), "output");
        let mut lied = view(&ours);
        lied.workers = vec![bo];
        assert_eq!(field_of(check(&by_job, &[lied], &proven)), "workers");
        // Another job's real record passed off as this job's.
        assert_eq!(field_of(check(&by_job, &[view(&theirs)], &proven)), "job");
        // A worker's page listing a completion it was not paid for.
        assert_eq!(
            field_of(check(
                &format!("/completions?worker={ada}"),
                &[view(&theirs)],
                &proven
            )),
            "workers"
        );
        // A record proven absent, and one not proven at all.
        let absent = [(key(&ours), None)];
        assert_eq!(
            field_of(check(&by_job, &[view(&ours)], &absent)),
            "completion"
        );
        assert!(matches!(
            check(&by_job, &[view(&ours)], &[]),
            Err(VerifyError::Proof { .. })
        ));
    }
}
