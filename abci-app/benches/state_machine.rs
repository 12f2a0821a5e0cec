//! Throughput of the state machine alone: signed transfers through CheckTx
//! and through FinalizeBlock + Commit on RocksDB, next to the raw
//! `ed25519-consensus` verification rate measured in the same run.
//!
//! Run: `cargo bench -p compute-abci --bench state_machine --profile dev`
//! (the dev profile optimises every crate; see docs/BENCHMARKS.md).

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use compute_abci::store::{MemStore, RocksStore, Store};
use compute_abci::{App, BlockInput, Code};
use compute_proto::tx::verify_batch;
use compute_proto::{pb, SignedTx, SigningKey, TxBuilder};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

const ACCOUNTS: usize = 100;
const TXS_PER_BLOCK: usize = 1_000;

fn keys() -> Vec<SigningKey> {
    (0..ACCOUNTS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            SigningKey::from_seed(seed)
        })
        .collect()
}

fn validator() -> [u8; 32] {
    SigningKey::from_seed([250; 32]).account().0
}

/// `TXS_PER_BLOCK` transfers: each account sends several, in nonce order.
fn transfers(keys: &[SigningKey]) -> Vec<Vec<u8>> {
    let builder = TxBuilder::new("bench");
    (0..TXS_PER_BLOCK)
        .map(|i| {
            let from = &keys[i % keys.len()];
            let to = keys[(i + 1) % keys.len()].account();
            let nonce = (i / keys.len()) as u64;
            builder.sign(
                from,
                nonce,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: to.0.to_vec(),
                    amount: 1,
                }),
            )
        })
        .collect()
}

fn app<S: Store>(store: S, keys: &[SigningKey]) -> App<S> {
    let accounts: Vec<_> = keys
        .iter()
        .map(|k| json!({"address": k.account(), "balance": 1_000_000_000u64}))
        .collect();
    let mut app = App::new(store);
    app.init_chain(
        "bench",
        1,
        json!({"accounts": accounts, "params": {"max_pending_txs_per_account": 1000}})
            .to_string()
            .as_bytes(),
        &[validator()],
    )
    .expect("genesis");
    app
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let txs = transfers(&keys);
    let decoded: Vec<SignedTx> = txs
        .iter()
        .map(|t| SignedTx::decode(t, 1 << 20).unwrap())
        .collect();

    let mut group = c.benchmark_group("transfers");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TXS_PER_BLOCK as u64));

    group.bench_function("ed25519_verify_single", |b| {
        b.iter(|| {
            for tx in &decoded {
                tx.verify().unwrap();
            }
        })
    });
    group.bench_function("ed25519_verify_batch", |b| {
        let refs: Vec<&SignedTx> = decoded.iter().collect();
        b.iter(|| assert!(verify_batch(&refs).iter().all(Result::is_ok)))
    });
    group.bench_function("check_tx", |b| {
        b.iter_batched(
            || app(MemStore::new(), &keys),
            |mut app| {
                for tx in &txs {
                    assert_eq!(app.check_tx(tx).code, Code::Ok);
                }
            },
            BatchSize::PerIteration,
        )
    });
    let proposer = compute_abci::app::validator_address(&validator());
    group.bench_function("finalize_block_and_commit_rocksdb", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let app = app(RocksStore::open(dir.path()).unwrap(), &keys);
                (dir, app)
            },
            |(dir, mut app)| {
                let out = app.finalize_block(BlockInput {
                    height: 1,
                    proposer_address: &proposer,
                    signer_addresses: &[],
                    txs: &txs,
                });
                assert!(out.tx_results.iter().all(|r| r.code == Code::Ok));
                app.commit();
                (dir, app)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
