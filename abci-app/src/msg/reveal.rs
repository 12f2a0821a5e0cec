//! `RevealResult`: a worker opens its commitment once every replica of the
//! task has committed (DESIGN section 4, step 4). A reveal that does not
//! open the worker's own commitment is refused, so a lazy worker cannot
//! copy another's answer. The last reveal of a quorum task settles it; a
//! Verified job's output joins the verify queue ([`crate::judge`]).

use compute_proto::{commitment, pb, sha3_256, AccountId, JobId, ReplicaStatus, TaskStatus};

use crate::codes::Rejection;
use crate::events::{task_event, Event};
use crate::ledger::Ctx;
use crate::msg::replica::{hash32, invalid, locate, Located, Phase, Target};
use crate::settlement::{advance, store};
use crate::state::StateRead;
use crate::store::StateTx;
use crate::task::is_verified;

const MSG: &str = "RevealResult";

/// Longest salt accepted; 32 random bytes are plenty.
pub const MAX_SALT_BYTES: usize = 64;

/// Shape: sizes, and an inline output that hashes to the revealed result
/// hash.
pub fn check_stateless(m: &pb::RevealResult, params: &pb::Params) -> Result<Target, Rejection> {
    let job = JobId(hash32(MSG, "job_id", &m.job_id)?);
    hash32(MSG, "result_hash", &m.result_hash)?;
    if m.salt.len() > MAX_SALT_BYTES {
        return Err(invalid(
            MSG,
            format!(
                "salt of {} bytes is longer than {MAX_SALT_BYTES}",
                m.salt.len()
            ),
        ));
    }
    if m.output.len() as u64 > params.max_inline_output_bytes {
        return Err(invalid(
            MSG,
            format!(
                "inline output of {} bytes is above max_inline_output_bytes {}; reveal without it and serve it from the data plane",
                m.output.len(),
                params.max_inline_output_bytes
            ),
        ));
    }
    if !m.output.is_empty() && sha3_256(&m.output).as_slice() != m.result_hash.as_slice() {
        return Err(invalid(
            MSG,
            "the inline output does not hash to result_hash (sha3-256 of the output)".into(),
        ));
    }
    Ok(Target { job, task: m.task })
}

/// A reveal opens the signer's own commitment, in the reveal phase, with
/// fuel within the job's limit; a verified job needs the output inline.
pub fn check_stateful(
    m: &pb::RevealResult,
    target: &Target,
    signer: &AccountId,
    state: &impl StateRead,
) -> Result<Located, Rejection> {
    let found = locate(
        target,
        signer,
        state,
        &Phase {
            task: TaskStatus::Reveal,
            task_hint: "reveals are taken only after task_reveal_open",
            replica: ReplicaStatus::Committed,
            replica_hint: "each replica reveals once, after committing",
        },
    )?;
    if m.fuel_used > found.job.fuel_limit {
        return Err(invalid(
            MSG,
            format!(
                "fuel_used {} is above the job's fuel_limit {}",
                m.fuel_used, found.job.fuel_limit
            ),
        ));
    }
    let result_hash = hash32(MSG, "result_hash", &m.result_hash)?;
    let expected = commitment(
        &target.job.0,
        target.task,
        &signer.0,
        &result_hash,
        m.fuel_used,
        &m.salt,
    );
    if found.task.replicas[found.position].commitment.as_slice() != expected.as_slice() {
        return Err(Rejection::CommitmentMismatch {
            job: target.job,
            task: target.task,
        });
    }
    if is_verified(&found.job) && m.output.is_empty() {
        return Err(invalid(
            MSG,
            "a Verified job's output must be revealed inline: the chain runs verify on it".into(),
        ));
    }
    Ok(found)
}

/// Records the reveal; a Verified job's output joins the verify queue, and
/// the last reveal of a quorum task settles it.
pub fn execute(
    m: &pb::RevealResult,
    signer: &AccountId,
    mut found: Located,
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let replica = &mut found.task.replicas[found.position];
    replica.result_hash = m.result_hash.clone();
    replica.fuel_used = m.fuel_used;
    replica.output = m.output.clone();
    replica.status = ReplicaStatus::Revealed.into();
    let target = found.target;
    let mut events = vec![task_event(
        "task_revealed",
        &target.job,
        target.task,
        &[
            ("worker", signer.to_hex(), true),
            ("result_hash", hex::encode(&m.result_hash), false),
            ("fuel_used", m.fuel_used.to_string(), false),
        ],
    )];
    let verified = is_verified(&found.job);
    let mut t = found.task_ref();
    if verified {
        // Judged at the end of a block, from the verify queue, within the
        // block's verify budget: a reveal itself costs a block nothing.
        crate::judge::enqueue(state, ctx, &target.job, target.task, &signer.0);
    } else {
        advance(state, ctx, &mut t, &mut events);
    }
    store(state, ctx, &mut t, &mut events);
    Ok(events)
}
