//! `Subscribe` through gRPC, in process, with a hub fed by hand: a thousand
//! concurrent subscribers all get their events from one feed, and a
//! subscriber that stops reading is cut off with `RESOURCE_EXHAUSTED`
//! without holding up the others or being buffered without bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::pb::gateway_server::GatewayServer;
use compute_proto::{pb, AccountId, JobId};
use tendermint::abci;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::auth::{Admission, FixedStandings};
use super::events::{Hub, BLOCKS_BUFFERED};
use super::limits::{Limits, LimitsConfig};
use super::metrics::Metrics;
use super::relay::Relay;
use super::service::{GatewayService, ServiceConfig};
use super::store::{BlobStore, StoreConfig};

/// Subscribers that read everything.
const SUBSCRIBERS: usize = 1000;
/// HTTP/2 connections they share.
const CONNECTIONS: usize = 10;

fn assigned(job: &JobId, worker: &AccountId) -> abci::Event {
    abci::Event::new(
        "task_assigned",
        [
            abci::EventAttribute::from(("job", job.to_hex().as_str(), true)),
            abci::EventAttribute::from(("task", "0", true)),
            abci::EventAttribute::from(("worker", worker.to_hex().as_str(), true)),
        ],
    )
}

struct Served {
    addr: SocketAddr,
    hub: Hub,
    metrics: Arc<Metrics>,
    _home: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn serve() -> Served {
    let home = tempfile::tempdir().unwrap();
    let store = BlobStore::open(home.path(), StoreConfig::new(1 << 20, 1 << 20)).unwrap();
    let metrics = Arc::new(Metrics::default());
    let limits = Limits::new(
        LimitsConfig {
            client_streams_max: 2 * SUBSCRIBERS as u32,
            client_request_burst: 10 * SUBSCRIBERS as u32,
            ..LimitsConfig::default()
        },
        Arc::clone(&metrics),
    );
    let hub = Hub::detached("ws://unused");
    hub.set_link(true, true, None);
    let (stop, stopped) = watch::channel(false);
    let service = GatewayService::with_hub(
        Relay::new("http://127.0.0.1:9").unwrap(),
        store,
        Arc::clone(&metrics),
        ServiceConfig {
            peers: Vec::new(),
            ws_url: "ws://unused".to_owned(),
        },
        limits.clone(),
        Admission::new(Box::new(FixedStandings::default()), 1),
        hub.clone(),
        stopped,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InterceptedService::new(
                GatewayServer::new(service),
                limits.interceptor(),
            ))
            .serve_with_incoming(incoming),
    );
    Served {
        addr,
        hub,
        metrics,
        _home: home,
        _stop: stop,
    }
}

async fn channels(addr: SocketAddr) -> Vec<GatewayClient<Channel>> {
    let mut out = Vec::new();
    for _ in 0..CONNECTIONS {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        out.push(GatewayClient::new(channel));
    }
    out
}

fn job_filter(job: &JobId) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        filter: Some(pb::subscribe_request::Filter::JobId(job.0.to_vec())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_share_one_feed_and_a_slow_one_is_cut_off() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("finished in time");
}

async fn scenario() {
    let served = serve().await;
    let clients = channels(served.addr).await;
    let watched = JobId([1; 32]);
    let ignored = JobId([2; 32]);
    let worker = AccountId([3; 32]);

    // The slow subscriber watches the busy job and never reads, on a
    // connection of its own whose HTTP/2 windows are the protocol's default
    // 64 KiB (so that its client does not buffer megabytes for it).
    let slow_channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = GatewayClient::new(slow_channel)
        .subscribe(job_filter(&ignored))
        .await
        .unwrap()
        .into_inner();
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        let mut client = clients[i % CONNECTIONS].clone();
        streams.push(
            client
                .subscribe(job_filter(&watched))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    assert_eq!(
        served.metrics.subscriptions_active(),
        SUBSCRIBERS as u64 + 1
    );

    // Far more blocks for the busy job than the ring holds. Every batch of
    // them ends with a block for the watched job, which each of the thousand
    // reads before the next batch goes out: readers that keep reading keep
    // up however loaded the machine is, and the one that never reads falls
    // behind.
    let busy_blocks = 3 * BLOCKS_BUFFERED as i64;
    let batch = 64;
    let mut height = 0;
    let mut open = streams;
    while height < busy_blocks {
        for _ in 0..batch {
            height += 1;
            let tx = [assigned(&ignored, &worker)];
            served
                .hub
                .publish(height, &[], std::iter::once(tx.as_slice()));
        }
        height += 1;
        let tick = height;
        let tx = [assigned(&watched, &worker)];
        served
            .hub
            .publish(tick, &[], std::iter::once(tx.as_slice()));
        // Every one of the thousand gets the watched job's event, and only it.
        let mut readers = Vec::with_capacity(SUBSCRIBERS);
        for mut stream in open {
            readers.push(tokio::spawn(async move {
                let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
                    .await
                    .expect("a reader got its event in time")
                    .unwrap()
                    .unwrap();
                assert_eq!(event.height, tick);
                assert_eq!(event.kind, "task_assigned");
                stream
            }));
        }
        open = Vec::with_capacity(SUBSCRIBERS);
        for reader in readers {
            open.push(reader.await.unwrap());
        }
    }
    let last = height;

    // The slow one gets what was buffered for it (a bounded prefix), then
    // the error that says why its stream ended.
    let mut received = 0usize;
    let status = loop {
        match slow.message().await {
            Ok(Some(event)) => {
                assert_eq!(event.kind, "task_assigned");
                received += 1;
                assert!(
                    received < busy_blocks as usize,
                    "the slow subscriber was buffered without bound"
                );
            }
            Ok(None) => panic!("the slow stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("fell more than"), "{status}");
    assert!(served
        .metrics
        .render(0)
        .contains("compute_gateway_subscriptions_lagged_total 1"));

    // The others are still subscribed and still served.
    served.hub.publish(
        last + 1,
        &[],
        std::iter::once([assigned(&watched, &worker)].as_slice()),
    );
    for mut stream in open.into_iter().take(50) {
        let event = stream.message().await.unwrap().unwrap();
        assert_eq!(event.height, last + 1);
    }
}
