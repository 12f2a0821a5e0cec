//! A light client of CometBFT: block headers verified from a trust anchor
//! by the validators' signatures, so that an app hash (and with it, through
//! [`crate::proof`], a query answer) can be believed without believing the
//! node that served it.
//!
//! **What it checks.** An anchor is checked before it is trusted: a
//! [`TrustAnchor::Header`] must be served with exactly the given hash; a
//! [`TrustAnchor::Genesis`] block (at the initial height) must name the
//! genesis chain id and validators and carry their signatures of more than
//! two thirds of the power. From a trusted block, a target height is
//! reached by skipping verification (`tendermint-light-client-verifier`):
//! a header is accepted when validators holding more than the trust
//! threshold (one third by default) of the trusted block's next validator
//! set, and more than two thirds of its own, signed it; when too few of
//! the trusted validators signed, the gap is halved (bisection) until it
//! can be crossed. Every fetched block is checked for a validator set and
//! a next validator set whose hashes are those in the header (every page
//! of `/validators`, each validator's address matching its key), a commit
//! for this very header, valid signatures, the chain id, increasing time
//! not ahead of this machine's clock by more than the clock drift, and the
//! trusted block not older than the trusting period. A height below every
//! trusted block is reached backwards, by the hash chain of headers
//! (`last_block_id`). A node that fails any of these is named
//! ([`LightError::Lie`], with what it lied about: [`Lie`]).
//!
//! **What it trusts.** The anchor (a header hash the caller learnt out of
//! band, or the genesis validators: those of the caller's genesis file
//! when given, else those the node's `/genesis` serves, which is trust on
//! first use); that within the trusting period no more than a third of
//! any trusted validator set signs for a fork (so the trusting period must
//! be shorter than the chain's unbonding period); Ed25519 and SHA-256;
//! this machine's clock; and the store file it is given, which is read
//! back as trusted (only its consistency is checked).
//!
//! **Bounds.** At most [`LightOptions::fetches_max`] RPC calls per
//! verification (each page of `/validators` is one), each under the
//! source's timeout; at most [`VALIDATORS_MAX`] validators in a set; at
//! most [`TRUSTED_BLOCKS_MAX`] blocks kept; a store file of at most
//! [`STORE_FILE_BYTES_MAX`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tendermint::block::signed_header::SignedHeader;
use tendermint::block::{Header, Height};
use tendermint::trust_threshold::TrustThresholdFraction;
use tendermint::{chain, validator, AppHash, Hash, Time};
use tendermint_light_client_verifier::errors::VerificationErrorDetail;
use tendermint_light_client_verifier::options::Options;
use tendermint_light_client_verifier::types::{TrustedBlockState, UntrustedBlockState};
use tendermint_light_client_verifier::{ProdVerifier, Verdict, Verifier};
use tendermint_rpc::{Client, HttpClient, Paging};

use crate::proof::{ProofError, StateRoot};

/// Validators asked for per page of `/validators` (CometBFT's largest page).
pub const VALIDATORS_PER_PAGE: u8 = 100;
/// The most validators a set may have. CometBFT sets no limit of its own;
/// chains run with at most a few hundred.
pub const VALIDATORS_MAX: u32 = 10_000;
/// The most verified blocks the trusted store keeps (the highest ones).
pub const TRUSTED_BLOCKS_MAX: usize = 16;
/// The largest store file read back.
pub const STORE_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The format of the store file; another one is refused.
pub const STORE_FORMAT: u32 = 1;
/// RPC calls per verification unless the caller says otherwise: enough to
/// bisect across a million blocks of changing validators.
pub const FETCHES_MAX_DEFAULT: u32 = 64;
/// How far this machine's clock may lag the chain's unless the caller
/// says otherwise.
pub const CLOCK_DRIFT_DEFAULT: Duration = Duration::from_secs(10);
/// How long one RPC call may take unless the caller says otherwise.
pub const RPC_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// What a node lied about: it served something that does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Lie {
    /// A block other than the one asked for.
    #[error("it served block {got} when asked for block {asked}")]
    WrongHeight {
        /// The height asked for.
        asked: u64,
        /// The height served.
        got: u64,
    },
    /// A header whose hash is not the trusted one.
    #[error("its header hashes to {got}, not to the trusted {expected}")]
    HeaderHash {
        /// The trusted hash.
        expected: Hash,
        /// The served header's hash.
        got: Hash,
    },
    /// A header that the next trusted header does not point back to.
    #[error(
        "its header hashes to {got}, but the trusted header above names {expected} as its parent"
    )]
    HashChain {
        /// The parent hash the trusted header names.
        expected: Hash,
        /// The served header's hash.
        got: Hash,
    },
    /// A validator set whose hash is not the header's `validators_hash`.
    #[error("its validator set hashes to {fetched}, but the header says {header}")]
    ValidatorsHash {
        /// The header's `validators_hash`.
        header: Hash,
        /// The hash of the set served.
        fetched: Hash,
    },
    /// A next validator set whose hash is not the header's `next_validators_hash`.
    #[error("its next validator set hashes to {fetched}, but the header says {header}")]
    NextValidatorsHash {
        /// The header's `next_validators_hash`.
        header: Hash,
        /// The hash of the set served.
        fetched: Hash,
    },
    /// A validator listing that is not a validator set.
    #[error("its validator listing is not a validator set: {detail}")]
    ValidatorPages {
        /// What is wrong.
        detail: String,
    },
    /// A commit for another block than the header.
    #[error("its commit is for block {commit}, but the header hashes to {header}")]
    CommitForAnotherBlock {
        /// The header's hash.
        header: Hash,
        /// The block hash the commit signs.
        commit: Hash,
    },
    /// A signature that does not verify.
    #[error("a signature in its commit does not verify (validator {validator})")]
    BadSignature {
        /// The validator whose signature it claims to be.
        validator: String,
    },
    /// A commit signed by too little voting power.
    #[error("its commit is signed by too little voting power: {detail}")]
    TooLittlePower {
        /// The tally.
        detail: String,
    },
    /// A commit that is not well formed.
    #[error("its commit is malformed: {detail}")]
    MalformedCommit {
        /// What is wrong.
        detail: String,
    },
    /// A header of another chain.
    #[error("its header is of chain '{got}', not of '{expected}'")]
    ChainId {
        /// The trusted chain id.
        expected: String,
        /// The header's.
        got: String,
    },
    /// A header not later than the trusted one.
    #[error("its header's time {got} is not after the trusted header's {trusted}")]
    TimeNotIncreasing {
        /// The trusted header's time.
        trusted: Time,
        /// The served header's time.
        got: Time,
    },
    /// A header from the future.
    #[error("its header's time {header_time} is ahead of this machine's clock ({now}) by more than {clock_drift_ms} ms (or this machine's clock is behind)")]
    FromTheFuture {
        /// The header's time.
        header_time: Time,
        /// This machine's time.
        now: Time,
        /// The drift allowed.
        clock_drift_ms: u128,
    },
    /// A genesis that does not match the chain's first block.
    #[error("its first block does not follow the genesis: {detail}")]
    NotThisGenesis {
        /// What differs.
        detail: String,
    },
    /// A block that does not verify for another reason.
    #[error("its block does not verify: {detail}")]
    Other {
        /// The verifier's words.
        detail: String,
    },
}

/// Why a header could not be verified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LightError {
    /// The options are not usable.
    #[error("light client options: {detail}")]
    BadOptions {
        /// What is wrong.
        detail: String,
    },
    /// The URL is not usable.
    #[error("URL '{url}' is not valid: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A height out of CometBFT's range (1 to 2^63 - 1).
    #[error("height {height} is not a block height")]
    BadHeight {
        /// The height.
        height: u64,
    },
    /// The anchor given by the caller cannot be used.
    #[error("the trust anchor cannot be used: {detail}")]
    BadAnchor {
        /// What is wrong.
        detail: String,
    },
    /// Nothing is trusted yet: give an anchor first.
    #[error(
        "no header is trusted yet: anchor the light client at a header hash or at genesis first"
    )]
    NoTrustedState,
    /// A block below the chain's first one.
    #[error("block {height} is below the chain's first block")]
    BelowInitialHeight {
        /// The height asked for.
        height: u64,
    },
    /// The trusted block from which to verify is older than the trusting period.
    #[error("the trusted header at height {trusted_height} expired at {expired_at}: anchor the light client at a recent header hash")]
    TrustExpired {
        /// Its height.
        trusted_height: u64,
        /// When trust in it ended.
        expired_at: Time,
    },
    /// A call to the source failed (unreachable, refused, undecodable answer).
    #[error("{call} at {source_name} failed: {detail}")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The source (its URL).
        source_name: String,
        /// What went wrong.
        detail: String,
    },
    /// A call to the source took longer than its limit.
    #[error("{call} at {source_name} took longer than {timeout_ms} ms")]
    Timeout {
        /// The call.
        call: &'static str,
        /// The source (its URL).
        source_name: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// The node served a block that does not verify: it lies, or serves a fork.
    #[error("node {source_name} lied about block {height}: {lie}")]
    Lie {
        /// The source (its URL).
        source_name: String,
        /// The block.
        height: u64,
        /// What it lied about.
        lie: Lie,
    },
    /// Verification needed more RPC calls than allowed.
    #[error("verifying block {target} needed more than {fetches_max} RPC calls; allow more, or trust a header nearer to it")]
    FetchesExhausted {
        /// The height being verified.
        target: u64,
        /// The limit.
        fetches_max: u32,
    },
    /// This machine's clock cannot be read as a block time.
    #[error("this machine's clock cannot be read: {detail}")]
    Clock {
        /// What went wrong.
        detail: String,
    },
    /// The store file cannot be read or written, or is not a store.
    #[error("trusted store {path}: {detail}")]
    Store {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A block of another chain than the store's.
    #[error("the trusted store is for chain '{store}', not for '{got}'")]
    ChainMismatch {
        /// The store's chain.
        store: String,
        /// The other chain.
        got: String,
    },
    /// The verified header's app hash is not a state root.
    #[error("the verified header's app hash is not a state root: {0}")]
    AppHash(#[from] ProofError),
}

impl LightError {
    /// Whether the error says that a node served something false.
    #[must_use]
    pub fn is_lie(&self) -> bool {
        matches!(self, LightError::Lie { .. })
    }

    /// What the node lied about, when it did.
    #[must_use]
    pub fn lie(&self) -> Option<&Lie> {
        match self {
            LightError::Lie { lie, .. } => Some(lie),
            _ => None,
        }
    }
}

/// How the light client verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LightOptions {
    /// How long a verified header may serve to verify later ones; must be
    /// shorter than the chain's unbonding period.
    pub trusting_period: Duration,
    /// How far the chain's clock may be ahead of this machine's.
    pub clock_drift: Duration,
    /// The share of a trusted validator set whose signatures are enough to
    /// skip to a later header (at least one third, at most one).
    pub trust_threshold: TrustThresholdFraction,
    /// The most RPC calls one verification may make.
    pub fetches_max: u32,
}

impl LightOptions {
    /// Options with this trusting period and the defaults: a clock drift
    /// of [`CLOCK_DRIFT_DEFAULT`], a trust threshold of one third and
    /// [`FETCHES_MAX_DEFAULT`] fetches.
    #[must_use]
    pub fn new(trusting_period: Duration) -> Self {
        Self {
            trusting_period,
            clock_drift: CLOCK_DRIFT_DEFAULT,
            trust_threshold: TrustThresholdFraction::ONE_THIRD,
            fetches_max: FETCHES_MAX_DEFAULT,
        }
    }

    fn check(&self) -> Result<(), LightError> {
        let bad = |detail: &str| {
            Err(LightError::BadOptions {
                detail: detail.to_owned(),
            })
        };
        if self.trusting_period.is_zero() {
            return bad("the trusting period is zero");
        }
        // One block needs a commit and two validator sets of a page each.
        if self.fetches_max < 3 {
            return bad("fetches_max is below 3, the calls that one block takes");
        }
        let threshold = self.trust_threshold;
        // A threshold below a third lets a third of the trusted set, which
        // may be faulty, vouch for a fork.
        if u128::from(threshold.numerator()) * 3 < u128::from(threshold.denominator()) {
            return bad("the trust threshold is below one third");
        }
        Ok(())
    }

    fn verifier_options(&self) -> Options {
        Options {
            trust_threshold: self.trust_threshold,
            trusting_period: self.trusting_period,
            clock_drift: self.clock_drift,
        }
    }
}

/// The genesis facts an anchor at the chain's first block rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisInfo {
    /// The chain id.
    pub chain_id: chain::Id,
    /// The first block's height.
    pub initial_height: u64,
    /// The validators of the first block.
    pub validators: Vec<validator::Info>,
}

impl GenesisInfo {
    /// The facts of a genesis document.
    #[must_use]
    pub fn from_genesis<A>(genesis: &tendermint::Genesis<A>) -> Self {
        Self {
            chain_id: genesis.chain_id.clone(),
            // CometBFT reads an initial height of 0 as 1.
            initial_height: u64::try_from(genesis.initial_height).unwrap_or(1).max(1),
            validators: genesis.validators.clone(),
        }
    }

    /// The facts of a `genesis.json` file's bytes.
    ///
    /// # Errors
    /// [`LightError::BadAnchor`] when they are not a genesis document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, LightError> {
        let genesis: tendermint::Genesis<serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| LightError::BadAnchor {
                detail: format!("not a genesis document: {e}"),
            })?;
        Ok(Self::from_genesis(&genesis))
    }
}

/// What the light client trusts to begin with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustAnchor {
    /// The block at `height` whose header hashes to `hash`, learnt out of
    /// band (from an operator, an explorer, a previous run).
    Header {
        /// The block's height.
        height: u64,
        /// Its header's hash.
        hash: Hash,
    },
    /// The chain's first block, through the genesis validators: those of
    /// `genesis` when given (the caller's copy of the genesis file), else
    /// those of the node's `/genesis` (trust on first use).
    Genesis {
        /// The caller's genesis, if it has one.
        genesis: Option<GenesisInfo>,
    },
}

/// A verified block: its signed header and its validator sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedBlock {
    /// The header and the commit that signs it.
    pub signed_header: SignedHeader,
    /// The validators of this block.
    pub validators: validator::Set,
    /// The validators of the next block.
    pub next_validators: validator::Set,
}

impl TrustedBlock {
    /// The block's header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.signed_header.header
    }

    /// The block's height.
    #[must_use]
    pub fn height(&self) -> u64 {
        self.signed_header.header.height.value()
    }

    /// The header's hash (the block id hash).
    #[must_use]
    pub fn hash(&self) -> Hash {
        self.signed_header.header.hash()
    }

    /// The header's time.
    #[must_use]
    pub fn time(&self) -> Time {
        self.signed_header.header.time
    }

    /// The app hash after the previous block: the state at height
    /// `height - 1`.
    #[must_use]
    pub fn app_hash(&self) -> &AppHash {
        &self.signed_header.header.app_hash
    }

    /// The app hash as the root of the state tree at version `height - 1`.
    ///
    /// # Errors
    /// [`ProofError::BadRoot`] when the app hash is not 32 bytes long.
    pub fn state_root(&self) -> Result<StateRoot, ProofError> {
        StateRoot::from_app_hash(self.app_hash())
    }

    fn as_trusted_state(&self) -> TrustedBlockState<'_> {
        TrustedBlockState {
            chain_id: &self.signed_header.header.chain_id,
            header_time: self.signed_header.header.time,
            height: self.signed_header.header.height,
            next_validators: &self.next_validators,
            next_validators_hash: self.signed_header.header.next_validators_hash,
        }
    }

    fn as_untrusted_state(&self) -> UntrustedBlockState<'_> {
        UntrustedBlockState {
            signed_header: &self.signed_header,
            validators: &self.validators,
            next_validators: Some(&self.next_validators),
        }
    }

    /// Whether the parts agree with each other: the sets are the header's,
    /// the commit is for the header.
    fn check_consistent(&self) -> Result<(), Lie> {
        let header = &self.signed_header.header;
        if self.validators.hash() != header.validators_hash {
            return Err(Lie::ValidatorsHash {
                header: header.validators_hash,
                fetched: self.validators.hash(),
            });
        }
        if self.next_validators.hash() != header.next_validators_hash {
            return Err(Lie::NextValidatorsHash {
                header: header.next_validators_hash,
                fetched: self.next_validators.hash(),
            });
        }
        let commit = self.signed_header.commit.block_id.hash;
        if commit != header.hash() {
            return Err(Lie::CommitForAnotherBlock {
                header: header.hash(),
                commit,
            });
        }
        Ok(())
    }
}

/// One page of `/validators`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorsPage {
    /// The height the node answered for.
    pub height: u64,
    /// The validators on this page.
    pub validators: Vec<validator::Info>,
    /// How many validators the set has, as the node says.
    pub total: i32,
}

/// Where blocks come from: a node's RPC ([`RpcSource`]), or fixtures in tests.
pub trait LightSource: Send + Sync {
    /// The source's name in errors (its URL).
    fn name(&self) -> &str;

    /// The signed header of block `height`, or of the latest block.
    ///
    /// # Errors
    /// [`LightError::Rpc`] or [`LightError::Timeout`].
    fn signed_header(
        &self,
        height: Option<Height>,
    ) -> impl Future<Output = Result<SignedHeader, LightError>> + Send;

    /// Page `page` (from 1) of the validators of block `height`.
    ///
    /// # Errors
    /// [`LightError::Rpc`] or [`LightError::Timeout`].
    fn validators_page(
        &self,
        height: Height,
        page: u32,
    ) -> impl Future<Output = Result<ValidatorsPage, LightError>> + Send;

    /// The genesis facts the node serves.
    ///
    /// # Errors
    /// [`LightError::Rpc`] or [`LightError::Timeout`].
    fn genesis(&self) -> impl Future<Output = Result<GenesisInfo, LightError>> + Send;
}

/// A CometBFT node's RPC as a source of blocks.
#[derive(Clone, Debug)]
pub struct RpcSource {
    rpc: HttpClient,
    url: String,
    timeout_ms: u64,
}

impl RpcSource {
    /// The node at `url`, each call limited to `timeout_ms`; nothing is
    /// sent until the first call.
    ///
    /// # Errors
    /// [`LightError::BadUrl`].
    pub fn new(url: &str, timeout_ms: u64) -> Result<Self, LightError> {
        let bad = |detail: String| LightError::BadUrl {
            url: url.to_owned(),
            detail,
        };
        let parsed: tendermint_rpc::HttpClientUrl = url.parse().map_err(|e| bad(format!("{e}")))?;
        let rpc = HttpClient::builder(parsed)
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            rpc,
            url: url.to_owned(),
            timeout_ms,
        })
    }

    async fn timed<T>(
        &self,
        call: &'static str,
        future: impl Future<Output = Result<T, tendermint_rpc::Error>>,
    ) -> Result<T, LightError> {
        match tokio::time::timeout(Duration::from_millis(self.timeout_ms), future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(LightError::Rpc {
                call,
                source_name: self.url.clone(),
                detail: e.to_string(),
            }),
            Err(_) => Err(LightError::Timeout {
                call,
                source_name: self.url.clone(),
                timeout_ms: self.timeout_ms,
            }),
        }
    }
}

impl LightSource for RpcSource {
    fn name(&self) -> &str {
        &self.url
    }

    async fn signed_header(&self, height: Option<Height>) -> Result<SignedHeader, LightError> {
        let response = match height {
            Some(height) => self.timed("commit", self.rpc.commit(height)).await?,
            None => self.timed("commit", self.rpc.latest_commit()).await?,
        };
        Ok(response.signed_header)
    }

    async fn validators_page(
        &self,
        height: Height,
        page: u32,
    ) -> Result<ValidatorsPage, LightError> {
        let paging = Paging::Specific {
            page_number: usize::try_from(page).unwrap_or(usize::MAX).into(),
            per_page: VALIDATORS_PER_PAGE.into(),
        };
        let response = self
            .timed("validators", self.rpc.validators(height, paging))
            .await?;
        Ok(ValidatorsPage {
            height: response.block_height.value(),
            validators: response.validators,
            total: response.total,
        })
    }

    async fn genesis(&self) -> Result<GenesisInfo, LightError> {
        let genesis = self
            .timed("genesis", self.rpc.genesis::<serde_json::Value>())
            .await?;
        Ok(GenesisInfo::from_genesis(&genesis))
    }
}

/// The verified blocks, the highest [`TRUSTED_BLOCKS_MAX`] of them, in
/// memory and, when given a path, in a JSON file that [`TrustedStore::save`]
/// writes and [`TrustedStore::open`] reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedStore {
    chain_id: Option<chain::Id>,
    blocks: BTreeMap<u64, TrustedBlock>,
    path: Option<PathBuf>,
}

/// The store file.
#[derive(Serialize, Deserialize)]
struct StoreFile {
    format: u32,
    chain_id: String,
    blocks: Vec<StoredBlock>,
}

/// A block in the store file. The sets are kept as lists and rebuilt on
/// reading, with their total power checked.
#[derive(Serialize, Deserialize)]
struct StoredBlock {
    signed_header: SignedHeader,
    validators: Vec<validator::Info>,
    next_validators: Vec<validator::Info>,
}

impl TrustedStore {
    /// An empty store kept in memory only.
    #[must_use]
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The store kept in the file at `path`: read back when the file
    /// exists, empty otherwise (the file is written by [`TrustedStore::save`]).
    ///
    /// # Errors
    /// [`LightError::Store`] when the file cannot be read, is larger than
    /// [`STORE_FILE_BYTES_MAX`], or is not a consistent store of one chain.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LightError> {
        let path = path.into();
        let fail = |detail: String| LightError::Store {
            path: path.display().to_string(),
            detail,
        };
        let mut store = Self {
            path: Some(path.clone()),
            ..Self::default()
        };
        let size_bytes = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(fail(e.to_string())),
        };
        if size_bytes > STORE_FILE_BYTES_MAX {
            return Err(fail(format!(
                "{size_bytes} bytes; at most {STORE_FILE_BYTES_MAX} are read"
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
        let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        if file.format != STORE_FORMAT {
            return Err(fail(format!(
                "format {}; this client reads format {STORE_FORMAT}",
                file.format
            )));
        }
        let chain_id = chain::Id::try_from(file.chain_id).map_err(|e| fail(e.to_string()))?;
        store.chain_id = Some(chain_id.clone());
        for stored in file.blocks {
            let height = stored.signed_header.header.height.value();
            let block = TrustedBlock {
                validators: validator_set(stored.validators)
                    .map_err(|e| fail(format!("block {height}: {e}")))?,
                next_validators: validator_set(stored.next_validators)
                    .map_err(|e| fail(format!("block {height}: {e}")))?,
                signed_header: stored.signed_header,
            };
            block
                .check_consistent()
                .map_err(|e| fail(format!("block {height}: {e}")))?;
            if block.header().chain_id != chain_id {
                return Err(fail(format!(
                    "block {height} is of chain '{}', the store of '{chain_id}'",
                    block.header().chain_id
                )));
            }
            store.blocks.insert(height, block);
        }
        store.evict();
        Ok(store)
    }

    /// Writes the store to its file, if it has one (through a temporary
    /// file renamed over it, so that a crash leaves the old one whole).
    ///
    /// # Errors
    /// [`LightError::Store`] when the file cannot be written.
    pub fn save(&self) -> Result<(), LightError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let Some(chain_id) = &self.chain_id else {
            return Ok(());
        };
        let fail = |detail: String| LightError::Store {
            path: path.display().to_string(),
            detail,
        };
        let file = StoreFile {
            format: STORE_FORMAT,
            chain_id: chain_id.to_string(),
            blocks: self
                .blocks
                .values()
                .map(|b| StoredBlock {
                    signed_header: b.signed_header.clone(),
                    validators: b.validators.validators().clone(),
                    next_validators: b.next_validators.validators().clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| fail(e.to_string()))?;
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, bytes).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| fail(e.to_string()))
    }

    /// The file the store is kept in, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The chain the store is for, once it holds a block.
    #[must_use]
    pub fn chain_id(&self) -> Option<&chain::Id> {
        self.chain_id.as_ref()
    }

    /// The highest trusted block.
    #[must_use]
    pub fn latest(&self) -> Option<&TrustedBlock> {
        self.blocks.values().next_back()
    }

    /// The trusted block at `height`.
    #[must_use]
    pub fn get(&self, height: u64) -> Option<&TrustedBlock> {
        self.blocks.get(&height)
    }

    /// The heights of the trusted blocks, in order.
    pub fn heights(&self) -> impl Iterator<Item = u64> + '_ {
        self.blocks.keys().copied()
    }

    /// Adds a verified block, keeping the highest [`TRUSTED_BLOCKS_MAX`].
    ///
    /// # Errors
    /// [`LightError::ChainMismatch`] when it is of another chain than the store.
    pub fn insert(&mut self, block: TrustedBlock) -> Result<(), LightError> {
        let chain_id = &block.header().chain_id;
        match &self.chain_id {
            Some(store) if store != chain_id => {
                return Err(LightError::ChainMismatch {
                    store: store.to_string(),
                    got: chain_id.to_string(),
                })
            }
            Some(_) => {}
            None => self.chain_id = Some(chain_id.clone()),
        }
        self.blocks.insert(block.height(), block);
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.blocks.len() > TRUSTED_BLOCKS_MAX {
            self.blocks.pop_first();
        }
    }

    fn highest_at_or_below(&self, height: u64) -> Option<&TrustedBlock> {
        self.blocks.range(..=height).next_back().map(|(_, b)| b)
    }

    fn lowest_above(&self, height: u64) -> Option<&TrustedBlock> {
        self.blocks
            .range(height.saturating_add(1)..)
            .next()
            .map(|(_, b)| b)
    }
}

/// A validator set built from a listing without panicking: the total
/// power is checked (`validator::Set::new` would panic on overflow), and
/// each address must be its key's.
fn validator_set(validators: Vec<validator::Info>) -> Result<validator::Set, String> {
    let raw = tendermint_proto::v0_38::types::ValidatorSet {
        validators: validators.into_iter().map(Into::into).collect(),
        proposer: None,
        total_voting_power: 0,
    };
    let set = validator::Set::try_from(raw).map_err(|e| e.to_string())?;
    let mut addresses: Vec<_> = set.validators().iter().map(|v| v.address).collect();
    addresses.sort_unstable();
    if addresses.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("a validator is listed twice".to_owned());
    }
    Ok(set)
}

/// The RPC calls one verification may still make.
struct Fetches {
    left: u32,
    max: u32,
    target: u64,
}

impl Fetches {
    fn new(max: u32, target: u64) -> Self {
        Self {
            left: max,
            max,
            target,
        }
    }

    fn take(&mut self) -> Result<(), LightError> {
        match self.left.checked_sub(1) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(LightError::FetchesExhausted {
                target: self.target,
                fetches_max: self.max,
            }),
        }
    }
}

fn height_of(height: u64) -> Result<Height, LightError> {
    if height == 0 {
        return Err(LightError::BadHeight { height });
    }
    Height::try_from(height).map_err(|_| LightError::BadHeight { height })
}

/// This machine's time as a block time.
///
/// # Errors
/// [`LightError::Clock`] when the clock is before 1970 or past 9999.
pub fn now() -> Result<Time, LightError> {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| LightError::Clock {
            detail: e.to_string(),
        })?;
    let seconds = i64::try_from(since_epoch.as_secs()).map_err(|e| LightError::Clock {
        detail: e.to_string(),
    })?;
    Time::from_unix_timestamp(seconds, since_epoch.subsec_nanos()).map_err(|e| LightError::Clock {
        detail: e.to_string(),
    })
}

/// What a verifier's refusal means: a lie, or expired trust.
fn classify(
    detail: VerificationErrorDetail,
    trusted: &TrustedBlock,
    clock_drift: Duration,
) -> Result<Lie, LightError> {
    use VerificationErrorDetail as D;
    Ok(match detail {
        D::NotWithinTrustPeriod(e) => {
            return Err(LightError::TrustExpired {
                trusted_height: trusted.height(),
                expired_at: e.expires_at,
            })
        }
        D::InvalidValidatorSet(e) => Lie::ValidatorsHash {
            header: e.header_validators_hash,
            fetched: e.validators_hash,
        },
        D::InvalidNextValidatorSet(e) => Lie::NextValidatorsHash {
            header: e.header_next_validators_hash,
            fetched: e.next_validators_hash,
        },
        D::InvalidCommitValue(e) => Lie::CommitForAnotherBlock {
            header: e.header_hash,
            commit: e.commit_hash,
        },
        D::InvalidSignature(e) => Lie::BadSignature {
            validator: e.validator.address.to_string(),
        },
        D::InsufficientSignersOverlap(e) => Lie::TooLittlePower {
            detail: e.tally.to_string(),
        },
        D::NotEnoughTrust(e) => Lie::TooLittlePower {
            detail: format!("of the trusted validators: {}", e.tally),
        },
        D::ChainIdMismatch(e) => Lie::ChainId {
            expected: e.expected,
            got: e.got,
        },
        D::NonMonotonicBftTime(e) => Lie::TimeNotIncreasing {
            trusted: e.trusted_header_bft_time,
            got: e.header_bft_time,
        },
        D::HeaderFromTheFuture(e) => Lie::FromTheFuture {
            header_time: e.header_time,
            now: e.now,
            clock_drift_ms: clock_drift.as_millis(),
        },
        D::DuplicateValidator(_)
        | D::MissingSignature(_)
        | D::NoSignatureForCommit(_)
        | D::MismatchPreCommitLength(_)
        | D::FaultySigner(_) => Lie::MalformedCommit {
            detail: detail.to_string(),
        },
        other => Lie::Other {
            detail: other.to_string(),
        },
    })
}

/// A light client: a source of blocks, options, and the trusted store.
#[derive(Debug)]
pub struct LightClient<S> {
    source: S,
    options: LightOptions,
    store: TrustedStore,
    verifier: ProdVerifier,
}

impl<S: LightSource> LightClient<S> {
    /// A light client reading blocks from `source`, trusting what `store` holds.
    ///
    /// # Errors
    /// [`LightError::BadOptions`].
    pub fn new(source: S, options: LightOptions, store: TrustedStore) -> Result<Self, LightError> {
        options.check()?;
        Ok(Self {
            source,
            options,
            store,
            verifier: ProdVerifier::default(),
        })
    }

    /// The trusted store (to [`TrustedStore::save`] it, or to read it).
    #[must_use]
    pub fn store(&self) -> &TrustedStore {
        &self.store
    }

    /// The source of blocks.
    #[must_use]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &LightOptions {
        &self.options
    }

    /// Checks `anchor` against the chain and trusts its block.
    ///
    /// # Errors
    /// [`LightError::Lie`] when the node's block is not the anchor's;
    /// [`LightError::BadAnchor`] for an unusable anchor;
    /// [`LightError::ChainMismatch`] when the store is of another chain;
    /// transport errors; [`LightError::FetchesExhausted`].
    pub async fn anchor(&mut self, anchor: &TrustAnchor) -> Result<TrustedBlock, LightError> {
        match anchor {
            TrustAnchor::Header { height, hash } => {
                let mut fetches = Fetches::new(self.options.fetches_max, *height);
                let block = self.fetch_block(*height, &mut fetches).await?;
                if block.hash() != *hash {
                    return Err(self.lie(
                        *height,
                        Lie::HeaderHash {
                            expected: *hash,
                            got: block.hash(),
                        },
                    ));
                }
                self.check_signed(&block)?;
                self.store.insert(block.clone())?;
                Ok(block)
            }
            TrustAnchor::Genesis { genesis } => {
                let mut fetches = Fetches::new(self.options.fetches_max, 0);
                let (genesis, from_node) = match genesis {
                    Some(genesis) => (genesis.clone(), false),
                    None => {
                        fetches.take()?;
                        (self.source.genesis().await?, true)
                    }
                };
                let height = genesis.initial_height;
                fetches.target = height;
                let genesis_set = validator_set(genesis.validators.clone()).map_err(|detail| {
                    let detail =
                        format!("the genesis validators are not a validator set: {detail}");
                    if from_node {
                        self.lie(height, Lie::NotThisGenesis { detail })
                    } else {
                        LightError::BadAnchor { detail }
                    }
                })?;
                let block = self.fetch_block(height, &mut fetches).await?;
                let header = block.header();
                if header.chain_id != genesis.chain_id {
                    return Err(self.lie(
                        height,
                        Lie::NotThisGenesis {
                            detail: format!(
                                "the block is of chain '{}', the genesis of '{}'",
                                header.chain_id, genesis.chain_id
                            ),
                        },
                    ));
                }
                if header.last_block_id.is_some() {
                    return Err(self.lie(
                        height,
                        Lie::NotThisGenesis {
                            detail: "the block names a parent; the first block has none".to_owned(),
                        },
                    ));
                }
                if genesis_set.hash() != header.validators_hash {
                    return Err(self.lie(
                        height,
                        Lie::NotThisGenesis {
                            detail: format!(
                                "the block's validators hash to {}, the genesis validators to {}",
                                header.validators_hash,
                                genesis_set.hash()
                            ),
                        },
                    ));
                }
                self.check_signed(&block)?;
                self.store.insert(block.clone())?;
                Ok(block)
            }
        }
    }

    /// Verifies the block at `height` from the trusted store, by this
    /// machine's clock, and trusts it.
    ///
    /// # Errors
    /// As [`LightClient::verify_height_at`], and [`LightError::Clock`].
    pub async fn verify_height(&mut self, height: u64) -> Result<TrustedBlock, LightError> {
        let now = now()?;
        self.verify_height_at(height, now).await
    }

    /// Verifies the latest block the node has, and trusts it (asking
    /// for the latest height is one of the calls counted).
    ///
    /// # Errors
    /// As [`LightClient::verify_height`].
    pub async fn verify_latest(&mut self) -> Result<TrustedBlock, LightError> {
        let now = now()?;
        self.verify_latest_at(now).await
    }

    /// Verifies the latest block the node has as of `now`, and trusts it.
    ///
    /// # Errors
    /// As [`LightClient::verify_height_at`].
    pub async fn verify_latest_at(&mut self, now: Time) -> Result<TrustedBlock, LightError> {
        let mut fetches = Fetches::new(self.options.fetches_max, 0);
        fetches.take()?;
        let latest = self.source.signed_header(None).await?;
        let height = latest.header.height.value();
        fetches.target = height;
        self.verify_with(height, now, &mut fetches).await
    }

    /// The verified root of the state that a query answered at
    /// `query_height` was read from: the app hash of block
    /// `query_height + 1`, which must exist.
    ///
    /// # Errors
    /// As [`LightClient::verify_height`]; [`LightError::AppHash`] when the
    /// app hash is not 32 bytes.
    pub async fn state_root_for_query(
        &mut self,
        query_height: u64,
    ) -> Result<(TrustedBlock, StateRoot), LightError> {
        let height = query_height.checked_add(1).ok_or(LightError::BadHeight {
            height: query_height,
        })?;
        let block = self.verify_height(height).await?;
        let root = block.state_root()?;
        Ok((block, root))
    }

    /// Verifies the block at `height` from the trusted store as of `now`,
    /// and trusts it: forwards from the highest trusted block below it by
    /// skipping verification, or backwards from the lowest trusted block
    /// above it by the hash chain.
    ///
    /// # Errors
    /// [`LightError::NoTrustedState`] before an anchor;
    /// [`LightError::Lie`] when the node serves a block that does not verify;
    /// [`LightError::TrustExpired`]; [`LightError::FetchesExhausted`];
    /// transport errors; [`LightError::BadHeight`].
    pub async fn verify_height_at(
        &mut self,
        height: u64,
        now: Time,
    ) -> Result<TrustedBlock, LightError> {
        let mut fetches = Fetches::new(self.options.fetches_max, height);
        self.verify_with(height, now, &mut fetches).await
    }

    async fn verify_with(
        &mut self,
        height: u64,
        now: Time,
        fetches: &mut Fetches,
    ) -> Result<TrustedBlock, LightError> {
        height_of(height)?;
        if let Some(block) = self.store.get(height) {
            return Ok(block.clone());
        }
        let below = self.store.highest_at_or_below(height).cloned();
        let above = self.store.lowest_above(height).cloned();
        let trusting_period = self.options.trusting_period;
        let below_fresh = below
            .as_ref()
            .is_some_and(|block| (block.time() + trusting_period).is_ok_and(|expiry| expiry > now));
        // A fresh block below is the nearest start; an expired one can
        // still be reached from above by the hash chain, and otherwise
        // fails by its expiry.
        match (below, above) {
            (Some(below), _) if below_fresh => self.forward(below, height, now, fetches).await,
            (_, Some(above)) => self.backward(above, height, fetches).await,
            (Some(below), None) => self.forward(below, height, now, fetches).await,
            (None, None) => Err(LightError::NoTrustedState),
        }
    }

    async fn forward(
        &mut self,
        mut trusted: TrustedBlock,
        target: u64,
        now: Time,
        fetches: &mut Fetches,
    ) -> Result<TrustedBlock, LightError> {
        let options = self.options.verifier_options();
        let mut fetched: BTreeMap<u64, TrustedBlock> = BTreeMap::new();
        let mut pending = vec![target];
        // Each turn either trusts a block or fetches a new one, so the
        // fetch budget bounds the turns; this bound says so outright.
        let turns_max = u64::from(self.options.fetches_max)
            .saturating_mul(2)
            .saturating_add(2);
        for _ in 0..turns_max {
            let Some(&height) = pending.last() else {
                return Ok(trusted);
            };
            let untrusted = match fetched.get(&height) {
                Some(block) => block.clone(),
                None => {
                    let block = self.fetch_block(height, fetches).await?;
                    fetched.insert(height, block.clone());
                    block
                }
            };
            let verdict = self.verifier.verify_update_header(
                untrusted.as_untrusted_state(),
                trusted.as_trusted_state(),
                &options,
                now,
            );
            match verdict {
                Verdict::Success => {
                    self.store.insert(untrusted.clone())?;
                    trusted = untrusted;
                    pending.pop();
                }
                Verdict::NotEnoughTrust(tally) => {
                    let gap = height.saturating_sub(trusted.height());
                    if gap <= 1 {
                        // The next block needs no overlap with the trusted
                        // set beyond its own validators: never too little trust.
                        return Err(self.lie(
                            height,
                            Lie::TooLittlePower {
                                detail: tally.to_string(),
                            },
                        ));
                    }
                    pending.push(trusted.height().saturating_add(gap / 2));
                }
                Verdict::Invalid(detail) => {
                    let lie = classify(detail, &trusted, self.options.clock_drift)?;
                    return Err(self.lie(height, lie));
                }
            }
        }
        match pending.last() {
            None => Ok(trusted),
            Some(_) => Err(LightError::FetchesExhausted {
                target,
                fetches_max: self.options.fetches_max,
            }),
        }
    }

    async fn backward(
        &mut self,
        above: TrustedBlock,
        target: u64,
        fetches: &mut Fetches,
    ) -> Result<TrustedBlock, LightError> {
        let mut child = above.signed_header.header;
        while child.height.value() > target {
            let height = child.height.value().saturating_sub(1);
            let Some(parent) = child.last_block_id else {
                return Err(LightError::BelowInitialHeight { height: target });
            };
            fetches.take()?;
            let signed_header = self.source.signed_header(Some(height_of(height)?)).await?;
            let served = signed_header.header.height.value();
            if served != height {
                return Err(self.lie(
                    height,
                    Lie::WrongHeight {
                        asked: height,
                        got: served,
                    },
                ));
            }
            if signed_header.header.hash() != parent.hash {
                return Err(self.lie(
                    height,
                    Lie::HashChain {
                        expected: parent.hash,
                        got: signed_header.header.hash(),
                    },
                ));
            }
            if height == target {
                let block = self.complete_block(signed_header, fetches).await?;
                self.store.insert(block.clone())?;
                return Ok(block);
            }
            child = signed_header.header;
        }
        // Unreachable: the loop returns when it reaches the target, which
        // is below `above`.
        Err(LightError::NoTrustedState)
    }

    /// Whether a block's commit carries valid signatures of more than two
    /// thirds of its validators' power.
    fn check_signed(&self, block: &TrustedBlock) -> Result<(), LightError> {
        let untrusted = block.as_untrusted_state();
        for verdict in [
            self.verifier.verify_validator_sets(&untrusted),
            self.verifier.verify_commit(&untrusted),
        ] {
            match verdict {
                Verdict::Success => {}
                Verdict::NotEnoughTrust(tally) => {
                    return Err(self.lie(
                        block.height(),
                        Lie::TooLittlePower {
                            detail: tally.to_string(),
                        },
                    ))
                }
                Verdict::Invalid(detail) => {
                    let lie = classify(detail, block, self.options.clock_drift)?;
                    return Err(self.lie(block.height(), lie));
                }
            }
        }
        Ok(())
    }

    /// The block at `height` with its two validator sets, checked for
    /// consistency (not yet for signatures).
    async fn fetch_block(
        &self,
        height: u64,
        fetches: &mut Fetches,
    ) -> Result<TrustedBlock, LightError> {
        fetches.take()?;
        let signed_header = self.source.signed_header(Some(height_of(height)?)).await?;
        let served = signed_header.header.height.value();
        if served != height {
            return Err(self.lie(
                height,
                Lie::WrongHeight {
                    asked: height,
                    got: served,
                },
            ));
        }
        self.complete_block(signed_header, fetches).await
    }

    async fn complete_block(
        &self,
        signed_header: SignedHeader,
        fetches: &mut Fetches,
    ) -> Result<TrustedBlock, LightError> {
        let height = signed_header.header.height.value();
        let validators = self.fetch_validators(height, fetches).await?;
        let next_validators = self
            .fetch_validators(height.saturating_add(1), fetches)
            .await?;
        let block = TrustedBlock {
            signed_header,
            validators,
            next_validators,
        };
        block
            .check_consistent()
            .map_err(|lie| self.lie(height, lie))?;
        Ok(block)
    }

    /// Every page of the validator set of `height`.
    async fn fetch_validators(
        &self,
        height: u64,
        fetches: &mut Fetches,
    ) -> Result<validator::Set, LightError> {
        let at = height_of(height)?;
        let pages = |detail: String| self.lie(height, Lie::ValidatorPages { detail });
        let mut validators: Vec<validator::Info> = Vec::new();
        let mut total: Option<usize> = None;
        let pages_max = VALIDATORS_MAX.div_ceil(u32::from(VALIDATORS_PER_PAGE));
        for page in 1..=pages_max {
            fetches.take()?;
            let answer = self.source.validators_page(at, page).await?;
            if answer.height != height {
                return Err(self.lie(
                    height,
                    Lie::WrongHeight {
                        asked: height,
                        got: answer.height,
                    },
                ));
            }
            let page_total = usize::try_from(answer.total)
                .ok()
                .filter(|t| (1..=VALIDATORS_MAX as usize).contains(t))
                .ok_or_else(|| {
                    pages(format!(
                        "it counts {} validators; between 1 and {VALIDATORS_MAX} are accepted",
                        answer.total
                    ))
                })?;
            if total.is_some_and(|t| t != page_total) {
                return Err(pages("the count changes from page to page".to_owned()));
            }
            total = Some(page_total);
            if answer.validators.is_empty() {
                return Err(pages(format!("page {page} is empty")));
            }
            validators.extend(answer.validators);
            if validators.len() > page_total {
                return Err(pages(format!(
                    "it lists more validators than the {page_total} it counts"
                )));
            }
            if validators.len() == page_total {
                return validator_set(validators).map_err(pages);
            }
        }
        Err(pages(format!(
            "it lists fewer validators than it counts in {pages_max} pages"
        )))
    }

    fn lie(&self, height: u64, lie: Lie) -> LightError {
        LightError::Lie {
            source_name: self.source.name().to_owned(),
            height,
            lie,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use tendermint_testgen::{
        light_block::LightBlock as TestBlock, Commit as TestCommit, Generator as _,
        Header as TestHeader, Validator as TestValidator,
    };

    use super::*;

    const CHAIN_ID: &str = "compute-test";
    /// The first block's time, in seconds since 1970; block `h` is `h` seconds later.
    const GENESIS_SECONDS: i64 = 1_700_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn time(seconds: i64) -> Time {
        Time::from_unix_timestamp(seconds, 0).expect("a time")
    }

    fn validators(ids: &[&str]) -> Vec<TestValidator> {
        ids.iter()
            .map(|id| TestValidator::new(id).voting_power(50))
            .collect()
    }

    fn app_hash(height: u64) -> AppHash {
        AppHash::try_from(vec![u8::try_from(height % 251).expect("small"); 32])
            .expect("an app hash")
    }

    /// An honest chain of `length` blocks whose validators at each height
    /// are `schedule(height)`.
    fn chain(
        length: u64,
        schedule: impl Fn(u64) -> Vec<TestValidator>,
    ) -> BTreeMap<u64, TrustedBlock> {
        let mut blocks = BTreeMap::new();
        let mut parent: Option<Hash> = None;
        for height in 1..=length {
            let vals = schedule(height);
            let next = schedule(height + 1);
            let mut header = TestHeader::new(&vals)
                .next_validators(&next)
                .chain_id(CHAIN_ID)
                .height(height)
                .time(time(
                    GENESIS_SECONDS + i64::try_from(height).expect("small"),
                ))
                .app_hash(app_hash(height));
            if let Some(parent) = parent {
                header = header.last_block_id_hash(parent);
            }
            let block = TestBlock::new(header.clone(), TestCommit::new(header, 1))
                .validators(&vals)
                .next_validators(&next)
                .generate()
                .expect("testgen makes the block");
            parent = Some(block.signed_header.header.hash());
            blocks.insert(
                height,
                TrustedBlock {
                    signed_header: block.signed_header,
                    validators: block.validators,
                    next_validators: block.next_validators,
                },
            );
        }
        blocks
    }

    type Tamper = Box<dyn Fn(u64, &mut SignedHeader) + Send + Sync>;
    type TamperValidators = Box<dyn Fn(u64, &mut Vec<validator::Info>, &mut i32) + Send + Sync>;

    /// A node serving `blocks`, with lies injected by the tamper hooks.
    struct FakeNode {
        blocks: BTreeMap<u64, TrustedBlock>,
        calls: AtomicU32,
        page_size: usize,
        tamper_header: Mutex<Option<Tamper>>,
        tamper_validators: Mutex<Option<TamperValidators>>,
    }

    impl FakeNode {
        fn new(blocks: BTreeMap<u64, TrustedBlock>) -> Self {
            Self {
                blocks,
                calls: AtomicU32::new(0),
                page_size: usize::from(VALIDATORS_PER_PAGE),
                tamper_header: Mutex::new(None),
                tamper_validators: Mutex::new(None),
            }
        }

        fn lie_in_headers(&self, tamper: impl Fn(u64, &mut SignedHeader) + Send + Sync + 'static) {
            *self.tamper_header.lock().expect("not poisoned") = Some(Box::new(tamper));
        }

        fn lie_in_validators(
            &self,
            tamper: impl Fn(u64, &mut Vec<validator::Info>, &mut i32) + Send + Sync + 'static,
        ) {
            *self.tamper_validators.lock().expect("not poisoned") = Some(Box::new(tamper));
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }

        fn unknown(&self, call: &'static str, height: u64) -> LightError {
            LightError::Rpc {
                call,
                source_name: self.name().to_owned(),
                detail: format!("no block {height}"),
            }
        }
    }

    impl LightSource for &FakeNode {
        fn name(&self) -> &str {
            "fake-node"
        }

        async fn signed_header(&self, height: Option<Height>) -> Result<SignedHeader, LightError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let height = match height {
                Some(height) => height.value(),
                None => *self.blocks.keys().next_back().expect("a block"),
            };
            let mut signed_header = self
                .blocks
                .get(&height)
                .ok_or_else(|| self.unknown("commit", height))?
                .signed_header
                .clone();
            if let Some(tamper) = &*self.tamper_header.lock().expect("not poisoned") {
                tamper(height, &mut signed_header);
            }
            Ok(signed_header)
        }

        async fn validators_page(
            &self,
            height: Height,
            page: u32,
        ) -> Result<ValidatorsPage, LightError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let height = height.value();
            let last = *self.blocks.keys().next_back().expect("a block");
            let set = match self.blocks.get(&height) {
                Some(block) => &block.validators,
                None if height == last + 1 => &self.blocks[&last].next_validators,
                None => return Err(self.unknown("validators", height)),
            };
            let mut all = set.validators().clone();
            let mut total = i32::try_from(all.len()).expect("small");
            if let Some(tamper) = &*self.tamper_validators.lock().expect("not poisoned") {
                tamper(height, &mut all, &mut total);
            }
            let per_page = self.page_size;
            let start = (page as usize - 1) * per_page;
            let validators = all.iter().skip(start).take(per_page).cloned().collect();
            Ok(ValidatorsPage {
                height,
                validators,
                total,
            })
        }

        async fn genesis(&self) -> Result<GenesisInfo, LightError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(GenesisInfo {
                chain_id: CHAIN_ID.parse().expect("a chain id"),
                initial_height: 1,
                validators: self.blocks[&1].validators.validators().clone(),
            })
        }
    }

    fn options() -> LightOptions {
        LightOptions::new(HOUR)
    }

    /// A time shortly after block `height`.
    fn after(height: u64) -> Time {
        time(GENESIS_SECONDS + i64::try_from(height).expect("small") + 5)
    }

    fn anchor_at(node: &FakeNode, height: u64) -> TrustAnchor {
        TrustAnchor::Header {
            height,
            hash: node.blocks[&height].hash(),
        }
    }

    async fn anchored(node: &FakeNode, height: u64) -> LightClient<&FakeNode> {
        let mut client =
            LightClient::new(node, options(), TrustedStore::in_memory()).expect("options are good");
        client
            .anchor(&anchor_at(node, height))
            .await
            .expect("the anchor verifies");
        client
    }

    fn steady(_: u64) -> Vec<TestValidator> {
        validators(&["a", "b", "c", "d"])
    }

    /// Validators that are replaced wholesale at height 10: no overlap
    /// between the sets before and after.
    fn replaced_at_10(height: u64) -> Vec<TestValidator> {
        if height < 10 {
            validators(&["a", "b", "c"])
        } else {
            validators(&["x", "y", "z"])
        }
    }

    #[tokio::test]
    async fn a_header_far_ahead_is_verified_in_one_skip_when_validators_stay() {
        let node = FakeNode::new(chain(30, steady));
        let mut client = anchored(&node, 1).await;
        let before = node.calls();
        let block = client
            .verify_height_at(30, after(30))
            .await
            .expect("verifies");
        assert_eq!(block.height(), 30);
        assert_eq!(block.app_hash(), &app_hash(30));
        assert_eq!(block.state_root().expect("32 bytes").as_bytes(), &[30; 32]);
        // One commit and two validator sets of one page each.
        assert_eq!(node.calls() - before, 3);
        assert_eq!(client.store().heights().collect::<Vec<_>>(), vec![1, 30]);
    }

    #[tokio::test]
    async fn the_latest_block_is_verified_within_the_fetch_limit() {
        let node = FakeNode::new(chain(12, steady));
        let mut client = anchored(&node, 1).await;
        let before = node.calls();
        let block = client.verify_latest_at(after(12)).await.expect("verifies");
        assert_eq!(block.height(), 12);
        // The latest height, then one commit and two validator sets.
        assert_eq!(node.calls() - before, 4);

        let node = FakeNode::new(chain(12, steady));
        let mut client = LightClient::new(
            &node,
            LightOptions {
                fetches_max: 3,
                ..options()
            },
            TrustedStore::in_memory(),
        )
        .expect("options");
        client.anchor(&anchor_at(&node, 1)).await.expect("anchors");
        assert!(matches!(
            client.verify_latest_at(after(12)).await,
            Err(LightError::FetchesExhausted { target: 12, .. })
        ));
    }

    #[tokio::test]
    async fn bisection_crosses_a_complete_change_of_validators() {
        let node = FakeNode::new(chain(20, replaced_at_10));
        let mut client = anchored(&node, 1).await;
        let block = client
            .verify_height_at(20, after(20))
            .await
            .expect("verifies");
        assert_eq!(block.height(), 20);
        // The hop into the new set had to be taken one block at a time.
        let heights: Vec<u64> = client.store().heights().collect();
        assert!(heights.contains(&9) && heights.contains(&10), "{heights:?}");
    }

    #[tokio::test]
    async fn an_altered_app_hash_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_headers(|height, signed| {
            if height == 10 {
                signed.header.app_hash = AppHash::try_from(vec![0xee; 32]).expect("an app hash");
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(
            matches!(err.lie(), Some(Lie::CommitForAnotherBlock { .. })),
            "{err}"
        );
        assert!(client.store().get(10).is_none());
    }

    #[tokio::test]
    async fn an_altered_app_hash_with_a_commit_to_match_has_bad_signatures() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_headers(|height, signed| {
            if height == 10 {
                signed.header.app_hash = AppHash::try_from(vec![0xee; 32]).expect("an app hash");
                signed.commit.block_id.hash = signed.header.hash();
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(matches!(err.lie(), Some(Lie::BadSignature { .. })), "{err}");
        assert!(err.to_string().contains("fake-node"), "{err}");
    }

    #[tokio::test]
    async fn a_forged_signature_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_headers(|height, signed| {
            if height == 10 {
                for sig in &mut signed.commit.signatures {
                    if let tendermint::block::CommitSig::BlockIdFlagCommit {
                        signature: Some(signature),
                        ..
                    } = sig
                    {
                        let mut bytes = signature.as_bytes().to_vec();
                        bytes[0] ^= 1;
                        *signature = tendermint::Signature::try_from(bytes).expect("64 bytes");
                        break;
                    }
                }
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(matches!(err.lie(), Some(Lie::BadSignature { .. })), "{err}");
    }

    #[tokio::test]
    async fn a_validator_set_other_than_the_headers_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_validators(|height, validators, _| {
            if height == 10 {
                validators[0].power = 1000_u32.into();
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(
            matches!(err.lie(), Some(Lie::ValidatorsHash { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_next_validator_set_other_than_the_headers_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_validators(|height, validators, total| {
            if height == 11 {
                validators.pop();
                *total -= 1;
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(
            matches!(err.lie(), Some(Lie::NextValidatorsHash { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn validator_listings_that_are_not_sets_are_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        for tamper in [
            |_: u64, _: &mut Vec<validator::Info>, total: &mut i32| *total = -1,
            |_: u64, _: &mut Vec<validator::Info>, total: &mut i32| *total += 1,
            |_: u64, _: &mut Vec<validator::Info>, total: &mut i32| *total = i32::MAX,
            |_: u64, validators: &mut Vec<validator::Info>, _: &mut i32| {
                validators[1] = validators[0].clone();
            },
            |_: u64, validators: &mut Vec<validator::Info>, _: &mut i32| {
                validators[0].power = (u64::MAX / 4).try_into().expect("a power");
            },
        ] {
            node.lie_in_validators(tamper);
            let err = client
                .verify_height_at(10, after(10))
                .await
                .expect_err("a lie");
            assert!(
                matches!(err.lie(), Some(Lie::ValidatorPages { .. })),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_validator_set_is_read_page_by_page() {
        // A node may serve smaller pages than asked for; testgen signs too
        // slowly for a set of more than a hundred, so pages of 3 stand in.
        let mut node = FakeNode::new(chain(2, steady));
        node.page_size = 3;
        let mut client = anchored(&node, 1).await;
        let before = node.calls();
        client
            .verify_height_at(2, after(2))
            .await
            .expect("verifies");
        // One commit and two sets of two pages each.
        assert_eq!(node.calls() - before, 5);
        let trusted = client.store().get(2).expect("trusted");
        assert_eq!(trusted.validators.validators().len(), 4);
    }

    #[tokio::test]
    async fn an_anchor_with_another_hash_is_refused() {
        let node = FakeNode::new(chain(5, steady));
        let mut client =
            LightClient::new(&node, options(), TrustedStore::in_memory()).expect("options");
        let err = client
            .anchor(&TrustAnchor::Header {
                height: 3,
                hash: node.blocks[&2].hash(),
            })
            .await
            .expect_err("not the anchor");
        assert!(matches!(err.lie(), Some(Lie::HeaderHash { .. })), "{err}");
        assert!(client.store().latest().is_none());
        assert!(matches!(
            client.verify_height_at(5, after(5)).await,
            Err(LightError::NoTrustedState)
        ));
    }

    #[tokio::test]
    async fn genesis_anchors_the_first_block_through_the_genesis_validators() {
        let node = FakeNode::new(chain(12, replaced_at_10));
        let mut client =
            LightClient::new(&node, options(), TrustedStore::in_memory()).expect("options");
        let first = client
            .anchor(&TrustAnchor::Genesis { genesis: None })
            .await
            .expect("the node's genesis verifies");
        assert_eq!(first.height(), 1);
        client
            .verify_height_at(12, after(12))
            .await
            .expect("verifies");

        // The caller's own genesis, with other validators: this node serves another chain.
        let theirs = GenesisInfo {
            chain_id: CHAIN_ID.parse().expect("a chain id"),
            initial_height: 1,
            validators: chain(1, |_| validators(&["m", "n"]))[&1]
                .validators
                .validators()
                .clone(),
        };
        let mut client =
            LightClient::new(&node, options(), TrustedStore::in_memory()).expect("options");
        let err = client
            .anchor(&TrustAnchor::Genesis {
                genesis: Some(theirs),
            })
            .await
            .expect_err("another genesis");
        assert!(
            matches!(err.lie(), Some(Lie::NotThisGenesis { .. })),
            "{err}"
        );

        let other_chain = GenesisInfo {
            chain_id: "another-chain".parse().expect("a chain id"),
            initial_height: 1,
            validators: node.blocks[&1].validators.validators().clone(),
        };
        let err = client
            .anchor(&TrustAnchor::Genesis {
                genesis: Some(other_chain),
            })
            .await
            .expect_err("another chain");
        assert!(
            matches!(err.lie(), Some(Lie::NotThisGenesis { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn trust_older_than_the_trusting_period_is_not_used() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        let late = time(GENESIS_SECONDS + 2 * 3600);
        let err = client
            .verify_height_at(10, late)
            .await
            .expect_err("expired");
        assert!(
            matches!(
                err,
                LightError::TrustExpired {
                    trusted_height: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_header_from_the_future_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        // Block 10 is 9 s after block 1; the clock drift allowed is 10 s.
        let err = client
            .verify_height_at(10, time(GENESIS_SECONDS - 60))
            .await
            .expect_err("from the future");
        assert!(
            matches!(err.lie(), Some(Lie::FromTheFuture { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_header_of_another_chain_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        node.lie_in_headers(|height, signed| {
            if height == 10 {
                signed.header.chain_id = "another-chain".parse().expect("a chain id");
                signed.commit.block_id.hash = signed.header.hash();
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(matches!(err.lie(), Some(Lie::ChainId { .. })), "{err}");
    }

    #[tokio::test]
    async fn verification_stops_at_the_fetch_limit() {
        let node = FakeNode::new(chain(40, replaced_at_10));
        let mut client = LightClient::new(
            &node,
            LightOptions {
                fetches_max: 6,
                ..options()
            },
            TrustedStore::in_memory(),
        )
        .expect("options");
        client.anchor(&anchor_at(&node, 1)).await.expect("anchors");
        let err = client
            .verify_height_at(40, after(40))
            .await
            .expect_err("too far");
        assert!(
            matches!(
                err,
                LightError::FetchesExhausted {
                    target: 40,
                    fetches_max: 6
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_height_below_the_trusted_ones_is_verified_by_the_hash_chain() {
        let node = FakeNode::new(chain(20, steady));
        let mut client = anchored(&node, 20).await;
        let block = client
            .verify_height_at(15, after(20))
            .await
            .expect("verifies");
        assert_eq!(block.hash(), node.blocks[&15].hash());
        assert_eq!(block.app_hash(), &app_hash(15));

        node.lie_in_headers(|height, signed| {
            if height == 12 {
                signed.header.app_hash = AppHash::try_from(vec![0xee; 32]).expect("an app hash");
            }
        });
        let err = client
            .verify_height_at(11, after(20))
            .await
            .expect_err("a lie");
        assert!(matches!(err.lie(), Some(Lie::HashChain { .. })), "{err}");
    }

    #[tokio::test]
    async fn a_block_of_another_height_is_refused() {
        let node = FakeNode::new(chain(10, steady));
        let mut client = anchored(&node, 1).await;
        let nine = node.blocks[&9].signed_header.clone();
        node.lie_in_headers(move |height, signed| {
            if height == 10 {
                *signed = nine.clone();
            }
        });
        let err = client
            .verify_height_at(10, after(10))
            .await
            .expect_err("a lie");
        assert!(
            matches!(err.lie(), Some(Lie::WrongHeight { asked: 10, got: 9 })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_store_keeps_trusted_headers_across_runs() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("light.json");
        let node = FakeNode::new(chain(10, replaced_at_10));
        {
            let store = TrustedStore::open(&path).expect("no file yet is an empty store");
            assert!(store.latest().is_none());
            let mut client = LightClient::new(&node, options(), store).expect("options");
            client.anchor(&anchor_at(&node, 1)).await.expect("anchors");
            client
                .verify_height_at(10, after(10))
                .await
                .expect("verifies");
            client.store().save().expect("saves");
        }
        let reopened = TrustedStore::open(&path).expect("reads back");
        assert_eq!(reopened.latest().map(TrustedBlock::height), Some(10));
        assert_eq!(reopened.latest(), node.blocks.get(&10));
        assert_eq!(
            reopened.chain_id().map(ToString::to_string).as_deref(),
            Some(CHAIN_ID)
        );

        // A later run verifies from there without an anchor.
        let mut client = LightClient::new(&node, options(), reopened).expect("options");
        assert_eq!(
            client
                .verify_height_at(10, after(10))
                .await
                .map(|b| b.height()),
            Ok(10)
        );

        // A store file altered by hand is refused.
        let text = std::fs::read_to_string(&path).expect("reads");
        let hex = hex::encode_upper([10_u8; 32]);
        assert!(text.contains(&hex));
        std::fs::write(&path, text.replace(&hex, &hex::encode_upper([11_u8; 32]))).expect("writes");
        assert!(matches!(
            TrustedStore::open(&path),
            Err(LightError::Store { .. })
        ));
    }

    #[tokio::test]
    async fn the_store_keeps_one_chain_and_a_bounded_number_of_blocks() {
        let node = FakeNode::new(chain(40, steady));
        let mut client = anchored(&node, 1).await;
        for height in 2..=40 {
            client
                .verify_height_at(height, after(40))
                .await
                .expect("verifies");
        }
        let heights: Vec<u64> = client.store().heights().collect();
        assert_eq!(heights.len(), TRUSTED_BLOCKS_MAX);
        assert_eq!(heights.last(), Some(&40));

        let mut store = client.store().clone();
        let mut other = node.blocks[&5].clone();
        other.signed_header.header.chain_id = "another-chain".parse().expect("a chain id");
        assert!(matches!(
            store.insert(other),
            Err(LightError::ChainMismatch { .. })
        ));
    }

    #[test]
    fn options_that_would_trust_too_little_are_refused() {
        let node = FakeNode::new(chain(1, steady));
        let bad = [
            LightOptions::new(Duration::ZERO),
            LightOptions {
                fetches_max: 2,
                ..options()
            },
        ];
        // (A trust threshold below one third cannot even be made:
        // `TrustThresholdFraction::new` refuses it.)
        assert!(TrustThresholdFraction::new(1, 4).is_err());
        for options in bad {
            assert!(matches!(
                LightClient::new(&node, options, TrustedStore::in_memory()),
                Err(LightError::BadOptions { .. })
            ));
        }
    }

    #[test]
    fn a_genesis_file_gives_its_chain_height_and_validators() {
        let block = &chain(1, steady)[&1];
        let validators: Vec<serde_json::Value> = block
            .validators
            .validators()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "address": v.address.to_string(),
                    "pub_key": v.pub_key,
                    "power": v.power.value().to_string(),
                    "name": "",
                })
            })
            .collect();
        let genesis = serde_json::json!({
            "genesis_time": "2024-01-01T00:00:00Z",
            "chain_id": CHAIN_ID,
            "initial_height": "7",
            "consensus_params": {
                "block": {"max_bytes": "22020096", "max_gas": "-1", "time_iota_ms": "1000"},
                "evidence": {"max_age_num_blocks": "100000", "max_age_duration": "172800000000000", "max_bytes": "1048576"},
                "validator": {"pub_key_types": ["ed25519"]},
                "version": {"app": "0"}
            },
            "validators": validators,
            "app_hash": "",
            "app_state": {}
        });
        let info = GenesisInfo::from_json(genesis.to_string().as_bytes()).expect("a genesis");
        assert_eq!(info.initial_height, 7);
        assert_eq!(info.chain_id.as_str(), CHAIN_ID);
        assert_eq!(
            validator_set(info.validators).expect("a set").hash(),
            block.header().validators_hash
        );
        assert!(matches!(
            GenesisInfo::from_json(b"{}"),
            Err(LightError::BadAnchor { .. })
        ));
    }
}
