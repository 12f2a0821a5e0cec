//! Typed access to the chain state over the raw [`KvRead`] / [`StateTx`]
//! layer. Values are protobuf; every key comes from [`keys`].

pub mod keys;

use compute_proto::{pb, AccountId, JobId, JobStatus, ModuleId, ReplicaStatus, TaskStatus};
use prost::Message;

use crate::store::{KvRead, StateTx};

/// Decodes a stored record; a record that does not decode is corruption of
/// consensus state, which halts the node.
pub(crate) fn decode<M: Message + Default>(key: &[u8], raw: &[u8]) -> M {
    M::decode(raw).unwrap_or_else(|e| {
        panic!(
            "state record under key {} does not decode ({e}); the state is corrupt, halting",
            String::from_utf8_lossy(key)
        )
    })
}

/// An account id read back from a stored record or key. One that is not 32
/// bytes was never written by this state machine: the state is corrupt, and
/// the node halts rather than pay or punish a made-up account.
pub(crate) fn stored_account(bytes: &[u8]) -> AccountId {
    AccountId::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "stored account id {} is invalid ({e}); the state is corrupt, halting",
            hex::encode(bytes)
        )
    })
}

/// A job id read back from a stored record or key; see [`stored_account`].
pub(crate) fn stored_job(bytes: &[u8]) -> JobId {
    JobId::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "stored job id {} is invalid ({e}); the state is corrupt, halting",
            hex::encode(bytes)
        )
    })
}

/// A big-endian u64 stored under `key`; see [`stored_account`].
pub(crate) fn stored_u64(key: &[u8], raw: &[u8]) -> u64 {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .unwrap_or_else(|_| {
            panic!(
                "state value under key {} is not a u64; the state is corrupt, halting",
                String::from_utf8_lossy(key)
            )
        })
}

/// A module id read back from a stored record; see [`stored_account`].
pub(crate) fn stored_module(bytes: &[u8]) -> ModuleId {
    ModuleId::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "stored module id {} is invalid ({e}); the state is corrupt, halting",
            hex::encode(bytes)
        )
    })
}

/// The `<job 32><index u32 BE>` end of an index key (pending, deadline)
/// this state machine wrote; anything else is corruption, which halts the
/// node.
pub(crate) fn stored_job_task(rest: &[u8]) -> (JobId, u32) {
    let parsed = rest.len() == 36;
    assert!(
        parsed,
        "index key ending {} is not <job><task>; the state is corrupt, halting",
        hex::encode(rest)
    );
    let id = stored_job(&rest[..32]);
    let index = u32::from_be_bytes([rest[32], rest[33], rest[34], rest[35]]);
    (id, index)
}

/// Typed reads, available on every view of the state.
pub trait StateRead: KvRead {
    /// A protobuf record, if present.
    fn record<M: Message + Default>(&self, key: &[u8]) -> Option<M> {
        self.get(key).map(|raw| decode(key, &raw))
    }

    /// An account; a key never seen has a zero balance and nonce.
    fn account(&self, id: &AccountId) -> pb::Account {
        self.record(&keys::account(id)).unwrap_or_default()
    }

    /// The chain parameters as stored; present from genesis on. Parameters
    /// with explicit presence that genesis did not name are absent here
    /// (`crate::params::resolved` fills in their defaults).
    fn params(&self) -> Option<pb::Params> {
        self.record(&keys::params())
    }

    /// The chain id; present from genesis on.
    fn chain_id(&self) -> Option<String> {
        self.get(&keys::chain_id())
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
    }

    /// Chain-wide counters.
    fn stats(&self) -> pb::Stats {
        self.record(&keys::stats()).unwrap_or_default()
    }

    /// A big-endian `u64` counter; 0 while never written.
    fn counter(&self, key: &[u8]) -> u64 {
        self.get(key).map_or(0, |raw| stored_u64(key, &raw))
    }

    /// A stored module's metadata.
    fn module(&self, id: &ModuleId) -> Option<pb::ModuleRecord> {
        self.record(&keys::module(id))
    }

    /// A stored module's bytes.
    fn module_code(&self, id: &ModuleId) -> Option<Vec<u8>> {
        self.get(&keys::module_code(id))
    }

    /// A registered worker.
    fn worker(&self, id: &AccountId) -> Option<pb::Worker> {
        self.record(&keys::worker(id))
    }

    /// The reputation of a key; zero counters for a key never seen.
    fn reputation(&self, id: &AccountId) -> pb::Reputation {
        self.record(&keys::reputation(id)).unwrap_or_default()
    }

    /// A job.
    fn job(&self, id: &JobId) -> Option<pb::Job> {
        self.record(&keys::job(id))
    }

    /// The tasks of a job, by index; at most `limit`.
    fn tasks(&self, job: &JobId, limit: usize) -> Vec<(u32, pb::Task)> {
        let prefix = keys::tasks_of(job);
        self.scan(&prefix, None, limit)
            .into_iter()
            .map(|(key, raw)| {
                let index = key
                    .get(prefix.len()..)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or_else(|| {
                        panic!("task key {key:?} has no index: the state is corrupt")
                    });
                (index, decode(&key, &raw))
            })
            .collect()
    }

    /// One task of a job.
    fn task(&self, job: &JobId, index: u32) -> Option<pb::Task> {
        self.record(&keys::task(job, index))
    }

    /// The completion record of a settled task.
    fn completion(&self, job: &JobId, index: u32) -> Option<pb::Completion> {
        self.record(&keys::completion(job, index))
    }

    /// How many of `job`'s tasks `worker` was ever given.
    fn worker_job_count(&self, worker: &AccountId, job: &JobId) -> u32 {
        self.get(&keys::worker_job(worker, job))
            .and_then(|raw| <[u8; 4]>::try_from(raw.as_slice()).ok())
            .map_or(0, u32::from_be_bytes)
    }

    /// The account of the validator with this 20-byte consensus address:
    /// a genesis validator's own key, else the operator that bonded it.
    fn validator_account(&self, address: &[u8]) -> Option<AccountId> {
        self.genesis_validator(address).or_else(|| {
            let address = <[u8; 20]>::try_from(address).ok()?;
            self.validator_record(&address)
                .map(|v| stored_account(&v.operator))
        })
    }

    /// The consensus key of the genesis validator with this address (the
    /// registry InitChain writes: the key is its account).
    fn genesis_validator(&self, address: &[u8]) -> Option<AccountId> {
        self.get(&keys::validator(address))
            .and_then(|raw| AccountId::from_slice(&raw).ok())
    }

    /// The record of the validator with this address, if the chain manages it.
    fn validator_record(&self, address: &[u8; 20]) -> Option<pb::Validator> {
        self.record(&keys::validator_record(address))
    }

    /// The address of the validator `operator` bonded, if any.
    fn validator_of(&self, operator: &AccountId) -> Option<[u8; 20]> {
        let key = keys::validator_operator(operator);
        self.get(&key).map(|raw| {
            <[u8; 20]>::try_from(raw.as_slice()).unwrap_or_else(|_| {
                panic!(
                    "state value under key {} is not an address; the state is corrupt, halting",
                    String::from_utf8_lossy(&key)
                )
            })
        })
    }
}

impl<T: KvRead + ?Sized> StateRead for T {}

impl StateTx<'_> {
    /// Stores a protobuf record.
    pub fn put_record<M: Message>(&mut self, key: Vec<u8>, record: &M) {
        self.put_raw(key, record.encode_to_vec());
    }

    /// Stores an account.
    pub fn put_account(&mut self, id: &AccountId, account: &pb::Account) {
        self.put_record(keys::account(id), account);
    }

    /// Applies `change` to the reputation of `id`.
    pub fn update_reputation(&mut self, id: &AccountId, change: impl FnOnce(&mut pb::Reputation)) {
        let mut reputation = self.reputation(id);
        change(&mut reputation);
        self.put_record(keys::reputation(id), &reputation);
    }

    /// Stores a job.
    pub fn put_job(&mut self, id: &JobId, job: &pb::Job) {
        self.put_record(keys::job(id), job);
    }

    /// Stores a worker.
    pub fn put_worker(&mut self, id: &AccountId, worker: &pb::Worker) {
        self.put_record(keys::worker(id), worker);
    }

    /// Stores a task.
    pub fn put_task(&mut self, job: &JobId, index: u32, task: &pb::Task) {
        self.put_record(keys::task(job, index), task);
    }

    /// Stores the chain-wide counters.
    pub fn put_stats(&mut self, stats: &pb::Stats) {
        self.put_record(keys::stats(), stats);
    }

    /// The sequence number the counter under `key` holds (0 at first),
    /// which it then moves past: how a queue numbers its next entry.
    pub fn take_sequence(&mut self, key: Vec<u8>) -> u64 {
        let sequence = self.counter(&key);
        self.put_raw(key, sequence.saturating_add(1).to_be_bytes().to_vec());
        sequence
    }
}

/// The status of a stored job. One that is unspecified or out of range was
/// never written by this state machine: the state is corrupt, and the node
/// halts rather than move the job on from a made-up phase.
pub(crate) fn job_status(job: &pb::Job) -> JobStatus {
    JobStatus::try_from(job.status)
        .unwrap_or_else(|e| panic!("stored {e}; the state is corrupt, halting"))
}

/// The status of a stored task; see [`job_status`].
pub(crate) fn task_status(task: &pb::Task) -> TaskStatus {
    TaskStatus::try_from(task.status)
        .unwrap_or_else(|e| panic!("stored {e}; the state is corrupt, halting"))
}

/// The status of a stored replica; see [`job_status`].
pub(crate) fn replica_status(replica: &pb::Replica) -> ReplicaStatus {
    ReplicaStatus::try_from(replica.status)
        .unwrap_or_else(|e| panic!("stored {e}; the state is corrupt, halting"))
}
