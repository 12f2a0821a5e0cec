//! Prometheus metrics: a small registry of counters and a plain HTTP
//! endpoint that serves them in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::store::BlobStore;

/// The longest HTTP request head the endpoint reads.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a metrics client may take to send its request.
const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The most metrics connections served at once.
const CONNECTIONS_MAX: usize = 64;

/// The gateway's counters; shared by every handler.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    blob_bytes_in: AtomicU64,
    blob_bytes_out: AtomicU64,
    peer_fetches: Mutex<BTreeMap<&'static str, u64>>,
    subscriptions_active: AtomicU64,
    subscription_events: AtomicU64,
    subscription_reconnects: AtomicU64,
    subscriptions_lagged: AtomicU64,
    cometbft_subscriptions: AtomicU64,
}

impl Metrics {
    /// Counts one finished gRPC call of `method` with status `code`.
    pub fn request(&self, method: &'static str, code: tonic::Code) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry((method, code_name(code))).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// Counts bytes accepted into the store from clients or peers.
    pub fn blob_bytes_in(&self, bytes: u64) {
        self.blob_bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes streamed out to clients.
    pub fn blob_bytes_out(&self, bytes: u64) {
        self.blob_bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one attempt to fetch a blob from a peer, by outcome.
    pub fn peer_fetch(&self, outcome: &'static str) {
        let mut map = self.peer_fetches.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(outcome).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// Marks a `Subscribe` stream as open; the guard marks it closed.
    pub fn subscription_opened(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions_active.fetch_add(1, Ordering::Relaxed);
        SubscriptionGuard(Arc::clone(self))
    }

    /// The number of open `Subscribe` streams.
    pub fn subscriptions_active(&self) -> u64 {
        self.subscriptions_active.load(Ordering::Relaxed)
    }

    /// Counts one event forwarded to a subscriber.
    pub fn subscription_event(&self) {
        self.subscription_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one reconnection of a subscription's websocket.
    pub fn subscription_reconnect(&self) {
        self.subscription_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `Subscribe` stream ended because it fell behind.
    pub fn subscription_lagged(&self) {
        self.subscriptions_lagged.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of CometBFT websocket subscriptions the gateway holds.
    pub fn cometbft_subscriptions_set(&self, n: u64) {
        self.cometbft_subscriptions.store(n, Ordering::Relaxed);
    }

    /// The number of CometBFT websocket subscriptions the gateway holds.
    pub fn cometbft_subscriptions(&self) -> u64 {
        self.cometbft_subscriptions.load(Ordering::Relaxed)
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self, store_bytes: u64) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP compute_gateway_requests_total gRPC calls by method and status code.\n",
        );
        out.push_str("# TYPE compute_gateway_requests_total counter\n");
        {
            let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((method, code), count) in map.iter() {
                let _ = writeln!(
                    out,
                    "compute_gateway_requests_total{{method=\"{method}\",code=\"{code}\"}} {count}"
                );
            }
        }
        counter(
            &mut out,
            "compute_gateway_blob_bytes_in_total",
            "Blob bytes stored from uploads and peer fetches.",
            self.blob_bytes_in.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "compute_gateway_blob_bytes_out_total",
            "Blob bytes streamed to clients.",
            self.blob_bytes_out.load(Ordering::Relaxed),
        );
        out.push_str("# HELP compute_gateway_peer_fetches_total Blob fetches from peer gateways by outcome.\n");
        out.push_str("# TYPE compute_gateway_peer_fetches_total counter\n");
        {
            let map = self.peer_fetches.lock().unwrap_or_else(|p| p.into_inner());
            for (outcome, count) in map.iter() {
                let _ = writeln!(
                    out,
                    "compute_gateway_peer_fetches_total{{outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        gauge(
            &mut out,
            "compute_gateway_store_bytes",
            "Bytes of blobs in the local store.",
            store_bytes,
        );
        gauge(
            &mut out,
            "compute_gateway_subscriptions",
            "Open Subscribe streams.",
            self.subscriptions_active(),
        );
        counter(
            &mut out,
            "compute_gateway_subscription_events_total",
            "Chain events forwarded to subscribers.",
            self.subscription_events.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "compute_gateway_subscription_reconnects_total",
            "Reconnections of the shared CometBFT websocket subscription.",
            self.subscription_reconnects.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "compute_gateway_subscriptions_lagged_total",
            "Subscribe streams ended because they fell too far behind.",
            self.subscriptions_lagged.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "compute_gateway_cometbft_subscriptions",
            "CometBFT websocket subscriptions held, shared by every Subscribe stream.",
            self.cometbft_subscriptions(),
        );
        out
    }
}

/// Decrements the open-subscription gauge when dropped.
#[derive(Debug)]
pub struct SubscriptionGuard(Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        let _ =
            self.0
                .subscriptions_active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
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

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: BlobStore,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
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
        let body = metrics.render(store.stored_bytes());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(stream, body).await {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, body: String) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), read_head)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET is supported\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
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
            text.contains("compute_gateway_requests_total{method=\"BroadcastTx\",code=\"OK\"} 2")
        );
        assert!(text.contains(
            "compute_gateway_requests_total{method=\"PutBlob\",code=\"INVALID_ARGUMENT\"} 1"
        ));
        assert!(text.contains("compute_gateway_blob_bytes_in_total 10"));
        assert!(text.contains("compute_gateway_store_bytes 42"));
        assert!(text.contains("compute_gateway_subscriptions 1"));
        assert!(text.contains("compute_gateway_cometbft_subscriptions 0"));
        metrics.cometbft_subscriptions_set(1);
        metrics.subscription_lagged();
        let text = metrics.render(42);
        assert!(text.contains("compute_gateway_cometbft_subscriptions 1"));
        assert!(text.contains("compute_gateway_subscriptions_lagged_total 1"));
        drop(guard);
        assert!(metrics
            .render(0)
            .contains("compute_gateway_subscriptions 0"));
    }

    #[tokio::test]
    async fn the_endpoint_answers_get_metrics_over_http() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), 1024, 1024).unwrap();
        let metrics = Arc::new(Metrics::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), store, stopped));
        for (request, expect) in [
            ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK"),
            ("GET /other HTTP/1.1\r\n\r\n", "404"),
            ("POST /metrics HTTP/1.1\r\n\r\n", "405"),
        ] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            assert!(reply.starts_with(&format!("HTTP/1.1 {expect}")), "{reply}");
            if expect == "200 OK" {
                assert!(reply.contains("compute_gateway_store_bytes 0"), "{reply}");
            }
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
