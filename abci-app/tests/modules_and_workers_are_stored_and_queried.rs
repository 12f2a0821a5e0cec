//! StoreModule and the worker registry: admissible modules are stored once
//! under their sha3 id and can be read back; hostile or malformed ones are
//! refused with the sandbox's reason; registering locks the stake and
//! unregistering returns it.

mod common;

use base64::Engine;
use common::{keys, TestChain};
use compute_abci::store::MemStore;
use compute_abci::Code;
use compute_proto::{pb, ModuleId};
use serde_json::json;

fn store(wasm: &[u8]) -> pb::tx_body::Msg {
    pb::tx_body::Msg::StoreModule(pb::StoreModule {
        wasm: wasm.to_vec(),
    })
}

fn register(capacity: u32, stake: u64) -> pb::tx_body::Msg {
    pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker { capacity, stake })
}

#[test]
fn a_valid_module_is_stored_once_and_readable_by_id() {
    let k = keys(2);
    let mut chain = TestChain::new(MemStore::new(), &[(k[0].account(), 100)], json!({}));
    let wasm = compute_jobs::HASHSEARCH_WASM;
    let id = ModuleId::of(wasm);
    let out = chain.block(&[chain.txs.sign(&k[0], 0, store(wasm))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    let stored = &out.tx_results[0].events[1];
    assert_eq!(stored.r#type, "module_stored");
    assert_eq!(stored.attributes[0].value, id.to_hex());

    let meta = chain.query(&format!("/module/{id}"));
    assert_eq!(meta["size"], wasm.len());
    assert_eq!(meta["has_verify"], true, "the search job exports verify");
    assert_eq!(meta["owner"], k[0].account().to_hex());
    assert!(meta.get("code").is_none());
    let with_code = chain.query(&format!("/module/{id}?code=true"));
    let code = base64::engine::general_purpose::STANDARD
        .decode(with_code["code"].as_str().unwrap())
        .unwrap();
    assert_eq!(code, wasm);
    assert_eq!(chain.query("/stats")["modules"], 1);

    // Storing the same bytes again is refused, by anyone.
    let again = chain.check(&chain.txs.sign(&k[1], 0, store(wasm)));
    assert_eq!(again.code, Code::ModuleExists);
    assert!(again.log.contains(&id.to_hex()), "{}", again.log);
}

#[test]
fn inadmissible_modules_are_refused_with_the_reason() {
    let k = keys(1);
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(k[0].account(), 100)],
        json!({"max_module_bytes": 65536}),
    );
    let importing = wat::parse_str(
        r#"(module (import "env" "clock" (func)) (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0)
            (func (export "run") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let no_run = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "alloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let too_large = vec![0u8; 70_000];
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            b"not wasm at all".to_vec(),
            "not a valid WebAssembly module",
        ),
        ("forbidden import", importing, "env::clock"),
        ("missing run", no_run, "`run`"),
        ("too large", too_large, "`module_bytes_max` of 65536 bytes"),
    ];
    for (name, wasm, reason) in cases {
        let outcome = chain.check(&chain.txs.sign(&k[0], 0, store(&wasm)));
        assert_eq!(outcome.code, Code::InvalidModule, "{name}: {}", outcome.log);
        assert!(
            outcome.log.contains(reason),
            "{name}: {:?} lacks {reason:?}",
            outcome.log
        );
    }
    chain.block(&[]);
    assert_eq!(chain.query("/stats")["modules"], 0);
    let missing = chain
        .app
        .query(&format!("/module/{}", ModuleId::of(b"x")), 0);
    assert_eq!(missing.code, Code::NotFound);
    let bad_flag = chain
        .app
        .query(&format!("/module/{}?cod=true", ModuleId::of(b"x")), 0);
    assert_eq!(bad_flag.code, Code::BadQuery);
}

#[test]
fn registering_locks_the_stake_and_unregistering_returns_it() {
    let k = keys(2);
    let worker = &k[0];
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(worker.account(), 1_000)],
        json!({"min_worker_stake": 100, "max_worker_capacity": 8, "max_workers": 1}),
    );
    let cases = [
        (register(0, 100), Code::InvalidMessage),
        (register(9, 100), Code::InvalidMessage),
        (register(2, 99), Code::StakeTooLow),
        (register(2, 5_000), Code::InsufficientFunds),
        (
            pb::tx_body::Msg::UnregisterWorker(pb::UnregisterWorker {}),
            Code::UnknownWorker,
        ),
    ];
    for (msg, code) in cases {
        let outcome = chain.check(&chain.txs.sign(worker, 0, msg));
        assert_eq!(outcome.code, code, "{}", outcome.log);
    }

    let out = chain.block(&[chain.txs.sign(worker, 0, register(4, 300))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    assert_eq!(chain.balance(&worker.account()), 700);
    let record = chain.query(&format!("/worker/{}", worker.account()));
    assert_eq!(record["capacity"], 4);
    assert_eq!(record["stake"], 300);
    assert_eq!(record["active_tasks"], 0);
    assert_eq!(chain.query("/stats")["workers"], 1);

    assert_eq!(
        chain
            .check(&chain.txs.sign(worker, 1, register(4, 300)))
            .code,
        Code::WorkerExists
    );
    // The pool holds max_workers = 1 already.
    let other = &k[1];
    let out = chain.block(&[chain.transfer(worker, 1, &other.account(), 200)]);
    assert_eq!(out.tx_results[0].code, Code::Ok);
    assert_eq!(
        chain
            .check(&chain.txs.sign(other, 0, register(1, 100)))
            .code,
        Code::TooManyWorkers
    );

    let out = chain.block(&[chain.txs.sign(
        worker,
        2,
        pb::tx_body::Msg::UnregisterWorker(pb::UnregisterWorker {}),
    )]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    assert_eq!(
        chain.balance(&worker.account()),
        800,
        "1000, less 200 sent; the 300 of stake came back"
    );
    assert_eq!(
        chain
            .app
            .query(&format!("/worker/{}", worker.account()), 0)
            .code,
        Code::NotFound
    );
    assert_eq!(chain.query("/stats")["workers"], 0);
}

#[test]
fn storing_a_module_pays_for_its_compile_by_size() {
    let k = keys(1);
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(k[0].account(), 1_000_000)],
        json!({"store_module_fee_per_kib": 10}),
    );
    let wasm = compute_jobs::HASHSEARCH_WASM;
    let fee = (wasm.len() as u64).div_ceil(1024) * 10;
    let proposer = compute_proto::AccountId(common::validator_key());
    let out = chain.block(&[chain.txs.sign(&k[0], 0, store(wasm))]);
    assert_eq!(
        out.tx_results[0].code,
        Code::Ok,
        "{}",
        out.tx_results[0].log
    );
    assert_eq!(chain.balance(&k[0].account()), 1_000_000 - fee);
    assert_eq!(
        chain.balance(&proposer),
        fee,
        "the fee went to the proposer"
    );

    // An uploader who cannot pay is refused before anything is compiled.
    let poor = compute_proto::SigningKey::from_seed([77; 32]);
    let mut chain = TestChain::new(
        MemStore::new(),
        &[(poor.account(), fee - 1)],
        json!({"store_module_fee_per_kib": 10}),
    );
    let refused = chain.check(&chain.txs.sign(&poor, 0, store(wasm)));
    assert_eq!(refused.code, Code::InsufficientFunds, "{}", refused.log);
}

#[test]
fn one_block_compiles_at_most_its_budget_of_modules() {
    // Distinct copies of one module (a custom section tells them apart),
    // more than the smallest budget genesis accepts can compile at once.
    let wasm = compute_jobs::PRIMES_WASM;
    let units = compute_sandbox::validate_module(wasm, &compute_sandbox::ModuleLimits::default())
        .unwrap()
        .compile_units;
    let budget = u64::from(compute_sandbox::ModuleLimits::default().compile_units_max);
    let fit = (budget / units) as usize;
    let k: Vec<_> = (0..fit as u8 + 2)
        .map(|i| compute_proto::SigningKey::from_seed([100 + i; 32]))
        .collect();
    let balances: Vec<_> = k.iter().map(|key| (key.account(), 1_000_000)).collect();
    let mut chain = TestChain::new(
        MemStore::new(),
        &balances,
        json!({"max_compile_units_per_block": budget}),
    );
    let txs: Vec<Vec<u8>> = k
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut copy = wasm.to_vec();
            copy.extend_from_slice(&[0, 2, 1, i as u8]);
            chain.txs.sign(key, 0, store(&copy))
        })
        .collect();
    // An honest proposer leaves what does not fit for a later block; a
    // proposal with all of them is refused.
    assert_eq!(
        chain.app.prepare_proposal(&txs, u64::MAX),
        txs[..fit].to_vec()
    );
    assert!(!chain.app.process_proposal(&txs));
    assert!(chain.app.process_proposal(&txs[..fit]));
    // FinalizeBlock holds the line even so, without using the nonces.
    let out = chain.block(&txs);
    for r in &out.tx_results[..fit] {
        assert_eq!(r.code, Code::Ok, "{}", r.log);
    }
    for r in &out.tx_results[fit..] {
        assert_eq!(r.code, Code::ModuleBudgetExceeded);
        assert!(r.log.contains("send it again"), "{}", r.log);
    }
    let out = chain.block(&txs[fit..]);
    for r in &out.tx_results {
        assert_eq!(r.code, Code::Ok, "{}", r.log);
    }
    assert_eq!(chain.query("/stats")["modules"], fit as u64 + 2);
}
