//! The gateway's errors and how each maps to a gRPC status.

use compute_proto::BlobId;
use tonic::{Code, Status};

use super::store::StoreError;

/// Why the CometBFT node could not answer.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node could not be reached, or its connection broke.
    #[error("the CometBFT node at {url} is unreachable: {detail}")]
    Unreachable {
        /// The node's RPC URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The node did not answer in time.
    #[error("the CometBFT node at {url} did not answer in time: {detail}")]
    Timeout {
        /// The node's RPC URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The node answered with an RPC error (not an ABCI code).
    #[error("the CometBFT node refused the request: {0}")]
    Refused(String),
    /// The node's RPC server answered with an HTTP error status instead of
    /// a JSON-RPC answer: for a 4xx, something about the request (CometBFT
    /// answers 400 to a body over its `max_body_bytes`, for example).
    #[error("the CometBFT node at {url} answered HTTP {status}{}", http_hint(*.status))]
    Http {
        /// The node's RPC URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
}

/// What an HTTP error status from CometBFT's RPC most likely means.
fn http_hint(status: u16) -> &'static str {
    match status {
        400 => ": the request is malformed or larger than the node's rpc.max_body_bytes (a transaction over max_tx_bytes, or a module over max_module_bytes?)",
        413 => ": the request is larger than the node accepts (rpc.max_body_bytes)",
        429 => ": too many requests",
        500..=599 => ": the node failed",
        _ => "",
    }
}

/// The gRPC code of an HTTP error status from CometBFT's RPC: the
/// client's own errors are not the node being unavailable.
pub fn http_status_code(status: u16) -> Code {
    match status {
        413 | 429 | 431 => Code::ResourceExhausted,
        408 => Code::DeadlineExceeded,
        401 | 403 => Code::PermissionDenied,
        404 | 405 | 501 => Code::Unimplemented,
        400..=499 => Code::InvalidArgument,
        504 => Code::DeadlineExceeded,
        _ => Code::Unavailable,
    }
}

/// Everything a gateway call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A typed call got a transaction carrying another message.
    #[error("{call} expects a signed transaction carrying a {expected} or {expected}s message, but it carries {got}; use BroadcastTx for other messages")]
    WrongMessage {
        /// The gRPC method.
        call: &'static str,
        /// The message kind it relays (and its batch, named with an `s`).
        expected: &'static str,
        /// The kind it got.
        got: &'static str,
    },
    /// A per-client or per-account limit refused the call.
    #[error("{message}")]
    Throttled {
        /// Which limit: `client_requests`, `client_streams` or `account_uploads`.
        limit: &'static str,
        /// What happened and which flag sets the limit.
        message: String,
    },
    /// An upload's signed header is missing, malformed, expired or forged.
    #[error(transparent)]
    Unauthenticated(#[from] compute_proto::UploadError),
    /// A client sent too slowly.
    #[error("{0}")]
    TooSlow(String),
    /// The signer is known, but not allowed to upload here.
    #[error("{0}")]
    PermissionDenied(String),
    /// The blob store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No one has the blob.
    #[error("blob {0} is neither stored here nor at any configured peer gateway")]
    BlobNotFound(BlobId),
    /// The CometBFT node failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl GatewayError {
    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            GatewayError::InvalidArgument(_) | GatewayError::WrongMessage { .. } => {
                Code::InvalidArgument
            }
            GatewayError::Throttled { .. } => Code::ResourceExhausted,
            GatewayError::Unauthenticated(_) => Code::Unauthenticated,
            GatewayError::PermissionDenied(_) => Code::PermissionDenied,
            GatewayError::TooSlow(_) => Code::DeadlineExceeded,
            GatewayError::Store(e) => match e {
                StoreError::TooLarge { .. }
                | StoreError::QuotaExceeded { .. }
                | StoreError::AccountQuotaExceeded { .. } => Code::ResourceExhausted,
                StoreError::HashMismatch { .. } | StoreError::SizeMismatch { .. } => {
                    Code::InvalidArgument
                }
                StoreError::Io { .. } => Code::Internal,
            },
            GatewayError::BlobNotFound(_) => Code::NotFound,
            GatewayError::Node(e) => match e {
                NodeError::Unreachable { .. } => Code::Unavailable,
                NodeError::Timeout { .. } => Code::DeadlineExceeded,
                NodeError::Refused(text) => refused_code(text),
                NodeError::Http { status, .. } => http_status_code(*status),
            },
        }
    }
}

impl GatewayError {
    /// The word `compute_gateway_upload_refusals_total{reason}` counts a
    /// refused upload under.
    pub fn refusal_reason(&self) -> &'static str {
        use compute_proto::UploadError as U;
        match self {
            GatewayError::Unauthenticated(U::Missing) => "unsigned",
            GatewayError::Unauthenticated(U::Expired { .. } | U::TooFarAhead { .. }) => "expired",
            GatewayError::Unauthenticated(_) => "bad_signature",
            GatewayError::PermissionDenied(_) => "not_permitted",
            GatewayError::TooSlow(_) => "too_slow",
            GatewayError::Throttled { limit, .. } => limit,
            GatewayError::Store(StoreError::AccountQuotaExceeded { .. }) => "account_quota",
            GatewayError::Store(StoreError::QuotaExceeded { .. }) => "store_full",
            GatewayError::Store(StoreError::TooLarge { .. }) => "too_large",
            GatewayError::Store(
                StoreError::HashMismatch { .. } | StoreError::SizeMismatch { .. },
            ) => "mismatch",
            GatewayError::Store(StoreError::Io { .. }) => "io",
            GatewayError::Node(_) => "chain_unavailable",
            GatewayError::InvalidArgument(_)
            | GatewayError::WrongMessage { .. }
            | GatewayError::BlobNotFound(_) => "malformed",
        }
    }
}

/// Maps CometBFT's RPC error texts to the closest gRPC code.
fn refused_code(text: &str) -> Code {
    let text = text.to_ascii_lowercase();
    if text.contains("already exists in cache") {
        Code::AlreadyExists
    } else if text.contains("timed out") {
        Code::DeadlineExceeded
    } else if text.contains("mempool is full") {
        Code::Unavailable
    } else if text.contains("too large") {
        Code::InvalidArgument
    } else {
        Code::FailedPrecondition
    }
}

/// The longest status message sent; messages travel in an HTTP/2 header,
/// and some RPC errors carry long traces.
const STATUS_MESSAGE_BYTES_MAX: usize = 1024;

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        let mut message = e.to_string();
        if message.len() > STATUS_MESSAGE_BYTES_MAX {
            let mut end = STATUS_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(end) {
                end = end.saturating_sub(1);
            }
            message.truncate(end);
            message.push_str(" ...");
        }
        Status::new(e.code(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_expected_codes() {
        let cases: Vec<(GatewayError, Code)> = vec![
            (
                GatewayError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                GatewayError::Store(StoreError::TooLarge { max_bytes: 1 }),
                Code::ResourceExhausted,
            ),
            (
                GatewayError::Store(StoreError::HashMismatch {
                    expected: BlobId([1; 32]),
                    actual: BlobId([2; 32]),
                }),
                Code::InvalidArgument,
            ),
            (GatewayError::BlobNotFound(BlobId([0; 32])), Code::NotFound),
            (
                GatewayError::Unauthenticated(compute_proto::UploadError::Missing),
                Code::Unauthenticated,
            ),
            (
                GatewayError::PermissionDenied("x".into()),
                Code::PermissionDenied,
            ),
            (
                GatewayError::Throttled {
                    limit: "client_requests",
                    message: "x".into(),
                },
                Code::ResourceExhausted,
            ),
            (
                GatewayError::Node(NodeError::Refused("tx already exists in cache".into())),
                Code::AlreadyExists,
            ),
            (
                GatewayError::Node(NodeError::Unreachable {
                    url: "u".into(),
                    detail: "d".into(),
                }),
                Code::Unavailable,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn http_client_errors_of_the_node_are_not_unavailable() {
        let http = |status| {
            GatewayError::Node(NodeError::Http {
                url: "http://node".into(),
                status,
            })
        };
        let cases = [
            (400, Code::InvalidArgument),
            (413, Code::ResourceExhausted),
            (429, Code::ResourceExhausted),
            (408, Code::DeadlineExceeded),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (422, Code::InvalidArgument),
            (500, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::DeadlineExceeded),
        ];
        for (status, code) in cases {
            assert_eq!(http(status).code(), code, "HTTP {status}");
            assert_eq!(Status::from(http(status)).code(), code, "HTTP {status}");
        }
        let text = http(400).to_string();
        assert!(
            text.contains("HTTP 400") && text.contains("max_body_bytes"),
            "{text}"
        );
        assert!(
            GatewayError::Node(NodeError::Refused("Tx too large".into())).code()
                == Code::InvalidArgument
        );
    }
}
