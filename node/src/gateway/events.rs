//! `Subscribe`: chain events for one worker or one job, fanned out in
//! process from ONE CometBFT websocket subscription shared by every
//! subscriber.
//!
//! The [`Hub`] holds one websocket connection with one subscription,
//! `tm.event='NewBlock'`. Since CometBFT 0.38 a `NewBlock` event carries the
//! whole `FinalizeBlock` result, i.e. the block's own events and every
//! transaction's, so this single query sees every event any filter can
//! match, whatever the number of subscribers and however many distinct
//! filters they use (CometBFT allows 5 subscriptions per client and 100
//! clients by default; per-filter queries would run out of both). The hub
//! keeps only the event kinds some filter (or the retention tracker) can
//! match, and publishes each
//! block that has any into a `tokio::sync::broadcast` ring of
//! [`BLOCKS_BUFFERED`] blocks; every subscriber reads the ring with its own
//! cursor, filters by worker or job, and forwards into its own bounded gRPC
//! buffer. Publishing never waits for a subscriber, so a slow one cannot
//! hold up the others: once it falls more than [`BLOCKS_BUFFERED`] blocks
//! behind, its stream ends with `RESOURCE_EXHAUSTED` (after the events
//! already buffered for it) and it must subscribe again and reconcile
//! through `Query`.
//!
//! Each height is published once, in order. When the connection breaks it
//! is reopened with exponential backoff with jitter (`compute_client`'s
//! [`Backoff`]), and the blocks committed meanwhile
//! are read through `block_results` (at most the last
//! [`CATCH_UP_BLOCKS_MAX`]) and published before live blocks, so that no
//! event is lost in a short outage; a gap in the live heights is filled the
//! same way.

use std::sync::Arc;
use std::time::Duration;

use compute_client::Backoff;
use compute_proto::{pb, AccountId, JobId};
use tendermint::abci;
use tendermint_rpc::event::EventData;
use tendermint_rpc::query::{EventType, Query};
use tendermint_rpc::{SubscriptionClient, WebSocketClient};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Status;

use super::error::GatewayError;
use super::metrics::Metrics;
use super::relay::{summary, Relay};

/// How many published blocks (those with events some filter can match) a
/// subscriber may fall behind before its stream is ended.
pub const BLOCKS_BUFFERED: usize = 1024;
/// The most blocks read back after a reconnect.
pub const CATCH_UP_BLOCKS_MAX: u64 = 1000;
/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The first ceiling of the wait before reconnecting (the wait is drawn
/// from its upper half).
const BACKOFF_MIN_MS: u64 = 200;
/// The longest wait between reconnections.
const BACKOFF_MAX_MS: u64 = 10_000;

/// The event kinds streamed to a worker.
const WORKER_KINDS: &[&str] = &["task_assigned", "task_reveal_open"];
/// The event kinds streamed to a watcher.
const SETTLEMENT_KINDS: &[&str] = &["task_settled"];
/// The event kinds streamed for a job: every step a progress display counts.
const JOB_KINDS: &[&str] = &[
    "task_assigned",
    "task_committed",
    "task_declined",
    "task_reveal_open",
    "task_revealed",
    "task_settled",
    "task_failed",
    "job_completed",
    "job_cancelled",
    "worker_cheated",
];

/// Whether the hub publishes events of `kind`: every kind a filter can
/// match, and `job_posted`, from which the gateway learns which blobs a job
/// needs (see `retention`).
fn published(kind: &str) -> bool {
    kind == "job_posted" || JOB_KINDS.contains(&kind)
}

/// What a subscriber wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Assignments and reveal openings of one worker key.
    Worker(AccountId),
    /// The progress of one job.
    Job(JobId),
    /// Every task settlement, of every job.
    Settlements,
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
            Some(F::Settlements(true)) => Ok(Filter::Settlements),
            Some(F::Settlements(false)) | None => Err(GatewayError::InvalidArgument(
                "set a filter: a worker key, a job id, or settlements = true".to_owned(),
            )),
        }
    }

    fn kinds(&self) -> &'static [&'static str] {
        match self {
            Filter::Worker(_) => WORKER_KINDS,
            Filter::Job(_) => JOB_KINDS,
            Filter::Settlements => SETTLEMENT_KINDS,
        }
    }

    /// The attribute an event must carry, if any.
    fn attribute(&self) -> Option<(&'static str, String)> {
        match self {
            Filter::Worker(key) => Some(("worker", key.to_hex())),
            Filter::Job(id) => Some(("job", id.to_hex())),
            Filter::Settlements => None,
        }
    }

    /// Whether an event of `kind` with these attributes is one to forward.
    pub fn matches(&self, event: &abci::Event) -> bool {
        if !self.kinds().contains(&event.kind.as_str()) {
            return false;
        }
        let Some((key, value)) = self.attribute() else {
            return true;
        };
        event.attributes.iter().any(|a| {
            a.key_bytes() == key.as_bytes()
                && a.value_bytes().eq_ignore_ascii_case(value.as_bytes())
        })
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

/// The relevant events of one committed block, as published to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The block's height.
    pub height: i64,
    /// FinalizeBlock's own events, then each transaction's, in block order;
    /// only the kinds some filter can match.
    pub events: Vec<abci::Event>,
}

/// The state of the hub's link to CometBFT.
#[derive(Clone, Debug, Default)]
pub struct Link {
    /// Subscribed and live.
    pub connected: bool,
    /// Connection attempts finished so far (successful or not).
    pub attempts: u64,
    /// Why the last attempt or session failed.
    pub error: Option<String>,
}

/// The one CometBFT subscription of a gateway, fanned out to every
/// `Subscribe` stream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    ws_url: String,
    blocks: broadcast::Sender<Arc<Published>>,
    link: watch::Sender<Link>,
    /// Asks the hub to retry now rather than after its backoff.
    nudge: Notify,
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

/// The query of the hub's only subscription.
pub fn hub_query() -> Query {
    Query::from(EventType::NewBlock)
}

impl Hub {
    /// A hub that is not connected to anything; [`Hub::start`] runs one.
    pub(crate) fn detached(ws_url: &str) -> Self {
        let (blocks, _) = broadcast::channel(BLOCKS_BUFFERED);
        let (link, _) = watch::channel(Link::default());
        Self {
            inner: Arc::new(HubInner {
                ws_url: ws_url.to_owned(),
                blocks,
                link,
                nudge: Notify::new(),
            }),
        }
    }

    /// Starts the hub's connection task, which runs until `shutdown` turns
    /// true.
    pub fn start(
        ws_url: &str,
        relay: Relay,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Self {
        let hub = Self::detached(ws_url);
        let runner = hub.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = runner.run(&relay, &metrics) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            metrics.cometbft_subscriptions_set(0);
        });
        hub
    }

    /// The hub's current link state.
    pub fn link(&self) -> Link {
        self.inner.link.borrow().clone()
    }

    /// A cursor on the published blocks, answered once the hub is
    /// subscribed, so that a client that subscribes and then sends a
    /// transaction sees its events. When the hub is down it is asked to
    /// retry at once, and the outcome of that attempt is answered.
    ///
    /// # Errors
    /// Why CometBFT cannot be subscribed to.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Published>>, String> {
        // The cursor first: every block published from now on reaches it,
        // including those caught up after a reconnect.
        let blocks = self.inner.blocks.subscribe();
        let mut link = self.inner.link.subscribe();
        let before = link.borrow_and_update().clone();
        if before.connected {
            return Ok(blocks);
        }
        self.inner.nudge.notify_one();
        let wait = link.wait_for(|l| l.connected || l.attempts > before.attempts);
        let outcome = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS.saturating_mul(2)),
            wait,
        )
        .await;
        match outcome {
            Ok(Ok(l)) if l.connected => Ok(blocks),
            Ok(Ok(l)) => Err(l
                .error
                .clone()
                .unwrap_or_else(|| "not subscribed".to_owned())),
            Ok(Err(_)) => Err("the gateway is shutting down".to_owned()),
            Err(_) => Err(format!(
                "subscribing at {} did not finish in time",
                self.inner.ws_url
            )),
        }
    }

    /// The number of `Subscribe` streams reading the published blocks.
    pub fn receivers(&self) -> usize {
        self.inner.blocks.receiver_count()
    }

    /// Keeps the block's events that some filter can match and publishes
    /// them if there are any.
    pub(crate) fn publish<'a>(
        &self,
        height: i64,
        block: &'a [abci::Event],
        txs: impl Iterator<Item = &'a [abci::Event]>,
    ) {
        let events: Vec<abci::Event> = block
            .iter()
            .chain(txs.flatten())
            .filter(|e| published(e.kind.as_str()))
            .cloned()
            .collect();
        if events.is_empty() {
            return;
        }
        // An error only means that nobody listens right now.
        let _ = self
            .inner
            .blocks
            .send(Arc::new(Published { height, events }));
    }

    pub(crate) fn set_link(&self, connected: bool, attempt_done: bool, error: Option<String>) {
        self.inner.link.send_modify(|l| {
            l.connected = connected;
            if attempt_done {
                l.attempts = l.attempts.saturating_add(1);
            }
            l.error = error;
        });
    }

    /// Keeps the subscription up: reconnects with backoff, forever.
    async fn run(&self, relay: &Relay, metrics: &Metrics) {
        // Every event at this height or below has been published.
        let mut synced: Option<u64> = None;
        let mut backoff = Backoff::new(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
        loop {
            let why = self
                .session(relay, metrics, &mut synced, &mut backoff)
                .await;
            metrics.cometbft_subscriptions_set(0);
            let was_connected = self.inner.link.borrow().connected;
            self.set_link(false, !was_connected, Some(why.clone()));
            if was_connected {
                metrics.subscription_reconnect();
            }
            let delay = backoff.next_delay();
            tracing::warn!(ws = %self.inner.ws_url, %why, ?delay, "CometBFT subscription lost; reconnecting");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = async {
                    // A new subscriber is waiting: retry soon, not later.
                    self.inner.nudge.notified().await;
                    tokio::time::sleep(Duration::from_millis(BACKOFF_MIN_MS)).await;
                } => {}
            }
        }
    }

    /// One connection's life: subscribe, catch up, publish. Answers why it
    /// ended.
    async fn session(
        &self,
        relay: &Relay,
        metrics: &Metrics,
        synced: &mut Option<u64>,
        backoff: &mut Backoff,
    ) -> String {
        let ws_url = self.inner.ws_url.clone();
        let connecting = async {
            let (client, driver) = WebSocketClient::new(ws_url.as_str())
                .await
                .map_err(|e| format!("connect to {ws_url}: {}", summary(&e)))?;
            let driver = tokio::spawn(async move {
                if let Err(e) = driver.run().await {
                    tracing::debug!(error = %e, "websocket driver stopped");
                }
            });
            let subscription = client
                .subscribe(hub_query())
                .await
                .map_err(|e| format!("subscribe to {}: {}", hub_query(), summary(&e)))?;
            Ok::<_, String>((
                Connection {
                    client: Some(client),
                    driver,
                },
                subscription,
            ))
        };
        let connected =
            tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await;
        let (_connection, mut subscription) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(why)) => return why,
            Err(_) => return format!("subscribing at {ws_url} timed out"),
        };
        metrics.cometbft_subscriptions_set(1);
        // Subscribed first, then the height read: a block above it arrives
        // through the subscription, one at or below it through the catch-up.
        let now = match relay.latest_height().await {
            Ok(now) => now,
            Err(e) => return e.to_string(),
        };
        if let Some(done) = *synced {
            if let Err(why) = self.catch_up(relay, done, now, synced).await {
                return why;
            }
        }
        *synced = Some(synced.map_or(now, |s| s.max(now)));
        backoff.reset();
        self.set_link(true, true, None);
        tracing::info!(ws = %ws_url, query = %hub_query(), height = now, "subscribed to CometBFT");
        loop {
            let event = match subscription.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => return format!("subscription error: {}", summary(&e)),
                None => return "the subscription ended".to_owned(),
            };
            let EventData::NewBlock {
                block,
                result_finalize_block,
                ..
            } = &event.data
            else {
                tracing::debug!(data = ?event.data, "unexpected event data; skipped");
                continue;
            };
            let Some(block) = block else {
                tracing::warn!("NewBlock event without a block; skipped");
                continue;
            };
            let height = block.header.height.value();
            let done = synced.unwrap_or(0);
            if height <= done {
                continue;
            }
            if height > done.saturating_add(1) {
                // A gap (never expected from CometBFT): read it back.
                if let Err(why) = self
                    .catch_up(relay, done, height.saturating_sub(1), synced)
                    .await
                {
                    return why;
                }
            }
            match result_finalize_block {
                Some(result) => self.publish(
                    i64::try_from(height).unwrap_or(i64::MAX),
                    &result.events,
                    result.tx_results.iter().map(|t| t.events.as_slice()),
                ),
                None => {
                    if let Err(why) = self
                        .catch_up(relay, height.saturating_sub(1), height, synced)
                        .await
                    {
                        return why;
                    }
                }
            }
            *synced = Some(height);
        }
    }

    /// Reads blocks `done + 1 ..= now` (at most the last
    /// [`CATCH_UP_BLOCKS_MAX`]) and publishes their events.
    async fn catch_up(
        &self,
        relay: &Relay,
        done: u64,
        now: u64,
        synced: &mut Option<u64>,
    ) -> Result<(), String> {
        let mut from = done.saturating_add(1);
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
            let block = relay
                .block_events(height)
                .await
                .map_err(|e| e.to_string())?;
            self.publish(
                block.height,
                &block.block,
                block.txs.iter().map(Vec::as_slice),
            );
            *synced = Some(height);
        }
        Ok(())
    }
}

/// Forwards the events of `blocks` that match `filter` into `out`, until
/// the client goes away. A subscriber that fell more than
/// [`BLOCKS_BUFFERED`] blocks behind gets `RESOURCE_EXHAUSTED` after the
/// events already queued for it, and its stream ends.
pub async fn forward(
    filter: Filter,
    mut blocks: broadcast::Receiver<Arc<Published>>,
    out: mpsc::Sender<Result<pb::ChainEvent, Status>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let received = tokio::select! {
            () = out.closed() => return,
            received = blocks.recv() => received,
        };
        match received {
            Ok(block) => {
                for event in block.events.iter().filter(|e| filter.matches(e)) {
                    if out
                        .send(Ok(chain_event(block.height, event)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    metrics.subscription_event();
                }
            }
            Err(RecvError::Lagged(missed)) => {
                metrics.subscription_lagged();
                tracing::info!(?filter, missed, "subscriber fell behind; its stream ends");
                let _ = out
                    .send(Err(Status::resource_exhausted(format!(
                        "this subscriber read too slowly and fell more than {BLOCKS_BUFFERED} blocks behind; \
                         {missed} blocks of events were dropped for it: subscribe again and read the current state through Query"
                    ))))
                    .await;
                return;
            }
            Err(RecvError::Closed) => {
                let _ = out
                    .send(Err(Status::unavailable("the gateway's event hub stopped")))
                    .await;
                return;
            }
        }
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
    fn a_settlements_filter_matches_every_settlement_and_nothing_else() {
        let filter = Filter::Settlements;
        for job in [JobId([7; 32]), JobId([8; 32])] {
            assert!(filter.matches(&event("task_settled", &[("job", &job.to_hex())])));
            assert!(!filter.matches(&event("task_assigned", &[("job", &job.to_hex())])));
        }
        assert!(!filter.matches(&event("worker_cheated", &[])));
        use pb::subscribe_request::Filter as F;
        let request = |f| pb::SubscribeRequest { filter: Some(f) };
        assert_eq!(
            Filter::from_request(&request(F::Settlements(true))).unwrap(),
            Filter::Settlements
        );
        assert!(Filter::from_request(&request(F::Settlements(false))).is_err());
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
    fn the_retention_tracker_sees_jobs_posted() {
        assert!(published("job_posted"));
        assert!(JOB_KINDS.iter().all(|k| published(k)));
        assert!(!published("transfer"));
    }

    #[test]
    fn every_worker_kind_is_a_published_kind() {
        for kind in WORKER_KINDS {
            assert!(JOB_KINDS.contains(kind), "{kind}");
        }
        assert_eq!(hub_query().to_string(), "tm.event = 'NewBlock'");
    }

    fn assigned(job: &JobId, worker: &AccountId) -> abci::Event {
        event(
            "task_assigned",
            &[("job", &job.to_hex()), ("worker", &worker.to_hex())],
        )
    }

    #[tokio::test]
    async fn only_blocks_with_relevant_events_are_published_once_for_all() {
        let hub = Hub::detached("ws://unused");
        hub.set_link(true, true, None);
        let mut a = hub.subscribe().await.unwrap();
        let mut b = hub.subscribe().await.unwrap();
        assert_eq!(hub.receivers(), 2);
        let job = JobId([1; 32]);
        let worker = AccountId([2; 32]);
        hub.publish(4, &[event("transfer", &[("to", "x")])], std::iter::empty());
        let txs = [
            vec![event("transfer", &[])],
            vec![assigned(&job, &worker), event("other", &[])],
        ];
        hub.publish(
            5,
            &[event("task_settled", &[("job", &job.to_hex())])],
            txs.iter().map(Vec::as_slice),
        );
        for rx in [&mut a, &mut b] {
            let block = rx.recv().await.unwrap();
            assert_eq!(block.height, 5, "block 4 had nothing relevant");
            let kinds: Vec<&str> = block.events.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["task_settled", "task_assigned"]);
            assert!(rx.try_recv().is_err());
        }
    }

    #[tokio::test]
    async fn many_subscribers_each_get_their_own_events_from_one_feed() {
        let hub = Hub::detached("ws://unused");
        hub.set_link(true, true, None);
        let metrics = Arc::new(Metrics::default());
        let job = JobId([9; 32]);
        let mut streams = Vec::new();
        for i in 0..200u8 {
            let filter = if i % 2 == 0 {
                Filter::Job(job)
            } else {
                Filter::Worker(AccountId([i; 32]))
            };
            let (tx, rx) = mpsc::channel(4);
            let blocks = hub.subscribe().await.unwrap();
            tokio::spawn(forward(filter, blocks, tx, Arc::clone(&metrics)));
            streams.push((i, rx));
        }
        // One block assigns the job's tasks to every odd worker.
        let txs: Vec<Vec<abci::Event>> = (0..200u8)
            .filter(|i| i % 2 == 1)
            .map(|i| vec![assigned(&job, &AccountId([i; 32]))])
            .collect();
        hub.publish(7, &[], txs.iter().map(Vec::as_slice));
        for (i, rx) in &mut streams {
            let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(first.height, 7);
            if *i % 2 == 1 {
                let mine = AccountId([*i; 32]).to_hex();
                assert!(first.attributes.iter().any(|a| a.value == mine));
                assert!(rx.try_recv().is_err(), "a worker sees only its own");
            }
        }
        assert!(metrics
            .render(0)
            .contains("compute_gateway_subscription_events_total"));
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_without_holding_up_the_others() {
        let hub = Hub::detached("ws://unused");
        hub.set_link(true, true, None);
        let metrics = Arc::new(Metrics::default());
        let job = JobId([3; 32]);
        let worker = AccountId([4; 32]);
        let (slow_tx, mut slow_rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(1);
        let slow = tokio::spawn(forward(
            Filter::Job(job),
            hub.subscribe().await.unwrap(),
            slow_tx,
            Arc::clone(&metrics),
        ));
        tokio::spawn(forward(
            Filter::Job(job),
            hub.subscribe().await.unwrap(),
            fast_tx,
            Arc::clone(&metrics),
        ));
        let blocks = i64::try_from(BLOCKS_BUFFERED).unwrap() + 10;
        for height in 1..=blocks {
            let tx = [assigned(&job, &worker)];
            hub.publish(height, &[], std::iter::once(tx.as_slice()));
            // The fast subscriber reads every event as it comes.
            let got = tokio::time::timeout(Duration::from_secs(5), fast_rx.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(got.height, height);
        }
        // The slow one gets what was queued for it, then the error.
        let mut heights = Vec::new();
        let status = loop {
            match tokio::time::timeout(Duration::from_secs(5), slow_rx.recv())
                .await
                .unwrap()
            {
                Some(Ok(event)) => heights.push(event.height),
                Some(Err(status)) => break status,
                None => panic!("the stream ended without a status"),
            }
            assert!(heights.len() <= BLOCKS_BUFFERED + 2);
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert!(status.message().contains("fell more than"), "{status}");
        assert!(heights.first() == Some(&1), "{heights:?}");
        tokio::time::timeout(Duration::from_secs(5), slow)
            .await
            .unwrap()
            .unwrap();
        assert!(metrics
            .render(0)
            .contains("compute_gateway_subscriptions_lagged_total 1"));
    }

    #[tokio::test]
    async fn a_hub_that_cannot_connect_answers_why_quickly() {
        let (_stop, stopped) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let relay = Relay::new("http://127.0.0.1:9").unwrap();
        let hub = Hub::start("ws://127.0.0.1:9/websocket", relay, metrics, stopped);
        let why = tokio::time::timeout(Duration::from_secs(15), hub.subscribe())
            .await
            .unwrap()
            .unwrap_err();
        assert!(why.contains("127.0.0.1:9"), "{why}");
        assert!(!hub.link().connected);
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
