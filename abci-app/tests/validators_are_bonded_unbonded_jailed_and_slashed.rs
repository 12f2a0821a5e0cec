//! Validators by stake: a bonded validator's power goes to CometBFT in
//! `validator_updates` (capped, bounded per block), its signatures earn its
//! operator the block reward, unbonding removes it and returns the stake
//! after the delay (slashable meanwhile), evidence slashes and removes,
//! missed blocks jail until an unjail after the jail time, and every
//! hostile input is refused with its code.

mod staking;

use compute_abci::store::MemStore;
use compute_abci::Code;
use compute_proto::{AccountId, SigningKey};
use serde_json::json;
use staking::*;

const BALANCE: u64 = 10_000_000;

/// The genesis validator (always online) and operators A, B, C with their
/// consensus keys.
struct Cast {
    genesis: SigningKey,
    ops: Vec<SigningKey>,
    cons: Vec<SigningKey>,
}

fn cast() -> Cast {
    Cast {
        genesis: key(200),
        ops: (1..=6).map(key).collect(),
        cons: (101..=106).map(key).collect(),
    }
}

fn net(c: &Cast, params: serde_json::Value) -> Net<MemStore> {
    let balances: Vec<(AccountId, u64)> = c.ops.iter().map(|k| (k.account(), BALANCE)).collect();
    Net::new(MemStore::new(), &[&c.genesis], &balances, params)
}

#[test]
fn a_bonded_validator_joins_the_set_with_its_power_and_earns_rewards() {
    let c = cast();
    let mut net = net(&c, json!({"block_reward": 10}));
    let (a, k) = (&c.ops[0], &c.cons[0]);
    let out = net.ok(a, bond(k, 200_000));
    // 200,000 credits at stake_per_power 10,000.
    assert_eq!(updates(&out), vec![(k.account(), 20)]);
    let bonded = &events(&out, "validator_bonded")[0];
    assert_eq!(bonded["validator"], k.account().to_hex());
    assert_eq!(bonded["operator"], a.account().to_hex());
    assert_eq!(bonded["power"], "20");
    assert_eq!(net.balance(&a.account()), BALANCE - 200_000);
    let view = net.validator(k);
    assert_eq!(view["operator"], a.account().to_hex());
    assert_eq!(view["bonded"], 200_000);
    assert_eq!(view["power"], 20);
    assert_eq!(view["target_power"], 20);
    assert_eq!(view["queued"], false);
    assert_eq!(view["genesis"], false);
    assert_eq!(view["jailed_until"], serde_json::Value::Null);
    // By address too, in either case.
    let by_address = net.query(&format!("/validator/{}", hex::encode_upper(address(k))));
    assert_eq!(by_address, view);
    let list = net.query("/validators");
    assert_eq!(list["validators"].as_array().unwrap().len(), 1);
    assert_eq!(list["validators"][0], view);
    assert_eq!(list["next"], serde_json::Value::Null);

    // CometBFT applies the update two heights on (height 3); block 4's last
    // commit is the first that k signs: the reward is shared with a.
    assert!(!net.set(2).contains_key(&address(k)));
    assert!(net.set(3).contains_key(&address(k)));
    net.block(&[]); // 2
    net.block(&[]); // 3
    let before = net.balance(&a.account());
    let out = net.block(&[]); // 4
    assert_eq!(events(&out, "block_reward")[0]["signers"], "2");
    assert_eq!(net.balance(&a.account()), before + 5);
    let rep = net.query(&format!("/reputation/{}", a.account()));
    assert_eq!(rep["blocks_signed"], 1);
    // Bonding more adds stake and power.
    let out = net.ok(a, bond(k, 100_000));
    assert_eq!(updates(&out), vec![(k.account(), 30)]);
    assert_eq!(net.validator(k)["bonded"], 300_000);
}

#[test]
fn power_is_capped_and_updates_are_bounded_per_block() {
    let c = cast();
    let mut net = net(
        &c,
        json!({"max_validator_power": 25, "max_validator_updates_per_block": 2}),
    );
    let stakes = [5_000_000, 200_000, 300_000, 400_000, 500_000];
    let txs: Vec<Vec<u8>> = (0..5)
        .map(|i| net.sign(&c.ops[i], bond(&c.cons[i], stakes[i])))
        .collect();
    let out = net.block(&txs);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    // Two a block, first come first served; 5,000,000 credits are capped.
    assert_eq!(
        updates(&out),
        vec![(c.cons[0].account(), 25), (c.cons[1].account(), 20)]
    );
    assert_eq!(net.validator(&c.cons[2])["queued"], true);
    assert_eq!(net.validator(&c.cons[2])["power"], 0);
    assert_eq!(net.validator(&c.cons[2])["target_power"], 25);
    let out = net.block(&[]);
    assert_eq!(
        updates(&out),
        vec![(c.cons[2].account(), 25), (c.cons[3].account(), 25)]
    );
    let out = net.block(&[]);
    assert_eq!(updates(&out), vec![(c.cons[4].account(), 25)]);
    let out = net.block(&[]);
    assert!(updates(&out).is_empty());
    assert_eq!(net.validator(&c.cons[2])["queued"], false);
    // Pages of /validators in address order.
    let first = net.query("/validators?limit=2");
    assert_eq!(first["validators"].as_array().unwrap().len(), 2);
    let after = first["next"].as_str().unwrap().to_owned();
    let rest = net.query(&format!("/validators?limit=10&after={after}"));
    assert_eq!(rest["validators"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next"], serde_json::Value::Null);
    let mut addresses: Vec<String> = first["validators"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["validators"].as_array().unwrap())
        .map(|v| v["address"].as_str().unwrap().to_owned())
        .collect();
    let listed = addresses.clone();
    addresses.sort();
    assert_eq!(listed, addresses);
    for bad in [
        "/validators?limit=0",
        "/validators?after=zz",
        "/validators?x=1",
    ] {
        assert_eq!(net.query_code(bad).0, Code::BadQuery, "{bad}");
    }
}

#[test]
fn unbonding_removes_the_power_at_once_and_returns_the_stake_after_the_delay() {
    let c = cast();
    let mut net = net(&c, json!({"unbonding_blocks": 5, "block_reward": 0}));
    let (a, k) = (&c.ops[0], &c.cons[0]);
    net.ok(a, bond(k, 300_000));
    net.blocks(2);
    // Partial: what is left must stay at the minimum.
    let (r, _) = net.run(a, unbond(250_000));
    assert_eq!(r.code, Code::ValidatorStakeTooLow, "{}", r.log);
    let out = net.ok(a, unbond(100_000));
    assert_eq!(updates(&out), vec![(k.account(), 20)]);
    let height = net.height();
    let unbonding = &events(&out, "validator_unbonding")[0];
    assert_eq!(unbonding["amount"], "100000");
    assert_eq!(unbonding["completion_height"], (height + 5).to_string());
    // All the rest (amount 0): power 0.
    let out = net.ok(a, unbond(0));
    assert_eq!(updates(&out), vec![(k.account(), 0)]);
    assert!(!net.set(net.height() + 2).contains_key(&address(k)));
    let view = net.validator(k);
    assert_eq!(view["bonded"], 0);
    assert_eq!(view["unbonding"].as_array().unwrap().len(), 2);
    let (r, _) = net.run(a, unbond(1));
    assert_eq!(r.code, Code::InsufficientStake, "{}", r.log);
    let balance = net.balance(&a.account());
    // The first unbonding returns at the end of height + 5, not before.
    while net.height() < height + 4 {
        let out = net.block(&[]);
        assert!(events(&out, "validator_unbonded").is_empty());
    }
    assert_eq!(net.balance(&a.account()), balance);
    let out = net.block(&[]);
    assert_eq!(events(&out, "validator_unbonded")[0]["amount"], "100000");
    assert_eq!(net.balance(&a.account()), balance + 100_000);
    let out = net.block(&[]);
    assert_eq!(events(&out, "validator_unbonded")[0]["amount"], "200000");
    assert_eq!(net.balance(&a.account()), BALANCE);
    // Nothing is left: the record is gone, the key and the operator free.
    assert_eq!(
        net.query_code(&format!("/validator/{}", k.account())).0,
        Code::NotFound
    );
    assert_eq!(net.query("/validators")["validators"], json!([]));
    let out = net.ok(a, bond(&c.cons[1], 100_000));
    assert_eq!(updates(&out), vec![(c.cons[1].account(), 10)]);
}

#[test]
fn unbonding_stake_is_slashed_by_evidence_until_it_returns() {
    let c = cast();
    let mut net = net(&c, json!({"unbonding_blocks": 10, "block_reward": 0}));
    let (a, k) = (&c.ops[0], &c.cons[0]);
    net.ok(a, bond(k, 400_000));
    net.blocks(2);
    net.ok(a, unbond(0));
    let infraction = net.height() - 1;
    let out = net.block_with(&[], vec![duplicate_vote(k, infraction)]);
    // 5% of the 400,000 unbonding.
    let slashed = &events(&out, "validator_slashed")[0];
    assert_eq!(slashed["amount"], "20000");
    assert_eq!(slashed["reason"], "duplicate_vote");
    assert_eq!(slashed["infraction_height"], infraction.to_string());
    assert_eq!(events(&out, "validator_jailed")[0]["reason"], "double_sign");
    // It already left the set: no second removal.
    assert!(updates(&out).is_empty());
    assert_eq!(net.query("/stats")["credits_slashed"], 20_000);
    let mut returned = 0;
    for out in net.blocks(10) {
        for e in events(&out, "validator_unbonded") {
            returned += e["amount"].parse::<u64>().unwrap();
        }
    }
    assert_eq!(returned, 380_000);
    assert_eq!(net.balance(&a.account()), BALANCE - 20_000);
    // Jailed with nothing left: the record stays until it is unjailed.
    assert_eq!(net.validator(k)["jail_reason"], "double_sign");
}

#[test]
fn double_sign_evidence_slashes_removes_and_jails() {
    let c = cast();
    let mut net = net(
        &c,
        json!({"double_sign_jail_blocks": 20, "block_reward": 0}),
    );
    let (a, k) = (&c.ops[0], &c.cons[0]);
    net.ok(a, bond(k, 1_000_000));
    net.blocks(3);
    assert!(net.set(net.height()).contains_key(&address(k)));
    let out = net.block_with(&[], vec![duplicate_vote(k, net.height() - 1)]);
    assert_eq!(updates(&out), vec![(k.account(), 0)]);
    assert_eq!(events(&out, "validator_slashed")[0]["amount"], "50000");
    let jailed = &events(&out, "validator_jailed")[0];
    let until: i64 = jailed["until"].parse().unwrap();
    assert_eq!(until, net.height() + 20);
    let view = net.validator(k);
    assert_eq!(view["bonded"], 950_000);
    assert_eq!(view["power"], 0);
    assert_eq!(view["slashed"], 50_000);
    assert_eq!(view["jailed_until"], until);
    // More evidence of the same episode is ignored; evidence against an
    // unknown address too.
    let stranger = key(250);
    let out = net.block_with(
        &[],
        vec![
            duplicate_vote(k, net.height() - 1),
            duplicate_vote(&stranger, 1),
        ],
    );
    assert!(events(&out, "validator_slashed").is_empty());
    assert!(updates(&out).is_empty());
    assert_eq!(net.validator(k)["slashed"], 50_000);
    // Unjail before the jail time is over.
    let (r, _) = net.run(a, unjail());
    assert_eq!(r.code, Code::ValidatorJailed, "{}", r.log);
    assert!(r.log.contains(&until.to_string()), "{}", r.log);
    while net.height() < until - 1 {
        net.block(&[]);
    }
    let out = net.ok(a, unjail());
    assert_eq!(updates(&out), vec![(k.account(), 95)]);
    assert_eq!(events(&out, "validator_unjailed")[0]["power"], "95");
    let (r, _) = net.run(a, unjail());
    assert_eq!(r.code, Code::NotJailed, "{}", r.log);
}

#[test]
fn a_misbehaving_genesis_validator_is_removed_but_never_the_last_one() {
    let c = cast();
    let g2 = key(201);
    let balances: Vec<(AccountId, u64)> = vec![(c.ops[0].account(), BALANCE)];
    // One update a block: the removal that must wait does not hold up the
    // bond that lets it go.
    let mut net = Net::new(
        MemStore::new(),
        &[&c.genesis, &g2],
        &balances,
        json!({"max_validator_updates_per_block": 1}),
    );
    net.blocks(2);
    // Genesis validators are not managed until they must be.
    let view = net.validator(&g2);
    assert_eq!(view["genesis"], true);
    assert_eq!(view["power"], serde_json::Value::Null);
    assert_eq!(net.query("/validators")["validators"], json!([]));
    let out = net.block_with(&[], vec![duplicate_vote(&g2, 1)]);
    assert_eq!(updates(&out), vec![(g2.account(), 0)]);
    assert!(events(&out, "validator_slashed").is_empty(), "no stake");
    assert_eq!(events(&out, "validator_jailed").len(), 1);
    let view = net.validator(&g2);
    assert_eq!(view["genesis"], true);
    assert_eq!(view["power"], 0);
    assert_eq!(view["jail_reason"], "double_sign");
    // The last validator left is never removed: CometBFT refuses an empty
    // set. Its removal waits in the queue.
    net.blocks(2);
    let out = net.block_with(&[], vec![duplicate_vote(&c.genesis, 2)]);
    assert!(updates(&out).is_empty());
    assert_eq!(net.validator(&c.genesis)["queued"], true);
    // Once another validator joins, it goes.
    let (a, k) = (&c.ops[0], &c.cons[0]);
    let out = net.ok(a, bond(k, 100_000));
    assert_eq!(updates(&out), vec![(k.account(), 10)]);
    let out = net.block(&[]);
    assert_eq!(updates(&out), vec![(c.genesis.account(), 0)]);
}

#[test]
fn punishments_go_ahead_of_queued_updates() {
    let c = cast();
    let mut net = net(&c, json!({"max_validator_updates_per_block": 1}));
    let out = net.ok(&c.ops[0], bond(&c.cons[0], 100_000));
    assert_eq!(updates(&out), vec![(c.cons[0].account(), 10)]);
    let txs: Vec<Vec<u8>> = (1..4)
        .map(|i| net.sign(&c.ops[i], bond(&c.cons[i], 200_000)))
        .collect();
    let out = net.block(&txs);
    assert_eq!(updates(&out), vec![(c.cons[1].account(), 20)]);
    let out = net.block_with(&[], vec![duplicate_vote(&c.cons[0], 1)]);
    assert_eq!(updates(&out), vec![(c.cons[0].account(), 0)]);
    let out = net.block(&[]);
    assert_eq!(updates(&out), vec![(c.cons[2].account(), 20)]);
    let out = net.block(&[]);
    assert_eq!(updates(&out), vec![(c.cons[3].account(), 20)]);
}

#[test]
fn a_genesis_validator_that_bonds_gets_the_power_of_its_stake() {
    let c = cast();
    let g2 = key(201);
    let mut net = Net::new(
        MemStore::new(),
        &[&c.genesis, &g2],
        &[(c.genesis.account(), BALANCE)],
        json!({"unbonding_blocks": 2}),
    );
    // Its own key, bonded by its own account (the key is its account).
    let out = net.ok(&c.genesis, bond(&c.genesis, 300_000));
    assert_eq!(updates(&out), vec![(c.genesis.account(), 30)]);
    let view = net.validator(&c.genesis);
    assert_eq!(view["genesis"], true);
    assert_eq!(view["power"], 30);
    assert_eq!(view["operator"], c.genesis.account().to_hex());
    // Unbonding it all removes it from the set; its record stays.
    let out = net.ok(&c.genesis, unbond(0));
    assert_eq!(updates(&out), vec![(c.genesis.account(), 0)]);
    net.blocks(3);
    let view = net.validator(&c.genesis);
    assert_eq!(view["power"], 0);
    assert_eq!(view["bonded"], 0);
    assert_eq!(view["unbonding"], json!([]));
    assert!(!net.set(net.height() + 1).contains_key(&address(&c.genesis)));
    // It bonds back.
    let out = net.ok(&c.genesis, bond(&c.genesis, 100_000));
    assert_eq!(updates(&out), vec![(c.genesis.account(), 10)]);
}

#[test]
fn missed_blocks_jail_and_an_unjail_after_the_jail_time_returns_the_validator() {
    let c = cast();
    let mut net = net(
        &c,
        json!({
            "signed_blocks_window": 10,
            "jail_missed_ppm": 500_000,
            "jail_blocks": 5,
            "slash_missed_ppm": 10_000,
            "block_reward": 0,
        }),
    );
    let (a, k) = (&c.ops[0], &c.cons[0]);
    net.ok(a, bond(k, 100_000));
    net.blocks(3);
    // Online: nothing counted.
    assert_eq!(net.validator(k)["missed_blocks"], 0);
    net.offline.insert(address(k));
    // More than half of 10: the sixth miss jails.
    for missed in 1..=5 {
        let out = net.block(&[]);
        assert!(events(&out, "validator_jailed").is_empty());
        assert_eq!(net.validator(k)["missed_blocks"], missed);
    }
    let out = net.block(&[]);
    let jailed = &events(&out, "validator_jailed")[0];
    assert_eq!(jailed["reason"], "missed_blocks");
    // 1% of 100,000.
    assert_eq!(events(&out, "validator_slashed")[0]["amount"], "1000");
    assert_eq!(updates(&out), vec![(k.account(), 0)]);
    let until: i64 = jailed["until"].parse().unwrap();
    assert_eq!(until, net.height() + 5);
    // Still absent from the commits until the removal applies: not counted.
    net.blocks(2);
    assert_eq!(net.validator(k)["missed_blocks"], 0);
    assert_eq!(net.validator(k)["slashed"], 1_000);
    let (r, _) = net.run(a, unjail());
    assert_eq!(r.code, Code::ValidatorJailed, "{}", r.log);
    // A slashed stake under the minimum must be topped up first.
    while net.height() < until - 1 {
        net.block(&[]);
    }
    let (r, _) = net.run(a, unjail());
    assert_eq!(r.code, Code::ValidatorStakeTooLow, "{}", r.log);
    let out = net.ok(a, bond(k, 1_000));
    assert!(updates(&out).is_empty(), "jailed: no power yet");
    net.offline.clear();
    let out = net.ok(a, unjail());
    assert_eq!(updates(&out), vec![(k.account(), 10)]);
    net.blocks(4);
    let view = net.validator(k);
    assert_eq!(view["missed_blocks"], 0);
    assert_eq!(view["jailed_until"], serde_json::Value::Null);
    assert_eq!(view["power"], 10);
}

#[test]
fn hostile_inputs_are_refused_with_their_codes() {
    let c = cast();
    let rich = key(77);
    let mut balances: Vec<(AccountId, u64)> =
        c.ops.iter().map(|k| (k.account(), BALANCE)).collect();
    balances.push((rich.account(), u64::MAX - 60_000_000));
    let mut net = Net::new(
        MemStore::new(),
        &[&c.genesis],
        &balances,
        json!({"max_validators": 2, "max_unbonding_entries": 1, "unbonding_blocks": 3, "block_reward": 0}),
    );
    let (a, b) = (&c.ops[0], &c.ops[1]);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let refused = |net: &mut Net<MemStore>, signer: &SigningKey, msg, code: Code| {
        let tx = net.sign_probe(signer, msg);
        let r = net.check(&tx);
        assert_eq!(r.code, code, "{}", r.log);
        assert!(!r.log.is_empty());
        let out = net.block(&[tx]);
        assert_eq!(out.tx_results[0].code, code, "{}", out.tx_results[0].log);
        // The ante step ran in the block when the message was well formed.
        if code != Code::InvalidMessage {
            *net.nonces.entry(signer.account()).or_insert(0) += 1;
        }
        assert!(out.validator_updates.is_empty());
        r.log
    };
    // Bad keys, zero stake.
    let log = refused(
        &mut net,
        a,
        bond_key(&[7; 31], 100_000),
        Code::InvalidMessage,
    );
    assert!(log.contains("32-byte"), "{log}");
    let log = refused(
        &mut net,
        a,
        bond_key(&identity, 100_000),
        Code::InvalidMessage,
    );
    assert!(log.contains("pub_key"), "{log}");
    refused(&mut net, a, bond(&c.cons[0], 0), Code::InvalidMessage);
    // Stake over the balance, below the minimum.
    refused(
        &mut net,
        a,
        bond(&c.cons[0], BALANCE + 1),
        Code::InsufficientFunds,
    );
    refused(
        &mut net,
        a,
        bond(&c.cons[0], 99_999),
        Code::ValidatorStakeTooLow,
    );
    // Unbond and unjail without a validator.
    refused(&mut net, a, unbond(1), Code::UnknownValidator);
    refused(&mut net, a, unjail(), Code::UnknownValidator);
    net.ok(a, bond(&c.cons[0], 100_000));
    // Someone else's key: a bonded one, the genesis validator's.
    let log = refused(
        &mut net,
        b,
        bond(&c.cons[0], 100_000),
        Code::ValidatorKeyTaken,
    );
    assert!(log.contains(&a.account().to_hex()), "{log}");
    refused(
        &mut net,
        b,
        bond(&c.genesis, 100_000),
        Code::ValidatorKeyTaken,
    );
    // One validator per operator.
    refused(
        &mut net,
        a,
        bond(&c.cons[1], 100_000),
        Code::ValidatorExists,
    );
    // Unbond more than bonded; unjail when not jailed.
    refused(&mut net, a, unbond(100_001), Code::InsufficientStake);
    refused(&mut net, a, unjail(), Code::NotJailed);
    // max_validators: 2 records.
    net.ok(b, bond(&c.cons[1], 100_000));
    refused(
        &mut net,
        &c.ops[2],
        bond(&c.cons[2], 100_000),
        Code::TooManyValidators,
    );
    // max_unbonding_entries: 1, but one block's unbondings merge.
    net.ok(b, bond(&c.cons[1], 200_000));
    let t1 = net.sign(b, unbond(100_000));
    let t2 = net.sign(b, unbond(100_000));
    let out = net.block(&[t1, t2]);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    assert_eq!(
        net.validator(&c.cons[1])["unbonding"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    refused(&mut net, b, unbond(0), Code::TooManyUnbondings);
    // Overflow: a stake that would take the bonded stake past 2^64; a fee
    // past the balance.
    let log = refused(&mut net, a, bond(&c.cons[0], u64::MAX), Code::Overflow);
    assert!(log.contains("bonded stake"), "{log}");
    let mut with_fee = net.txs.clone();
    with_fee.fee = u64::MAX;
    let tx = with_fee.sign(a, net.nonces[&a.account()], bond(&c.cons[0], 1));
    assert_eq!(net.check(&tx).code, Code::InsufficientFunds);
    // The capped power of an enormous stake, once a record is free.
    net.ok(a, unbond(0));
    net.blocks(4);
    let out = net.ok(&rich, bond(&c.cons[3], u64::MAX - 60_000_010));
    assert_eq!(updates(&out), vec![(c.cons[3].account(), 1_000)]);
    assert_eq!(net.validator(&c.cons[3])["target_power"], 1_000);
    // Queries with bad arguments.
    assert_eq!(net.query_code("/validator/xyz").0, Code::BadQuery);
    assert_eq!(net.query_code("/validator/abcd").0, Code::BadQuery);
    assert_eq!(
        net.query_code(&format!("/validator/{}", key(99).account()))
            .0,
        Code::NotFound
    );
}

#[test]
fn chains_that_never_bond_write_nothing_new() {
    // The validators' end of block reads the last commit's votes and any
    // evidence against unknown keys, and writes nothing: a chain fed
    // votes (all signed) and stray evidence keeps the app hashes of one fed
    // nothing.
    let c = cast();
    let mut fed = net(&c, json!({}));
    let mut plain = net(&c, json!({}));
    for h in 1..=5 {
        let a = fed.block_with(&[], vec![duplicate_vote(&key(250), h)]);
        let b = plain.app.finalize_block(compute_abci::BlockInput {
            height: h,
            proposer_address: &address(&c.genesis),
            signer_addresses: &if h > 1 {
                vec![address(&c.genesis).to_vec()]
            } else {
                Vec::new()
            },
            txs: &[] as &[Vec<u8>],
            hash: &compute_proto::sha3_256(&h.to_be_bytes()),
            time_seconds: 1_700_000_000 + h,
        });
        plain.app.commit();
        assert_eq!(a, b, "height {h}");
    }
    // And /params shows the validator defaults.
    let params = fed.query("/params");
    assert_eq!(params["unbonding_blocks"], 200_000);
    assert_eq!(params["min_validator_stake"], 100_000);
}

/// Every object key in `value`, at any depth.
fn json_keys(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                out.push(key.clone());
                json_keys(inner, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| json_keys(i, out)),
        _ => {}
    }
}

#[test]
fn every_field_of_the_validator_queries_is_named_in_chain_md() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CHAIN.md"))
        .expect("docs/CHAIN.md is readable");
    let start = text.find("## Queries").expect("a Queries section");
    let end = text[start + 1..]
        .find("\n## ")
        .map_or(text.len(), |i| start + 1 + i);
    let docs = &text[start..end];
    let c = cast();
    let mut net = net(&c, json!({"unbonding_blocks": 50}));
    net.ok(&c.ops[0], bond(&c.cons[0], 300_000));
    net.ok(&c.ops[0], unbond(100_000));
    let mut found = Vec::new();
    json_keys(&net.query("/validators?limit=1"), &mut found);
    json_keys(&net.validator(&c.genesis), &mut found);
    assert!(found.contains(&"completion_height".to_owned()));
    let missing: Vec<String> = found
        .into_iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CHAIN.md, Queries, does not name these answer fields: {missing:?}"
    );
    for path in ["`/validators", "`/validator/"] {
        assert!(docs.contains(path), "{path}");
    }
}
