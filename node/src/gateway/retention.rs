//! Retention by reference: which blobs the chain still needs.
//!
//! A blob is referenced while
//! - it is the input of a task of an open job, or the output a replica of an
//!   open job revealed (`result_hash`), or
//! - it is the output of a completion (a settled task), for
//!   `--retain-blocks` blocks after the height it settled at.
//!
//! The tracker learns references from a full scan of the chain's queries
//! (`/jobs`, `/job/<id>`, `/completions`) at start-up, again every
//! [`RESCAN_SECS`] and whenever it missed events, and from the block events
//! the gateway already follows between scans: `job_posted` (then it reads
//! the job's inputs), `task_revealed`, `task_settled`, `job_completed` and
//! `job_cancelled`. It subscribes to the events before it scans, and applies
//! the events that arrived during a scan after it; every change is
//! idempotent, so an event the scan already saw changes nothing.
//!
//! The store is told through [`BlobStore::retain`] and [`BlobStore::release`]
//! (one hold per referenced id), and evicts nothing until the first scan has
//! finished ([`Retention::complete`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use compute_client::query::PAGE_LIMIT_MAX;
use compute_client::{Backoff, ClientError, JobTasks, JobsFilter, Query};
use compute_proto::views::{InputView, JobView};
use compute_proto::{BlobId, JobId, JobStatus};
use tendermint::abci;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::events::{Hub, Published};
use super::metrics::Metrics;
use super::relay::Relay;
use super::store::BlobStore;

/// How often the references are read again in full.
pub const RESCAN_SECS: u64 = 600;
/// The most jobs a scan reads (a bound on one pass, not on the chain).
const SCAN_JOBS_MAX: usize = 1_000_000;
/// The most pages of tasks read for one open job.
const TASK_PAGES_MAX: u32 = 10_000;
/// The wait before the first retry of a failed scan.
const RETRY_MIN_MS: u64 = 500;
/// The longest wait between retries of a failed scan.
const RETRY_MAX_MS: u64 = 30_000;

/// One change to the references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A job is open and needs these blobs.
    Open(JobId, Vec<BlobId>),
    /// A replica of an open job revealed this output.
    Revealed(JobId, BlobId),
    /// A task settled with this output at this height.
    Settled(BlobId, i64),
    /// The job ended: its inputs are no longer needed.
    Ended(JobId),
    /// The chain reached this height: settled outputs past their window are
    /// no longer needed.
    Height(i64),
}

/// The chain's references, as far as the gateway knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    open: HashMap<JobId, HashSet<BlobId>>,
    /// Settled outputs and the last height they are kept for.
    settled: HashMap<BlobId, i64>,
    retain_blocks: i64,
}

impl Refs {
    /// No references; settled outputs will be kept `retain_blocks` blocks.
    pub fn new(retain_blocks: u64) -> Self {
        Self {
            open: HashMap::new(),
            settled: HashMap::new(),
            retain_blocks: i64::try_from(retain_blocks).unwrap_or(i64::MAX),
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Open(job, blobs) => self.open.entry(job).or_default().extend(blobs),
            Change::Revealed(job, blob) => {
                // Only for a job known open: an unknown one has ended, or
                // will be read with its reveals when its `job_posted` or the
                // next scan comes.
                if let Some(blobs) = self.open.get_mut(&job) {
                    blobs.insert(blob);
                }
            }
            Change::Settled(blob, height) => {
                let until = height.saturating_add(self.retain_blocks);
                let kept = self.settled.entry(blob).or_insert(until);
                *kept = (*kept).max(until);
            }
            Change::Ended(job) => {
                self.open.remove(&job);
            }
            Change::Height(height) => self.settled.retain(|_, until| *until >= height),
        }
    }

    /// Every referenced blob id.
    pub fn blobs(&self) -> HashSet<BlobId> {
        self.open
            .values()
            .flatten()
            .chain(self.settled.keys())
            .copied()
            .collect()
    }

    /// The jobs known open.
    pub fn open_jobs(&self) -> usize {
        self.open.len()
    }
}

/// The blobs a job's view references: blob inputs, revealed outputs and
/// completions' outputs (with their settlement heights).
pub fn changes_of_job(view: &JobView) -> Vec<Change> {
    let job = view.summary.job;
    let mut needed = Vec::new();
    let mut changes = Vec::new();
    for task in view.tasks.iter().flatten() {
        if let Some(InputView::Hash(hash)) = &task.input {
            needed.push(BlobId(hash.0));
        }
        for replica in &task.replicas {
            if let Some(hash) = replica.result_hash {
                needed.push(BlobId(hash.0));
            }
        }
        if let Some(completion) = &task.completion {
            changes.push(Change::Settled(
                BlobId(completion.result_hash.0),
                completion.height,
            ));
        }
    }
    if view.summary.status == JobStatus::Open {
        changes.insert(0, Change::Open(job, needed));
    }
    changes
}

/// The references a block's events change, except a `job_posted`, whose
/// inputs must be read (answered in the second list).
pub fn changes_of_events(height: i64, events: &[abci::Event]) -> (Vec<Change>, Vec<JobId>) {
    let mut changes = Vec::new();
    let mut posted = Vec::new();
    for event in events {
        let attr = |key: &str| {
            event
                .attributes
                .iter()
                .find(|a| a.key_bytes() == key.as_bytes())
                .and_then(|a| std::str::from_utf8(a.value_bytes()).ok())
        };
        let job = attr("job").and_then(|v| v.parse::<JobId>().ok());
        let result = attr("result_hash").and_then(|v| v.parse::<BlobId>().ok());
        match (event.kind.as_str(), job, result) {
            ("job_posted", Some(job), _) => posted.push(job),
            ("task_revealed", Some(job), Some(result)) => {
                changes.push(Change::Revealed(job, result));
            }
            ("task_settled", _, Some(result)) => changes.push(Change::Settled(result, height)),
            ("job_completed" | "job_cancelled", Some(job), _) => changes.push(Change::Ended(job)),
            _ => {}
        }
    }
    changes.push(Change::Height(height));
    (changes, posted)
}

/// The tracker: keeps the store's holds equal to the chain's references.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Retention {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: BlobStore,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    complete: AtomicBool,
    retain_blocks: u64,
}

#[derive(Debug)]
struct State {
    refs: Refs,
    /// The ids the store holds for us.
    held: HashSet<BlobId>,
}

impl Retention {
    /// A tracker for `store` that knows nothing yet.
    pub fn new(store: BlobStore, metrics: Arc<Metrics>, retain_blocks: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                state: Mutex::new(State {
                    refs: Refs::new(retain_blocks),
                    held: HashSet::new(),
                }),
                complete: AtomicBool::new(false),
                retain_blocks,
            }),
        }
    }

    /// Whether a full scan has finished, so that the references are known.
    pub fn complete(&self) -> bool {
        self.inner.complete.load(Ordering::Acquire)
    }

    /// Whether `id` is referenced now.
    pub fn is_referenced(&self, id: &BlobId) -> bool {
        self.state().held.contains(id)
    }

    /// The number of referenced ids.
    pub fn referenced(&self) -> usize {
        self.state().held.len()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Updates happen in `sync`, which cannot panic half-way.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `changes` and brings the store's holds in line.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut state = self.state();
        for change in changes {
            state.refs.apply(change);
        }
        self.sync(&mut state);
    }

    /// Replaces the references with a full scan's, then marks them complete.
    pub fn replace(&self, refs: Refs) {
        let mut state = self.state();
        state.refs = refs;
        self.sync(&mut state);
        drop(state);
        self.inner.complete.store(true, Ordering::Release);
    }

    fn sync(&self, state: &mut State) {
        let now = state.refs.blobs();
        // New holds first, then releases: a blob referenced in both stays
        // held throughout.
        for id in now.difference(&state.held) {
            self.inner.store.retain(*id);
        }
        for id in state.held.difference(&now) {
            self.inner.store.release(id);
        }
        state.held = now;
        self.inner
            .metrics
            .referenced_blobs_set(u64::try_from(state.held.len()).unwrap_or(u64::MAX));
    }

    /// Keeps the references current until `shutdown` turns true: scans,
    /// then follows the hub's blocks, scanning again every [`RESCAN_SECS`]
    /// and whenever it fell behind.
    pub async fn run(self, relay: Relay, hub: Hub, mut shutdown: watch::Receiver<bool>) {
        tokio::select! {
            () = self.follow(&relay, &hub) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    async fn follow(&self, relay: &Relay, hub: &Hub) {
        let mut backoff = Backoff::new(RETRY_MIN_MS, RETRY_MAX_MS);
        loop {
            // The cursor first, so that no event after the scan is missed.
            let mut blocks = match hub.subscribe().await {
                Ok(blocks) => blocks,
                Err(why) => {
                    tracing::warn!(%why, "retention: cannot follow chain events yet; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            match self.scan(relay).await {
                Ok(refs) => {
                    tracing::info!(
                        open_jobs = refs.open_jobs(),
                        referenced = refs.blobs().len(),
                        "retention: references read from the chain"
                    );
                    self.replace(refs);
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention: scanning the chain's references failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            }
            let rescan = tokio::time::sleep(Duration::from_secs(RESCAN_SECS));
            tokio::pin!(rescan);
            loop {
                tokio::select! {
                    () = &mut rescan => break,
                    block = blocks.recv() => match block {
                        Ok(block) => self.on_block(relay, &block).await,
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(missed_blocks = n, "retention: fell behind the chain's events; scanning again");
                            break;
                        }
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        }
    }

    async fn on_block(&self, relay: &Relay, block: &Published) {
        let (changes, posted) = changes_of_events(block.height, &block.events);
        // A posted job's references come before the block's other changes,
        // so that its reveals or end in the same block apply on top.
        let mut all = Vec::new();
        for job in posted {
            match read_job(relay, &job).await {
                Ok(view) => all.extend(changes_of_job(&view)),
                // The next scan reads it; its inputs are within their grace
                // period until then.
                Err(e) => tracing::warn!(%job, error = %e, "retention: cannot read a posted job"),
            }
        }
        all.extend(changes);
        self.apply(all);
    }

    /// Reads every reference from the chain's queries.
    ///
    /// # Errors
    /// The first query that failed.
    pub async fn scan(&self, relay: &Relay) -> Result<Refs, ClientError> {
        let mut refs = Refs::new(self.inner.retain_blocks);
        let height = relay.stats().await?.height;
        let window = i64::try_from(self.inner.retain_blocks).unwrap_or(i64::MAX);
        let oldest_kept = height.saturating_sub(window);
        let mut filter = JobsFilter {
            limit: Some(PAGE_LIMIT_MAX),
            ..JobsFilter::default()
        };
        let mut seen = 0usize;
        loop {
            let page = relay.jobs(&filter).await?;
            seen = seen.saturating_add(page.jobs.len());
            for job in &page.jobs {
                if job.status == JobStatus::Open {
                    let view = read_job(relay, &job.job).await?;
                    for change in changes_of_job(&view) {
                        refs.apply(change);
                    }
                } else if job.ended_height >= oldest_kept {
                    for completion in relay.job_completions(&job.job).await? {
                        refs.apply(Change::Settled(
                            BlobId(completion.result_hash.0),
                            completion.height,
                        ));
                    }
                }
            }
            match page.next {
                Some(next) if seen < SCAN_JOBS_MAX => filter.after = Some(next),
                _ => break,
            }
        }
        refs.apply(Change::Height(height));
        Ok(refs)
    }
}

/// A job with all its tasks, a page at a time.
async fn read_job(relay: &Relay, job: &JobId) -> Result<JobView, ClientError> {
    let mut view = relay
        .job(
            job,
            JobTasks::Page {
                after: None,
                limit: PAGE_LIMIT_MAX,
            },
        )
        .await?;
    let mut tasks = view.tasks.take().unwrap_or_default();
    let mut next = view.next;
    for _ in 0..TASK_PAGES_MAX {
        let Some(after) = next else { break };
        let page = relay
            .job(
                job,
                JobTasks::Page {
                    after: Some(after),
                    limit: PAGE_LIMIT_MAX,
                },
            )
            .await?;
        tasks.extend(page.tasks.unwrap_or_default());
        next = page.next.filter(|n| *n > after);
    }
    view.tasks = Some(tasks);
    view.next = None;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId([n; 32])
    }

    fn blob(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    #[test]
    fn open_jobs_keep_their_blobs_until_they_end() {
        let mut refs = Refs::new(10);
        refs.apply(Change::Open(job(1), vec![blob(1), blob(2)]));
        refs.apply(Change::Open(job(2), vec![blob(2)]));
        refs.apply(Change::Revealed(job(1), blob(3)));
        refs.apply(Change::Revealed(job(9), blob(9)));
        assert_eq!(
            refs.blobs(),
            [blob(1), blob(2), blob(3)].into_iter().collect()
        );
        refs.apply(Change::Ended(job(1)));
        assert_eq!(refs.blobs(), [blob(2)].into_iter().collect());
        refs.apply(Change::Ended(job(1)));
        refs.apply(Change::Ended(job(2)));
        assert!(refs.blobs().is_empty());
    }

    #[test]
    fn settled_outputs_are_kept_for_the_window_after_settlement() {
        let mut refs = Refs::new(10);
        refs.apply(Change::Settled(blob(1), 100));
        refs.apply(Change::Settled(blob(2), 105));
        refs.apply(Change::Height(110));
        assert_eq!(refs.blobs().len(), 2);
        refs.apply(Change::Height(111));
        assert_eq!(refs.blobs(), [blob(2)].into_iter().collect());
        // Settling again later extends the window; earlier does not shorten it.
        refs.apply(Change::Settled(blob(2), 120));
        refs.apply(Change::Settled(blob(2), 101));
        refs.apply(Change::Height(130));
        assert_eq!(refs.blobs(), [blob(2)].into_iter().collect());
        refs.apply(Change::Height(131));
        assert!(refs.blobs().is_empty());
    }

    #[tokio::test]
    async fn the_store_holds_exactly_what_the_chain_references() {
        use super::super::store::StoreConfig;
        use compute_proto::AccountId;
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), StoreConfig::new(1 << 20, 1 << 20)).unwrap();
        let retention = Retention::new(store.clone(), Arc::new(Metrics::default()), 10);
        assert!(!retention.complete());
        let owner = AccountId([7; 32]);
        let input = store.put_as(Some(owner), b"input").await.unwrap().id;
        assert!(!store.is_pinned(&input));
        assert_eq!(store.account_usage(&owner), 5);

        // Referenced by an open job: pinned, and no longer the owner's to pay.
        retention.apply([Change::Open(job(1), vec![input, blob(9)])]);
        assert!(store.is_pinned(&input) && retention.is_referenced(&input));
        assert_eq!(store.account_usage(&owner), 0);
        assert_eq!(retention.referenced(), 2);

        // A scan that sees the job ended but the blob settled keeps it held
        // throughout, and completes the references.
        let mut scanned = Refs::new(10);
        scanned.apply(Change::Settled(input, 100));
        scanned.apply(Change::Height(100));
        retention.replace(scanned);
        assert!(retention.complete());
        assert!(store.is_pinned(&input));
        assert_eq!(retention.referenced(), 1);

        // Past its window it is released, and counts against its owner again.
        retention.apply([Change::Height(111)]);
        assert!(!store.is_pinned(&input));
        assert_eq!(store.account_usage(&owner), 5);
        assert_eq!(retention.referenced(), 0);
    }

    fn event(kind: &str, attributes: &[(&str, String)]) -> abci::Event {
        abci::Event::new(
            kind,
            attributes
                .iter()
                .map(|(k, v)| abci::EventAttribute::from((*k, v.as_str(), true))),
        )
    }

    #[test]
    fn events_name_their_changes() {
        let events = [
            event("job_posted", &[("job", job(1).to_hex())]),
            event(
                "task_revealed",
                &[("job", job(2).to_hex()), ("result_hash", blob(3).to_hex())],
            ),
            event(
                "task_settled",
                &[("job", job(2).to_hex()), ("result_hash", blob(3).to_hex())],
            ),
            event("job_completed", &[("job", job(2).to_hex())]),
            event("job_cancelled", &[("job", job(4).to_hex())]),
            event("task_revealed", &[("job", "not hex".to_owned())]),
            event("transfer", &[("job", job(5).to_hex())]),
        ];
        let (changes, posted) = changes_of_events(7, &events);
        assert_eq!(posted, vec![job(1)]);
        assert_eq!(
            changes,
            vec![
                Change::Revealed(job(2), blob(3)),
                Change::Settled(blob(3), 7),
                Change::Ended(job(2)),
                Change::Ended(job(4)),
                Change::Height(7),
            ]
        );
    }
}
