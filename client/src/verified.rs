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

use compute_proto::views::{AccountView, NonceView, WorkerView};
use compute_proto::{pb, AccountId, Code};
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

/// Recomputes what it can of the JSON answer from the proven records.
fn check_answer(answer: &VerifiedAnswer, node: &str) -> Result<(), VerifyError> {
    let route: Vec<&str> = answer
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .split('/')
        .collect();
    let inconsistent = |field: &'static str, answered: String, proven: String| {
        Err(VerifyError::Inconsistent {
            node: node.to_owned(),
            path: answer.path.clone(),
            height: answer.height,
            field,
            answered,
            proven,
        })
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
        _ => Ok(()),
    }
}

/// The proven record under `key`, decoded; an error when the answer did
/// not prove the key it must rest on.
fn proven_record<M: prost::Message + Default>(
    answer: &VerifiedAnswer,
    key: &[u8],
    node: &str,
) -> Result<Option<M>, VerifyError> {
    let proof_error = |source: ProofError| VerifyError::Proof {
        node: node.to_owned(),
        path: answer.path.clone(),
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
    answer: &VerifiedAnswer,
    node: &str,
) -> Result<T, VerifyError> {
    serde_json::from_slice(&answer.value).map_err(|e| VerifyError::Node {
        node: node.to_owned(),
        path: answer.path.clone(),
        detail: format!("the answer is not the expected JSON: {e}"),
    })
}
