//! The client against an in-process gateway that lies: a blob streamed for
//! ever is cut off at the caller's bound (and the server stops producing),
//! a chunk larger than any honest one is refused by the decoder, other
//! bytes than those asked for are refused by hash, an upload answered
//! under another hash is refused; an upload's first chunk carries a header
//! signed by the uploader that names its account, the blob's hash and size,
//! and a near expiry; and a job's `Subscribe` stream wakes the follower once
//! per burst of events, falls back to its tick when no event comes, and is
//! opened again after it drops.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compute_client::blob::DOWNLOAD_CHUNK_BYTES_MAX;
use compute_client::{ClientError, Gateway, JobWatch, Wake};
use compute_proto::pb::gateway_server::{self as server, GatewayServer};
use compute_proto::upload::UPLOAD_HEADER_TTL_MAX_SECS;
use compute_proto::{pb, BlobId, JobId, SigningKey, VerifiedUpload};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Bytes in each chunk the endless blob is streamed in.
const CHUNK_BYTES: usize = 1 << 20;
/// The true bytes of the blob every test asks for.
const TRUE_BYTES: &[u8] = b"the bytes that were asked for";

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ChainEvent, Status>> + Send>>;
/// The events of one `Subscribe` stream, as the stand-in serves them.
type EventQueue = mpsc::Receiver<Result<pb::ChainEvent, Status>>;

/// How the stand-in gateway answers `GetBlob` and `PutBlob`.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Serves the true bytes and stores uploads under their true hash.
    Honest,
    /// Streams 1 MiB chunks for ever.
    Endless,
    /// Sends one chunk larger than any honest gateway does.
    HugeChunk,
    /// Serves other bytes, and names another hash for every upload.
    Liar,
}

#[derive(Clone)]
struct Stand {
    behaviour: Behaviour,
    /// Chunks produced by the endless stream so far.
    produced: Arc<AtomicU64>,
    /// The event streams the next `Subscribe` calls get, in order; a call
    /// finding none answers UNAVAILABLE.
    subscriptions: Arc<Mutex<Vec<EventQueue>>>,
    /// The first chunk of every upload received, in order.
    first_chunks: Arc<Mutex<Vec<pb::BlobChunk>>>,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not served by this stand-in"))
}

#[tonic::async_trait]
impl server::Gateway for Stand {
    async fn broadcast_tx(
        &self,
        _: Request<pb::BroadcastTxRequest>,
    ) -> Result<Response<pb::BroadcastTxResponse>, Status> {
        unimplemented()
    }
    async fn post_job(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::PostJobResponse>, Status> {
        unimplemented()
    }
    async fn submit_commit(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        unimplemented()
    }
    async fn submit_reveal(
        &self,
        _: Request<pb::SignedTx>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        unimplemented()
    }
    async fn query(
        &self,
        _: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        unimplemented()
    }
    type SubscribeStream = EventStream;
    async fn subscribe(
        &self,
        _: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let next = {
            let mut queue = self.subscriptions.lock().unwrap();
            (!queue.is_empty()).then(|| queue.remove(0))
        };
        match next {
            Some(events) => Ok(Response::new(Box::pin(ReceiverStream::new(events)))),
            None => Err(Status::unavailable("the stand-in's node is down")),
        }
    }
    async fn put_blob(
        &self,
        request: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::PutBlobResponse>, Status> {
        let mut stream = request.into_inner();
        let mut bytes = Vec::new();
        let mut first = true;
        while let Some(mut chunk) = stream.message().await? {
            bytes.append(&mut chunk.data);
            if std::mem::take(&mut first) {
                self.first_chunks.lock().unwrap().push(chunk);
            }
        }
        let hash = match self.behaviour {
            Behaviour::Liar => BlobId::of(b"something else").0.to_vec(),
            _ => BlobId::of(&bytes).0.to_vec(),
        };
        Ok(Response::new(pb::PutBlobResponse {
            hash,
            size: bytes.len() as u64,
        }))
    }
    type GetBlobStream = Chunks;
    async fn get_blob(&self, _: Request<pb::GetBlobRequest>) -> Result<Response<Chunks>, Status> {
        let chunk = |data: Vec<u8>| {
            Ok(pb::BlobChunk {
                hash: Vec::new(),
                data,
                upload: None,
            })
        };
        let stream: Chunks = match self.behaviour {
            Behaviour::Honest => Box::pin(tokio_stream::iter([chunk(TRUE_BYTES.to_vec())])),
            Behaviour::Liar => Box::pin(tokio_stream::iter([chunk(b"other bytes".to_vec())])),
            Behaviour::HugeChunk => Box::pin(tokio_stream::iter([chunk(vec![
                1;
                DOWNLOAD_CHUNK_BYTES_MAX
                    + 1
            ])])),
            Behaviour::Endless => {
                let produced = Arc::clone(&self.produced);
                Box::pin(tokio_stream::iter(std::iter::repeat_with(move || {
                    produced.fetch_add(1, Ordering::Relaxed);
                    chunk(vec![7; CHUNK_BYTES])
                })))
            }
        };
        Ok(Response::new(stream))
    }
}

/// A stand-in gateway served in-process until dropped.
struct Running {
    gateway: Gateway,
    stand: Stand,
    _stop: oneshot::Sender<()>,
}

async fn start(behaviour: Behaviour) -> Running {
    let stand = Stand {
        behaviour,
        produced: Arc::default(),
        subscriptions: Arc::default(),
        first_chunks: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GatewayServer::new(stand.clone()).max_encoding_message_size(64 << 20))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    Running {
        gateway: Gateway::connect(&url).await.unwrap(),
        stand,
        _stop: stop,
    }
}

#[tokio::test]
async fn an_endless_blob_is_cut_off_at_the_bound() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let running = start(Behaviour::Endless).await;
        let id = BlobId::of(TRUE_BYTES);
        let bound: u64 = 3 << 20;
        let error = running.gateway.get_blob(&id, bound).await.unwrap_err();
        assert!(
            matches!(error, ClientError::BlobTooLarge { max_bytes, .. } if max_bytes == bound),
            "{error}"
        );
        // The client stopped reading, so the server stopped producing: what
        // it made is the bound plus what flow control let it buffer.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let produced = running.stand.produced.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = running.stand.produced.load(Ordering::Relaxed);
        assert!(produced < 32, "the server produced {produced} MiB");
        assert_eq!(produced, later, "the server kept producing");
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_chunk_larger_than_any_honest_one_is_refused() {
    let running = start(Behaviour::HugeChunk).await;
    let error = running
        .gateway
        .get_blob(&BlobId::of(TRUE_BYTES), 64 << 20)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Rpc { .. }), "{error}");
}

#[tokio::test]
async fn other_bytes_and_other_hashes_are_refused() {
    let liar = start(Behaviour::Liar).await;
    let id = BlobId::of(TRUE_BYTES);
    match liar.gateway.get_blob(&id, 1 << 20).await {
        Err(ClientError::BlobMismatch { expected, actual }) => {
            assert_eq!(expected, id);
            assert_eq!(actual, BlobId::of(b"other bytes"));
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let key = SigningKey::from_seed([1; 32]);
    let error = liar.gateway.put_blob(&key, TRUE_BYTES).await.unwrap_err();
    assert!(matches!(error, ClientError::BadAnswer { .. }), "{error}");

    let honest = start(Behaviour::Honest).await;
    assert_eq!(
        honest.gateway.get_blob(&id, 1 << 20).await.unwrap(),
        TRUE_BYTES
    );
    // Exactly the size is within the bound; a byte less is not.
    let exact = u64::try_from(TRUE_BYTES.len()).unwrap();
    assert!(honest.gateway.get_blob(&id, exact).await.is_ok());
    assert!(matches!(
        honest.gateway.get_blob(&id, exact - 1).await,
        Err(ClientError::BlobTooLarge { .. })
    ));
    assert_eq!(honest.gateway.put_blob(&key, TRUE_BYTES).await.unwrap(), id);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn an_upload_carries_a_header_signed_by_the_uploader() {
    let honest = start(Behaviour::Honest).await;
    let key = SigningKey::from_seed([9; 32]);
    // Larger than one 1 MiB chunk, and an empty blob: one empty chunk.
    let big: Vec<u8> = (0..(3u32 << 19)).map(|i| (i % 251) as u8).collect();
    for bytes in [TRUE_BYTES.to_vec(), big, Vec::new()] {
        let before = unix_now();
        let id = honest.gateway.put_blob(&key, &bytes).await.unwrap();
        let after = unix_now();
        assert_eq!(id, BlobId::of(&bytes));

        let first = honest.stand.first_chunks.lock().unwrap().pop().unwrap();
        assert_eq!(first.hash, id.0.to_vec(), "the first chunk names the hash");
        let header = first.upload.expect("the first chunk carries the header");
        let verified = VerifiedUpload::verify(&header).expect("the header verifies");
        assert_eq!(verified.uploader, key.account());
        assert_eq!(verified.hash, id);
        assert_eq!(verified.size, bytes.len() as u64);
        assert!(
            verified.expires > before && verified.expires <= after + UPLOAD_HEADER_TTL_MAX_SECS,
            "expires {} outside ({before}, {after} + {UPLOAD_HEADER_TTL_MAX_SECS}]",
            verified.expires
        );
        // What a gateway checks against its clock, now and at the limits.
        assert!(verified.check_time(after).is_ok());
        assert!(verified.check_time(verified.expires + 1).is_err());
    }
    assert!(honest.stand.first_chunks.lock().unwrap().is_empty());
    // A header names what it was signed for: another key, another account.
    let other = SigningKey::from_seed([10; 32]);
    honest.gateway.put_blob(&other, TRUE_BYTES).await.unwrap();
    let first = honest.stand.first_chunks.lock().unwrap().pop().unwrap();
    let verified = VerifiedUpload::verify(&first.upload.unwrap()).unwrap();
    assert_eq!(verified.uploader, other.account());
}

fn event(height: i64) -> Result<pb::ChainEvent, Status> {
    Ok(pb::ChainEvent {
        height,
        kind: "task_settled".to_owned(),
        attributes: Vec::new(),
    })
}

/// Waits until `watch` wakes with `wanted`, at most `tries` times.
async fn wait_for(watch: &mut JobWatch, wanted: Wake, tries: u32) -> Vec<Wake> {
    let mut seen = Vec::new();
    for _ in 0..tries {
        let wake = watch.wait(Instant::now() + Duration::from_secs(30)).await;
        seen.push(wake);
        if wake == wanted {
            return seen;
        }
    }
    panic!("never woke with {wanted:?}: {seen:?}");
}

#[tokio::test]
async fn a_job_watch_wakes_on_events_ticks_without_them_and_resubscribes() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let running = start(Behaviour::Honest).await;
        let (first, events) = mpsc::channel(16);
        running.stand.subscriptions.lock().unwrap().push(events);
        let tick = Duration::from_millis(400);
        let mut watch = JobWatch::with_tick(running.gateway.clone(), JobId([5; 32]), tick).await;
        assert!(watch.is_subscribed());

        // No event: the tick wakes the follower, and a near deadline first.
        let started = Instant::now();
        assert_eq!(
            watch.wait(started + Duration::from_secs(30)).await,
            Wake::Tick
        );
        assert!(started.elapsed() >= tick);
        let near = Instant::now() + Duration::from_millis(50);
        assert_eq!(watch.wait(near).await, Wake::Deadline);

        // A burst of one block's events is one wake-up.
        for height in 0..5 {
            first.send(event(height)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            watch.wait(Instant::now() + Duration::from_secs(30)).await,
            Wake::Event
        );
        assert_eq!(
            watch.wait(Instant::now() + Duration::from_secs(30)).await,
            Wake::Tick
        );

        // The stream drops while the gateway cannot subscribe: the follower
        // keeps ticking, then is subscribed again once the gateway can.
        drop(first);
        let wakes = wait_for(&mut watch, Wake::Tick, 3).await;
        assert!(!watch.is_subscribed(), "{wakes:?}");
        assert!(watch.last_error().is_some());
        let (second, events) = mpsc::channel(16);
        running.stand.subscriptions.lock().unwrap().push(events);
        wait_for(&mut watch, Wake::Subscribed, 40).await;
        assert!(watch.is_subscribed());
        second.send(event(9)).await.unwrap();
        assert_eq!(
            watch.wait(Instant::now() + Duration::from_secs(30)).await,
            Wake::Event
        );
    })
    .await
    .expect("finished in time");
}

#[tokio::test]
async fn a_job_watch_without_a_gateway_still_ticks() {
    // Nothing listens on loopback port 9 (discard).
    let gateway = Gateway::connect_lazy("http://127.0.0.1:9").unwrap();
    let mut watch = JobWatch::with_tick(gateway, JobId([6; 32]), Duration::from_millis(200)).await;
    assert!(!watch.is_subscribed());
    let started = Instant::now();
    let wake = watch.wait(started + Duration::from_secs(30)).await;
    assert!(matches!(wake, Wake::Tick), "{wake:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
