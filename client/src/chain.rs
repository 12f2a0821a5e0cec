//! A client of one CometBFT node running `compute-abci`, over its JSON-RPC:
//! it learns the chain id, reads queries ([`Query`]), and signs
//! transactions locally and submits them ([`crate::submit`]: the pending
//! nonce, retries of stale nonces, cache hits looked up by hash) and waits
//! for their block. Keys never leave the caller.
//!
//! [`ChainClient::connect_first`] picks one of several nodes: a sender's
//! transactions all go to the same one ([`node_order`]), so that its
//! consecutive nonces meet one mempool.

use std::future::Future;
use std::time::Duration;

use compute_proto::{pb, AccountId, Code, SigningKey, TxBuilder};
use tendermint_rpc::{Client, HttpClient};

use crate::error::ClientError;
use crate::query::{Query, QueryAnswer};
use crate::submit::{self, Included, Sent, SubmitEvent, SubmitOptions, Submitted, TxNode, Wait};

/// How long a query or a status may take.
const QUERY_TIMEOUT_MS: u64 = 30_000;
/// How long a broadcast that waits for its block may take; CometBFT's own
/// `timeout_broadcast_tx_commit` is 10 s by default.
const COMMIT_TIMEOUT_MS: u64 = 60_000;

/// The outcome of a transaction the chain accepted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TxReceipt {
    /// The transaction hash as CometBFT names it (upper-case hex).
    pub hash: String,
    /// The block it is in (0 when only CheckTx has answered yet).
    pub height: u64,
    /// The chain's code: always 0 ([`Code::Ok`]) in a receipt; a refusal is
    /// [`ClientError::TxRejected`].
    pub code: u32,
    /// What the chain logged.
    pub log: String,
}

/// The node's view of the chain head.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// The chain id.
    pub chain_id: String,
    /// The latest block height.
    pub height: u64,
    /// The app hash after that block (upper-case hex, as CometBFT shows it).
    pub app_hash: String,
}

/// A connection to one CometBFT node's RPC. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChainClient {
    rpc: HttpClient,
    url: String,
    chain_id: String,
}

/// The receipt of a transaction CometBFT answered `code` and `log` for, or
/// the chain's refusal.
///
/// # Errors
/// [`ClientError::TxRejected`] or [`ClientError::UnknownCode`] when `code`
/// is not 0.
pub fn receipt(
    code: u32,
    log: String,
    hash: String,
    height: u64,
) -> Result<TxReceipt, ClientError> {
    match Code::from_u32(code) {
        Some(Code::Ok) => Ok(TxReceipt {
            hash,
            height,
            code,
            log,
        }),
        Some(code) => Err(ClientError::TxRejected {
            code,
            log,
            hash,
            height,
        }),
        None => Err(ClientError::UnknownCode {
            what: format!("transaction {hash}"),
            code,
            log,
        }),
    }
}

async fn timed<T>(
    call: &'static str,
    url: &str,
    timeout_ms: u64,
    future: impl Future<Output = Result<T, tendermint_rpc::Error>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ClientError::Node {
            call,
            url: url.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(ClientError::Timeout { call, timeout_ms }),
    }
}

/// The order in which to try `urls`: for a sender, starting at the one
/// its account picks (its first 8 bytes, big-endian, modulo the list's
/// length), so that one sender's transactions stay on one node while it
/// answers, then the next ones in turn; without a sender (reads), in the
/// order given.
#[must_use]
pub fn node_order<'a>(urls: &'a [String], sender: Option<&AccountId>) -> Vec<&'a str> {
    let n = urls.len();
    let start = match (sender, u64::try_from(n)) {
        (Some(id), Ok(len)) if len > 0 => {
            let mut head = [0u8; 8];
            head.copy_from_slice(&id.0[..8]);
            usize::try_from(u64::from_be_bytes(head) % len).unwrap_or(0)
        }
        _ => 0,
    };
    (0..n).map(|i| urls[(start + i) % n].as_str()).collect()
}

/// Classifies a broadcast's transport error: what CometBFT says in words
/// (a cache hit, its wait for the block ending, a full mempool) or a
/// failure of the call.
fn classify(error: &tendermint_rpc::Error, call: &'static str, url: &str, size: usize) -> Sent {
    let text = error.to_string();
    // CometBFT answers a body past its limit with a bare HTTP error.
    let too_large = matches!(
        error.detail(),
        tendermint_rpc::error::ErrorDetail::HttpRequestFailed(r)
            if r.status.as_u16() == 400 || r.status.as_u16() == 413
    ) || text.contains("tx too large");
    if too_large {
        Sent::Final(ClientError::TxTooLarge {
            url: url.to_owned(),
            size_bytes: u64::try_from(size).unwrap_or(u64::MAX),
        })
    } else if text.contains("tx already exists in cache") {
        Sent::AlreadyKnown
    } else if text.contains("timed out waiting for tx to be included in a block")
        || text.contains("txSub was canceled")
    {
        Sent::NotYetIncluded
    } else if text.contains("mempool is full")
        || text.contains("max_subscription_clients")
        || text.contains("max_subscriptions_per_client")
    {
        Sent::Busy(text)
    } else {
        Sent::NoAnswer(ClientError::Node {
            call,
            url: url.to_owned(),
            detail: text,
        })
    }
}

/// A transaction hash as CometBFT takes it: 64 hex characters, upper or
/// lower case, with or without `0x`.
///
/// # Errors
/// [`ClientError::BadAnswer`] naming what is wrong.
pub fn parse_tx_hash(text: &str) -> Result<tendermint::Hash, ClientError> {
    let hex_text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut bytes).map_err(|e| ClientError::BadAnswer {
        what: format!("transaction hash '{text}'"),
        reason: format!("{e}: give the 64 hex characters CometBFT prints"),
    })?;
    Ok(tendermint::Hash::Sha256(bytes))
}

impl ChainClient {
    /// Connects to the first of `urls` (in [`node_order`] for `sender`)
    /// whose `/status` answers; learns the chain id from it unless given.
    /// One URL is [`ChainClient::connect`]: with the chain id given, nothing
    /// is sent until the first call.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`] for a malformed URL; the last node's failure
    /// when none answers.
    pub async fn connect_first(
        urls: &[String],
        sender: Option<&AccountId>,
        chain_id: Option<String>,
    ) -> Result<Self, ClientError> {
        if let [url] = urls {
            return Self::connect(url, chain_id).await;
        }
        let mut last = ClientError::BadUrl {
            url: String::new(),
            detail: "no node URL given".to_owned(),
        };
        for url in node_order(urls, sender) {
            let client = Self::new(url, chain_id.clone().unwrap_or_default())?;
            match client.status().await {
                Ok(status) => {
                    let mut client = client;
                    if chain_id.is_none() {
                        client.chain_id = status.chain_id;
                    }
                    return Ok(client);
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "node unreachable; trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// A client of the node at `url` that signs for `chain_id`; nothing is
    /// sent until the first call.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`].
    pub fn new(url: &str, chain_id: impl Into<String>) -> Result<Self, ClientError> {
        let rpc = HttpClient::new(url).map_err(|e| ClientError::BadUrl {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            rpc,
            url: url.to_owned(),
            chain_id: chain_id.into(),
        })
    }

    /// Connects to `url`; learns the chain id from the node (`/status`)
    /// unless given.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`], and the failure of `/status`.
    pub async fn connect(url: &str, chain_id: Option<String>) -> Result<Self, ClientError> {
        let mut client = Self::new(url, chain_id.clone().unwrap_or_default())?;
        if chain_id.is_none() {
            client.chain_id = client.status().await?.chain_id;
        }
        Ok(client)
    }

    /// The chain id transactions are signed for.
    #[must_use]
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The node's RPC URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying CometBFT RPC client, for calls this crate does not wrap.
    #[must_use]
    pub fn rpc(&self) -> &HttpClient {
        &self.rpc
    }

    /// The node's chain id, latest height and app hash.
    ///
    /// # Errors
    /// [`ClientError::Node`] and [`ClientError::Timeout`].
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let status = timed("status", &self.url, QUERY_TIMEOUT_MS, self.rpc.status()).await?;
        Ok(NodeStatus {
            chain_id: status.node_info.network.to_string(),
            height: status.sync_info.latest_block_height.value(),
            app_hash: status.sync_info.latest_app_hash.to_string(),
        })
    }

    /// Signs `msg` with `key` for this chain, with `nonce` and `fee`.
    #[must_use]
    pub fn sign(&self, key: &SigningKey, nonce: u64, fee: u64, msg: pb::tx_body::Msg) -> Vec<u8> {
        let mut builder = TxBuilder::new(self.chain_id.clone());
        builder.fee = fee;
        builder.sign(key, nonce, msg)
    }

    /// Signs `msg` with `key` (with the node's pending nonce unless given)
    /// and waits until it is in a committed block, as
    /// [`ChainClient::submit_with`] with default options and no observer.
    /// A transaction CheckTx accepted that is not yet seen in a block when
    /// the wait ends has a receipt of height 0.
    ///
    /// # Errors
    /// As [`ChainClient::submit_with`].
    pub async fn submit(
        &self,
        key: &SigningKey,
        msg: pb::tx_body::Msg,
        fee: u64,
        nonce: Option<u64>,
    ) -> Result<TxReceipt, ClientError> {
        let options = SubmitOptions {
            nonce,
            ..SubmitOptions::default()
        };
        Ok(self
            .submit_with(key, msg, fee, &options, &|_| {})
            .await?
            .receipt())
    }

    /// Signs `msg` with `key` and submits it as [`submit::submit`] does:
    /// the node's pending nonce (unless `options` pins one), stale nonces
    /// read again and re-signed, cache hits looked up by hash, bounded
    /// attempts; `observe` hears of every hash before it is sent.
    ///
    /// # Errors
    /// As [`submit::submit`].
    pub async fn submit_with(
        &self,
        key: &SigningKey,
        msg: pb::tx_body::Msg,
        fee: u64,
        options: &SubmitOptions,
        observe: &(dyn Fn(&SubmitEvent) + Send + Sync),
    ) -> Result<Submitted, ClientError> {
        let sign = |nonce| self.sign(key, nonce, fee, msg.clone());
        submit::submit(self, &key.account(), sign, options, observe).await
    }

    /// Sends signed transaction bytes once and waits until they are in a
    /// committed block.
    ///
    /// # Errors
    /// [`ClientError::TxRejected`] when CheckTx or the block refuses it,
    /// [`ClientError::TxTooLarge`] when the node refuses its size,
    /// [`ClientError::TxOutcomeUnknown`] when it may have reached the
    /// mempool but was not seen committed (no answer, CometBFT's wait
    /// ended, the node already held it), [`ClientError::Node`] when the
    /// node could not take it.
    pub async fn broadcast_commit(&self, tx: Vec<u8>) -> Result<TxReceipt, ClientError> {
        let hash = submit::tx_hash(&tx);
        let unknown = |detail: String| ClientError::TxOutcomeUnknown {
            hash: hash.clone(),
            nonce: 0,
            detail,
        };
        match self.send_tx(tx, Wait::Commit).await {
            Sent::Included(i) => receipt(i.code, i.log, hash.clone(), i.height),
            Sent::Refused { code, log } => receipt(code, log, hash.clone(), 0),
            Sent::Accepted | Sent::NotYetIncluded => Err(unknown(
                "accepted into the mempool, not yet seen in a block".to_owned(),
            )),
            Sent::AlreadyKnown => Err(unknown("the node already holds it".to_owned())),
            Sent::Busy(detail) => Err(ClientError::Node {
                call: "broadcast_tx_commit",
                url: self.url.clone(),
                detail,
            }),
            Sent::Final(e) => Err(e),
            Sent::NoAnswer(e) => Err(unknown(e.to_string())),
        }
    }

    /// The committed transaction named `hash` (hex, upper or lower case,
    /// with or without `0x`), from the node's transaction index (`/tx`):
    /// its block and the chain's verdict, or `None` when no committed block
    /// holds it (yet).
    ///
    /// # Errors
    /// [`ClientError::BadAnswer`] for a malformed hash; the node's failure
    /// (its index may be disabled).
    pub async fn lookup_tx(&self, hash: &str) -> Result<Option<Included>, ClientError> {
        let parsed = parse_tx_hash(hash)?;
        match timed(
            "tx",
            &self.url,
            QUERY_TIMEOUT_MS,
            self.rpc.tx(parsed, false),
        )
        .await
        {
            Ok(found) => Ok(Some(Included {
                height: found.height.value(),
                code: found.tx_result.code.value(),
                log: found.tx_result.log,
            })),
            Err(ClientError::Node { detail, .. })
                if detail.contains("not found") && !detail.contains("indexing is disabled") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn send_tx(&self, tx: Vec<u8>, wait: Wait) -> Sent {
        let size = tx.len();
        match wait {
            Wait::Commit => {
                let answer = tokio::time::timeout(
                    Duration::from_millis(COMMIT_TIMEOUT_MS),
                    self.rpc.broadcast_tx_commit(tx),
                )
                .await;
                match answer {
                    Err(_) => Sent::NoAnswer(ClientError::Timeout {
                        call: "broadcast_tx_commit",
                        timeout_ms: COMMIT_TIMEOUT_MS,
                    }),
                    Ok(Err(e)) => classify(&e, "broadcast_tx_commit", &self.url, size),
                    Ok(Ok(result)) if result.check_tx.code.is_err() => Sent::Refused {
                        code: result.check_tx.code.value(),
                        log: result.check_tx.log,
                    },
                    Ok(Ok(result)) => Sent::Included(Included {
                        height: result.height.value(),
                        code: result.tx_result.code.value(),
                        log: result.tx_result.log,
                    }),
                }
            }
            Wait::CheckTx => {
                let answer = tokio::time::timeout(
                    Duration::from_millis(QUERY_TIMEOUT_MS),
                    self.rpc.broadcast_tx_sync(tx),
                )
                .await;
                match answer {
                    Err(_) => Sent::NoAnswer(ClientError::Timeout {
                        call: "broadcast_tx_sync",
                        timeout_ms: QUERY_TIMEOUT_MS,
                    }),
                    Ok(Err(e)) => classify(&e, "broadcast_tx_sync", &self.url, size),
                    Ok(Ok(result)) if result.code.is_err() => Sent::Refused {
                        code: result.code.value(),
                        log: result.log,
                    },
                    Ok(Ok(_)) => Sent::Accepted,
                }
            }
        }
    }
}

impl TxNode for ChainClient {
    fn node_url(&self) -> &str {
        &self.url
    }

    async fn send(&self, tx: Vec<u8>, wait: Wait) -> Sent {
        self.send_tx(tx, wait).await
    }

    async fn lookup(&self, hash: &str) -> Result<Option<Included>, ClientError> {
        self.lookup_tx(hash).await
    }
}

impl Query for ChainClient {
    async fn query_answer(&self, path: &str) -> Result<QueryAnswer, ClientError> {
        let answer = timed(
            "abci_query",
            &self.url,
            QUERY_TIMEOUT_MS,
            self.rpc
                .abci_query(Some(path.to_owned()), Vec::new(), None, false),
        )
        .await?;
        Ok(QueryAnswer {
            code: answer.code.value(),
            log: answer.log,
            value: answer.value,
            height: i64::try_from(answer.height.value()).unwrap_or(i64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_given_for_code_zero_only() {
        let ok = receipt(0, String::new(), "AB".to_owned(), 5).unwrap();
        assert_eq!((ok.height, ok.code), (5, 0));
        assert!(matches!(
            receipt(16, "stored".to_owned(), "AB".to_owned(), 5),
            Err(ClientError::TxRejected {
                code: Code::ModuleExists,
                height: 5,
                ..
            })
        ));
        assert!(matches!(
            receipt(4_000, String::new(), "AB".to_owned(), 0),
            Err(ClientError::UnknownCode { code: 4_000, .. })
        ));
    }

    #[test]
    fn cometbfts_words_are_read_as_what_they_mean() {
        let said = |data: &str| {
            let error = tendermint_rpc::Error::response(tendermint_rpc::ResponseError::new(
                tendermint_rpc::Code::InternalError,
                Some(data.to_owned()),
            ));
            classify(&error, "broadcast_tx_commit", "http://n", 10)
        };
        assert!(matches!(
            said("error on broadcastTxCommit: tx already exists in cache"),
            Sent::AlreadyKnown
        ));
        assert!(matches!(
            said("timed out waiting for tx to be included in a block"),
            Sent::NotYetIncluded
        ));
        assert!(matches!(
            said("mempool is full: number of txs 5000 (max: 5000)"),
            Sent::Busy(_)
        ));
        assert!(matches!(
            said("tx too large. Max size is 1048576, but got 2000000"),
            Sent::Final(ClientError::TxTooLarge { .. })
        ));
        assert!(matches!(said("something else"), Sent::NoAnswer(_)));
    }

    #[test]
    fn a_sender_keeps_to_one_node_and_reads_take_the_first() {
        let urls: Vec<String> = ["a", "b", "c"].iter().map(|u| (*u).to_owned()).collect();
        assert_eq!(node_order(&urls, None), ["a", "b", "c"]);
        let mut id = AccountId([0; 32]);
        id.0[7] = 4; // 4 mod 3 = 1
        assert_eq!(node_order(&urls, Some(&id)), ["b", "c", "a"]);
        assert_eq!(node_order(&urls, Some(&id)), node_order(&urls, Some(&id)));
        // Senders spread over the nodes.
        let firsts: std::collections::BTreeSet<&str> = (0..30u8)
            .map(|i| node_order(&urls, Some(&SigningKey::from_seed([i; 32]).account()))[0])
            .collect();
        assert_eq!(firsts.len(), 3);
        assert!(node_order(&[], Some(&id)).is_empty());
        let one = vec!["only".to_owned()];
        assert_eq!(node_order(&one, Some(&id)), ["only"]);
    }

    #[test]
    fn hashes_are_read_in_either_case_with_or_without_0x() {
        let upper = "AB".repeat(32);
        let parsed = parse_tx_hash(&upper).unwrap();
        assert_eq!(parsed.to_string(), upper);
        assert_eq!(
            parse_tx_hash(&format!("0x{}", upper.to_lowercase())).unwrap(),
            parsed
        );
        assert!(parse_tx_hash("").is_err());
        assert!(parse_tx_hash("AB").is_err());
        assert!(parse_tx_hash(&"ZZ".repeat(32)).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_node_is_a_transient_error() {
        // Nothing listens on loopback port 9 (discard).
        let error = ChainClient::connect("http://127.0.0.1:9", None)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Node { .. }), "{error}");
        assert!(error.is_transient());
        assert!(matches!(
            ChainClient::new("not a url", "c"),
            Err(ClientError::BadUrl { .. })
        ));
        // Of two, the one that answers; none answering is the last failure.
        let dead = vec![
            "http://127.0.0.1:9".to_owned(),
            "http://127.0.0.1:7".to_owned(),
        ];
        let error = ChainClient::connect_first(&dead, None, None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("127.0.0.1:7"), "{error}");
        assert!(matches!(
            ChainClient::connect_first(&["bad url".to_owned()], None, None).await,
            Err(ClientError::BadUrl { .. })
        ));
    }
}
