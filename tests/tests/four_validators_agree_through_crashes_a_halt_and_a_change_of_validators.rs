//! Four genesis validators and a full node on loopback, each cometbft plus
//! compute-abci under `compute-supervisor`, under transfer load from three
//! senders (each sticky to one node, moving on when it fails) and a job run
//! by three workers through a gateway on node 0:
//!
//! 1. **Crashes.** `kill -9` of one node's cometbft, of its compute-abci,
//!    and of both: at random times, and at the moment of commit (right
//!    after compute-abci finalizes a block, right after cometbft logs
//!    `committed state`). The other three keep making blocks; the
//!    supervisor brings the node back and it catches up.
//! 2. **A halt.** Two of four validators lose power (supervisor and
//!    children SIGKILLed): the chain stops. They come back: it resumes.
//! 3. **A change of validators.** The full node's operator bonds its
//!    consensus key with `compute validator bond`; CometBFT takes it into
//!    the set and it signs blocks. A genesis validator bonds its own key
//!    and unbonds with `compute validator unbond`: it leaves the set and
//!    its stake returns after the unbonding delay.
//!
//! Afterwards: every node holds the same block and app hash at every
//! height; a replay of the whole chain from genesis (with the votes and
//! the validator changes CometBFT reported) computes every app hash; every
//! transaction sent is found by `/tx` identically on every node or on
//! none, each sender's nonces landed exactly once each; the job completed;
//! and credits are conserved.
//!
//! Faults are drawn from a seed printed at the start; `FAULT_SEED=<n>`
//! replays a run's choices. `FAULT_ROUNDS=<n>` (default 1) repeats steps 1
//! and 2, with nodes, faults and moments drawn at random after the first
//! round: `scripts/soak.sh` runs it long.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use compute_client::submit::tx_hash;
use compute_client::{ChainClient, JobTasks, Query};
use compute_proto::views::{AccountView, StatsView, ValidatorView, WorkerView};
use compute_proto::{AccountId, SigningKey, TxBuilder};
use compute_tests::{
    cli_new_key, poll_until, primes_follow_args, replay_chain, run_cli, send_signal, transfer,
    write_primes_inputs, Gateway, NetConfig, Testnet, TestnetConfig, WorkerOptions, WorkerProcess,
};
use serde_json::{json, Value};
use tendermint_rpc::{Client, HttpClient};

/// Genesis validators; node `VALIDATORS` is the full node that joins.
const VALIDATORS: usize = 4;
/// The joining full node.
const JOINER: usize = 4;
/// The genesis validator that leaves.
const LEAVER: usize = 3;
/// Credits of every funded account at genesis.
const BALANCE: u64 = 10_000_000;
/// Credits of each genesis validator's own account.
const VALIDATOR_BALANCE: u64 = 1_000_000;
/// Stake bonded by a validator: 10 units of power, as a genesis validator
/// has, so that a bonded validator never holds a third of the power.
const STAKE: u64 = 100_000;
/// Blocks before unbonded stake returns.
const UNBONDING_BLOCKS: u64 = 20;
/// Transfer senders.
const SENDERS: usize = 3;
/// Pause of each sender between transactions.
const SEND_EVERY: Duration = Duration::from_millis(120);
/// Tasks of the job, and numbers each sieves.
const TASKS: u64 = 4;
const SPAN: u64 = 50_000;
/// Each worker's stake.
const WORKER_STAKE: u64 = 1_000;
/// The whole scenario with one round, processes started.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(420);
/// What each further round may add.
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);
/// The most rounds `FAULT_ROUNDS` may ask for.
const MAX_ROUNDS: u32 = 1_000;
/// How long the job may be followed.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a node may take to come back and catch up.
const RECOVERY: Duration = Duration::from_secs(60);
/// How long a quick CLI command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_validators_agree_through_crashes_a_halt_and_a_change_of_validators() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let rounds: u32 = match std::env::var("FAULT_ROUNDS") {
        Ok(text) => text
            .parse()
            .ok()
            .filter(|r| (1..=MAX_ROUNDS).contains(r))
            .unwrap_or_else(|| panic!("FAULT_ROUNDS must be 1 to {MAX_ROUNDS}, not {text}")),
        Err(_) => 1,
    };
    eprintln!("fault seed {seed} (FAULT_SEED={seed} replays these choices), {rounds} round(s)");
    let mut world = World::start(seed).await.expect("start the testnet");
    let timeout = SCENARIO_TIMEOUT + ROUND_TIMEOUT * (rounds - 1);
    let outcome = tokio::time::timeout(timeout, scenario(&mut world, rounds)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("seed {seed}: {e:#}"),
        Err(_) => panic!("seed {seed}: the scenario did not finish within {timeout:?}"),
    }
}

/// The processes and keys of the scenario; they live in the test function
/// so that a failure panics while they still run and their logs print.
struct World {
    rng: Rng,
    dir: tempfile::TempDir,
    // Dropped before the testnet: they talk to node 0.
    workers: Vec<WorkerProcess>,
    gateway: Gateway,
    net: Testnet,
    senders: Vec<SigningKey>,
    sink: AccountId,
    requester_key: PathBuf,
    requester: AccountId,
    operator_key: PathBuf,
    operator: AccountId,
}

impl World {
    async fn start(seed: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("compute-faults-")
            .tempdir()?;
        let senders: Vec<SigningKey> = (0..SENDERS)
            .map(|i| SigningKey::from_seed([0x60 + i as u8; 32]))
            .collect();
        let sink = SigningKey::from_seed([0x5f; 32]).account();
        let requester_key = dir.path().join("requester.json");
        let requester = cli_new_key(&requester_key).await?;
        let operator_key = dir.path().join("operator.json");
        let operator = cli_new_key(&operator_key).await?;
        let mut worker_keys = Vec::new();
        for i in 0..3 {
            let path = dir.path().join(format!("worker{i}.json"));
            let account = cli_new_key(&path).await?;
            worker_keys.push((path, account));
        }
        let mut net = NetConfig::funded(&senders.iter().collect::<Vec<_>>(), BALANCE);
        net.chain_id = "compute-faults".to_owned();
        net.timeout_commit_ms = 250;
        net.balances.extend(
            [requester, operator]
                .into_iter()
                .chain(worker_keys.iter().map(|(_, a)| *a))
                .map(|a| (a, BALANCE)),
        );
        net.params = json!({
            "unbonding_blocks": UNBONDING_BLOCKS,
            // Crashes and the halt cost a node far fewer blocks than this:
            // liveness jailing is tested in the state machine's tests.
            "signed_blocks_window": 10_000,
            "jail_missed_ppm": 900_000,
        });
        let net = Testnet::start(TestnetConfig {
            net,
            validators: VALIDATORS,
            full_nodes: 1,
            validator_balance: VALIDATOR_BALANCE,
            supervisor_args: [
                "--stall-timeout=15s",
                "--startup-grace=30s",
                "--poll-interval=250ms",
                "--rpc-timeout=2s",
                "--kill-grace=2s",
                "--backoff-initial=500ms",
                "--backoff-max=2s",
                "--backoff-reset=20s",
            ]
            .map(str::to_owned)
            .to_vec(),
        })
        .await?;
        let gateway = Gateway::start(&net.nodes[0].rpc_url(), &[])?;
        let mut workers = Vec::new();
        for (path, _) in &worker_keys {
            let options = WorkerOptions {
                capacity: 2,
                stake: WORKER_STAKE,
                cheat: false,
                extra_args: Vec::new(),
            };
            workers.push(WorkerProcess::start(&gateway.url(), path, options).await?);
        }
        Ok(Self {
            rng: Rng(seed | 1),
            dir,
            workers,
            gateway,
            net,
            senders,
            sink,
            requester_key,
            requester,
            operator_key,
            operator,
        })
    }

    /// `compute <args> --output json --node <node i> --gateway <gateway>`.
    async fn cli(&self, node: usize, args: &[&str]) -> Result<Value> {
        let rpc = self.net.nodes[node].rpc_url();
        let grpc = self.gateway.url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", "json", "--node", &rpc, "--gateway", &grpc]);
        run_cli(&all, CLI_TIMEOUT).await?.json()
    }
}

async fn scenario(world: &mut World, rounds: u32) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = world.net.nodes.iter().map(|n| n.rpc_url()).collect();
    let mut load = Vec::new();
    for (i, key) in world.senders.iter().enumerate() {
        load.push(tokio::spawn(send_transfers(
            urls.clone(),
            world.net.chain_id.clone(),
            key.clone(),
            world.sink,
            i,
            stop.clone(),
        )));
    }
    let job = tokio::spawn(run_job(
        world.dir.path().to_owned(),
        world.requester_key.clone(),
        world.net.nodes[0].rpc_url(),
        world.gateway.url(),
    ));

    for round in 0..rounds {
        // 1. Crashes, on validators other than node 0 (which carries the
        //    gateway): in the first round each kind once at a random time
        //    and once at commit, then drawn at random.
        let plan = if round == 0 {
            vec![
                (1, Fault::Cometbft, When::Random),
                (2, Fault::Abci, When::AtCommit),
                (3, Fault::Both, When::Random),
                (1, Fault::Cometbft, When::AtCommit),
                (2, Fault::Abci, When::Random),
                (3, Fault::Both, When::AtCommit),
            ]
        } else {
            (0..6).map(|_| world.rng.fault()).collect()
        };
        for (node, fault, when) in plan {
            crash(world, node, fault, when).await?;
        }

        // 2. Two of four validators down: the chain halts, then resumes.
        let down = if round == 0 {
            [2, 3]
        } else {
            let first = 1 + world.rng.below(3) as usize;
            [first, 1 + (first + world.rng.below(2) as usize) % 3]
        };
        halt_and_resume(world, down).await?;
        eprintln!("round {} of {rounds} done", round + 1);
    }

    // 3. The full node joins the validators; a genesis validator leaves.
    join(world).await?;
    leave(world).await?;

    // Afterwards.
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for task in load {
        sent.extend(task.await.context("a sender panicked")??);
    }
    let job = job.await.context("the job's follower panicked")??;
    ensure!(job["status"] == "completed", "the job: {job}");
    ensure!(
        job["settled"] == TASKS && job["failed"] == 0,
        "the job: {job}"
    );
    check_final_state(world, &sent, &job).await
}

/// Which processes of a node a crash kills.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Cometbft,
    Abci,
    Both,
}

/// When a crash strikes.
#[derive(Clone, Copy, Debug)]
enum When {
    /// After a random delay of up to 1.5 s.
    Random,
    /// As soon as the node's log shows a block finalized (compute-abci) or
    /// committed (cometbft).
    AtCommit,
}

/// Kills `fault` of node `i` with SIGKILL; checks that the other three
/// validators keep making blocks and that the supervisor brings the node
/// back to their height.
async fn crash(world: &mut World, i: usize, fault: Fault, when: When) -> Result<()> {
    let others: Vec<usize> = (0..VALIDATORS).filter(|j| *j != i).collect();
    match when {
        When::Random => {
            let delay = world.rng.below(1500);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        When::AtCommit => {
            let (log, needle) = match fault {
                Fault::Cometbft => ("cometbft", "committed state"),
                Fault::Abci | Fault::Both => ("compute-abci", "finalize_block"),
            };
            world
                .net
                .wait_for_new_log_line(i, log, needle, Duration::from_secs(20))
                .await?;
        }
    }
    let node = &world.net.nodes[i];
    let names: &[&str] = match fault {
        Fault::Cometbft => &["cometbft"],
        Fault::Abci => &["compute-abci"],
        Fault::Both => &["cometbft", "compute-abci"],
    };
    let mut old = BTreeMap::new();
    for name in names {
        let pid = node
            .child_pid(name)
            .with_context(|| format!("node {i} runs no {name}"))?;
        old.insert(*name, pid);
    }
    for (name, pid) in &old {
        send_signal(*pid, "KILL").with_context(|| format!("kill {name} of node {i}"))?;
    }
    let before = max_height(world, &others).await;
    eprintln!("fault: kill -9 {names:?} of node {i} ({when:?}) near height {before}");

    // Three of four keep the chain going.
    world
        .net
        .wait_for_height(&others, before + 3, Duration::from_secs(30))
        .await
        .context("three of four validators should keep making blocks")?;

    // The supervisor restarts the node (a new cometbft runs) and it
    // catches up.
    node.wait_for_child("cometbft", old.get("cometbft").copied(), RECOVERY)
        .await?;
    node.wait_for_child("compute-abci", old.get("compute-abci").copied(), RECOVERY)
        .await?;
    let target = max_height(world, &others).await;
    node.wait_for_height(target, RECOVERY)
        .await
        .with_context(|| format!("node {i} should catch up after the crash"))?;
    Ok(())
}

/// Takes two validators down at once (supervisor and children, as a power
/// cut would): with half of the power gone no block commits. Then starts
/// them again and checks that the chain moves on.
async fn halt_and_resume(world: &mut World, down: [usize; 2]) -> Result<()> {
    let up: Vec<usize> = (0..world.net.nodes.len())
        .filter(|j| !down.contains(j))
        .collect();
    for &i in &down {
        world.net.nodes[i].kill_unit();
    }
    eprintln!("fault: nodes {down:?} down (supervisor and children SIGKILLed)");
    // A block already voted may still commit; then nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let halted_at = max_height(world, &up).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = max_height(world, &up).await;
    ensure!(
        later == halted_at,
        "with 2 of 4 validators the chain went on from {halted_at} to {later}"
    );
    for &i in &down {
        world.net.nodes[i].spawn()?;
    }
    let all: Vec<usize> = (0..world.net.nodes.len()).collect();
    world
        .net
        .wait_for_height(&all, halted_at + 3, RECOVERY)
        .await
        .context("the chain should resume once 3 of 4 validators run")?;
    eprintln!("halted at {halted_at}; resumed");
    Ok(())
}

/// The full node's operator bonds its consensus key; CometBFT takes it into
/// the set and it signs a block.
async fn join(world: &mut World) -> Result<()> {
    let key_file = world.net.priv_validator_key_file(JOINER);
    let key_file = key_file.to_str().context("a UTF-8 path")?;
    let operator_key = world.operator_key.to_str().context("a UTF-8 path")?;
    bond(world, 0, operator_key, key_file).await?;
    let address = world.net.validator_address(JOINER)?;
    poll_until(
        "CometBFT takes the bonded validator into its set",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            Ok(world
                .net
                .cometbft_validators(0)
                .await?
                .contains(&address)
                .then_some(()))
        },
    )
    .await?;
    let client = world.net.nodes[0].client();
    let signed_at = poll_until(
        "the joined validator signs a block",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let block = client.latest_block().await?.block;
            let signed = block.last_commit.iter().flat_map(|c| &c.signatures).any(|s| {
                matches!(s, tendermint::block::CommitSig::BlockIdFlagCommit { validator_address, .. }
                    if validator_address.to_string().eq_ignore_ascii_case(&address))
            });
            Ok(signed.then_some(block.header.height.value()))
        },
    )
    .await?;
    let shown = world.cli(0, &["validator", "show", key_file]).await?;
    ensure!(
        shown["power"] == 10 && shown["operator"] == world.operator.to_hex(),
        "validator show: {shown}"
    );
    eprintln!("node {JOINER} joined the validators and signed block {signed_at}");
    Ok(())
}

/// A genesis validator takes its power under the chain's management by
/// bonding its own key, then unbonds: it leaves CometBFT's set, keeps
/// running as a full node, and its stake returns after the delay.
async fn leave(world: &mut World) -> Result<()> {
    let key_file = world.net.priv_validator_key_file(LEAVER);
    let key_file = key_file.to_str().context("a UTF-8 path")?;
    let own_key = world.dir.path().join("leaver.json");
    let own_key = own_key.to_str().context("a UTF-8 path")?.to_owned();
    let imported = world
        .cli(0, &["keys", "import", key_file, &own_key])
        .await?;
    let account = world.net.consensus_key(LEAVER)?.account();
    ensure!(
        imported.to_string().contains(&account.to_hex()),
        "keys import: {imported}"
    );
    bond(world, 1, &own_key, key_file).await?;
    let unbonded = world
        .cli(1, &["validator", "unbond", "--key", &own_key])
        .await?;
    ensure!(unbonded["status"] == "committed", "unbond: {unbonded}");
    let address = world.net.validator_address(LEAVER)?;
    poll_until(
        "CometBFT removes the unbonded validator",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            Ok((!world.net.cometbft_validators(0).await?.contains(&address)).then_some(()))
        },
    )
    .await?;
    let shown = world.cli(0, &["validator", "show", key_file]).await?;
    ensure!(
        shown["power"] == 0 && shown["bonded"] == 0,
        "validator show after unbonding: {shown}"
    );
    let completion = shown["unbonding"][0]["completion_height"]
        .as_u64()
        .with_context(|| format!("an unbonding entry: {shown}"))?;
    let list = world.cli(0, &["validator", "list"]).await?;
    let listed = list["validators"]
        .as_array()
        .with_context(|| format!("validator list: {list}"))?;
    ensure!(
        listed.len() == 2,
        "the chain manages two validators: {list}"
    );

    // The set without it still makes blocks, and it follows as a full node.
    let all: Vec<usize> = (0..world.net.nodes.len()).collect();
    world
        .net
        .wait_for_height(&all, completion + 1, RECOVERY)
        .await?;
    let record = validator_view(&world.net.nodes[0].chain(), &address).await?;
    ensure!(
        record.unbonding.is_empty() && record.bonded == 0,
        "the stake returned after the unbonding delay: {record:?}"
    );
    eprintln!("node {LEAVER} left the validators; its stake returned at {completion}");
    Ok(())
}

/// `compute validator bond` of [`STAKE`] through node `node`, signed by
/// `operator_key` for the consensus key in `key_file`; it must commit.
async fn bond(world: &World, node: usize, operator_key: &str, key_file: &str) -> Result<()> {
    let stake = STAKE.to_string();
    let args = [
        "validator",
        "bond",
        "--key",
        operator_key,
        "--consensus-key",
        key_file,
        "--stake",
        &stake,
    ];
    let bonded = world.cli(node, &args).await?;
    ensure!(bonded["status"] == "committed", "bond: {bonded}");
    Ok(())
}

/// A transaction a sender signed and broadcast (or tried to).
#[derive(Debug)]
struct Sent {
    hash: String,
    sender: usize,
    nonce: u64,
    accepted: bool,
}

/// Signs and broadcasts transfers until `stop`, each with the pending nonce
/// of the node it goes to; stays on one node until it fails, then moves to
/// the next. Returns every transaction it sent.
async fn send_transfers(
    urls: Vec<String>,
    chain_id: String,
    key: SigningKey,
    to: AccountId,
    sender: usize,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Sent>> {
    let chains: Vec<ChainClient> = urls
        .iter()
        .map(|u| ChainClient::new(u, chain_id.clone()))
        .collect::<Result<_, _>>()?;
    let builder = TxBuilder::new(chain_id.clone());
    let account = key.account();
    let mut cursor = sender % chains.len();
    let mut sent = Vec::new();
    let mut count: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(SEND_EVERY).await;
        let chain = &chains[cursor];
        let nonce = match chain.pending_nonce(&account).await {
            Ok(n) => n.nonce,
            Err(_) => {
                cursor = (cursor + 1) % chains.len();
                continue;
            }
        };
        count += 1;
        let tx = builder.sign(&key, nonce, transfer(&to, 1 + count % 5));
        let hash = tx_hash(&tx);
        let answer =
            tokio::time::timeout(Duration::from_secs(5), chain.rpc().broadcast_tx_sync(tx)).await;
        let accepted = matches!(&answer, Ok(Ok(r)) if r.code.is_ok());
        sent.push(Sent {
            hash,
            sender,
            nonce,
            accepted,
        });
        if !matches!(answer, Ok(Ok(_))) {
            cursor = (cursor + 1) % chains.len();
        }
    }
    Ok(sent)
}

/// Submits a prime-counting job with the CLI and follows it to its end.
async fn run_job(dir: PathBuf, key: PathBuf, rpc: String, grpc: String) -> Result<Value> {
    let wasm = dir.join("primes.wasm");
    std::fs::write(&wasm, compute_jobs::PRIMES_WASM)?;
    let inputs = dir.join("inputs");
    write_primes_inputs(&inputs, TASKS, SPAN)?;
    let mut args = primes_follow_args(&wasm, &inputs, &key, JOB_TIMEOUT, &dir.join("out"));
    args.extend(["--output", "json", "--node", &rpc, "--gateway", &grpc].map(str::to_owned));
    run_cli(&args, JOB_TIMEOUT + Duration::from_secs(20))
        .await?
        .json()
}

/// The agreement, replay, transaction and conservation checks.
async fn check_final_state(world: &World, sent: &[Sent], job: &Value) -> Result<()> {
    let all: Vec<usize> = (0..world.net.nodes.len()).collect();
    let height = max_height(world, &all).await + 2;
    world.net.wait_for_height(&all, height, RECOVERY).await?;
    let compared = world.net.check_agreement(height).await?;
    let replayed = replay_chain(&world.net.nodes[0].client()).await?;
    ensure!(
        replayed + 1 >= height,
        "replayed {replayed} blocks of {height}"
    );
    eprintln!(
        "{compared} heights agree on {} nodes; replayed {replayed} blocks",
        all.len()
    );

    // Every transaction is on every node or on none.
    let chains: Vec<ChainClient> = world.net.nodes.iter().map(|n| n.chain()).collect();
    let mut landed: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let (mut accepted, mut committed) = (0usize, 0usize);
    // A nonce sent again with the same amount signs the same bytes: one
    // transaction under one hash.
    let mut unique: BTreeMap<&str, &Sent> = BTreeMap::new();
    for tx in sent {
        unique.entry(tx.hash.as_str()).or_insert(tx);
        accepted += usize::from(tx.accepted);
    }
    for tx in unique.values() {
        let first = chains[0].lookup_tx(&tx.hash).await?;
        for (i, chain) in chains.iter().enumerate().skip(1) {
            let here = chain.lookup_tx(&tx.hash).await?;
            ensure!(
                here == first,
                "tx {} (sender {} nonce {}): node 0 has {first:?}, node {i} {here:?}",
                tx.hash,
                tx.sender,
                tx.nonce
            );
        }
        if let Some(included) = first {
            committed += 1;
            if included.code == 0 {
                landed.entry(tx.sender).or_default().push(tx.nonce);
            }
        }
    }
    // Each sender's nonces landed once each, from 0 to its account's nonce.
    for (i, key) in world.senders.iter().enumerate() {
        let mut nonces = landed.remove(&i).unwrap_or_default();
        nonces.sort_unstable();
        let next = chains[0].next_nonce(&key.account()).await?;
        let expected: Vec<u64> = (0..next).collect();
        ensure!(
            nonces == expected,
            "sender {i}: nonces {nonces:?} landed, the account's next nonce is {next}"
        );
    }
    ensure!(
        committed >= 100,
        "only {committed} of {} transactions committed",
        sent.len()
    );
    eprintln!(
        "{} transactions sent ({} distinct), {accepted} accepted by CheckTx, {committed} committed",
        sent.len(),
        unique.len()
    );

    // Credits are conserved, read at one height: blocks keep coming (each
    // mints a reward), so every record is asked as of the same height.
    let job_id = job["job"].as_str().context("the job's id")?.parse()?;
    let client = world.net.nodes[0].client();
    let height = chains[0].stats().await?.height;
    let stats: StatsView = query_at(&client, "/stats", height).await?;
    let held = credits_held(world, &client, height).await?;
    // The job has completed: its escrow no longer changes.
    let held = held
        + chains[0]
            .job(&job_id, JobTasks::Without)
            .await?
            .summary
            .escrow;
    let genesis = BALANCE * (SENDERS as u64 + 5) + VALIDATOR_BALANCE * VALIDATORS as u64;
    let expected = genesis + stats.credits_minted - stats.credits_slashed;
    ensure!(
        held == expected,
        "credits at height {height}: accounts, stakes, bonds and escrow hold {held}; genesis {genesis} + minted {} - slashed {} = {expected}",
        stats.credits_minted,
        stats.credits_slashed
    );
    Ok(())
}

/// Every credit the scenario's accounts hold after `height`: balances,
/// worker stakes, and bonded and unbonding validator stake.
async fn credits_held(world: &World, client: &HttpClient, height: i64) -> Result<u64> {
    let mut accounts: Vec<AccountId> = world.senders.iter().map(SigningKey::account).collect();
    accounts.extend([world.sink, world.requester, world.operator]);
    for i in 0..VALIDATORS {
        accounts.push(world.net.consensus_key(i)?.account());
    }
    accounts.extend(world.workers.iter().map(|w| w.account));
    let mut held: u64 = 0;
    for account in &accounts {
        let view: AccountView = query_at(client, &format!("/account/{account}"), height).await?;
        held += view.balance;
    }
    for worker in &world.workers {
        let view: WorkerView =
            query_at(client, &format!("/worker/{}", worker.account), height).await?;
        held += view.stake;
    }
    for i in [JOINER, LEAVER] {
        let address = world.net.validator_address(i)?.to_lowercase();
        let v: ValidatorView = query_at(client, &format!("/validator/{address}"), height).await?;
        held += v.bonded + v.unbonding.iter().map(|u| u.amount).sum::<u64>();
    }
    Ok(held)
}

/// A query's JSON answer as of `height`.
async fn query_at<T: serde::de::DeserializeOwned>(
    client: &HttpClient,
    path: &str,
    height: i64,
) -> Result<T> {
    let answer = client
        .abci_query(
            Some(path.to_owned()),
            Vec::new(),
            Some(tendermint::block::Height::try_from(height)?),
            false,
        )
        .await?;
    ensure!(
        answer.code.is_ok(),
        "{path} at height {height}: code {} {}",
        answer.code.value(),
        answer.log
    );
    Ok(serde_json::from_slice(&answer.value)?)
}

/// The highest height the nodes `which` report.
async fn max_height(world: &World, which: &[usize]) -> u64 {
    let mut best = 0;
    for &i in which {
        best = best.max(world.net.nodes[i].height().await.unwrap_or(0));
    }
    best
}

/// `/validator/<address>`.
async fn validator_view(chain: &ChainClient, address: &str) -> Result<ValidatorView> {
    let path = format!("/validator/{}", address.to_lowercase());
    let answer = chain.query_answer(&path).await?;
    if answer.code != 0 {
        bail!("{path}: code {} {}", answer.code, answer.log);
    }
    Ok(serde_json::from_slice(&answer.value)?)
}

/// A small deterministic generator (xorshift64) for the fault times.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    /// A crash of a validator other than node 0.
    fn fault(&mut self) -> (usize, Fault, When) {
        let node = 1 + self.below(3) as usize;
        let fault = [Fault::Cometbft, Fault::Abci, Fault::Both][self.below(3) as usize];
        let when = [When::Random, When::AtCommit][self.below(2) as usize];
        (node, fault, when)
    }
}
