//! `compute`: keys, accounts, transfers, modules, jobs and reputation on the
//! compute network.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use compute_client::blob::BLOB_BYTES_MAX_DEFAULT;
use compute_client::follow::FALLBACK_TICK_MS;
use compute_client::query::PAGE_LIMIT_MAX;
use compute_client::{
    ChainClient, ClientError, Gateway, JobTasks, JobWatch, JobsFilter, Query, SubmitOptions,
    SubmitStatus, Submitted, Wait,
};
use compute_node::jobs::{self, Progress, TxReport};
use compute_node::verify;
use compute_proto::keys::KeyFile;
use compute_proto::views::{CompletionView, JobView};
use compute_proto::{pb, AccountId, JobId, JobStatus, SigningKey, TaskStatus};
use serde_json::json;

/// The compute network's command-line tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// CometBFT RPC of a node running compute-abci; several may be given,
    /// comma-separated or repeated: a sender's transactions all go to the
    /// one its account picks (the next if it does not answer), reads to
    /// the first that answers.
    #[arg(
        long,
        global = true,
        env = "COMPUTE_NODE",
        default_value = "http://127.0.0.1:26657",
        value_delimiter = ','
    )]
    node: Vec<String>,
    /// gRPC address of a gateway (compute-node), for the data plane and
    /// the job events `job submit` follows.
    #[arg(
        long,
        global = true,
        env = "COMPUTE_GATEWAY",
        default_value = "http://127.0.0.1:9090"
    )]
    gateway: String,
    /// Chain id to sign for (asked from the node when omitted).
    #[arg(long, global = true, env = "COMPUTE_CHAIN_ID")]
    chain_id: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Believe the node's answers without checking them. Otherwise `query`,
    /// `verify`, `account`, `reputation`, `top`, `job status|list` and
    /// `validator show|list` ask for proofs and check them against a header the light client
    /// verified by its validators' signatures (docs/CHAIN.md, "Proofs").
    #[arg(long, global = true, env = "COMPUTE_TRUST_NODE")]
    trust_node: bool,
    /// The light client's trust store (the headers it verified), created
    /// on first use [default: ~/.compute/light/<chain id>.json].
    #[arg(long, global = true, env = "COMPUTE_TRUST_STORE")]
    trust_store: Option<PathBuf>,
    /// Anchor a new trust store at this header, learnt out of band:
    /// HEIGHT:HASH. Without it (or --genesis), a new store trusts the
    /// genesis validators of the node's /genesis (trust on first use).
    #[arg(long, global = true)]
    trust_anchor: Option<String>,
    /// Anchor a new trust store at the chain's first block through the
    /// validators of this genesis file.
    #[arg(long, global = true)]
    genesis: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, show and import keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show an account's balance and nonce.
    Account {
        /// A 64-hex account id, or a key file.
        who: String,
    },
    /// Send credits to another account.
    Transfer {
        /// The sender's key file.
        #[arg(long)]
        key: PathBuf,
        /// The recipient: a 64-hex account id or a key file.
        #[arg(long)]
        to: String,
        /// Credits to send.
        #[arg(long)]
        amount: u64,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
        /// Use this nonce instead of the node's pending nonce; the
        /// transaction is then never signed again with another (sending
        /// the same transfer again with its nonce is safe: it lands once).
        #[arg(long)]
        nonce: Option<u64>,
        /// Return once the node's CheckTx accepted it into its mempool,
        /// without waiting for its block (check it later with `compute tx
        /// <hash>`).
        #[arg(long)]
        no_wait: bool,
    },
    /// Look a transaction up by the hash printed when it was sent: its
    /// block and the chain's verdict.
    ///
    /// Exit status: 0 when it is committed and was executed; 1 when it was
    /// refused in its block, or no committed block holds it (yet).
    Tx {
        /// The hash (64 hex characters, as printed; `0x` optional).
        hash: String,
    },
    /// Run an ABCI query such as /stats or /params; its answer is verified
    /// unless --trust-node.
    Query {
        /// The query path.
        path: String,
        /// Answer as of this height (records by key, within what the node
        /// keeps); the latest when omitted.
        #[arg(long)]
        height: Option<u64>,
    },
    /// Show what proves an answer: the verified header and every proven
    /// state key.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Show the node's latest height and app hash.
    Status,
    /// Edit a CometBFT genesis file's `app_state` before the chain starts.
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Store job modules on the chain.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Submit, follow, list, fetch and cancel jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Show a key's reputation counters and score.
    Reputation {
        /// A 64-hex account id, or a key file.
        who: String,
    },
    /// Leave the worker pool.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Bond, unbond and unjail a validator, and show the validators.
    #[command(subcommand)]
    Validator(ValidatorCommand),
    /// The registered workers, best reputation first.
    Top {
        /// Rows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
enum VerifyCommand {
    /// Ask a query with proofs and show the header it was verified against
    /// and every raw state key it rests on.
    Query {
        /// The query path, e.g. /account/<hex>.
        path: String,
        /// Answer as of this height; the latest when omitted.
        #[arg(long)]
        height: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum ValidatorCommand {
    /// Lock stake behind a consensus key: the key joins the validator set
    /// two blocks after the bond (docs/OPERATIONS.md, "Becoming a validator
    /// by stake"). Bonding again adds stake.
    Bond {
        /// The operator's key file (pays the stake and earns the rewards).
        #[arg(long)]
        key: PathBuf,
        /// The consensus key: 64 hex characters, or CometBFT's
        /// priv_validator_key.json.
        #[arg(long)]
        consensus_key: String,
        /// Credits to bond.
        #[arg(long)]
        stake: u64,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
    /// Start unbonding: the power drops at once, the credits come back
    /// after the chain's unbonding delay.
    Unbond {
        /// The operator's key file.
        #[arg(long)]
        key: PathBuf,
        /// Credits to unbond (all that is bonded when omitted).
        #[arg(long)]
        amount: Option<u64>,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
    /// Return a jailed validator to the set once its jail time is over.
    Unjail {
        /// The operator's key file.
        #[arg(long)]
        key: PathBuf,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
    /// Show one validator: by consensus key (64 hex), address (40 hex), or
    /// priv_validator_key.json.
    Show {
        /// The validator.
        who: String,
    },
    /// The validators the chain manages, in address order.
    List {
        /// Rows in the page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// A consensus key from 64 hex characters or a priv_validator_key.json.
fn consensus_key(text: &str) -> Result<[u8; 32]> {
    let path = Path::new(text);
    if path.is_file() {
        let file: serde_json::Value = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?;
        let value = file["pub_key"]["value"].as_str().with_context(|| {
            format!(
                "{} has no pub_key.value (is it CometBFT's priv_validator_key.json?)",
                path.display()
            )
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .with_context(|| format!("{}: pub_key.value is not base64", path.display()))?;
        return bytes
            .try_into()
            .map_err(|_| anyhow!("{}: pub_key.value is not 32 bytes", path.display()));
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|e| {
        anyhow!("a consensus key is 64 hex characters or a priv_validator_key.json file: {e}")
    })?;
    Ok(key)
}

/// Signs and sends a validator message with `key`; prints the outcome.
async fn send_validator_tx(
    nodes: &[String],
    chain_id: Option<String>,
    output: Output,
    key: &Path,
    msg: pb::tx_body::Msg,
    fee: u64,
    what: &str,
) -> Result<()> {
    send_keyed_tx(
        nodes,
        chain_id,
        output,
        key,
        (msg, fee),
        ("validator_tx", what),
    )
    .await
}

/// Signs `msg` with the key file `key`, sends it, and prints `{label: what}`
/// with the submission's outcome.
async fn send_keyed_tx(
    nodes: &[String],
    chain_id: Option<String>,
    output: Output,
    key: &Path,
    (msg, fee): (pb::tx_body::Msg, u64),
    (label, what): (&str, &str),
) -> Result<()> {
    let key = KeyFile::load(key)?;
    let client = connect_for(nodes, &key.account(), chain_id).await?;
    let submitted = send_tx(&client, &key, msg, fee, &SubmitOptions::default(), output)
        .await
        .with_context(|| format!("{what} refused or not sent"))?;
    let value = submitted_json(&submitted, json!({ label: what }))?;
    print(output, &value, || match submitted.status {
        SubmitStatus::Committed => format!(
            "{what}: committed in block {} (tx {})",
            submitted.height, submitted.hash
        ),
        SubmitStatus::Submitted => format!("{what} {}", not_yet_committed(&submitted)),
    });
    Ok(())
}

#[derive(Subcommand, Debug)]
enum WorkerCommand {
    /// Leave the worker pool and take the stake back: once the worker holds
    /// no task and no result it was paid for may still be disputed. Stop
    /// its compute-sandbox first, or it registers again when it restarts.
    Unregister {
        /// The worker's key file.
        #[arg(long)]
        key: PathBuf,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
}

#[derive(Subcommand, Debug)]
enum ModuleCommand {
    /// Store a WebAssembly job module (once; its id is its sha3-256).
    Upload {
        /// The module file.
        wasm: PathBuf,
        /// The key paying for it.
        #[arg(long)]
        key: PathBuf,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Upload the module and inputs, post the job, follow it to its end and
    /// write the verified outputs.
    ///
    /// Exit status: 0 when every task has its output; 4 when every task
    /// settled but some as a deterministic failure (trapped, out of fuel: no
    /// output); 3 when the job failed or was cancelled or some tasks failed;
    /// 1 on any other error. The outputs that exist are written in every case.
    Submit {
        /// The job module.
        module: PathBuf,
        /// Input files, or a directory holding one file per task.
        #[arg(long, num_args = 1.., required = true)]
        inputs: Vec<PathBuf>,
        /// The requester's key file.
        #[arg(long)]
        key: PathBuf,
        /// Replicas per task (Quorum policy).
        #[arg(long, default_value_t = 3)]
        replicas: u32,
        /// Replicas that must agree.
        #[arg(long, default_value_t = 2)]
        quorum: u32,
        /// Replicas the chain may add when no quorum forms (default: replicas).
        #[arg(long)]
        max_replicas: Option<u32>,
        /// Fuel each task may burn.
        #[arg(long, default_value_t = 1_000_000_000)]
        fuel: u64,
        /// Credits per million fuel.
        #[arg(long, default_value_t = 1)]
        price: u64,
        /// One worker per task; the chain runs the module's `verify` on its output.
        #[arg(long)]
        verified: bool,
        /// Fuel the chain's `verify` may burn (with --verified).
        #[arg(long, default_value_t = 10_000_000)]
        verify_fuel: u64,
        /// Distinct workers whose outputs `verify` may judge per task before
        /// the task fails (with --verified; 0 means the chain's default, 3).
        #[arg(long, default_value_t = 0)]
        max_workers: u32,
        /// Blocks the job may take before unsettled tasks fail.
        #[arg(long, default_value_t = 300)]
        deadline_blocks: u64,
        /// Lowest worker score accepted, in parts per million.
        #[arg(long, default_value_t = 0)]
        min_reputation: u32,
        /// Tasks of this job one worker may see at most (0: no cap).
        #[arg(long, default_value_t = 0)]
        max_tasks_per_worker: u32,
        /// Tasks per job: more inputs than this are split into several jobs,
        /// posted together in one transaction (PostJobs) and followed one
        /// after the other (0: the chain's max_tasks_per_job).
        #[arg(long, default_value_t = 0)]
        tasks_per_job: u32,
        /// Fee offered for each transaction.
        #[arg(long, default_value_t = 0)]
        fee: u64,
        /// Where to write the outputs (`<index>.out`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Post and return without following the job.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to follow the job before giving up (it keeps running).
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// The largest output fetched from the gateway, in bytes; a gateway
        /// that sends more is cut off.
        #[arg(long, default_value_t = BLOB_BYTES_MAX_DEFAULT)]
        max_output_bytes: u64,
    },
    /// A job's progress and tasks.
    Status {
        /// The job id.
        job: String,
    },
    /// Jobs on the chain, a page at a time.
    List {
        /// Only this requester's (account id or key file).
        #[arg(long)]
        master: Option<String>,
        /// Only jobs in this status: open, completed, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Jobs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Fetch a job's outputs, check every hash, and write them.
    ///
    /// Exit status as for `submit` (3 also while the job is still open).
    Results {
        /// The job id.
        job: String,
        /// Where to write them.
        #[arg(long)]
        out: PathBuf,
        /// The largest output fetched from the gateway, in bytes; a gateway
        /// that sends more is cut off.
        #[arg(long, default_value_t = BLOB_BYTES_MAX_DEFAULT)]
        max_output_bytes: u64,
    },
    /// Cancel an open job and take back what is not owed.
    Cancel {
        /// The job id.
        job: String,
        /// The requester's key file.
        #[arg(long)]
        key: PathBuf,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
    /// Dispute a settled task's result: bond credits, and the chain re-runs
    /// the task. A wrong result is corrected and its workers slashed, and
    /// the bond returns with a bounty; a right one keeps the bond.
    Dispute {
        /// The job id.
        job: String,
        /// The task's index.
        task: u32,
        /// The disputer's key file.
        #[arg(long)]
        key: PathBuf,
        /// Credits to bond (default: the chain's min_dispute_bond).
        #[arg(long)]
        bond: Option<u64>,
        /// The task's input, when it lives on the data plane: this file, or
        /// else fetched from the gateway and checked against its hash.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The largest input fetched from the gateway, in bytes.
        #[arg(long, default_value_t = BLOB_BYTES_MAX_DEFAULT)]
        max_input_bytes: u64,
        /// Fee offered to the block proposer.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
}

#[derive(Subcommand, Debug)]
enum GenesisCommand {
    /// Give an account an initial balance.
    AddAccount {
        /// CometBFT's genesis.json.
        genesis: PathBuf,
        /// A 64-hex account id or a key file.
        who: String,
        /// Initial credits.
        balance: u64,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a new key file (mode 0600).
    New {
        /// Where to write it.
        path: PathBuf,
    },
    /// Print the account id of a key file.
    Show {
        /// The key file.
        path: PathBuf,
    },
    /// Import a key: a 64-hex seed, or a CometBFT priv_validator_key.json.
    Import {
        /// The seed in hex, or the path of a priv_validator_key.json.
        source: String,
        /// Where to write the key file.
        path: PathBuf,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let output = cli.output;
    match run(cli).await {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let details = failure_details(&e);
            match output {
                Output::Json => {
                    let mut object = serde_json::Map::new();
                    object.insert("error".to_owned(), json!(format!("{e:#}")));
                    object.extend(details);
                    println!("{}", serde_json::Value::Object(object));
                }
                Output::Text => {
                    eprintln!("error: {e:#}");
                    if let Some(hint) = check_hint(&details) {
                        eprintln!("{hint}");
                    }
                }
            }
            std::process::exit(1);
        }
    }
}

/// A failure with fields for `--output json` besides `error`.
#[derive(Debug)]
struct Failure {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// What the JSON of a failure says besides `error`: the transaction it is
/// about (from the error itself, else the one in flight when it happened)
/// and how to look it up.
fn failure_details(e: &anyhow::Error) -> serde_json::Map<String, serde_json::Value> {
    if let Some(failure) = e.chain().find_map(|c| c.downcast_ref::<Failure>()) {
        return failure.fields.clone();
    }
    let mut fields = serde_json::Map::new();
    let client = e.chain().find_map(|c| c.downcast_ref::<ClientError>());
    let in_flight = TxReport::in_flight();
    let hash = client
        .and_then(ClientError::tx_hash)
        .map(str::to_owned)
        .or_else(|| in_flight.as_ref().map(|t| t.hash.clone()));
    if let Some(hash) = hash {
        fields.insert("hash".to_owned(), json!(hash));
        if let Some(t) = in_flight.as_ref().filter(|t| t.hash == hash) {
            fields.insert("nonce".to_owned(), json!(t.nonce));
            fields.insert("node".to_owned(), json!(t.url));
        }
        if let Some(ClientError::TxRejected { code, height, .. }) = client {
            fields.insert("code".to_owned(), json!(code.value()));
            fields.insert("height".to_owned(), json!(height));
        }
        if let Some(ClientError::TxOutcomeUnknown { nonce, .. }) = client {
            fields.insert("nonce".to_owned(), json!(nonce));
        }
        fields.insert("check".to_owned(), json!(format!("compute tx {hash}")));
    }
    fields
}

/// How to look up the transaction a failure is about.
fn check_hint(fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let hash = fields.get("hash")?.as_str()?;
    let rpc = match fields.get("node").and_then(|n| n.as_str()) {
        Some(url) => format!(" or {}/tx?hash=0x{hash}", url.trim_end_matches('/')),
        None => format!(" or the node's /tx?hash=0x{hash}"),
    };
    fields.get("check")?;
    Some(format!(
        "transaction {hash}: look it up with `compute tx {hash}`{rpc}"
    ))
}

fn print(output: Output, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text()),
    }
}

/// A reader of the first of `nodes` that answers: verifying its answers
/// unless `trust_node`.
async fn reader(
    nodes: &[String],
    chain_id: Option<String>,
    trust: &verify::Trust,
    trust_node: bool,
) -> Result<verify::Reader> {
    let client = connect(nodes, chain_id).await?;
    verify::Reader::new(client, trust, trust_node).await
}

/// An account id given as hex or as a key file.
fn resolve_account(who: &str) -> Result<AccountId> {
    if let Ok(id) = AccountId::from_hex(who) {
        return Ok(id);
    }
    let path = Path::new(who);
    if path.is_file() {
        return Ok(KeyFile::load(path)?.account());
    }
    bail!("'{who}' is neither a 64-hex account id nor a key file")
}

/// Reads CometBFT's `priv_validator_key.json`: base64 of seed || public key.
fn import_validator_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let value = json["priv_key"]["value"]
        .as_str()
        .context("no priv_key.value: not a CometBFT priv_validator_key.json")?;
    if json["priv_key"]["type"] != "tendermint/PrivKeyEd25519" {
        bail!(
            "only ed25519 validator keys can be imported (found {})",
            json["priv_key"]["type"]
        );
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .context("priv_key.value is not base64")?;
    if bytes.len() != 64 {
        bail!(
            "priv_key.value must hold 64 bytes (seed and public key), found {}",
            bytes.len()
        );
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&bytes[..32]);
    let key = SigningKey::from_seed(seed);
    if key.account().as_bytes()[..] != bytes[32..] {
        bail!("priv_key.value's public half does not match its seed: the file is corrupt");
    }
    Ok(key)
}

/// Adds (or replaces) an account in `app_state.accounts` of a genesis file.
fn add_genesis_account(path: &Path, id: &AccountId, balance: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut genesis: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let root = genesis
        .as_object_mut()
        .context("genesis is not a JSON object")?;
    let app_state = root.entry("app_state").or_insert_with(|| json!({}));
    if !app_state.is_object() {
        *app_state = json!({});
    }
    let accounts = app_state
        .as_object_mut()
        .context("app_state is not an object")?
        .entry("accounts")
        .or_insert_with(|| json!([]));
    let list = accounts
        .as_array_mut()
        .context("app_state.accounts is not a list")?;
    list.retain(|a| a["address"] != id.to_hex());
    list.push(json!({"address": id, "balance": balance}));
    std::fs::write(path, serde_json::to_vec_pretty(&genesis)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Connects to the first of the CometBFT nodes `urls` that answers (for
/// reads), saying what to do when none is there.
async fn connect(urls: &[String], chain_id: Option<String>) -> Result<ChainClient> {
    connect_nodes(urls, None, chain_id).await
}

/// Connects to the node of `urls` that `sender`'s transactions go to (the
/// next that answers when it does not), so that one sender's consecutive
/// nonces meet one mempool.
async fn connect_for(
    urls: &[String],
    sender: &AccountId,
    chain_id: Option<String>,
) -> Result<ChainClient> {
    connect_nodes(urls, Some(sender), chain_id).await
}

async fn connect_nodes(
    urls: &[String],
    sender: Option<&AccountId>,
    chain_id: Option<String>,
) -> Result<ChainClient> {
    ChainClient::connect_first(urls, sender, chain_id)
        .await
        .with_context(|| match urls {
            [url] => format!(
                "cannot reach the node at {url}: is it running? (start one with scripts/devnet.sh)"
            ),
            _ => format!(
                "cannot reach any of the nodes {}: is one running? (start one with scripts/devnet.sh)",
                urls.join(", ")
            ),
        })
}

/// Submits `msg` signed by `key`, printing every hash before it is sent
/// (stderr, in text mode); a transaction CheckTx accepted that is not yet
/// seen in a block is returned with [`SubmitStatus::Submitted`], not as an
/// error.
async fn send_tx(
    client: &ChainClient,
    key: &SigningKey,
    msg: pb::tx_body::Msg,
    fee: u64,
    options: &SubmitOptions,
    output: Output,
) -> Result<Submitted> {
    let report = TxReport::new(output == Output::Text);
    let submitted = client
        .submit_with(key, msg, fee, options, &|e| report.event(e))
        .await?;
    TxReport::settled();
    Ok(submitted)
}

/// What a submission's JSON says, with `extra` fields of the command.
fn submitted_json(submitted: &Submitted, extra: serde_json::Value) -> Result<serde_json::Value> {
    let mut value = to_json(submitted)?;
    if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        object.extend(extra);
    }
    Ok(value)
}

/// The text for a transaction CheckTx accepted that is not yet seen in a
/// block.
fn not_yet_committed(submitted: &Submitted) -> String {
    let hash = &submitted.hash;
    format!(
        "submitted, not yet seen committed: hash {hash} (nonce {}); look it up with `compute tx {hash}`",
        submitted.nonce
    )
}

/// The JSON of a typed answer.
fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).context("encode the answer as JSON")
}

/// Runs a command; returns the exit status (0, or one of `EXIT_*` when the
/// command did its work but the user must know something went wrong).
async fn run(cli: Cli) -> Result<i32> {
    let output = cli.output;
    // Where the light client's trust comes from, for every verified read.
    let trust = verify::Trust {
        store: cli.trust_store.clone(),
        anchor: cli.trust_anchor.clone(),
        genesis: cli.genesis.clone(),
    };
    let trust_node = cli.trust_node;
    match cli.command {
        Command::Keys(KeysCommand::New { path }) => {
            let key = SigningKey::generate();
            KeyFile::save(&key, &path)?;
            let id = key.account();
            print(output, &json!({"account": id, "file": path}), || {
                format!("created {} for account {id}", path.display())
            });
        }
        Command::Keys(KeysCommand::Show { path }) => {
            let id = KeyFile::load(&path)?.account();
            print(output, &json!({"account": id}), || id.to_hex());
        }
        Command::Keys(KeysCommand::Import { source, path }) => {
            let key = if Path::new(&source).is_file() {
                import_validator_key(Path::new(&source))?
            } else {
                SigningKey::from_hex(&source)?
            };
            KeyFile::save(&key, &path)?;
            let id = key.account();
            print(output, &json!({"account": id, "file": path}), || {
                format!("imported account {id} into {}", path.display())
            });
        }
        Command::Account { who } => {
            let id = resolve_account(&who)?;
            let client = reader(&cli.node, cli.chain_id, &trust, trust_node).await?;
            let account = client.account(&id).await?;
            print(output, &to_json(&account)?, || {
                format!(
                    "account {id}\n  balance {}\n  nonce   {}",
                    account.balance, account.nonce
                )
            });
        }
        Command::Transfer {
            key,
            to,
            amount,
            fee,
            nonce,
            no_wait,
        } => {
            let key = KeyFile::load(&key)?;
            let to = resolve_account(&to)?;
            let client = connect_for(&cli.node, &key.account(), cli.chain_id).await?;
            let msg = pb::tx_body::Msg::Transfer(pb::Transfer {
                to: to.0.to_vec(),
                amount,
            });
            let options = SubmitOptions {
                nonce,
                wait: if no_wait { Wait::CheckTx } else { Wait::Commit },
                ..SubmitOptions::default()
            };
            let submitted = match send_tx(&client, &key, msg, fee, &options, output).await {
                Ok(submitted) => submitted,
                Err(e) => match e.downcast_ref::<ClientError>() {
                    Some(ClientError::TxRejected { .. }) => {
                        return Err(e.context("transfer refused"))
                    }
                    _ => return Err(e.context("send the transfer")),
                },
            };
            let value = submitted_json(&submitted, json!({"amount": amount, "to": to}))?;
            print(output, &value, || match submitted.status {
                SubmitStatus::Committed => format!(
                    "sent {amount} to {to} in block {} (tx {})",
                    submitted.height, submitted.hash
                ),
                SubmitStatus::Submitted => {
                    format!(
                        "transfer of {amount} to {to} {}",
                        not_yet_committed(&submitted)
                    )
                }
            });
        }
        Command::Validator(command) => match command {
            ValidatorCommand::Bond {
                key,
                consensus_key: who,
                stake,
                fee,
            } => {
                let msg = pb::tx_body::Msg::BondValidator(pb::BondValidator {
                    pub_key: consensus_key(&who)?.to_vec(),
                    stake,
                });
                send_validator_tx(&cli.node, cli.chain_id, output, &key, msg, fee, "bond").await?;
            }
            ValidatorCommand::Unbond { key, amount, fee } => {
                let msg = pb::tx_body::Msg::UnbondValidator(pb::UnbondValidator {
                    amount: amount.unwrap_or(0),
                });
                send_validator_tx(&cli.node, cli.chain_id, output, &key, msg, fee, "unbond")
                    .await?;
            }
            ValidatorCommand::Unjail { key, fee } => {
                let msg = pb::tx_body::Msg::UnjailValidator(pb::UnjailValidator {});
                send_validator_tx(&cli.node, cli.chain_id, output, &key, msg, fee, "unjail")
                    .await?;
            }
            ValidatorCommand::Show { who } => {
                let id = if who.trim().len() == 40 {
                    who.trim().to_owned()
                } else {
                    hex::encode(consensus_key(&who)?)
                };
                let client = reader(&cli.node, cli.chain_id.clone(), &trust, trust_node).await?;
                let value: serde_json::Value = client.query(&format!("/validator/{id}")).await?;
                print(output, &value, || {
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
                });
            }
            ValidatorCommand::List { limit } => {
                let client = reader(&cli.node, cli.chain_id.clone(), &trust, trust_node).await?;
                let value: serde_json::Value =
                    client.query(&format!("/validators?limit={limit}")).await?;
                print(output, &value, || {
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
                });
            }
        },
        Command::Tx { hash } => {
            compute_client::parse_tx_hash(&hash)?;
            let client = connect(&cli.node, cli.chain_id).await?;
            return show_tx(&client, &hash, output).await;
        }
        Command::Query { path, height } => {
            let client = connect(&cli.node, cli.chain_id).await?;
            let value: serde_json::Value = if trust_node {
                match height {
                    None => client.query(&path).await?,
                    Some(_) => bail!("--height needs verification: drop --trust-node"),
                }
            } else {
                let answer = verify::verified(&client, &trust, &path, height).await?;
                verify::answer_value(&answer)?
            };
            print(output, &value, || {
                serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
            });
        }
        Command::Verify(VerifyCommand::Query { path, height }) => {
            let client = connect(&cli.node, cli.chain_id).await?;
            let answer = verify::verified(&client, &trust, &path, height).await?;
            print(output, &verify::report(&answer), || {
                verify::report_text(&answer)
            });
        }
        Command::Genesis(GenesisCommand::AddAccount {
            genesis,
            who,
            balance,
        }) => {
            let id = resolve_account(&who)?;
            add_genesis_account(&genesis, &id, balance)?;
            print(output, &json!({"account": id, "balance": balance}), || {
                format!("genesis: account {id} starts with {balance} credits")
            });
        }
        Command::Worker(WorkerCommand::Unregister { key, fee }) => {
            let msg = pb::tx_body::Msg::UnregisterWorker(pb::UnregisterWorker {});
            send_keyed_tx(
                &cli.node,
                cli.chain_id,
                output,
                &key,
                (msg, fee),
                ("worker_tx", "unregister"),
            )
            .await?;
        }
        Command::Module(ModuleCommand::Upload { wasm, key, fee }) => {
            let key = KeyFile::load(&key)?;
            let bytes = std::fs::read(&wasm).with_context(|| format!("read {}", wasm.display()))?;
            let client = connect_for(&cli.node, &key.account(), cli.chain_id).await?;
            let report = TxReport::new(output == Output::Text);
            let (id, submitted) =
                jobs::upload_module(&client, &key, &bytes, fee, &|e| report.event(e)).await?;
            TxReport::settled();
            let mut value =
                json!({"module": id, "stored_now": submitted.is_some(), "size": bytes.len()});
            if let (Some(s), Some(object)) = (&submitted, value.as_object_mut()) {
                object.insert("hash".to_owned(), json!(s.hash));
                object.insert("height".to_owned(), json!(s.height));
                object.insert("status".to_owned(), json!(s.status));
            }
            print(output, &value, || match &submitted {
                Some(s) if s.is_committed() => {
                    format!("module {id} stored in block {} (tx {})", s.height, s.hash)
                }
                Some(s) => format!("module {id} {}", not_yet_committed(s)),
                None => format!("module {id} is already stored"),
            });
        }
        Command::Job(command) => {
            let reads = (&trust, trust_node);
            return job_command(
                command,
                &cli.node,
                cli.chain_id,
                &cli.gateway,
                output,
                reads,
            )
            .await;
        }
        Command::Reputation { who } => {
            let id = resolve_account(&who)?;
            let client = reader(&cli.node, cli.chain_id.clone(), &trust, trust_node).await?;
            let r = client.reputation(&id).await?;
            print(output, &to_json(&r)?, || {
                format!(
                    "{id}\n  score        {} ppm\n  agreed       {} ({} fuel)\n  received     {} tasks ({} fuel)\n  cheats       {}\n  missed       {}\n  blocks       {} signed, {} proposed",
                    r.score_ppm, r.agreed, r.fuel_worked, r.tasks_received,
                    r.fuel_received, r.cheats, r.missed, r.blocks_signed,
                    r.blocks_proposed
                )
            });
        }
        Command::Top { limit } => {
            let client = reader(&cli.node, cli.chain_id.clone(), &trust, trust_node).await?;
            // Every registered worker, a page at a time (bounded by max_workers).
            let mut workers = client.all_workers().await?;
            workers.sort_by_key(|w| (std::cmp::Reverse(w.score_ppm), w.worker));
            workers.truncate(limit);
            print(output, &json!({"workers": workers}), || {
                let mut text = format!(
                    "{:<4} {:<64} {:>9} {:>7} {:>6} {:>6} {:>10}",
                    "rank", "worker", "score", "agreed", "cheats", "missed", "stake"
                );
                for (i, w) in workers.iter().enumerate() {
                    text.push_str(&format!(
                        "\n{:<4} {:<64} {:>9} {:>7} {:>6} {:>6} {:>10}",
                        i + 1,
                        w.worker.to_hex(),
                        w.score_ppm,
                        w.agreed,
                        w.cheats,
                        w.missed,
                        w.stake
                    ));
                }
                text
            });
        }
        Command::Status => {
            let client = connect(&cli.node, cli.chain_id).await?;
            let status = client.status().await?;
            print(
                output,
                &json!({"chain_id": client.chain_id(), "height": status.height, "app_hash": status.app_hash}),
                || {
                    format!(
                        "chain {} at height {}, app hash {}",
                        client.chain_id(),
                        status.height,
                        status.app_hash
                    )
                },
            );
        }
    }
    Ok(0)
}

/// `compute tx <hash>`: the block and verdict of a transaction.
async fn show_tx(client: &ChainClient, hash: &str, output: Output) -> Result<i32> {
    let parsed = compute_client::parse_tx_hash(hash)?;
    let hash = parsed.to_string();
    let found = client
        .lookup_tx(&hash)
        .await
        .with_context(|| format!("look up transaction {hash} at {}", client.url()))?;
    let Some(included) = found else {
        let mut fields = serde_json::Map::new();
        fields.insert("hash".to_owned(), json!(hash));
        fields.insert("status".to_owned(), json!("not_found"));
        return Err(Failure {
            message: format!(
                "no committed block of the node at {} holds transaction {hash}: it may still wait in a mempool, it may have been dropped (a stale nonce, a full mempool), or the node may be behind",
                client.url()
            ),
            fields,
        }
        .into());
    };
    let known = compute_proto::Code::from_u32(included.code);
    if known == Some(compute_proto::Code::Ok) {
        print(
            output,
            &json!({"hash": hash, "status": "committed", "height": included.height, "code": 0, "log": included.log}),
            || format!("transaction {hash} committed in block {}", included.height),
        );
        return Ok(0);
    }
    let name = known.map_or("unknown", compute_proto::Code::name);
    let mut fields = serde_json::Map::new();
    fields.insert("hash".to_owned(), json!(hash));
    fields.insert("status".to_owned(), json!("refused"));
    fields.insert("height".to_owned(), json!(included.height));
    fields.insert("code".to_owned(), json!(included.code));
    fields.insert("log".to_owned(), json!(included.log));
    Err(Failure {
        message: format!(
            "transaction {hash} was refused in block {} with code {} ({name}): {}",
            included.height, included.code, included.log
        ),
        fields,
    }
    .into())
}

/// `compute job ...`.
async fn job_command(
    command: JobCommand,
    nodes: &[String],
    chain_id: Option<String>,
    gateway_url: &str,
    output: Output,
    (trust, trust_node): (&verify::Trust, bool),
) -> Result<i32> {
    // A requester's transactions go to the node its account picks.
    let client = match &command {
        JobCommand::Submit { key, .. }
        | JobCommand::Cancel { key, .. }
        | JobCommand::Dispute { key, .. } => {
            let sender = KeyFile::load(key)?.account();
            connect_for(nodes, &sender, chain_id).await?
        }
        _ => connect(nodes, chain_id).await?,
    };
    // Connected on first use: only blobs and event streams need it.
    let gateway = jobs::gateway(gateway_url)?;
    match command {
        JobCommand::Submit {
            module,
            inputs,
            key,
            replicas,
            quorum,
            max_replicas,
            fuel,
            price,
            verified,
            verify_fuel,
            max_workers,
            deadline_blocks,
            min_reputation,
            max_tasks_per_worker,
            tasks_per_job,
            fee,
            out,
            no_wait,
            timeout,
            max_output_bytes,
        } => {
            let key = KeyFile::load(&key)?;
            let wasm =
                std::fs::read(&module).with_context(|| format!("read {}", module.display()))?;
            let report = TxReport::new(output == Output::Text);
            let (module_id, stored) =
                jobs::upload_module(&client, &key, &wasm, fee, &|e| report.event(e)).await?;
            TxReport::settled();
            if let Some(s) = stored.filter(|s| !s.is_committed()) {
                let mut fields = serde_json::Map::new();
                fields.insert("hash".to_owned(), json!(s.hash));
                fields.insert("nonce".to_owned(), json!(s.nonce));
                fields.insert("status".to_owned(), json!(s.status));
                fields.insert("check".to_owned(), json!(format!("compute tx {}", s.hash)));
                return Err(Failure {
                    message: format!(
                        "the module was submitted, not yet seen committed: hash {} (nonce {}); post the job once it is",
                        s.hash, s.nonce
                    ),
                    fields,
                }
                .into());
            }
            let params = client
                .params()
                .await
                .context("read the chain's parameters")?;
            let files = jobs::input_files(&inputs)?;
            let tasks =
                jobs::task_inputs(&files, params.max_inline_input_bytes, &gateway, &key).await?;
            let policy = if verified {
                pb::policy::Kind::Verified(pb::VerifiedPolicy {
                    verify_fuel,
                    max_workers,
                })
            } else {
                pb::policy::Kind::Quorum(pb::QuorumPolicy {
                    replicas,
                    quorum,
                    max_replicas: max_replicas.unwrap_or(0),
                })
            };
            let template = pb::PostJob {
                module_id: module_id.0.to_vec(),
                tasks: Vec::new(),
                policy: Some(pb::Policy { kind: Some(policy) }),
                fuel_limit: fuel,
                price_per_mfuel: price,
                deadline_blocks,
                min_reputation_ppm: min_reputation,
                max_tasks_per_worker,
            };
            let per_job = match tasks_per_job {
                0 => params.max_tasks_per_job,
                n => n.min(params.max_tasks_per_job),
            }
            .max(1) as usize;
            if tasks.len() > per_job {
                let jobs: Vec<pb::PostJob> = tasks
                    .chunks(per_job)
                    .map(|chunk| pb::PostJob {
                        tasks: chunk.to_vec(),
                        ..template.clone()
                    })
                    .collect();
                let many = ManyJobs {
                    client: &client,
                    gateway: &gateway,
                    key: &key,
                    fee,
                    output,
                    trust: (trust, trust_node),
                };
                return many
                    .post(jobs, no_wait, timeout, out.as_deref(), max_output_bytes)
                    .await;
            }
            let msg = pb::tx_body::Msg::PostJob(pb::PostJob { tasks, ..template });
            let posted = send_tx(&client, &key, msg, fee, &SubmitOptions::default(), output)
                .await
                .context("the job was refused")?;
            // The id is derived from the nonce the posting carried.
            let job = JobId::derive(&key.account(), posted.nonce);
            if !posted.is_committed() {
                let value = submitted_json(&posted, json!({"job": job}))?;
                print(output, &value, || {
                    format!("job {job} {}", not_yet_committed(&posted))
                });
                return Ok(0);
            }
            if output == Output::Text {
                eprintln!(
                    "job {job} posted in block {} with {} tasks (module {module_id}, tx {})",
                    posted.height,
                    files.len(),
                    posted.hash
                );
            }
            if no_wait {
                print(
                    output,
                    &json!({"job": job, "height": posted.height, "hash": posted.hash}),
                    || job.to_hex(),
                );
                return Ok(0);
            }
            // Progress is read from the node as it comes (it only drives
            // the bars); the outcome, and the result hashes the outputs
            // are checked against, are read again and verified.
            follow(&client, &gateway, &job, timeout, output).await?;
            let (reader, view, completions) = outcome(&client, trust, trust_node, &job).await?;
            return finish(
                &reader,
                &view,
                &completions,
                &job,
                out.as_deref(),
                &gateway,
                max_output_bytes,
                output,
                None,
            )
            .await;
        }
        JobCommand::Status { job } => {
            let job = jobs::parse_job(&job)?;
            let reader = verify::Reader::new(client.clone(), trust, trust_node).await?;
            let view = reader.job(&job, JobTasks::All).await?;
            let p = Progress::of(&view);
            print(output, &to_json(&view)?, || {
                let mut text = format!(
                    "job {job}: {}\n  tasks {} (settled {}, failed {}), replicas assigned {} committed {} revealed {}\n  escrow {}, deadline height {}",
                    p.status, p.tasks, p.counts.settled, p.counts.failed, p.assigned_text(), p.counts.committed,
                    p.counts.revealed, view.summary.escrow, view.summary.deadline_height
                );
                for t in view.tasks.iter().flatten() {
                    let workers: Vec<String> = t
                        .replicas
                        .iter()
                        .map(|r| format!("{}:{}", &r.worker.to_hex()[..8], r.status))
                        .collect();
                    // A settled result says where it stands with disputes.
                    let dispute = t
                        .completion
                        .as_ref()
                        .map(|c| format!(" [{}]", c.dispute.status.name()))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "\n  task {:>4} {:<9} {}{dispute}",
                        t.index,
                        t.status.name(),
                        workers.join(" ")
                    ));
                }
                text
            });
        }
        JobCommand::List {
            master,
            status,
            limit,
        } => {
            let filter = JobsFilter {
                status: status
                    .map(|s| {
                        JobStatus::from_name(&s).map_err(|_| {
                            anyhow!("status '{s}' is not one of open, completed, failed, cancelled")
                        })
                    })
                    .transpose()?,
                master: master.map(|m| resolve_account(&m)).transpose()?,
                limit: Some(
                    u32::try_from(limit)
                        .unwrap_or(PAGE_LIMIT_MAX)
                        .clamp(1, PAGE_LIMIT_MAX),
                ),
                after: None,
            };
            let reader = verify::Reader::new(client.clone(), trust, trust_node).await?;
            let page = reader.jobs(&filter).await?;
            print(output, &to_json(&page)?, || {
                let mut text = format!(
                    "{:<64} {:<10} {:>5} {:>7} {:>6} {:>8}",
                    "job", "status", "tasks", "settled", "failed", "escrow"
                );
                for j in &page.jobs {
                    text.push_str(&format!(
                        "\n{:<64} {:<10} {:>5} {:>7} {:>6} {:>8}",
                        j.job.to_hex(),
                        j.status.name(),
                        j.task_count,
                        j.tasks_settled,
                        j.tasks_failed,
                        j.escrow
                    ));
                }
                text
            });
        }
        JobCommand::Results {
            job,
            out,
            max_output_bytes,
        } => {
            let job = jobs::parse_job(&job)?;
            // The result hashes the outputs are checked against are proven.
            let (reader, view, completions) = outcome(&client, trust, trust_node, &job).await?;
            return finish(
                &reader,
                &view,
                &completions,
                &job,
                Some(&out),
                &gateway,
                max_output_bytes,
                output,
                None,
            )
            .await;
        }
        JobCommand::Dispute {
            job,
            task,
            key,
            bond,
            input,
            max_input_bytes,
            fee,
        } => {
            let job = jobs::parse_job(&job)?;
            let key = KeyFile::load(&key)?;
            let disputed = jobs::Disputed {
                job,
                task,
                bond,
                input: input.as_deref(),
                max_input_bytes,
            };
            let msg = jobs::dispute_msg(&client, &gateway, &disputed).await?;
            let sent = send_tx(&client, &key, msg, fee, &SubmitOptions::default(), output)
                .await
                .context("dispute refused")?;
            if !sent.is_committed() {
                let value = submitted_json(&sent, json!({"job": job, "task": task}))?;
                print(output, &value, || {
                    format!(
                        "dispute of task {task} of job {job} {}",
                        not_yet_committed(&sent)
                    )
                });
                return Ok(0);
            }
            let status = jobs::dispute_status(&client, &job, task).await?;
            print(
                output,
                &json!({"job": job, "task": task, "height": sent.height, "hash": sent.hash, "dispute": status}),
                || {
                    format!(
                        "dispute of task {task} of job {job} accepted in block {} (tx {}): {}",
                        sent.height,
                        sent.hash,
                        jobs::describe_dispute(&status)
                    )
                },
            );
        }
        JobCommand::Cancel { job, key, fee } => {
            let job = jobs::parse_job(&job)?;
            let key = KeyFile::load(&key)?;
            let msg = pb::tx_body::Msg::CancelJob(pb::CancelJob {
                job_id: job.0.to_vec(),
            });
            let cancelled = send_tx(&client, &key, msg, fee, &SubmitOptions::default(), output)
                .await
                .context("cancel refused")?;
            if !cancelled.is_committed() {
                let value = submitted_json(&cancelled, json!({"job": job}))?;
                print(output, &value, || {
                    format!(
                        "cancellation of job {job} {}",
                        not_yet_committed(&cancelled)
                    )
                });
                return Ok(0);
            }
            let view = client.job(&job, JobTasks::Without).await?;
            print(
                output,
                &json!({"job": job, "height": cancelled.height, "hash": cancelled.hash, "status": view.summary.status}),
                || {
                    format!(
                        "job {job} cancelled in block {} (tx {})",
                        cancelled.height, cancelled.hash
                    )
                },
            );
        }
    }
    Ok(0)
}

/// Follows a job until it ends, with progress bars on a terminal (plain
/// lines otherwise); returns its final view.
///
/// The job is read again on each of its events from the gateway's
/// `Subscribe` stream, or every [`FALLBACK_TICK_MS`] when none arrives (the
/// stream is reopened with backoff when it drops), never more than
/// `timeout` seconds in all.
/// Several jobs posted in one `PostJobs` and followed one after the other.
struct ManyJobs<'a> {
    client: &'a ChainClient,
    gateway: &'a Gateway,
    key: &'a SigningKey,
    fee: u64,
    output: Output,
    trust: (&'a verify::Trust, bool),
}

impl ManyJobs<'_> {
    /// Posts `jobs` in one transaction; unless `no_wait`, follows each to
    /// its end and writes its outputs under `<out>/<job index>/`. Returns
    /// the worst exit code of the jobs.
    async fn post(
        &self,
        jobs: Vec<pb::PostJob>,
        no_wait: bool,
        timeout: u64,
        out: Option<&Path>,
        max_output_bytes: u64,
    ) -> Result<i32> {
        let (client, output) = (self.client, self.output);
        let counts: Vec<usize> = jobs.iter().map(|j| j.tasks.len()).collect();
        let msg = pb::tx_body::Msg::PostJobs(pb::PostJobs { jobs });
        let posted = send_tx(
            client,
            self.key,
            msg,
            self.fee,
            &SubmitOptions::default(),
            output,
        )
        .await
        .context("the jobs were refused")?;
        let ids: Vec<JobId> = (0u32..)
            .zip(&counts)
            .map(|(i, _)| JobId::derive_in_batch(&self.key.account(), posted.nonce, i))
            .collect();
        if !posted.is_committed() {
            let value = submitted_json(&posted, json!({"jobs": ids}))?;
            print(output, &value, || {
                format!("jobs {} {}", hex_list(&ids), not_yet_committed(&posted))
            });
            return Ok(0);
        }
        if output == Output::Text {
            eprintln!(
                "{} jobs posted in block {} with {} tasks (tx {})",
                ids.len(),
                posted.height,
                counts.iter().sum::<usize>(),
                posted.hash
            );
            for (i, (id, n)) in ids.iter().zip(&counts).enumerate() {
                eprintln!("  job {i}: {id} ({n} tasks)");
            }
        }
        if no_wait {
            print(
                output,
                &json!({"jobs": ids, "height": posted.height, "hash": posted.hash}),
                || hex_list(&ids),
            );
            return Ok(0);
        }
        let mut worst = 0;
        let mut summaries = Vec::with_capacity(ids.len());
        for (i, job) in ids.iter().enumerate() {
            follow(client, self.gateway, job, timeout, output).await?;
            let (trust, trust_node) = self.trust;
            let (reader, view, completions) = outcome(client, trust, trust_node, job).await?;
            let dir = out.map(|d| d.join(i.to_string()));
            let code = finish(
                &reader,
                &view,
                &completions,
                job,
                dir.as_deref(),
                self.gateway,
                max_output_bytes,
                output,
                Some(&mut summaries),
            )
            .await?;
            worst = worst.max(code);
        }
        if output == Output::Json {
            print(
                output,
                &json!({"jobs": summaries, "exit_code": worst}),
                String::new,
            );
        }
        Ok(worst)
    }
}

/// Job ids, space-separated.
fn hex_list(ids: &[JobId]) -> String {
    ids.iter().map(JobId::to_hex).collect::<Vec<_>>().join(" ")
}

async fn follow(
    client: &ChainClient,
    gateway: &Gateway,
    job: &JobId,
    timeout: u64,
    output: Output,
) -> Result<JobView> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let interactive = output == Output::Text && std::io::stderr().is_terminal();
    let bars = MultiProgress::with_draw_target(if interactive {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = |name: &str| {
        let b = bars.add(ProgressBar::new(0));
        b.set_style(style.clone());
        b.set_prefix(name.to_owned());
        b
    };
    let (assigned, committed, revealed, settled) = (
        bar("assigned"),
        bar("committed"),
        bar("revealed"),
        bar("settled"),
    );
    let started = tokio::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(timeout);
    // Subscribed before the first read, so that no change after it is missed.
    let mut watch = JobWatch::start(gateway.clone(), *job).await;
    if !watch.is_subscribed() && output == Output::Text {
        bars.suspend(|| {
            eprintln!(
                "note: no event stream from the gateway at {} ({}); reading the job every {} s until there is one",
                gateway.url(),
                watch.last_error().unwrap_or("unknown error"),
                FALLBACK_TICK_MS / 1_000
            )
        });
    }
    let mut last: Option<Progress> = None;
    let mut hinted = output == Output::Json;
    loop {
        let view = client.job(job, JobTasks::Without).await?;
        let p = Progress::of(&view);
        // Replacements of workers that missed or were judged are drawn on
        // top of the replicas wanted: a bar never goes past what is wanted.
        let wanted = if p.counts.wanted == 0 {
            p.counts.assigned
        } else {
            p.counts.wanted
        };
        for (bar, count) in [
            (&assigned, p.counts.assigned),
            (&committed, p.counts.committed),
            (&revealed, p.counts.revealed),
        ] {
            bar.set_length(wanted);
            bar.set_position(count.min(wanted));
        }
        settled.set_length(p.tasks);
        settled.set_position(p.counts.settled + p.counts.failed);
        if !interactive && output == Output::Text && last.as_ref() != Some(&p) {
            eprintln!("{}", p.line());
        }
        if p.ended() {
            for b in [&assigned, &committed, &revealed, &settled] {
                b.finish();
            }
            return Ok(view);
        }
        if !hinted && p.counts.assigned == 0 && started.elapsed() > IDLE_HINT_AFTER {
            hinted = true;
            let none = client
                .workers(None, 1)
                .await
                .map_or(true, |page| page.workers.is_empty());
            // `assigned` leaves out replicas that missed or declined: look
            // at the tasks before saying that no worker was drawn.
            let drawn = if none {
                0
            } else {
                drawn_replicas(client, job).await
            };
            let hint = if none {
                "no worker is registered: start one with compute-sandbox (see the README)"
                    .to_owned()
            } else if drawn > 0 {
                format!("workers were drawn but declined or missed their tasks; the chain draws others while it can (see compute job status {job})")
            } else {
                "no worker has been drawn yet: they may be full, below the job's min_reputation, or at its max_tasks_per_worker (see compute top)".to_owned()
            };
            bars.suspend(|| eprintln!("note: {hint}"));
        }
        let status = p.status;
        last = Some(p);
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "job {job} is still {status} after {timeout} s; follow it with `compute job status {job}`"
            );
        }
        // Every wake-up (an event, a reopened stream, the fallback tick,
        // the deadline) is answered by one read; the idle hint is due at
        // most one tick after IDLE_HINT_AFTER.
        watch.wait(deadline).await;
    }
}

/// Replicas ever drawn for a job's tasks, whatever became of them (a
/// lower bound if a page cannot be read).
async fn drawn_replicas(client: &ChainClient, job: &JobId) -> usize {
    let mut drawn = 0;
    let mut after: Option<u32> = None;
    for _ in 0..100 {
        let Ok(page) = client
            .job(
                job,
                JobTasks::Page {
                    after,
                    limit: PAGE_LIMIT_MAX,
                },
            )
            .await
        else {
            break;
        };
        drawn += page
            .tasks
            .iter()
            .flatten()
            .map(|t| t.replicas.len())
            .sum::<usize>();
        match page.next {
            Some(next) if drawn == 0 => after = Some(next),
            _ => break,
        }
    }
    drawn
}

/// How long a job may go without any draw before the follower explains why.
const IDLE_HINT_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The exit status of `job submit` and `job results` when the job ended
/// without a result for some task: it failed or was cancelled, or some of
/// its tasks failed (no agreement, deadline). The outputs that exist are
/// written.
const EXIT_TASKS_FAILED: i32 = 3;

/// The exit status when every task settled but some settled as a
/// deterministic failure (a trap, out of fuel, a limit): agreed results,
/// without output bytes. The other outputs are written.
const EXIT_TASKS_TRAPPED: i32 = 4;

/// The failed tasks of a job and why (at most `limit`).
async fn failed_tasks(
    client: &impl Query,
    job: &JobId,
    limit: usize,
) -> Vec<(u32, TaskStatus, String)> {
    let mut failed = Vec::new();
    let mut after: Option<u32> = None;
    for _ in 0..100 {
        let Ok(page) = client
            .job(
                job,
                JobTasks::Page {
                    after,
                    limit: PAGE_LIMIT_MAX,
                },
            )
            .await
        else {
            break;
        };
        for t in page.tasks.iter().flatten() {
            if matches!(t.status, TaskStatus::Failed | TaskStatus::Cancelled) {
                failed.push((t.index, t.status, t.failure.clone().unwrap_or_default()));
            }
        }
        match page.next {
            Some(next) if failed.len() < limit => after = Some(next),
            _ => break,
        }
    }
    failed.truncate(limit);
    failed
}

/// A job and its completion records, verified at one height, with the
/// reader that read them.
async fn outcome(
    client: &ChainClient,
    trust: &verify::Trust,
    trust_node: bool,
    job: &JobId,
) -> Result<(verify::Reader, JobView, Vec<CompletionView>)> {
    let reader = verify::Reader::snapshot(client.clone(), trust, trust_node).await?;
    // The list first: a node lists at its latest height only, and that
    // height is the one the job is then read at.
    let completions = reader.job_completions(job).await?;
    let view = reader.job(job, JobTasks::Without).await?;
    Ok((reader, view, completions))
}

/// Fetches a job's outputs and checks them against its completion records,
/// writes them when asked, prints a summary (in JSON, into `sink` instead
/// when given), and says each task that has no output and why; returns the
/// exit status (0 when every task has its output).
#[allow(clippy::too_many_arguments)]
async fn finish(
    client: &impl Query,
    view: &JobView,
    completions: &[CompletionView],
    job: &JobId,
    out: Option<&Path>,
    gateway: &Gateway,
    max_output_bytes: u64,
    output: Output,
    sink: Option<&mut Vec<serde_json::Value>>,
) -> Result<i32> {
    let outputs = jobs::outputs(completions, gateway, max_output_bytes).await?;
    let written = match out {
        Some(dir) => jobs::write_outputs(dir, &outputs)?,
        None => Vec::new(),
    };
    let p = Progress::of(view);
    let trapped: Vec<_> = outputs
        .iter()
        .filter_map(|o| o.failure.map(|f| (o.index, f)))
        .collect();
    let failed = if p.counts.failed > 0 {
        failed_tasks(client, job, 20).await
    } else {
        Vec::new()
    };
    // Results that may still change: a dispute can be sent, or waits for
    // the referee.
    let not_final: Vec<&CompletionView> =
        completions.iter().filter(|c| !c.dispute.is_final).collect();
    let open_until = not_final.iter().filter_map(|c| c.dispute.until).max();
    let unsettled: Vec<_> = not_final
        .iter()
        .map(|c| json!({"task": c.task, "status": c.dispute.status, "until": c.dispute.until}))
        .collect();
    let job_failed = p.status != JobStatus::Completed || p.counts.failed > 0;
    let code = if job_failed {
        EXIT_TASKS_FAILED
    } else if !trapped.is_empty() {
        EXIT_TASKS_TRAPPED
    } else {
        0
    };
    let summary = json!({
        "job": job,
        "status": p.status,
        "tasks": p.tasks,
        "settled": p.counts.settled,
        "failed": p.counts.failed,
        "outputs": outputs.iter().map(|o| json!({
            "task": o.index,
            "result_hash": o.result_hash,
            "bytes": o.bytes.len(),
            "failure": o.failure.map(|f| f.to_string()),
            "workers": o.workers,
        })).collect::<Vec<_>>(),
        "failed_tasks": failed.iter().map(|(index, status, why)| json!({
            "task": index, "status": status, "why": why,
        })).collect::<Vec<_>>(),
        "written": written,
        "not_final": unsettled,
        "exit_code": code,
    });
    if let (Some(sink), Output::Json) = (sink, output) {
        sink.push(summary.clone());
    } else {
        print(output, &summary, || {
            let mut text = String::new();
            for (index, failure) in &trapped {
                text.push_str(&format!("task {index}: {failure}\n"));
            }
            for (index, status, why) in &failed {
                if why.is_empty() {
                    text.push_str(&format!("task {index}: {status}\n"));
                } else {
                    text.push_str(&format!("task {index}: {status}: {why}\n"));
                }
            }
            if (failed.len() as u64) < p.counts.failed {
                text.push_str(&format!(
                    "... and {} more failed tasks (compute job status {job})\n",
                    p.counts.failed - failed.len() as u64
                ));
            }
            text.push_str(&format!(
                "job {job} {}: {} of {} tasks settled, {} failed; {} outputs verified against their result hashes",
                p.status,
                p.counts.settled,
                p.tasks,
                p.counts.failed,
                outputs.len() - trapped.len()
            ));
            if !trapped.is_empty() {
                text.push_str(&format!(
                    ", {} tasks settled as a failure (no output)",
                    trapped.len()
                ));
            }
            if let Some(dir) = out {
                text.push_str(&format!("\nwritten to {}", dir.display()));
            }
            if !unsettled.is_empty() {
                text.push_str(&format!(
                    "\n{} results are not final yet: they may be disputed until height {} (or a dispute waits for the referee); compute job results {job} again then",
                    unsettled.len(),
                    open_until.unwrap_or_default()
                ));
            }
            text
        });
    }
    if output == Output::Text {
        match code {
            EXIT_TASKS_FAILED if !p.ended() => eprintln!(
                "error: job {job} is still open: {} of {} tasks have no result yet",
                p.tasks.saturating_sub(p.counts.settled),
                p.tasks
            ),
            EXIT_TASKS_FAILED if p.status != JobStatus::Completed => eprintln!(
                "error: job {job} {}: {} of {} tasks have no result",
                p.status,
                p.tasks.saturating_sub(p.counts.settled),
                p.tasks
            ),
            EXIT_TASKS_FAILED => eprintln!(
                "error: job {job}: {} of {} tasks failed",
                p.counts.failed, p.tasks
            ),
            EXIT_TASKS_TRAPPED => eprintln!(
                "error: job {job}: {} of {} tasks settled as a failure (trap or out of fuel) and have no output",
                trapped.len(),
                p.tasks
            ),
            _ => {}
        }
    }
    Ok(code)
}
