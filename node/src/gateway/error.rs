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
}

/// Everything a gateway call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A typed call got a transaction carrying another message.
    #[error("{call} expects a signed transaction carrying a {expected} message, but it carries {got}; use BroadcastTx for other messages")]
    WrongMessage {
        /// The gRPC method.
        call: &'static str,
        /// The message kind it relays.
        expected: &'static str,
        /// The kind it got.
        got: &'static str,
    },
    /// Too many streams of one kind are open.
    #[error("{0}")]
    Busy(String),
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
            GatewayError::Busy(_) => Code::ResourceExhausted,
            GatewayError::Store(e) => match e {
                StoreError::TooLarge { .. } | StoreError::QuotaExceeded { .. } => {
                    Code::ResourceExhausted
                }
                StoreError::HashMismatch { .. } => Code::InvalidArgument,
                StoreError::Io { .. } => Code::Internal,
            },
            GatewayError::BlobNotFound(_) => Code::NotFound,
            GatewayError::Node(e) => match e {
                NodeError::Unreachable { .. } => Code::Unavailable,
                NodeError::Timeout { .. } => Code::DeadlineExceeded,
                NodeError::Refused(text) => refused_code(text),
            },
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
}
