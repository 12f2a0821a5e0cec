//! What a requester does, as the `compute` tool does it: upload a module,
//! put inputs on the data plane (or inline), post a job, follow it, and
//! fetch its outputs with every hash checked.
//!
//! Transactions and queries go to a CometBFT node ([`ChainClient`]); blobs
//! go to a gateway's data plane ([`Gateway`]), bounded and checked by
//! `compute-client`. Keys stay here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use compute_client::{
    ChainClient, ClientError, Gateway, Query, SubmitEvent, SubmitOptions, Submitted,
};
use compute_proto::hash::{hash_parts, Tag};
use compute_proto::views::{
    CompletionView, DisputeStatus, DisputeView, InputView, JobView, ProgressView, TaskView,
};
use compute_proto::{
    pb, sha3_256, AccountId, BlobId, Code, Hash32, JobId, JobStatus, ModuleId, SigningKey,
};

/// A client of the gateway at `url`; it connects on first use, so a
/// command that needs no blob never needs a gateway.
pub fn gateway(url: &str) -> Result<Gateway> {
    Gateway::connect_lazy(url).with_context(|| format!("gateway URL '{url}'"))
}

/// What to say when the gateway at `url` fails a blob transfer.
fn gateway_hint(url: &str) -> String {
    format!("the gateway at {url} (is compute-node running? scripts/devnet.sh starts one)")
}

/// A transaction the `compute` tool sent last, while its fate is not
/// known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its hash (upper-case hex, as CometBFT names it).
    pub hash: String,
    /// Its nonce.
    pub nonce: u64,
    /// The node it went to.
    pub url: String,
}

/// The transaction in flight, for the error report of a command that
/// fails while one is.
static IN_FLIGHT: std::sync::Mutex<Option<InFlight>> = std::sync::Mutex::new(None);

fn in_flight_slot() -> std::sync::MutexGuard<'static, Option<InFlight>> {
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the `compute` tool says of the transactions it submits: every hash
/// before it is sent, every retry and re-signing and why (on stderr, in
/// text mode), and which transaction is in flight, so that a failure names
/// it.
#[derive(Clone, Copy, Debug)]
pub struct TxReport {
    text: bool,
}

impl TxReport {
    /// A report that prints on stderr when `text` (quiet otherwise: the
    /// JSON output names the hash).
    #[must_use]
    pub fn new(text: bool) -> Self {
        Self { text }
    }

    /// Hears of a submission's step.
    pub fn event(&self, event: &SubmitEvent) {
        let line = match event {
            SubmitEvent::Sending {
                hash,
                nonce,
                attempt,
                url,
            } => {
                let again = {
                    let mut slot = in_flight_slot();
                    let again = slot.as_ref().is_some_and(|t| &t.hash == hash);
                    *slot = Some(InFlight {
                        hash: hash.clone(),
                        nonce: *nonce,
                        url: url.clone(),
                    });
                    again
                };
                if again {
                    format!("sending transaction {hash} again (attempt {attempt})")
                } else {
                    format!("sending transaction {hash} (nonce {nonce}) to {url}")
                }
            }
            SubmitEvent::Retrying {
                hash,
                reason,
                delay,
            } => format!(
                "note: transaction {hash}: {reason}; sending it again in {} ms",
                delay.as_millis()
            ),
            SubmitEvent::Superseded {
                hash,
                nonce,
                reason,
                copy: false,
            } => format!(
                "note: transaction {hash} (nonce {nonce}) will not land ({reason}); signing again with a fresh nonce"
            ),
            SubmitEvent::Superseded {
                hash,
                reason,
                copy: true,
                ..
            } => format!(
                "note: {reason}; {hash} is that transaction's hash, not this one's: signing again with a fresh nonce"
            ),
            SubmitEvent::Waiting { hash } => {
                format!("transaction {hash} is in the mempool; waiting for its block")
            }
            SubmitEvent::CommittedNonceOnly { url } => format!(
                "note: the node at {url} does not answer /nonce (an older version): signing with the committed nonce, which does not count its mempool"
            ),
        };
        if self.text {
            eprintln!("{line}");
        }
    }

    /// The transaction sent last whose fate is not known yet.
    #[must_use]
    pub fn in_flight() -> Option<InFlight> {
        in_flight_slot().clone()
    }

    /// The transaction in flight has an answer (it is reported by whoever
    /// got it).
    pub fn settled() {
        *in_flight_slot() = None;
    }
}

/// Stores `wasm` on the chain unless it is there; returns its id and the
/// submission that stored it, when this call did (which may be accepted
/// but not yet seen committed: see [`Submitted::status`]). `observe` hears
/// of every hash before it is sent.
pub async fn upload_module(
    chain: &ChainClient,
    key: &SigningKey,
    wasm: &[u8],
    fee: u64,
    observe: &(dyn Fn(&SubmitEvent) + Send + Sync),
) -> Result<(ModuleId, Option<Submitted>)> {
    let id = ModuleId::of(wasm);
    match chain.module(&id).await {
        Ok(_) => return Ok((id, None)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).context("ask whether the module is stored"),
    }
    let params = chain
        .params()
        .await
        .context("read the chain's parameters")?;
    check_module_size(wasm.len(), Some(params.max_module_bytes))?;
    let stored = chain
        .submit_with(
            key,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: wasm.to_vec(),
            }),
            fee,
            &SubmitOptions::default(),
            observe,
        )
        .await;
    match stored {
        Ok(receipt) => Ok((id, Some(receipt))),
        // Stored by someone else meanwhile: what was wanted.
        Err(ClientError::TxRejected {
            code: Code::ModuleExists,
            ..
        }) => Ok((id, None)),
        Err(e) => Err(e).context("the module was refused"),
    }
}

/// Refuses a module the chain would refuse for its size (`max_module_bytes`
/// of `/params`, when known), before it is sent: CometBFT would only answer
/// "HTTP 400 Bad Request" to a transaction past its body limit.
pub fn check_module_size(size: usize, max_module_bytes: Option<u64>) -> Result<()> {
    match max_module_bytes {
        Some(max) if size as u64 > max => {
            bail!("module is {size} bytes, the chain accepts at most {max} (max_module_bytes)")
        }
        _ => Ok(()),
    }
}

/// The input files of a job: a directory's files in name order, or the
/// files named.
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in inputs {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!("input {} is neither a file nor a directory", path.display());
        }
    }
    if files.is_empty() {
        bail!("no input files: name files or a directory holding one file per task");
    }
    Ok(files)
}

/// Builds each task's input: inline when it fits `max_inline`, otherwise
/// uploaded to the gateway as an upload of `key`'s account (the requester's)
/// and named by hash.
pub async fn task_inputs(
    files: &[PathBuf],
    max_inline: u64,
    gateway: &Gateway,
    key: &SigningKey,
) -> Result<Vec<pb::TaskInput>> {
    let mut tasks = Vec::with_capacity(files.len());
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
        let size = bytes.len() as u64;
        let source = if size <= max_inline {
            pb::task_input::Source::Inline(bytes)
        } else {
            let id = match gateway.put_blob(key, &bytes).await {
                Ok(id) => id,
                // Unreachable: say how to start one. A refusal of the
                // upload (its header, the account, a quota) says what to do.
                Err(e) => {
                    let to = if e.grpc_code() == Some(tonic::Code::Unavailable) {
                        gateway_hint(gateway.url())
                    } else {
                        format!("the gateway at {}", gateway.url())
                    };
                    let account = key.account();
                    return Err(anyhow::Error::new(e).context(format!(
                        "upload {} to {to} as account {account}",
                        file.display()
                    )));
                }
            };
            pb::task_input::Source::Hash(id.0.to_vec())
        };
        tasks.push(pb::TaskInput {
            source: Some(source),
            size,
        });
    }
    Ok(tasks)
}

/// How far a job has come: the chain's counts over its tasks' replicas,
/// with the job's size and status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Tasks in the job.
    pub tasks: u64,
    /// Replicas wanted, assigned, committed and revealed, and tasks settled
    /// and failed, as `/job/<id>` counts them.
    #[serde(flatten)]
    pub counts: ProgressView,
    /// The job's status.
    pub status: JobStatus,
}

impl Progress {
    /// The counts of a `/job/<id>` answer (with or without its tasks).
    pub fn of(view: &JobView) -> Self {
        Progress {
            tasks: u64::from(view.summary.task_count),
            counts: view.progress,
            status: view.summary.status,
        }
    }

    /// Whether the job has ended.
    pub fn ended(&self) -> bool {
        self.status.is_final()
    }

    /// Replicas assigned out of those wanted, never more than wanted:
    /// replacements of workers that missed or were judged are said apart.
    pub fn assigned_text(&self) -> String {
        if self.counts.assigned > self.counts.wanted {
            format!(
                "{}/{} ({} drawn in all, counting replacements)",
                self.counts.wanted, self.counts.wanted, self.counts.assigned
            )
        } else {
            format!("{}/{}", self.counts.assigned, self.counts.wanted)
        }
    }

    /// One line for a log: replicas assigned out of those wanted (never
    /// more: replacements of workers that missed or were judged are counted
    /// apart), committed, revealed, and tasks settled and failed.
    pub fn line(&self) -> String {
        format!(
            "progress: assigned {} committed {} revealed {} settled {}/{} failed {}",
            self.assigned_text(),
            self.counts.committed.min(self.counts.assigned),
            self.counts.revealed.min(self.counts.assigned),
            self.counts.settled,
            self.tasks,
            self.counts.failed
        )
    }
}

/// Every deterministic failure a task can settle with: its stable code (the
/// sandbox's `Failure`, hashed into the result hash) and its name.
pub const FAILURES: [(u32, &str); 17] = [
    (1, "out of fuel"),
    (2, "memory limit reached"),
    (3, "table limit reached"),
    (4, "call depth limit reached"),
    (5, "output larger than its limit"),
    (6, "output outside linear memory"),
    (7, "alloc returned a buffer outside linear memory"),
    (8, "input larger than its limit"),
    (9, "no verify export"),
    (16, "unreachable executed (a panic?)"),
    (17, "memory access out of bounds"),
    (18, "table access out of bounds"),
    (19, "indirect call to a null entry"),
    (20, "indirect call signature mismatch"),
    (21, "integer overflow"),
    (22, "integer division by zero"),
    (23, "invalid float to integer conversion"),
];

/// The result hash of a task that failed with `code`:
/// `H("compute/failure/v1", code u32 BE)`.
pub fn failure_hash(code: u32) -> [u8; 32] {
    hash_parts(Tag::Failure, &[&code.to_be_bytes()])
}

/// A task that settled as a deterministic failure: every worker that ran it
/// agreed that it trapped, ran out of fuel or passed a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    /// The failure's stable code.
    pub code: u32,
    /// Its name.
    pub name: &'static str,
}

impl TaskFailure {
    /// The failure whose result hash is `hash`, if it is one.
    pub fn of_hash(hash: &[u8; 32]) -> Option<Self> {
        FAILURES
            .iter()
            .find(|(code, _)| failure_hash(*code) == *hash)
            .map(|&(code, name)| TaskFailure { code, name })
    }

    /// Whether the task trapped (codes 16 and up are traps).
    pub fn is_trap(&self) -> bool {
        self.code >= 16
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 1 {
            f.write_str("ran out of fuel")
        } else if self.is_trap() {
            write!(f, "trapped: {}", self.name)
        } else {
            write!(f, "failed: {}", self.name)
        }
    }
}

/// One task's canonical output, checked against its completion record.
#[derive(Debug)]
pub struct TaskOutput {
    /// The task index.
    pub index: u32,
    /// The output bytes (empty for a failure outcome).
    pub bytes: Vec<u8>,
    /// The deterministic failure the task settled with, if it did.
    pub failure: Option<TaskFailure>,
    /// The result hash the chain accepted.
    pub result_hash: Hash32,
    /// Workers that agreed.
    pub workers: Vec<AccountId>,
}

/// Collects the outputs of a job's settled tasks from their completion
/// records: inline from the chain, or by hash from the gateway (at most
/// `max_output_bytes` each); every one checked against its result hash.
pub async fn outputs(
    completions: &[CompletionView],
    gateway: &Gateway,
    max_output_bytes: u64,
) -> Result<Vec<TaskOutput>> {
    let mut out = Vec::with_capacity(completions.len());
    for completion in completions {
        let index = completion.task;
        let hash = completion.result_hash;
        let failure = TaskFailure::of_hash(&hash.0);
        let bytes = match &completion.output {
            // A failure outcome has no output bytes.
            _ if failure.is_some() => Vec::new(),
            // Nor has an empty output, which the chain shows as no output.
            None if hash.0 == sha3_256(&[]) => Vec::new(),
            Some(inline) => {
                if sha3_256(&inline.0) != hash.0 {
                    bail!("task {index}: the chain's inline output does not match its result hash");
                }
                inline.0.clone()
            }
            None => gateway
                .get_blob(&BlobId(hash.0), max_output_bytes)
                .await
                .with_context(|| {
                    format!(
                        "task {index}: output {hash} is not on the chain and was not served by {}",
                        gateway_hint(gateway.url())
                    )
                })?,
        };
        out.push(TaskOutput {
            index,
            bytes,
            failure,
            result_hash: hash,
            workers: completion.workers.clone(),
        });
    }
    Ok(out)
}

/// Writes each output to `<dir>/<index>.out`; a task that settled as a
/// failure has no output and no file.
pub fn write_outputs(dir: &Path, outputs: &[TaskOutput]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    outputs
        .iter()
        .filter(|o| o.failure.is_none())
        .map(|o| {
            let path = dir.join(format!("{:05}.out", o.index));
            std::fs::write(&path, &o.bytes).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Parses a job id, naming the fix on error.
pub fn parse_job(text: &str) -> Result<JobId> {
    JobId::from_hex(text).map_err(|e| {
        anyhow::anyhow!(
            "'{text}' is not a job id ({e}): use the 64-hex id `compute job submit` printed"
        )
    })
}

/// A dispute the requester of `compute job dispute` asked for.
pub struct Disputed<'a> {
    /// The job.
    pub job: JobId,
    /// The task.
    pub task: u32,
    /// The bond; the chain's `min_dispute_bond` when `None`.
    pub bond: Option<u64>,
    /// A file holding the task's data-plane input.
    pub input: Option<&'a Path>,
    /// The largest input fetched from the gateway.
    pub max_input_bytes: u64,
}

/// The task at `index` of `job`, with its completion record.
async fn task_of(client: &impl Query, job: &JobId, index: u32) -> Result<TaskView> {
    let (_, task) = client
        .job_task(job, index)
        .await
        .with_context(|| format!("reading task {index} of job {job}"))?;
    Ok(task)
}

/// The `Dispute` message for `d`: the chain's minimum bond unless one is
/// given, and a data-plane input read from the file given or fetched from
/// the gateway, checked against the task's input hash either way.
///
/// # Errors
/// When the task or the parameters cannot be read, or the input is not the
/// task's.
pub async fn dispute_msg(
    client: &impl Query,
    gateway: &Gateway,
    d: &Disputed<'_>,
) -> Result<pb::tx_body::Msg> {
    let bond = match d.bond {
        Some(bond) => bond,
        None => client
            .params()
            .await
            .context("reading the chain's parameters")?
            .min_dispute_bond
            .context("the chain names no min_dispute_bond: give --bond")?,
    };
    let task = task_of(client, &d.job, d.task).await?;
    let input = match (&task.input, d.input) {
        (Some(InputView::Hash(hash)), file) => {
            let id = BlobId(hash.0);
            let bytes = match file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("reading the input {}", path.display()))?,
                None => gateway
                    .get_blob(&id, d.max_input_bytes)
                    .await
                    .with_context(|| format!("fetching input blob {id}: give it with --input"))?,
            };
            if BlobId::of(&bytes) != id {
                bail!(
                    "the input given does not hash to the task's input blob {id}: the chain would refuse it"
                );
            }
            bytes
        }
        (_, Some(_)) => bail!(
            "task {} of job {} has its input inline on the chain: leave out --input",
            d.task,
            d.job
        ),
        (_, None) => Vec::new(),
    };
    Ok(pb::tx_body::Msg::Dispute(pb::Dispute {
        job_id: d.job.0.to_vec(),
        task: d.task,
        input,
        bond,
    }))
}

/// Where task `index` of `job` stands with respect to disputes.
///
/// # Errors
/// When the task or its completion record cannot be read.
pub async fn dispute_status(client: &impl Query, job: &JobId, index: u32) -> Result<DisputeView> {
    let task = task_of(client, job, index).await?;
    task.completion
        .map(|c| c.dispute)
        .with_context(|| format!("task {index} of job {job} has no completion record"))
}

/// A person's sentence for a dispute state.
#[must_use]
pub fn describe_dispute(d: &DisputeView) -> String {
    match d.status {
        DisputeStatus::NotDisputable => "the result cannot be disputed".into(),
        DisputeStatus::Open => format!(
            "open to dispute until height {}",
            d.until.unwrap_or_default()
        ),
        DisputeStatus::Disputed => "waiting for the referee".into(),
        DisputeStatus::Confirmed => format!(
            "the referee confirmed the result at height {}; the bond paid for the run and the rest was burnt",
            d.refereed_height.unwrap_or_default()
        ),
        DisputeStatus::Overturned => format!(
            "the referee overturned the result at height {}: its workers were slashed and the bond returned with a bounty",
            d.refereed_height.unwrap_or_default()
        ),
        DisputeStatus::Final => "final: its dispute window has passed".into(),
        DisputeStatus::Refereed => format!(
            "final: its reveals formed no quorum and the referee settled it at height {}",
            d.refereed_height.unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_in_flight_is_the_last_one_sent_until_it_settles() {
        let report = TxReport::new(false);
        let sending = |hash: &str, nonce| SubmitEvent::Sending {
            hash: hash.to_owned(),
            nonce,
            attempt: 1,
            url: "http://n".to_owned(),
        };
        report.event(&sending("AA", 3));
        report.event(&sending("BB", 4));
        assert_eq!(
            TxReport::in_flight(),
            Some(InFlight {
                hash: "BB".to_owned(),
                nonce: 4,
                url: "http://n".to_owned()
            })
        );
        TxReport::settled();
        assert_eq!(TxReport::in_flight(), None);
    }

    #[test]
    fn every_failure_hash_is_recognised_by_name() {
        // Pinned independently of `hash_parts`: sha3-256 of the tag, a zero
        // byte and the code as a big-endian u32.
        for (code, name) in FAILURES {
            let mut bytes = b"compute/failure/v1\0".to_vec();
            bytes.extend_from_slice(&code.to_be_bytes());
            let failure = TaskFailure::of_hash(&sha3_256(&bytes)).expect("recognised");
            assert_eq!((failure.code, failure.name), (code, name));
        }
        let names: std::collections::BTreeSet<_> = FAILURES.iter().map(|f| f.1).collect();
        assert_eq!(names.len(), FAILURES.len());
        assert_eq!(
            TaskFailure::of_hash(&failure_hash(1)).unwrap().to_string(),
            "ran out of fuel"
        );
        assert_eq!(
            TaskFailure::of_hash(&failure_hash(22)).unwrap().to_string(),
            "trapped: integer division by zero"
        );
        assert_eq!(
            TaskFailure::of_hash(&failure_hash(2)).unwrap().to_string(),
            "failed: memory limit reached"
        );
        assert_eq!(TaskFailure::of_hash(&sha3_256(b"an output")), None);
        assert_eq!(TaskFailure::of_hash(&failure_hash(99)), None);
    }

    #[tokio::test]
    async fn failures_are_reported_and_the_other_outputs_written() {
        use compute_proto::views::Base64;
        let completion = |task: u32, result_hash: [u8; 32], output: Option<&[u8]>| CompletionView {
            job: JobId([9; 32]),
            task,
            result_hash: Hash32(result_hash),
            fuel_used: 1,
            workers: vec![AccountId([1; 32])],
            height: 3,
            time_seconds: 0,
            output: output.map(|b| Base64(b.to_vec())),
            paid: 1,
            dispute: compute_proto::views::DisputeView::of(&Default::default(), 3).unwrap(),
        };
        let completions = vec![
            completion(0, sha3_256(b"zero"), Some(b"zero")),
            completion(1, failure_hash(16), None),
            completion(2, failure_hash(1), None),
            completion(3, sha3_256(b""), None),
        ];
        // No gateway is needed (nor reachable): nothing is fetched.
        let gateway = gateway("http://127.0.0.1:9").unwrap();
        let outputs = outputs(&completions, &gateway, 1 << 20).await.unwrap();
        let failures: Vec<_> = outputs
            .iter()
            .map(|o| o.failure.map(|f| f.to_string()))
            .collect();
        assert_eq!(
            failures,
            [
                None,
                Some("trapped: unreachable executed (a panic?)".to_owned()),
                Some("ran out of fuel".to_owned()),
                None
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let written = write_outputs(dir.path(), &outputs).unwrap();
        assert_eq!(
            written,
            [dir.path().join("00000.out"), dir.path().join("00003.out")]
        );
        assert_eq!(std::fs::read(&written[0]).unwrap(), b"zero");
        assert!(std::fs::read(&written[1]).unwrap().is_empty());
    }

    #[test]
    fn progress_never_shows_more_assigned_than_wanted() {
        let p = Progress {
            tasks: 1,
            counts: ProgressView {
                wanted: 1,
                assigned: 3,
                committed: 3,
                revealed: 2,
                settled: 0,
                failed: 0,
            },
            status: JobStatus::Open,
        };
        let line = p.line();
        assert!(
            line.starts_with("progress: assigned 1/1 (3 drawn in all"),
            "{line}"
        );
        assert!(!line.contains("3/1"), "{line}");
        let p = Progress {
            counts: ProgressView {
                assigned: 1,
                committed: 0,
                revealed: 0,
                ..p.counts
            },
            ..p
        };
        assert_eq!(
            p.line(),
            "progress: assigned 1/1 committed 0 revealed 0 settled 0/1 failed 0"
        );
    }

    #[test]
    fn a_module_over_the_limit_is_refused_with_the_limit() {
        let e = check_module_size(600_000, Some(524_288)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "module is 600000 bytes, the chain accepts at most 524288 (max_module_bytes)"
        );
        assert!(check_module_size(524_288, Some(524_288)).is_ok());
        assert!(check_module_size(600_000, None).is_ok());
    }
}
