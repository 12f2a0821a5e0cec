//! How raw state entries sit in the state tree, for the chain that proves
//! them and the clients that check the proofs (docs/PROTOCOL.md, "State
//! keys and values").

/// The `type` of the `ProofOp` that carries one raw key's proof in a query
/// answer (`data`: a protobuf `cosmos.ics23.v1.CommitmentProof`).
pub const PROOF_OP_TYPE: &str = "ics23:jmt";

/// Prefix of account records (`compute.v1.Account`).
pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
/// Prefix of registered workers (`compute.v1.Worker`).
pub const WORKER_PREFIX: &[u8] = b"wrk/";

/// Prefix of job records (`compute.v1.Job`).
pub const JOB_PREFIX: &[u8] = b"job/";

/// The raw key of `job`'s record.
pub fn job_key(job: &crate::JobId) -> Vec<u8> {
    [JOB_PREFIX, job.as_bytes()].concat()
}

/// Prefix of completion records (`compute.v1.Completion`), by job then
/// big-endian task index.
pub const COMPLETION_PREFIX: &[u8] = b"done/";

/// The raw key of the completion record of task `task` of `job`.
pub fn completion_key(job: &crate::JobId, task: u32) -> Vec<u8> {
    [COMPLETION_PREFIX, job.as_bytes(), &task.to_be_bytes()].concat()
}

/// The raw key of `id`'s account record.
pub fn account_key(id: &crate::AccountId) -> Vec<u8> {
    [ACCOUNT_PREFIX, id.as_bytes()].concat()
}

/// The raw key of `id`'s worker record.
pub fn worker_key(id: &crate::AccountId) -> Vec<u8> {
    [WORKER_PREFIX, id.as_bytes()].concat()
}

/// The first byte of every leaf value: ICS-23 refuses empty values, and
/// many raw values are empty (index keys, protobuf records whose fields
/// are all zero), so a leaf holds this byte and then the raw value.
pub const LEAF_TAG: u8 = 0x01;

/// The leaf value of a raw value: [`LEAF_TAG`] then the raw bytes.
pub fn leaf_value(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + raw.len());
    out.push(LEAF_TAG);
    out.extend_from_slice(raw);
    out
}

/// The raw value in a leaf value, if it is one.
pub fn raw_value(leaf: &[u8]) -> Option<&[u8]> {
    match leaf.split_first() {
        Some((&LEAF_TAG, raw)) => Some(raw),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_is_the_tag_then_the_raw_value() {
        assert_eq!(leaf_value(b""), vec![LEAF_TAG]);
        assert_eq!(raw_value(&leaf_value(b"abc")), Some(&b"abc"[..]));
        assert_eq!(raw_value(b""), None);
        assert_eq!(raw_value(b"\x00abc"), None);
    }
}
