//! Validators by stake: voting power from bonded credits, the update queue
//! that feeds CometBFT's `validator_updates`, unbonding, jailing and
//! slashing, and the `/validators` queries.
//!
//! * A validator record (`vrec/<address>`) exists for every validator the
//!   application manages: one some account bonded stake behind, or a
//!   genesis validator the chain punished. Genesis validators without a
//!   record keep the power CometBFT's genesis gave them; the application
//!   never learns it and never changes it unless their own key bonds.
//! * Power is `min(bonded / stake_per_power, max_validator_power)`, or 0
//!   while jailed or below `min_validator_stake`: a fixed cap per validator,
//!   so one validator's stake never changes another's power and each change
//!   is one update.
//! * A change of a record's target power puts it in the update queue
//!   (`vupd/<priority><sequence>`, punishments first, then first come first
//!   served); the end of a block visits at most
//!   `max_validator_updates_per_block` entries and sends each changed power
//!   to CometBFT, which applies it two blocks later. A removal is never
//!   sent for a validator CometBFT does not have, nor one that would leave
//!   CometBFT's set empty (it waits in the queue).
//! * Unbonding stake leaves the power at once and returns to the operator's
//!   balance at the end of block `height + unbonding_blocks`; it can be
//!   slashed until then.
//! * Misbehaviour (CometBFT's evidence) slashes `slash_double_sign_ppm` of
//!   bonded and unbonding stake and jails the validator for
//!   `double_sign_jail_blocks`; further evidence during that jail is ignored
//!   (one slash per episode). Evidence against a key the chain does not know
//!   is ignored.
//! * Liveness: a validator that misses (vote flag `ABSENT`) more than
//!   `jail_missed_ppm` of the last `signed_blocks_window` commits is jailed
//!   for `jail_blocks` and slashed `slash_missed_ppm`. Only misses are
//!   written, so a validator that signs costs no state writes.
//!
//! Every step writes nothing when no validator record exists, so chains that
//! never bond keep their app hashes.

use compute_proto::views::{UnbondingView, ValidatorView, ValidatorsPage};
use compute_proto::{pb, AccountId};

use crate::codes::{Code, Rejection};
use crate::events::{event, Event};
use crate::ledger::{ppm_share, update_stats, Ctx};
use crate::params::{validator_params, ValidatorParams};
use crate::state::{keys, stored_account, StateRead};
use crate::store::{KvRead, StateTx};

/// A change of one validator's voting power for CometBFT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidatorUpdate {
    /// The ed25519 consensus key.
    pub pub_key: [u8; 32],
    /// The new power; 0 removes the validator.
    pub power: u64,
}

/// One validator of the last commit (`decided_last_commit.votes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The validator's 20-byte address.
    pub address: Vec<u8>,
    /// Whether its vote is absent from the commit (flag `ABSENT`).
    pub missed: bool,
}

/// What kind of misbehaviour CometBFT found evidence of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MisbehaviorKind {
    /// Two votes for different blocks at one height and round.
    DuplicateVote,
    /// A light client attack (lunatic, equivocation or amnesia).
    LightClientAttack,
}

impl MisbehaviorKind {
    fn name(self) -> &'static str {
        match self {
            MisbehaviorKind::DuplicateVote => "duplicate_vote",
            MisbehaviorKind::LightClientAttack => "light_client_attack",
        }
    }
}

/// One piece of evidence (`RequestFinalizeBlock.misbehavior`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misbehavior {
    /// Its kind.
    pub kind: MisbehaviorKind,
    /// The faulty validator's 20-byte address.
    pub address: Vec<u8>,
    /// The height of the infraction.
    pub height: i64,
}

/// What FinalizeBlock learns from CometBFT about its validators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsensusInput {
    /// Every validator of the last commit, with whether it signed.
    pub votes: Vec<Vote>,
    /// Evidence of misbehaviour.
    pub misbehavior: Vec<Misbehavior>,
}

/// Queue priority of punishments (jailing), visited first.
pub const PRIORITY_PUNISHMENT: u8 = 0;
/// Queue priority of everything else.
pub const PRIORITY_NORMAL: u8 = 1;

/// The 20-byte CometBFT address of an ed25519 consensus key (the first 20
/// bytes of its SHA-256), as `vrec/` keys use it.
pub fn address_of(pub_key: &[u8; 32]) -> [u8; 20] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(pub_key);
    let mut address = [0u8; 20];
    address.copy_from_slice(&digest[..20]);
    address
}

/// Entries a `/validators` page holds when the query names no `limit`.
const DEFAULT_PAGE: usize = 50;
/// Entries a `/validators` page holds at most.
const MAX_PAGE: usize = compute_proto::limits::QUERY_PAGE_ENTRIES_MAX as usize;

/// A stored consensus key; see [`stored_account`].
fn stored_key(v: &pb::Validator) -> [u8; 32] {
    stored_account(&v.pub_key).0
}

/// Whether the record is jailed.
pub fn is_jailed(v: &pb::Validator) -> bool {
    v.jail_reason != pb::JailReason::Unspecified as i32
}

/// The validator `operator` runs: its address and record.
///
/// # Errors
/// [`Rejection::UnknownValidator`] when it runs none.
pub fn operated_by(
    operator: &AccountId,
    state: &impl StateRead,
) -> Result<([u8; 20], pb::Validator), Rejection> {
    let address = state
        .validator_of(operator)
        .ok_or(Rejection::UnknownValidator(*operator))?;
    let record = state.validator_record(&address).unwrap_or_else(|| {
        panic!(
            "the validator index of {operator} names {} which has no record; the state is corrupt, halting",
            hex::encode(address)
        )
    });
    Ok((address, record))
}

/// The name of a jail reason, as events and queries spell it.
pub fn jail_reason_name(v: &pb::Validator) -> Option<&'static str> {
    match pb::JailReason::try_from(v.jail_reason) {
        Ok(pb::JailReason::Unspecified) => None,
        Ok(pb::JailReason::MissedBlocks) => Some("missed_blocks"),
        Ok(pb::JailReason::DoubleSign) => Some("double_sign"),
        Err(_) => panic!(
            "stored jail reason {} is unknown; the state is corrupt, halting",
            v.jail_reason
        ),
    }
}

/// The power a record's stake and state give it now.
pub fn target_power(v: &pb::Validator, p: &ValidatorParams) -> u64 {
    if is_jailed(v) || v.bonded < p.min_validator_stake {
        return 0;
    }
    v.bonded
        .checked_div(p.stake_per_power)
        .unwrap_or(0)
        .min(p.max_validator_power)
}

/// Whether CometBFT has the validator in its set once the updates sent so
/// far apply.
fn in_set(v: &pb::Validator) -> bool {
    v.power > 0 || v.genesis
}

/// Whether the record's power must be sent again.
fn needs_update(v: &pb::Validator, p: &ValidatorParams) -> bool {
    v.genesis || target_power(v, p) != v.power
}

/// How many validator records exist.
pub fn record_count(state: &impl StateRead) -> u64 {
    state.counter(&keys::validator_count())
}

fn add_record_count(state: &mut StateTx<'_>, up: bool) {
    let count = record_count(state);
    let count = if up {
        count.saturating_add(1)
    } else {
        count.saturating_sub(1)
    };
    state.put_raw(keys::validator_count(), count.to_be_bytes().to_vec());
}

/// Puts the record in the update queue at `priority`, unless it already
/// waits there at that priority or better.
fn enqueue(state: &mut StateTx<'_>, v: &mut pb::Validator, address: &[u8; 20], priority: u8) {
    if let Some(&queued) = v.queue_key.get(keys::VALIDATOR_UPDATE_PREFIX.len()) {
        if queued <= priority {
            return;
        }
    }
    let sequence = state.take_sequence(keys::validator_update_next());
    let key = keys::validator_update(priority, sequence);
    state.put_raw(key.clone(), address.to_vec());
    v.queue_key = key;
}

/// Stores a changed record, queueing it when its power must change.
pub fn save(
    state: &mut StateTx<'_>,
    address: &[u8; 20],
    mut v: pb::Validator,
    p: &ValidatorParams,
    priority: u8,
) {
    if needs_update(&v, p) {
        enqueue(state, &mut v, address, priority);
    }
    if !delete_if_done(state, address, &v) {
        state.put_record(keys::validator_record(address), &v);
    }
}

/// Deletes a record that holds nothing any more: no stake, no unbonding,
/// no power at CometBFT, no jail, no queued update, and not a genesis
/// validator's (whose record stands for its removal from the genesis set).
/// Returns whether it was deleted.
fn delete_if_done(state: &mut StateTx<'_>, address: &[u8; 20], v: &pb::Validator) -> bool {
    let done = v.bonded == 0
        && v.unbonding.is_empty()
        && v.power == 0
        && !v.genesis
        && !is_jailed(v)
        && v.queue_key.is_empty()
        && state.genesis_validator(address).is_none();
    if done {
        state.delete_raw(keys::validator_record(address));
        state.delete_raw(keys::liveness(address));
        let operator = stored_account(&v.operator);
        if state.validator_of(&operator) == Some(*address) {
            state.delete_raw(keys::validator_operator(&operator));
        }
        add_record_count(state, false);
    }
    done
}

/// A new record for the key at `address`, counted.
pub fn new_record(
    state: &mut StateTx<'_>,
    pub_key: &[u8; 32],
    operator: &AccountId,
    height: i64,
) -> pb::Validator {
    let address = address_of(pub_key);
    let genesis = state.genesis_validator(&address).is_some();
    if state.validator_of(operator).is_none() {
        state.put_raw(keys::validator_operator(operator), address.to_vec());
    }
    add_record_count(state, true);
    pb::Validator {
        pub_key: pub_key.to_vec(),
        operator: operator.0.to_vec(),
        genesis,
        since_height: height,
        ..Default::default()
    }
}

/// Takes `ppm` of the bonded and of every unbonding amount; returns what
/// was taken (burnt, counted in `credits_slashed`).
fn slash(state: &mut StateTx<'_>, v: &mut pb::Validator, ppm: u32) -> u64 {
    let mut total: u64 = 0;
    let cut = ppm_share(v.bonded, ppm);
    v.bonded = v.bonded.saturating_sub(cut);
    total = total.saturating_add(cut);
    for entry in &mut v.unbonding {
        let cut = ppm_share(entry.amount, ppm);
        entry.amount = entry.amount.saturating_sub(cut);
        total = total.saturating_add(cut);
    }
    v.slashed = v.slashed.saturating_add(total);
    if total > 0 {
        update_stats(state, |s| {
            s.credits_slashed = s.credits_slashed.saturating_add(total)
        });
    }
    total
}

/// Jails, slashes and queues the removal of a validator; its events.
#[allow(clippy::too_many_arguments)]
fn punish(
    state: &mut StateTx<'_>,
    address: &[u8; 20],
    mut v: pb::Validator,
    p: &ValidatorParams,
    reason: pb::JailReason,
    slash_ppm: u32,
    jail_blocks: u64,
    cause: &str,
    infraction_height: i64,
    height: i64,
) -> Vec<Event> {
    let key = AccountId(stored_key(&v));
    let operator = stored_account(&v.operator);
    let slashed = slash(state, &mut v, slash_ppm);
    let until = height.saturating_add(i64::try_from(jail_blocks).unwrap_or(i64::MAX));
    v.jailed_until = v.jailed_until.max(until);
    v.jail_reason = reason as i32;
    state.delete_raw(keys::liveness(address));
    let until = v.jailed_until;
    let reason_name = jail_reason_name(&v).unwrap_or_default();
    save(state, address, v, p, PRIORITY_PUNISHMENT);
    let mut events = Vec::with_capacity(2);
    if slashed > 0 {
        events.push(event(
            "validator_slashed",
            &[
                ("validator", key.to_hex(), true),
                ("operator", operator.to_hex(), true),
                ("reason", cause.to_owned(), false),
                ("amount", slashed.to_string(), false),
                ("infraction_height", infraction_height.to_string(), false),
            ],
        ));
    }
    events.push(event(
        "validator_jailed",
        &[
            ("validator", key.to_hex(), true),
            ("operator", operator.to_hex(), true),
            ("reason", reason_name.to_owned(), false),
            ("until", until.to_string(), false),
        ],
    ));
    events
}

/// The end of a block for validators: evidence, liveness, unbondings that
/// are due, then the update queue. Returns the block events and the power
/// changes for CometBFT.
pub fn end_block(
    state: &mut StateTx<'_>,
    ctx: &Ctx<'_>,
    consensus: &ConsensusInput,
) -> (Vec<Event>, Vec<ValidatorUpdate>) {
    let p = validator_params(ctx.params);
    let height = ctx.height_i64();
    let mut events = evidence(state, &p, height, &consensus.misbehavior);
    events.extend(liveness(state, &p, height, &consensus.votes));
    events.extend(complete_unbondings(state, &p, ctx));
    let updates = process_queue(state, &p);
    (events, updates)
}

/// Slashes and jails the validators CometBFT found misbehaving.
fn evidence(
    state: &mut StateTx<'_>,
    p: &ValidatorParams,
    height: i64,
    misbehavior: &[Misbehavior],
) -> Vec<Event> {
    let mut events = Vec::new();
    for m in misbehavior {
        let Ok(address) = <[u8; 20]>::try_from(m.address.as_slice()) else {
            continue;
        };
        let v = match state.validator_record(&address) {
            Some(v) => v,
            None => match state.genesis_validator(&address) {
                // A genesis validator: it has no stake to slash, but it
                // leaves the set and is jailed like any other.
                Some(key) => new_record(state, &key.0, &key, height),
                None => continue,
            },
        };
        if v.jail_reason == pb::JailReason::DoubleSign as i32 {
            // Already punished for this episode.
            continue;
        }
        events.extend(punish(
            state,
            &address,
            v,
            p,
            pb::JailReason::DoubleSign,
            p.slash_double_sign_ppm,
            p.double_sign_jail_blocks,
            m.kind.name(),
            m.height,
            height,
        ));
    }
    events
}

/// The missed heights of a liveness record within the window that ends at
/// `last` (the height of the newest commit judged).
fn recent_misses(live: &pb::Liveness, last: i64, window: u64) -> impl Iterator<Item = i64> + '_ {
    let oldest = last.saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
    live.missed_heights
        .iter()
        .copied()
        .filter(move |h| *h > oldest)
}

/// Counts the misses of the last commit; jails a validator past the limit.
fn liveness(
    state: &mut StateTx<'_>,
    p: &ValidatorParams,
    height: i64,
    votes: &[Vote],
) -> Vec<Event> {
    let commit_height = height.saturating_sub(1);
    // In address order, once each: the order reaches the update queue.
    let mut missed: Vec<[u8; 20]> = votes
        .iter()
        .filter(|vote| vote.missed)
        .filter_map(|vote| <[u8; 20]>::try_from(vote.address.as_slice()).ok())
        .collect();
    missed.sort_unstable();
    missed.dedup();
    let mut events = Vec::new();
    for address in missed {
        let Some(v) = state.validator_record(&address) else {
            continue;
        };
        // Only validators whose power the application set and that are
        // not already on their way out are judged.
        if is_jailed(&v) || v.power == 0 {
            continue;
        }
        let key = keys::liveness(&address);
        let live: pb::Liveness = state.record(&key).unwrap_or_default();
        let mut heights: Vec<i64> = recent_misses(&live, commit_height, p.signed_blocks_window)
            .filter(|h| *h != commit_height)
            .collect();
        heights.push(commit_height);
        let count = u64::try_from(heights.len()).unwrap_or(u64::MAX);
        let over = u128::from(count).saturating_mul(1_000_000)
            > u128::from(p.jail_missed_ppm).saturating_mul(u128::from(p.signed_blocks_window));
        if over {
            events.extend(punish(
                state,
                &address,
                v,
                p,
                pb::JailReason::MissedBlocks,
                p.slash_missed_ppm,
                p.jail_blocks,
                "missed_blocks",
                commit_height,
                height,
            ));
        } else {
            state.put_record(
                key,
                &pb::Liveness {
                    missed_heights: heights,
                },
            );
        }
    }
    events
}

/// Returns the unbonding stake that is due to its operators.
fn complete_unbondings(state: &mut StateTx<'_>, p: &ValidatorParams, ctx: &Ctx<'_>) -> Vec<Event> {
    let height = ctx.height_i64();
    let limit = usize::try_from(p.max_validators).unwrap_or(usize::MAX);
    let due: Vec<(Vec<u8>, [u8; 20])> = state
        .scan(keys::UNBONDING_PREFIX, None, limit)
        .into_iter()
        .filter_map(|(key, _)| {
            let rest = &key[keys::UNBONDING_PREFIX.len()..];
            let parsed = rest.len() == 28;
            assert!(
                parsed,
                "unbonding key {} is not <height><address>; the state is corrupt, halting",
                hex::encode(&key)
            );
            let at = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
            let address: [u8; 20] = rest[8..].try_into().unwrap_or_default();
            (at <= ctx.height).then_some((key, address))
        })
        .collect();
    let mut events = Vec::new();
    for (key, address) in due {
        state.delete_raw(key);
        let mut v = state.validator_record(&address).unwrap_or_else(|| {
            panic!(
                "unbonding of validator {} has no record; the state is corrupt, halting",
                hex::encode(address)
            )
        });
        let (returned, kept): (Vec<pb::Unbonding>, Vec<pb::Unbonding>) = v
            .unbonding
            .iter()
            .cloned()
            .partition(|u| u.completion_height <= height);
        v.unbonding = kept;
        if returned.is_empty() {
            // Returned with an earlier entry of this validator's.
            save(state, &address, v, p, PRIORITY_NORMAL);
            continue;
        }
        let amount = returned
            .iter()
            .fold(0u64, |sum, u| sum.saturating_add(u.amount));
        let operator = stored_account(&v.operator);
        if amount > 0 {
            // A balance cannot pass 2^64 - 1 credits: what would is burnt,
            // the same on every validator (it takes a balance within the
            // stake of the top of the range).
            let mut account = state.account(&operator);
            let room = u64::MAX.saturating_sub(account.balance);
            account.balance = account.balance.saturating_add(amount);
            state.put_account(&operator, &account);
            let burnt = amount.saturating_sub(room);
            if burnt > 0 {
                update_stats(state, |s| {
                    s.credits_slashed = s.credits_slashed.saturating_add(burnt)
                });
            }
        }
        events.push(event(
            "validator_unbonded",
            &[
                ("validator", AccountId(stored_key(&v)).to_hex(), true),
                ("operator", operator.to_hex(), true),
                ("amount", amount.to_string(), false),
            ],
        ));
        save(state, &address, v, p, PRIORITY_NORMAL);
    }
    events
}

/// How many validators CometBFT's set holds once the updates sent so far
/// apply: genesis validators without a record, and records in the set.
///
/// Both scans are bounded: the genesis registry by CometBFT's genesis, the
/// records by `max_validators` (plus the genesis validators the chain
/// punished).
fn set_size(state: &StateTx<'_>) -> u64 {
    let mut size: u64 = 0;
    for (key, _) in state.scan(keys::VALIDATOR_PREFIX, None, usize::MAX) {
        let address = &key[keys::VALIDATOR_PREFIX.len()..];
        let managed = <[u8; 20]>::try_from(address)
            .ok()
            .and_then(|a| state.validator_record(&a))
            .is_some();
        if !managed {
            size = size.saturating_add(1);
        }
    }
    for (key, raw) in state.scan(keys::VALIDATOR_RECORD_PREFIX, None, usize::MAX) {
        let v: pb::Validator = crate::state::decode(&key, &raw);
        if in_set(&v) {
            size = size.saturating_add(1);
        }
    }
    size
}

/// Visits the front of the update queue and sends what changed: at most
/// `max_validator_updates_per_block` entries, not counting a removal that
/// must wait because it would empty CometBFT's set (there is at most one:
/// the set then holds one validator, with one live entry).
fn process_queue(state: &mut StateTx<'_>, p: &ValidatorParams) -> Vec<ValidatorUpdate> {
    let limit = usize::try_from(p.max_validator_updates_per_block).unwrap_or(usize::MAX);
    let entries = state.scan(keys::VALIDATOR_UPDATE_PREFIX, None, limit.saturating_add(1));
    let mut budget = limit;
    let mut updates = Vec::new();
    let mut size: Option<u64> = None;
    for (key, raw) in entries {
        if budget == 0 {
            break;
        }
        state.delete_raw(key.clone());
        let address = <[u8; 20]>::try_from(raw.as_slice()).unwrap_or_else(|_| {
            panic!(
                "validator update entry {} does not hold an address; the state is corrupt, halting",
                hex::encode(&key)
            )
        });
        let Some(mut v) = state.validator_record(&address) else {
            budget = budget.saturating_sub(1);
            continue;
        };
        if v.queue_key != key {
            // Superseded by an entry of higher priority.
            budget = budget.saturating_sub(1);
            continue;
        }
        let target = target_power(&v, p);
        let was_in = in_set(&v);
        if target == 0 && was_in {
            let current = *size.get_or_insert_with(|| set_size(state));
            if current <= 1 {
                // CometBFT refuses an empty set: wait for another validator,
                // without holding up the entries behind.
                state.put_raw(key, address.to_vec());
                continue;
            }
            size = Some(current.saturating_sub(1));
        } else if target > 0 && !was_in {
            size = size.map(|s| s.saturating_add(1));
        }
        budget = budget.saturating_sub(1);
        v.queue_key.clear();
        if needs_update(&v, p) && (target > 0 || was_in) {
            updates.push(ValidatorUpdate {
                pub_key: stored_key(&v),
                power: target,
            });
        }
        v.power = target;
        v.genesis = false;
        save(state, &address, v, p, PRIORITY_NORMAL);
    }
    updates
}

// ---------------------------------------------------------------------------
// Queries.

/// A failed query: its code and a message naming the fix.
pub type QueryError = (Code, String);

/// The view of a record at committed height `height`.
fn view(
    state: &dyn KvRead,
    address: &[u8; 20],
    v: &pb::Validator,
    p: &ValidatorParams,
    height: i64,
) -> ValidatorView {
    let live: pb::Liveness = state.record(&keys::liveness(address)).unwrap_or_default();
    let missed = recent_misses(&live, height.saturating_sub(1), p.signed_blocks_window).count();
    ValidatorView {
        validator: AccountId(stored_key(v)),
        address: hex::encode(address),
        operator: stored_account(&v.operator),
        bonded: v.bonded,
        unbonding: v
            .unbonding
            .iter()
            .map(|u| UnbondingView {
                amount: u.amount,
                completion_height: u.completion_height,
            })
            .collect(),
        power: (!v.genesis).then_some(v.power),
        target_power: target_power(v, p),
        queued: !v.queue_key.is_empty(),
        jailed_until: is_jailed(v).then_some(v.jailed_until),
        jail_reason: jail_reason_name(v).map(str::to_owned),
        missed_blocks: u64::try_from(missed).unwrap_or(u64::MAX),
        slashed: v.slashed,
        since_height: v.since_height,
        genesis: state.genesis_validator(address).is_some(),
    }
}

fn params_of(state: &dyn KvRead) -> Result<ValidatorParams, QueryError> {
    state
        .params()
        .map(|p| validator_params(&p))
        .ok_or_else(|| (Code::NotFound, "the chain has no genesis yet".to_owned()))
}

/// `/validator/<hex>`: by 64-hex consensus key or 40-hex address.
///
/// # Errors
/// `BadQuery` for an argument that is neither, `NotFound` for a key that
/// is no validator.
pub fn query_validator(
    state: &dyn KvRead,
    arg: &str,
    height: i64,
) -> Result<ValidatorView, QueryError> {
    let bytes = hex::decode(arg).map_err(|_| bad_validator_arg(arg))?;
    let address: [u8; 20] = match bytes.len() {
        32 => {
            let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad_validator_arg(arg))?;
            address_of(&key)
        }
        20 => <[u8; 20]>::try_from(bytes.as_slice()).map_err(|_| bad_validator_arg(arg))?,
        _ => return Err(bad_validator_arg(arg)),
    };
    let p = params_of(state)?;
    if let Some(v) = state.validator_record(&address) {
        return Ok(view(state, &address, &v, &p, height));
    }
    if let Some(key) = state.genesis_validator(&address) {
        // A genesis validator the chain never had to manage: it holds the
        // power CometBFT's genesis gave it.
        return Ok(ValidatorView {
            validator: key,
            address: hex::encode(address),
            operator: key,
            bonded: 0,
            unbonding: Vec::new(),
            power: None,
            target_power: 0,
            queued: false,
            jailed_until: None,
            jail_reason: None,
            missed_blocks: 0,
            slashed: 0,
            since_height: 0,
            genesis: true,
        });
    }
    Err((
        Code::NotFound,
        format!("{arg} is no validator of this chain (see /validators)"),
    ))
}

fn bad_validator_arg(arg: &str) -> QueryError {
    (
        Code::BadQuery,
        format!("'{arg}' is neither a consensus key (64 hex characters) nor a validator address (40 hex characters)"),
    )
}

/// `/validators?limit=&after=`: the validator records in address order.
///
/// # Errors
/// `BadQuery` for a malformed `limit` or `after`.
pub fn query_validators(
    state: &dyn KvRead,
    query: &str,
    height: i64,
) -> Result<ValidatorsPage, QueryError> {
    let mut limit = DEFAULT_PAGE;
    let mut after: Option<[u8; 20]> = None;
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        (
                            Code::BadQuery,
                            format!("limit '{value}' must be a number from 1 to {}", MAX_PAGE),
                        )
                    })?;
            }
            "after" => {
                let parsed = hex::decode(value)
                    .ok()
                    .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| {
                        (
                            Code::BadQuery,
                            format!("after '{value}' must be a validator address (40 hex characters), the `next` of the previous page"),
                        )
                    })?;
                after = Some(parsed);
            }
            other => {
                return Err((
                    Code::BadQuery,
                    format!("unknown argument '{other}' of /validators: use limit and after"),
                ))
            }
        }
    }
    let p = params_of(state)?;
    let after_key = after.map(|a| keys::validator_record(&a));
    let rows = state.scan(
        keys::VALIDATOR_RECORD_PREFIX,
        after_key.as_deref(),
        limit.saturating_add(1),
    );
    let mut validators = Vec::with_capacity(limit.min(rows.len()));
    let mut next = None;
    for (i, (key, raw)) in rows.iter().enumerate() {
        let address = <[u8; 20]>::try_from(&key[keys::VALIDATOR_RECORD_PREFIX.len()..])
            .map_err(|_| (Code::BadQuery, "a validator key is corrupt".to_owned()))?;
        if i == limit {
            next = validators.last().map(|v: &ValidatorView| v.address.clone());
            break;
        }
        let v: pb::Validator = crate::state::decode(key, raw);
        validators.push(view(state, &address, &v, &p, height));
    }
    Ok(ValidatorsPage { validators, next })
}
