//! Network work: the signers of the last commit share the block reward (the
//! remainder goes to the proposer), and every key's reputation counts the
//! blocks it signed and proposed.

mod common;

use common::{validator_key, TestChain};
use compute_abci::app::validator_address;
use compute_abci::store::MemStore;
use compute_abci::{App, BlockInput};
use compute_proto::{AccountId, SigningKey};
use serde_json::json;

#[test]
fn the_single_validator_earns_every_reward_after_the_first_block() {
    let mut chain = TestChain::new(MemStore::new(), &[], json!({"block_reward": 10}));
    for _ in 0..3 {
        chain.block(&[]);
    }
    let validator = AccountId(validator_key());
    // Block 1 has no last commit to reward.
    assert_eq!(chain.balance(&validator), 20);
    assert_eq!(chain.query("/stats")["credits_minted"], 20);
    let rep = chain.query(&format!("/reputation/{validator}"));
    assert_eq!(rep["blocks_proposed"], 3);
    assert_eq!(rep["blocks_signed"], 2);
    assert_eq!(
        rep["score_ppm"], 500_000,
        "network work does not change the worker score"
    );
    let nobody = chain.query(&format!(
        "/reputation/{}",
        SigningKey::from_seed([3; 32]).account()
    ));
    assert_eq!(nobody["blocks_signed"], 0);
    assert_eq!(nobody["score_ppm"], 500_000);
}

fn balance(app: &App<MemStore>, id: &AccountId) -> u64 {
    let answer = app.query(&format!("/account/{id}"), 0);
    serde_json::from_slice::<serde_json::Value>(&answer.value).unwrap()["balance"]
        .as_u64()
        .unwrap()
}

#[test]
fn signers_share_the_reward_and_the_proposer_gets_the_remainder() {
    let a = SigningKey::from_seed([11; 32]).account();
    let b = SigningKey::from_seed([12; 32]).account();
    let c = SigningKey::from_seed([13; 32]).account();
    let mut app = App::new(MemStore::new());
    app.init_chain(
        "c",
        1,
        br#"{"params": {"block_reward": 11}}"#,
        &[a.0, b.0, c.0],
    )
    .unwrap();
    let signers = vec![
        validator_address(&a.0).to_vec(),
        validator_address(&b.0).to_vec(),
    ];
    let out = app.finalize_block(BlockInput {
        height: 1,
        proposer_address: &validator_address(&c.0),
        signer_addresses: &signers,
        txs: &[] as &[Vec<u8>],
        hash: &[7; 32],
        time_seconds: 0,
    });
    app.commit();
    assert_eq!(out.events[0].r#type, "block_reward");
    assert_eq!(balance(&app, &a), 5);
    assert_eq!(balance(&app, &b), 5);
    assert_eq!(
        balance(&app, &c),
        1,
        "the proposer takes the remainder of 11 / 2"
    );
    // An address that is no validator earns nothing.
    let stranger = vec![vec![0u8; 20]];
    app.finalize_block(BlockInput {
        height: 2,
        proposer_address: &validator_address(&c.0),
        signer_addresses: &stranger,
        txs: &[] as &[Vec<u8>],
        hash: &[7; 32],
        time_seconds: 0,
    });
    app.commit();
    assert_eq!(balance(&app, &c), 1);
}
