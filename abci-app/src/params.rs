//! Chain parameters: their defaults, how genesis overrides them, and the
//! checks that keep related limits consistent.

use compute_proto::limits::{TX_BYTES_CEILING, TX_BYTES_FLOOR};
use compute_proto::pb;

pub use compute_proto::limits::TX_ENVELOPE_BYTES;

/// The parameters a chain gets when genesis names none.
pub fn defaults() -> pb::Params {
    pb::Params {
        // CometBFT's own mempool default; a module must fit in one tx.
        max_tx_bytes: 1024 * 1024,
        max_module_bytes: 512 * 1024,
        max_inline_input_bytes: 16 * 1024,
        max_inline_output_bytes: 16 * 1024,
        max_tasks_per_job: 1024,
        min_replicas: 1,
        max_replicas: 7,
        min_quorum: 1,
        max_fuel_per_task: 10_000_000_000,
        max_verify_fuel: 100_000_000,
        commit_window_blocks: 20,
        reveal_window_blocks: 20,
        max_deadline_blocks: 10_000,
        block_reward: 1_000,
        slash_ppm: 100_000,
        max_pending_txs_per_account: 64,
        // 64 MiB of guest memory.
        sandbox_memory_pages: 1024,
        max_worker_capacity: 64,
        min_worker_stake: 0,
        stake_weight_cap: 1_000_000,
        stake_unit: 100_000,
        min_fee: 0,
        max_open_jobs: 10_000,
        max_workers: 10_000,
        max_assignments_per_block: 512,
        max_deadline_visits_per_block: 1_024,
        // Four verifications at the largest verify_fuel; measured in
        // docs/BENCHMARKS.md to keep a block's verify work well under 1 s.
        max_verify_fuel_per_block: 404_000_000,
        // One of the costliest admissible modules: a unit is about a
        // microsecond of compiling, and every validator compiles each
        // module of a block (docs/BENCHMARKS.md, worst blocks).
        max_compile_units_per_block: 400_000,
        store_module_fee_per_kib: 1,
    }
}

/// Why a parameter set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A name in genesis `params` is not a parameter.
    #[error("unknown parameter '{0}' in genesis params (see docs/PARAMETERS.md for the names)")]
    Unknown(String),
    /// A value has the wrong JSON type or range.
    #[error("genesis params: {0}")]
    Format(String),
    /// A limit contradicts another.
    #[error("inconsistent parameters: {0}")]
    Inconsistent(String),
}

/// Overrides the defaults with the fields of a genesis `params` object.
///
/// # Errors
/// [`ParamsError`] for unknown names, bad values or inconsistent limits.
pub fn from_genesis(overrides: Option<&serde_json::Value>) -> Result<pb::Params, ParamsError> {
    let mut merged =
        serde_json::to_value(defaults()).map_err(|e| ParamsError::Format(e.to_string()))?;
    if let Some(overrides) = overrides {
        let fields = overrides
            .as_object()
            .ok_or_else(|| ParamsError::Format("`params` must be a JSON object".into()))?;
        let target = merged
            .as_object_mut()
            .ok_or_else(|| ParamsError::Format("defaults are not an object".into()))?;
        for (name, value) in fields {
            match target.get_mut(name) {
                Some(slot) => *slot = value.clone(),
                None => return Err(ParamsError::Unknown(name.clone())),
            }
        }
    }
    let params: pb::Params =
        serde_json::from_value(merged).map_err(|e| ParamsError::Format(e.to_string()))?;
    validate(&params)?;
    Ok(params)
}

/// Checks that related limits agree with each other.
///
/// # Errors
/// [`ParamsError::Inconsistent`] naming the first contradiction.
pub fn validate(p: &pb::Params) -> Result<(), ParamsError> {
    let fail = |msg: String| Err(ParamsError::Inconsistent(msg));
    if !(TX_BYTES_FLOOR..=TX_BYTES_CEILING).contains(&p.max_tx_bytes) {
        return fail(format!(
            "max_tx_bytes {} must be between {TX_BYTES_FLOOR} and {TX_BYTES_CEILING} (4 MiB, the largest transaction a gateway relays)",
            p.max_tx_bytes
        ));
    }
    if p.max_module_bytes.saturating_add(TX_ENVELOPE_BYTES) > p.max_tx_bytes {
        return fail(format!(
            "max_module_bytes {} plus {TX_ENVELOPE_BYTES} bytes of envelope must fit in max_tx_bytes {}",
            p.max_module_bytes, p.max_tx_bytes
        ));
    }
    for (name, value) in [
        ("max_inline_input_bytes", p.max_inline_input_bytes),
        ("max_inline_output_bytes", p.max_inline_output_bytes),
    ] {
        if value.saturating_add(TX_ENVELOPE_BYTES) > p.max_tx_bytes {
            return fail(format!(
                "{name} {value} must fit in max_tx_bytes {}",
                p.max_tx_bytes
            ));
        }
    }
    if p.max_tasks_per_job == 0 {
        return fail("max_tasks_per_job must be at least 1".into());
    }
    if p.min_replicas == 0 || p.min_replicas > p.max_replicas {
        return fail(format!(
            "replicas must satisfy 1 <= min_replicas ({}) <= max_replicas ({})",
            p.min_replicas, p.max_replicas
        ));
    }
    if p.min_quorum == 0 || p.min_quorum > p.max_replicas {
        return fail(format!(
            "quorum must satisfy 1 <= min_quorum ({}) <= max_replicas ({})",
            p.min_quorum, p.max_replicas
        ));
    }
    if p.max_fuel_per_task == 0 || p.max_verify_fuel == 0 {
        return fail("max_fuel_per_task and max_verify_fuel must be positive".into());
    }
    if p.commit_window_blocks == 0 || p.reveal_window_blocks == 0 {
        return fail("commit_window_blocks and reveal_window_blocks must be positive".into());
    }
    if p.max_deadline_blocks
        < p.commit_window_blocks
            .saturating_add(p.reveal_window_blocks)
    {
        return fail(format!(
            "max_deadline_blocks {} must leave room for one commit and one reveal window ({} + {})",
            p.max_deadline_blocks, p.commit_window_blocks, p.reveal_window_blocks
        ));
    }
    if p.slash_ppm > 1_000_000 {
        return fail(format!(
            "slash_ppm {} must be at most 1000000 (100%)",
            p.slash_ppm
        ));
    }
    if p.max_pending_txs_per_account == 0 {
        return fail("max_pending_txs_per_account must be at least 1".into());
    }
    if p.sandbox_memory_pages == 0 || p.sandbox_memory_pages > 65_536 {
        return fail(format!(
            "sandbox_memory_pages {} must be between 1 and 65536 (4 GiB)",
            p.sandbox_memory_pages
        ));
    }
    if p.max_worker_capacity == 0 || p.max_workers == 0 || p.max_open_jobs == 0 {
        return fail(
            "max_worker_capacity, max_workers and max_open_jobs must be at least 1".into(),
        );
    }
    if p.max_assignments_per_block == 0 || p.max_deadline_visits_per_block == 0 {
        return fail(
            "max_assignments_per_block and max_deadline_visits_per_block must be at least 1".into(),
        );
    }
    if p.max_verify_fuel_per_block
        < p.max_verify_fuel
            .saturating_add(crate::judge::VERIFY_BASE_FUEL)
    {
        return fail(format!(
            "max_verify_fuel_per_block {} must cover one verification at max_verify_fuel {} plus {} of fixed cost, or no Verified job could ever be judged",
            p.max_verify_fuel_per_block,
            p.max_verify_fuel,
            crate::judge::VERIFY_BASE_FUEL
        ));
    }
    let module_units_max = u64::from(compute_sandbox::ModuleLimits::default().compile_units_max);
    if p.max_compile_units_per_block < module_units_max {
        return fail(format!(
            "max_compile_units_per_block {} must fit one module of the sandbox's compile_units_max {module_units_max}",
            p.max_compile_units_per_block
        ));
    }
    if p.stake_unit == 0 {
        return fail("stake_unit must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_consistent() {
        validate(&defaults()).unwrap();
        assert_eq!(from_genesis(None).unwrap(), defaults());
    }

    #[test]
    fn genesis_overrides_single_fields() {
        let p = from_genesis(Some(&json!({"block_reward": 7, "min_fee": 2}))).unwrap();
        assert_eq!(p.block_reward, 7);
        assert_eq!(p.min_fee, 2);
        assert_eq!(p.max_tx_bytes, defaults().max_tx_bytes);
    }

    #[test]
    fn bad_genesis_params_are_refused_with_their_name() {
        assert_eq!(
            from_genesis(Some(&json!({"blok_reward": 7}))),
            Err(ParamsError::Unknown("blok_reward".into()))
        );
        assert!(matches!(
            from_genesis(Some(&json!({"block_reward": -1}))),
            Err(ParamsError::Format(_))
        ));
        assert!(matches!(
            from_genesis(Some(&json!({"max_module_bytes": 2_000_000}))),
            Err(ParamsError::Inconsistent(m)) if m.contains("max_module_bytes")
        ));
        assert!(matches!(
            from_genesis(Some(&json!({"min_replicas": 9}))),
            Err(ParamsError::Inconsistent(m)) if m.contains("min_replicas")
        ));
        assert!(matches!(
            from_genesis(Some(&json!([1]))),
            Err(ParamsError::Format(_))
        ));
        // Budgets that could never admit the largest verification or module.
        assert!(matches!(
            from_genesis(Some(&json!({"max_verify_fuel_per_block": 100_000_000}))),
            Err(ParamsError::Inconsistent(m)) if m.contains("max_verify_fuel_per_block")
        ));
        assert!(matches!(
            from_genesis(Some(&json!({"max_compile_units_per_block": 1}))),
            Err(ParamsError::Inconsistent(m)) if m.contains("max_compile_units_per_block")
        ));
    }

    #[test]
    fn max_tx_bytes_stays_within_what_a_gateway_relays() {
        let at_ceiling = json!({"max_tx_bytes": TX_BYTES_CEILING});
        assert_eq!(
            from_genesis(Some(&at_ceiling)).unwrap().max_tx_bytes,
            TX_BYTES_CEILING
        );
        for bad in [TX_BYTES_CEILING + 1, 64 * 1024 * 1024, TX_BYTES_FLOOR - 1] {
            assert!(matches!(
                from_genesis(Some(&json!({"max_tx_bytes": bad, "max_module_bytes": 2048,
                    "max_inline_input_bytes": 1024, "max_inline_output_bytes": 1024}))),
                Err(ParamsError::Inconsistent(m)) if m.contains("max_tx_bytes")
            ));
        }
    }
}
