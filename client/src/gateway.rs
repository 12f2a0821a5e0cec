//! A client of one gateway (`compute-node`) over its gRPC API: queries,
//! transactions, event streams and blobs, each call bounded in time.
//!
//! A gateway can delay or refuse, but cannot forge: transactions are signed
//! by the caller, and every blob is checked here against its hash and the
//! caller's size bound ([`crate::blob`]).

use std::future::Future;
use std::time::Duration;

use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::upload::UPLOAD_HEADER_TTL_SECS;
use compute_proto::{pb, AccountId, BlobId, JobId, SigningKey};
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::blob::{self, DOWNLOAD_CHUNK_BYTES_MAX, UPLOAD_CHUNK_BYTES};
use crate::chain::{receipt, TxReceipt};
use crate::error::ClientError;
use crate::query::{Query, QueryAnswer};

/// The largest gRPC message accepted or sent: a query answer carrying a
/// module's code, or a transaction.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long connecting to the gateway may take.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long a query, or opening an event stream, may take.
const QUERY_TIMEOUT_MS: u64 = 30_000;
/// How long a transaction may take: commit mode waits for a block, which
/// the gateway bounds at 30 s.
const TX_TIMEOUT_MS: u64 = 60_000;

async fn timed<T>(
    call: &'static str,
    timeout_ms: u64,
    future: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) => Err(ClientError::rpc(call, &status)),
        Err(_) => Err(ClientError::Timeout { call, timeout_ms }),
    }
}

/// A stream of chain events from `Subscribe`.
#[derive(Debug)]
pub struct Events {
    stream: tonic::Streaming<pb::ChainEvent>,
}

impl Events {
    /// The next event; `None` when the gateway ended the stream. Cancel
    /// safe: dropping the future loses no event.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the stream breaks (`RESOURCE_EXHAUSTED`
    /// when this reader fell too far behind: subscribe again and re-read
    /// the state).
    pub async fn next(&mut self) -> Result<Option<pb::ChainEvent>, ClientError> {
        self.stream
            .next()
            .await
            .transpose()
            .map_err(|s| ClientError::rpc("Subscribe", &s))
    }

    /// The underlying gRPC stream.
    #[must_use]
    pub fn into_inner(self) -> tonic::Streaming<pb::ChainEvent> {
        self.stream
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
    /// [`ClientError::BadUrl`] when `url` is not a valid URL.
    pub fn connect_lazy(url: &str) -> Result<Self, ClientError> {
        let channel = Self::endpoint(url)?.connect_lazy();
        Ok(Self::over(channel, url))
    }

    /// Connects to the gateway at `url` now, so that an unreachable gateway
    /// is reported at once.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`], and [`ClientError::Rpc`] with
    /// `UNAVAILABLE` when it cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let channel = Self::endpoint(url)?
            .connect()
            .await
            .map_err(|e| ClientError::Rpc {
                call: "connect",
                code: tonic::Code::Unavailable,
                message: format!("cannot reach the gateway at {url}: {e}"),
            })?;
        Ok(Self::over(channel, url))
    }

    fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
        Ok(Endpoint::from_shared(url.to_owned())
            .map_err(|e| ClientError::BadUrl {
                url: url.to_owned(),
                detail: e.to_string(),
            })?
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true))
    }

    fn over(channel: Channel, url: &str) -> Self {
        let client = GatewayClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        Self {
            client,
            url: url.to_owned(),
        }
    }

    /// The gateway's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying gRPC client, for calls this crate does not wrap (and
    /// for tests that send what an honest client never would).
    #[must_use]
    pub fn grpc(&self) -> GatewayClient<Channel> {
        self.client.clone()
    }

    /// Relays signed transaction bytes: `Commit` waits until they are in a
    /// block, `Sync` returns after CheckTx. A refusal is an answer with a
    /// code, not an error: see [`Gateway::commit`] for one that is.
    ///
    /// # Errors
    /// Call failures.
    pub async fn broadcast(
        &self,
        tx: Vec<u8>,
        mode: pb::BroadcastMode,
    ) -> Result<pb::BroadcastTxResponse, ClientError> {
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

    /// Relays signed transaction bytes and waits until they are in a block.
    ///
    /// # Errors
    /// [`ClientError::TxRejected`] when the chain refuses them; call failures.
    pub async fn commit(&self, tx: Vec<u8>) -> Result<TxReceipt, ClientError> {
        let answer = self.broadcast(tx, pb::BroadcastMode::Commit).await?;
        receipt(
            answer.code,
            answer.log,
            hex::encode_upper(&answer.hash),
            u64::try_from(answer.height).unwrap_or(0),
        )
    }

    async fn subscribe(
        &self,
        filter: pb::subscribe_request::Filter,
    ) -> Result<Events, ClientError> {
        let mut client = self.client.clone();
        let request = pb::SubscribeRequest {
            filter: Some(filter),
        };
        let stream = timed("Subscribe", QUERY_TIMEOUT_MS, client.subscribe(request))
            .await?
            .into_inner();
        Ok(Events { stream })
    }

    /// Opens the stream of assignment and reveal events of `worker`.
    ///
    /// # Errors
    /// Call failures (`UNAVAILABLE` while the gateway's node is down).
    pub async fn subscribe_worker(&self, worker: &AccountId) -> Result<Events, ClientError> {
        self.subscribe(pb::subscribe_request::Filter::Worker(worker.0.to_vec()))
            .await
    }

    /// Opens the stream of `job`'s progress events (assignments, reveal
    /// openings, settlements, failures, its completion, cheats). The
    /// stream answers once the gateway is subscribed, so every event after
    /// this call returns is seen.
    ///
    /// # Errors
    /// Call failures (`UNAVAILABLE` while the gateway's node is down).
    pub async fn subscribe_job(&self, job: &JobId) -> Result<Events, ClientError> {
        self.subscribe(pb::subscribe_request::Filter::JobId(job.0.to_vec()))
            .await
    }

    /// Opens the stream of every task settlement (`task_settled`, of any
    /// job): what a watcher samples.
    ///
    /// # Errors
    /// Call failures (`UNAVAILABLE` while the gateway's node is down).
    pub async fn subscribe_settlements(&self) -> Result<Events, ClientError> {
        self.subscribe(pb::subscribe_request::Filter::Settlements(true))
            .await
    }

    /// Fetches blob `id`, reading no more than `max_bytes` of it and
    /// refusing bytes that do not hash to `id`.
    ///
    /// # Errors
    /// Call failures, [`ClientError::BlobTooLarge`],
    /// [`ClientError::BlobMismatch`] and [`ClientError::Timeout`].
    pub async fn get_blob(&self, id: &BlobId, max_bytes: u64) -> Result<Vec<u8>, ClientError> {
        let timeout_ms = blob::transfer_timeout_ms(max_bytes);
        let fetch = async {
            // One message may not exceed a chunk, whatever the channel allows.
            let mut client = self
                .client
                .clone()
                .max_decoding_message_size(DOWNLOAD_CHUNK_BYTES_MAX);
            let stream = client
                .get_blob(pb::GetBlobRequest {
                    hash: id.0.to_vec(),
                })
                .await
                .map_err(|s| ClientError::rpc("GetBlob", &s))?
                .into_inner();
            blob::read_bounded(id, max_bytes, stream).await
        };
        tokio::time::timeout(Duration::from_millis(timeout_ms), fetch)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                call: "GetBlob",
                timeout_ms,
            }))
    }

    /// Stores `bytes` in the gateway's blob store under their hash, as an
    /// upload of `key`'s account: the first chunk carries a header signed
    /// by `key` naming the hash and size, valid for
    /// [`UPLOAD_HEADER_TTL_SECS`] from this machine's clock, and names the
    /// hash so that the gateway refuses bytes changed on the way.
    ///
    /// # Errors
    /// Call failures: `UNAUTHENTICATED` when the gateway refuses the header
    /// (a clock more than [`UPLOAD_HEADER_TTL_SECS`] off makes it look
    /// expired or too far ahead), `PERMISSION_DENIED` when the account may
    /// not upload there (not funded enough, not a registered worker),
    /// `RESOURCE_EXHAUSTED` for a quota, rate or full store; and
    /// [`ClientError::BadAnswer`] when the gateway names another hash or size.
    pub async fn put_blob(&self, key: &SigningKey, bytes: &[u8]) -> Result<BlobId, ClientError> {
        let id = BlobId::of(bytes);
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let header = blob::upload_header(key, &id, size, blob::unix_now());
        let expires = header.expires;
        let chunks = blob::signed_chunks(bytes, header, UPLOAD_CHUNK_BYTES);
        let mut client = self.client.clone();
        let answer = timed(
            "PutBlob",
            blob::transfer_timeout_ms(size),
            client.put_blob(tokio_stream::iter(chunks)),
        )
        .await
        .map_err(|e| upload_refusal(e, &key.account(), expires))?
        .into_inner();
        if answer.hash != id.0 || answer.size != size {
            return Err(ClientError::BadAnswer {
                what: "PutBlob".to_owned(),
                reason: format!(
                    "stored {} bytes under {} instead of {size} under {id}",
                    answer.size,
                    hex::encode(&answer.hash)
                ),
            });
        }
        Ok(id)
    }
}

/// A `PutBlob` refusal of the uploader's header or account, with what the
/// person running this client can do about it; other errors as they are.
fn upload_refusal(error: ClientError, uploader: &AccountId, expires: u64) -> ClientError {
    let ClientError::Rpc {
        call,
        code,
        message,
    } = error
    else {
        return error;
    };
    let hint = match code {
        tonic::Code::Unauthenticated => format!(
            "the header was signed by account {uploader} to expire at {expires}, \
             {UPLOAD_HEADER_TTL_SECS} s after this machine's clock: if the gateway finds it \
             expired or too far ahead, this clock or the gateway's is wrong; sync them (NTP)"
        ),
        tonic::Code::PermissionDenied => format!(
            "to upload as account {uploader}, fund it up to the gateway's \
             --upload-min-balance, register it as a worker, or use another gateway"
        ),
        _ => {
            return ClientError::Rpc {
                call,
                code,
                message,
            }
        }
    };
    ClientError::Rpc {
        call,
        code,
        message: format!("{message} ({hint})"),
    }
}

impl Query for Gateway {
    async fn query_answer(&self, path: &str) -> Result<QueryAnswer, ClientError> {
        let mut client = self.client.clone();
        let request = pb::QueryRequest {
            path: path.to_owned(),
            data: Vec::new(),
            height: 0,
        };
        let answer = timed("Query", QUERY_TIMEOUT_MS, client.query(request))
            .await?
            .into_inner();
        Ok(QueryAnswer {
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
    async fn an_unreachable_gateway_is_reported_as_transient() {
        // Nothing listens on loopback port 9 (discard).
        let gateway = Gateway::connect_lazy("http://127.0.0.1:9").unwrap();
        let error = gateway.query_raw("/stats").await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let error = Gateway::connect("http://127.0.0.1:9").await.unwrap_err();
        assert_eq!(error.grpc_code(), Some(tonic::Code::Unavailable));
        assert!(matches!(
            Gateway::connect_lazy("not a url"),
            Err(ClientError::BadUrl { .. })
        ));
    }

    #[test]
    fn refused_uploads_say_what_to_do() {
        let account = SigningKey::from_seed([4; 32]).account();
        let refused = |code, message: &str| {
            upload_refusal(
                ClientError::rpc("PutBlob", &tonic::Status::new(code, message)),
                &account,
                1_600,
            )
        };
        let error = refused(tonic::Code::Unauthenticated, "upload header expired");
        assert_eq!(error.grpc_code(), Some(tonic::Code::Unauthenticated));
        assert!(!error.is_transient());
        let text = error.to_string();
        for wanted in [
            "gateway PutBlob failed: Unauthenticated: upload header expired (",
            &account.to_string(),
            "1600",
            "clock",
        ] {
            assert!(text.contains(wanted), "{wanted} missing from: {text}");
        }

        let error = refused(tonic::Code::PermissionDenied, "balance 0 < 10");
        assert_eq!(error.grpc_code(), Some(tonic::Code::PermissionDenied));
        assert!(!error.is_transient());
        let text = error.to_string();
        for wanted in ["balance 0 < 10 (", &account.to_string(), "fund it"] {
            assert!(text.contains(wanted), "{wanted} missing from: {text}");
        }

        // Anything else is left as it is.
        let error = refused(tonic::Code::ResourceExhausted, "quota");
        assert_eq!(
            error.to_string(),
            "gateway PutBlob failed: ResourceExhausted: quota"
        );
        let timeout = ClientError::Timeout {
            call: "PutBlob",
            timeout_ms: 5,
        };
        assert!(matches!(
            upload_refusal(timeout, &account, 0),
            ClientError::Timeout { .. }
        ));
    }
}
