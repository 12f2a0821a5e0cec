//! The gateway's data plane in-process, with no chain behind it: uploads are
//! verified, a second gateway fetches from its peer, a lying peer is skipped,
//! a blob damaged on disk is never served whole, a fetch goes one hop only
//! (so gateways that name each other never loop), limits answer `RESOURCE_EXHAUSTED`, and a call that
//! needs the chain answers `UNAVAILABLE` rather than hanging. Uploads are
//! signed by a key that a fixed table of standings admits (see
//! `uploads_need_a_signed_header_a_funded_account_and_room` for refusals).

use std::pin::Pin;
use std::time::Duration;

use compute_client::{blob, Gateway};
use compute_node::gateway::auth::Standing;
use compute_proto::pb::gateway_server::{self as server, GatewayServer};
use compute_proto::{pb, sha3_256, BlobId, SigningKey};
use tokio::sync::oneshot;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status, Streaming};

mod common;

use common::Running;

async fn start(peers: Vec<String>, max_blob_bytes: u64, quota_bytes: u64) -> Running {
    let home = tempfile::tempdir().unwrap();
    let config = common::config(
        home.path().to_path_buf(),
        peers,
        max_blob_bytes,
        quota_bytes,
    );
    // The one uploader here is a registered worker; no chain says so, a
    // fixed table does.
    let worker = Standing {
        balance: 0,
        worker: true,
    };
    common::serve(config, home, [(uploader().account(), worker)]).await
}

async fn client(gateway: &Running) -> Gateway {
    Gateway::connect(&gateway.url).await.unwrap()
}

/// The key every upload here is signed with.
fn uploader() -> SigningKey {
    SigningKey::from_seed([5; 32])
}

/// Uploads `bytes` as the client crate cuts them, under a header naming
/// `named` (which a test may choose to be wrong; the true hash when
/// `None`), and returns the gateway's raw answer.
async fn put(
    client: &Gateway,
    named: Option<[u8; 32]>,
    bytes: &[u8],
) -> Result<pb::PutBlobResponse, tonic::Status> {
    let id = named.map_or_else(|| BlobId::of(bytes), BlobId);
    let header = blob::upload_header(&uploader(), &id, bytes.len() as u64, blob::unix_now());
    let chunks = blob::signed_chunks(bytes, header, 100_000);
    client
        .grpc()
        .put_blob(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// Downloads a blob through the client crate (bounded, hash-checked); a
/// failure is the gateway's gRPC code.
async fn get(client: &Gateway, hash: &[u8; 32]) -> Result<Vec<u8>, Code> {
    client
        .get_blob(&BlobId(*hash), BLOB_BYTES_MAX)
        .await
        .map_err(|e| {
            e.grpc_code()
                .unwrap_or_else(|| panic!("not a gRPC error: {e}"))
        })
}

/// The bound of every download here: larger than any blob the tests store.
const BLOB_BYTES_MAX: u64 = 8 << 20;

#[tokio::test]
async fn gateway_serves_verified_blobs_without_a_chain() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("finished in time");
}

async fn scenario() {
    let first = start(Vec::new(), 4 << 20, 8 << 20).await;
    let a = client(&first).await;

    // Exactly 2 MiB: a whole number of chunks on the way out.
    let bytes: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    let hash = sha3_256(&bytes);
    let stored = put(&a, Some(hash), &bytes).await.unwrap();
    assert_eq!(stored.hash, hash.to_vec());
    assert_eq!(get(&a, &hash).await.unwrap(), bytes);
    let empty = put(&a, None, b"").await.unwrap();
    assert_eq!(empty.hash, sha3_256(b"").to_vec());
    assert_eq!(get(&a, &sha3_256(b"")).await.unwrap(), b"");

    let refused = put(&a, Some(sha3_256(b"x")), b"y").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
    let too_big = put(&a, None, &vec![0; 5 << 20]).await.unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted, "{too_big}");
    let bad_hash = put(&a, Some([0; 32]), b"").await.unwrap_err();
    assert_eq!(bad_hash.code(), Code::InvalidArgument);

    // A second gateway fetches from the first. In a chain of peers a blob
    // nobody has is NOT_FOUND, and a fetch goes one hop only.
    let second = start(vec![first.url.clone()], 4 << 20, 8 << 20).await;
    let b = client(&second).await;
    assert_eq!(get(&b, &hash).await.unwrap(), bytes);
    let third = start(vec![second.url.clone()], 4 << 20, 8 << 20).await;
    let loop_back = start(vec![third.url.clone()], 4 << 20, 8 << 20).await;
    let d = client(&loop_back).await;
    let missing = get(&d, &sha3_256(b"nobody")).await.unwrap_err();
    assert_eq!(missing, Code::NotFound);
    // One hop only: the fourth gateway's peer (third) does not ask its own peer.
    let two_hops = get(&d, &hash).await.unwrap_err();
    assert_eq!(two_hops, Code::NotFound);

    // Calls that need CometBFT fail fast with UNAVAILABLE.
    let query = a
        .grpc()
        .query(pb::QueryRequest {
            path: "/stats".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(query.code(), Code::Unavailable, "{query}");
    let subscribe = a
        .grpc()
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::subscribe_request::Filter::Worker(vec![1; 32])),
        })
        .await
        .unwrap_err();
    assert_eq!(subscribe.code(), Code::Unavailable, "{subscribe}");
    let negative = a
        .grpc()
        .query(pb::QueryRequest {
            path: "/stats".to_owned(),
            height: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(negative.code(), Code::InvalidArgument);
}

/// A peer that answers every `GetBlob` with bytes of its own choosing.
struct Liar;

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;
type Events = Pin<Box<dyn Stream<Item = Result<pb::ChainEvent, Status>> + Send>>;

#[tonic::async_trait]
impl server::Gateway for Liar {
    async fn broadcast_tx(
        &self,
        _: Request<pb::BroadcastTxRequest>,
    ) -> Result<Response<pb::BroadcastTxResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    async fn post_job(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::PostJobResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    async fn submit_commit(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    async fn submit_reveal(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    async fn query(
        &self,
        _: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    type SubscribeStream = Events;
    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Events>, Status> {
        Err(Status::unimplemented("liar"))
    }
    async fn put_blob(
        &self,
        _: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        Err(Status::unimplemented("liar"))
    }
    type GetBlobStream = Chunks;
    async fn get_blob(
        &self,
        request: Request<pb::GetBlobRequest>,
    ) -> Result<Response<Chunks>, Status> {
        let chunk = pb::BlobChunk {
            hash: request.into_inner().hash,
            data: b"not what you asked for".to_vec(),
            upload: None,
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(chunk)]))))
    }
}

async fn start_liar() -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GatewayServer::new(Liar))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    (url, stop)
}

#[tokio::test]
async fn a_lying_peer_is_skipped_and_a_damaged_blob_is_never_served_whole() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (liar, _stop_liar) = start_liar().await;
        let honest = start(Vec::new(), 4 << 20, 8 << 20).await;
        let bytes = b"the true bytes".to_vec();
        let hash = sha3_256(&bytes);
        put(&client(&honest).await, None, &bytes).await.unwrap();

        let only_liar = start(vec![liar.clone()], 4 << 20, 8 << 20).await;
        let status = get(&client(&only_liar).await, &hash).await.unwrap_err();
        assert_eq!(status, Code::NotFound);
        let blobs = only_liar.home.path().join("blobs");
        let shard = blobs.join(hex::encode(&hash[..1]));
        assert!(!shard.exists(), "nothing from the liar is stored");

        let both = start(vec![liar, honest.url.clone()], 4 << 20, 8 << 20).await;
        assert_eq!(get(&client(&both).await, &hash).await.unwrap(), bytes);

        // Damage the honest gateway's copy on disk: it refuses to finish the
        // stream, removes the file, and then no longer has the blob.
        let path = shard_path(&honest, &hash);
        std::fs::write(&path, b"the true bytez").unwrap();
        let honest_client = client(&honest).await;
        let status = get(&honest_client, &hash).await.unwrap_err();
        assert_eq!(status, Code::DataLoss);
        assert!(!path.exists());
        let status = get(&honest_client, &hash).await.unwrap_err();
        assert_eq!(status, Code::NotFound);
    })
    .await
    .expect("finished in time");
}

fn shard_path(gateway: &Running, hash: &[u8; 32]) -> std::path::PathBuf {
    let hex = hex::encode(hash);
    gateway.home.path().join("blobs").join(&hex[..2]).join(hex)
}
