//! Wiring: the gRPC server (gateway, reflection, health), the metrics
//! endpoint and the health monitor, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compute_proto::pb::gateway_server::GatewayServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use super::error::NodeError;
use super::events::websocket_url;
use super::metrics::{self, Metrics};
use super::relay::Relay;
use super::service::{GatewayService, ServiceConfig, TX_BYTES_MAX};
use super::store::{BlobStore, StoreError};

/// How often the health monitor asks CometBFT for its status.
const HEALTH_INTERVAL_MS: u64 = 5_000;
/// The largest gRPC message accepted (a blob chunk or a transaction).
const MESSAGE_BYTES_MAX: usize = TX_BYTES_MAX + 64 * 1024;

/// Everything `compute-node` is configured with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// CometBFT's RPC URL.
    pub rpc_url: String,
    /// The home directory; blobs live in `<home>/blobs`.
    pub home: PathBuf,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Other gateways' gRPC URLs.
    pub peers: Vec<String>,
    /// The largest blob stored, in bytes.
    pub max_blob_bytes: u64,
    /// The total bytes the store may hold.
    pub quota_bytes: u64,
    /// The most `Subscribe` streams open at once.
    pub subscriptions_max: usize,
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The blob store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The RPC URL is unusable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Reflection could not read the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A peer URL is not a URL.
    #[error("peer URL '{0}' must start with http:// or https://")]
    BadPeer(String),
}

/// Binds both listeners (gRPC, then metrics) and returns their addresses.
///
/// # Errors
/// [`ServerError::Bind`] when an address is taken.
pub async fn bind(config: &GatewayConfig) -> Result<Listeners, ServerError> {
    let grpc = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let metrics = match config.metrics {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?,
        ),
        None => None,
    };
    Ok(Listeners { grpc, metrics })
}

/// The bound listeners of a gateway.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// The metrics listener.
    pub metrics: Option<TcpListener>,
}

/// Serves until `shutdown` completes, then stops accepting, ends event
/// streams and lets calls in flight finish.
///
/// # Errors
/// [`ServerError`] when a part cannot start or the server fails.
pub async fn serve(
    config: GatewayConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    for peer in &config.peers {
        if !(peer.starts_with("http://") || peer.starts_with("https://")) {
            return Err(ServerError::BadPeer(peer.clone()));
        }
    }
    let store = BlobStore::open(&config.home, config.max_blob_bytes, config.quota_bytes)?;
    let relay = Relay::new(&config.rpc_url)?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let service = GatewayService::new(
        relay.clone(),
        store.clone(),
        Arc::clone(&metrics),
        ServiceConfig {
            peers: config.peers.clone(),
            ws_url: websocket_url(&config.rpc_url),
            subscriptions_max: config.subscriptions_max,
        },
        stop_rx.clone(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(compute_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(compute_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GatewayServer<GatewayService>>().await;
    tokio::spawn(monitor_health(health.clone(), relay, stop_rx.clone()));

    if let Some(listener) = listeners.metrics {
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics at /metrics");
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&metrics),
            store.clone(),
            stop_rx.clone(),
        ));
    }

    let grpc_addr = listeners.grpc.local_addr().ok();
    tracing::info!(addr = ?grpc_addr, rpc = %config.rpc_url, home = %config.home.display(), peers = ?config.peers, "gateway listening");
    let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let health_on_stop = health.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, event streams end");
        health_on_stop
            .set_not_serving::<GatewayServer<GatewayService>>()
            .await;
        let _ = stop_tx.send(true);
    };
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            GatewayServer::new(service)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
        )
        .serve_with_incoming_shutdown(incoming, signal)
        .await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Reports the gateway as serving only while CometBFT answers.
async fn monitor_health(
    health: tonic_health::server::HealthReporter,
    relay: Relay,
    mut stop: watch::Receiver<bool>,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(HEALTH_INTERVAL_MS)) => {}
        }
        let ok = relay.latest_height().await.is_ok();
        if ok != serving {
            serving = ok;
            if ok {
                tracing::info!("CometBFT answers again; serving");
                health.set_serving::<GatewayServer<GatewayService>>().await;
            } else {
                tracing::warn!(
                    rpc = relay.url(),
                    "CometBFT does not answer; reporting NOT_SERVING"
                );
                health
                    .set_not_serving::<GatewayServer<GatewayService>>()
                    .await;
            }
        }
    }
}
