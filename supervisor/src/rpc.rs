//! A minimal client for CometBFT's `/status`: one plain-HTTP GET per call,
//! bounded in time and size. No HTTP library is needed for one read-only
//! endpoint, and a hung node (which accepts the connection but never
//! answers) must cost no more than the timeout.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most an answer may hold; `/status` is about 2 KiB.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why an RPC endpoint or an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The URL is not `http://host:port[/path]` (or `tcp://host:port`).
    #[error("bad RPC URL '{0}': expected http://host:port, e.g. http://127.0.0.1:26657")]
    Url(String),
    /// The connection was refused or failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Nothing (or not all) came back in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("the answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The answer is not an HTTP 200 response.
    #[error("bad HTTP answer: {0}")]
    Http(String),
    /// The body is not JSON.
    #[error("the answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON lacks a field or holds a wrong value in it.
    #[error("the answer has no valid {0}")]
    Field(&'static str),
}

/// A CometBFT RPC endpoint reached over plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcEndpoint {
    host: String,
    port: u16,
    base_path: String,
}

impl RpcEndpoint {
    /// The host (a name or an address; IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for RpcEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.base_path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.base_path)
        }
    }
}

impl FromStr for RpcEndpoint {
    type Err = RpcError;

    fn from_str(url: &str) -> Result<Self, RpcError> {
        let bad = || RpcError::Url(url.to_owned());
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority).ok_or_else(bad)?;
        let base_path = path.trim_end_matches('/').to_owned();
        if base_path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        Ok(Self {
            host,
            port,
            base_path,
        })
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

/// Asks `endpoint` for `/status`, within `timeout` overall.
pub async fn status(endpoint: &RpcEndpoint, timeout: Duration) -> Result<NodeStatus, RpcError> {
    let body = match tokio::time::timeout(timeout, get(endpoint, "/status")).await {
        Ok(result) => result?,
        Err(_) => return Err(RpcError::Timeout(timeout)),
    };
    parse_status(&body)
}

async fn get(endpoint: &RpcEndpoint, path: &str) -> Result<Vec<u8>, RpcError> {
    let mut stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(RpcError::Connect)?;
    // HTTP/1.0: the server closes the connection after the answer and sends
    // no chunked encoding (still decoded below, should one come).
    let host = if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    let request = format!(
        "GET {}{} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        endpoint.base_path, path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(RpcError::Io)?;
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(RpcError::Io)?;
        if n == 0 {
            break;
        }
        if answer.len() + n > MAX_RESPONSE_BYTES {
            return Err(RpcError::TooLarge);
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    http_body(&answer)
}

/// The body of a complete HTTP/1.x answer with status 200.
pub fn http_body(answer: &[u8]) -> Result<Vec<u8>, RpcError> {
    let end =
        find(answer, b"\r\n\r\n").ok_or_else(|| RpcError::Http("no end of headers".to_owned()))?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let body = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(RpcError::Http(format!("status line '{status_line}'")));
    }
    if code != "200" {
        return Err(RpcError::Http(format!("status {code}")));
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    if chunked {
        decode_chunked(body)
    } else {
        Ok(body.to_vec())
    }
}

fn decode_chunked(mut body: &[u8]) -> Result<Vec<u8>, RpcError> {
    let bad = |why: &str| RpcError::Http(format!("bad chunked body: {why}"));
    let mut out = Vec::with_capacity(body.len());
    // Each chunk is at least 3 bytes ("0\r\n"), so the body's length bounds
    // the number of chunks.
    for _ in 0..=body.len() {
        let line_end = find(body, b"\r\n").ok_or_else(|| bad("no size line"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size.checked_add(2).is_none_or(|needed| body.len() < needed) {
            return Err(bad("truncated"));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
    Err(bad("too many chunks"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads `result.sync_info` of a `/status` answer.
pub fn parse_status(body: &[u8]) -> Result<NodeStatus, RpcError> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let sync = &value["result"]["sync_info"];
    let height = match &sync["latest_block_height"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or(RpcError::Field("result.sync_info.latest_block_height"))?;
    let catching_up = sync["catching_up"].as_bool().unwrap_or(false);
    Ok(NodeStatus {
        height,
        catching_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e: RpcEndpoint = "http://127.0.0.1:26657".parse().unwrap();
        assert_eq!((e.host(), e.port()), ("127.0.0.1", 26657));
        assert_eq!(e.to_string(), "http://127.0.0.1:26657");
        let e: RpcEndpoint = "tcp://localhost:1/rpc/".parse().unwrap();
        assert_eq!(e.to_string(), "http://localhost:1/rpc");
        let e: RpcEndpoint = "http://[::1]:26657".parse().unwrap();
        assert_eq!(e.host(), "::1");
        assert_eq!(e.to_string(), "http://[::1]:26657");
        for bad in [
            "",
            "127.0.0.1:26657",
            "https://x:1",
            "http://x",
            "http://x:0",
            "http://x:99999",
            "http://:1",
            "http://a:b:1",
            "http://[::1]",
            "http://x:1/a b",
        ] {
            assert!(bad.parse::<RpcEndpoint>().is_err(), "{bad}");
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

    const STATUS: &str = r#"{"jsonrpc":"2.0","id":-1,"result":{"sync_info":{"latest_block_height":"19","catching_up":false}}}"#;

    #[test]
    fn a_plain_and_a_chunked_answer() {
        let plain = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{STATUS}");
        let body = http_body(plain.as_bytes()).unwrap();
        assert_eq!(
            parse_status(&body).unwrap(),
            NodeStatus {
                height: 19,
                catching_up: false
            }
        );
        let (a, b) = STATUS.split_at(10);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};x=y\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        assert_eq!(http_body(chunked.as_bytes()).unwrap(), STATUS.as_bytes());
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        for bad in [
            "",
            "HTTP/1.1 500 Oops\r\n\r\n{}",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
        ] {
            assert!(http_body(bad.as_bytes()).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"result":{"sync_info":{"latest_block_height":"x"}}}"#,
            r#"{"result":{"sync_info":{"latest_block_height":-1}}}"#,
        ] {
            assert!(parse_status(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_silent_server_costs_only_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint: RpcEndpoint = format!("http://127.0.0.1:{port}").parse().unwrap();
        let started = std::time::Instant::now();
        let result = status(&endpoint, Duration::from_millis(300)).await;
        assert!(matches!(result, Err(RpcError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
