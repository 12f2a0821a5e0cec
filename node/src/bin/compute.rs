//! `compute`: keys, accounts and transfers on the compute network.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use compute_node::chain::ChainClient;
use compute_proto::keys::KeyFile;
use compute_proto::{pb, AccountId, SigningKey};
use serde_json::json;

/// The compute network's command-line tool.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// CometBFT RPC of a node running compute-abci.
    #[arg(
        long,
        global = true,
        env = "COMPUTE_NODE",
        default_value = "http://127.0.0.1:26657"
    )]
    node: String,
    /// Chain id to sign for (asked from the node when omitted).
    #[arg(long, global = true, env = "COMPUTE_CHAIN_ID")]
    chain_id: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
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
        /// Use this nonce instead of asking the chain.
        #[arg(long)]
        nonce: Option<u64>,
    },
    /// Run a raw ABCI query such as /stats or /params.
    Query {
        /// The query path.
        path: String,
    },
    /// Show the node's latest height and app hash.
    Status,
    /// Edit a CometBFT genesis file's `app_state` before the chain starts.
    #[command(subcommand)]
    Genesis(GenesisCommand),
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
    if let Err(e) = run(cli).await {
        match output {
            Output::Json => println!("{}", json!({"error": format!("{e:#}")})),
            Output::Text => eprintln!("error: {e:#}"),
        }
        std::process::exit(1);
    }
}

fn print(output: Output, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => println!("{}", text()),
    }
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

async fn run(cli: Cli) -> Result<()> {
    let output = cli.output;
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
            let client = ChainClient::connect(&cli.node, cli.chain_id).await?;
            let account = client.account(&id).await?;
            print(output, &account, || {
                format!(
                    "account {id}\n  balance {}\n  nonce   {}",
                    account["balance"], account["nonce"]
                )
            });
        }
        Command::Transfer {
            key,
            to,
            amount,
            fee,
            nonce,
        } => {
            let key = KeyFile::load(&key)?;
            let to = resolve_account(&to)?;
            let client = ChainClient::connect(&cli.node, cli.chain_id).await?;
            let msg = pb::tx_body::Msg::Transfer(pb::Transfer {
                to: to.0.to_vec(),
                amount,
            });
            let receipt = client.submit(&key, msg, fee, nonce).await?;
            let value = serde_json::to_value(&receipt)?;
            if receipt.code != 0 {
                print(output, &value, String::new);
                bail!("transfer refused (code {}): {}", receipt.code, receipt.log);
            }
            print(output, &value, || {
                format!(
                    "sent {amount} to {to} in block {} (tx {})",
                    receipt.height, receipt.hash
                )
            });
        }
        Command::Query { path } => {
            let client = ChainClient::connect(&cli.node, cli.chain_id).await?;
            let value = client.query(&path).await?;
            print(output, &value, || {
                serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
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
        Command::Status => {
            let client = ChainClient::connect(&cli.node, cli.chain_id).await?;
            let (height, app_hash) = client.status().await?;
            print(
                output,
                &json!({"chain_id": client.chain_id(), "height": height, "app_hash": app_hash}),
                || {
                    format!(
                        "chain {} at height {height}, app hash {app_hash}",
                        client.chain_id()
                    )
                },
            );
        }
    }
    Ok(())
}
