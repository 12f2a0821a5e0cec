//! The gateway's front door, in process: an upload is admitted only under a
//! valid signed header, from an account the chain knows as funded or as a
//! worker, within that account's quota and rate; everything else is
//! refused with a clear code and writes nothing. Per-client limits refuse a
//! client past its rate or its share of streams, and leave others alone; an
//! upload that never sends its header is cut off.
//!
//! No chain runs here: the uploaders' standings come from a fixed table
//! (`FixedStandings`); the real-process test under `tests/` reads them from
//! a chain.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compute_node::gateway::auth::Standing;
use compute_node::gateway::limits::LimitsConfig;
use compute_node::gateway::GatewayConfig;
use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::upload::{sign_upload, UPLOAD_HEADER_TTL_MAX_SECS};
use compute_proto::{pb, BlobId, SigningKey};
use tonic::transport::Channel;
use tonic::Code;

mod common;

use common::Running;

const MIN_BALANCE: u64 = 100;
const ACCOUNT_QUOTA: u64 = 10_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

fn funded() -> SigningKey {
    key(1)
}
fn worker() -> SigningKey {
    key(2)
}
fn poor() -> SigningKey {
    key(3)
}
fn stranger() -> SigningKey {
    key(4)
}

async fn start(limits: LimitsConfig, account_quota_bytes: u64) -> Running {
    let home = tempfile::tempdir().unwrap();
    let config = GatewayConfig {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        max_blob_bytes: 16 << 20,
        quota_bytes: 64 << 20,
        account_quota_bytes,
        limits,
        upload_min_balance: MIN_BALANCE,
        ..common::config(home.path().to_path_buf(), Vec::new(), 0, 0)
    };
    let standing = |balance, worker| Standing { balance, worker };
    let standings = [
        (funded().account(), standing(MIN_BALANCE, false)),
        (worker().account(), standing(0, true)),
        (poor().account(), standing(MIN_BALANCE - 1, false)),
    ];
    common::serve(config, home, standings).await
}

async fn grpc(running: &Running) -> GatewayClient<Channel> {
    GatewayClient::connect(running.url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(8 << 20)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The chunks of an upload of `bytes`, the first carrying `header`.
fn chunks(bytes: &[u8], header: Option<pb::UploadHeader>) -> Vec<pb::BlobChunk> {
    let mut chunks: Vec<pb::BlobChunk> = bytes
        .chunks(4096)
        .map(|data| pb::BlobChunk {
            data: data.to_vec(),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::BlobChunk::default());
    }
    chunks[0].upload = header;
    chunks
}

/// A header for `bytes` by `key`, valid for ten minutes.
fn header(key: &SigningKey, bytes: &[u8]) -> pb::UploadHeader {
    sign_upload(key, &BlobId::of(bytes), bytes.len() as u64, now() + 600)
}

async fn put(
    client: &mut GatewayClient<Channel>,
    chunks: Vec<pb::BlobChunk>,
) -> Result<pb::PutBlobResponse, tonic::Status> {
    client
        .put_blob(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// The blob files (named by 64 hex) and temporary files under the store.
fn files(home: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![home.join("blobs")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

fn blob(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(n) ^ n).collect()
}

#[tokio::test]
async fn bad_uploads_are_refused_and_write_nothing() {
    tokio::time::timeout(Duration::from_secs(120), refusals())
        .await
        .expect("finished in time");
}

async fn refusals() {
    let gw = start(LimitsConfig::default(), ACCOUNT_QUOTA).await;
    let mut c = grpc(&gw).await;
    let bytes = blob(7, 3000);
    let expect = |result: Result<pb::PutBlobResponse, tonic::Status>, code: Code, says: &str| {
        let status = match result {
            Ok(stored) => panic!("expected {code:?} saying {says:?}, but stored {stored:?}"),
            Err(status) => status,
        };
        assert_eq!(status.code(), code, "{status}");
        assert!(
            status.message().contains(says),
            "{says:?} not in {:?}",
            status.message()
        );
    };

    // No header at all, or an empty stream.
    expect(
        put(&mut c, chunks(&bytes, None)).await,
        Code::Unauthenticated,
        "signed header",
    );
    expect(
        put(&mut c, Vec::new()).await,
        Code::Unauthenticated,
        "signed header",
    );

    // A signature that does not match: a changed size, a changed uploader,
    // a flipped signature bit, a key that is not a valid point.
    let mut h = header(&funded(), &bytes);
    h.size += 1;
    expect(
        put(&mut c, chunks(&bytes, Some(h))).await,
        Code::Unauthenticated,
        "does not verify",
    );
    let mut h = header(&stranger(), &bytes);
    h.uploader = funded().account().0.to_vec();
    expect(
        put(&mut c, chunks(&bytes, Some(h))).await,
        Code::Unauthenticated,
        "does not verify",
    );
    let mut h = header(&funded(), &bytes);
    h.signature[0] ^= 1;
    expect(
        put(&mut c, chunks(&bytes, Some(h))).await,
        Code::Unauthenticated,
        "does not verify",
    );
    let mut h = header(&funded(), &bytes);
    h.signature.truncate(10);
    expect(
        put(&mut c, chunks(&bytes, Some(h))).await,
        Code::Unauthenticated,
        "64 bytes",
    );

    // Expired, and valid for too long.
    let id = BlobId::of(&bytes);
    let expired = sign_upload(&funded(), &id, bytes.len() as u64, now() - 10);
    expect(
        put(&mut c, chunks(&bytes, Some(expired))).await,
        Code::Unauthenticated,
        "expired",
    );
    let far = sign_upload(
        &funded(),
        &id,
        bytes.len() as u64,
        now() + UPLOAD_HEADER_TTL_MAX_SECS + 120,
    );
    expect(
        put(&mut c, chunks(&bytes, Some(far))).await,
        Code::Unauthenticated,
        "sooner",
    );

    // Well signed, but by nobody the chain knows, or by too poor an account.
    for who in [stranger(), poor()] {
        expect(
            put(&mut c, chunks(&bytes, Some(header(&who, &bytes)))).await,
            Code::PermissionDenied,
            "--upload-min-balance",
        );
    }

    // The header's hash or size does not match the bytes.
    let other = blob(8, 3000);
    expect(
        put(&mut c, chunks(&other, Some(header(&funded(), &bytes)))).await,
        Code::InvalidArgument,
        "hash",
    );
    expect(
        put(
            &mut c,
            chunks(&bytes[..100], Some(header(&funded(), &bytes))),
        )
        .await,
        Code::InvalidArgument,
        "declared",
    );
    let mut named = chunks(&bytes, Some(header(&funded(), &bytes)));
    named[0].hash = BlobId::of(&other).0.to_vec();
    expect(put(&mut c, named).await, Code::InvalidArgument, "hash");

    assert_eq!(
        files(gw.home.path()),
        Vec::<String>::new(),
        "nothing written"
    );

    // The funded account fills its quota: three 3000-byte blobs fit in
    // 10,000 bytes, the fourth does not, and nothing of it is written.
    for n in 1..=3u8 {
        let b = blob(n, 3000);
        let stored = put(&mut c, chunks(&b, Some(header(&funded(), &b))))
            .await
            .unwrap();
        assert_eq!(stored.hash, BlobId::of(&b).0.to_vec());
        assert_eq!(stored.size, 3000);
    }
    let before = files(gw.home.path());
    let fourth = blob(4, 3000);
    expect(
        put(&mut c, chunks(&fourth, Some(header(&funded(), &fourth)))).await,
        Code::ResourceExhausted,
        "account",
    );
    assert_eq!(
        files(gw.home.path()),
        before,
        "the refused upload wrote nothing"
    );

    // A header replayed, or the same blob uploaded again, stores nothing new
    // and charges nothing: still admitted although the account is full.
    let first = blob(1, 3000);
    let again = put(&mut c, chunks(&first, Some(header(&funded(), &first))))
        .await
        .unwrap();
    assert_eq!(again.size, 3000);
    assert_eq!(files(gw.home.path()), before);

    // A registered worker with no balance uploads on its own quota.
    let output = blob(9, 5000);
    put(&mut c, chunks(&output, Some(header(&worker(), &output))))
        .await
        .unwrap();

    // Every refusal is counted by reason.
    let metrics = scrape(gw.metrics.unwrap()).await;
    for (reason, at_least) in [
        ("unsigned", 2),
        ("bad_signature", 4),
        ("expired", 2),
        ("not_permitted", 2),
        ("mismatch", 2),
        ("malformed", 1),
        ("account_quota", 1),
    ] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "compute_gateway_upload_refusals_total{{reason=\"{reason}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no refusal count for {reason}:\n{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= at_least, "{line}");
    }
}

#[tokio::test]
async fn a_client_past_its_rate_or_its_streams_is_throttled_alone() {
    tokio::time::timeout(Duration::from_secs(120), throttling())
        .await
        .expect("finished in time");
}

async fn throttling() {
    let gw = start(
        LimitsConfig {
            client_requests_per_second: 1,
            client_request_burst: 20,
            client_streams_max: 2,
            account_uploads_per_minute: 1,
            account_upload_burst: 2,
            upload_header_timeout_secs: 1,
        },
        64 << 20,
    )
    .await;
    let mut c = grpc(&gw).await;

    // An upload that never sends its header is cut off, not kept open.
    let silent = tokio::time::timeout(
        Duration::from_secs(10),
        c.put_blob(tokio_stream::pending::<pb::BlobChunk>()),
    )
    .await
    .expect("the gateway ends a silent upload")
    .unwrap_err();
    assert_eq!(silent.code(), Code::DeadlineExceeded, "{silent}");
    assert!(
        silent.message().contains("--upload-header-timeout-secs"),
        "{silent}"
    );

    // An account past its upload burst.
    for n in 20..22u8 {
        let b = blob(n, 10);
        put(&mut c, chunks(&b, Some(header(&worker(), &b))))
            .await
            .unwrap();
    }
    let b = blob(22, 10);
    let refused = put(&mut c, chunks(&b, Some(header(&worker(), &b))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(
        refused.message().contains("--account-uploads-per-minute"),
        "{refused}"
    );
    // Another account is not affected.
    put(&mut c, chunks(&b, Some(header(&funded(), &b))))
        .await
        .unwrap();

    // Two downloads held open (never read) take this client's two stream
    // slots; a third is refused. The blob is larger than what the gateway
    // buffers ahead of a reader, so each download stays open.
    let big = blob(30, 12 << 20);
    put(&mut c, chunks(&big, Some(header(&funded(), &big))))
        .await
        .unwrap();
    let big_id = BlobId::of(&big);
    let request = || pb::GetBlobRequest {
        hash: big_id.0.to_vec(),
    };
    let held_a = c.get_blob(request()).await.unwrap().into_inner();
    let held_b = c.get_blob(request()).await.unwrap().into_inner();
    let third = c.get_blob(request()).await;
    let status = match third {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            stream.message().await.unwrap_err()
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("--client-streams-max"),
        "{status}"
    );
    drop(held_a);
    drop(held_b);

    // This client has spent most of its burst of 20 calls; past it, every
    // call is refused before it reaches a handler.
    let mut throttled = None;
    for _ in 0..40 {
        let query = pb::QueryRequest {
            path: "/stats".to_owned(),
            ..Default::default()
        };
        match c.query(query).await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                throttled = Some(status);
                break;
            }
            _ => {}
        }
    }
    let throttled = throttled.expect("the client was throttled within 40 calls");
    assert!(
        throttled.message().contains("--client-requests-per-second"),
        "{throttled}"
    );
    let metrics = scrape(gw.metrics.unwrap()).await;
    for limit in ["client_requests", "client_streams", "account_uploads"] {
        assert!(
            metrics.contains(&format!(
                "compute_gateway_throttled_total{{limit=\"{limit}\"}}"
            )),
            "{limit}:\n{metrics}"
        );
    }
}
