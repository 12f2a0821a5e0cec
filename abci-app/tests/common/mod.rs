//! Drives an [`App`] through whole blocks, as CometBFT would: CheckTx,
//! FinalizeBlock, Commit, then queries.

#![allow(dead_code)]

use compute_abci::store::Store;
use compute_abci::{App, BlockOutput, Code, TxOutcome};
use compute_proto::{pb, AccountId, SigningKey, TxBuilder};
use serde_json::{json, Value};

/// The proposer's consensus key in these tests.
pub fn validator_key() -> [u8; 32] {
    SigningKey::from_seed([200; 32]).account().0
}

/// A chain over store `S`, with its genesis run.
pub struct TestChain<S: Store> {
    /// The state machine.
    pub app: App<S>,
    /// Builds this chain's transactions.
    pub txs: TxBuilder,
}

impl<S: Store> TestChain<S> {
    /// Runs genesis with `balances` and parameter overrides `params`.
    ///
    /// Unless `params` names it, `store_module_fee_per_kib` is 0: scenarios
    /// count balances to the credit, and the store fee has tests of its own.
    pub fn new(store: S, balances: &[(AccountId, u64)], mut params: Value) -> Self {
        if let Some(fields) = params.as_object_mut() {
            fields.entry("store_module_fee_per_kib").or_insert(json!(0));
        }
        let accounts: Vec<Value> = balances
            .iter()
            .map(|(id, b)| json!({"address": id, "balance": b}))
            .collect();
        let app_state = json!({"accounts": accounts, "params": params});
        let mut app = App::new(store);
        app.init_chain(
            "test-chain",
            1,
            app_state.to_string().as_bytes(),
            &[validator_key()],
        )
        .expect("genesis accepted");
        Self {
            app,
            txs: TxBuilder::new("test-chain"),
        }
    }

    /// Runs one block of `txs` and commits it.
    pub fn block(&mut self, txs: &[Vec<u8>]) -> BlockOutput {
        let height = self.app.last_commit().height + 1;
        let proposer = compute_abci::app::validator_address(&validator_key());
        // The one validator signs every commit (none before the first block).
        let signers = if height > 1 {
            vec![proposer.to_vec()]
        } else {
            Vec::new()
        };
        let out = self.app.finalize_block(compute_abci::BlockInput {
            height,
            proposer_address: &proposer,
            signer_addresses: &signers,
            txs,
            hash: &compute_proto::sha3_256(&height.to_be_bytes()),
            time_seconds: 1_700_000_000 + height,
        });
        assert_eq!(self.app.commit(), height);
        // The draw's index is derived state held in memory: it must equal
        // one built from the committed state.
        if let Err(why) = self.app.check_draw_index() {
            panic!("at height {height} the draw index differs from the state: {why}");
        }
        out
    }

    /// CheckTx.
    pub fn check(&mut self, tx: &[u8]) -> TxOutcome {
        self.app.check_tx(tx)
    }

    /// A query's JSON answer; panics on a non-zero code.
    pub fn query(&self, path: &str) -> Value {
        let answer = self.app.query(path, 0);
        assert_eq!(answer.code, Code::Ok, "{path}: {}", answer.log);
        serde_json::from_slice(&answer.value).expect("JSON answer")
    }

    /// The balance of `id`.
    pub fn balance(&self, id: &AccountId) -> u64 {
        self.query(&format!("/account/{id}"))["balance"]
            .as_u64()
            .unwrap()
    }

    /// A signed transfer.
    pub fn transfer(&self, from: &SigningKey, nonce: u64, to: &AccountId, amount: u64) -> Vec<u8> {
        self.txs.sign(
            from,
            nonce,
            pb::tx_body::Msg::Transfer(pb::Transfer {
                to: to.0.to_vec(),
                amount,
            }),
        )
    }
}

/// A module whose `verify` refuses every output: a requester's attempt to
/// have honest workers slashed.
pub const LYING_VERIFY_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) i32.const 1024)
  (func (export "run") (param i32 i32) (result i64) i64.const 1)
  (func (export "verify") (param i32 i32 i32 i32) (result i32) i32.const 0))
"#;

/// `n` deterministic keys.
pub fn keys(n: u8) -> Vec<SigningKey> {
    (0..n).map(|i| SigningKey::from_seed([i + 1; 32])).collect()
}
