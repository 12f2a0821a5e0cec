//! What a requester does, as the `compute` tool does it: upload a module,
//! put inputs on the data plane (or inline), post a job, follow it, and
//! fetch its outputs with every hash checked.
//!
//! Transactions and queries go to a CometBFT node ([`ChainClient`]); blobs
//! go to a gateway's data plane (`PutBlob` / `GetBlob`). Keys stay here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::{pb, sha3_256, BlobId, Code, JobId, ModuleId, SigningKey};
use serde_json::Value;
use tonic::transport::Channel;

use crate::chain::{ChainClient, TxReceipt};

/// Bytes per `PutBlob` chunk.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Connects to a gateway's gRPC endpoint.
pub async fn gateway(url: &str) -> Result<GatewayClient<Channel>> {
    GatewayClient::connect(url.to_owned()).await.with_context(|| {
        format!("cannot reach the gateway at {url}: is compute-node running? (scripts/devnet.sh starts one)")
    })
}

/// Stores `wasm` on the chain unless it is there; returns its id and
/// whether this call stored it.
pub async fn upload_module(
    chain: &ChainClient,
    key: &SigningKey,
    wasm: &[u8],
    fee: u64,
) -> Result<(ModuleId, Option<TxReceipt>)> {
    let id = ModuleId::of(wasm);
    if chain.query(&format!("/module/{id}")).await.is_ok() {
        return Ok((id, None));
    }
    let receipt = chain
        .submit(
            key,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: wasm.to_vec(),
            }),
            fee,
            None,
        )
        .await?;
    match Code::from_u32(receipt.code) {
        Some(Code::Ok | Code::ModuleExists) => Ok((id, Some(receipt))),
        _ => bail!(
            "the module was refused (code {}): {}",
            receipt.code,
            receipt.log
        ),
    }
}

/// Stores `bytes` in the gateway's blob store under their sha3-256.
pub async fn put_blob(gateway: &mut GatewayClient<Channel>, bytes: &[u8]) -> Result<BlobId> {
    let id = BlobId::of(bytes);
    let mut chunks: Vec<pb::BlobChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|data| pb::BlobChunk {
            hash: Vec::new(),
            data: data.to_vec(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::BlobChunk::default());
    }
    chunks[0].hash = id.0.to_vec();
    let answer = gateway
        .put_blob(tokio_stream::iter(chunks))
        .await
        .with_context(|| format!("upload blob {id}"))?
        .into_inner();
    if answer.hash != id.0 {
        bail!("the gateway stored blob {id} under another hash: refusing it");
    }
    Ok(id)
}

/// Fetches a blob and checks its sha3-256 before returning it.
pub async fn get_blob(gateway: &mut GatewayClient<Channel>, id: &[u8; 32]) -> Result<Vec<u8>> {
    let mut stream = gateway
        .get_blob(pb::GetBlobRequest { hash: id.to_vec() })
        .await
        .with_context(|| format!("fetch blob {}", hex::encode(id)))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    if sha3_256(&bytes) != *id {
        bail!(
            "blob {} came back with bytes that do not match its hash: refusing it",
            hex::encode(id)
        );
    }
    Ok(bytes)
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
/// uploaded to the gateway and named by hash.
pub async fn task_inputs(
    files: &[PathBuf],
    max_inline: u64,
    gateway: &mut Option<GatewayClient<Channel>>,
    gateway_url: &str,
) -> Result<Vec<pb::TaskInput>> {
    let mut tasks = Vec::with_capacity(files.len());
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
        let size = bytes.len() as u64;
        let source = if size <= max_inline {
            pb::task_input::Source::Inline(bytes)
        } else {
            if gateway.is_none() {
                *gateway = Some(self::gateway(gateway_url).await?);
            }
            let client = gateway.as_mut().context("gateway")?;
            pb::task_input::Source::Hash(put_blob(client, &bytes).await?.0.to_vec())
        };
        tasks.push(pb::TaskInput {
            source: Some(source),
            size,
        });
    }
    Ok(tasks)
}

/// How far a job has come, counted over its tasks' replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// Tasks in the job.
    pub tasks: u64,
    /// Replicas wanted over all tasks.
    pub wanted: u64,
    /// Replicas drawn (any status).
    pub assigned: u64,
    /// Replicas that committed (or went further).
    pub committed: u64,
    /// Replicas that revealed (or were judged).
    pub revealed: u64,
    /// Tasks settled.
    pub settled: u64,
    /// Tasks failed or cancelled.
    pub failed: u64,
    /// The job's status.
    pub status: String,
}

impl Progress {
    /// Reads the counts `/job/<id>` reports (with or without its tasks).
    pub fn of(view: &Value) -> Self {
        let p = &view["progress"];
        let count = |name: &str| p[name].as_u64().unwrap_or(0);
        Progress {
            tasks: view["task_count"].as_u64().unwrap_or(0),
            wanted: count("wanted"),
            assigned: count("assigned"),
            committed: count("committed"),
            revealed: count("revealed"),
            settled: count("settled"),
            failed: count("failed"),
            status: view["status"].as_str().unwrap_or("unknown").to_owned(),
        }
    }

    /// Whether the job has ended.
    pub fn ended(&self) -> bool {
        self.status != "open"
    }
}

/// One task's canonical output, checked against its completion record.
#[derive(Debug)]
pub struct TaskOutput {
    /// The task index.
    pub index: u64,
    /// The output bytes (empty for a failure outcome).
    pub bytes: Vec<u8>,
    /// The result hash the chain accepted.
    pub result_hash: String,
    /// Workers that agreed.
    pub workers: Vec<String>,
}

/// Every completion record of a job, a page at a time.
pub async fn completions(chain: &ChainClient, job: &JobId) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after: Option<u64> = None;
    // A job has at most max_tasks_per_job tasks: the loop is bounded by it.
    for _ in 0..10_000 {
        let path = match after {
            Some(a) => format!("/completions?job={job}&limit=500&after={a}"),
            None => format!("/completions?job={job}&limit=500"),
        };
        let page = chain.query(&path).await?;
        let records = page["completions"].as_array().cloned().unwrap_or_default();
        let full = records.len() == 500;
        after = records.last().and_then(|c| c["task"].as_u64());
        all.extend(records);
        if !full || after.is_none() {
            break;
        }
    }
    Ok(all)
}

/// Collects the outputs of a job's settled tasks from their completion
/// records: inline from the chain, or by hash from the gateway; every one
/// checked against its result hash.
pub async fn outputs(
    completions: &[Value],
    gateway: &mut Option<GatewayClient<Channel>>,
    gateway_url: &str,
) -> Result<Vec<TaskOutput>> {
    let mut out = Vec::new();
    for completion in completions {
        let index = completion["task"].as_u64().unwrap_or(0);
        let hash_hex = completion["result_hash"].as_str().unwrap_or_default();
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut hash)
            .with_context(|| format!("task {index}: bad result hash '{hash_hex}'"))?;
        let bytes = match completion["output"].as_str() {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .with_context(|| format!("task {index}: output is not base64"))?;
                if sha3_256(&bytes) != hash {
                    bail!("task {index}: the chain's inline output does not match its result hash");
                }
                bytes
            }
            None => {
                if gateway.is_none() {
                    *gateway = Some(self::gateway(gateway_url).await?);
                }
                let client = gateway.as_mut().context("gateway")?;
                get_blob(client, &hash).await.with_context(|| {
                    format!("task {index}: output {hash_hex} is neither on the chain nor on the data plane (a failure outcome has no output)")
                })?
            }
        };
        let workers = completion["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect();
        out.push(TaskOutput {
            index,
            bytes,
            result_hash: hash_hex.to_owned(),
            workers,
        });
    }
    Ok(out)
}

/// Writes each output to `<dir>/<index>.out`.
pub fn write_outputs(dir: &Path, outputs: &[TaskOutput]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    outputs
        .iter()
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
