//! Wiring: the gRPC server (gateway, reflection, health), the metrics
//! endpoint and the health monitor, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use compute_proto::pb::gateway_server::GatewayServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

use super::auth::{Admission, ChainStandings, Standings};
use super::error::NodeError;
use super::events::websocket_url;
use super::limits::{Limits, LimitsConfig};
use super::metrics::{self, Metrics};
use super::pins;
use super::relay::Relay;
use super::retention::Retention;
use super::service::{GatewayService, ServiceConfig, TX_BYTES_MAX};
use super::store::{BlobStore, StoreConfig, StoreError};

/// How often the health monitor asks CometBFT for its status.
const HEALTH_INTERVAL_MS: u64 = 5_000;
/// How often the maintenance loop runs.
const MAINTENANCE_INTERVAL_MS: u64 = 2_000;
/// Every how many maintenance rounds idle clients' rate state is dropped.
const LIMITS_SWEEP_ROUNDS: u64 = 30;
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
    /// Eviction starts above this share of `quota_bytes`, in percent.
    pub high_water_percent: u8,
    /// Eviction stops at this share of `quota_bytes`, in percent.
    pub low_water_percent: u8,
    /// The bytes of unreferenced blobs one account may keep here.
    pub account_quota_bytes: u64,
    /// How long an unreferenced blob is kept after its upload.
    pub grace: Duration,
    /// How many blocks a settled task's output stays referenced.
    pub retain_blocks: u64,
    /// Per-client and per-account limits.
    pub limits: LimitsConfig,
    /// The balance that admits an uploader that is not a registered worker.
    pub upload_min_balance: u64,
}

impl GatewayConfig {
    /// The blob store's limits.
    pub fn store_config(&self) -> StoreConfig {
        let share = |percent: u8| {
            let percent = u128::from(percent.min(100));
            u64::try_from(u128::from(self.quota_bytes).saturating_mul(percent) / 100)
                .unwrap_or(u64::MAX)
        };
        let high_water_bytes = share(self.high_water_percent);
        StoreConfig {
            max_blob_bytes: self.max_blob_bytes,
            quota_bytes: self.quota_bytes,
            high_water_bytes,
            low_water_bytes: share(self.low_water_percent).min(high_water_bytes),
            account_quota_bytes: self.account_quota_bytes,
            grace: self.grace,
        }
    }
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
    let relay = Relay::new(&config.rpc_url)?;
    serve_with(
        config,
        listeners,
        Box::new(ChainStandings::new(relay)),
        shutdown,
    )
    .await
}

/// As [`serve`], with uploaders' standings read from `standings` rather
/// than from the chain (for gateways in tests without one).
///
/// # Errors
/// [`ServerError`] when a part cannot start or the server fails.
pub async fn serve_with(
    config: GatewayConfig,
    listeners: Listeners,
    standings: Box<dyn Standings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    for peer in &config.peers {
        if !(peer.starts_with("http://") || peer.starts_with("https://")) {
            return Err(ServerError::BadPeer(peer.clone()));
        }
    }
    let store = BlobStore::open(&config.home, config.store_config())?;
    let relay = Relay::new(&config.rpc_url)?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let limits = Limits::new(config.limits, Arc::clone(&metrics));
    let admission = Admission::new(standings, config.upload_min_balance);
    let service = GatewayService::new(
        relay.clone(),
        store.clone(),
        Arc::clone(&metrics),
        ServiceConfig {
            peers: config.peers.clone(),
            ws_url: websocket_url(&config.rpc_url),
        },
        limits.clone(),
        admission,
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
    let retention = Retention::new(store.clone(), Arc::clone(&metrics), config.retain_blocks);
    tokio::spawn(
        retention
            .clone()
            .run(relay.clone(), service.hub(), stop_rx.clone()),
    );
    tokio::spawn(maintain(
        Maintenance {
            store: store.clone(),
            retention,
            limits: limits.clone(),
            metrics: Arc::clone(&metrics),
            pins: pins::path_in(&config.home),
        },
        stop_rx.clone(),
    ));
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
        .add_service(InterceptedService::new(
            GatewayServer::new(service)
                .max_decoding_message_size(MESSAGE_BYTES_MAX)
                .max_encoding_message_size(MESSAGE_BYTES_MAX),
            limits.interceptor(),
        ))
        .serve_with_incoming_shutdown(incoming, signal)
        .await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// What the maintenance loop looks after.
struct Maintenance {
    store: BlobStore,
    retention: Retention,
    limits: Limits,
    metrics: Arc<Metrics>,
    pins: PathBuf,
}

/// Every [`MAINTENANCE_INTERVAL_MS`]: reloads the operator's pins when their
/// file changed, evicts when the store is over its high-water mark (once the
/// chain's references are known), updates the pinned-bytes gauge, and now
/// and then forgets idle clients' rate state.
async fn maintain(m: Maintenance, mut stop: watch::Receiver<bool>) {
    let mut pins_seen: Option<Option<SystemTime>> = None;
    let mut rounds: u64 = 0;
    loop {
        let modified = std::fs::metadata(&m.pins)
            .and_then(|meta| meta.modified())
            .ok();
        if pins_seen != Some(modified) {
            match pins::load(&m.pins) {
                Ok(ids) => {
                    tracing::info!(pins = ids.len(), file = %m.pins.display(), "operator pins loaded");
                    m.store.set_manual_pins(ids);
                    pins_seen = Some(modified);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "operator pins not reloaded; the previous ones stay");
                    pins_seen = Some(modified);
                }
            }
        }
        let complete = m.retention.complete();
        m.store.set_references_complete(complete);
        // Eviction unlinks files: off the async threads.
        let store = m.store.clone();
        let evicted = tokio::task::spawn_blocking(move || store.evict(SystemTime::now(), complete))
            .await
            .unwrap_or_default();
        m.metrics.evicted(evicted.blobs, evicted.bytes);
        m.metrics.pinned_bytes_set(m.store.pinned_bytes());
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(LIMITS_SWEEP_ROUNDS) {
            m.limits.sweep();
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(MAINTENANCE_INTERVAL_MS)) => {}
        }
    }
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
