//! Reconciliation: comparing the chain's view of this worker's tasks with
//! the journal, deciding each task's next step ([`decide`]) and starting
//! it (running the pipeline, committing, revealing, declining).
//!
//! The chain is the source of truth. The worker reconciles with
//! `/worker/<hex>/assignments` at startup, after every event and every
//! poll period, and decides each task's next step from the chain's view and
//! its own journal. Events only wake it up, so a missed event (a reconnect,
//! a gateway restart) costs at most one poll period.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use compute_client::{retry, Gateway, Query as _};
use compute_proto::{AccountId, ReplicaStatus, TaskStatus};
use tokio::sync::watch;

use crate::chain::{task_key, Assignment, AssignmentsView};
use crate::error::WorkerError;
use crate::home::HomeLock;
use crate::journal::{Entry, EntryState, Journal, TaskKey};
use crate::pipeline::{Pipeline, TaskError};
use crate::submit::{Delivery, Submitter};
use crate::sync::lock;

/// The next step for one task, from the chain's view and the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fetch, run, journal and commit.
    Run,
    /// Send the journaled commitment.
    Commit,
    /// Send the journaled reveal.
    Reveal,
    /// The chain has the commitment; record it.
    MarkCommitted,
    /// The chain has the reveal; record it.
    MarkRevealed,
    /// The chain waits for a reveal this worker cannot make (no journal entry).
    Lost,
    /// Nothing to do now.
    Wait,
}

/// Decides a task's next step.
///
/// A task already in the journal is never run again: its journaled
/// commitment is sent (again) while the chain shows the replica `assigned`,
/// so a restart never produces a second commitment with a new salt.
#[must_use]
pub fn decide(task: TaskStatus, replica: ReplicaStatus, journaled: Option<EntryState>) -> Action {
    use ReplicaStatus as R;
    use TaskStatus as T;
    match (replica, task, journaled) {
        (R::Assigned, T::Commit, None) => Action::Run,
        (R::Assigned, T::Commit, Some(_)) => Action::Commit,
        (R::Committed, T::Reveal, Some(_)) => Action::Reveal,
        (R::Committed, T::Reveal, None) => Action::Lost,
        (R::Committed, _, Some(EntryState::Prepared)) => Action::MarkCommitted,
        (
            R::Revealed | R::Agreed | R::Cheated,
            _,
            Some(EntryState::Prepared | EntryState::Committed),
        ) => Action::MarkRevealed,
        _ => Action::Wait,
    }
}

/// The tasks this worker holds: the journal, what is in progress, and the
/// pipeline and submitter that move a task on.
pub(crate) struct Reconciler {
    account: AccountId,
    gateway: Gateway,
    pipeline: Pipeline,
    submitter: Submitter,
    journal: Mutex<Journal>,
    /// Tasks with a handler running.
    busy: Mutex<BTreeSet<TaskKey>>,
    /// Tasks not to try again while they stay assigned (denied, refused,
    /// faulted); each is logged once.
    skipped: Mutex<BTreeSet<TaskKey>>,
    shutdown: watch::Receiver<bool>,
    /// The lock that keeps other worker processes off this journal, held as
    /// long as a handler may still write it.
    _home_lock: HomeLock,
}

/// Removes a task from the busy set when its handler ends, however it ends.
struct BusyGuard {
    reconciler: Arc<Reconciler>,
    key: TaskKey,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.reconciler.busy).remove(&self.key);
    }
}

impl Reconciler {
    /// A reconciler for `submitter`'s account over `journal`, which
    /// `home_lock` keeps to this process.
    pub(crate) fn new(
        gateway: Gateway,
        pipeline: Pipeline,
        submitter: Submitter,
        journal: Journal,
        home_lock: HomeLock,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            account: submitter.account(),
            gateway,
            pipeline,
            submitter,
            journal: Mutex::new(journal),
            busy: Mutex::new(BTreeSet::new()),
            skipped: Mutex::new(BTreeSet::new()),
            shutdown,
            _home_lock: home_lock,
        }
    }

    /// The submitter, for registration.
    pub(crate) fn submitter(&self) -> &Submitter {
        &self.submitter
    }

    /// Tasks with a handler running now.
    pub(crate) fn busy_count(&self) -> usize {
        lock(&self.busy).len()
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Reads the worker's assignments, starts each task's next step, and
    /// forgets what the chain no longer assigns to this worker.
    ///
    /// # Errors
    /// When the assignments cannot be read.
    pub(crate) async fn reconcile(self: Arc<Self>) -> Result<(), WorkerError> {
        let answer: AssignmentsView = retry("assignments", &self.shutdown, || {
            self.gateway.assignments(&self.account)
        })
        .await?;
        let listed: BTreeSet<TaskKey> = answer.assignments.iter().map(task_key).collect();
        for assignment in answer.assignments {
            if self.stopping() {
                break;
            }
            let key = task_key(&assignment);
            if lock(&self.busy).contains(&key) || lock(&self.skipped).contains(&key) {
                continue;
            }
            let entry = self.journal().get(&key).cloned();
            let action = decide(
                assignment.task_status,
                assignment.replica_status,
                entry.as_ref().map(|e| e.state),
            );
            match (action, entry) {
                (Action::Run, _) => {
                    self.spawn(key, |this| async move { this.run_task(assignment).await });
                }
                (Action::Commit, Some(entry)) => {
                    self.spawn(key, |this| async move { this.commit(entry).await });
                }
                (Action::Reveal, Some(entry)) => {
                    self.spawn(key, |this| async move { this.reveal(entry).await });
                }
                (Action::MarkCommitted, _) => self.mark(&key, EntryState::Committed),
                (Action::MarkRevealed, _) => self.mark(&key, EntryState::Revealed),
                (Action::Lost, _) => {
                    tracing::error!(task = %key, "the chain waits for a reveal, but the journal has no entry for this task (journal lost or damaged); it will count as missed");
                    lock(&self.skipped).insert(key);
                }
                _ => {}
            }
        }
        // Forget what the chain no longer assigns to this worker.
        lock(&self.skipped).retain(|key| listed.contains(key));
        let stale: Vec<Entry> = self
            .journal()
            .entries()
            .filter(|e| !listed.contains(&e.key()))
            .cloned()
            .collect();
        for entry in stale {
            let key = entry.key();
            if lock(&self.busy).contains(&key) {
                continue;
            }
            if entry.state == EntryState::Revealed {
                tracing::debug!(task = %key, "task ended; journal entry pruned");
            } else {
                tracing::warn!(task = %key, state = ?entry.state, "task left this worker's assignments before it was revealed (deadline missed, job cancelled or ended); journal entry pruned");
            }
            if let Err(error) = self.journal().remove(&key) {
                tracing::warn!(%error, task = %key, "cannot prune journal entry");
            }
        }
        Ok(())
    }

    fn mark(&self, key: &TaskKey, state: EntryState) {
        if let Err(error) = self.journal().set_state(key, state) {
            tracing::warn!(%error, task = %key, "cannot record task state");
        }
    }

    /// Runs `work` as the task's one handler, unless one is running.
    fn spawn<F, Fut>(self: &Arc<Self>, key: TaskKey, work: F)
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if !lock(&self.busy).insert(key) {
            return;
        }
        let guard = BusyGuard {
            reconciler: Arc::clone(self),
            key,
        };
        let future = work(Arc::clone(self));
        tokio::spawn(async move {
            let _guard = guard;
            future.await;
        });
    }

    async fn run_task(self: Arc<Self>, assignment: Assignment) {
        let key = task_key(&assignment);
        match self.compute(&assignment).await {
            Ok(entry) => self.commit(entry).await,
            Err(TaskError::ShuttingDown) => {}
            Err(TaskError::Denied(module)) => {
                tracing::warn!(task = %key, %module, "module is on the local deny list; declining the task");
                lock(&self.skipped).insert(key);
                self.submitter
                    .decline(
                        key,
                        &format!("module {module} is on the worker's deny list"),
                    )
                    .await;
            }
            Err(TaskError::SelfCheck(reason)) => {
                // Nothing was journaled or sent for this result, so a
                // restart runs the task again and reaches the same verdict.
                tracing::warn!(task = %key, module = %assignment.module, reason, "declining the task instead of committing a result it cannot stand behind");
                lock(&self.skipped).insert(key);
                self.submitter.decline(key, &reason).await;
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(task = %key, %error, "task not computed; will try again");
            }
            Err(error) => {
                tracing::error!(task = %key, module = %assignment.module, %error, "task refused; declining it");
                lock(&self.skipped).insert(key);
                self.submitter.decline(key, &error.to_string()).await;
            }
        }
    }

    /// Runs the pipeline and journals the sealed result.
    async fn compute(&self, assignment: &Assignment) -> Result<Entry, TaskError> {
        let entry = self.pipeline.compute(assignment).await?;
        // Written and synced before the commitment leaves this machine.
        self.journal().put(entry.clone())?;
        Ok(entry)
    }

    async fn commit(&self, entry: Entry) {
        let delivery = self.submitter.commit(&entry).await;
        self.record(entry.key(), delivery);
    }

    async fn reveal(&self, entry: Entry) {
        let delivery = self.submitter.reveal(&entry).await;
        self.record(entry.key(), delivery);
    }

    /// Records what became of a commit or a reveal.
    fn record(&self, key: TaskKey, delivery: Delivery) {
        match delivery {
            Delivery::Landed(state) => self.mark(&key, state),
            Delivery::Open => {}
            Delivery::Abandoned => {
                lock(&self.skipped).insert(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplicaStatus as R;
    use TaskStatus as T;

    #[test]
    fn a_new_assignment_is_run_and_a_journaled_one_is_committed_from_the_journal() {
        assert_eq!(decide(T::Commit, R::Assigned, None), Action::Run);
        for state in [
            EntryState::Prepared,
            EntryState::Committed,
            EntryState::Revealed,
        ] {
            assert_eq!(decide(T::Commit, R::Assigned, Some(state)), Action::Commit);
        }
    }

    #[test]
    fn an_open_reveal_is_sent_from_the_journal_or_reported_lost() {
        assert_eq!(
            decide(T::Reveal, R::Committed, Some(EntryState::Committed)),
            Action::Reveal
        );
        assert_eq!(
            decide(T::Reveal, R::Committed, Some(EntryState::Prepared)),
            Action::Reveal
        );
        assert_eq!(decide(T::Reveal, R::Committed, None), Action::Lost);
    }

    #[test]
    fn the_journal_catches_up_with_what_the_chain_already_has() {
        assert_eq!(
            decide(T::Commit, R::Committed, Some(EntryState::Prepared)),
            Action::MarkCommitted
        );
        assert_eq!(
            decide(T::Commit, R::Committed, Some(EntryState::Committed)),
            Action::Wait
        );
        for replica in [R::Revealed, R::Agreed, R::Cheated] {
            assert_eq!(
                decide(T::Reveal, replica, Some(EntryState::Committed)),
                Action::MarkRevealed
            );
            assert_eq!(
                decide(T::Settled, replica, Some(EntryState::Revealed)),
                Action::Wait
            );
        }
    }

    #[test]
    fn ended_states_wait() {
        assert_eq!(decide(T::Cancelled, R::Assigned, None), Action::Wait);
        assert_eq!(decide(T::Failed, R::Committed, None), Action::Wait);
        for replica in [R::Missed, R::Declined, R::Refused] {
            for task in TaskStatus::ALL {
                for journaled in [
                    None,
                    Some(EntryState::Prepared),
                    Some(EntryState::Committed),
                    Some(EntryState::Revealed),
                ] {
                    assert_eq!(decide(*task, replica, journaled), Action::Wait);
                }
            }
        }
    }
}
