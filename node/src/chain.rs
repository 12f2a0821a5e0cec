//! A small client of a CometBFT node running `compute-abci`.

use anyhow::{anyhow, bail, Context, Result};
use compute_proto::{pb, AccountId, SigningKey, TxBuilder};
use serde_json::Value;
use tendermint_rpc::{Client, HttpClient};

/// A connection to one CometBFT node's RPC.
pub struct ChainClient {
    rpc: HttpClient,
    url: String,
    chain_id: String,
}

/// The outcome of a committed (or refused) transaction.
#[derive(Debug, serde::Serialize)]
pub struct TxReceipt {
    /// The transaction hash as CometBFT names it (upper-case hex).
    pub hash: String,
    /// The block height, 0 when refused before a block.
    pub height: u64,
    /// 0 on success.
    pub code: u32,
    /// Why it failed, when it did.
    pub log: String,
}

impl ChainClient {
    /// Connects to `url`; learns the chain id from the node unless given.
    pub async fn connect(url: &str, chain_id: Option<String>) -> Result<Self> {
        let rpc = HttpClient::new(url).with_context(|| format!("invalid node URL '{url}'"))?;
        let chain_id = match chain_id {
            Some(id) => id,
            None => rpc
                .status()
                .await
                .with_context(|| {
                    format!("cannot reach the node at {url}: is it running? (start one with scripts/devnet.sh)")
                })?
                .node_info
                .network
                .to_string(),
        };
        Ok(Self {
            rpc,
            url: url.to_owned(),
            chain_id,
        })
    }

    /// The chain id transactions are signed for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Runs an ABCI query and parses its JSON answer.
    pub async fn query(&self, path: &str) -> Result<Value> {
        let answer = self
            .rpc
            .abci_query(Some(path.to_owned()), Vec::new(), None, false)
            .await
            .with_context(|| format!("query {path} at {}", self.url))?;
        if answer.code.is_err() {
            bail!(
                "query {path} failed (code {}): {}",
                answer.code.value(),
                answer.log
            );
        }
        serde_json::from_slice(&answer.value)
            .with_context(|| format!("query {path}: answer is not JSON"))
    }

    /// The account JSON of `id`.
    pub async fn account(&self, id: &AccountId) -> Result<Value> {
        self.query(&format!("/account/{id}")).await
    }

    /// The next nonce of `id`.
    pub async fn next_nonce(&self, id: &AccountId) -> Result<u64> {
        let account = self.account(id).await?;
        account["nonce"]
            .as_u64()
            .ok_or_else(|| anyhow!("account answer has no nonce: {account}"))
    }

    /// Signs `msg` with `key` (next nonce from the chain unless given) and
    /// waits until it is in a committed block.
    pub async fn submit(
        &self,
        key: &SigningKey,
        msg: pb::tx_body::Msg,
        fee: u64,
        nonce: Option<u64>,
    ) -> Result<TxReceipt> {
        let nonce = match nonce {
            Some(n) => n,
            None => self.next_nonce(&key.account()).await?,
        };
        let mut builder = TxBuilder::new(self.chain_id.clone());
        builder.fee = fee;
        let tx = builder.sign(key, nonce, msg);
        let size = tx.len();
        let result = self.rpc.broadcast_tx_commit(tx).await.map_err(|e| {
            let too_large = matches!(
                e.detail(),
                tendermint_rpc::error::ErrorDetail::HttpRequestFailed(r) if r.status.as_u16() == 400 || r.status.as_u16() == 413
            );
            let why = if too_large {
                format!(
                    "broadcast to {}: the node refused the {size}-byte transaction; it may be larger than the chain accepts (max_tx_bytes in /params, rpc.max_body_bytes of the node)",
                    self.url
                )
            } else {
                format!("broadcast to {}", self.url)
            };
            anyhow::Error::new(e).context(why)
        })?;
        if result.check_tx.code.is_err() {
            return Ok(TxReceipt {
                hash: result.hash.to_string(),
                height: 0,
                code: result.check_tx.code.value(),
                log: result.check_tx.log,
            });
        }
        Ok(TxReceipt {
            hash: result.hash.to_string(),
            height: result.height.value(),
            code: result.tx_result.code.value(),
            log: result.tx_result.log,
        })
    }

    /// The node's latest height and app hash.
    pub async fn status(&self) -> Result<(u64, String)> {
        let status = self
            .rpc
            .status()
            .await
            .with_context(|| format!("status of {}", self.url))?;
        Ok((
            status.sync_info.latest_block_height.value(),
            status.sync_info.latest_app_hash.to_string(),
        ))
    }
}
