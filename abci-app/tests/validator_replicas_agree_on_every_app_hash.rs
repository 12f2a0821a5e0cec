//! Determinism with validators by stake: two state machines, one on
//! RocksDB (closed and reopened halfway) and one in memory, fed the same
//! seeded blocks of bonds, unbonds, unjails, hostile bonds, transfers and
//! garbage, with validators going offline and evidence arriving, return the
//! same answers, validator updates and app hash at every height. The
//! harness checks every update against what CometBFT accepts, and credits
//! are conserved: balances plus bonded and unbonding stake equal genesis
//! plus minted minus slashed. A failure prints the seed to replay
//! (`COMPUTE_TEST_SEED`).

mod staking;

use compute_abci::store::{MemStore, RocksStore, Store};
use compute_abci::{App, Misbehavior, MisbehaviorKind};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, AccountId, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use staking::*;

const OPERATORS: u8 = 6;
const BALANCE: u64 = 2_000_000;
/// Every validator event; each run must see them all.
const KINDS: [&str; 6] = [
    "validator_bonded",
    "validator_unbonding",
    "validator_unbonded",
    "validator_unjailed",
    "validator_slashed",
    "validator_jailed",
];

fn params() -> serde_json::Value {
    json!({
        "block_reward": 100,
        "unbonding_blocks": 6,
        "signed_blocks_window": 8,
        "jail_missed_ppm": 400_000,
        "jail_blocks": 4,
        "slash_missed_ppm": 10_000,
        "double_sign_jail_blocks": 10,
        "max_validator_updates_per_block": 2,
        "max_validators": 5,
        "max_unbonding_entries": 2,
    })
}

fn random_msg(rng: &mut ChaCha20Rng, ops: &[SigningKey], cons: &[SigningKey], i: usize) -> Msg {
    match rng.gen_range(0..10) {
        0..=2 => bond(&cons[i], rng.gen_range(50_000..400_000)),
        3 => bond(
            &cons[rng.gen_range(0..cons.len())],
            rng.gen_range(1..200_000),
        ),
        4 | 5 => unbond(match rng.gen_range(0..3) {
            0 => 0,
            _ => rng.gen_range(1..300_000),
        }),
        6 => unjail(),
        7 => Msg::Transfer(pb::Transfer {
            to: ops[rng.gen_range(0..ops.len())].account().0.to_vec(),
            amount: rng.gen_range(1..50_000),
        }),
        8 => bond_key(&[rng.gen(); 32], rng.gen_range(0..200_000)),
        _ => bond(&cons[i], 0),
    }
}

/// Sum of balances and of bonded and unbonding stake.
fn holdings<S: Store>(net: &Net<S>, accounts: &[AccountId]) -> u64 {
    let balances: u64 = accounts.iter().map(|a| net.balance(a)).sum();
    let page = net.query("/validators?limit=100");
    let staked: u64 = page["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["bonded"].as_u64().unwrap()
                + v["unbonding"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["amount"].as_u64().unwrap())
                    .sum::<u64>()
        })
        .sum();
    balances + staked
}

fn run(seed: u64) {
    let genesis = key(200);
    let ops: Vec<SigningKey> = (1..=OPERATORS).map(key).collect();
    let cons: Vec<SigningKey> = (101..=100 + OPERATORS).map(key).collect();
    let balances: Vec<(AccountId, u64)> = ops.iter().map(|k| (k.account(), BALANCE)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut memory = Net::new(MemStore::new(), &[&genesis], &balances, params());
    let mut rocks = Net::new(
        RocksStore::open(dir.path()).unwrap(),
        &[&genesis],
        &balances,
        params(),
    );
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut updates_seen = 0;
    let mut seen = std::collections::BTreeMap::new();
    for height in 1..=80 {
        // Who is offline this block, and what evidence arrives.
        if rng.gen_ratio(1, 4) {
            let k = &cons[rng.gen_range(0..cons.len())];
            let a = address(k);
            if !memory.offline.remove(&a) {
                memory.offline.insert(a);
            }
            rocks.offline = memory.offline.clone();
        }
        let mut evidence = Vec::new();
        if rng.gen_ratio(1, 12) {
            let target = if rng.gen_ratio(1, 4) {
                key(250)
            } else {
                cons[rng.gen_range(0..cons.len())].clone()
            };
            evidence.push(Misbehavior {
                kind: if rng.gen() {
                    MisbehaviorKind::DuplicateVote
                } else {
                    MisbehaviorKind::LightClientAttack
                },
                address: address(&target).to_vec(),
                height: (height - 1).max(1),
            });
        }
        let count = rng.gen_range(0..6);
        let mut txs = Vec::with_capacity(count);
        for _ in 0..count {
            let i = rng.gen_range(0..ops.len());
            match rng.gen_range(0..12) {
                0 => {
                    let len = rng.gen_range(0..64);
                    txs.push((0..len).map(|_| rng.gen()).collect());
                }
                _ => {
                    let msg = random_msg(&mut rng, &ops, &cons, i);
                    txs.push(memory.sign(&ops[i], msg));
                }
            }
        }
        let a = memory.block_with(&txs, evidence.clone());
        let b = rocks.block_with(&txs, evidence);
        assert_eq!(a, b, "seed {seed}: replicas disagree at height {height}");
        updates_seen += a.validator_updates.len();
        for kind in KINDS {
            *seen.entry(kind).or_insert(0usize) += events(&a, kind).len();
        }
        // Resync nonces: a message that failed before its ante step did
        // not use its nonce.
        for k in &ops {
            let nonce = memory.query(&format!("/account/{}", k.account()))["nonce"]
                .as_u64()
                .unwrap();
            memory.nonces.insert(k.account(), nonce);
        }
        if height == 40 {
            // Restart the RocksDB replica from disk.
            let Net {
                app,
                txs,
                sets,
                offline,
                nonces,
            } = rocks;
            drop(app);
            rocks = Net {
                app: App::new(RocksStore::open(dir.path()).unwrap()),
                txs,
                sets,
                offline,
                nonces,
            };
            assert_eq!(
                rocks.app.last_commit(),
                memory.app.last_commit(),
                "seed {seed}"
            );
        }
    }
    assert_eq!(
        memory.query("/validators?limit=100"),
        rocks.query("/validators?limit=100"),
        "seed {seed}"
    );
    assert_eq!(memory.query("/stats"), rocks.query("/stats"), "seed {seed}");
    assert!(updates_seen > 0, "seed {seed}: validators came and went");
    for kind in KINDS {
        assert!(seen[kind] > 0, "seed {seed}: no {kind} event in the run");
    }
    let mut accounts: Vec<AccountId> = ops.iter().map(SigningKey::account).collect();
    accounts.push(genesis.account());
    let stats = memory.query("/stats");
    let minted = stats["credits_minted"].as_u64().unwrap();
    let slashed = stats["credits_slashed"].as_u64().unwrap();
    assert_eq!(
        holdings(&memory, &accounts),
        u64::from(OPERATORS) * BALANCE + minted - slashed,
        "seed {seed}: credits are conserved"
    );
}

#[test]
fn validator_replicas_agree_on_every_app_hash() {
    let seeds: Vec<u64> = match std::env::var("COMPUTE_TEST_SEED") {
        Ok(seed) => vec![seed.parse().expect("COMPUTE_TEST_SEED is a u64")],
        Err(_) => vec![1, 2, 3, 0xdead_beef],
    };
    for seed in seeds {
        run(seed);
    }
}
