//! The ABCI layer: serves an [`App`] to CometBFT with `tendermint-abci`.
//!
//! `tendermint-abci` clones the application once per connection (CometBFT
//! opens four: consensus, mempool, query, snapshot) and runs each on its own
//! thread, so the state machine sits behind one mutex; queries read a
//! snapshot of the committed store without it, and the snapshot connection
//! lists and serves state-sync snapshots from files without it. Every
//! handler answers every input without panicking; a panic would close the
//! connection and stop CometBFT.

use std::sync::{Arc, Mutex, MutexGuard};

use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::response_process_proposal::ProposalStatus;
use tendermint_proto::v0_38::abci::{
    response_apply_snapshot_chunk, response_offer_snapshot, ExecTxResult,
    RequestApplySnapshotChunk, RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, RequestPrepareProposal, RequestProcessProposal,
    RequestQuery, ResponseApplySnapshotChunk, ResponseCheckTx, ResponseCommit,
    ResponseFinalizeBlock, ResponseInfo, ResponseInitChain, ResponseListSnapshots,
    ResponseLoadSnapshotChunk, ResponseOfferSnapshot, ResponsePrepareProposal,
    ResponseProcessProposal, ResponseQuery, Snapshot,
};
use tendermint_proto::v0_38::abci::{MisbehaviorType, ValidatorUpdate};
use tendermint_proto::v0_38::crypto::public_key::Sum;
use tendermint_proto::v0_38::crypto::{ProofOp, ProofOps, PublicKey};

use crate::app::{App, BlockInput};
use crate::codes::CODESPACE;
use crate::snapshot::{Applied, ChunkError, OfferError, Restore, Snapshots};
use crate::store::Store;

/// The ABCI application version reported by `Info`; bumped with every
/// change of the state machine's rules.
pub const APP_VERSION: u64 = 6;

/// An [`App`] shared by the ABCI connections.
pub struct AbciApp<S: Store> {
    inner: Arc<Mutex<App<S>>>,
    /// The committed store, read by queries without the lock above: a slow
    /// query never delays a block.
    store: Arc<S>,
    /// The next nonces CheckTx counted since the last commit, which
    /// `/nonce` reads without the lock above (they have their own, held for
    /// one map operation).
    pending: Arc<crate::query::PendingNonces>,
    /// Signature verdicts: CheckTx verifies here before it takes the lock
    /// above, so that a block on the consensus connection does not wait for
    /// the mempool's signature checks, and does not redo them.
    signatures: Arc<crate::sigcache::SigCache>,
    /// Heights of state the app keeps for historical queries.
    history: u64,
    /// This node's snapshots: taken after commits, listed and served from
    /// files without the lock above. `None` serves none.
    snapshots: Option<Arc<Snapshots>>,
    /// The snapshot being restored (state sync), between OfferSnapshot and
    /// its last chunk.
    restore: Arc<Mutex<Option<Restore>>>,
}

impl<S: Store> Clone for AbciApp<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            store: Arc::clone(&self.store),
            pending: Arc::clone(&self.pending),
            signatures: Arc::clone(&self.signatures),
            history: self.history,
            snapshots: self.snapshots.clone(),
            restore: Arc::clone(&self.restore),
        }
    }
}

impl<S: Store> AbciApp<S> {
    /// Wraps `app` for serving.
    pub fn new(app: App<S>) -> Self {
        let store = app.shared_store();
        let pending = app.shared_pending();
        let history = app.state_history();
        let signatures = app.shared_signatures();
        Self {
            inner: Arc::new(Mutex::new(app)),
            store,
            pending,
            signatures,
            history,
            snapshots: None,
            restore: Arc::default(),
        }
    }

    /// Takes, lists and serves `snapshots` (set before serving: every
    /// connection gets a clone).
    pub fn with_snapshots(mut self, snapshots: Arc<Snapshots>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// Verifies the signatures of `txs` (raw CheckTx transactions) as one
    /// batch, so that CheckTx finds their verdicts; what does not decode is
    /// left for CheckTx to refuse.
    pub fn verify_signatures(&self, txs: &[&[u8]]) {
        let decoded: Vec<compute_proto::SignedTx> = txs
            .iter()
            .filter_map(|tx| compute_proto::SignedTx::decode(tx, tx.len()).ok())
            .collect();
        let refs: Vec<&compute_proto::SignedTx> = decoded.iter().collect();
        let _verdicts = self.signatures.verify_batch(&refs);
    }

    fn restoring(&self) -> MutexGuard<'_, Option<Restore>> {
        self.restore.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn app(&self) -> MutexGuard<'_, App<S>> {
        // Poisoned only if a handler panicked, which already stopped the node.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<S: Store> Application for AbciApp<S> {
    fn info(&self, request: RequestInfo) -> ResponseInfo {
        let app = self.app();
        let (height, hash) = match app.store().commit_info() {
            Some(info) => (info.height, info.app_hash),
            None => (0, Vec::new()),
        };
        tracing::info!(
            cometbft = %request.version,
            height,
            app_hash = %hex::encode(&hash),
            "info"
        );
        ResponseInfo {
            data: "compute-abci".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            app_version: APP_VERSION,
            last_block_height: height,
            last_block_app_hash: hash.into(),
        }
    }

    fn init_chain(&self, request: RequestInitChain) -> ResponseInitChain {
        let validators: Vec<[u8; 32]> = request
            .validators
            .iter()
            .filter_map(|v| match v.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
                Some(Sum::Ed25519(bytes)) => <[u8; 32]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .collect();
        let mut app = self.app();
        match app.init_chain(
            &request.chain_id,
            request.initial_height,
            &request.app_state_bytes,
            &validators,
        ) {
            Ok(app_hash) => {
                tracing::info!(
                    chain_id = %request.chain_id,
                    validators = validators.len(),
                    app_hash = %hex::encode(app_hash),
                    "genesis"
                );
                ResponseInitChain {
                    consensus_params: None,
                    validators: Vec::new(),
                    app_hash: app_hash.to_vec().into(),
                }
            }
            Err(e) => {
                // A chain must not start from a genesis its validators cannot
                // agree on; stopping here makes CometBFT stop too, with this
                // message in our log as the reason.
                tracing::error!("refusing genesis: {e}");
                eprintln!("compute-abci: refusing genesis: {e}");
                std::process::exit(2);
            }
        }
    }

    fn check_tx(&self, request: RequestCheckTx) -> ResponseCheckTx {
        // The signature first, outside the lock (CometBFT bounds the size
        // of what reaches CheckTx); the state machine then reads the
        // verdict and checks everything else, in its own order.
        if let Ok(tx) = compute_proto::SignedTx::decode(&request.tx, request.tx.len()) {
            let _verdict = self.signatures.verify(&tx);
        }
        let outcome = self.app().check_tx(&request.tx);
        tracing::debug!(code = outcome.code.value(), log = %outcome.log, "check_tx");
        ResponseCheckTx {
            code: outcome.code.value(),
            log: outcome.log,
            codespace: CODESPACE.to_owned(),
            gas_wanted: 1,
            events: outcome.events,
            ..Default::default()
        }
    }

    fn prepare_proposal(&self, request: RequestPrepareProposal) -> ResponsePrepareProposal {
        let max_bytes = u64::try_from(request.max_tx_bytes).unwrap_or(0);
        ResponsePrepareProposal {
            txs: self.app().prepare_proposal(&request.txs, max_bytes),
        }
    }

    fn process_proposal(&self, request: RequestProcessProposal) -> ResponseProcessProposal {
        let accept = self.app().process_proposal(&request.txs);
        if !accept {
            tracing::warn!(
                height = request.height,
                "rejecting a proposal with undecodable transactions"
            );
        }
        ResponseProcessProposal {
            status: if accept {
                ProposalStatus::Accept
            } else {
                ProposalStatus::Reject
            } as i32,
        }
    }

    fn finalize_block(&self, request: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        // BlockIdFlag::Commit: the validator signed the block that was committed.
        const COMMIT_FLAG: i32 = 2;
        let signers: Vec<Vec<u8>> = request
            .decided_last_commit
            .iter()
            .flat_map(|commit| &commit.votes)
            .filter(|vote| vote.block_id_flag == COMMIT_FLAG)
            .filter_map(|vote| vote.validator.as_ref().map(|v| v.address.to_vec()))
            .collect();
        let consensus = consensus_input(&request);
        let mut app = self.app();
        let output = app.finalize_block_with(
            BlockInput {
                height: request.height,
                proposer_address: &request.proposer_address,
                signer_addresses: &signers,
                txs: &request.txs,
                hash: &request.hash,
                time_seconds: request.time.as_ref().map_or(0, |t| t.seconds),
            },
            &consensus,
        );
        tracing::info!(
            height = request.height,
            txs = request.txs.len(),
            app_hash = %hex::encode(output.app_hash),
            "finalize_block"
        );
        ResponseFinalizeBlock {
            events: output.events,
            tx_results: output
                .tx_results
                .into_iter()
                .map(|r| ExecTxResult {
                    code: r.code.value(),
                    log: r.log,
                    codespace: CODESPACE.to_owned(),
                    events: r.events,
                    gas_wanted: 1,
                    gas_used: 1,
                    ..Default::default()
                })
                .collect(),
            validator_updates: output
                .validator_updates
                .iter()
                .map(|u| ValidatorUpdate {
                    pub_key: Some(PublicKey {
                        sum: Some(Sum::Ed25519(u.pub_key.to_vec())),
                    }),
                    // Powers are capped far below i64::MAX (params.rs).
                    power: i64::try_from(u.power).unwrap_or(i64::MAX),
                })
                .collect(),
            consensus_param_updates: None,
            app_hash: output.app_hash.to_vec().into(),
        }
    }

    fn commit(&self) -> ResponseCommit {
        let mut app = self.app();
        let height = app.commit();
        if let Some(snapshots) = &self.snapshots {
            // Under the lock: the snapshot's view is opened before any
            // later commit can start.
            snapshots.after_commit(&self.store, height);
        }
        drop(app);
        tracing::debug!(height, "commit");
        // Keep every block: the chain is the audit trail of work and payment.
        ResponseCommit { retain_height: 0 }
    }

    fn list_snapshots(&self) -> ResponseListSnapshots {
        let Some(snapshots) = &self.snapshots else {
            return ResponseListSnapshots::default();
        };
        ResponseListSnapshots {
            snapshots: snapshots
                .list()
                .into_iter()
                .map(|s| Snapshot {
                    height: s.height,
                    format: crate::snapshot::FORMAT,
                    chunks: s.chunks,
                    hash: s.hash.to_vec().into(),
                    metadata: s.metadata.into(),
                })
                .collect(),
        }
    }

    fn load_snapshot_chunk(&self, request: RequestLoadSnapshotChunk) -> ResponseLoadSnapshotChunk {
        let chunk = self.snapshots.as_ref().map_or_else(Vec::new, |s| {
            s.load_chunk(request.height, request.format, request.chunk)
        });
        ResponseLoadSnapshotChunk {
            chunk: chunk.into(),
        }
    }

    fn offer_snapshot(&self, request: RequestOfferSnapshot) -> ResponseOfferSnapshot {
        use response_offer_snapshot::Result as Offer;
        let answer = |result: Offer| ResponseOfferSnapshot {
            result: result as i32,
        };
        let mut restoring = self.restoring();
        // A new offer replaces whatever was being restored.
        *restoring = None;
        if let Some(info) = self.store.commit_info() {
            tracing::warn!(
                height = info.height,
                "refusing a snapshot: this node holds state already (only a fresh node restores)"
            );
            return answer(Offer::Reject);
        }
        let Some(snapshot) = request.snapshot else {
            return answer(Offer::Reject);
        };
        match Restore::offer(
            snapshot.height,
            snapshot.format,
            snapshot.chunks,
            &snapshot.hash,
            &snapshot.metadata,
            &request.app_hash,
        ) {
            Ok(restore) => {
                tracing::info!(
                    height = snapshot.height,
                    chunks = snapshot.chunks,
                    app_hash = %hex::encode(&request.app_hash),
                    "restoring a snapshot"
                );
                *restoring = Some(restore);
                answer(Offer::Accept)
            }
            Err(error) => {
                tracing::warn!(height = snapshot.height, %error, "refusing a snapshot");
                answer(match error {
                    OfferError::Format(_) => Offer::RejectFormat,
                    OfferError::Refused(_) => Offer::Reject,
                })
            }
        }
    }

    fn apply_snapshot_chunk(
        &self,
        request: RequestApplySnapshotChunk,
    ) -> ResponseApplySnapshotChunk {
        use response_apply_snapshot_chunk::Result as Chunk;
        let answer = |result: Chunk| ResponseApplySnapshotChunk {
            result: result as i32,
            ..Default::default()
        };
        let mut restoring = self.restoring();
        let Some(restore) = restoring.as_mut() else {
            tracing::warn!(
                index = request.index,
                "a chunk arrived with no snapshot accepted"
            );
            return answer(Chunk::RejectSnapshot);
        };
        match restore.apply(request.index, &request.chunk) {
            Ok(Applied::Staged | Applied::Again) => answer(Chunk::Accept),
            Ok(Applied::Complete) => {
                let Some(restore) = restoring.take() else {
                    return answer(Chunk::RejectSnapshot);
                };
                let (height, app_hash) = (restore.height(), restore.app_hash());
                let entries = restore.entries();
                match self
                    .app()
                    .install_snapshot(height, app_hash, restore.into_state())
                {
                    Ok(()) => {
                        tracing::info!(
                            height,
                            entries,
                            app_hash = %hex::encode(app_hash),
                            "restored the state from a snapshot by state sync"
                        );
                        answer(Chunk::Accept)
                    }
                    Err(error) => {
                        tracing::warn!(height, %error, "refusing a snapshot");
                        answer(Chunk::RejectSnapshot)
                    }
                }
            }
            Err(ChunkError::Refetch(why)) => {
                tracing::warn!(
                    index = request.index,
                    sender = %request.sender,
                    %why,
                    "refusing a snapshot chunk; fetching it again from another peer"
                );
                ResponseApplySnapshotChunk {
                    result: Chunk::Retry as i32,
                    refetch_chunks: vec![request.index],
                    reject_senders: if request.sender.is_empty() {
                        Vec::new()
                    } else {
                        vec![request.sender]
                    },
                }
            }
            Err(ChunkError::Snapshot(why)) => {
                tracing::warn!(index = request.index, %why, "refusing a snapshot");
                *restoring = None;
                answer(Chunk::RejectSnapshot)
            }
        }
    }

    fn query(&self, request: RequestQuery) -> ResponseQuery {
        let outcome = crate::app::query_snapshot(
            &*self.store,
            &self.pending,
            &request.path,
            crate::app::QueryOptions {
                height: request.height,
                prove: request.prove,
                history: self.history,
            },
        );
        let proof_ops = request.prove.then(|| ProofOps {
            ops: outcome
                .proofs
                .into_iter()
                .map(|p| ProofOp {
                    r#type: crate::tree::PROOF_OP_TYPE.to_owned(),
                    key: p.key,
                    data: p.proof,
                })
                .collect(),
        });
        ResponseQuery {
            code: outcome.code.value(),
            log: outcome.log,
            value: outcome.value.into(),
            height: outcome.height,
            proof_ops,
            codespace: CODESPACE.to_owned(),
            ..Default::default()
        }
    }
}

/// What FinalizeBlock's request says about the validators: every vote of
/// the last commit (missed when its flag is `ABSENT`) and the evidence.
fn consensus_input(request: &RequestFinalizeBlock) -> crate::validators::ConsensusInput {
    // BlockIdFlag::Absent: the validator's vote is not in the commit.
    const ABSENT_FLAG: i32 = 1;
    let votes = request
        .decided_last_commit
        .iter()
        .flat_map(|commit| &commit.votes)
        .filter_map(|vote| {
            vote.validator.as_ref().map(|v| crate::validators::Vote {
                address: v.address.to_vec(),
                missed: vote.block_id_flag == ABSENT_FLAG,
            })
        })
        .collect();
    let misbehavior = request
        .misbehavior
        .iter()
        .filter_map(|m| {
            let kind = match MisbehaviorType::try_from(m.r#type) {
                Ok(MisbehaviorType::DuplicateVote) => {
                    crate::validators::MisbehaviorKind::DuplicateVote
                }
                Ok(MisbehaviorType::LightClientAttack) => {
                    crate::validators::MisbehaviorKind::LightClientAttack
                }
                _ => return None,
            };
            m.validator
                .as_ref()
                .map(|v| crate::validators::Misbehavior {
                    kind,
                    address: v.address.to_vec(),
                    height: m.height,
                })
        })
        .collect();
    crate::validators::ConsensusInput { votes, misbehavior }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use std::time::Duration;

    #[test]
    fn finalize_block_reads_votes_and_evidence_and_answers_validator_updates() {
        use tendermint_proto::v0_38::abci::{CommitInfo, Misbehavior, Validator, VoteInfo};
        let genesis_key = compute_proto::SigningKey::from_seed([9; 32]);
        let operator = compute_proto::SigningKey::from_seed([1; 32]);
        let consensus = compute_proto::SigningKey::from_seed([2; 32]);
        let app = AbciApp::new(App::new(MemStore::new()));
        let app_state = format!(
            r#"{{"accounts":[{{"address":"{}","balance":1000000}}]}}"#,
            operator.account()
        );
        app.init_chain(RequestInitChain {
            chain_id: "c".into(),
            initial_height: 1,
            app_state_bytes: app_state.into_bytes().into(),
            validators: vec![ValidatorUpdate {
                pub_key: Some(PublicKey {
                    sum: Some(Sum::Ed25519(genesis_key.account().0.to_vec())),
                }),
                power: 10,
            }],
            ..Default::default()
        });
        let tx = compute_proto::TxBuilder::new("c").sign(
            &operator,
            0,
            compute_proto::pb::tx_body::Msg::BondValidator(compute_proto::pb::BondValidator {
                pub_key: consensus.account().0.to_vec(),
                stake: 300_000,
            }),
        );
        let vote = |seed: u8, flag: i32| VoteInfo {
            validator: Some(Validator {
                address: crate::app::validator_address(&[seed; 32]).to_vec().into(),
                power: 10,
            }),
            block_id_flag: flag,
        };
        let evidence = |kind: MisbehaviorType| Misbehavior {
            r#type: kind as i32,
            validator: Some(Validator {
                address: vec![7; 20].into(),
                power: 10,
            }),
            height: 1,
            ..Default::default()
        };
        let request = RequestFinalizeBlock {
            txs: vec![tx.into()],
            decided_last_commit: Some(CommitInfo {
                round: 0,
                votes: vec![vote(3, 1), vote(4, 2), vote(5, 3)],
            }),
            misbehavior: vec![
                evidence(MisbehaviorType::DuplicateVote),
                evidence(MisbehaviorType::Unknown),
                evidence(MisbehaviorType::LightClientAttack),
            ],
            height: 1,
            proposer_address: crate::app::validator_address(&genesis_key.account().0)
                .to_vec()
                .into(),
            ..Default::default()
        };
        let input = consensus_input(&request);
        let missed: Vec<bool> = input.votes.iter().map(|v| v.missed).collect();
        assert_eq!(missed, [true, false, false], "only ABSENT is a miss");
        let kinds: Vec<_> = input.misbehavior.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                crate::validators::MisbehaviorKind::DuplicateVote,
                crate::validators::MisbehaviorKind::LightClientAttack
            ]
        );
        let response = app.finalize_block(request);
        assert_eq!(
            response.tx_results[0].code, 0,
            "{}",
            response.tx_results[0].log
        );
        assert_eq!(
            response.validator_updates,
            vec![ValidatorUpdate {
                pub_key: Some(PublicKey {
                    sum: Some(Sum::Ed25519(consensus.account().0.to_vec())),
                }),
                power: 30,
            }]
        );
    }

    #[test]
    fn queries_answer_while_a_block_holds_the_state_machine() {
        let app = AbciApp::new(App::new(MemStore::new()));
        // What FinalizeBlock holds for the whole block.
        let _block = app.app();
        let (sender, receiver) = std::sync::mpsc::channel();
        let querier = app.clone();
        std::thread::spawn(move || {
            // `/nonce` reads CheckTx's count of the mempool, not the state
            // machine: it does not wait for the block either.
            for path in ["/stats".to_owned(), format!("/nonce/{}", "ab".repeat(32))] {
                let answer = querier.query(RequestQuery {
                    path,
                    ..Default::default()
                });
                let _ = sender.send(answer);
            }
        });
        for _ in 0..2 {
            let answer = receiver
                .recv_timeout(Duration::from_secs(30))
                .expect("the query waited for the state machine's lock");
            assert_eq!(answer.code, 0, "{}", answer.log);
            assert_eq!(answer.height, 0);
        }
    }
}
