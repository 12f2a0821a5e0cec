//! The `compute.v1.Gateway` gRPC service.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::pb::gateway_server::Gateway;
use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, BlobId, Code as AbciCode, JobId, SignedTx, UploadError, VerifiedUpload};
use prost::Message;
use sha3::{Digest, Sha3_256};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::auth::Admission;
use super::error::{GatewayError, NodeError};
use super::events::{forward, Filter, Hub};
use super::limits::{client_of, Limits};
use super::metrics::Metrics;
use super::relay::{Mode, Relay};
use super::store::{BlobStore, Stored};

/// The size of the chunks `GetBlob` streams.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The largest transaction relayed: the ceiling genesis puts on the
/// chain's `max_tx_bytes`, so every transaction a chain can accept fits.
pub const TX_BYTES_MAX: usize = compute_proto::limits::TX_BYTES_CEILING as usize;
/// The metadata key a gateway sets when it fetches from a peer: a gateway
/// that sees it serves only what it has, so two gateways that name each
/// other as peers never ask each other in a loop.
pub const PEER_HOP_HEADER: &str = "x-compute-peer-fetch";
/// How many events may wait in one subscriber's gRPC buffer; past it, the
/// subscriber's cursor on the shared block ring falls behind instead.
const SUBSCRIBER_BUFFER: usize = 256;
/// How long connecting to a peer may take.
const PEER_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// A peer, or an uploader, must deliver at least this many bytes per
/// second (plus a minute).
const PEER_BYTES_PER_SECOND_MIN: u64 = 256 * 1024;

/// What the service needs to run.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Other gateways' gRPC URLs, asked in order for missing blobs.
    pub peers: Vec<String>,
    /// CometBFT's websocket URL.
    pub ws_url: String,
}

/// The gateway: relays signed transactions, proxies queries, streams events
/// and serves verified blobs. It never holds a key.
#[derive(Clone, Debug)]
pub struct GatewayService {
    relay: Relay,
    store: BlobStore,
    metrics: Arc<Metrics>,
    config: Arc<ServiceConfig>,
    limits: Limits,
    admission: Admission,
    hub: Hub,
    shutdown: watch::Receiver<bool>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl GatewayService {
    /// A service over these parts; starts the shared CometBFT subscription
    /// (so it must run inside a Tokio runtime). Its event streams end when
    /// `shutdown` turns true, so that a graceful shutdown is not held open
    /// by them.
    pub fn new(
        relay: Relay,
        store: BlobStore,
        metrics: Arc<Metrics>,
        config: ServiceConfig,
        limits: Limits,
        admission: Admission,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let hub = Hub::start(
            &config.ws_url,
            relay.clone(),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        Self::with_hub(
            relay, store, metrics, config, limits, admission, hub, shutdown,
        )
    }

    /// A service streaming from `hub` (which tests feed by hand).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_hub(
        relay: Relay,
        store: BlobStore,
        metrics: Arc<Metrics>,
        config: ServiceConfig,
        limits: Limits,
        admission: Admission,
        hub: Hub,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            relay,
            store,
            metrics,
            config: Arc::new(config),
            limits,
            admission,
            hub,
            shutdown,
        }
    }

    /// The hub of chain events this service streams from.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    fn finish<T>(
        &self,
        method: &'static str,
        result: Result<T, GatewayError>,
    ) -> Result<T, Status> {
        let result = result.map_err(Status::from);
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics.request(method, code);
        if let Err(status) = &result {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "refused");
        }
        result
    }

    async fn relay_typed(
        &self,
        call: &'static str,
        expected: &'static str,
        request: pb::SignedTx,
    ) -> Result<(SignedTx, pb::BroadcastTxResponse), GatewayError> {
        let tx = request.tx.ok_or_else(|| {
            GatewayError::InvalidArgument(format!("{call} needs a signed transaction in `tx`"))
        })?;
        let bytes = tx.encode_to_vec();
        let decoded = decode_tx(&bytes)?;
        let got = compute_proto::tx::msg_name(&decoded.msg);
        // The single message or its batch (`CommitResult`, `CommitResults`).
        if got.strip_suffix('s').unwrap_or(got) != expected {
            return Err(GatewayError::WrongMessage {
                call,
                expected,
                got,
            });
        }
        let result = self.relay.broadcast(bytes, Mode::Commit).await?;
        Ok((decoded, result))
    }

    /// Makes sure the blob is stored here, fetching it from a peer if needed.
    async fn ensure_local(&self, id: &BlobId, may_ask_peers: bool) -> Result<(), GatewayError> {
        if self.store.size_of(id).await.is_some() {
            return Ok(());
        }
        if !may_ask_peers {
            return Err(GatewayError::BlobNotFound(*id));
        }
        // A peer must deliver a blob of the largest size at a modest rate.
        let deadline = Duration::from_secs(
            60u64.saturating_add(self.store.max_blob_bytes() / PEER_BYTES_PER_SECOND_MIN),
        );
        for peer in &self.config.peers {
            let fetched = tokio::time::timeout(deadline, self.fetch_from_peer(peer, id))
                .await
                .unwrap_or_else(|_| {
                    Err(PeerError::Other(format!(
                        "no complete answer within {deadline:?}"
                    )))
                });
            match fetched {
                Ok(stored) => {
                    self.metrics.peer_fetch("ok");
                    tracing::info!(%id, peer, size_bytes = stored.size_bytes, "blob fetched from a peer and verified");
                    return Ok(());
                }
                Err(PeerError::NotFound) => {
                    self.metrics.peer_fetch("not_found");
                    tracing::debug!(%id, peer, "peer does not have the blob");
                }
                Err(PeerError::Mismatch(actual)) => {
                    self.metrics.peer_fetch("mismatch");
                    tracing::warn!(%id, peer, %actual, "peer sent bytes that do not match the hash; skipped");
                }
                Err(PeerError::Store(e))
                    if !matches!(e, super::store::StoreError::HashMismatch { .. }) =>
                {
                    self.metrics.peer_fetch("refused");
                    return Err(GatewayError::Store(e));
                }
                Err(e) => {
                    self.metrics.peer_fetch("failed");
                    tracing::warn!(%id, peer, error = %e, "peer fetch failed; trying the next");
                }
            }
        }
        Err(GatewayError::BlobNotFound(*id))
    }

    async fn fetch_from_peer(&self, peer: &str, id: &BlobId) -> Result<Stored, PeerError> {
        let endpoint = tonic::transport::Endpoint::from_shared(peer.to_owned())
            .map_err(|e| PeerError::Other(format!("invalid peer URL: {e}")))?
            .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| PeerError::Other(format!("connect: {e}")))?;
        let mut client = GatewayClient::new(channel);
        let mut request = Request::new(pb::GetBlobRequest {
            hash: id.0.to_vec(),
        });
        request.metadata_mut().insert(
            PEER_HOP_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let mut stream = match client.get_blob(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Err(PeerError::NotFound),
            Err(status) => return Err(PeerError::Other(status.to_string())),
        };
        let mut writer = self
            .store
            .writer(Some(*id))
            .await
            .map_err(PeerError::Store)?;
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => writer.write(&chunk.data).await.map_err(PeerError::Store)?,
                Ok(None) => break,
                Err(status) if status.code() == Code::NotFound => return Err(PeerError::NotFound),
                Err(status) => return Err(PeerError::Other(status.to_string())),
            }
        }
        let received = writer.len_bytes();
        match writer.finish().await {
            Ok(stored) => {
                self.metrics.blob_bytes_in(received);
                Ok(stored)
            }
            Err(super::store::StoreError::HashMismatch { actual, .. }) => {
                Err(PeerError::Mismatch(actual))
            }
            Err(e) => Err(PeerError::Store(e)),
        }
    }

    /// Checks an upload's first chunk: its signed header, its hash, its
    /// size, the account's rate and standing. Nothing is written before it
    /// answers.
    async fn admit_upload(&self, first: &pb::BlobChunk) -> Result<VerifiedUpload, GatewayError> {
        let header = first
            .upload
            .as_ref()
            .ok_or(GatewayError::Unauthenticated(UploadError::Missing))?;
        let upload = VerifiedUpload::verify(header)?;
        upload.check_time(unix_now())?;
        if !first.hash.is_empty() && first.hash != upload.hash.0 {
            return Err(GatewayError::InvalidArgument(
                "the first chunk names one hash and its upload header another".to_owned(),
            ));
        }
        let max_bytes = self.store.max_blob_bytes();
        if upload.size > max_bytes {
            return Err(GatewayError::Store(super::store::StoreError::TooLarge {
                max_bytes,
            }));
        }
        self.limits.check_upload(&upload.uploader)?;
        self.admission.admit(&upload.uploader).await?;
        Ok(upload)
    }

    async fn put_blob_inner(
        &self,
        client: IpAddr,
        mut stream: Streaming<pb::BlobChunk>,
    ) -> Result<pb::PutBlobResponse, GatewayError> {
        let _permit = self.limits.stream_permit(client)?;
        let broke = |status: Status| {
            GatewayError::InvalidArgument(format!("upload stream broke: {}", status.message()))
        };
        let header_timeout = self.limits.config().upload_header_timeout_secs;
        let first = tokio::time::timeout(Duration::from_secs(header_timeout), stream.message())
            .await
            .map_err(|_| {
                GatewayError::TooSlow(format!(
                    "no first chunk within {header_timeout} s of opening the upload (--upload-header-timeout-secs)"
                ))
            })?
        .map_err(broke)?
        .ok_or(GatewayError::Unauthenticated(UploadError::Missing))?;
        let upload = self.admit_upload(&first).await?;
        // The whole upload must arrive at a modest rate: a client that
        // trickles bytes cannot hold its reservation and its stream forever.
        let allowed =
            Duration::from_secs(60u64.saturating_add(upload.size / PEER_BYTES_PER_SECOND_MIN));
        let deadline = tokio::time::Instant::now() + allowed;
        let too_slow = || {
            GatewayError::TooSlow(format!(
                "the upload of {} bytes did not complete within {allowed:?}",
                upload.size
            ))
        };
        let mut writer = self
            .store
            .writer_for(Some(upload.uploader), upload.hash, upload.size)
            .await?;
        writer.write(&first.data).await?;
        while let Some(chunk) = tokio::time::timeout_at(deadline, stream.message())
            .await
            .map_err(|_| too_slow())?
            .map_err(broke)?
        {
            if (!chunk.hash.is_empty() && chunk.hash != upload.hash.0) || chunk.upload.is_some() {
                return Err(GatewayError::InvalidArgument(
                    "only the first chunk carries the header, and later chunks may only repeat its hash".to_owned(),
                ));
            }
            writer.write(&chunk.data).await?;
        }
        let received = writer.len_bytes();
        let stored = writer.finish().await?;
        self.metrics.blob_bytes_in(received);
        tracing::debug!(id = %stored.id, size_bytes = stored.size_bytes, added = stored.added, uploader = %upload.uploader, "blob stored");
        Ok(pb::PutBlobResponse {
            hash: stored.id.0.to_vec(),
            size: stored.size_bytes,
        })
    }

    async fn get_blob_inner(
        &self,
        request: Request<pb::GetBlobRequest>,
    ) -> Result<BoxStream<pb::BlobChunk>, GatewayError> {
        let permit = self.limits.stream_permit(client_of(&request))?;
        let may_ask_peers = request.metadata().get(PEER_HOP_HEADER).is_none();
        let id = parse_blob_id(&request.get_ref().hash)?;
        self.ensure_local(&id, may_ask_peers).await?;
        let mut file = self
            .store
            .open_blob(&id)
            .await
            .ok_or(GatewayError::BlobNotFound(id))?;
        let (tx, rx) = mpsc::channel(4);
        let metrics = Arc::clone(&self.metrics);
        let store = self.store.clone();
        tokio::spawn(async move {
            // The stream's slot and the reader's hold on the blob (which
            // keeps eviction away from it) last as long as this task.
            let _permit = permit;
            let mut first = true;
            let mut hasher = Sha3_256::new();
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let mut filled = 0;
                // Fill a whole chunk unless the file ends first.
                while filled < CHUNK_BYTES {
                    match file.read(buf.get_mut(filled..).unwrap_or_default()).await {
                        Ok(0) => break,
                        Ok(n) => filled = filled.saturating_add(n),
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::internal(format!("reading blob {id}: {e}"))))
                                .await;
                            return;
                        }
                    }
                }
                buf.truncate(filled);
                hasher.update(&buf);
                let last = filled < CHUNK_BYTES;
                if last {
                    // The stored bytes were verified when stored; they are
                    // checked again, before the last chunk goes out, so that
                    // a blob damaged on disk never arrives complete.
                    let actual = BlobId(hasher.clone().finalize().into());
                    if actual != id {
                        tracing::error!(%id, %actual, "stored blob is damaged; removed");
                        store.discard(&id);
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "blob {id} was damaged on this gateway's disk and has been removed; ask again or ask another gateway"
                            ))))
                            .await;
                        return;
                    }
                }
                if filled == 0 && !first {
                    return;
                }
                let chunk = pb::BlobChunk {
                    hash: if first { id.0.to_vec() } else { Vec::new() },
                    data: buf,
                    upload: None,
                };
                first = false;
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                metrics.blob_bytes_out(u64::try_from(filled).unwrap_or(u64::MAX));
                if last {
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn subscribe_inner(
        &self,
        client: IpAddr,
        request: &pb::SubscribeRequest,
    ) -> Result<BoxStream<pb::ChainEvent>, GatewayError> {
        let filter = Filter::from_request(request)?;
        let permit = self.limits.stream_permit(client)?;
        // Answers once CometBFT holds the shared subscription, so that a
        // client that subscribes and then sends a transaction sees its events.
        let blocks = self.hub.subscribe().await.map_err(|why| {
            GatewayError::Node(NodeError::Unreachable {
                url: self.config.ws_url.clone(),
                detail: why,
            })
        })?;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let guard = self.metrics.subscription_opened();
        let metrics = Arc::clone(&self.metrics);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            tokio::select! {
                () = forward(filter, blocks, tx, metrics) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Why a peer could not supply a blob.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("not found")]
    NotFound,
    #[error("bytes hash to {0}")]
    Mismatch(BlobId),
    #[error(transparent)]
    Store(super::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// The gateway's clock in unix seconds (0 if it reads before 1970).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse_blob_id(bytes: &[u8]) -> Result<BlobId, GatewayError> {
    BlobId::from_slice(bytes).map_err(|_| {
        GatewayError::InvalidArgument(format!(
            "a blob hash is 32 bytes (sha3-256), got {}",
            bytes.len()
        ))
    })
}

fn decode_tx(bytes: &[u8]) -> Result<SignedTx, GatewayError> {
    SignedTx::decode(bytes, TX_BYTES_MAX).map_err(|e| {
        GatewayError::InvalidArgument(format!("not a signed compute transaction: {e}"))
    })
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn broadcast_tx(
        &self,
        request: Request<pb::BroadcastTxRequest>,
    ) -> Result<Response<pb::BroadcastTxResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            decode_tx(&request.tx)?;
            let mode = match pb::BroadcastMode::try_from(request.mode) {
                Ok(pb::BroadcastMode::Commit) => Mode::Commit,
                Ok(pb::BroadcastMode::Sync | pb::BroadcastMode::Unspecified) => Mode::Sync,
                Err(_) => {
                    return Err(GatewayError::InvalidArgument(format!(
                        "unknown broadcast mode {}",
                        request.mode
                    )))
                }
            };
            Ok(self.relay.broadcast(request.tx, mode).await?)
        }
        .await;
        self.finish("BroadcastTx", result).map(Response::new)
    }

    async fn post_job(
        &self,
        request: Request<pb::SignedTx>,
    ) -> Result<Response<pb::PostJobResponse>, Status> {
        let result = self
            .relay_typed("PostJob", "PostJob", request.into_inner())
            .await
            .map(|(tx, result)| {
                // The ids name jobs only once the chain has accepted them.
                let job_ids: Vec<Vec<u8>> = if result.code != AbciCode::Ok.value() {
                    Vec::new()
                } else if let Msg::PostJobs(batch) = &tx.msg {
                    (0u32..)
                        .zip(&batch.jobs)
                        .map(|(i, _)| {
                            JobId::derive_in_batch(&tx.signer, tx.body.nonce, i)
                                .0
                                .to_vec()
                        })
                        .collect()
                } else {
                    vec![JobId::derive(&tx.signer, tx.body.nonce).0.to_vec()]
                };
                pb::PostJobResponse {
                    result: Some(result),
                    job_id: job_ids.first().cloned().unwrap_or_default(),
                    job_ids,
                }
            });
        self.finish("PostJob", result).map(Response::new)
    }

    async fn submit_commit(
        &self,
        request: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let result = self
            .relay_typed("SubmitCommit", "CommitResult", request.into_inner())
            .await
            .map(|(_, result)| pb::SubmitResponse {
                result: Some(result),
            });
        self.finish("SubmitCommit", result).map(Response::new)
    }

    async fn submit_reveal(
        &self,
        request: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let result = self
            .relay_typed("SubmitReveal", "RevealResult", request.into_inner())
            .await
            .map(|(_, result)| pb::SubmitResponse {
                result: Some(result),
            });
        self.finish("SubmitReveal", result).map(Response::new)
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            let height = match request.height {
                0 => None,
                h => Some(
                    u64::try_from(h)
                        .ok()
                        .and_then(|h| tendermint::block::Height::try_from(h).ok())
                        .ok_or_else(|| {
                            GatewayError::InvalidArgument(format!(
                                "height must be 0 (latest) or positive, got {h}"
                            ))
                        })?,
                ),
            };
            Ok(self.relay.query(request.path, request.data, height).await?)
        }
        .await;
        self.finish("Query", result).map(Response::new)
    }

    type SubscribeStream = BoxStream<pb::ChainEvent>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let result = self
            .subscribe_inner(client_of(&request), request.get_ref())
            .await;
        self.finish("Subscribe", result).map(Response::new)
    }

    async fn put_blob(
        &self,
        request: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        let client = client_of(&request);
        let result = self.put_blob_inner(client, request.into_inner()).await;
        if let Err(e) = &result {
            self.metrics.upload_refused(e.refusal_reason());
        }
        self.finish("PutBlob", result).map(Response::new)
    }

    type GetBlobStream = BoxStream<pb::BlobChunk>;

    async fn get_blob(
        &self,
        request: Request<pb::GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        let result = self.get_blob_inner(request).await;
        self.finish("GetBlob", result).map(Response::new)
    }
}
