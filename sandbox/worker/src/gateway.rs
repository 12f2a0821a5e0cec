//! The worker's client of one gateway: queries, transactions, events and
//! blobs over the gateway's gRPC API, with typed errors and retries.
//!
//! The worker never talks to CometBFT itself. A gateway can delay or refuse,
//! but cannot forge: every transaction is signed here, and every blob and
//! module is checked against its hash here.

use std::future::Future;
use std::time::Duration;

use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::{pb, sha3_256, AccountId, BlobId, Code as AbciCode};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// Bytes per chunk of an upload.
pub const UPLOAD_CHUNK_BYTES: usize = 1 << 20;
/// The largest gRPC message accepted or sent (a module's code answer, a
/// chunk of a blob).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long a query may take.
const QUERY_TIMEOUT_MS: u64 = 30_000;
/// How long a transaction may take: commit mode waits for a block, which
/// the gateway bounds at 30 s.
const TX_TIMEOUT_MS: u64 = 60_000;
/// A blob transfer gets this long plus one second per
/// [`TRANSFER_BYTES_PER_SECOND_MIN`] bytes.
const TRANSFER_TIMEOUT_BASE_MS: u64 = 60_000;
/// The slowest transfer rate tolerated.
const TRANSFER_BYTES_PER_SECOND_MIN: u64 = 256 * 1024;

/// Why a call to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway URL is not usable.
    #[error("gateway URL '{url}' is not valid: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The gateway answered a call with a gRPC error (or could not be reached).
    #[error("gateway {call} failed: {code:?}: {message}")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
    /// A call took longer than its limit.
    #[error("gateway {call} took longer than {timeout_ms} ms")]
    Timeout {
        /// The call.
        call: &'static str,
        /// The limit.
        timeout_ms: u64,
    },
    /// The queried record does not exist ([`AbciCode::NotFound`]).
    #[error("not found: {path}: {log}")]
    NotFound {
        /// The query path.
        path: String,
        /// The chain's explanation.
        log: String,
    },
    /// The chain refused a query.
    #[error("query {path} failed with code {code}: {log}")]
    Query {
        /// The query path.
        path: String,
        /// The ABCI code.
        code: u32,
        /// The chain's explanation.
        log: String,
    },
    /// An answer did not have the expected shape.
    #[error("unexpected answer to {what}: {reason}")]
    BadAnswer {
        /// What was asked.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob's bytes do not hash to its id.
    #[error("blob {expected} arrived with bytes that hash to {actual}; refused")]
    BlobMismatch {
        /// The id asked for.
        expected: BlobId,
        /// The hash of what arrived.
        actual: BlobId,
    },
    /// A blob is larger than the worker accepts.
    #[error("blob {id} is larger than the {max_bytes} bytes accepted")]
    BlobTooLarge {
        /// The blob.
        id: BlobId,
        /// The limit.
        max_bytes: u64,
    },
}

impl GatewayError {
    /// Whether trying again later may succeed (the gateway or its node was
    /// unreachable, busy or slow), as opposed to a definite answer.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            GatewayError::Rpc { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Unknown
                    | Code::Internal
                    | Code::Cancelled
                    | Code::DataLoss
            ),
            GatewayError::Timeout { .. } => true,
            // A damaged copy on the gateway is removed there; asking again
            // may find a good one.
            GatewayError::BlobMismatch { .. } => true,
            _ => false,
        }
    }

    fn rpc(call: &'static str, status: &tonic::Status) -> Self {
        GatewayError::Rpc {
            call,
            code: status.code(),
            message: status.message().chars().take(500).collect(),
        }
    }
}

/// Exponential backoff between retries.
#[derive(Clone, Debug)]
pub struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// Starts at `initial_ms` and doubles up to `max_ms`.
    #[must_use]
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        Self {
            next_ms: initial_ms.max(1),
            max_ms: max_ms.max(1),
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next_ms.min(self.max_ms);
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        Duration::from_millis(delay)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(200, 5_000)
    }
}

/// Attempts of [`retry`] before it gives up.
pub const RETRY_ATTEMPTS_MAX: u32 = 8;

/// Runs `op` until it succeeds, fails definitely, has been tried
/// [`RETRY_ATTEMPTS_MAX`] times, or `shutdown` turns true; transient errors
/// are retried with [`Backoff`].
///
/// # Errors
/// The last error.
pub async fn retry<T, F, Fut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut op: F,
) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    let mut backoff = Backoff::default();
    let mut attempt: u32 = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempt < RETRY_ATTEMPTS_MAX && !*shutdown.borrow() => {
                let delay = backoff.next_delay();
                tracing::debug!(what, attempt, error = %e, ?delay, "transient gateway error; retrying");
                let mut stop = shutdown.clone();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e),
                }
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

async fn timed<T>(
    call: &'static str,
    timeout_ms: u64,
    future: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, GatewayError> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) => Err(GatewayError::rpc(call, &status)),
        Err(_) => Err(GatewayError::Timeout { call, timeout_ms }),
    }
}

/// A cheap-to-clone client of one gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    client: GatewayClient<Channel>,
    url: String,
}

impl Gateway {
    /// A client of the gateway at `url`; the connection is made on first
    /// use and remade after failures.
    ///
    /// # Errors
    /// [`GatewayError::BadUrl`] when `url` is not a valid URL.
    pub fn connect_lazy(url: &str) -> Result<Self, GatewayError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| GatewayError::BadUrl {
                url: url.to_owned(),
                detail: e.to_string(),
            })?
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true);
        let client = GatewayClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        Ok(Self {
            client,
            url: url.to_owned(),
        })
    }

    /// The gateway's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs an ABCI query and returns its raw JSON bytes.
    ///
    /// # Errors
    /// [`GatewayError::NotFound`] for [`AbciCode::NotFound`],
    /// [`GatewayError::Query`] for other codes, and call failures.
    pub async fn query_raw(&self, path: &str) -> Result<Vec<u8>, GatewayError> {
        let mut client = self.client.clone();
        let request = pb::QueryRequest {
            path: path.to_owned(),
            data: Vec::new(),
            height: 0,
        };
        let answer = timed("Query", QUERY_TIMEOUT_MS, client.query(request))
            .await?
            .into_inner();
        match AbciCode::from_u32(answer.code) {
            Some(AbciCode::Ok) => Ok(answer.value),
            Some(AbciCode::NotFound) => Err(GatewayError::NotFound {
                path: path.to_owned(),
                log: answer.log,
            }),
            _ => Err(GatewayError::Query {
                path: path.to_owned(),
                code: answer.code,
                log: answer.log,
            }),
        }
    }

    /// Runs an ABCI query and parses its JSON answer as `T`.
    ///
    /// # Errors
    /// As [`Gateway::query_raw`], and [`GatewayError::BadAnswer`] when the
    /// answer is not the expected JSON.
    pub async fn query<T: DeserializeOwned>(&self, path: &str) -> Result<T, GatewayError> {
        let bytes = self.query_raw(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| GatewayError::BadAnswer {
            what: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Relays a signed transaction: `Commit` waits until it is in a block,
    /// `Sync` returns after CheckTx (the chain's state, not this answer,
    /// then confirms that it landed).
    ///
    /// # Errors
    /// Call failures; a refusal by the chain is an answer with a code.
    pub async fn broadcast(
        &self,
        tx: Vec<u8>,
        mode: pb::BroadcastMode,
    ) -> Result<pb::BroadcastTxResponse, GatewayError> {
        let mut client = self.client.clone();
        let request = pb::BroadcastTxRequest {
            tx,
            mode: mode.into(),
        };
        Ok(
            timed("BroadcastTx", TX_TIMEOUT_MS, client.broadcast_tx(request))
                .await?
                .into_inner(),
        )
    }

    /// Opens the stream of assignment and reveal events of `worker`.
    ///
    /// # Errors
    /// Call failures.
    pub async fn subscribe_worker(
        &self,
        worker: &AccountId,
    ) -> Result<tonic::Streaming<pb::ChainEvent>, GatewayError> {
        let mut client = self.client.clone();
        let request = pb::SubscribeRequest {
            filter: Some(pb::subscribe_request::Filter::Worker(worker.0.to_vec())),
        };
        Ok(
            timed("Subscribe", QUERY_TIMEOUT_MS, client.subscribe(request))
                .await?
                .into_inner(),
        )
    }

    /// Fetches blob `id`, refusing more than `max_bytes` and any bytes that do
    /// not hash to `id`.
    ///
    /// # Errors
    /// Call failures, [`GatewayError::BlobTooLarge`] and
    /// [`GatewayError::BlobMismatch`].
    pub async fn get_blob(&self, id: &BlobId, max_bytes: u64) -> Result<Vec<u8>, GatewayError> {
        let timeout_ms = transfer_timeout_ms(max_bytes);
        let fetch = async {
            let mut client = self.client.clone();
            let mut stream = client
                .get_blob(pb::GetBlobRequest {
                    hash: id.0.to_vec(),
                })
                .await
                .map_err(|s| GatewayError::rpc("GetBlob", &s))?
                .into_inner();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream
                .message()
                .await
                .map_err(|s| GatewayError::rpc("GetBlob", &s))?
            {
                let total =
                    u64::try_from(bytes.len().saturating_add(chunk.data.len())).unwrap_or(u64::MAX);
                if total > max_bytes {
                    return Err(GatewayError::BlobTooLarge { id: *id, max_bytes });
                }
                bytes.extend_from_slice(&chunk.data);
            }
            let actual = BlobId(sha3_256(&bytes));
            if actual != *id {
                return Err(GatewayError::BlobMismatch {
                    expected: *id,
                    actual,
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), fetch)
            .await
            .unwrap_or(Err(GatewayError::Timeout {
                call: "GetBlob",
                timeout_ms,
            }))
    }

    /// Stores `bytes` in the gateway's blob store under their hash.
    ///
    /// # Errors
    /// Call failures, and an answer naming another hash.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<BlobId, GatewayError> {
        let id = BlobId(sha3_256(bytes));
        let mut chunks: Vec<pb::BlobChunk> = bytes
            .chunks(UPLOAD_CHUNK_BYTES)
            .map(|data| pb::BlobChunk {
                hash: Vec::new(),
                data: data.to_vec(),
            })
            .collect();
        match chunks.first_mut() {
            Some(first) => first.hash = id.0.to_vec(),
            None => chunks.push(pb::BlobChunk {
                hash: id.0.to_vec(),
                data: Vec::new(),
            }),
        }
        let mut client = self.client.clone();
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let answer = timed(
            "PutBlob",
            transfer_timeout_ms(size),
            client.put_blob(tokio_stream::iter(chunks)),
        )
        .await?
        .into_inner();
        if answer.hash != id.0 {
            return Err(GatewayError::BadAnswer {
                what: "PutBlob".to_owned(),
                reason: format!("stored under {} instead of {id}", hex::encode(&answer.hash)),
            });
        }
        Ok(id)
    }
}

fn transfer_timeout_ms(bytes: u64) -> u64 {
    TRANSFER_TIMEOUT_BASE_MS
        .saturating_add(bytes.saturating_mul(1_000) / TRANSFER_BYTES_PER_SECOND_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut backoff = Backoff::new(100, 500);
        let delays: Vec<u64> = (0..5)
            .map(|_| u64::try_from(backoff.next_delay().as_millis()).unwrap())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn unreachable_and_busy_gateways_are_transient_refusals_are_not() {
        let rpc = |code| GatewayError::Rpc {
            call: "Query",
            code,
            message: String::new(),
        };
        assert!(rpc(Code::Unavailable).is_transient());
        assert!(rpc(Code::ResourceExhausted).is_transient());
        assert!(!rpc(Code::InvalidArgument).is_transient());
        assert!(!rpc(Code::NotFound).is_transient());
        assert!(!GatewayError::NotFound {
            path: "/worker/x".to_owned(),
            log: String::new()
        }
        .is_transient());
    }

    #[tokio::test]
    async fn retry_gives_up_on_a_definite_error_at_once() {
        let (_tx, shutdown) = watch::channel(false);
        let mut calls = 0u32;
        let result: Result<(), GatewayError> = retry("test", &shutdown, || {
            calls = calls.saturating_add(1);
            async {
                Err(GatewayError::Query {
                    path: "/x".to_owned(),
                    code: AbciCode::UnknownQuery.value(),
                    log: String::new(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_reported_as_transient() {
        // Nothing listens on loopback port 9 (discard).
        let gateway = Gateway::connect_lazy("http://127.0.0.1:9").unwrap();
        let error = gateway.query_raw("/stats").await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(matches!(
            Gateway::connect_lazy("not a url"),
            Err(GatewayError::BadUrl { .. })
        ));
    }
}
