//! The state machine: genesis, CheckTx, FinalizeBlock, Commit, Info and
//! Query over any [`Store`]. It knows nothing of sockets or of RocksDB; the
//! ABCI server ([`crate::abci`]) is a thin layer around it.

use compute_proto::{pb, SignedTx, TxError};

use crate::apphash::LastCommit;
use crate::codes::{Code, Rejection};
use crate::draw_index::DrawIndex;
use crate::events::Event;
use crate::genesis::{Genesis, GenesisError};
use crate::ledger::{self, Ctx};
use crate::msg;
use crate::reputation;
use crate::snapshot::InstallError;
use crate::state::{keys, StateRead};
use crate::store::{Delta, Layered, StateTx, Store};
use crate::verify::Verifier;

/// The verdict on one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct TxOutcome {
    /// `Code::Ok` or the rejection's code.
    pub code: Code,
    /// Empty on success, else a message a person can act on.
    pub log: String,
    /// Events of an executed transaction.
    pub events: Vec<Event>,
}

impl TxOutcome {
    fn ok(events: Vec<Event>) -> Self {
        Self {
            code: Code::Ok,
            log: String::new(),
            events,
        }
    }

    fn rejected(rejection: &Rejection) -> Self {
        Self {
            code: rejection.code(),
            log: rejection.to_string(),
            events: Vec::new(),
        }
    }
}

/// What FinalizeBlock needs from CometBFT's request.
#[derive(Clone, Copy, Debug)]
pub struct BlockInput<'a, T: AsRef<[u8]>> {
    /// The height of the block.
    pub height: i64,
    /// The 20-byte consensus address of the proposer.
    pub proposer_address: &'a [u8],
    /// The 20-byte addresses of the validators that signed the last commit
    /// (CometBFT's `decided_last_commit` votes with flag `COMMIT`).
    pub signer_addresses: &'a [Vec<u8>],
    /// The transactions, in block order.
    pub txs: &'a [T],
    /// The block's hash: part of every assignment draw's seed.
    pub hash: &'a [u8],
    /// The block time in seconds since the Unix epoch (for records only;
    /// no rule depends on it).
    pub time_seconds: i64,
}

/// What FinalizeBlock answers.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockOutput {
    /// One outcome per transaction, in order.
    pub tx_results: Vec<TxOutcome>,
    /// Block-level events.
    pub events: Vec<Event>,
    /// Changes of validators' voting power for CometBFT (it applies them
    /// two blocks later); see [`crate::validators`].
    pub validator_updates: Vec<crate::validators::ValidatorUpdate>,
    /// The app hash after this block.
    pub app_hash: [u8; 32],
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryOutcome {
    /// `Code::Ok` or why the query failed.
    pub code: Code,
    /// Empty on success, else what went wrong and how to ask instead.
    pub log: String,
    /// JSON on success.
    pub value: Vec<u8>,
    /// The height the answer is for.
    pub height: i64,
    /// With `prove`: one proof per raw state key the answer read, against
    /// the app hash after `height` (in the header of block `height + 1`).
    pub proofs: Vec<KeyProof>,
}

/// A raw state key and the ICS-23 proof of its value (or absence) in the
/// state tree (see [`crate::tree`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProof {
    /// The raw key.
    pub key: Vec<u8>,
    /// A protobuf `cosmos.ics23.v1.CommitmentProof`: an existence proof,
    /// which carries the raw value, or a non-existence proof.
    pub proof: Vec<u8>,
}

/// What a query asks besides its path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// The height to answer at; 0 for the last commit.
    pub height: i64,
    /// Whether to prove the raw keys the answer read.
    pub prove: bool,
    /// Heights of state the node keeps (see [`App::with_state_history`]).
    pub history: u64,
}

#[derive(Clone, Debug)]
struct Chain {
    chain_id: String,
    params: pb::Params,
}

/// The store holds commits but not what every commit comes with (the chain
/// id and parameters, the state tree, a 32-byte app hash): it is corrupt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CorruptStore(pub String);

/// What the state machine reads from its store when it opens.
struct Loaded {
    chain: Option<Chain>,
    last: LastCommit,
    base: u64,
}

impl Loaded {
    /// The chain, last commit and genesis height `store` holds.
    fn from_store<S: Store>(store: &S) -> Result<Self, CorruptStore> {
        let corrupt = |why: &str| CorruptStore(why.to_owned());
        let last = match store.commit_info() {
            Some(info) => LastCommit {
                height: info.height,
                app_hash: <[u8; 32]>::try_from(info.app_hash.as_slice()).map_err(|_| {
                    corrupt("stored app hash is not 32 bytes: the state is corrupt")
                })?,
            },
            None => LastCommit {
                height: 0,
                app_hash: [0; 32],
            },
        };
        let chain = match (store.chain_id(), store.params()) {
            (Some(chain_id), Some(params)) => Some(Chain {
                chain_id,
                // Held resolved, as InitChain holds them.
                params: crate::params::resolved(params),
            }),
            _ if last.height == 0 => None,
            _ => {
                return Err(corrupt(
                    "state has commits but no chain id or params: the state is corrupt",
                ))
            }
        };
        let base = match crate::tree::base_height(store) {
            Some(base) => base,
            None if last.height == 0 => 0,
            None => return Err(corrupt("state has commits but no state tree: it was written by an older compute-abci; resync this node")),
        };
        Ok(Self { chain, last, base })
    }
}

struct PendingBlock {
    height: i64,
    delta: Delta,
    app_hash: [u8; 32],
}

/// The compute network's state machine over a store `S`.
pub struct App<S: Store> {
    /// Shared with the query connection, which reads snapshots of it
    /// without the lock that FinalizeBlock and Commit hold.
    store: std::sync::Arc<S>,
    chain: Option<Chain>,
    /// Writes of `InitChain`, committed with the first block.
    genesis: Option<Delta>,
    /// The block between FinalizeBlock and Commit.
    block: Option<PendingBlock>,
    /// CheckTx's view: the effects of transactions accepted into the mempool
    /// since the last commit, so one account can queue several in order.
    check: Delta,
    /// The next nonce of each account in `check`, shared with the query
    /// connection, which answers `/nonce` from it without this state
    /// machine's lock.
    pending: std::sync::Arc<crate::query::PendingNonces>,
    last: LastCommit,
    /// Compiles stored modules and runs `verify` for Verified jobs.
    verifier: Verifier,
    /// Signature verdicts already reached (CheckTx's, for the proposal and
    /// the block), shared with the ABCI layer, which verifies before it
    /// takes this state machine's lock.
    signatures: std::sync::Arc<crate::sigcache::SigCache>,
    /// The genesis height: tree version 0 (see [`crate::tree`]).
    base: u64,
    /// Past heights whose state tree this node keeps (queries and proofs
    /// at them), the last commit included.
    history: u64,
    /// The assignment draw's index: derived from the state and held in
    /// memory only (see [`crate::draw_index`]).
    draw_index: DrawIndex,
}

/// Heights of state kept by default for historical queries and proofs.
pub const DEFAULT_STATE_HISTORY: u64 = 10_000;
/// Stale tree records pruned at most per commit; the rest waits.
const PRUNE_PER_COMMIT: usize = 20_000;

/// The 20-byte CometBFT address of an ed25519 consensus key.
pub fn validator_address(pub_key: &[u8; 32]) -> [u8; 20] {
    crate::validators::address_of(pub_key)
}

const EMPTY: &Delta = &Delta::new();

impl<S: Store> App<S> {
    /// Opens the state machine on `store`, resuming from its last commit.
    ///
    /// # Panics
    /// When the store holds commits but no genesis records: it is corrupt.
    pub fn new(store: S) -> Self {
        let loaded = Loaded::from_store(&store).unwrap_or_else(|why| panic!("{why}"));
        Self {
            store: std::sync::Arc::new(store),
            chain: loaded.chain,
            genesis: None,
            block: None,
            check: Delta::new(),
            pending: std::sync::Arc::default(),
            last: loaded.last,
            verifier: Verifier::default(),
            signatures: std::sync::Arc::default(),
            base: loaded.base,
            history: DEFAULT_STATE_HISTORY,
            draw_index: DrawIndex::new(),
        }
    }

    /// Reads the chain id, parameters, last commit and genesis height from
    /// the store again, and forgets whatever was pending (genesis, a
    /// finalized block, CheckTx's view): after the store was written
    /// outside the state machine, as a restored snapshot is.
    ///
    /// # Errors
    /// [`CorruptStore`] when the store holds commits but no chain id,
    /// parameters or state tree.
    pub fn reload(&mut self) -> Result<(), CorruptStore> {
        let loaded = Loaded::from_store(&*self.store)?;
        self.chain = loaded.chain;
        self.last = loaded.last;
        self.base = loaded.base;
        self.genesis = None;
        self.block = None;
        self.check = Delta::new();
        self.pending.clear();
        // The store changed outside the blocks the index followed.
        self.draw_index.mark_stale();
        Ok(())
    }

    /// Installs the state of a snapshot restored by state sync: `state`
    /// holds every raw state entry after `height`, and `app_hash` is the
    /// app hash CometBFT's light client verified for that height. The tree
    /// of `state` is built as version 0 of this node's tree (this node's
    /// tree then starts at `height`); only if its root equals `app_hash`
    /// are the state, the tree, the genesis height and the commit record
    /// written, in one atomic commit. The state machine is then reloaded,
    /// so that the next block is `height + 1`.
    ///
    /// # Errors
    /// [`InstallError`] when this node holds state already, or the state
    /// does not hash to `app_hash` or lacks the chain's records; nothing
    /// is written then.
    pub fn install_snapshot(
        &mut self,
        height: u64,
        app_hash: [u8; 32],
        state: Delta,
    ) -> Result<(), InstallError> {
        if let Some(info) = self.store.commit_info() {
            return Err(InstallError::NotFresh(info.height));
        }
        if self.genesis.is_some() || self.chain.is_some() {
            return Err(InstallError::NotFresh(self.last.height));
        }
        let commit_height = i64::try_from(height)
            .ok()
            .filter(|h| *h > 0)
            .ok_or(InstallError::Height(height))?;
        if let Some((key, _)) = state
            .iter()
            .find(|(k, _)| k.first().is_none_or(|b| *b >= crate::tree::TREE_PREFIX))
        {
            return Err(InstallError::NotStateKey(hex::encode(key)));
        }
        // The tree of the state alone, as version 0 over nothing.
        let empty = crate::store::MemStore::new();
        let (root, tree) = crate::tree::apply(&empty, &state, 0);
        if root != app_hash {
            return Err(InstallError::RootMismatch {
                computed: hex::encode(root),
                trusted: hex::encode(app_hash),
            });
        }
        // Authentic from here on; still, nothing that would make a restart
        // halt is written.
        let params = state
            .lookup(&keys::params())
            .flatten()
            .and_then(|raw| <pb::Params as prost::Message>::decode(raw).ok());
        if params.is_none() {
            return Err(InstallError::Incomplete("parameters"));
        }
        if state.lookup(&keys::chain_id()).flatten().is_none() {
            return Err(InstallError::Incomplete("chain id"));
        }
        let mut writes = state;
        writes.merge(tree);
        writes.put(crate::tree::base_key(), height.to_be_bytes().to_vec());
        self.store.commit(
            &writes,
            &pb::CommitInfo {
                height: commit_height,
                app_hash: app_hash.to_vec(),
            },
        );
        self.reload().unwrap_or_else(|why| {
            panic!("a verified snapshot was written but does not load, halting: {why}")
        });
        Ok(())
    }

    /// Keeps the state tree of the last `heights` heights (at least 1, the
    /// last commit) for historical queries; older versions are pruned.
    pub fn with_state_history(mut self, heights: u64) -> Self {
        self.history = heights.max(1);
        self
    }

    /// Heights of state this node keeps for queries.
    pub fn state_history(&self) -> u64 {
        self.history
    }

    /// The tree version of `height`.
    fn version(&self, height: i64) -> u64 {
        u64::try_from(height)
            .ok()
            .and_then(|h| h.checked_sub(self.base))
            .unwrap_or_else(|| panic!("height {height} lies before genesis height {}", self.base))
    }

    /// Keeps the modules this validator compiles in `dir`, so that a
    /// restart does not compile them again.
    pub fn with_module_cache(mut self, dir: std::path::PathBuf) -> Self {
        self.verifier = Verifier::new(Some(dir));
        self
    }

    /// The committed store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The committed store, shared: queries read it through
    /// [`query_snapshot`] without holding the state machine.
    pub fn shared_store(&self) -> std::sync::Arc<S> {
        std::sync::Arc::clone(&self.store)
    }

    /// The next nonces CheckTx counted since the last commit, shared:
    /// `/nonce` reads them through [`query_snapshot`] without holding the
    /// state machine.
    pub fn shared_pending(&self) -> std::sync::Arc<crate::query::PendingNonces> {
        std::sync::Arc::clone(&self.pending)
    }

    /// The signature verdicts this state machine reads, shared: the ABCI
    /// layer fills them for CheckTx without holding the state machine.
    pub fn shared_signatures(&self) -> std::sync::Arc<crate::sigcache::SigCache> {
        std::sync::Arc::clone(&self.signatures)
    }

    /// The last commit, as `Info` reports it.
    pub fn last_commit(&self) -> LastCommit {
        self.last
    }

    /// The assignment draw's index as this state machine holds it.
    pub fn draw_index(&self) -> &DrawIndex {
        &self.draw_index
    }

    /// Compares the assignment draw's index with one built afresh from the
    /// committed state, when it follows the last commit (an index that
    /// does not is rebuilt before its next use): the check tests make
    /// after every block.
    ///
    /// # Errors
    /// The first difference found, as text.
    pub fn check_draw_index(&self) -> Result<(), String> {
        let Some(chain) = self.chain.as_ref() else {
            return Ok(());
        };
        if self.draw_index.follows() != u64::try_from(self.last.height).ok() {
            return Ok(());
        }
        let committed = Layered::new(&*self.store, self.genesis.as_ref().unwrap_or(EMPTY));
        self.draw_index.check(&committed, &chain.params)
    }

    /// The chain id, once genesis has run.
    pub fn chain_id(&self) -> Option<&str> {
        self.chain.as_ref().map(|c| c.chain_id.as_str())
    }

    /// Runs genesis: balances, parameters and the validator registry.
    /// Returns the genesis app hash. Nothing is stored until the first Commit.
    ///
    /// # Errors
    /// [`GenesisError`] when `app_state` is refused.
    pub fn init_chain(
        &mut self,
        chain_id: &str,
        initial_height: i64,
        app_state: &[u8],
        validators: &[[u8; 32]],
    ) -> Result<[u8; 32], GenesisError> {
        let genesis = Genesis::parse(app_state)?;
        for key in validators {
            compute_proto::check_public_key(key).map_err(|e| {
                GenesisError::InvalidValidatorKey(compute_proto::AccountId(*key), e)
            })?;
        }
        let mut state = StateTx::new(&*self.store);
        for (account, balance) in &genesis.balances {
            state.put_account(
                account,
                &pb::Account {
                    balance: *balance,
                    nonce: 0,
                },
            );
        }
        for key in validators {
            state.put_raw(keys::validator(&validator_address(key)), key.to_vec());
        }
        state.put_record(keys::params(), &genesis.params);
        state.put_raw(keys::chain_id(), chain_id.as_bytes().to_vec());
        let mut delta = state.into_delta();
        let genesis_height = u64::try_from(initial_height.max(1).saturating_sub(1)).unwrap_or(0);
        // The state tree starts at version 0 with genesis.
        let (app_hash, tree) = crate::tree::apply(&*self.store, &delta, 0);
        delta.merge(tree);
        delta.put(
            crate::tree::base_key(),
            genesis_height.to_be_bytes().to_vec(),
        );
        self.base = genesis_height;
        self.genesis = Some(delta);
        // Stored sparse (parameters genesis did not name are absent, as
        // before they existed), held resolved, as a restart reads them.
        self.chain = Some(Chain {
            chain_id: chain_id.to_owned(),
            params: crate::params::resolved(genesis.params),
        });
        self.last = LastCommit {
            height: initial_height.max(1).saturating_sub(1),
            app_hash,
        };
        self.check = Delta::new();
        Ok(app_hash)
    }

    /// CheckTx: decodes, verifies and runs the transaction against the
    /// check-state; on success its effects stay there for the account's
    /// next pending transaction.
    pub fn check_tx(&mut self, bytes: &[u8]) -> TxOutcome {
        match self.check_tx_inner(bytes) {
            Ok(events) => TxOutcome::ok(events),
            Err(rejection) => TxOutcome::rejected(&rejection),
        }
    }

    fn check_tx_inner(&mut self, bytes: &[u8]) -> Result<Vec<Event>, Rejection> {
        let chain = self.chain.as_ref().ok_or(Rejection::NotInitialised)?;
        let tx = SignedTx::decode(bytes, max_tx_len(&chain.params))?;
        self.signatures.verify(&tx)?;
        let ctx = check_ctx(chain, &self.verifier, self.last);
        let checked = msg::check_stateless(&tx, &ctx)?;
        let committed = Layered::new(&*self.store, self.genesis.as_ref().unwrap_or(EMPTY));
        let view = Layered::new(&committed, &self.check);
        let committed_nonce = committed.account(&tx.signer).nonce;
        let pending_nonce = view.account(&tx.signer).nonce;
        let max_pending = chain.params.max_pending_txs_per_account;
        if tx.body.nonce == pending_nonce
            && pending_nonce.saturating_sub(committed_nonce) >= u64::from(max_pending)
        {
            return Err(Rejection::TooManyPending {
                account: tx.signer,
                max: max_pending,
            });
        }
        let mut ante = StateTx::new(&view);
        msg::ante(&tx, &mut ante, &ctx)?;
        let mut body = StateTx::new(&ante);
        let mut events = msg::run(&tx, &checked, &mut body, &ctx)?;
        let body = body.into_delta();
        ante.absorb(body);
        let delta = ante.into_delta();
        self.check.merge(delta);
        // The ante step took exactly this nonce.
        self.pending
            .note(tx.signer, tx.body.nonce.saturating_add(1));
        events.insert(0, msg::message_event(&tx));
        Ok(events)
    }

    /// PrepareProposal: the mempool's transactions in order, without any that
    /// no longer pass the checks of [`App::process_proposal`], cut to
    /// `max_bytes` in total; a module past the block's compile budget is left
    /// in the mempool for a later block.
    pub fn prepare_proposal<T: AsRef<[u8]> + Clone>(&self, txs: &[T], max_bytes: u64) -> Vec<T> {
        let Some(chain) = self.chain.as_ref() else {
            return Vec::new();
        };
        let ctx = check_ctx(chain, &self.verifier, self.last);
        // A module past the block's compile budget fails the checks here
        // and stays in the mempool for a later block.
        let mut compile_units: u64 = 0;
        let decoded: Vec<Option<SignedTx>> = txs
            .iter()
            .map(|tx| proposal_checks(tx.as_ref(), &ctx, &mut compile_units).ok())
            .collect();
        let signed: Vec<&SignedTx> = decoded.iter().flatten().collect();
        let mut verdicts = self.signatures.verify_batch(&signed).into_iter();
        let mut total: u64 = 0;
        let mut out = Vec::with_capacity(txs.len());
        for (tx, decoded) in txs.iter().zip(&decoded) {
            if decoded.is_none() || !matches!(verdicts.next(), Some(Ok(()))) {
                continue;
            }
            let len = tx.as_ref().len() as u64;
            match total.checked_add(len) {
                Some(sum) if sum <= max_bytes => total = sum,
                _ => break,
            }
            out.push(tx.clone());
        }
        out
    }

    /// ProcessProposal: accepts a proposal only if every transaction passes
    /// what CheckTx checks before reading state (size, canonical encoding,
    /// keys, signatures in one batch, chain id, fee floor, the message's
    /// shape, and that a module compiles) and the block stays within its
    /// compile budget. Honest proposers include nothing else (PrepareProposal
    /// drops it), so a proposal that does comes from a faulty proposer, and
    /// no validator spends a block's time on transactions nobody pays for.
    pub fn process_proposal<T: AsRef<[u8]>>(&self, txs: &[T]) -> bool {
        let Some(chain) = self.chain.as_ref() else {
            return txs.is_empty();
        };
        let ctx = check_ctx(chain, &self.verifier, self.last);
        let mut decoded = Vec::with_capacity(txs.len());
        let mut compile_units: u64 = 0;
        for tx in txs {
            let Ok(tx) = proposal_checks(tx.as_ref(), &ctx, &mut compile_units) else {
                return false;
            };
            decoded.push(tx);
        }
        let refs: Vec<&SignedTx> = decoded.iter().collect();
        if !self
            .signatures
            .verify_batch(&refs)
            .iter()
            .all(Result::is_ok)
        {
            return false;
        }
        // Compiling here makes FinalizeBlock's compile a cache hit, and turns
        // a module that does not compile into a refused proposal.
        decoded.iter().all(|tx| match &tx.msg {
            pb::tx_body::Msg::StoreModule(m) => self.verifier.prepare(&m.wasm).is_ok(),
            _ => true,
        })
    }

    /// FinalizeBlock without anything learnt about the validators (no
    /// votes of the last commit but its signers, no evidence): see
    /// [`App::finalize_block_with`].
    ///
    /// # Panics
    /// When CometBFT skips a height: a broken invariant of the protocol.
    pub fn finalize_block<T: AsRef<[u8]>>(&mut self, input: BlockInput<'_, T>) -> BlockOutput {
        self.finalize_block_with(input, &crate::validators::ConsensusInput::default())
    }

    /// FinalizeBlock: executes the block's transactions in order, then the
    /// protocol's end of block, the block reward and the validators' end of
    /// block (evidence, liveness from `consensus.votes`, unbondings, the
    /// update queue), and computes the app hash. Nothing is stored until
    /// [`App::commit`].
    ///
    /// # Panics
    /// When CometBFT skips a height: a broken invariant of the protocol.
    pub fn finalize_block_with<T: AsRef<[u8]>>(
        &mut self,
        input: BlockInput<'_, T>,
        consensus: &crate::validators::ConsensusInput,
    ) -> BlockOutput {
        let expected = self.last.height.saturating_add(1);
        assert!(
            input.height == expected,
            "FinalizeBlock for height {} but the last commit is {}: the app and CometBFT disagree",
            input.height,
            self.last.height
        );
        let Some(chain) = self.chain.as_ref() else {
            let rejection = Rejection::NotInitialised;
            return BlockOutput {
                tx_results: input
                    .txs
                    .iter()
                    .map(|_| TxOutcome::rejected(&rejection))
                    .collect(),
                events: Vec::new(),
                validator_updates: Vec::new(),
                app_hash: self.last.app_hash,
            };
        };
        let committed = Layered::new(&*self.store, self.genesis.as_ref().unwrap_or(EMPTY));
        let mut block = StateTx::new(&committed);
        let ctx = Ctx {
            params: &chain.params,
            chain_id: &chain.chain_id,
            height: u64::try_from(input.height).unwrap_or(0),
            proposer: block.validator_account(input.proposer_address),
            time_seconds: input.time_seconds,
            verifier: &self.verifier,
            in_block: true,
        };
        let max_len = max_tx_len(&chain.params);
        let decoded: Vec<Result<SignedTx, TxError>> = input
            .txs
            .iter()
            .map(|bytes| SignedTx::decode(bytes.as_ref(), max_len))
            .collect();
        let signed: Vec<&SignedTx> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut verdicts = self.signatures.verify_batch(&signed).into_iter();
        let mut tx_results = Vec::with_capacity(decoded.len());
        let mut compile_units: u64 = 0;
        for item in &decoded {
            let outcome = match item {
                Err(e) => TxOutcome::rejected(&Rejection::Tx(e.clone())),
                Ok(tx) => match verdicts.next() {
                    Some(Ok(())) => deliver(tx, &mut block, &ctx, &mut compile_units),
                    Some(Err(e)) => TxOutcome::rejected(&Rejection::Tx(e)),
                    None => unreachable!("one verdict per decoded transaction"),
                },
            };
            let ok = outcome.code == Code::Ok;
            ledger::update_stats(&mut block, |s| {
                if ok {
                    s.txs_ok = s.txs_ok.saturating_add(1);
                } else {
                    s.txs_failed = s.txs_failed.saturating_add(1);
                }
            });
            tx_results.push(outcome);
        }
        // The protocol's own steps: the verify queue (within the block's
        // verify budget), the dispute queue (within the referee's), deadlines (they free slots), then assignment of
        // every open slot.
        let mut protocol = StateTx::new(&block);
        let mut events = crate::judge::judge_queue(&mut protocol, &ctx);
        events.extend(crate::referee::referee_queue(&mut protocol, &ctx));
        events.extend(crate::deadlines::visit_deadlines(&mut protocol, &ctx));
        events.extend(crate::assignment::assign_pending(
            &mut protocol,
            &ctx,
            input.hash,
            &mut self.draw_index,
            block.delta(),
        ));
        let delta = protocol.into_delta();
        block.absorb(delta);
        let signers = input
            .signer_addresses
            .iter()
            .filter_map(|address| block.validator_account(address))
            .collect();
        let mut reward = StateTx::new(&block);
        // Only an overflow of the total supply can fail here; the block then
        // simply mints nothing, the same on every validator.
        if let Ok(reward_events) = reputation::reward_block(
            &mut reward,
            chain.params.block_reward,
            ctx.proposer,
            signers,
        ) {
            let delta = reward.into_delta();
            block.absorb(delta);
            events.extend(reward_events);
        }
        // Validators last: a record that goes here was still mapped for
        // the reward of the commit it signed.
        let mut staking = StateTx::new(&block);
        let (validator_events, validator_updates) =
            crate::validators::end_block(&mut staking, &ctx, consensus);
        let delta = staking.into_delta();
        block.absorb(delta);
        events.extend(validator_events);
        let mut delta = block.into_delta();
        self.draw_index.finish_block(
            &Layered::new(&committed, &delta),
            &chain.params,
            ctx.height,
            &delta,
        );
        let (app_hash, tree) = crate::tree::apply(&committed, &delta, self.version(input.height));
        delta.merge(tree);
        self.block = Some(PendingBlock {
            height: input.height,
            delta,
            app_hash,
        });
        BlockOutput {
            tx_results,
            events,
            validator_updates,
            app_hash,
        }
    }

    /// Commit: writes the finalized block (and, the first time, genesis) in
    /// one atomic batch with its height and app hash; resets the check-state.
    /// Returns the committed height.
    pub fn commit(&mut self) -> i64 {
        let Some(block) = self.block.take() else {
            // Nothing was finalized since the last commit: nothing to write.
            return self.last.height;
        };
        let mut writes = self.genesis.take().unwrap_or_default();
        writes.merge(block.delta);
        // Versions below the window are no longer served: what only they
        // read goes (a bounded amount a commit; the state hash is not
        // affected, this is this node's own storage).
        let version = self.version(block.height);
        let keep_from = version.saturating_sub(self.history.saturating_sub(1));
        if keep_from > 0 {
            writes.merge(crate::tree::prune(
                &*self.store,
                keep_from,
                PRUNE_PER_COMMIT,
            ));
        }
        self.store.commit(
            &writes,
            &pb::CommitInfo {
                height: block.height,
                app_hash: block.app_hash.to_vec(),
            },
        );
        self.last = LastCommit {
            height: block.height,
            app_hash: block.app_hash,
        };
        self.check = Delta::new();
        self.pending.clear();
        block.height
    }

    /// Answers a query against the last committed state (and `/nonce`
    /// also against CheckTx's count of the mempool), or at `height`.
    pub fn query(&self, path: &str, height: i64) -> QueryOutcome {
        self.query_with(
            path,
            QueryOptions {
                height,
                prove: false,
                history: self.history,
            },
        )
    }

    /// [`App::query`] with proofs when `options.prove`.
    pub fn query_with(&self, path: &str, options: QueryOptions) -> QueryOutcome {
        query_snapshot(&*self.store, &self.pending, path, options)
    }
}

/// Answers a query from a snapshot of the last commit of `store`: the
/// height, the app hash and every record come from one commit, and no lock
/// of the state machine is taken. `/nonce` also reads `pending`, the next
/// nonces CheckTx counted since the last commit (under their own short
/// lock).
///
/// At an earlier height inside the node's history the answer is read from
/// the state tree's versions: records by key, but no pages (the tree is
/// keyed by hash, so it cannot list a range as of a past height). With
/// `prove`, every raw key the answer read gets a proof.
pub fn query_snapshot<S: Store>(
    store: &S,
    pending: &crate::query::PendingNonces,
    path: &str,
    options: QueryOptions,
) -> QueryOutcome {
    let snapshot = store.snapshot();
    let info = snapshot.commit_info();
    let committed_height = info.as_ref().map_or(0, |c| c.height);
    let refuse = |code: Code, log: String| QueryOutcome {
        code,
        log,
        value: Vec::new(),
        height: committed_height,
        proofs: Vec::new(),
    };
    let height = if options.height == 0 {
        committed_height
    } else {
        options.height
    };
    let base = crate::tree::base_height(snapshot.as_ref());
    let oldest = committed_height
        .saturating_sub(i64::try_from(options.history.max(1)).unwrap_or(i64::MAX))
        .saturating_add(1);
    let historical = height != committed_height;
    let version = base.and_then(|b| u64::try_from(height).ok()?.checked_sub(b));
    if historical && (height > committed_height || height < oldest || version.is_none()) {
        return refuse(
            Code::HeightUnavailable,
            format!(
                "height {height} is not available: this node keeps the state of heights {} to {committed_height} (query with height 0 for the latest)",
                oldest.max(
                    base.and_then(|b| i64::try_from(b).ok())
                        .unwrap_or(0)
                        .saturating_add(1)
                )
            ),
        );
    }
    let tree = crate::tree::TreeView::new(snapshot.as_ref());
    let app_hash = if historical {
        match version.map(|v| tree.root(v)) {
            Some(Ok(Some(root))) => root,
            _ => {
                return refuse(
                    Code::HeightUnavailable,
                    format!(
                        "height {height} is not available: its state has been pruned on this node"
                    ),
                )
            }
        }
    } else {
        info.and_then(|c| <[u8; 32]>::try_from(c.app_hash.as_slice()).ok())
            .unwrap_or([0; 32])
    };
    let last = LastCommit { height, app_hash };
    let past = crate::tree::PastView::new(&tree, version.unwrap_or(0));
    let view: &dyn crate::store::KvRead = if historical { &past } else { snapshot.as_ref() };
    let reads = crate::tree::ReadLog::default();
    let recorded = crate::tree::Recording::new(view, &reads);
    let no_pending = crate::query::PendingNonces::default();
    let answer = crate::query::route(
        &recorded,
        path,
        height,
        &last,
        if historical { &no_pending } else { pending },
    );
    if past.scanned() {
        return refuse(
            Code::HeightUnavailable,
            format!(
                "{path} lists records, which this node answers at its latest height only (query with height 0); records by key are served at past heights"
            ),
        );
    }
    let mut proofs = Vec::new();
    if options.prove {
        let Some(version) = version else {
            return refuse(
                Code::HeightUnavailable,
                "nothing to prove before genesis".to_owned(),
            );
        };
        for key in reads.keys() {
            match tree.prove(&key, version) {
                Ok((_, proof)) => proofs.push(KeyProof {
                    key,
                    proof: prost_ics23::Message::encode_to_vec(&proof),
                }),
                Err(e) => {
                    return refuse(
                        Code::HeightUnavailable,
                        format!("cannot prove height {height} on this node: {e:#}"),
                    )
                }
            }
        }
    }
    match answer {
        Ok(value) => QueryOutcome {
            code: Code::Ok,
            log: String::new(),
            value,
            height,
            proofs,
        },
        Err((code, log)) => QueryOutcome {
            code,
            log,
            value: Vec::new(),
            height,
            proofs,
        },
    }
}

/// Runs one signature-checked transaction in the block: the ante step's
/// writes stay even when the message then fails.
/// `compile_units` counts what the block's modules cost to compile so far;
/// a module past `max_compile_units_per_block` is refused before its ante
/// step, so its nonce stays unused and it can go into a later block.
fn deliver(
    tx: &SignedTx,
    block: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    compile_units: &mut u64,
) -> TxOutcome {
    let checked = match msg::check_stateless(tx, ctx) {
        Ok(checked) => checked,
        Err(rejection) => return TxOutcome::rejected(&rejection),
    };
    if let Err(rejection) = spend_compile_units(&checked, compile_units, ctx.params) {
        return TxOutcome::rejected(&rejection);
    }
    let mut ante = StateTx::new(&*block);
    if let Err(rejection) = msg::ante(tx, &mut ante, ctx) {
        return TxOutcome::rejected(&rejection);
    }
    let mut body = StateTx::new(&ante);
    let result = msg::run(tx, &checked, &mut body, ctx);
    let body = body.into_delta();
    let outcome = match result {
        Ok(mut events) => {
            ante.absorb(body);
            events.insert(0, msg::message_event(tx));
            TxOutcome::ok(events)
        }
        Err(rejection) => {
            let mut outcome = TxOutcome::rejected(&rejection);
            outcome.events.push(msg::message_event(tx));
            outcome
        }
    };
    let delta = ante.into_delta();
    block.absorb(delta);
    outcome
}

/// The context of checks outside a block (CheckTx and the proposal
/// handlers): the next height, no proposer, and faults only refuse.
fn check_ctx<'a>(chain: &'a Chain, verifier: &'a Verifier, last: LastCommit) -> Ctx<'a> {
    Ctx {
        params: &chain.params,
        chain_id: &chain.chain_id,
        height: u64::try_from(last.height.saturating_add(1)).unwrap_or(0),
        proposer: None,
        time_seconds: 0,
        verifier,
        in_block: false,
    }
}

/// What ProcessProposal and PrepareProposal check of one transaction before
/// its signature: size, canonical encoding and keys (decoding), chain id,
/// fee floor and the message's shape.
///
/// `compile_units` counts the block's modules, as FinalizeBlock will.
fn proposal_checks(
    bytes: &[u8],
    ctx: &Ctx<'_>,
    compile_units: &mut u64,
) -> Result<SignedTx, Rejection> {
    let tx = SignedTx::decode(bytes, max_tx_len(ctx.params))?;
    let checked = msg::check_stateless(&tx, ctx)?;
    spend_compile_units(&checked, compile_units, ctx.params)?;
    Ok(tx)
}

/// Adds what a checked message costs to compile (a module's compile units,
/// 0 for anything else) to the block's count, within its budget.
fn spend_compile_units(
    checked: &msg::Checked<'_>,
    used: &mut u64,
    params: &pb::Params,
) -> Result<(), Rejection> {
    let units = match checked {
        msg::Checked::StoreModule(_, info) => info.compile_units,
        _ => return Ok(()),
    };
    let max = params.max_compile_units_per_block;
    match used.checked_add(units) {
        Some(sum) if sum <= max => {
            *used = sum;
            Ok(())
        }
        _ => Err(Rejection::ModuleBudgetExceeded {
            used: *used,
            units,
            max,
        }),
    }
}

/// `max_tx_bytes` as a length.
fn max_tx_len(params: &pb::Params) -> usize {
    usize::try_from(params.max_tx_bytes).unwrap_or(usize::MAX)
}
