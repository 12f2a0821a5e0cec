//! `Subscribe`: chain events for one worker or one job, pushed by CometBFT's
//! websocket subscriptions, filtered, deduplicated and forwarded.
//!
//! A filter becomes one CometBFT query per (event kind, `NewBlock` or `Tx`),
//! e.g. `tm.event='NewBlock' AND task_assigned.worker='<hex>'`: events the
//! chain emits in FinalizeBlock itself arrive as `NewBlock`, those of a
//! transaction as `Tx`. CometBFT caps subscriptions per client (a client is
//! one websocket connection; `max_subscriptions_per_client` is 5 by default),
//! so the queries are spread over as many connections as needed.
//!
//! A matching block or transaction is delivered whole, and may be delivered
//! by several queries; only the matching events are forwarded, each once
//! (keyed by height, origin and position). When a connection breaks, all are
//! reopened with exponential backoff, and the blocks committed meanwhile are
//! read through `block_results` so that no event is lost; an event may then
//! be sent twice if it was already forwarded long before (delivery is at
//! least once, so consumers treat events as idempotent).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use compute_proto::{pb, AccountId, JobId};
use tendermint::abci;
use tendermint_rpc::event::{Event, EventData};
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{SubscriptionClient, WebSocketClient};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::{StreamExt, StreamMap};
use tonic::Status;

use super::error::GatewayError;
use super::metrics::Metrics;
use super::relay::{summary, Relay};

/// CometBFT's default `max_subscriptions_per_client`.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: usize = 5;
/// How many forwarded event keys are remembered for deduplication.
const SEEN_EVENTS_MAX: usize = 4096;
/// The most blocks read back after a reconnect.
const CATCH_UP_BLOCKS_MAX: u64 = 1000;
/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The first wait before reconnecting.
const BACKOFF_MIN_MS: u64 = 200;
/// The longest wait between reconnections.
const BACKOFF_MAX_MS: u64 = 10_000;

/// The event kinds streamed to a worker.
const WORKER_KINDS: &[&str] = &["task_assigned", "task_reveal_open"];
/// The event kinds streamed for a job.
const JOB_KINDS: &[&str] = &[
    "task_assigned",
    "task_reveal_open",
    "task_settled",
    "task_failed",
    "job_completed",
    "worker_cheated",
];

/// What a subscriber wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Assignments and reveal openings of one worker key.
    Worker(AccountId),
    /// The progress of one job.
    Job(JobId),
}

impl Filter {
    /// Reads the filter of a `SubscribeRequest`.
    ///
    /// # Errors
    /// [`GatewayError::InvalidArgument`] when no filter is set or its id is
    /// not 32 bytes.
    pub fn from_request(request: &pb::SubscribeRequest) -> Result<Self, GatewayError> {
        use pb::subscribe_request::Filter as F;
        match &request.filter {
            Some(F::Worker(key)) => AccountId::from_slice(key)
                .map(Filter::Worker)
                .map_err(|e| GatewayError::InvalidArgument(format!("worker key: {e}"))),
            Some(F::JobId(id)) => JobId::from_slice(id)
                .map(Filter::Job)
                .map_err(|e| GatewayError::InvalidArgument(format!("job id: {e}"))),
            None => Err(GatewayError::InvalidArgument(
                "set a filter: a worker key or a job id".to_owned(),
            )),
        }
    }

    fn kinds(&self) -> &'static [&'static str] {
        match self {
            Filter::Worker(_) => WORKER_KINDS,
            Filter::Job(_) => JOB_KINDS,
        }
    }

    fn attribute(&self) -> (&'static str, String) {
        match self {
            Filter::Worker(key) => ("worker", key.to_hex()),
            Filter::Job(id) => ("job", id.to_hex()),
        }
    }

    /// The CometBFT queries that together deliver every matching event.
    pub fn queries(&self) -> Vec<Query> {
        let (key, value) = self.attribute();
        let mut out = Vec::with_capacity(self.kinds().len().saturating_mul(2));
        for kind in self.kinds() {
            for event_type in [EventType::NewBlock, EventType::Tx] {
                out.push(Query::from(event_type).and_eq(format!("{kind}.{key}"), value.clone()));
            }
        }
        out
    }

    /// Whether an event of `kind` with these attributes is one to forward.
    pub fn matches(&self, event: &abci::Event) -> bool {
        let (key, value) = self.attribute();
        self.kinds().contains(&event.kind.as_str())
            && event.attributes.iter().any(|a| {
                a.key_bytes() == key.as_bytes()
                    && a.value_bytes().eq_ignore_ascii_case(value.as_bytes())
            })
    }
}

/// Where in a block an event was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Origin {
    /// FinalizeBlock's own events.
    Block,
    /// The transaction at this index.
    Tx(u64),
    /// A transaction whose index was not reported, by the hash of its bytes.
    TxBytes([u8; 32]),
}

/// Remembers the most recent forwarded events, to drop repeats.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<(i64, Origin, usize)>,
    order: VecDeque<(i64, Origin, usize)>,
}

impl Seen {
    /// Records `key`; false when it was already there.
    fn insert(&mut self, key: (i64, Origin, usize)) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > SEEN_EVENTS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// The `ChainEvent` of an ABCI event.
pub fn chain_event(height: i64, event: &abci::Event) -> pb::ChainEvent {
    pb::ChainEvent {
        height,
        kind: event.kind.clone(),
        attributes: event
            .attributes
            .iter()
            .map(|a| pb::EventAttribute {
                key: String::from_utf8_lossy(a.key_bytes()).into_owned(),
                value: String::from_utf8_lossy(a.value_bytes()).into_owned(),
            })
            .collect(),
    }
}

/// The websocket URL of the RPC at `rpc_url` (`http://h:p` becomes `ws://h:p/websocket`).
pub fn websocket_url(rpc_url: &str) -> String {
    let trimmed = rpc_url.trim_end_matches('/');
    let rest = if let Some(rest) = trimmed.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("tcp://") {
        format!("ws://{rest}")
    } else {
        trimmed.to_owned()
    };
    if rest.ends_with("/websocket") {
        rest
    } else {
        format!("{rest}/websocket")
    }
}

/// One websocket connection; closed when dropped.
struct Connection {
    client: Option<WebSocketClient>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close();
        }
        self.driver.abort();
    }
}

/// The subscriptions of one `Subscribe` call.
type Streams = StreamMap<usize, tendermint_rpc::Subscription>;

async fn connect(ws_url: &str, queries: &[Query]) -> Result<(Vec<Connection>, Streams), String> {
    let mut connections = Vec::new();
    let mut streams = StreamMap::new();
    for (group, chunk) in queries.chunks(SUBSCRIPTIONS_PER_CONNECTION_MAX).enumerate() {
        let (client, driver) = WebSocketClient::new(ws_url)
            .await
            .map_err(|e| format!("connect to {ws_url}: {}", summary(&e)))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = driver.run().await {
                tracing::debug!(error = %e, "websocket driver stopped");
            }
        });
        let connection = Connection {
            client: Some(client),
            driver,
        };
        for (i, query) in chunk.iter().enumerate() {
            let client = connection
                .client
                .as_ref()
                .ok_or_else(|| "connection closed".to_owned())?;
            let subscription = client
                .subscribe(query.clone())
                .await
                .map_err(|e| format!("subscribe to {query}: {}", summary(&e)))?;
            let key = group
                .saturating_mul(SUBSCRIPTIONS_PER_CONNECTION_MAX)
                .saturating_add(i);
            streams.insert(key, subscription);
        }
        connections.push(connection);
    }
    Ok((connections, streams))
}

/// Streams events matching `filter` into `out` until the receiver is dropped.
pub struct Subscriber {
    /// Where the subscriber listens.
    pub ws_url: String,
    /// For catching up after a reconnect.
    pub relay: Relay,
    /// What to forward.
    pub filter: Filter,
    /// The gRPC stream's sender.
    pub out: mpsc::Sender<Result<pb::ChainEvent, Status>>,
    /// Counters.
    pub metrics: std::sync::Arc<Metrics>,
    /// Told once the first connection is subscribed (or why it could not be).
    pub ready: Option<oneshot::Sender<Result<(), String>>>,
}

struct State {
    seen: Seen,
    /// Every matching event at this height or below has been forwarded.
    synced_height: Option<u64>,
}

impl Subscriber {
    /// Runs until the client goes away; reconnects with backoff on failure.
    /// When the very first connection fails, reports it through `ready` and
    /// stops, so that the caller can answer with an error instead of a stream.
    pub async fn run(mut self) {
        let queries = self.filter.queries();
        let mut state = State {
            seen: Seen::default(),
            synced_height: None,
        };
        let mut backoff_ms = BACKOFF_MIN_MS;
        // A second handle only to notice the client leaving.
        let watcher = self.out.clone();
        loop {
            let outcome = tokio::select! {
                _ = watcher.closed() => return,
                outcome = self.session(&queries, &mut state, &mut backoff_ms) => outcome,
            };
            match outcome {
                Ok(()) => return,
                Err(why) if self.ready.is_some() => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Err(why));
                    }
                    return;
                }
                Err(why) => {
                    tracing::warn!(filter = ?self.filter, %why, backoff_ms, "subscription lost; reconnecting");
                    self.metrics.subscription_reconnect();
                }
            }
            tokio::select! {
                _ = watcher.closed() => return,
                _ = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            }
            backoff_ms = backoff_ms.saturating_mul(2).min(BACKOFF_MAX_MS);
        }
    }

    /// One connection's life: subscribe, catch up, forward. `Ok` means the
    /// client went away; `Err` says why the connection must be reopened.
    async fn session(
        &mut self,
        queries: &[Query],
        state: &mut State,
        backoff_ms: &mut u64,
    ) -> Result<(), String> {
        let (_connections, mut streams) = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            connect(&self.ws_url, queries),
        )
        .await
        .map_err(|_| format!("subscribing at {} timed out", self.ws_url))??;
        // Subscribed first, then the height read: a block above it arrives
        // through the subscriptions, one at or below it through the catch-up.
        let now = self
            .relay
            .latest_height()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(synced) = state.synced_height {
            self.catch_up(synced, now, state).await?;
        }
        state.synced_height = Some(state.synced_height.map_or(now, |s| s.max(now)));
        *backoff_ms = BACKOFF_MIN_MS;
        tracing::debug!(filter = ?self.filter, height = now, "subscribed");
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        loop {
            let Some((_, item)) = streams.next().await else {
                return Err("every subscription ended".to_owned());
            };
            let event = item.map_err(|e| format!("subscription error: {}", summary(&e)))?;
            if !self.forward_rpc_event(&event, state).await {
                return Ok(());
            }
        }
    }

    /// Reads blocks `synced + 1 ..= now` (at most the last
    /// [`CATCH_UP_BLOCKS_MAX`]) and forwards their matching events.
    async fn catch_up(&self, synced: u64, now: u64, state: &mut State) -> Result<(), String> {
        let mut from = synced.saturating_add(1);
        if now.saturating_sub(from) >= CATCH_UP_BLOCKS_MAX {
            let skipped_to = now.saturating_sub(CATCH_UP_BLOCKS_MAX).saturating_add(1);
            tracing::warn!(
                from,
                skipped_to,
                "subscription was down too long; events before the last {CATCH_UP_BLOCKS_MAX} blocks are not replayed"
            );
            from = skipped_to;
        }
        for height in from..=now {
            let block = self
                .relay
                .block_events(height)
                .await
                .map_err(|e| e.to_string())?;
            if !self
                .forward(block.height, Origin::Block, &block.block, state)
                .await
            {
                return Ok(());
            }
            for (index, events) in block.txs.iter().enumerate() {
                let origin = Origin::Tx(u64::try_from(index).unwrap_or(u64::MAX));
                if !self.forward(block.height, origin, events, state).await {
                    return Ok(());
                }
            }
            state.synced_height = Some(height);
        }
        Ok(())
    }

    /// Forwards the matching events of a websocket event; false when the
    /// client went away.
    async fn forward_rpc_event(&self, event: &Event, state: &mut State) -> bool {
        let (height, origin, events) = match &event.data {
            EventData::NewBlock {
                block,
                result_finalize_block,
                ..
            } => {
                let Some(block) = block else {
                    tracing::warn!("NewBlock event without a block; skipped");
                    return true;
                };
                let events = result_finalize_block
                    .as_ref()
                    .map(|r| r.events.as_slice())
                    .unwrap_or_default();
                let height = i64::try_from(block.header.height.value()).unwrap_or(i64::MAX);
                (height, Origin::Block, events)
            }
            EventData::Tx { tx_result } => {
                let origin = match tx_result.index.and_then(|i| u64::try_from(i).ok()) {
                    Some(index) => Origin::Tx(index),
                    None => Origin::TxBytes(compute_proto::sha3_256(&tx_result.tx)),
                };
                (tx_result.height, origin, tx_result.result.events.as_slice())
            }
            other => {
                tracing::debug!(?other, "unexpected event data; skipped");
                return true;
            }
        };
        let alive = self.forward(height, origin, events, state).await;
        if let Ok(h) = u64::try_from(height) {
            // CometBFT publishes blocks in order: every earlier height is done.
            let done = h.saturating_sub(1);
            state.synced_height = Some(state.synced_height.map_or(done, |s| s.max(done)));
        }
        alive
    }

    async fn forward(
        &self,
        height: i64,
        origin: Origin,
        events: &[abci::Event],
        state: &mut State,
    ) -> bool {
        for (position, event) in events.iter().enumerate() {
            if !self.filter.matches(event) || !state.seen.insert((height, origin, position)) {
                continue;
            }
            if self.out.send(Ok(chain_event(height, event))).await.is_err() {
                return false;
            }
            self.metrics.subscription_event();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, attributes: &[(&str, &str)]) -> abci::Event {
        abci::Event::new(
            kind,
            attributes
                .iter()
                .map(|(k, v)| abci::EventAttribute::from((*k, *v, true))),
        )
    }

    #[test]
    fn a_worker_filter_matches_its_assignments_and_reveals_only() {
        let me = AccountId([0xab; 32]);
        let other = AccountId([0xcd; 32]);
        let filter = Filter::Worker(me);
        let mine = me.to_hex();
        assert!(filter.matches(&event("task_assigned", &[("job", "00"), ("worker", &mine)])));
        assert!(filter.matches(&event("task_reveal_open", &[("worker", &mine)])));
        assert!(!filter.matches(&event("task_assigned", &[("worker", &other.to_hex())])));
        assert!(!filter.matches(&event("task_settled", &[("worker", &mine)])));
        assert!(!filter.matches(&event("task_assigned", &[("job", &mine)])));
    }

    #[test]
    fn a_job_filter_matches_every_progress_event_of_its_job() {
        let job = JobId([7; 32]);
        let filter = Filter::Job(job);
        for kind in JOB_KINDS {
            assert!(
                filter.matches(&event(kind, &[("job", &job.to_hex())])),
                "{kind}"
            );
        }
        assert!(!filter.matches(&event("transfer", &[("job", &job.to_hex())])));
        assert!(!filter.matches(&event("task_settled", &[("job", &JobId([8; 32]).to_hex())])));
    }

    #[test]
    fn queries_cover_block_and_tx_events_of_every_kind() {
        let worker = AccountId([1; 32]);
        let queries: Vec<String> = Filter::Worker(worker)
            .queries()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(queries.len(), 4);
        assert!(queries.contains(&format!(
            "tm.event = 'NewBlock' AND task_assigned.worker = '{worker}'"
        )));
        assert!(queries.contains(&format!(
            "tm.event = 'Tx' AND task_reveal_open.worker = '{worker}'"
        )));
        assert_eq!(Filter::Job(JobId([2; 32])).queries().len(), 12);
    }

    #[test]
    fn filters_are_read_from_requests_and_checked() {
        use pb::subscribe_request::Filter as F;
        let ok = pb::SubscribeRequest {
            filter: Some(F::JobId(vec![3; 32])),
        };
        assert_eq!(
            Filter::from_request(&ok).unwrap(),
            Filter::Job(JobId([3; 32]))
        );
        for bad in [
            pb::SubscribeRequest { filter: None },
            pb::SubscribeRequest {
                filter: Some(F::Worker(vec![1; 31])),
            },
        ] {
            assert!(matches!(
                Filter::from_request(&bad),
                Err(GatewayError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn repeats_are_dropped_and_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.insert((5, Origin::Block, 0)));
        assert!(!seen.insert((5, Origin::Block, 0)));
        assert!(seen.insert((5, Origin::Tx(0), 0)));
        for i in 0..(SEEN_EVENTS_MAX * 2) {
            seen.insert((6, Origin::Block, i));
        }
        assert_eq!(seen.set.len(), SEEN_EVENTS_MAX);
        assert_eq!(seen.order.len(), SEEN_EVENTS_MAX);
    }

    #[test]
    fn websocket_urls_are_derived_from_rpc_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:26657"),
            "ws://127.0.0.1:26657/websocket"
        );
        assert_eq!(
            websocket_url("https://127.0.0.1:26657/"),
            "wss://127.0.0.1:26657/websocket"
        );
        assert_eq!(
            websocket_url("ws://127.0.0.1:1/websocket"),
            "ws://127.0.0.1:1/websocket"
        );
    }
}
