//! `UnbondValidator{amount}`: starts returning stake of the signer's
//! validator. The stake stops counting for power at once (the update goes
//! out through the queue) and returns to the operator's balance at the end
//! of block `height + unbonding_blocks`; until then it can be slashed.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::Ctx;
use crate::params::validator_params;
use crate::state::{keys, stored_account, StateRead};
use crate::store::StateTx;
use crate::validators::{self, PRIORITY_NORMAL};

/// Shape: nothing to check (`amount` 0 means all that is bonded).
pub fn check_stateless(_msg: &pb::UnbondValidator) -> Result<(), Rejection> {
    Ok(())
}

/// What an accepted unbonding does.
pub struct Unbonding {
    address: [u8; 20],
    record: pb::Validator,
    amount: u64,
    completion_height: i64,
}

/// The signer operates a validator with that much bonded, leaving either
/// nothing or at least `min_validator_stake`, with room for one more
/// unbonding.
pub fn check_stateful(
    msg: &pb::UnbondValidator,
    operator: &AccountId,
    ctx: &Ctx<'_>,
    state: &impl StateRead,
) -> Result<Unbonding, Rejection> {
    let p = validator_params(ctx.params);
    let (address, record) = validators::operated_by(operator, state)?;
    let key = stored_account(&record.pub_key);
    let amount = if msg.amount == 0 {
        record.bonded
    } else {
        msg.amount
    };
    if record.bonded == 0 || amount > record.bonded {
        return Err(Rejection::InsufficientStake {
            key,
            bonded: record.bonded,
            asked: msg.amount,
        });
    }
    let left = record.bonded.saturating_sub(amount);
    if left > 0 && left < p.min_validator_stake {
        return Err(Rejection::ValidatorStakeTooLow {
            what: "this unbonding",
            stake: left,
            min: p.min_validator_stake,
            hint: "unbond all (amount 0) or leave at least min_validator_stake bonded",
        });
    }
    let completion_height = i64::try_from(p.unbonding_blocks)
        .ok()
        .and_then(|blocks| ctx.height_i64().checked_add(blocks))
        .ok_or(Rejection::Overflow("unbonding completion height"))?;
    let merges = record
        .unbonding
        .last()
        .is_some_and(|u| u.completion_height == completion_height);
    let max = usize::try_from(p.max_unbonding_entries).unwrap_or(usize::MAX);
    if !merges && record.unbonding.len() >= max {
        return Err(Rejection::TooManyUnbondings {
            key,
            max: p.max_unbonding_entries,
            next: record
                .unbonding
                .first()
                .map_or(completion_height, |u| u.completion_height),
        });
    }
    Ok(Unbonding {
        address,
        record,
        amount,
        completion_height,
    })
}

/// Moves the stake from bonded to unbonding and queues the power change.
pub fn execute(
    unbonding: Unbonding,
    operator: &AccountId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let p = validator_params(ctx.params);
    let Unbonding {
        address,
        mut record,
        amount,
        completion_height,
    } = unbonding;
    record.bonded = record.bonded.saturating_sub(amount);
    match record.unbonding.last_mut() {
        Some(last) if last.completion_height == completion_height => {
            last.amount = last
                .amount
                .checked_add(amount)
                .ok_or(Rejection::Overflow("unbonding stake"))?;
        }
        _ => record.unbonding.push(pb::Unbonding {
            amount,
            completion_height,
        }),
    }
    let at = u64::try_from(completion_height).map_err(|_| Rejection::Overflow("height"))?;
    state.put_raw(keys::unbonding(at, &address), address.to_vec());
    let key = stored_account(&record.pub_key);
    let bonded = record.bonded;
    let power = validators::target_power(&record, &p);
    validators::save(state, &address, record, &p, PRIORITY_NORMAL);
    Ok(vec![event(
        "validator_unbonding",
        &[
            ("validator", key.to_hex(), true),
            ("operator", operator.to_hex(), true),
            ("amount", amount.to_string(), false),
            ("completion_height", completion_height.to_string(), false),
            ("bonded", bonded.to_string(), false),
            ("power", power.to_string(), false),
        ],
    )])
}
