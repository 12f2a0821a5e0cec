//! Why a call failed: one error type for every transport, with the chain's
//! stable result codes ([`Code`]) where the chain answered with one.

use compute_proto::{BlobId, Code};

/// Why a call to a gateway or a CometBFT node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not usable.
    #[error("URL '{url}' is not valid: {detail}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A gateway call answered a gRPC error (or the gateway could not be reached).
    #[error("gateway {call} failed: {code:?}: {message}")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message (at most 500 characters).
        message: String,
    },
    /// A CometBFT RPC call failed (or the node could not be reached).
    #[error("CometBFT {call} at {url} failed: {detail}")]
    Node {
        /// The call.
        call: &'static str,
        /// The node's RPC URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A call took longer than its limit.
    #[error("{call} took longer than {timeout_ms} ms")]
    Timeout {
        /// The call.
        call: &'static str,
        /// The limit.
        timeout_ms: u64,
    },
    /// The queried record does not exist ([`Code::NotFound`]).
    #[error("not found: {path}: {log}")]
    NotFound {
        /// The query path.
        path: String,
        /// The chain's explanation.
        log: String,
    },
    /// The chain refused a query with a code other than [`Code::NotFound`].
    #[error("query {path} refused with code {} ({}): {log}", .code.value(), .code.name())]
    QueryRefused {
        /// The query path.
        path: String,
        /// The chain's code.
        code: Code,
        /// The chain's explanation.
        log: String,
    },
    /// The chain refused a transaction, in CheckTx (`height` 0) or in its block.
    #[error("transaction {hash} refused with code {} ({}): {log}", .code.value(), .code.name())]
    TxRejected {
        /// The chain's code.
        code: Code,
        /// The chain's explanation, which says what to do.
        log: String,
        /// The transaction hash as CometBFT names it (upper-case hex).
        hash: String,
        /// The block it was refused in, 0 when CheckTx refused it.
        height: u64,
    },
    /// A transaction was sent, and may have reached a mempool, but whether
    /// it lands is not known: sending a new one could make both land.
    #[error("transaction {hash} (nonce {nonce}) was sent but its outcome is not known: {detail}; look it up by its hash (the node's /tx?hash=0x{hash})")]
    TxOutcomeUnknown {
        /// The transaction hash as CometBFT names it (upper-case hex).
        hash: String,
        /// Its nonce.
        nonce: u64,
        /// What happened.
        detail: String,
    },
    /// The chain answered with a code this client does not know (a newer chain?).
    #[error("{what} answered code {code}, which this client does not know: {log}")]
    UnknownCode {
        /// The query path or transaction.
        what: String,
        /// The raw code.
        code: u32,
        /// The chain's explanation.
        log: String,
    },
    /// The node refused a transaction for its size before reading it.
    #[error("the node at {url} refused the {size_bytes}-byte transaction; it may be larger than the chain accepts (max_tx_bytes in /params, rpc.max_body_bytes of the node)")]
    TxTooLarge {
        /// The node's RPC URL.
        url: String,
        /// The transaction's size.
        size_bytes: u64,
    },
    /// An answer did not have the expected shape.
    #[error("unexpected answer to {what}: {reason}")]
    BadAnswer {
        /// What was asked.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob's bytes do not hash to its id.
    #[error("blob {expected} arrived with bytes that hash to {actual}; refused")]
    BlobMismatch {
        /// The id asked for.
        expected: BlobId,
        /// The hash of what arrived.
        actual: BlobId,
    },
    /// A query answer could not be verified against a light-client header
    /// (see [`crate::verified`]); the detail names the node and its lie.
    #[error("{detail}")]
    Unverified {
        /// What failed.
        detail: String,
    },
    /// A blob is larger than the caller accepts; reading stopped there.
    #[error("blob {id} is larger than the {max_bytes} bytes accepted; the download was stopped")]
    BlobTooLarge {
        /// The blob.
        id: BlobId,
        /// The caller's bound.
        max_bytes: u64,
    },
}

/// The longest gRPC status message kept in an error.
const STATUS_MESSAGE_CHARS_MAX: usize = 500;

impl ClientError {
    /// The error of a gRPC `call` that answered `status`.
    #[must_use]
    pub fn rpc(call: &'static str, status: &tonic::Status) -> Self {
        ClientError::Rpc {
            call,
            code: status.code(),
            message: status
                .message()
                .chars()
                .take(STATUS_MESSAGE_CHARS_MAX)
                .collect(),
        }
    }

    /// Whether trying again later may succeed (the gateway or its node was
    /// unreachable, busy or slow, or served a damaged copy), as opposed to a
    /// definite answer.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
                    | tonic::Code::DataLoss
            ),
            ClientError::Node { .. } | ClientError::Timeout { .. } => true,
            // A damaged copy on the gateway is removed there; asking again
            // may find a good one.
            ClientError::BlobMismatch { .. } => true,
            _ => false,
        }
    }

    /// The gRPC status code, when a gateway call answered one.
    #[must_use]
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The chain's result code, when the chain answered one.
    #[must_use]
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::NotFound { .. } => Some(Code::NotFound),
            ClientError::QueryRefused { code, .. } | ClientError::TxRejected { code, .. } => {
                Some(*code)
            }
            _ => None,
        }
    }

    /// Whether a query found no such record.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }

    /// The hash of the transaction the error is about, when one was signed
    /// and sent (upper-case hex, as CometBFT names it).
    #[must_use]
    pub fn tx_hash(&self) -> Option<&str> {
        match self {
            ClientError::TxRejected { hash, .. } | ClientError::TxOutcomeUnknown { hash, .. } => {
                Some(hash)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_and_busy_gateways_are_transient_refusals_are_not() {
        let rpc = |code| ClientError::rpc("Query", &tonic::Status::new(code, "x"));
        assert!(rpc(tonic::Code::Unavailable).is_transient());
        assert!(rpc(tonic::Code::ResourceExhausted).is_transient());
        assert!(!rpc(tonic::Code::InvalidArgument).is_transient());
        assert!(!rpc(tonic::Code::NotFound).is_transient());
        let not_found = ClientError::NotFound {
            path: "/worker/x".to_owned(),
            log: String::new(),
        };
        assert!(!not_found.is_transient());
        assert!(not_found.is_not_found());
        assert_eq!(not_found.code(), Some(Code::NotFound));
        assert_eq!(
            rpc(tonic::Code::DataLoss).grpc_code(),
            Some(tonic::Code::DataLoss)
        );
    }

    #[test]
    fn a_refusal_names_its_code_by_number_and_name() {
        let refused = ClientError::TxRejected {
            code: Code::NonceGap,
            log: "send nonce 3".to_owned(),
            hash: "AB".to_owned(),
            height: 0,
        };
        assert_eq!(
            refused.to_string(),
            "transaction AB refused with code 7 (NonceGap): send nonce 3"
        );
        assert!(!refused.is_transient());
        assert_eq!(refused.code(), Some(Code::NonceGap));
    }

    #[test]
    fn long_status_messages_are_cut() {
        let status = tonic::Status::internal("x".repeat(10_000));
        let ClientError::Rpc { message, .. } = ClientError::rpc("GetBlob", &status) else {
            panic!("an Rpc error");
        };
        assert_eq!(message.len(), STATUS_MESSAGE_CHARS_MAX);
    }
}
