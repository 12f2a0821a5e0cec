//! The gateway's side of CometBFT's RPC: broadcasting, queries and the
//! block results that a subscription reads to catch up after a reconnect.

use std::time::Duration;

use compute_proto::pb;
use tendermint::abci;
use tendermint_rpc::error::ErrorDetail;
use tendermint_rpc::{Client, HttpClient, HttpClientUrl};

use super::error::NodeError;

/// How long one RPC call may take; `broadcast_tx_commit` waits for a block,
/// which CometBFT itself bounds (`timeout_broadcast_tx_commit`, 10 s by default).
const RPC_TIMEOUT_MS: u64 = 30_000;

/// How `BroadcastTx` waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Return after CheckTx.
    Sync,
    /// Return after the transaction is in a committed block.
    Commit,
}

/// A client of one CometBFT node's RPC; cheap to clone.
#[derive(Clone, Debug)]
pub struct Relay {
    rpc: HttpClient,
    url: String,
}

/// The events of one block: its own (FinalizeBlock) and each transaction's.
#[derive(Clone, Debug, Default)]
pub struct BlockEvents {
    /// The block's height.
    pub height: i64,
    /// Events of FinalizeBlock itself.
    pub block: Vec<abci::Event>,
    /// Events of each transaction, in block order.
    pub txs: Vec<Vec<abci::Event>>,
}

impl Relay {
    /// A client of the RPC at `url` (no request is made yet).
    ///
    /// # Errors
    /// [`NodeError::Unreachable`] when the URL is not a valid RPC URL.
    pub fn new(url: &str) -> Result<Self, NodeError> {
        let parsed: HttpClientUrl = url.parse().map_err(|e| NodeError::Unreachable {
            url: url.to_owned(),
            detail: format!("invalid RPC URL: {e}"),
        })?;
        let rpc = HttpClient::builder(parsed)
            .timeout(Duration::from_millis(RPC_TIMEOUT_MS))
            .build()
            .map_err(|e| NodeError::Unreachable {
                url: url.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            rpc,
            url: url.to_owned(),
        })
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, e: tendermint_rpc::Error) -> NodeError {
        match e.detail() {
            ErrorDetail::Response(r) => NodeError::Refused(r.source.to_string()),
            ErrorDetail::HttpRequestFailed(r) => NodeError::Http {
                url: self.url.clone(),
                status: r.status.as_u16(),
            },
            ErrorDetail::Timeout(_) | ErrorDetail::WebSocketTimeout(_) => NodeError::Timeout {
                url: self.url.clone(),
                detail: summary(&e),
            },
            _ => NodeError::Unreachable {
                url: self.url.clone(),
                detail: summary(&e),
            },
        }
    }

    /// Relays `tx` and reports what CometBFT and the application answered.
    ///
    /// # Errors
    /// [`NodeError`] when the node fails; a refusal by the application is an
    /// answer with a non-zero code, not an error.
    pub async fn broadcast(
        &self,
        tx: Vec<u8>,
        mode: Mode,
    ) -> Result<pb::BroadcastTxResponse, NodeError> {
        match mode {
            Mode::Sync => {
                let r = self
                    .rpc
                    .broadcast_tx_sync(tx)
                    .await
                    .map_err(|e| self.error(e))?;
                Ok(pb::BroadcastTxResponse {
                    hash: r.hash.as_bytes().to_vec(),
                    code: r.code.value(),
                    codespace: r.codespace,
                    log: r.log,
                    height: 0,
                })
            }
            Mode::Commit => {
                let r = self
                    .rpc
                    .broadcast_tx_commit(tx)
                    .await
                    .map_err(|e| self.error(e))?;
                let hash = r.hash.as_bytes().to_vec();
                if r.check_tx.code.is_err() {
                    return Ok(pb::BroadcastTxResponse {
                        hash,
                        code: r.check_tx.code.value(),
                        codespace: r.check_tx.codespace,
                        log: r.check_tx.log,
                        height: 0,
                    });
                }
                Ok(pb::BroadcastTxResponse {
                    hash,
                    code: r.tx_result.code.value(),
                    codespace: r.tx_result.codespace,
                    log: r.tx_result.log,
                    height: i64::try_from(r.height.value()).unwrap_or(i64::MAX),
                })
            }
        }
    }

    /// Runs an ABCI query at `height` (the latest when `None`).
    ///
    /// # Errors
    /// [`NodeError`] when the node fails.
    pub async fn query(
        &self,
        path: String,
        data: Vec<u8>,
        height: Option<tendermint::block::Height>,
    ) -> Result<pb::QueryResponse, NodeError> {
        let r = self
            .rpc
            .abci_query(Some(path), data, height, false)
            .await
            .map_err(|e| self.error(e))?;
        Ok(pb::QueryResponse {
            code: r.code.value(),
            log: r.log,
            value: r.value,
            height: i64::try_from(r.height.value()).unwrap_or(i64::MAX),
        })
    }

    /// The node's latest committed height.
    ///
    /// # Errors
    /// [`NodeError`] when the node fails.
    pub async fn latest_height(&self) -> Result<u64, NodeError> {
        let status = self.rpc.status().await.map_err(|e| self.error(e))?;
        Ok(status.sync_info.latest_block_height.value())
    }

    /// The events of the block at `height`.
    ///
    /// # Errors
    /// [`NodeError`] when the node fails or has no such block.
    pub async fn block_events(&self, height: u64) -> Result<BlockEvents, NodeError> {
        let h = tendermint::block::Height::try_from(height)
            .map_err(|e| NodeError::Refused(format!("height {height}: {e}")))?;
        let r = self.rpc.block_results(h).await.map_err(|e| self.error(e))?;
        Ok(BlockEvents {
            height: i64::try_from(r.height.value()).unwrap_or(i64::MAX),
            block: r.finalize_block_events,
            txs: r
                .txs_results
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.events)
                .collect(),
        })
    }
}

/// An RPC error on one line: its message and causes, without the location
/// and backtrace that the error type may have captured.
pub fn summary(e: &tendermint_rpc::Error) -> String {
    let text = e.to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Location:") || line.starts_with("Stack backtrace:") {
            break;
        }
        if line.is_empty() || line == "Caused by:" {
            continue;
        }
        parts.push(line);
    }
    parts.join(": ")
}

/// The chain's typed queries, read through this node's `abci_query`: the
/// gateway reads accounts, workers and jobs the way every client does.
impl compute_client::Query for Relay {
    async fn query_answer(
        &self,
        path: &str,
    ) -> Result<compute_client::QueryAnswer, compute_client::ClientError> {
        let answer = self
            .query(path.to_owned(), Vec::new(), None)
            .await
            .map_err(|e| compute_client::ClientError::Node {
                call: "abci_query",
                url: self.url.clone(),
                detail: e.to_string(),
            })?;
        Ok(compute_client::QueryAnswer {
            code: answer.code,
            log: answer.log,
            value: answer.value,
            height: answer.height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_node_is_reported_on_one_short_line() {
        // Nothing listens on loopback port 9 (discard).
        let relay = Relay::new("http://127.0.0.1:9").unwrap();
        let e = relay.latest_height().await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, NodeError::Unreachable { .. }), "{text}");
        assert!(!text.contains('\n') && text.len() < 400, "{text}");
        assert!(text.contains("error sending request"), "{text}");
    }

    /// A one-shot HTTP server answering every request with `status`, as
    /// CometBFT answers 400 to a body over its `max_body_bytes`.
    async fn answering(status: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let body = "request too large";
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        url
    }

    #[tokio::test]
    async fn an_http_client_error_of_the_node_is_not_unavailable() {
        use super::super::error::GatewayError;
        let relay = Relay::new(&answering("400 Bad Request").await).unwrap();
        let e = relay
            .broadcast(vec![1, 2, 3], Mode::Sync)
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::Http { status: 400, .. }), "{e:?}");
        assert_eq!(GatewayError::Node(e).code(), tonic::Code::InvalidArgument);

        let relay = Relay::new(&answering("413 Payload Too Large").await).unwrap();
        let e = relay
            .query("/stats".into(), Vec::new(), None)
            .await
            .unwrap_err();
        assert_eq!(GatewayError::Node(e).code(), tonic::Code::ResourceExhausted);

        let relay = Relay::new(&answering("503 Service Unavailable").await).unwrap();
        let e = relay.latest_height().await.unwrap_err();
        assert_eq!(GatewayError::Node(e).code(), tonic::Code::Unavailable);
    }
}
