//! CometBFT's `/status`, read with `tendermint-rpc`'s [`HttpClient`], each
//! call bounded in time: a hung node (a SIGSTOPped cometbft accepts the
//! connection but never answers) costs no more than the timeout.
//!
//! [`RpcEndpoint`] is a checked URL (what `--rpc` and `--peer-rpc` name);
//! [`StatusClient`] asks one endpoint for `/status` and answers a
//! [`NodeStatus`] or a typed [`RpcError`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tendermint_rpc::error::ErrorDetail;
use tendermint_rpc::{Client, HttpClient, HttpClientUrl};

/// Why an RPC endpoint or an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The URL is not an `http://`, `https://` or `tcp://` URL with a host.
    #[error(
        "bad RPC URL '{url}' ({detail}): expected http://host:port, e.g. http://127.0.0.1:26657"
    )]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the RPC client for {url}: {detail}")]
    Client {
        /// The endpoint.
        url: String,
        /// Why.
        detail: String,
    },
    /// The connection was refused or failed before an answer came.
    #[error("cannot reach {url}: {detail}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What the transport said.
        detail: String,
    },
    /// Nothing (or not all) came back in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not an HTTP 200 response.
    #[error("HTTP status {0}")]
    Http(u16),
    /// The node answered, but not with a usable `/status` (a JSON-RPC
    /// error, or a body that does not parse).
    #[error("bad /status answer: {0}")]
    Answer(String),
}

/// A CometBFT RPC endpoint: `http://host:port[/path]`, `https://...`, or
/// `tcp://host:port` as config.toml writes it (read as `http://`). A URL
/// without a port means the scheme's (80 or 443); `user:password@` is sent
/// as basic authentication and left out of the [`Display`](fmt::Display)
/// form, which is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcEndpoint {
    url: HttpClientUrl,
    text: String,
}

impl fmt::Display for RpcEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for RpcEndpoint {
    type Err = RpcError;

    fn from_str(text: &str) -> Result<Self, RpcError> {
        let bad = |detail: String| RpcError::Url {
            url: text.to_owned(),
            detail,
        };
        // tendermint-rpc reads `tcp` as plain HTTP but keeps the scheme in
        // the URL it requests, which the HTTP client then refuses.
        let http = match text.strip_prefix("tcp://") {
            Some(rest) => format!("http://{rest}"),
            None => text.to_owned(),
        };
        let url: HttpClientUrl = http
            .parse()
            .map_err(|e: tendermint_rpc::Error| bad(describe(&e)))?;
        let parsed = tendermint_rpc::Url::from(url.clone());
        if parsed.port() == 0 {
            return Err(bad("port 0".to_owned()));
        }
        let text = without_credentials(parsed.to_string().trim_end_matches('/'));
        Ok(Self { url, text })
    }
}

/// `url` without a `user:password@` (the endpoint is logged).
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Splits `host:port` or `[v6]:port` (an optional `tcp://` in front is
/// dropped); `None` when it is not that.
pub fn split_host_port(text: &str) -> Option<(String, u16)> {
    let text = text.strip_prefix("tcp://").unwrap_or(text);
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = text.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    (port != 0).then(|| (host.to_owned(), port))
}

/// What `/status` says about a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// `sync_info.latest_block_height`: the block store's height.
    pub height: u64,
    /// `sync_info.catching_up`.
    pub catching_up: bool,
}

/// Asks one endpoint for `/status`, each call within a fixed timeout.
/// Cloning is cheap (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct StatusClient {
    endpoint: RpcEndpoint,
    client: HttpClient,
    timeout: Duration,
}

impl StatusClient {
    /// A client of `endpoint` whose every call ends within `timeout`, from
    /// connecting to the last byte of the answer.
    pub fn new(endpoint: &RpcEndpoint, timeout: Duration) -> Result<Self, RpcError> {
        let client = HttpClient::builder(endpoint.url.clone())
            .timeout(timeout)
            .build()
            .map_err(|e| RpcError::Client {
                url: endpoint.to_string(),
                detail: describe(&e),
            })?;
        Ok(Self {
            endpoint: endpoint.clone(),
            client,
            timeout,
        })
    }

    /// The endpoint asked.
    pub fn endpoint(&self) -> &RpcEndpoint {
        &self.endpoint
    }

    /// Asks for `/status`; fails within the timeout.
    pub async fn status(&self) -> Result<NodeStatus, RpcError> {
        let started = Instant::now();
        // The client's own timeout bounds the request too; this one is the
        // guarantee, whatever the transport does.
        match tokio::time::timeout(self.timeout, self.client.status()).await {
            Ok(Ok(status)) => Ok(NodeStatus {
                height: status.sync_info.latest_block_height.value(),
                catching_up: status.sync_info.catching_up,
            }),
            Ok(Err(error)) => Err(self.classify(&error, started.elapsed())),
            Err(_) => Err(RpcError::Timeout(self.timeout)),
        }
    }

    fn classify(&self, error: &tendermint_rpc::Error, elapsed: Duration) -> RpcError {
        match error.detail() {
            // The transport failed; after the whole timeout that is the
            // client's own timeout, which wins a tie with the one above.
            ErrorDetail::Http(_) if elapsed >= self.timeout => RpcError::Timeout(self.timeout),
            ErrorDetail::Timeout(_) => RpcError::Timeout(self.timeout),
            ErrorDetail::Http(_) => RpcError::Connect {
                url: self.endpoint.to_string(),
                detail: describe(error),
            },
            ErrorDetail::HttpRequestFailed(failed) => RpcError::Http(failed.status.as_u16()),
            _ => RpcError::Answer(describe(error)),
        }
    }
}

/// An error's messages on one line, outermost first (its `Display` is a
/// multi-line report with source locations).
fn describe(error: &tendermint_rpc::Error) -> String {
    format!("{:#}", error.trace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e: RpcEndpoint = "http://127.0.0.1:26657".parse().unwrap();
        assert_eq!(e.to_string(), "http://127.0.0.1:26657");
        let e: RpcEndpoint = "tcp://localhost:1/rpc/".parse().unwrap();
        assert_eq!(e.to_string(), "http://localhost:1/rpc");
        let e: RpcEndpoint = "http://[::1]:26657".parse().unwrap();
        assert_eq!(e.to_string(), "http://[::1]:26657");
        let e: RpcEndpoint = "https://user:pw@rpc.example.com/".parse().unwrap();
        assert_eq!(e.to_string(), "https://rpc.example.com");
        for bad in [
            "",
            "127.0.0.1:26657",
            "ws://x:1",
            "unix:///tmp/rpc.sock",
            "http://x:0",
            "http://x:99999",
            "http://:1",
            "http://a:b:1",
        ] {
            let error = bad.parse::<RpcEndpoint>().expect_err(bad);
            assert!(
                error.to_string().contains("e.g. http://127.0.0.1:26657"),
                "{error}"
            );
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            split_host_port("tcp://127.0.0.1:26658"),
            Some(("127.0.0.1".to_owned(), 26658))
        );
        assert_eq!(
            split_host_port("127.0.0.1:1"),
            Some(("127.0.0.1".to_owned(), 1))
        );
        assert_eq!(split_host_port("unix:///tmp/x.sock"), None);
        assert_eq!(split_host_port("127.0.0.1"), None);
    }

    fn client(port: u16, timeout: Duration) -> StatusClient {
        let endpoint: RpcEndpoint = format!("http://127.0.0.1:{port}").parse().unwrap();
        StatusClient::new(&endpoint, timeout).unwrap()
    }

    /// A SIGSTOPped cometbft: the connection is accepted, no answer comes.
    #[tokio::test]
    async fn a_hung_listener_costs_only_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut streams = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                streams.push(stream);
            }
        });
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let result = client(port, timeout).status().await;
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(RpcError::Timeout(t)) if t == timeout),
            "{result:?}"
        );
        assert!(elapsed >= timeout, "{elapsed:?}");
        assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
        held.abort();
    }

    #[tokio::test]
    async fn a_refused_port_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The listener is dropped: nothing listens there now.
        let timeout = Duration::from_secs(5);
        let started = Instant::now();
        let result = client(port, timeout).status().await;
        assert!(
            matches!(&result, Err(RpcError::Connect { url, .. }) if url.ends_with(&port.to_string())),
            "{result:?}"
        );
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    }
}
