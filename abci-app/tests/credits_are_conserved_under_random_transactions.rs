//! Property: over random sequences of valid and invalid transactions from
//! several keys (transfers, worker registration, jobs posted and cancelled),
//! two replicas agree on every app hash, no balance goes negative (u64 and
//! checked arithmetic make that a refused transaction, never a wrap), and
//! credits are conserved: balances + stakes + escrows = genesis + minted.

mod common;

use common::{keys, validator_key, TestChain};
use compute_abci::store::MemStore;
use compute_proto::{pb, AccountId, JobId, ModuleId, SigningKey};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEYS: usize = 4;
const GENESIS_BALANCE: u64 = 10_000;

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Register {
        who: usize,
        capacity: u32,
        stake: u64,
    },
    Unregister {
        who: usize,
    },
    Post {
        who: usize,
        tasks: usize,
        price: u64,
    },
    Cancel {
        who: usize,
        job: usize,
    },
    Garbage(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, 0..KEYS, 0u64..4_000).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        2 => (0..KEYS, 0u32..4, 0u64..3_000).prop_map(|(who, capacity, stake)| Op::Register { who, capacity, stake }),
        1 => (0..KEYS).prop_map(|who| Op::Unregister { who }),
        2 => (0..KEYS, 0usize..4, 0u64..2_000).prop_map(|(who, tasks, price)| Op::Post { who, tasks, price }),
        1 => (0..KEYS, 0usize..8).prop_map(|(who, job)| Op::Cancel { who, job }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Garbage),
    ]
}

struct World {
    chains: [TestChain<MemStore>; 2],
    keys: Vec<SigningKey>,
    module: ModuleId,
    jobs: Vec<JobId>,
}

impl World {
    fn new() -> Self {
        let keys = keys(KEYS as u8);
        let balances: Vec<(AccountId, u64)> = keys
            .iter()
            .map(|k| (k.account(), GENESIS_BALANCE))
            .collect();
        let params = json!({"block_reward": 7, "min_worker_stake": 10, "max_worker_capacity": 3});
        let mut chains = [
            TestChain::new(MemStore::new(), &balances, params.clone()),
            TestChain::new(MemStore::new(), &balances, params),
        ];
        let wasm = compute_jobs::PRIMES_WASM;
        let store = chains[0].txs.sign(
            &keys[0],
            0,
            pb::tx_body::Msg::StoreModule(pb::StoreModule {
                wasm: wasm.to_vec(),
            }),
        );
        for chain in &mut chains {
            chain.block(std::slice::from_ref(&store));
        }
        Self {
            chains,
            keys,
            module: ModuleId::of(wasm),
            jobs: Vec::new(),
        }
    }

    fn nonce(&self, who: usize) -> u64 {
        self.chains[0].query(&format!("/account/{}", self.keys[who].account()))["nonce"]
            .as_u64()
            .unwrap()
    }

    /// Signs `op` with the signer's current nonce plus `offset` (its earlier
    /// transactions in the same block).
    fn sign(&mut self, op: &Op, offset: &mut [u64; KEYS]) -> Vec<u8> {
        let (who, msg) = match op {
            Op::Garbage(bytes) => return bytes.clone(),
            Op::Transfer { from, to, amount } => (
                *from,
                pb::tx_body::Msg::Transfer(pb::Transfer {
                    to: self.keys[*to].account().0.to_vec(),
                    amount: *amount,
                }),
            ),
            Op::Register {
                who,
                capacity,
                stake,
            } => (
                *who,
                pb::tx_body::Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: *capacity,
                    stake: *stake,
                }),
            ),
            Op::Unregister { who } => (
                *who,
                pb::tx_body::Msg::UnregisterWorker(pb::UnregisterWorker {}),
            ),
            Op::Post { who, tasks, price } => (
                *who,
                pb::tx_body::Msg::PostJob(pb::PostJob {
                    module_id: self.module.0.to_vec(),
                    tasks: (0..*tasks)
                        .map(|i| pb::TaskInput {
                            source: Some(pb::task_input::Source::Inline(vec![i as u8])),
                            size: 1,
                        })
                        .collect(),
                    policy: None,
                    fuel_limit: 1_000_000,
                    price_per_mfuel: *price,
                    deadline_blocks: 100,
                    min_reputation_ppm: 0,
                    max_tasks_per_worker: 0,
                }),
            ),
            Op::Cancel { who, job } => {
                let id = self.jobs.get(*job).copied().unwrap_or(JobId([9; 32]));
                (
                    *who,
                    pb::tx_body::Msg::CancelJob(pb::CancelJob {
                        job_id: id.0.to_vec(),
                    }),
                )
            }
        };
        let nonce = self.nonce(who) + offset[who];
        offset[who] += 1;
        if matches!(op, Op::Post { .. }) {
            // Remember the id it would get; a refused post leaves a dangling
            // id, which CancelJob must then refuse.
            self.jobs
                .push(JobId::derive(&self.keys[who].account(), nonce));
        }
        self.chains[0].txs.sign(&self.keys[who], nonce, msg)
    }

    /// balances + stakes + escrows - (genesis + minted): must be zero.
    fn imbalance(&self) -> i128 {
        let chain = &self.chains[0];
        let mut held: i128 = 0;
        let mut ids: Vec<AccountId> = self.keys.iter().map(|k| k.account()).collect();
        ids.push(AccountId(validator_key()));
        for id in &ids {
            held += i128::from(chain.balance(id));
            let worker = chain.app.query(&format!("/worker/{id}"), 0);
            if worker.code == compute_abci::Code::Ok {
                let v: Value = serde_json::from_slice(&worker.value).unwrap();
                held += i128::from(v["stake"].as_u64().unwrap());
            }
        }
        let mut seen = self.jobs.clone();
        seen.sort();
        seen.dedup();
        for id in &seen {
            let job = chain.app.query(&format!("/job/{id}"), 0);
            if job.code == compute_abci::Code::Ok {
                let v: Value = serde_json::from_slice(&job.value).unwrap();
                held += i128::from(v["escrow"].as_u64().unwrap());
            }
        }
        let minted = chain.query("/stats")["credits_minted"].as_u64().unwrap();
        held - i128::from(GENESIS_BALANCE * KEYS as u64) - i128::from(minted)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn credits_are_conserved_and_replicas_agree(
        blocks in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..10)
    ) {
        let mut world = World::new();
        for ops in &blocks {
            let mut offset = [0u64; KEYS];
            let txs: Vec<Vec<u8>> = ops.iter().map(|op| world.sign(op, &mut offset)).collect();
            let a = world.chains[0].block(&txs);
            let b = world.chains[1].block(&txs);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(world.imbalance(), 0);
        }
    }
}
