//! Prometheus metrics: a `prometheus-client` registry of the gateway's
//! counters and gauges, served in the Prometheus text exposition format
//! (version 0.0.4) at `GET /metrics` by an `axum` router over `hyper`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::store::BlobStore;

/// The longest HTTP request head the endpoint reads (hyper's smallest
/// buffer limit).
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a metrics client may take to send its request head.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long one metrics connection may last in all, answer included.
const CONNECTION_TIMEOUT_MS: u64 = 15_000;
/// The most metrics connections served at once.
const CONNECTIONS_MAX: usize = 64;

/// A gauge of a count that is never negative.
type CountGauge = Gauge<u64, std::sync::atomic::AtomicU64>;

/// The labels of `compute_gateway_requests_total`, in output order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    code: &'static str,
}

/// The label of `compute_gateway_peer_fetches_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerFetchLabels {
    outcome: &'static str,
}

/// The label of `compute_gateway_upload_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// The label of `compute_gateway_throttled_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    limit: &'static str,
}

/// The gateway's counters and gauges; shared by every handler.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    blob_bytes_in: Counter,
    blob_bytes_out: Counter,
    peer_fetches: Family<PeerFetchLabels, Counter>,
    store_bytes: CountGauge,
    subscriptions_active: CountGauge,
    subscription_events: Counter,
    subscription_reconnects: Counter,
    subscriptions_lagged: Counter,
    cometbft_subscriptions: CountGauge,
    upload_refusals: Family<RefusalLabels, Counter>,
    throttled: Family<ThrottleLabels, Counter>,
    evicted_blobs: Counter,
    evicted_bytes: Counter,
    pinned_bytes: CountGauge,
    referenced_blobs: CountGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            blob_bytes_in: Counter::default(),
            blob_bytes_out: Counter::default(),
            peer_fetches: Family::default(),
            store_bytes: CountGauge::default(),
            subscriptions_active: CountGauge::default(),
            subscription_events: Counter::default(),
            subscription_reconnects: Counter::default(),
            subscriptions_lagged: Counter::default(),
            cometbft_subscriptions: CountGauge::default(),
            upload_refusals: Family::default(),
            throttled: Family::default(),
            evicted_blobs: Counter::default(),
            evicted_bytes: Counter::default(),
            pinned_bytes: CountGauge::default(),
            referenced_blobs: CountGauge::default(),
        };
        // Counters are registered without `_total`, which the encoder adds;
        // help texts go without a final full stop, which the registry adds.
        let r = &mut m.registry;
        r.register(
            "compute_gateway_requests",
            "gRPC calls by method and status code",
            m.requests.clone(),
        );
        r.register(
            "compute_gateway_blob_bytes_in",
            "Blob bytes stored from uploads and peer fetches",
            m.blob_bytes_in.clone(),
        );
        r.register(
            "compute_gateway_blob_bytes_out",
            "Blob bytes streamed to clients",
            m.blob_bytes_out.clone(),
        );
        r.register(
            "compute_gateway_peer_fetches",
            "Blob fetches from peer gateways by outcome",
            m.peer_fetches.clone(),
        );
        r.register(
            "compute_gateway_store_bytes",
            "Bytes of blobs in the local store",
            m.store_bytes.clone(),
        );
        r.register(
            "compute_gateway_subscriptions",
            "Open Subscribe streams",
            m.subscriptions_active.clone(),
        );
        r.register(
            "compute_gateway_subscription_events",
            "Chain events forwarded to subscribers",
            m.subscription_events.clone(),
        );
        r.register(
            "compute_gateway_subscription_reconnects",
            "Reconnections of the shared CometBFT websocket subscription",
            m.subscription_reconnects.clone(),
        );
        r.register(
            "compute_gateway_subscriptions_lagged",
            "Subscribe streams ended because they fell too far behind",
            m.subscriptions_lagged.clone(),
        );
        r.register(
            "compute_gateway_cometbft_subscriptions",
            "CometBFT websocket subscriptions held, shared by every Subscribe stream",
            m.cometbft_subscriptions.clone(),
        );
        r.register(
            "compute_gateway_upload_refusals",
            "PutBlob uploads refused before anything was stored, by reason",
            m.upload_refusals.clone(),
        );
        r.register(
            "compute_gateway_throttled",
            "Calls refused by a per-client or per-account limit, by limit",
            m.throttled.clone(),
        );
        r.register(
            "compute_gateway_evicted_blobs",
            "Unreferenced blobs evicted from the store",
            m.evicted_blobs.clone(),
        );
        r.register(
            "compute_gateway_evicted_bytes",
            "Bytes of unreferenced blobs evicted from the store",
            m.evicted_bytes.clone(),
        );
        r.register(
            "compute_gateway_pinned_bytes",
            "Bytes of stored blobs that the chain references or an operator pinned",
            m.pinned_bytes.clone(),
        );
        r.register(
            "compute_gateway_referenced_blobs",
            "Blob ids the chain references now, as the gateway last learned them",
            m.referenced_blobs.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts one finished gRPC call of `method` with status `code`.
    pub fn request(&self, method: &'static str, code: tonic::Code) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                code: code_name(code),
            })
            .inc();
    }

    /// Counts bytes accepted into the store from clients or peers.
    pub fn blob_bytes_in(&self, bytes: u64) {
        self.blob_bytes_in.inc_by(bytes);
    }

    /// Counts bytes streamed out to clients.
    pub fn blob_bytes_out(&self, bytes: u64) {
        self.blob_bytes_out.inc_by(bytes);
    }

    /// Counts one attempt to fetch a blob from a peer, by outcome.
    pub fn peer_fetch(&self, outcome: &'static str) {
        self.peer_fetches
            .get_or_create(&PeerFetchLabels { outcome })
            .inc();
    }

    /// Marks a `Subscribe` stream as open; the guard marks it closed.
    pub fn subscription_opened(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions_active.inc();
        SubscriptionGuard(Arc::clone(self))
    }

    /// The number of open `Subscribe` streams.
    pub fn subscriptions_active(&self) -> u64 {
        self.subscriptions_active.get()
    }

    /// Counts one event forwarded to a subscriber.
    pub fn subscription_event(&self) {
        self.subscription_events.inc();
    }

    /// Counts one reconnection of a subscription's websocket.
    pub fn subscription_reconnect(&self) {
        self.subscription_reconnects.inc();
    }

    /// Counts one `Subscribe` stream ended because it fell behind.
    pub fn subscription_lagged(&self) {
        self.subscriptions_lagged.inc();
    }

    /// Sets the number of CometBFT websocket subscriptions the gateway holds.
    pub fn cometbft_subscriptions_set(&self, n: u64) {
        self.cometbft_subscriptions.set(n);
    }

    /// The number of CometBFT websocket subscriptions the gateway holds.
    pub fn cometbft_subscriptions(&self) -> u64 {
        self.cometbft_subscriptions.get()
    }

    /// Counts one upload refused for `reason` (a fixed word, see docs/GATEWAY.md).
    pub fn upload_refused(&self, reason: &'static str) {
        self.upload_refusals
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Counts one call refused by the limit named `limit`.
    pub fn throttled(&self, limit: &'static str) {
        self.throttled
            .get_or_create(&ThrottleLabels { limit })
            .inc();
    }

    /// Counts blobs evicted, and their bytes.
    pub fn evicted(&self, blobs: u64, bytes: u64) {
        self.evicted_blobs.inc_by(blobs);
        self.evicted_bytes.inc_by(bytes);
    }

    /// Sets the bytes of pinned stored blobs.
    pub fn pinned_bytes_set(&self, bytes: u64) {
        self.pinned_bytes.set(bytes);
    }

    /// Sets the number of blob ids the chain references.
    pub fn referenced_blobs_set(&self, n: u64) {
        self.referenced_blobs.set(n);
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4),
    /// with the store holding `store_bytes`.
    pub fn render(&self, store_bytes: u64) -> String {
        self.store_bytes.set(store_bytes);
        let mut out = String::new();
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            // Writing to a `String` does not fail; keep what was written.
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Decrements the open-subscription gauge when dropped.
#[derive(Debug)]
pub struct SubscriptionGuard(Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        let _ = self.0.subscriptions_active.inner().fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |n| Some(n.saturating_sub(1)),
        );
    }
}

/// The canonical gRPC name of a status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What a scrape reads: the metrics and the store whose size they report.
#[derive(Clone, Debug)]
struct Scraped {
    metrics: Arc<Metrics>,
    store: BlobStore,
}

/// The routes: `GET /metrics` (and `HEAD`), 405 for another method there,
/// 404 elsewhere.
fn router(metrics: Arc<Metrics>, store: BlobStore) -> Router {
    Router::new()
        .route("/metrics", get(scrape).fallback(only_get))
        .fallback(not_found)
        .with_state(Scraped { metrics, store })
}

async fn scrape(State(scraped): State<Scraped>) -> impl IntoResponse {
    let body = scraped.metrics.render(scraped.store.stored_bytes());
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        body,
    )
}

async fn only_get() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "only GET is supported\n",
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found: metrics are at /metrics\n",
    )
}

/// How much the endpoint gives each client.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// The most connections served at once; more are closed unanswered.
    connections_max: usize,
    /// How long a client may take to send its request head.
    request_timeout: Duration,
    /// How long one connection may last in all.
    connection_timeout: Duration,
}

impl Bounds {
    const DEFAULT: Bounds = Bounds {
        connections_max: CONNECTIONS_MAX,
        request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        connection_timeout: Duration::from_millis(CONNECTION_TIMEOUT_MS),
    };
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true, then
/// stops accepting and lets the answers in flight finish.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: BlobStore,
    shutdown: watch::Receiver<bool>,
) {
    serve_within(listener, router(metrics, store), shutdown, Bounds::DEFAULT).await;
}

async fn serve_within(
    listener: TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    bounds: Bounds,
) {
    let slots = Arc::new(Semaphore::new(bounds.connections_max));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Too many scrapers at once: drop the connection.
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, service, stop, bounds).await;
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends, within its own deadline.
    let all = u32::try_from(bounds.connections_max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(bounds.connection_timeout, slots.acquire_many(all)).await;
}

/// Answers one request on `stream`, then closes it.
async fn connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
    bounds: Bounds,
) {
    let _ = stream.set_nodelay(true);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.request_timeout)
        .max_buf_size(REQUEST_HEAD_BYTES_MAX)
        .keep_alive(false);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let exchange = async {
        tokio::select! {
            done = conn.as_mut() => return done,
            _ = stop.wait_for(|stop| *stop) => {}
        }
        // Shutting down: finish the answer under way, if any, then close.
        conn.as_mut().graceful_shutdown();
        conn.as_mut().await
    };
    match tokio::time::timeout(bounds.connection_timeout, exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection"),
        Err(_) => tracing::debug!("metrics connection timed out"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn rendering_names_methods_codes_and_gauges() {
        let metrics = Arc::new(Metrics::default());
        metrics.request("BroadcastTx", tonic::Code::Ok);
        metrics.request("BroadcastTx", tonic::Code::Ok);
        metrics.request("PutBlob", tonic::Code::InvalidArgument);
        metrics.blob_bytes_in(10);
        let guard = metrics.subscription_opened();
        let text = metrics.render(42);
        assert!(
            text.contains("compute_gateway_requests_total{method=\"BroadcastTx\",code=\"OK\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "compute_gateway_requests_total{method=\"PutBlob\",code=\"INVALID_ARGUMENT\"} 1"
        ));
        assert!(text.contains(
            "# HELP compute_gateway_requests_total gRPC calls by method and status code.\n\
             # TYPE compute_gateway_requests_total counter\n"
        ));
        assert!(text.contains("compute_gateway_blob_bytes_in_total 10"));
        assert!(text.contains("# TYPE compute_gateway_store_bytes gauge\n"));
        assert!(text.contains("compute_gateway_store_bytes 42"));
        assert!(text.contains("compute_gateway_subscriptions 1"));
        assert!(text.contains("compute_gateway_cometbft_subscriptions 0"));
        metrics.cometbft_subscriptions_set(1);
        metrics.subscription_lagged();
        let text = metrics.render(42);
        assert!(text.contains("compute_gateway_cometbft_subscriptions 1"));
        assert!(text.contains("compute_gateway_subscriptions_lagged_total 1"));
        drop(guard);
        assert_eq!(metrics.subscriptions_active(), 0);
        assert!(metrics
            .render(0)
            .contains("compute_gateway_subscriptions 0"));
    }

    /// Sends `request` raw and reads the reply up to the close; a
    /// connection closed or reset unanswered reads as empty.
    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
            .await
            .expect("the endpoint closes after answering");
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// An endpoint serving on an ephemeral loopback port.
    struct Started {
        metrics: Arc<Metrics>,
        _home: tempfile::TempDir,
        stop: watch::Sender<bool>,
        addr: std::net::SocketAddr,
        server: tokio::task::JoinHandle<()>,
    }

    impl Started {
        async fn new(bounds: Bounds) -> Started {
            let home = tempfile::tempdir().unwrap();
            let store = BlobStore::open(
                home.path(),
                crate::gateway::store::StoreConfig::new(1024, 1024),
            )
            .unwrap();
            let metrics = Arc::new(Metrics::default());
            let (stop, stopped) = watch::channel(false);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = router(Arc::clone(&metrics), store);
            let server = tokio::spawn(serve_within(listener, app, stopped, bounds));
            Started {
                metrics,
                _home: home,
                stop,
                addr,
                server,
            }
        }

        /// Signals shutdown; the endpoint must stop within `within`.
        async fn stop(self, within: Duration) {
            self.stop.send(true).unwrap();
            tokio::time::timeout(within, self.server)
                .await
                .expect("the endpoint stops in time")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn the_endpoint_answers_get_metrics_over_http() {
        let endpoint = Started::new(Bounds::DEFAULT).await;
        let addr = endpoint.addr;
        for (request, expect) in [
            ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK"),
            ("GET /metrics?x=1 HTTP/1.0\r\n\r\n", "200 OK"),
            ("GET /other HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
            ("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        ] {
            let reply = exchange(addr, request).await;
            assert!(reply.starts_with("HTTP/1."), "{reply}");
            assert!(reply.get(9..).unwrap().starts_with(expect), "{reply}");
            if expect == "200 OK" {
                assert!(
                    reply.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
                    "{reply}"
                );
                assert!(reply.contains("compute_gateway_store_bytes 0"), "{reply}");
            }
        }
        // A request head larger than the endpoint reads is refused.
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(REQUEST_HEAD_BYTES_MAX * 2)
        );
        let reply = exchange(addr, &huge).await;
        assert!(!reply.contains("200 OK"), "{reply}");
        endpoint.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_scrape_over_loopback_parses_as_the_exposition_format() {
        let endpoint = Started::new(Bounds::DEFAULT).await;
        let addr = endpoint.addr;
        let metrics = &endpoint.metrics;
        metrics.request("GetBlob", tonic::Code::NotFound);
        metrics.peer_fetch("ok");
        metrics.peer_fetch("ok");
        metrics.blob_bytes_out(7);
        metrics.subscription_event();

        // Scrape with hyper's own client, as a Prometheus server would.
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = axum::http::Request::get("/metrics")
            .header(header::HOST, addr.to_string())
            .body(axum::body::Body::empty())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            prometheus_text::CONTENT_TYPE
        );
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();

        // Every sample belongs to a family announced by HELP and TYPE lines
        // just before it, and parses as `name{labels} value`.
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples: BTreeMap<String, u64> = BTreeMap::new();
        let mut family: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty() && !help.ends_with(".."), "{line}");
                family = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(Some(name), family.as_deref(), "{line}");
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                types.insert(name.to_owned(), kind.to_owned());
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert_eq!(Some(name), family.as_deref(), "{line}");
                if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                    let labels = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                    for pair in labels.split(',') {
                        let (key, quoted) = pair.split_once('=').unwrap();
                        assert!(key.chars().all(|c| c.is_ascii_lowercase()), "{line}");
                        assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                    }
                }
                samples.insert(series.to_owned(), value.parse().unwrap());
            }
        }
        let names: Vec<&str> = types.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "compute_gateway_blob_bytes_in_total",
                "compute_gateway_blob_bytes_out_total",
                "compute_gateway_cometbft_subscriptions",
                "compute_gateway_evicted_blobs_total",
                "compute_gateway_evicted_bytes_total",
                "compute_gateway_peer_fetches_total",
                "compute_gateway_pinned_bytes",
                "compute_gateway_referenced_blobs",
                "compute_gateway_requests_total",
                "compute_gateway_store_bytes",
                "compute_gateway_subscription_events_total",
                "compute_gateway_subscription_reconnects_total",
                "compute_gateway_subscriptions",
                "compute_gateway_subscriptions_lagged_total",
            ]
        );
        let expected: BTreeMap<String, u64> = [
            ("compute_gateway_blob_bytes_in_total", 0),
            ("compute_gateway_blob_bytes_out_total", 7),
            ("compute_gateway_cometbft_subscriptions", 0),
            ("compute_gateway_evicted_blobs_total", 0),
            ("compute_gateway_evicted_bytes_total", 0),
            ("compute_gateway_peer_fetches_total{outcome=\"ok\"}", 2),
            ("compute_gateway_pinned_bytes", 0),
            ("compute_gateway_referenced_blobs", 0),
            (
                "compute_gateway_requests_total{method=\"GetBlob\",code=\"NOT_FOUND\"}",
                1,
            ),
            ("compute_gateway_store_bytes", 0),
            ("compute_gateway_subscription_events_total", 1),
            ("compute_gateway_subscription_reconnects_total", 0),
            ("compute_gateway_subscriptions", 0),
            ("compute_gateway_subscriptions_lagged_total", 0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(samples, expected, "{text}");

        endpoint.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_off_and_extra_clients_are_turned_away() {
        let bounds = Bounds {
            connections_max: 1,
            request_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_secs(2),
        };
        let endpoint = Started::new(bounds).await;
        let addr = endpoint.addr;
        // The first client holds the only slot and says nothing.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A second one meanwhile is closed without an answer.
        let reply = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(reply.is_empty(), "{reply}");
        // The silent one is closed once the request timeout passes.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(1), silent.read_to_end(&mut rest))
            .await
            .expect("the silent client is cut off")
            .ok();
        // Its slot is free again.
        let reply = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        endpoint.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn shutdown_stops_the_endpoint_with_a_connection_open() {
        let endpoint = Started::new(Bounds::DEFAULT).await;
        let addr = endpoint.addr;
        // An idle connection does not hold up the shutdown.
        let _idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        endpoint.stop(Duration::from_secs(2)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
