//! Chain parameters: their defaults, how genesis overrides them, and the
//! checks that keep related limits consistent.

use compute_proto::limits::{TX_BYTES_CEILING, TX_BYTES_FLOOR};
use compute_proto::pb;

pub use compute_proto::limits::TX_ENVELOPE_BYTES;

/// Fuel each verification counts against the block budget at least: the
/// fixed part of a run (an instance, copying input and output in), which
/// `verify_fuel` does not meter.
pub const VERIFY_BASE_FUEL: u64 = 1_000_000;

/// Fuel each referee run counts against the block budget beyond its job's
/// fuel limit: the fixed part of a run, as for `verify`.
pub const REFEREE_BASE_FUEL: u64 = VERIFY_BASE_FUEL;

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
        // Validator parameters have explicit presence: `None` is the
        // default of [`VALIDATOR_DEFAULTS`], and genesis stores only those
        // it names (see [`resolved`]).
        min_validator_stake: None,
        stake_per_power: None,
        max_validator_power: None,
        max_validators: None,
        max_validator_updates_per_block: None,
        unbonding_blocks: None,
        max_unbonding_entries: None,
        slash_double_sign_ppm: None,
        double_sign_jail_blocks: None,
        signed_blocks_window: None,
        jail_missed_ppm: None,
        jail_blocks: None,
        slash_missed_ppm: None,
        dispute_window_blocks: None,
        min_dispute_bond: None,
        dispute_bounty_ppm: None,
        max_referee_fuel: None,
        max_referee_fuel_per_block: None,
    }
}

/// The dispute parameters, resolved: what the rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisputeParams {
    /// Blocks after a task settles during which it may be disputed.
    pub dispute_window_blocks: u64,
    /// Credits a dispute bonds at least.
    pub min_dispute_bond: u64,
    /// Share of an overturned quorum's slash paid to the disputer, in ppm.
    pub dispute_bounty_ppm: u32,
    /// The largest fuel limit of a job whose tasks may be disputed.
    pub max_referee_fuel: u64,
    /// Fuel the referee may spend in one block.
    pub max_referee_fuel_per_block: u64,
}

/// The defaults of the dispute parameters (`docs/PARAMETERS.md`).
pub const DISPUTE_DEFAULTS: DisputeParams = DisputeParams {
    // Ten minutes of one-second blocks: time for a watcher to fetch the
    // input, re-run the task and send its dispute.
    dispute_window_blocks: 600,
    min_dispute_bond: 1_000,
    dispute_bounty_ppm: 500_000,
    // As `max_verify_fuel_per_block`: measured in docs/BENCHMARKS.md to keep
    // a block's chain-side wasm well under a second.
    max_referee_fuel: 400_000_000,
    max_referee_fuel_per_block: 401_000_000,
};

/// The most blocks `dispute_window_blocks` may span.
pub const MAX_DISPUTE_WINDOW_BLOCKS: u64 = 1_000_000;

/// The dispute parameters of `p`, defaults filled in.
pub fn dispute_params(p: &pb::Params) -> DisputeParams {
    let d = DISPUTE_DEFAULTS;
    DisputeParams {
        dispute_window_blocks: p.dispute_window_blocks.unwrap_or(d.dispute_window_blocks),
        min_dispute_bond: p.min_dispute_bond.unwrap_or(d.min_dispute_bond),
        dispute_bounty_ppm: p.dispute_bounty_ppm.unwrap_or(d.dispute_bounty_ppm),
        max_referee_fuel: p.max_referee_fuel.unwrap_or(d.max_referee_fuel),
        max_referee_fuel_per_block: p
            .max_referee_fuel_per_block
            .unwrap_or(d.max_referee_fuel_per_block),
    }
}

/// The validator parameters, resolved: what the rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorParams {
    /// Credits a new validator must bond at least.
    pub min_validator_stake: u64,
    /// Credits of bonded stake per unit of voting power.
    pub stake_per_power: u64,
    /// The most voting power one validator gets.
    pub max_validator_power: u64,
    /// Validator records the chain keeps at most.
    pub max_validators: u32,
    /// Entries of the update queue the end of a block visits at most.
    pub max_validator_updates_per_block: u32,
    /// Blocks unbonding stake waits before it returns.
    pub unbonding_blocks: u64,
    /// Unbondings in progress per validator at most.
    pub max_unbonding_entries: u32,
    /// Share of stake slashed for double signing, in ppm.
    pub slash_double_sign_ppm: u32,
    /// Blocks a double signer stays jailed.
    pub double_sign_jail_blocks: u64,
    /// Blocks over which liveness is judged.
    pub signed_blocks_window: u64,
    /// Missing more than this share of the window jails, in ppm.
    pub jail_missed_ppm: u32,
    /// Blocks a validator jailed for missing blocks stays jailed.
    pub jail_blocks: u64,
    /// Share of stake slashed when jailed for missing blocks, in ppm.
    pub slash_missed_ppm: u32,
}

/// The defaults of the validator parameters (`docs/PARAMETERS.md`).
pub const VALIDATOR_DEFAULTS: ValidatorParams = ValidatorParams {
    min_validator_stake: 100_000,
    // 100,000 credits bond 10 units of power, what `cometbft init` gives
    // a genesis validator.
    stake_per_power: 10_000,
    max_validator_power: 1_000,
    max_validators: 100,
    max_validator_updates_per_block: 10,
    // Longer than CometBFT's default evidence age (100,000 blocks and 48
    // hours, whichever is longer), so evidence always finds the stake.
    unbonding_blocks: 200_000,
    max_unbonding_entries: 7,
    slash_double_sign_ppm: 50_000,
    double_sign_jail_blocks: 1_000_000,
    signed_blocks_window: 100,
    jail_missed_ppm: 500_000,
    jail_blocks: 600,
    slash_missed_ppm: 100,
};

/// The most blocks `signed_blocks_window` may span (a validator's liveness
/// record holds at most that many heights).
pub const MAX_SIGNED_BLOCKS_WINDOW: u64 = 10_000;

/// The most voting power all validators the application sets may have
/// together: half of CometBFT's `MaxTotalVotingPower` (`i64::MAX / 8`),
/// leaving the other half to genesis validators.
pub const MAX_BONDED_POWER: u64 = (i64::MAX as u64) / 16;

/// The validator parameters of `p`, defaults filled in.
pub fn validator_params(p: &pb::Params) -> ValidatorParams {
    let d = VALIDATOR_DEFAULTS;
    ValidatorParams {
        min_validator_stake: p.min_validator_stake.unwrap_or(d.min_validator_stake),
        stake_per_power: p.stake_per_power.unwrap_or(d.stake_per_power),
        max_validator_power: p.max_validator_power.unwrap_or(d.max_validator_power),
        max_validators: p.max_validators.unwrap_or(d.max_validators),
        max_validator_updates_per_block: p
            .max_validator_updates_per_block
            .unwrap_or(d.max_validator_updates_per_block),
        unbonding_blocks: p.unbonding_blocks.unwrap_or(d.unbonding_blocks),
        max_unbonding_entries: p.max_unbonding_entries.unwrap_or(d.max_unbonding_entries),
        slash_double_sign_ppm: p.slash_double_sign_ppm.unwrap_or(d.slash_double_sign_ppm),
        double_sign_jail_blocks: p
            .double_sign_jail_blocks
            .unwrap_or(d.double_sign_jail_blocks),
        signed_blocks_window: p.signed_blocks_window.unwrap_or(d.signed_blocks_window),
        jail_missed_ppm: p.jail_missed_ppm.unwrap_or(d.jail_missed_ppm),
        jail_blocks: p.jail_blocks.unwrap_or(d.jail_blocks),
        slash_missed_ppm: p.slash_missed_ppm.unwrap_or(d.slash_missed_ppm),
    }
}

/// `p` with every parameter that has explicit presence filled in: what
/// `/params` shows and the state machine holds. Genesis stores the sparse
/// form, so a chain whose genesis names no validator parameter keeps the
/// parameter record (and app hashes) it had before they existed.
pub fn resolved(mut p: pb::Params) -> pb::Params {
    let v = validator_params(&p);
    p.min_validator_stake = Some(v.min_validator_stake);
    p.stake_per_power = Some(v.stake_per_power);
    p.max_validator_power = Some(v.max_validator_power);
    p.max_validators = Some(v.max_validators);
    p.max_validator_updates_per_block = Some(v.max_validator_updates_per_block);
    p.unbonding_blocks = Some(v.unbonding_blocks);
    p.max_unbonding_entries = Some(v.max_unbonding_entries);
    p.slash_double_sign_ppm = Some(v.slash_double_sign_ppm);
    p.double_sign_jail_blocks = Some(v.double_sign_jail_blocks);
    p.signed_blocks_window = Some(v.signed_blocks_window);
    p.jail_missed_ppm = Some(v.jail_missed_ppm);
    p.jail_blocks = Some(v.jail_blocks);
    p.slash_missed_ppm = Some(v.slash_missed_ppm);
    let d = dispute_params(&p);
    p.dispute_window_blocks = Some(d.dispute_window_blocks);
    p.min_dispute_bond = Some(d.min_dispute_bond);
    p.dispute_bounty_ppm = Some(d.dispute_bounty_ppm);
    p.max_referee_fuel = Some(d.max_referee_fuel);
    p.max_referee_fuel_per_block = Some(d.max_referee_fuel_per_block);
    p
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
    if p.max_verify_fuel_per_block < p.max_verify_fuel.saturating_add(VERIFY_BASE_FUEL) {
        return fail(format!(
            "max_verify_fuel_per_block {} must cover one verification at max_verify_fuel {} plus {} of fixed cost, or no Verified job could ever be judged",
            p.max_verify_fuel_per_block,
            p.max_verify_fuel,
            VERIFY_BASE_FUEL
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
    validate_validators(&validator_params(p))?;
    validate_disputes(&dispute_params(p))
}

/// The checks between the dispute parameters.
fn validate_disputes(d: &DisputeParams) -> Result<(), ParamsError> {
    let fail = |msg: String| Err(ParamsError::Inconsistent(msg));
    if !(1..=MAX_DISPUTE_WINDOW_BLOCKS).contains(&d.dispute_window_blocks) {
        return fail(format!(
            "dispute_window_blocks {} must be between 1 and {MAX_DISPUTE_WINDOW_BLOCKS}",
            d.dispute_window_blocks
        ));
    }
    if d.min_dispute_bond == 0 {
        return fail(
            "min_dispute_bond must be at least 1, or disputes would cost nothing to spam".into(),
        );
    }
    if d.dispute_bounty_ppm > 1_000_000 {
        return fail(format!(
            "dispute_bounty_ppm {} must be at most 1000000 (100%)",
            d.dispute_bounty_ppm
        ));
    }
    let base = REFEREE_BASE_FUEL;
    if d.max_referee_fuel == 0
        || d.max_referee_fuel_per_block < d.max_referee_fuel.saturating_add(base)
    {
        return fail(format!(
            "max_referee_fuel {} must be at least 1, and max_referee_fuel_per_block {} must cover one run at max_referee_fuel plus {base} of fixed cost, or an accepted dispute could never be judged",
            d.max_referee_fuel, d.max_referee_fuel_per_block
        ));
    }
    Ok(())
}

/// The checks between the validator parameters.
fn validate_validators(v: &ValidatorParams) -> Result<(), ParamsError> {
    let fail = |msg: String| Err(ParamsError::Inconsistent(msg));
    if v.stake_per_power == 0 {
        return fail("stake_per_power must be at least 1".into());
    }
    if v.min_validator_stake < v.stake_per_power {
        return fail(format!(
            "min_validator_stake {} must be at least stake_per_power {}, so that every validator has voting power",
            v.min_validator_stake, v.stake_per_power
        ));
    }
    if v.max_validators == 0 || v.max_validator_updates_per_block == 0 {
        return fail(
            "max_validators and max_validator_updates_per_block must be at least 1".into(),
        );
    }
    let total = u128::from(v.max_validator_power).saturating_mul(u128::from(v.max_validators));
    if v.max_validator_power == 0 || total > u128::from(MAX_BONDED_POWER) {
        return fail(format!(
            "max_validator_power {} must be at least 1, and max_validator_power x max_validators ({total}) at most {MAX_BONDED_POWER} (half of CometBFT's largest total voting power)",
            v.max_validator_power
        ));
    }
    if v.unbonding_blocks == 0 || v.jail_blocks == 0 || v.double_sign_jail_blocks == 0 {
        return fail(
            "unbonding_blocks, jail_blocks and double_sign_jail_blocks must be at least 1".into(),
        );
    }
    if v.max_unbonding_entries == 0 {
        return fail("max_unbonding_entries must be at least 1".into());
    }
    if !(1..=MAX_SIGNED_BLOCKS_WINDOW).contains(&v.signed_blocks_window) {
        return fail(format!(
            "signed_blocks_window {} must be between 1 and {MAX_SIGNED_BLOCKS_WINDOW}",
            v.signed_blocks_window
        ));
    }
    for (name, value) in [
        ("slash_double_sign_ppm", v.slash_double_sign_ppm),
        ("jail_missed_ppm", v.jail_missed_ppm),
        ("slash_missed_ppm", v.slash_missed_ppm),
    ] {
        if value > 1_000_000 {
            return fail(format!("{name} {value} must be at most 1000000 (100%)"));
        }
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
    fn validator_parameters_are_stored_only_when_named() {
        let p = from_genesis(None).unwrap();
        assert_eq!(p.unbonding_blocks, None);
        assert_eq!(validator_params(&p), VALIDATOR_DEFAULTS);
        let p = from_genesis(Some(&json!({"unbonding_blocks": 5}))).unwrap();
        assert_eq!(p.unbonding_blocks, Some(5));
        assert_eq!(p.jail_blocks, None);
        assert_eq!(validator_params(&p).unbonding_blocks, 5);
        let full = resolved(p);
        assert_eq!(full.jail_blocks, Some(VALIDATOR_DEFAULTS.jail_blocks));
        assert_eq!(validator_params(&full).unbonding_blocks, 5);
        // The encoding of default parameters does not change with them.
        use prost::Message;
        assert_eq!(
            defaults().encode_to_vec(),
            pb::Params {
                min_validator_stake: None,
                ..defaults()
            }
            .encode_to_vec()
        );
    }

    #[test]
    fn inconsistent_validator_parameters_are_refused() {
        for (bad, name) in [
            (json!({"stake_per_power": 0}), "stake_per_power"),
            (
                json!({"min_validator_stake": 5, "stake_per_power": 10}),
                "min_validator_stake",
            ),
            (json!({"max_validators": 0}), "max_validators"),
            (
                json!({"max_validator_power": u64::MAX}),
                "max_validator_power",
            ),
            (json!({"unbonding_blocks": 0}), "unbonding_blocks"),
            (json!({"signed_blocks_window": 0}), "signed_blocks_window"),
            (
                json!({"signed_blocks_window": 10_001}),
                "signed_blocks_window",
            ),
            (json!({"jail_missed_ppm": 1_000_001}), "jail_missed_ppm"),
            (
                json!({"slash_double_sign_ppm": 2_000_000}),
                "slash_double_sign_ppm",
            ),
            (json!({"max_unbonding_entries": 0}), "max_unbonding_entries"),
        ] {
            assert!(
                matches!(from_genesis(Some(&bad)), Err(ParamsError::Inconsistent(ref m)) if m.contains(name)),
                "{bad}: {:?}",
                from_genesis(Some(&bad))
            );
        }
    }

    #[test]
    fn inconsistent_dispute_parameters_are_refused() {
        assert_eq!(
            dispute_params(&from_genesis(None).unwrap()),
            DISPUTE_DEFAULTS
        );
        for (bad, name) in [
            (json!({"dispute_window_blocks": 0}), "dispute_window_blocks"),
            (
                json!({"dispute_window_blocks": MAX_DISPUTE_WINDOW_BLOCKS + 1}),
                "dispute_window_blocks",
            ),
            (json!({"min_dispute_bond": 0}), "min_dispute_bond"),
            (
                json!({"dispute_bounty_ppm": 1_000_001}),
                "dispute_bounty_ppm",
            ),
            (json!({"max_referee_fuel": 0}), "max_referee_fuel"),
            (
                json!({"max_referee_fuel": 1_000, "max_referee_fuel_per_block": 1_000}),
                "max_referee_fuel_per_block",
            ),
        ] {
            assert!(
                matches!(from_genesis(Some(&bad)), Err(ParamsError::Inconsistent(ref m)) if m.contains(name)),
                "{bad}: {:?}",
                from_genesis(Some(&bad))
            );
        }
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
