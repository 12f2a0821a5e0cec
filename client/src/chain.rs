//! A client of one CometBFT node running `compute-abci`, over its JSON-RPC:
//! it learns the chain id, reads queries ([`Query`]), and signs
//! transactions locally and waits for their block. Keys never leave the
//! caller.

use std::future::Future;
use std::time::Duration;

use compute_proto::{pb, Code, SigningKey, TxBuilder};
use tendermint_rpc::{Client, HttpClient};

use crate::error::ClientError;
use crate::query::{Query, QueryAnswer};

/// How long a query or a status may take.
const QUERY_TIMEOUT_MS: u64 = 30_000;
/// How long a broadcast that waits for its block may take; CometBFT's own
/// `timeout_broadcast_tx_commit` is 10 s by default.
const COMMIT_TIMEOUT_MS: u64 = 60_000;

/// The outcome of a transaction the chain accepted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TxReceipt {
    /// The transaction hash as CometBFT names it (upper-case hex).
    pub hash: String,
    /// The block it is in (0 when only CheckTx has answered yet).
    pub height: u64,
    /// The chain's code: always 0 ([`Code::Ok`]) in a receipt; a refusal is
    /// [`ClientError::TxRejected`].
    pub code: u32,
    /// What the chain logged.
    pub log: String,
}

/// The node's view of the chain head.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// The chain id.
    pub chain_id: String,
    /// The latest block height.
    pub height: u64,
    /// The app hash after that block (upper-case hex, as CometBFT shows it).
    pub app_hash: String,
}

/// A connection to one CometBFT node's RPC. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChainClient {
    rpc: HttpClient,
    url: String,
    chain_id: String,
}

/// The receipt of a transaction CometBFT answered `code` and `log` for, or
/// the chain's refusal.
///
/// # Errors
/// [`ClientError::TxRejected`] or [`ClientError::UnknownCode`] when `code`
/// is not 0.
pub fn receipt(
    code: u32,
    log: String,
    hash: String,
    height: u64,
) -> Result<TxReceipt, ClientError> {
    match Code::from_u32(code) {
        Some(Code::Ok) => Ok(TxReceipt {
            hash,
            height,
            code,
            log,
        }),
        Some(code) => Err(ClientError::TxRejected {
            code,
            log,
            hash,
            height,
        }),
        None => Err(ClientError::UnknownCode {
            what: format!("transaction {hash}"),
            code,
            log,
        }),
    }
}

async fn timed<T>(
    call: &'static str,
    url: &str,
    timeout_ms: u64,
    future: impl Future<Output = Result<T, tendermint_rpc::Error>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ClientError::Node {
            call,
            url: url.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(ClientError::Timeout { call, timeout_ms }),
    }
}

impl ChainClient {
    /// A client of the node at `url` that signs for `chain_id`; nothing is
    /// sent until the first call.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`].
    pub fn new(url: &str, chain_id: impl Into<String>) -> Result<Self, ClientError> {
        let rpc = HttpClient::new(url).map_err(|e| ClientError::BadUrl {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            rpc,
            url: url.to_owned(),
            chain_id: chain_id.into(),
        })
    }

    /// Connects to `url`; learns the chain id from the node (`/status`)
    /// unless given.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`], and the failure of `/status`.
    pub async fn connect(url: &str, chain_id: Option<String>) -> Result<Self, ClientError> {
        let mut client = Self::new(url, chain_id.clone().unwrap_or_default())?;
        if chain_id.is_none() {
            client.chain_id = client.status().await?.chain_id;
        }
        Ok(client)
    }

    /// The chain id transactions are signed for.
    #[must_use]
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The node's RPC URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying CometBFT RPC client, for calls this crate does not wrap.
    #[must_use]
    pub fn rpc(&self) -> &HttpClient {
        &self.rpc
    }

    /// The node's chain id, latest height and app hash.
    ///
    /// # Errors
    /// [`ClientError::Node`] and [`ClientError::Timeout`].
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let status = timed("status", &self.url, QUERY_TIMEOUT_MS, self.rpc.status()).await?;
        Ok(NodeStatus {
            chain_id: status.node_info.network.to_string(),
            height: status.sync_info.latest_block_height.value(),
            app_hash: status.sync_info.latest_app_hash.to_string(),
        })
    }

    /// Signs `msg` with `key` for this chain, with `nonce` and `fee`.
    #[must_use]
    pub fn sign(&self, key: &SigningKey, nonce: u64, fee: u64, msg: pb::tx_body::Msg) -> Vec<u8> {
        let mut builder = TxBuilder::new(self.chain_id.clone());
        builder.fee = fee;
        builder.sign(key, nonce, msg)
    }

    /// Signs `msg` with `key` (with the next nonce from the chain unless
    /// given) and waits until it is in a committed block.
    ///
    /// # Errors
    /// [`ClientError::TxRejected`] when the chain refuses it; transport
    /// failures as [`ChainClient::broadcast_commit`].
    pub async fn submit(
        &self,
        key: &SigningKey,
        msg: pb::tx_body::Msg,
        fee: u64,
        nonce: Option<u64>,
    ) -> Result<TxReceipt, ClientError> {
        let nonce = match nonce {
            Some(n) => n,
            None => self.next_nonce(&key.account()).await?,
        };
        self.broadcast_commit(self.sign(key, nonce, fee, msg)).await
    }

    /// Sends signed transaction bytes and waits until they are in a
    /// committed block.
    ///
    /// # Errors
    /// [`ClientError::TxRejected`] when CheckTx or the block refuses it,
    /// [`ClientError::TxTooLarge`] when the node refuses its size,
    /// [`ClientError::Node`] and [`ClientError::Timeout`].
    pub async fn broadcast_commit(&self, tx: Vec<u8>) -> Result<TxReceipt, ClientError> {
        let size_bytes = u64::try_from(tx.len()).unwrap_or(u64::MAX);
        let answer = tokio::time::timeout(
            Duration::from_millis(COMMIT_TIMEOUT_MS),
            self.rpc.broadcast_tx_commit(tx),
        )
        .await
        .map_err(|_| ClientError::Timeout {
            call: "broadcast_tx_commit",
            timeout_ms: COMMIT_TIMEOUT_MS,
        })?;
        let result = answer.map_err(|e| {
            // CometBFT answers a body past its limit with a bare HTTP error.
            let too_large = matches!(
                e.detail(),
                tendermint_rpc::error::ErrorDetail::HttpRequestFailed(r)
                    if r.status.as_u16() == 400 || r.status.as_u16() == 413
            );
            if too_large {
                ClientError::TxTooLarge {
                    url: self.url.clone(),
                    size_bytes,
                }
            } else {
                ClientError::Node {
                    call: "broadcast_tx_commit",
                    url: self.url.clone(),
                    detail: e.to_string(),
                }
            }
        })?;
        let hash = result.hash.to_string();
        if result.check_tx.code.is_err() {
            return receipt(result.check_tx.code.value(), result.check_tx.log, hash, 0);
        }
        receipt(
            result.tx_result.code.value(),
            result.tx_result.log,
            hash,
            result.height.value(),
        )
    }
}

impl Query for ChainClient {
    async fn query_answer(&self, path: &str) -> Result<QueryAnswer, ClientError> {
        let answer = timed(
            "abci_query",
            &self.url,
            QUERY_TIMEOUT_MS,
            self.rpc
                .abci_query(Some(path.to_owned()), Vec::new(), None, false),
        )
        .await?;
        Ok(QueryAnswer {
            code: answer.code.value(),
            log: answer.log,
            value: answer.value,
            height: i64::try_from(answer.height.value()).unwrap_or(i64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_given_for_code_zero_only() {
        let ok = receipt(0, String::new(), "AB".to_owned(), 5).unwrap();
        assert_eq!((ok.height, ok.code), (5, 0));
        assert!(matches!(
            receipt(16, "stored".to_owned(), "AB".to_owned(), 5),
            Err(ClientError::TxRejected {
                code: Code::ModuleExists,
                height: 5,
                ..
            })
        ));
        assert!(matches!(
            receipt(4_000, String::new(), "AB".to_owned(), 0),
            Err(ClientError::UnknownCode { code: 4_000, .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_transient_error() {
        // Nothing listens on loopback port 9 (discard).
        let error = ChainClient::connect("http://127.0.0.1:9", None)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Node { .. }), "{error}");
        assert!(error.is_transient());
        assert!(matches!(
            ChainClient::new("not a url", "c"),
            Err(ClientError::BadUrl { .. })
        ));
    }
}
