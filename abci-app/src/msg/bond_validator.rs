//! `BondValidator{pub_key, stake}`: locks credits behind a validator with
//! that consensus key. The signer becomes (or stays) its operator and earns
//! its block rewards; bonding again to its own validator adds stake. See
//! [`crate::validators`] for power, the update queue and punishment.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{debit, require_funds, Ctx};
use crate::params::validator_params;
use crate::state::{stored_account, StateRead};
use crate::store::StateTx;
use crate::validators::{self, address_of, PRIORITY_NORMAL};

const MSG: &str = "BondValidator";

/// Shape: a consensus key the chain accepts, a positive stake.
pub fn check_stateless(msg: &pb::BondValidator) -> Result<[u8; 32], Rejection> {
    let invalid = |reason: String| Rejection::InvalidMessage { msg: MSG, reason };
    let key = <[u8; 32]>::try_from(msg.pub_key.as_slice()).map_err(|_| {
        invalid(format!(
            "pub_key must be a 32-byte ed25519 consensus key, got {} bytes",
            msg.pub_key.len()
        ))
    })?;
    compute_proto::check_public_key(&key)
        .map_err(|e| invalid(format!("pub_key {} {e}", AccountId(key))))?;
    if msg.stake == 0 {
        return Err(invalid("stake must be positive".into()));
    }
    Ok(key)
}

/// The key is free or the signer's own validator's; the signer operates no
/// other validator; room for a new record; the stake is affordable and at
/// least `min_validator_stake` for a new validator.
pub fn check_stateful(
    msg: &pb::BondValidator,
    key: &[u8; 32],
    operator: &AccountId,
    fee: u64,
    params: &pb::Params,
    state: &impl StateRead,
) -> Result<(), Rejection> {
    let p = validator_params(params);
    let address = address_of(key);
    if let Some(mine) = state.validator_of(operator) {
        if mine != address {
            let other = state
                .validator_record(&mine)
                .map(|v| stored_account(&v.pub_key))
                .unwrap_or(AccountId([0; 32]));
            return Err(Rejection::ValidatorExists {
                operator: *operator,
                key: other,
            });
        }
    }
    match state.validator_record(&address) {
        Some(v) => {
            let owner = stored_account(&v.operator);
            if v.pub_key != key.as_slice() || owner != *operator {
                return Err(Rejection::ValidatorKeyTaken {
                    key: AccountId(*key),
                    why: format!("backs the validator of {owner}"),
                });
            }
            v.bonded
                .checked_add(msg.stake)
                .ok_or(Rejection::Overflow("bonded stake"))?;
        }
        None => {
            if let Some(genesis) = state.genesis_validator(&address) {
                if genesis.0 != *key || genesis != *operator {
                    return Err(Rejection::ValidatorKeyTaken {
                        key: AccountId(*key),
                        why: "is a genesis validator's consensus key: only that key's own account may bond it".to_owned(),
                    });
                }
            }
            if validators::record_count(state) >= u64::from(p.max_validators) {
                return Err(Rejection::TooManyValidators {
                    max: p.max_validators,
                });
            }
            if msg.stake < p.min_validator_stake {
                return Err(Rejection::ValidatorStakeTooLow {
                    what: "bonding a new validator",
                    stake: msg.stake,
                    min: p.min_validator_stake,
                    hint: "bond at least min_validator_stake (see /params)",
                });
            }
        }
    }
    require_funds(state, operator, msg.stake, fee)
}

/// Moves the stake from the balance into the validator record and queues
/// its new power.
pub fn execute(
    msg: &pb::BondValidator,
    key: &[u8; 32],
    operator: &AccountId,
    ctx: &Ctx<'_>,
    state: &mut StateTx<'_>,
) -> Result<Vec<Event>, Rejection> {
    let p = validator_params(ctx.params);
    let address = address_of(key);
    debit(state, operator, msg.stake)?;
    let mut v = match state.validator_record(&address) {
        Some(v) => v,
        None => validators::new_record(state, key, operator, ctx.height_i64()),
    };
    v.bonded = v
        .bonded
        .checked_add(msg.stake)
        .ok_or(Rejection::Overflow("bonded stake"))?;
    let bonded = v.bonded;
    let power = validators::target_power(&v, &p);
    validators::save(state, &address, v, &p, PRIORITY_NORMAL);
    Ok(vec![event(
        "validator_bonded",
        &[
            ("validator", AccountId(*key).to_hex(), true),
            ("operator", operator.to_hex(), true),
            ("address", hex::encode(address), false),
            ("stake", msg.stake.to_string(), false),
            ("bonded", bonded.to_string(), false),
            ("power", power.to_string(), false),
        ],
    )])
}
