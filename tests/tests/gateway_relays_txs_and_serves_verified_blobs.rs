//! `compute-node` in front of a real chain: it relays signed transactions
//! and answers with the chain's codes, proxies queries, streams the events
//! of a worker and a job, stores blobs only under their true hash, fetches
//! missing blobs from peer gateways and never serves damaged bytes, and
//! offers gRPC reflection, health checking and Prometheus metrics. Its event
//! streams outlive a CometBFT restart.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use compute_client::blob;
use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::{pb, sha3_256, BlobId, JobId, SigningKey};
use compute_tests::gateway_calls::{
    commit, post_one_task_job, register_worker_and_store_module, scrape,
};
use compute_tests::{transfer, Gateway, NetConfig, Node};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

/// Every step of the test together must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a subscriber waits for an expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn gateway_relays_txs_and_serves_verified_blobs() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .context("the scenario did not finish in time")?
}

#[tokio::test]
async fn a_subscription_survives_a_cometbft_restart() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let alice = SigningKey::from_seed([1; 32]);
        let worker = SigningKey::from_seed([3; 32]);
        let mut node = Node::start(NetConfig::funded(&[&alice, &worker], 1_000_000)).await?;
        let gateway = Gateway::start(&node.rpc_url(), &[])?;
        let mut client = connect(&gateway).await?;
        register_worker_and_store_module(&node, &mut client, &alice, &worker).await?;
        let mut by_worker = client
            .subscribe(pb::SubscribeRequest {
                filter: Some(pb::subscribe_request::Filter::Worker(
                    worker.account().0.to_vec(),
                )),
            })
            .await?
            .into_inner();

        // The websocket breaks; the gateway keeps the gRPC stream open and
        // resubscribes with backoff once CometBFT is back. A job posted
        // before it has resubscribed is found by the catch-up instead.
        let before = node.wait_for_height(1, Duration::from_secs(5)).await?;
        node.kill_cometbft();
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.start_cometbft()?;
        node.wait_for_height(before + 2, Duration::from_secs(60))
            .await?;
        let nonce = node.nonce(&alice.account()).await?;
        let posted = post_one_task_job(&node, &mut client, &alice, nonce).await?;
        let result = posted.result.context("PostJob answers a result")?;
        assert_eq!(result.code, 0, "post job: {}", result.log);
        let job_hex = hex::encode(&posted.job_id);
        let event = next_matching(&mut by_worker, &|e: &pb::ChainEvent| {
            e.kind == "task_assigned" && attribute(e, "job") == Some(job_hex.as_str())
        })
        .await?;
        assert!(event.height >= result.height);
        let metrics = scrape(&gateway)?;
        assert!(
            !metrics.contains("compute_gateway_subscription_reconnects_total 0"),
            "the subscription reconnected:\n{metrics}"
        );
        Ok(())
    })
    .await
    .context("the scenario did not finish in time")?
}

async fn connect(gateway: &Gateway) -> Result<GatewayClient<Channel>> {
    Ok(GatewayClient::connect(gateway.url()).await?)
}

async fn scenario() -> Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let bob = SigningKey::from_seed([2; 32]).account();
    let worker = SigningKey::from_seed([3; 32]);
    let node = Node::start(NetConfig::funded(&[&alice, &worker], 1_000_000)).await?;
    let first = Gateway::start(&node.rpc_url(), &[])?;
    let mut client = connect(&first).await?;

    relays_transactions_and_queries(&node, &mut client, &alice, &bob).await?;
    refuses_typed_calls_with_the_wrong_message(&node, &mut client, &alice, &bob).await?;
    streams_the_events_of_a_worker_and_a_job(&node, &mut client, &alice, &worker).await?;
    blobs_round_trip_and_are_verified(&node, &first, &mut client, &alice).await?;
    reflection_health_and_metrics_are_served(&first).await?;
    Ok(())
}

async fn relays_transactions_and_queries(
    node: &Node,
    client: &mut GatewayClient<Channel>,
    alice: &SigningKey,
    bob: &compute_proto::AccountId,
) -> Result<()> {
    // A signed transfer, committed.
    let tx = node.signed_transfer(alice, bob, 1_234).await?;
    let answer = client.broadcast_tx(commit(tx)).await?.into_inner();
    assert_eq!(answer.code, 0, "{}", answer.log);
    assert!(answer.height >= 1);
    assert_eq!(answer.hash.len(), 32, "CometBFT's sha256 tx hash");
    node.wait_for_height(u64::try_from(answer.height)? + 1, Duration::from_secs(20))
        .await?;

    // The balance, through the gateway's query proxy.
    let query = client
        .query(pb::QueryRequest {
            path: format!("/account/{bob}"),
            data: Vec::new(),
            height: 0,
        })
        .await?
        .into_inner();
    assert_eq!(query.code, 0, "{}", query.log);
    let account: serde_json::Value = serde_json::from_slice(&query.value)?;
    assert_eq!(account["balance"], 1_234);
    assert!(query.height >= answer.height);
    let bad_path = client
        .query(pb::QueryRequest {
            path: "/nope".to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_ne!(
        bad_path.code, 0,
        "an unknown path answers a code, not an error"
    );

    // A wrongly signed transaction: relayed, and the chain's code comes back.
    let mut forged = pb::Tx::decode(
        node.tx_builder()
            .sign(alice, node.nonce(&alice.account()).await?, transfer(bob, 5))
            .as_slice(),
    )?;
    forged.signature[10] ^= 0x40;
    for mode in [pb::BroadcastMode::Sync, pb::BroadcastMode::Commit] {
        let answer = client
            .broadcast_tx(pb::BroadcastTxRequest {
                tx: forged.encode_to_vec(),
                mode: mode as i32,
            })
            .await?
            .into_inner();
        assert_eq!(answer.code, 4, "{mode:?}: {}", answer.log);
        assert_eq!(answer.codespace, "compute");
        assert!(
            answer.log.contains("signature does not verify"),
            "{}",
            answer.log
        );
        assert_eq!(answer.height, 0, "refused before any block");
    }

    // Bytes that are no transaction never reach the chain.
    let status = client
        .broadcast_tx(pb::BroadcastTxRequest {
            tx: vec![0xff, 0x00, 0x13, 0x37],
            mode: pb::BroadcastMode::Sync as i32,
        })
        .await
        .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    Ok(())
}

async fn refuses_typed_calls_with_the_wrong_message(
    node: &Node,
    client: &mut GatewayClient<Channel>,
    alice: &SigningKey,
    bob: &compute_proto::AccountId,
) -> Result<()> {
    let transfer_tx = pb::Tx::decode(node.signed_transfer(alice, bob, 1).await?.as_slice())?;
    let signed = pb::SignedTx {
        tx: Some(transfer_tx),
    };
    let status = client
        .post_job(signed.clone())
        .await
        .expect_err("a transfer is not a job");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("PostJob") && status.message().contains("Transfer"),
        "{status}"
    );
    for status in [
        client
            .submit_commit(signed.clone())
            .await
            .expect_err("not a commit"),
        client
            .submit_reveal(signed)
            .await
            .expect_err("not a reveal"),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    }
    let empty = client
        .post_job(pb::SignedTx { tx: None })
        .await
        .expect_err("no transaction");
    assert_eq!(empty.code(), Code::InvalidArgument);
    Ok(())
}

async fn streams_the_events_of_a_worker_and_a_job(
    node: &Node,
    client: &mut GatewayClient<Channel>,
    alice: &SigningKey,
    worker: &SigningKey,
) -> Result<()> {
    register_worker_and_store_module(node, client, alice, worker).await?;

    let nonce = node.nonce(&alice.account()).await?;
    let job_id = JobId::derive(&alice.account(), nonce);
    // Subscribe answers once CometBFT holds the subscriptions, so the job
    // posted next cannot slip past them.
    let mut by_worker = client
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::subscribe_request::Filter::Worker(
                worker.account().0.to_vec(),
            )),
        })
        .await?
        .into_inner();
    let mut by_job = client
        .subscribe(pb::SubscribeRequest {
            filter: Some(pb::subscribe_request::Filter::JobId(job_id.0.to_vec())),
        })
        .await?
        .into_inner();
    let bad = client
        .subscribe(pb::SubscribeRequest { filter: None })
        .await
        .expect_err("a filter is required");
    assert_eq!(bad.code(), Code::InvalidArgument);

    let posted = post_one_task_job(node, client, alice, nonce).await?;
    let result = posted.result.context("PostJob answers a result")?;
    assert_eq!(result.code, 0, "post job: {}", result.log);
    assert_eq!(
        posted.job_id,
        job_id.0.to_vec(),
        "the job id is derived from signer and nonce"
    );

    let job_hex = job_id.to_hex();
    let worker_hex = worker.account().to_hex();
    let is_assignment = |e: &pb::ChainEvent| {
        e.kind == "task_assigned"
            && attribute(e, "job") == Some(job_hex.as_str())
            && attribute(e, "worker") == Some(worker_hex.as_str())
    };
    let seen_by_worker = next_matching(&mut by_worker, &is_assignment).await?;
    let seen_by_job = next_matching(&mut by_job, &is_assignment).await?;
    assert_eq!(
        seen_by_worker, seen_by_job,
        "both streams report the same event"
    );
    assert!(seen_by_worker.height >= result.height);
    assert_eq!(attribute(&seen_by_worker, "task"), Some("0"));

    // Nothing that does not match the filter is forwarded, and nothing twice.
    let mut later = Vec::new();
    let quiet = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            () = &mut quiet => break,
            item = by_worker.next() => match item {
                Some(event) => later.push(event?),
                None => bail!("the worker stream ended"),
            },
        }
    }
    for event in &later {
        assert!(
            ["task_assigned", "task_reveal_open"].contains(&event.kind.as_str())
                && attribute(event, "worker") == Some(worker_hex.as_str()),
            "unexpected event {event:?}"
        );
        assert_ne!(event, &seen_by_worker, "an event was forwarded twice");
    }
    Ok(())
}

fn attribute<'a>(event: &'a pb::ChainEvent, key: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.as_str())
}

async fn next_matching(
    stream: &mut tonic::Streaming<pb::ChainEvent>,
    wanted: &impl Fn(&pb::ChainEvent) -> bool,
) -> Result<pb::ChainEvent> {
    let find = async {
        // Bounded by the timeout around it; each event is one block's worth.
        while let Some(event) = stream.message().await? {
            if wanted(&event) {
                return Ok(event);
            }
        }
        bail!("the stream ended before the event arrived")
    };
    tokio::time::timeout(EVENT_TIMEOUT, find)
        .await
        .context("no matching event in time")?
}

/// Uploads `bytes` in 300 kB chunks as the client crate cuts them, as
/// `uploader`'s account, naming `named` (which a test may choose to be
/// wrong: the header is signed for it and the true size); the gateway's raw
/// answer.
async fn put(
    client: &mut GatewayClient<Channel>,
    uploader: &SigningKey,
    named: Option<[u8; 32]>,
    bytes: &[u8],
) -> Result<pb::PutBlobResponse, tonic::Status> {
    let promised = named.map_or_else(|| BlobId::of(bytes), BlobId);
    let header = blob::upload_header(uploader, &promised, bytes.len() as u64, blob::unix_now());
    let mut chunks = blob::chunks(bytes, named.map(BlobId), 300_000);
    chunks[0].upload = Some(header);
    client
        .put_blob(tokio_stream::iter(chunks))
        .await
        .map(tonic::Response::into_inner)
}

/// Downloads a blob from `gateway` through the client crate: bounded and
/// checked against its hash. A refusal is the gateway's gRPC code.
async fn get(gateway: &Gateway, hash: &[u8; 32]) -> Result<Result<Vec<u8>, Code>> {
    let client = compute_client::Gateway::connect(&gateway.url()).await?;
    Ok(
        match client.get_blob(&BlobId(*hash), BLOB_BYTES_MAX).await {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(e
                .grpc_code()
                .with_context(|| format!("not a gRPC refusal: {e}"))?),
        },
    )
}

/// The bound of every download here: larger than any blob the test stores.
const BLOB_BYTES_MAX: u64 = 4 << 20;

fn stored_path(gateway: &Gateway, id: &BlobId) -> std::path::PathBuf {
    let hex = id.to_hex();
    gateway.home().join("blobs").join(&hex[..2]).join(hex)
}

async fn blobs_round_trip_and_are_verified(
    node: &Node,
    first: &Gateway,
    client: &mut GatewayClient<Channel>,
    uploader: &SigningKey,
) -> Result<()> {
    // Several chunks each way.
    let bytes: Vec<u8> = (0..2_500_000u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let id = BlobId(sha3_256(&bytes));
    let stored = put(client, uploader, Some(id.0), &bytes).await?;
    assert_eq!(stored.hash, id.0.to_vec());
    assert_eq!(stored.size, 2_500_000);
    assert_eq!(get(first, &id.0).await?, Ok(bytes.clone()));
    assert!(stored_path(first, &id).is_file());

    // Without a named hash the gateway names it.
    let small = b"a small blob".to_vec();
    let small_id = BlobId(sha3_256(&small));
    assert_eq!(
        put(client, uploader, None, &small).await?.hash,
        small_id.0.to_vec()
    );

    // Wrong bytes for a named hash are refused and never stored.
    let named = sha3_256(b"the bytes that were promised");
    let status = put(client, uploader, Some(named), b"other bytes")
        .await
        .expect_err("mismatch");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(!stored_path(first, &BlobId(named)).exists());
    assert_eq!(
        get(first, &named).await?,
        Err(Code::NotFound),
        "never stored"
    );

    // A hash must be 32 bytes (which the client crate's typed ids never
    // send, so the call is made by hand).
    let status = client
        .get_blob(pb::GetBlobRequest { hash: vec![1; 31] })
        .await
        .expect_err("short hash");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    let status = put(client, uploader, Some([0; 32]), b"")
        .await
        .expect_err("empty is not zero");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");

    // A second gateway fetches what it lacks from its peer, verified.
    let second = Gateway::start(&node.rpc_url(), &["--peer".to_owned(), first.url()])?;
    let mut second_client = connect(&second).await?;
    assert!(!stored_path(&second, &id).exists());
    assert_eq!(get(&second, &id.0).await?, Ok(bytes));
    assert!(stored_path(&second, &id).is_file(), "kept after the fetch");
    assert_eq!(
        get(&second, &sha3_256(b"nobody has this")).await?,
        Err(Code::NotFound),
        "nobody has it"
    );

    // The second gateway is given the small blob too; then the first
    // gateway's copy is damaged on disk. A third gateway asks the first,
    // which notices the damage before the last chunk and refuses with
    // DATA_LOSS, and gets the blob from the second instead. (A peer that
    // lies on purpose is covered by the node crate's in-process tests.)
    put(&mut second_client, uploader, None, &small).await?;
    std::fs::write(stored_path(first, &small_id), b"a small bomb")?;
    let third = Gateway::start(
        &node.rpc_url(),
        &[
            "--peer".to_owned(),
            first.url(),
            "--peer".to_owned(),
            second.url(),
        ],
    )?;
    assert_eq!(get(&third, &small_id.0).await?, Ok(small));
    assert!(
        !stored_path(first, &small_id).exists(),
        "the damaged copy is removed"
    );
    let metrics = scrape(&third)?;
    for expected in [
        "compute_gateway_peer_fetches_total{outcome=\"failed\"} 1",
        "compute_gateway_peer_fetches_total{outcome=\"ok\"} 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    Ok(())
}

async fn reflection_health_and_metrics_are_served(gateway: &Gateway) -> Result<()> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let channel = Channel::from_shared(gateway.url())?.connect().await?;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let answer = answers
        .message()
        .await?
        .context("reflection answered nothing")?;
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        bail!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"compute.v1.Gateway".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut health = HealthClient::new(channel);
    for service in ["", "compute.v1.Gateway"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    let metrics = scrape(gateway)?;
    for expected in [
        "compute_gateway_requests_total{method=\"BroadcastTx\",code=\"OK\"}",
        "compute_gateway_requests_total{method=\"PutBlob\",code=\"INVALID_ARGUMENT\"} 2",
        "compute_gateway_requests_total{method=\"GetBlob\",code=\"NOT_FOUND\"}",
        "compute_gateway_blob_bytes_in_total",
        "compute_gateway_store_bytes",
        "compute_gateway_subscriptions",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    Ok(())
}
