//! The CLI's verified reads: a light client kept in a trust store file,
//! anchored once (a header hash learnt out of band, a genesis file, or the
//! node's own genesis on first use), and query answers checked against the
//! headers it verifies ([`compute_client::verified`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use compute_client::light::{
    GenesisInfo, LightClient, LightOptions, RpcSource, TrustAnchor, TrustedStore,
};
use compute_client::verified::{reads_records_by_key, verified_query, VerifiedAnswer, VerifyError};
use compute_client::ChainClient;
use serde_json::json;

/// How long the light client trusts a verified header: two weeks, below
/// any sane unbonding period (docs/OPERATIONS.md).
pub const TRUSTING_PERIOD: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a verified read waits for the block that carries its app hash.
pub const NEXT_BLOCK_WAIT: Duration = Duration::from_secs(30);
/// How long one light-client RPC call may take, in milliseconds.
const RPC_TIMEOUT_MS: u64 = 10_000;

/// Where the trust comes from.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The trust store file; `<home>/.compute/light/<chain id>.json` when
    /// `None`.
    pub store: Option<PathBuf>,
    /// `HEIGHT:HASH` of a header to anchor a new store at.
    pub anchor: Option<String>,
    /// A genesis file to anchor a new store at.
    pub genesis: Option<PathBuf>,
}

impl Trust {
    /// The store file for `chain_id`.
    pub fn store_path(&self, chain_id: &str) -> PathBuf {
        if let Some(path) = &self.store {
            return path.clone();
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let safe: String = chain_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        home.join(".compute")
            .join("light")
            .join(format!("{safe}.json"))
    }

    fn anchor_for_new_store(&self) -> Result<(TrustAnchor, &'static str)> {
        if let Some(text) = &self.anchor {
            let (height, hash) = text
                .split_once(':')
                .context("--trust-anchor is HEIGHT:HASH (a block height and its header hash)")?;
            let height: u64 = height.parse().context("the height of --trust-anchor")?;
            let hash = hash
                .parse()
                .map_err(|e| anyhow::anyhow!("the hash of --trust-anchor: {e}"))?;
            return Ok((TrustAnchor::Header { height, hash }, "the given header"));
        }
        if let Some(path) = &self.genesis {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let genesis = GenesisInfo::from_json(&bytes)?;
            return Ok((
                TrustAnchor::Genesis {
                    genesis: Some(genesis),
                },
                "the given genesis file",
            ));
        }
        Ok((
            TrustAnchor::Genesis { genesis: None },
            "the node's /genesis, trusted on first use",
        ))
    }
}

/// A node's answers, verified or (with `--trust-node`) believed: what the
/// CLI's read commands ask through.
pub enum Reader {
    /// Believes the node.
    Trusting(ChainClient),
    /// Verifies every answer against light-client headers.
    Verifying(Box<Verifying>),
}

/// A client whose every query answer is verified, with its light client.
pub struct Verifying {
    client: ChainClient,
    light: tokio::sync::Mutex<LightClient<RpcSource>>,
    store_path: PathBuf,
    fresh: bool,
    /// For a snapshot: the height every answer is read at, taken from the
    /// first (`None` inside until then).
    snapshot: Option<std::sync::Mutex<Option<u64>>>,
}

impl Reader {
    /// A reader of the node behind `client`: verifying unless `trust_node`.
    ///
    /// # Errors
    /// When the trust store cannot be opened or anchored.
    pub async fn new(client: ChainClient, trust: &Trust, trust_node: bool) -> Result<Self> {
        Self::with(client, trust, trust_node, false).await
    }

    /// A reader whose verified reads of records by key come from one
    /// height, the first answer's, so that they agree with each other and
    /// only the first waits for the block that carries its app hash. Lists
    /// are read at the latest height (a node lists at its latest height
    /// only): read the list first, then the records it goes with.
    ///
    /// # Errors
    /// When the trust store cannot be opened or anchored.
    pub async fn snapshot(client: ChainClient, trust: &Trust, trust_node: bool) -> Result<Self> {
        Self::with(client, trust, trust_node, true).await
    }

    async fn with(
        client: ChainClient,
        trust: &Trust,
        trust_node: bool,
        snapshot: bool,
    ) -> Result<Self> {
        if trust_node {
            return Ok(Self::Trusting(client));
        }
        let (light, store_path, fresh) = light_client(&client, trust).await?;
        Ok(Self::Verifying(Box::new(Verifying {
            client,
            light: tokio::sync::Mutex::new(light),
            store_path,
            fresh,
            snapshot: snapshot.then(|| std::sync::Mutex::new(None)),
        })))
    }
}

impl compute_client::Query for Reader {
    async fn query_answer(
        &self,
        path: &str,
    ) -> Result<compute_client::QueryAnswer, compute_client::ClientError> {
        let v = match self {
            Self::Trusting(client) => return client.query_answer(path).await,
            Self::Verifying(v) => v,
        };
        let mut light = v.light.lock().await;
        let pinned = v
            .snapshot
            .as_ref()
            .filter(|_| reads_records_by_key(path))
            .and_then(|at| *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let answer = verified_query(
            v.client.rpc(),
            v.client.url(),
            &mut light,
            path,
            pinned,
            NEXT_BLOCK_WAIT,
        )
        .await
        .map_err(|e| compute_client::ClientError::Unverified {
            detail: format!("{:#}", explain(e, &v.store_path, v.fresh)),
        })?;
        if let Some(at) = &v.snapshot {
            at.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert(answer.height);
        }
        light
            .store()
            .save()
            .map_err(|e| compute_client::ClientError::Unverified {
                detail: e.to_string(),
            })?;
        Ok(compute_client::QueryAnswer {
            code: answer.code,
            log: answer.log,
            value: answer.value,
            height: i64::try_from(answer.height).unwrap_or(i64::MAX),
        })
    }
}

/// The light client of `client`'s chain, from its trust store, anchored
/// when the store is new; with the store's path and whether it was new.
async fn light_client(
    client: &ChainClient,
    trust: &Trust,
) -> Result<(LightClient<RpcSource>, PathBuf, bool)> {
    let store_path = trust.store_path(client.chain_id());
    if let Some(dir) = store_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let store = TrustedStore::open(&store_path)?;
    let fresh = store.latest().is_none();
    let source = RpcSource::new(client.url(), RPC_TIMEOUT_MS)?;
    let mut light = LightClient::new(source, LightOptions::new(TRUSTING_PERIOD), store)?;
    if fresh {
        let (anchor, from) = trust.anchor_for_new_store()?;
        light.anchor(&anchor).await?;
        tracing::info!(store = %store_path.display(), "light client anchored at {from}");
    }
    Ok((light, store_path, fresh))
}

/// Asks `path` of the node behind `client` with proofs and verifies the
/// answer; keeps what it verified in the trust store.
///
/// # Errors
/// When the answer cannot be verified; the message names the node and what
/// it got wrong.
pub async fn verified(
    client: &ChainClient,
    trust: &Trust,
    path: &str,
    height: Option<u64>,
) -> Result<VerifiedAnswer> {
    let (mut light, store_path, fresh) = light_client(client, trust).await?;
    let answer = verified_query(
        client.rpc(),
        client.url(),
        &mut light,
        path,
        height,
        NEXT_BLOCK_WAIT,
    )
    .await
    .map_err(|e| explain(e, &store_path, fresh))?;
    light.store().save()?;
    Ok(answer)
}

/// Adds what to do to a verification failure.
fn explain(error: VerifyError, store: &Path, fresh: bool) -> anyhow::Error {
    let lied = matches!(&error, VerifyError::Light(e) if e.lie().is_some());
    let error = anyhow::Error::new(error);
    if lied && !fresh {
        error.context(format!(
            "verification failed against the headers trusted in {}: the node lies, or it serves another chain with this id (a devnet that was reset?); if you are sure, delete that file or pass --trust-store",
            store.display()
        ))
    } else {
        error.context("the answer could not be verified (pass --trust-node to believe the node without proofs)")
    }
}

/// A verified answer's JSON value, failing on a proven absence.
///
/// # Errors
/// When the record was not found (its absence proven) or the answer is not
/// JSON.
pub fn answer_value(answer: &VerifiedAnswer) -> Result<serde_json::Value> {
    if answer.code != 0 {
        bail!(
            "{} (code {}; proven absent at height {})",
            answer.log,
            answer.code,
            answer.height
        );
    }
    Ok(serde_json::from_slice(&answer.value)?)
}

/// What `compute verify query` shows: the answer, the header it was
/// verified against, and every proven key.
pub fn report(answer: &VerifiedAnswer) -> serde_json::Value {
    let header = &answer.header;
    let proven: Vec<serde_json::Value> = answer
        .proven
        .iter()
        .map(|(key, value)| {
            json!({
                "key": key.to_string(),
                "key_hex": hex::encode(&key.0),
                "present": value.is_some(),
                "value_hex": value.map(hex::encode),
            })
        })
        .collect();
    json!({
        "path": answer.path,
        "height": answer.height,
        "code": answer.code,
        "answer": serde_json::from_slice::<serde_json::Value>(&answer.value).ok(),
        "verified_header": {
            "height": header.height(),
            "hash": header.hash().to_string(),
            "app_hash": hex::encode(header.app_hash().as_bytes()),
            "time": header.time().to_string(),
        },
        "proven": proven,
    })
}

/// [`report`] for people.
pub fn report_text(answer: &VerifiedAnswer) -> String {
    let header = &answer.header;
    let mut out = format!(
        "{} at height {}: verified against block {} (header {}, app hash {}), signed by its validators\n",
        answer.path,
        answer.height,
        header.height(),
        header.hash(),
        hex::encode(header.app_hash().as_bytes()),
    );
    for (key, value) in answer.proven.iter() {
        match value {
            Some(v) => out.push_str(&format!("  proven present  {key} = {}\n", hex::encode(v))),
            None => out.push_str(&format!("  proven absent   {key}\n")),
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&answer.value) {
        Ok(value) => out
            .push_str(&serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())),
        Err(_) => out.push_str(&format!("{} (code {})", answer.log, answer.code)),
    }
    out
}
