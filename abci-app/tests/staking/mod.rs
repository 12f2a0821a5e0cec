//! Drives an [`App`] block by block as CometBFT would for validators by
//! stake: every block carries the votes of the last commit (the validator
//! set of the previous height, with the offline validators' votes absent)
//! and any evidence, and the validator updates a block returns join the set
//! two heights later. The harness checks what CometBFT itself would refuse:
//! a removal of a validator it does not hold, two updates of one validator
//! in a block, an empty set, a power out of range.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use compute_abci::app::validator_address;
use compute_abci::store::Store;
use compute_abci::{
    App, BlockInput, BlockOutput, Code, ConsensusInput, Misbehavior, MisbehaviorKind, TxOutcome,
    Vote,
};
use compute_proto::pb::tx_body::Msg;
use compute_proto::{pb, AccountId, SigningKey, TxBuilder};
use serde_json::{json, Value};

/// The power CometBFT's genesis gives each genesis validator in these tests.
pub const GENESIS_POWER: u64 = 10;

/// CometBFT's validator set at one height: address to (key, power).
pub type ValidatorSet = BTreeMap<[u8; 20], ([u8; 32], u64)>;

/// A chain with a simulated CometBFT around it.
pub struct Net<S: Store> {
    /// The state machine.
    pub app: App<S>,
    /// Builds this chain's transactions.
    pub txs: TxBuilder,
    /// CometBFT's validator set by height.
    pub sets: BTreeMap<i64, ValidatorSet>,
    /// Validators whose votes are absent from every commit.
    pub offline: BTreeSet<[u8; 20]>,
    /// The next nonce of each signer, as this harness sent them.
    pub nonces: BTreeMap<AccountId, u64>,
}

/// A deterministic key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed([seed; 32])
}

/// The 20-byte address of `key`'s public key.
pub fn address(key: &SigningKey) -> [u8; 20] {
    validator_address(&key.account().0)
}

/// Evidence of a duplicate vote by `key` at `height`.
pub fn duplicate_vote(key: &SigningKey, height: i64) -> Misbehavior {
    Misbehavior {
        kind: MisbehaviorKind::DuplicateVote,
        address: address(key).to_vec(),
        height,
    }
}

/// All events of a block: its transactions' then its own.
pub fn all_events(out: &BlockOutput) -> Vec<compute_abci::events::Event> {
    out.tx_results
        .iter()
        .flat_map(|r| r.events.iter().cloned())
        .chain(out.events.iter().cloned())
        .collect()
}

/// The attributes of every event of `kind` in a block.
pub fn events(out: &BlockOutput, kind: &str) -> Vec<BTreeMap<String, String>> {
    all_events(out)
        .into_iter()
        .filter(|e| e.r#type == kind)
        .map(|e| e.attributes.into_iter().map(|a| (a.key, a.value)).collect())
        .collect()
}

/// The updates of a block as (key, power).
pub fn updates(out: &BlockOutput) -> Vec<(AccountId, u64)> {
    out.validator_updates
        .iter()
        .map(|u| (AccountId(u.pub_key), u.power))
        .collect()
}

impl<S: Store> Net<S> {
    /// Genesis with `validators` (each of power [`GENESIS_POWER`]),
    /// `balances` and parameter overrides `params`.
    pub fn new(
        store: S,
        validators: &[&SigningKey],
        balances: &[(AccountId, u64)],
        params: Value,
    ) -> Self {
        let accounts: Vec<Value> = balances
            .iter()
            .map(|(id, b)| json!({"address": id, "balance": b}))
            .collect();
        let app_state = json!({"accounts": accounts, "params": params});
        let keys: Vec<[u8; 32]> = validators.iter().map(|k| k.account().0).collect();
        let mut app = App::new(store);
        app.init_chain("staking", 1, app_state.to_string().as_bytes(), &keys)
            .expect("genesis accepted");
        let genesis: ValidatorSet = keys
            .iter()
            .map(|k| (validator_address(k), (*k, GENESIS_POWER)))
            .collect();
        let mut sets = BTreeMap::new();
        sets.insert(1, genesis.clone());
        sets.insert(2, genesis);
        Self {
            app,
            txs: TxBuilder::new("staking"),
            sets,
            offline: BTreeSet::new(),
            nonces: BTreeMap::new(),
        }
    }

    /// The last committed height.
    pub fn height(&self) -> i64 {
        self.app.last_commit().height
    }

    /// CometBFT's validator set at `height`.
    pub fn set(&self, height: i64) -> &ValidatorSet {
        &self.sets[&height]
    }

    /// Signs `msg` with the signer's next nonce.
    pub fn sign(&mut self, signer: &SigningKey, msg: Msg) -> Vec<u8> {
        let nonce = self.nonces.entry(signer.account()).or_insert(0);
        let tx = self.txs.sign(signer, *nonce, msg);
        *nonce += 1;
        tx
    }

    /// Signs `msg` without using up a nonce (for transactions that fail
    /// before their ante step, or CheckTx probes).
    pub fn sign_probe(&self, signer: &SigningKey, msg: Msg) -> Vec<u8> {
        let nonce = self.nonces.get(&signer.account()).copied().unwrap_or(0);
        self.txs.sign(signer, nonce, msg)
    }

    /// Runs one block with `txs` and `misbehavior`, commits it, and applies
    /// its validator updates to the set two heights on.
    pub fn block_with(&mut self, txs: &[Vec<u8>], misbehavior: Vec<Misbehavior>) -> BlockOutput {
        let height = self.height() + 1;
        let votes: Vec<Vote> = if height > 1 {
            self.set(height - 1)
                .keys()
                .map(|a| Vote {
                    address: a.to_vec(),
                    missed: self.offline.contains(a),
                })
                .collect()
        } else {
            Vec::new()
        };
        let signers: Vec<Vec<u8>> = votes
            .iter()
            .filter(|v| !v.missed)
            .map(|v| v.address.clone())
            .collect();
        let proposer = self
            .set(height)
            .keys()
            .find(|a| !self.offline.contains(*a))
            .copied()
            .expect("someone online proposes");
        let out = self.app.finalize_block_with(
            BlockInput {
                height,
                proposer_address: &proposer,
                signer_addresses: &signers,
                txs,
                hash: &compute_proto::sha3_256(&height.to_be_bytes()),
                time_seconds: 1_700_000_000 + height,
            },
            &ConsensusInput { votes, misbehavior },
        );
        assert_eq!(self.app.commit(), height);
        // What CometBFT checks of the updates before applying them.
        let mut next = self.set(height + 1).clone();
        let mut seen = BTreeSet::new();
        for u in &out.validator_updates {
            let a = validator_address(&u.pub_key);
            assert!(seen.insert(a), "two updates of one validator in a block");
            assert!(u.power <= (i64::MAX as u64) / 8, "power out of range");
            if u.power == 0 {
                assert!(
                    next.remove(&a).is_some(),
                    "height {height}: removal of a validator CometBFT does not hold"
                );
            } else {
                next.insert(a, (u.pub_key, u.power));
            }
        }
        assert!(!next.is_empty(), "height {height}: the set would be empty");
        self.sets.insert(height + 2, next);
        out
    }

    /// Runs one block of `txs`.
    pub fn block(&mut self, txs: &[Vec<u8>]) -> BlockOutput {
        self.block_with(txs, Vec::new())
    }

    /// Runs `n` empty blocks; returns their outputs.
    pub fn blocks(&mut self, n: usize) -> Vec<BlockOutput> {
        (0..n).map(|_| self.block(&[])).collect()
    }

    /// CheckTx.
    pub fn check(&mut self, tx: &[u8]) -> TxOutcome {
        self.app.check_tx(tx)
    }

    /// Runs `msg` from `signer` alone in a block; returns its outcome and
    /// the block.
    pub fn run(&mut self, signer: &SigningKey, msg: Msg) -> (TxOutcome, BlockOutput) {
        let tx = self.sign(signer, msg);
        let out = self.block(&[tx]);
        (out.tx_results[0].clone(), out)
    }

    /// Like [`Net::run`], expecting success.
    pub fn ok(&mut self, signer: &SigningKey, msg: Msg) -> BlockOutput {
        let (outcome, out) = self.run(signer, msg);
        assert_eq!(outcome.code, Code::Ok, "{}", outcome.log);
        out
    }

    /// A query's JSON answer; panics on a non-zero code.
    pub fn query(&self, path: &str) -> Value {
        let answer = self.app.query(path, 0);
        assert_eq!(answer.code, Code::Ok, "{path}: {}", answer.log);
        serde_json::from_slice(&answer.value).expect("JSON answer")
    }

    /// A query's code and log.
    pub fn query_code(&self, path: &str) -> (Code, String) {
        let answer = self.app.query(path, 0);
        (answer.code, answer.log)
    }

    /// The balance of `id`.
    pub fn balance(&self, id: &AccountId) -> u64 {
        self.query(&format!("/account/{id}"))["balance"]
            .as_u64()
            .unwrap()
    }

    /// `/validator/<key>`.
    pub fn validator(&self, key: &SigningKey) -> Value {
        self.query(&format!("/validator/{}", key.account()))
    }
}

/// `BondValidator{pub_key, stake}`.
pub fn bond(consensus: &SigningKey, stake: u64) -> Msg {
    bond_key(&consensus.account().0, stake)
}

/// `BondValidator` with raw key bytes.
pub fn bond_key(pub_key: &[u8], stake: u64) -> Msg {
    Msg::BondValidator(pb::BondValidator {
        pub_key: pub_key.to_vec(),
        stake,
    })
}

/// `UnbondValidator{amount}`.
pub fn unbond(amount: u64) -> Msg {
    Msg::UnbondValidator(pb::UnbondValidator { amount })
}

/// `UnjailValidator{}`.
pub fn unjail() -> Msg {
    Msg::UnjailValidator(pb::UnjailValidator {})
}
