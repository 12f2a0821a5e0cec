//! Deadlines (DESIGN section 4): a drawn worker that does not commit within
//! `commit_window_blocks`, or does not reveal within `reveal_window_blocks`
//! of the reveal opening, is counted as missed and its slot opens again;
//! at a job's own deadline every task still running fails.
//!
//! Deadlines are entries of one index ordered by height
//! ([`keys::deadline`]), written when a replica is drawn, when a task opens
//! for reveal, and when a job is posted; the end of every block visits the
//! ones due, within `max_deadline_visits_per_block`.

use compute_proto::{pb, JobId, ReplicaStatus, TaskStatus};

use crate::events::{task_event, Event};
use crate::ledger::Ctx;
use crate::settlement::{advance, fail_task, finish_job_if_done, store};
use crate::state::{keys, replica_status, stored_account, stored_job_task, task_status, StateRead};
use crate::store::{KvRead, StateTx};
use crate::task::{release, TaskRef};

/// Visits the deadline entries due at or before this height, in key order,
/// within `max_deadline_visits_per_block` units of work: a task's deadline
/// is one unit, a job's own deadline one per task it ends. The first entry
/// is always visited, so the queue moves even when one job alone is larger
/// than the budget; a block therefore touches at most the budget plus one
/// job's `max_tasks_per_job` tasks, and later entries wait for the next
/// block.
pub fn visit_deadlines(state: &mut StateTx<'_>, ctx: &Ctx<'_>) -> Vec<Event> {
    let budget = u64::from(ctx.params.max_deadline_visits_per_block);
    let limit = usize::try_from(budget).unwrap_or(usize::MAX);
    let mut used: u64 = 0;
    let mut events = Vec::new();
    for (key, _) in state.scan(keys::DEADLINE_PREFIX, None, limit) {
        if used >= budget {
            break;
        }
        let rest = &key[keys::DEADLINE_PREFIX.len()..];
        let due = crate::state::stored_u64(&key, rest.get(..8).unwrap_or_default());
        if due > ctx.height {
            break;
        }
        state.delete_raw(key.clone());
        let (id, index) = stored_job_task(&rest[8..]);
        if index == keys::WHOLE_JOB {
            let tasks = expire_job(state, ctx, &id, &mut events);
            used = used.saturating_add(u64::from(tasks).max(1));
        } else {
            task_deadline(state, ctx, &id, index, &mut events);
            used = used.saturating_add(1);
        }
    }
    events
}

/// Whether a task in `phase` waits on its replicas' deadlines.
fn is_running(phase: TaskStatus) -> bool {
    matches!(phase, TaskStatus::Commit | TaskStatus::Reveal)
}

/// Removes the replicas whose deadline passed (counted as missed) and moves
/// the task on.
fn task_deadline(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    id: &JobId,
    index: u32,
    events: &mut Vec<Event>,
) {
    let (Some(mut job), Some(mut task)) = (state.job(id), state.task(id, index)) else {
        return;
    };
    let phase = task_status(&task);
    if !is_running(phase) {
        return;
    }
    let missed = mark_missed(&mut task, phase, ctx.height_i64());
    if missed.is_empty() {
        return;
    }
    let mut t = TaskRef {
        id: *id,
        index,
        job: &mut job,
        task: &mut task,
    };
    for replica in &missed {
        count_missed(state, &t, replica, phase, events);
    }
    advance(state, ctx, &mut t, events);
    store(state, ctx, &mut t, events);
}

/// Marks the overdue replicas of a task as missed; returns them.
fn mark_missed(task: &mut pb::Task, phase: TaskStatus, now: i64) -> Vec<pb::Replica> {
    let mut missed = Vec::new();
    for replica in &mut task.replicas {
        if is_overdue(replica, phase, now) {
            replica.status = ReplicaStatus::Missed.into();
            missed.push(replica.clone());
        }
    }
    missed
}

/// An assigned replica that did not commit, or (in the reveal phase) a
/// committed one that did not reveal, by `now`.
fn is_overdue(replica: &pb::Replica, phase: TaskStatus, now: i64) -> bool {
    replica.deadline_height <= now
        && match replica_status(replica) {
            ReplicaStatus::Assigned => true,
            ReplicaStatus::Committed => phase == TaskStatus::Reveal,
            _ => false,
        }
}

/// Releases a replica that missed its deadline in `phase` and counts it
/// against its worker's reputation.
fn count_missed(
    state: &mut StateTx<'_>,
    t: &TaskRef<'_>,
    replica: &pb::Replica,
    phase: TaskStatus,
    events: &mut Vec<Event>,
) {
    let worker = stored_account(&replica.worker);
    release(state, &worker, &t.id, t.index);
    state.update_reputation(&worker, |r| r.missed = r.missed.saturating_add(1));
    let what = if phase == TaskStatus::Reveal {
        "reveal"
    } else {
        "commit"
    };
    events.push(task_event(
        "deadline_missed",
        &t.id,
        t.index,
        &[
            ("worker", worker.to_hex(), true),
            ("phase", what.to_owned(), false),
        ],
    ));
}

/// The job's own deadline: every task still running fails, and the workers
/// that owed a commit or a reveal are counted as missed. Returns the number
/// of tasks it visited.
fn expire_job(state: &mut StateTx<'_>, ctx: &Ctx<'_>, id: &JobId, events: &mut Vec<Event>) -> u32 {
    let Some(mut job) = state.job(id) else {
        return 0;
    };
    if job.ended_height != 0 {
        return 0;
    }
    let now = ctx.height_i64();
    for (index, mut task) in state.tasks(id, job.task_count as usize) {
        let phase = task_status(&task);
        if !is_running(phase) {
            continue;
        }
        let missed = mark_missed(&mut task, phase, now);
        let mut t = TaskRef {
            id: *id,
            index,
            job: &mut job,
            task: &mut task,
        };
        for replica in &missed {
            count_missed(state, &t, replica, phase, events);
        }
        fail_task(state, ctx, &mut t, "the job's deadline passed", events);
        state.put_task(id, index, &task);
    }
    finish_job_if_done(state, ctx, id, &mut job, events);
    state.put_job(id, &job);
    job.task_count
}
