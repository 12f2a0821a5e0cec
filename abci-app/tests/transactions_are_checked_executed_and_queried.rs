//! Scenario tests of the state machine over the in-memory store: tables of
//! transactions and their expected codes, walked through whole blocks.

mod common;

use common::{keys, validator_key, TestChain};
use compute_abci::store::MemStore;
use compute_abci::Code;
use compute_proto::pb;
use serde_json::json;

#[test]
fn check_tx_accepts_several_pending_transactions_of_one_account_in_nonce_order() {
    let k = keys(2);
    let (alice, bob) = (&k[0], k[1].account());
    let mut chain = TestChain::new(MemStore::new(), &[(alice.account(), 100)], json!({}));
    let txs: Vec<Vec<u8>> = (0..3).map(|n| chain.transfer(alice, n, &bob, 30)).collect();
    for tx in &txs {
        assert_eq!(chain.check(tx).code, Code::Ok);
    }
    // The check-state has spent 90 of 100: a fourth of 30 cannot pay.
    assert_eq!(
        chain.check(&chain.transfer(alice, 3, &bob, 30)).code,
        Code::InsufficientFunds
    );
    // A gap and a replay against the check-state.
    assert_eq!(
        chain.check(&chain.transfer(alice, 5, &bob, 1)).code,
        Code::NonceGap
    );
    assert_eq!(
        chain.check(&chain.transfer(alice, 1, &bob, 1)).code,
        Code::NonceReplayed
    );

    let out = chain.block(&txs);
    assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
    assert_eq!(chain.balance(&bob), 90);
    assert_eq!(chain.balance(&alice.account()), 10);
    // After Commit the check-state starts again from the committed state.
    assert_eq!(
        chain.check(&chain.transfer(alice, 3, &bob, 10)).code,
        Code::Ok
    );
}

#[test]
fn finalize_block_rejects_bad_transactions_without_touching_state() {
    let k = keys(2);
    let (alice, bob) = (&k[0], k[1].account());
    let mut chain = TestChain::new(MemStore::new(), &[(alice.account(), 100)], json!({}));
    chain.block(&[]);
    let mut forged = chain.transfer(alice, 0, &bob, 1);
    let last = forged.len() - 1;
    forged[last] ^= 1; // the signature is the last field
    let cases: Vec<(Vec<u8>, Code)> = vec![
        (vec![1, 2, 3], Code::TxMalformed),
        (forged, Code::InvalidSignature),
        (
            compute_proto::TxBuilder::new("elsewhere").sign(alice, 0, transfer_msg(&bob, 1)),
            Code::WrongChainId,
        ),
        (chain.transfer(alice, 1, &bob, 1), Code::NonceGap),
        (
            chain.transfer(&k[1], 0, &alice.account(), 1),
            Code::InsufficientFunds,
        ),
    ];
    let before = chain.query(&format!("/account/{}", alice.account()));
    let txs: Vec<Vec<u8>> = cases.iter().map(|(tx, _)| tx.clone()).collect();
    let out = chain.block(&txs);
    for ((_, want), got) in cases.iter().zip(&out.tx_results) {
        assert_eq!(got.code, *want, "{}", got.log);
        assert!(!got.log.is_empty());
    }
    assert_eq!(
        chain.query(&format!("/account/{}", alice.account())),
        before
    );
    assert_eq!(chain.query("/stats")["txs_failed"], 5);
}

#[test]
fn a_failed_message_in_a_block_still_pays_its_fee_and_uses_its_nonce() {
    let k = keys(2);
    let (alice, bob) = (&k[0], k[1].account());
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(alice.account(), 100)],
        json!({"min_fee": 2, "block_reward": 0}),
    );
    chain.txs.fee = 2;
    // Both pass CheckTx on their own, but together the second cannot pay.
    let a = chain.transfer(alice, 0, &bob, 60);
    let b = chain.transfer(alice, 1, &bob, 60);
    let out = chain.block(&[a, b]);
    assert_eq!(out.tx_results[0].code, Code::Ok);
    assert_eq!(out.tx_results[1].code, Code::InsufficientFunds);
    assert_eq!(chain.balance(&alice.account()), 100 - 60 - 2 - 2);
    assert_eq!(
        chain.query(&format!("/account/{}", alice.account()))["nonce"],
        2
    );
    // Fees go to the proposer's account.
    let proposer = compute_proto::AccountId(validator_key());
    assert_eq!(chain.balance(&proposer), 4);
    assert_eq!(chain.query("/stats")["fees_collected"], 4);
    // A fee below the minimum is refused before anything runs.
    chain.txs.fee = 1;
    assert_eq!(
        chain.check(&chain.transfer(alice, 2, &bob, 1)).code,
        Code::FeeTooLow
    );
}

#[test]
fn check_tx_limits_pending_transactions_per_account() {
    let k = keys(2);
    let (alice, bob) = (&k[0], k[1].account());
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(alice.account(), 100)],
        json!({"max_pending_txs_per_account": 2}),
    );
    assert_eq!(
        chain.check(&chain.transfer(alice, 0, &bob, 1)).code,
        Code::Ok
    );
    assert_eq!(
        chain.check(&chain.transfer(alice, 1, &bob, 1)).code,
        Code::Ok
    );
    let third = chain.check(&chain.transfer(alice, 2, &bob, 1));
    assert_eq!(third.code, Code::TooManyPending);
    assert!(third.log.contains("wait for a block"), "{}", third.log);
}

#[test]
fn transfers_to_bytes_that_are_no_public_key_are_refused() {
    let k = keys(1);
    let mut chain = TestChain::new(MemStore::new(), &[(k[0].account(), 100)], json!({}));
    // Not every 32-byte string is an ed25519 point; find one that is not.
    let not_a_key = (0u8..=255)
        .map(|b| [b; 32])
        .find(|bytes| ed25519_consensus::VerificationKey::try_from(*bytes).is_err())
        .expect("some byte pattern is not a curve point");
    let tx = chain.txs.sign(
        &k[0],
        0,
        pb::tx_body::Msg::Transfer(pb::Transfer {
            to: not_a_key.to_vec(),
            amount: 1,
        }),
    );
    let outcome = chain.check(&tx);
    assert_eq!(outcome.code, Code::InvalidMessage);
    assert!(
        outcome.log.contains("not an ed25519 public key"),
        "{}",
        outcome.log
    );
}

#[test]
fn queries_answer_json_or_a_helpful_error() {
    let k = keys(1);
    let chain = TestChain::new(
        MemStore::new(),
        &[(k[0].account(), 5)],
        json!({"block_reward": 9}),
    );
    // Nothing is committed before the first block.
    assert_eq!(chain.app.query("/params", 0).code, Code::NotFound);
    let mut chain = chain;
    chain.block(&[]);
    assert_eq!(chain.query("/params")["block_reward"], 9);
    assert_eq!(
        chain.query(&format!("/account/{}", k[0].account()))["balance"],
        5
    );
    assert_eq!(chain.query("/stats")["height"], 1);
    for (path, code) in [
        ("/acount/00", Code::UnknownQuery),
        ("/account/zz", Code::BadQuery),
        ("/account/", Code::BadQuery),
        ("", Code::UnknownQuery),
        ("/////", Code::UnknownQuery),
        ("/account/00/extra", Code::UnknownQuery),
    ] {
        let answer = chain.app.query(path, 0);
        assert_eq!(answer.code, code, "{path}: {}", answer.log);
        assert!(!answer.log.is_empty());
    }
    let old = chain.app.query("/stats", 7);
    assert_eq!(old.code, Code::HeightUnavailable);
}

#[test]
fn a_bad_genesis_is_refused_with_a_clear_message() {
    let mut app = compute_abci::App::new(MemStore::new());
    let err = app
        .init_chain("c", 1, br#"{"params": {"slash_ppm": 2000000}}"#, &[])
        .unwrap_err();
    assert!(err.to_string().contains("slash_ppm"), "{err}");
    assert_eq!(app.last_commit().height, 0, "nothing was applied");
}

fn transfer_msg(to: &compute_proto::AccountId, amount: u64) -> pb::tx_body::Msg {
    pb::tx_body::Msg::Transfer(pb::Transfer {
        to: to.0.to_vec(),
        amount,
    })
}

#[test]
fn proposals_with_undecodable_transactions_are_rejected_and_never_prepared() {
    let k = keys(2);
    let chain = TestChain::new(MemStore::new(), &[(k[0].account(), 100)], json!({}));
    let good = chain.transfer(&k[0], 0, &k[1].account(), 1);
    let garbage = vec![0xffu8; 7];
    assert!(chain.app.process_proposal(std::slice::from_ref(&good)));
    assert!(!chain.app.process_proposal(&[good.clone(), garbage.clone()]));
    let prepared = chain
        .app
        .prepare_proposal(&[garbage, good.clone(), good.clone()], 1 << 20);
    assert_eq!(prepared, vec![good.clone(), good.clone()]);
    // The byte budget cuts the list, never splits a transaction.
    let one = chain
        .app
        .prepare_proposal(&[good.clone(), good.clone()], good.len() as u64 + 1);
    assert_eq!(one.len(), 1);
}

#[test]
fn proposals_are_checked_as_check_tx_checks_them() {
    use prost::Message;
    let k = keys(2);
    let chain = TestChain::new(MemStore::new(), &[(k[0].account(), 100)], json!({}));
    let good = chain.transfer(&k[0], 0, &k[1].account(), 1);
    // A signature that does not verify.
    let mut bad_signature = pb::Tx::decode(good.as_slice()).unwrap();
    bad_signature.signature[5] ^= 1;
    let bad_signature = bad_signature.encode_to_vec();
    // The same transfer with an unknown field appended to the envelope.
    let mut non_canonical = good.clone();
    non_canonical.extend_from_slice(&[9 << 3, 0]);
    // Signed for another chain.
    let other_chain =
        compute_proto::TxBuilder::new("other").sign(&k[0], 0, transfer_msg(&k[1].account(), 1));
    // The identity point as signer with R = identity, S = 0.
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let forged = pb::Tx {
        body: pb::Tx::decode(good.as_slice()).unwrap().body,
        signer: identity.clone(),
        signature: [identity, vec![0; 32]].concat(),
    }
    .encode_to_vec();
    for (name, bad) in [
        ("bad signature", &bad_signature),
        ("non-canonical", &non_canonical),
        ("other chain", &other_chain),
        ("small-order signer", &forged),
    ] {
        assert!(
            !chain.app.process_proposal(&[good.clone(), bad.clone()]),
            "{name}"
        );
        assert_eq!(
            chain
                .app
                .prepare_proposal(&[bad.clone(), good.clone()], 1 << 20),
            vec![good.clone()],
            "{name}"
        );
    }
    assert!(chain.app.process_proposal(&[good]));
}

#[test]
fn an_amount_and_fee_that_overflow_are_refused_as_an_overflow() {
    let k = keys(2);
    let mut chain = TestChain::new(MemStore::new(), &[(k[0].account(), 100)], json!({}));
    let builder = compute_proto::TxBuilder {
        chain_id: "test-chain".into(),
        fee: 2,
    };
    let tx = builder.sign(&k[0], 0, transfer_msg(&k[1].account(), u64::MAX));
    let outcome = chain.check(&tx);
    assert_eq!(outcome.code, Code::Overflow, "{}", outcome.log);
    assert!(outcome.log.contains("amount + fee"), "{}", outcome.log);
}
