//! `UnjailValidator{}`: returns the signer's jailed validator to the set
//! once its jail time is over (its power goes out through the update
//! queue). A jailed validator with nothing bonded or unbonding is removed
//! instead, which frees its record.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::Ctx;
use crate::params::validator_params;
use crate::state::{stored_account, StateRead};
use crate::store::StateTx;
use crate::validators::{self, PRIORITY_NORMAL};

/// Shape: nothing to check, the message is empty.
pub fn check_stateless(_msg: &pb::UnjailValidator) -> Result<(), Rejection> {
    Ok(())
}

/// The signer operates a jailed validator whose jail time is over, with
/// either nothing or at least `min_validator_stake` bonded.
pub fn check_stateful(
    operator: &AccountId,
    ctx: &Ctx<'_>,
    state: &impl StateRead,
) -> Result<([u8; 20], pb::Validator), Rejection> {
    let p = validator_params(ctx.params);
    let (address, record) = validators::operated_by(operator, state)?;
    let key = stored_account(&record.pub_key);
    let Some(reason) = validators::jail_reason_name(&record) else {
        return Err(Rejection::NotJailed(key));
    };
    if ctx.height_i64() < record.jailed_until {
        return Err(Rejection::ValidatorJailed {
            key,
            reason,
            until: record.jailed_until,
        });
    }
    if record.bonded > 0 && record.bonded < p.min_validator_stake {
        return Err(Rejection::ValidatorStakeTooLow {
            what: "unjailing",
            stake: record.bonded,
            min: p.min_validator_stake,
            hint: "bond more with BondValidator first",
        });
    }
    Ok((address, record))
}

/// Lifts the jail and queues the validator's power.
pub fn execute(
    address: [u8; 20],
    mut record: pb::Validator,
    operator: &AccountId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let p = validator_params(ctx.params);
    record.jailed_until = 0;
    record.jail_reason = pb::JailReason::Unspecified as i32;
    let key = stored_account(&record.pub_key);
    let power = validators::target_power(&record, &p);
    validators::save(state, &address, record, &p, PRIORITY_NORMAL);
    Ok(vec![event(
        "validator_unjailed",
        &[
            ("validator", key.to_hex(), true),
            ("operator", operator.to_hex(), true),
            ("power", power.to_string(), false),
        ],
    )])
}
