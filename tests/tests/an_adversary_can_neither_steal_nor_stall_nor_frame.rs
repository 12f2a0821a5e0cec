//! An adversary against a real CometBFT and `compute-abci` on loopback.
//!
//! Each test is one attack on a chain of its own, and checks both what the
//! chain must refuse or do and that it keeps committing blocks afterwards:
//!
//! - steal: credits sent to a small-order ("torsion") key, or to a second
//!   encoding of a key, could be spent by anyone or by nobody; a signature
//!   forged for a small-order key verifies under ZIP-215;
//! - steal: a signed intent re-encoded (a duplicated `amount` whose last
//!   value wins, unknown fields, long varints) must not become a second
//!   transaction, let alone a different one;
//! - steal: `amount + fee` must not wrap around;
//! - stall: modules built to make every validator's compiler work for
//!   minutes, and a flood of reveals whose `verify` every validator must run
//!   in one block;
//! - frame: a requester whose `verify` refuses every output must not turn
//!   honest workers into slashed cheats.
//!
//! ProcessProposal also refuses proposals that carry transactions failing
//! these checks (a faulty proposer's block); a single honest CometBFT
//! validator never proposes one, so that path is covered by the state
//! machine's unit tests instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use compute_proto::pb::tx_body::Msg;
use compute_proto::tx::sign_bytes;
use compute_proto::{
    check_public_key, commitment, pb, sha3_256, AccountId, JobId, ModuleId, PublicKeyError,
    SigningKey, TxBuilder,
};
use compute_sandbox::{ModuleLimits, Sandbox, SandboxConfig, TaskLimits};
use compute_tests::{poll_until, transfer, NetConfig, Node, Signer};
use prost::Message;
use serde_json::{json, Value};
use tendermint_rpc::Client;
use wasm_encoder::{BlockType, Instruction};

/// How long any one attack may take, start to finish.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------

/// CheckTx's verdict on raw transaction bytes: its code and log.
async fn check_tx(node: &Node, tx: Vec<u8>) -> Result<(u32, String)> {
    let answer = node.client().broadcast_tx_sync(tx).await?;
    Ok((answer.code.value(), answer.log))
}

/// The latest committed height.
async fn latest_height(node: &Node) -> Result<u64> {
    Ok(node
        .client()
        .status()
        .await?
        .sync_info
        .latest_block_height
        .value())
}

/// The attack did not stall the chain: three more blocks are committed
/// within a bounded time.
async fn assert_keeps_making_blocks(node: &Node) -> Result<()> {
    let now = latest_height(node).await?;
    let started = Instant::now();
    node.wait_for_height(now + 3, Duration::from_secs(30))
        .await
        .context("the chain stopped making blocks after the attack")?;
    ensure!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}

/// The protobuf varint encoding of `value`.
fn varint(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(value, &mut out);
    out
}

/// A field key: field number and wire type.
fn field_key(number: u32, wire_type: u8) -> Vec<u8> {
    varint(u64::from(number) << 3 | u64::from(wire_type))
}

/// A length-delimited field.
fn bytes_field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = field_key(number, 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

/// A varint field.
fn varint_field(number: u32, value: u64) -> Vec<u8> {
    let mut out = field_key(number, 0);
    out.extend(varint(value));
    out
}

/// What the chain says about an account, the parts a theft would change.
async fn account_state(node: &Node, id: &AccountId) -> Result<(u64, u64)> {
    let account = node.account(id).await?;
    Ok((account.balance, account.nonce))
}

/// The transaction counters of `/stats`.
async fn tx_counters(node: &Node) -> Result<Value> {
    let (_, _, stats) = node.query("/stats").await?;
    Ok(json!({
        "txs_ok": stats["txs_ok"],
        "txs_failed": stats["txs_failed"],
        "transfers": stats["transfers"],
    }))
}

/// Sends every `(key, msg, what)` and requires CheckTx to pass each: the
/// keys' transactions go out concurrently, each key's in nonce order, so
/// that they reach as few blocks as possible.
async fn send_all(signer: &mut Signer<'_>, outgoing: Vec<(SigningKey, Msg, String)>) -> Result<()> {
    let mut by_key: BTreeMap<AccountId, Vec<(Vec<u8>, String)>> = BTreeMap::new();
    for (key, msg, what) in outgoing {
        let tx = signer.sign(&key, msg).await?;
        by_key.entry(key.account()).or_default().push((tx, what));
    }
    let mut sending = tokio::task::JoinSet::new();
    for (account, txs) in by_key {
        let client = signer.node.client();
        sending.spawn(async move {
            for (tx, what) in txs {
                let answer = client.broadcast_tx_sync(tx).await?;
                ensure!(
                    answer.code.value() == 0,
                    "{what} by {account}: {} {}",
                    answer.code.value(),
                    answer.log
                );
            }
            Ok(())
        });
    }
    while let Some(sent) = sending.join_next().await {
        sent??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Torsion keys
// ---------------------------------------------------------------------------

/// Encodings of points of small order, where ZIP-215 accepts the signature
/// `R = identity, S = 0` on any message.
const SMALL_ORDER_KEYS: [(&str, &str); 4] = [
    (
        "the identity",
        "0100000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        "the point of order 4 with y = 0",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        "the point of order 2 (y = -1)",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ),
    (
        "a point of order 8",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    ),
];

fn key_bytes(hex_key: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).expect("32 bytes of hex");
    bytes
}

/// A second encoding of a valid key of large order: `y + p` in place of
/// `y`, which decompression reduces to the same point. Only `y < 19` leaves
/// room below 2^255, so the key is searched among those.
fn non_canonical_encoding_of_a_valid_key() -> [u8; 32] {
    for y in 2u8..19 {
        for sign in [0u8, 0x80] {
            let mut canonical = [0u8; 32];
            canonical[0] = y;
            canonical[31] = sign;
            if check_public_key(&canonical).is_err() {
                continue;
            }
            // p = 2^255 - 19 is ed ff .. ff 7f little-endian; y + p adds y
            // to the first byte without a carry.
            let mut second = [0xff; 32];
            second[0] = 0xed + y;
            second[31] = 0x7f | sign;
            assert_eq!(
                check_public_key(&second),
                Err(PublicKeyError::NonCanonical),
                "{}",
                hex::encode(second)
            );
            return second;
        }
    }
    panic!("no point of large order has y below 19")
}

#[tokio::test]
async fn credits_can_neither_be_sent_to_nor_forged_from_a_torsion_key() -> Result<()> {
    let started = Instant::now();
    let alice = SigningKey::from_seed([1; 32]);
    let mallory = SigningKey::from_seed([2; 32]);
    let node = Node::start(NetConfig::funded(&[&alice, &mallory], 1_000_000)).await?;

    let second_encoding = non_canonical_encoding_of_a_valid_key();
    let mut targets: Vec<(String, [u8; 32])> = SMALL_ORDER_KEYS
        .iter()
        .map(|(name, hex_key)| ((*name).to_owned(), key_bytes(hex_key)))
        .collect();
    for (name, key) in &targets {
        assert_eq!(
            check_public_key(key),
            Err(PublicKeyError::SmallOrder),
            "{name}"
        );
    }
    targets.push((
        "a second encoding of a valid key".to_owned(),
        second_encoding,
    ));

    let watched: Vec<AccountId> = [alice.account(), mallory.account()]
        .into_iter()
        .chain(targets.iter().map(|(_, key)| AccountId(*key)))
        .collect();
    let mut before = Vec::new();
    for id in &watched {
        before.push(account_state(&node, id).await?);
    }
    let counters = tx_counters(&node).await?;

    // Sending to any of them is refused as an invalid recipient.
    let nonce = node.nonce(&alice.account()).await?;
    for (name, key) in &targets {
        let tx = node
            .tx_builder()
            .sign(&alice, nonce, transfer(&AccountId(*key), 100));
        let (code, log) = check_tx(&node, tx).await?;
        assert_eq!(code, 10, "transfer to {name}: {log}");
        assert!(log.contains("recipient"), "transfer to {name}: {log}");
    }

    // The classic forgery: under a small-order key A, R = identity and
    // S = 0 satisfy [8][S]B = [8]R + [8][k]A for every message. It is a
    // valid ZIP-215 signature, so only the key rule stops it.
    let mut forged_signature = [0u8; 64];
    forged_signature[0] = 1;
    for (name, key) in targets.iter().take(SMALL_ORDER_KEYS.len()) {
        let body = pb::TxBody {
            chain_id: node.chain_id.clone(),
            nonce: 0,
            fee: 0,
            msg: Some(transfer(&mallory.account(), 100)),
        }
        .encode_to_vec();
        let zip215 = ed25519_consensus::VerificationKey::try_from(*key)
            .context("a small-order key decompresses")?;
        ensure!(
            zip215
                .verify(
                    &ed25519_consensus::Signature::from(forged_signature),
                    &sign_bytes(&body)
                )
                .is_ok(),
            "the forgery for {name} should verify under ZIP-215"
        );
        let tx = pb::Tx {
            body,
            signer: key.to_vec(),
            signature: forged_signature.to_vec(),
        }
        .encode_to_vec();
        let (code, log) = check_tx(&node, tx).await?;
        assert_eq!(code, 3, "transfer forged for {name}: {log}");
        assert!(log.contains("small order"), "forged for {name}: {log}");
    }
    // A signer written in a second encoding is refused before its
    // signature is even looked at.
    let tx = pb::Tx {
        body: pb::TxBody {
            chain_id: node.chain_id.clone(),
            nonce: 0,
            fee: 0,
            msg: Some(transfer(&mallory.account(), 100)),
        }
        .encode_to_vec(),
        signer: second_encoding.to_vec(),
        signature: vec![7; 64],
    }
    .encode_to_vec();
    let (code, log) = check_tx(&node, tx).await?;
    assert_eq!(code, 3, "signer in a second encoding: {log}");
    assert!(log.contains("canonical"), "{log}");

    // Nothing reached a block: no balance, nonce or counter moved.
    let height = latest_height(&node).await?;
    node.wait_for_height(height + 3, Duration::from_secs(30))
        .await?;
    for (id, expected) in watched.iter().zip(&before) {
        assert_eq!(&account_state(&node, id).await?, expected, "account {id}");
    }
    assert_eq!(tx_counters(&node).await?, counters);

    // Alice's own transfers still go through.
    let mut signer = Signer::new(&node);
    signer
        .commit(&alice, transfer(&mallory.account(), 5))
        .await?;
    assert_eq!(
        node.balance(&mallory.account()).await?,
        before[1].0 + 5,
        "an honest transfer after the attack"
    );
    assert_keeps_making_blocks(&node).await?;
    assert!(started.elapsed() < ATTACK_TIMEOUT);
    Ok(())
}

// ---------------------------------------------------------------------------
// Malleated encodings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_intent_has_exactly_one_encoding_the_chain_executes() -> Result<()> {
    let started = Instant::now();
    let alice = SigningKey::from_seed([3; 32]);
    let bob = SigningKey::from_seed([4; 32]).account();
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let client = node.client();
    let mut signer = Signer::new(&node);
    // Nonce 0 is spent first, so that the intent's nonce is written out
    // (a zero nonce is a default value and has no bytes to stretch).
    signer.commit(&alice, transfer(&bob, 1)).await?;

    let nonce = node.nonce(&alice.account()).await?;
    ensure!((1..128).contains(&nonce), "nonce {nonce}");
    let intent = pb::TxBody {
        chain_id: node.chain_id.clone(),
        nonce,
        fee: 0,
        msg: Some(transfer(&bob, 1)),
    };
    let canonical_body = intent.encode_to_vec();
    let canonical_tx = compute_proto::tx::sign_body_bytes(canonical_body.clone(), &alice);

    // The body's parts, to reassemble in other ways.
    let chain_id = bytes_field(1, node.chain_id.as_bytes());
    let nonce_field = varint_field(2, nonce);
    let transfer_inner = [bytes_field(1, &bob.0), varint_field(2, 1)].concat();
    let transfer_field = bytes_field(10, &transfer_inner);
    assert_eq!(
        [
            chain_id.clone(),
            nonce_field.clone(),
            transfer_field.clone()
        ]
        .concat(),
        canonical_body,
        "the hand-built body must match prost's"
    );

    // The attack that used to move 900: a wallet shows `amount 1`, the
    // decoder keeps the last `amount`.
    let doubled_inner = [transfer_inner.clone(), varint_field(2, 900)].concat();
    let doubled_body = [
        chain_id.clone(),
        nonce_field.clone(),
        bytes_field(10, &doubled_inner),
    ]
    .concat();
    match pb::TxBody::decode(doubled_body.as_slice())?.msg {
        Some(Msg::Transfer(t)) => assert_eq!(t.amount, 900, "the last amount wins in a decoder"),
        other => bail!("decoded {other:?}"),
    }
    let mut long_nonce = field_key(2, 0);
    long_nonce.extend([u8::try_from(nonce)? | 0x80, 0x00]);
    let unknown_field = varint_field(99, 1);

    let mut envelope_with_unknown = canonical_tx.clone();
    envelope_with_unknown.extend(&unknown_field);
    let decoded = pb::Tx::decode(canonical_tx.as_slice())?;
    let envelope_reordered = [
        bytes_field(3, &decoded.signature),
        bytes_field(2, &decoded.signer),
        bytes_field(1, &decoded.body),
    ]
    .concat();

    let variants: Vec<(&str, Vec<u8>)> = vec![
        (
            "a duplicated amount, 1 then 900",
            compute_proto::tx::sign_body_bytes(doubled_body, &alice),
        ),
        (
            "an unknown field appended to the body",
            compute_proto::tx::sign_body_bytes(
                [canonical_body.clone(), unknown_field.clone()].concat(),
                &alice,
            ),
        ),
        (
            "the nonce as a two-byte varint",
            compute_proto::tx::sign_body_bytes(
                [chain_id.clone(), long_nonce, transfer_field.clone()].concat(),
                &alice,
            ),
        ),
        (
            "the default fee 0 written out",
            compute_proto::tx::sign_body_bytes(
                [
                    chain_id.clone(),
                    nonce_field.clone(),
                    varint_field(3, 0),
                    transfer_field.clone(),
                ]
                .concat(),
                &alice,
            ),
        ),
        (
            "the body's fields out of order",
            compute_proto::tx::sign_body_bytes(
                [
                    chain_id.clone(),
                    transfer_field.clone(),
                    nonce_field.clone(),
                ]
                .concat(),
                &alice,
            ),
        ),
        // These two keep Alice's own signature: anyone relaying her
        // transaction could make them.
        (
            "an unknown field appended to the envelope",
            envelope_with_unknown,
        ),
        ("the envelope's fields out of order", envelope_reordered),
    ];
    let before_alice = account_state(&node, &alice.account()).await?;
    let before_bob = node.balance(&bob).await?;
    let counters = tx_counters(&node).await?;
    for (name, tx) in variants {
        ensure!(tx != canonical_tx, "{name} is the canonical encoding");
        let (code, log) = check_tx(&node, tx).await?;
        assert_eq!(code, 31, "{name}: {log}");
        assert!(log.contains("not canonically encoded"), "{name}: {log}");
    }
    let height = latest_height(&node).await?;
    node.wait_for_height(height + 3, Duration::from_secs(30))
        .await?;
    assert_eq!(account_state(&node, &alice.account()).await?, before_alice);
    assert_eq!(node.balance(&bob).await?, before_bob);
    assert_eq!(tx_counters(&node).await?, counters);

    // The one encoding still works, once.
    let result = client.broadcast_tx_commit(canonical_tx.clone()).await?;
    assert_eq!(result.check_tx.code.value(), 0, "{}", result.check_tx.log);
    assert_eq!(result.tx_result.code.value(), 0, "{}", result.tx_result.log);
    node.wait_for_height(result.height.value() + 1, Duration::from_secs(30))
        .await?;
    match client.broadcast_tx_sync(canonical_tx).await {
        Ok(answer) => assert_eq!(answer.code.value(), 6, "{}", answer.log),
        Err(e) => assert!(e.to_string().contains("cache"), "{e}"),
    }
    assert_eq!(node.balance(&bob).await?, before_bob + 1);
    assert_eq!(
        account_state(&node, &alice.account()).await?,
        (before_alice.0 - 1, before_alice.1 + 1)
    );
    assert_keeps_making_blocks(&node).await?;
    assert!(started.elapsed() < ATTACK_TIMEOUT);
    Ok(())
}

// ---------------------------------------------------------------------------
// Overflow
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_amount_and_fee_that_overflow_together_are_refused() -> Result<()> {
    let alice = SigningKey::from_seed([5; 32]);
    let bob = SigningKey::from_seed([6; 32]).account();
    let node = Node::start(NetConfig::funded(&[&alice], 1_000_000)).await?;
    let before = account_state(&node, &alice.account()).await?;
    // Each fits in a u64 and the fee alone is affordable; their sum wraps
    // to 4, which a wrapping check would find covered.
    let builder = TxBuilder {
        chain_id: node.chain_id.clone(),
        fee: 10,
    };
    let tx = builder.sign(&alice, before.1, transfer(&bob, u64::MAX - 5));
    let (code, log) = check_tx(&node, tx).await?;
    assert_eq!(code, 13, "{log}");
    assert!(log.contains("amount + fee"), "{log}");
    let height = latest_height(&node).await?;
    node.wait_for_height(height + 2, Duration::from_secs(30))
        .await?;
    assert_eq!(account_state(&node, &alice.account()).await?, before);
    assert_eq!(node.balance(&bob).await?, 0);
    assert_keeps_making_blocks(&node).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Compile bombs
// ---------------------------------------------------------------------------

/// A job module (`memory`, `alloc`, `run`) with extra parts that make
/// compiling expensive: each bomb is otherwise a valid job.
#[derive(Default)]
struct Bomb {
    /// Extra `() -> ()` function types, never used.
    types: u32,
    /// Extra `() -> ()` functions, each with this body (without `end`).
    functions: Vec<Vec<Instruction<'static>>>,
    /// Empty active data segments.
    data_segments: u32,
    /// Empty passive element segments.
    element_segments: u32,
}

impl Bomb {
    /// The module, built by the sandbox's own generator of hostile jobs.
    fn finish(&self) -> Vec<u8> {
        use compute_sandbox::bombs;
        bombs::Bomb {
            types: vec![(Vec::new(), Vec::new()); self.types as usize],
            functions: self
                .functions
                .iter()
                .map(|body| bombs::Func::nullary(Vec::new(), bombs::encode(body)))
                .collect(),
            data: (0..self.data_segments)
                .map(|_| bombs::Data::Active(0, Vec::new()))
                .collect(),
            elements: (0..self.element_segments)
                .map(|_| bombs::Elem::Passive(Vec::new()))
                .collect(),
            ..bombs::Bomb::default()
        }
        .finish()
    }
}

/// A count far past `limit` (ten times, or as many as fit) of parts of
/// `bytes_each` bytes within `bytes_budget`: the attack is the count, not
/// the size, so it must be refused for the count.
fn way_over(limit: u32, bytes_each: u32, bytes_budget: u32) -> u32 {
    let most = bytes_budget / bytes_each;
    assert!(
        most > limit.saturating_add(limit / 2),
        "a module over the limit of {limit} does not fit in {bytes_budget} bytes"
    );
    limit.saturating_mul(10).min(most)
}

/// `count` sequential empty loops: each loop head is a fuel and an epoch
/// check, among the most expensive code per byte to compile.
fn loops(count: usize) -> Vec<Instruction<'static>> {
    let mut body = Vec::with_capacity(2 * count);
    for _ in 0..count {
        body.push(Instruction::Loop(BlockType::Empty));
        body.push(Instruction::End);
    }
    body
}

#[tokio::test]
async fn modules_built_to_stall_the_compiler_are_refused_before_any_block() -> Result<()> {
    let started = Instant::now();
    let uploader = SigningKey::from_seed([7; 32]);
    let mut config = NetConfig::funded(&[&uploader], 10_000_000);
    config.params = json!({"store_module_fee_per_kib": 7});
    let node = Node::start(config).await?;
    // The chain applies the sandbox's default limits (with its own module
    // size and memory parameters).
    let limits = ModuleLimits::default();
    // Modules stay well inside max_module_bytes (512 KiB) and CometBFT's
    // 1 MB RPC body, so it is each count that is refused, not the size.
    let budget = 300_000;
    // One function's body must stay under its own byte limit.
    let body_budget = limits.function_body_bytes_max - 256;

    let bombs: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "many function types",
            Bomb {
                types: way_over(limits.types_max, 3, budget),
                ..Bomb::default()
            }
            .finish(),
            "types_max",
        ),
        (
            "many functions",
            Bomb {
                functions: vec![Vec::new(); way_over(limits.functions_max, 4, budget) as usize],
                ..Bomb::default()
            }
            .finish(),
            "functions_max",
        ),
        (
            "many data segments",
            Bomb {
                data_segments: way_over(limits.data_segments_max, 5, budget),
                ..Bomb::default()
            }
            .finish(),
            "data_segments_max",
        ),
        (
            "many element segments",
            Bomb {
                element_segments: way_over(limits.element_segments_max, 3, budget),
                ..Bomb::default()
            }
            .finish(),
            "element_segments_max",
        ),
        (
            "a huge br_table",
            Bomb {
                functions: vec![vec![
                    Instruction::Block(BlockType::Empty),
                    Instruction::I32Const(0),
                    Instruction::BrTable(
                        vec![0; way_over(limits.br_table_targets_max, 1, body_budget) as usize]
                            .into(),
                        0,
                    ),
                    Instruction::End,
                ]],
                ..Bomb::default()
            }
            .finish(),
            "br_table_targets_max",
        ),
        (
            "deep nesting",
            Bomb {
                functions: vec![{
                    let depth = way_over(limits.nesting_depth_max, 3, body_budget) as usize;
                    let mut body = vec![Instruction::Block(BlockType::Empty); depth];
                    body.extend(vec![Instruction::End; depth]);
                    body
                }],
                ..Bomb::default()
            }
            .finish(),
            "nesting_depth_max",
        ),
        (
            "more code bytes than a module may have",
            // Constants with ten-byte immediates: the most bytes for the
            // fewest compile units, in functions each under their own
            // limits.
            Bomb {
                functions: {
                    let count = limits.code_bytes_max.div_ceil(body_budget) + 1;
                    let bytes_each = limits.code_bytes_max / count + 4096;
                    assert!(bytes_each <= body_budget);
                    let mut body = Vec::new();
                    for _ in 0..bytes_each / 12 {
                        body.push(Instruction::I64Const(i64::MIN));
                        body.push(Instruction::Drop);
                    }
                    vec![body; count as usize]
                },
                ..Bomb::default()
            }
            .finish(),
            "code_bytes_max",
        ),
        (
            "one function of many loops",
            Bomb {
                functions: vec![loops(limits.function_units_max as usize / 8)],
                ..Bomb::default()
            }
            .finish(),
            "function_units_max",
        ),
        (
            "many functions of a few loops each",
            // Every function and the module's function count within their
            // limits; together ten times the module's compile budget.
            Bomb {
                functions: {
                    let count = limits.functions_max - 16;
                    let per_function = (limits.compile_units_max as usize * 10)
                        .div_ceil(count as usize)
                        .div_ceil(80);
                    assert!(per_function * 80 < limits.function_units_max as usize);
                    vec![loops(per_function); count as usize]
                },
                ..Bomb::default()
            }
            .finish(),
            "compile_units_max",
        ),
    ];

    let (_, _, stats_before) = node.query("/stats").await?;
    let balance_before = node.balance(&uploader.account()).await?;
    let mut signer = Signer::new(&node);
    for (name, wasm, limit_name) in &bombs {
        ensure!(
            wasm.len() < budget as usize + 1024,
            "{name}: {} bytes",
            wasm.len()
        );
        let id = ModuleId::of(wasm);
        let checked = Instant::now();
        let (code, log) = signer
            .send(
                &uploader,
                Msg::StoreModule(pb::StoreModule { wasm: wasm.clone() }),
            )
            .await
            .with_context(|| {
                format!(
                    "CheckTx of {name} ({} bytes) did not answer within {:?}: \
                     the node is busy with it",
                    wasm.len(),
                    checked.elapsed()
                )
            })?;
        assert_eq!(code, 15, "{name}: {log}");
        assert!(
            log.contains(&format!("`{limit_name}`")),
            "{name}: {log:?} does not name the limit {limit_name}"
        );
        // Refused by counting, not by compiling.
        assert!(
            checked.elapsed() < Duration::from_secs(10),
            "{name}: CheckTx took {:?}",
            checked.elapsed()
        );
        let (code, log, _) = node.query(&format!("/module/{id}")).await?;
        assert_eq!(code, 102, "{name} was stored: {log}");
    }
    assert_keeps_making_blocks(&node).await?;
    let (_, _, stats_after) = node.query("/stats").await?;
    assert_eq!(stats_after["modules"], stats_before["modules"]);
    assert_eq!(node.balance(&uploader.account()).await?, balance_before);

    // An honest module is still stored, and pays for its compile per KiB.
    let honest = Bomb {
        functions: vec![Vec::new(); 500],
        ..Bomb::default()
    }
    .finish();
    signer
        .commit(
            &uploader,
            Msg::StoreModule(pb::StoreModule {
                wasm: honest.clone(),
            }),
        )
        .await?;
    let fee = (honest.len() as u64).div_ceil(1024) * 7;
    assert_eq!(
        node.balance(&uploader.account()).await?,
        balance_before - fee
    );
    let (code, log, module) = node
        .query(&format!("/module/{}", ModuleId::of(&honest)))
        .await?;
    assert_eq!(code, 0, "{log}");
    assert_eq!(module["size"], honest.len());
    assert_keeps_making_blocks(&node).await?;
    assert!(started.elapsed() < ATTACK_TIMEOUT);
    Ok(())
}

// ---------------------------------------------------------------------------
// Verified jobs driven by hand
// ---------------------------------------------------------------------------

const FUEL_LIMIT: u64 = 1_000_000;
/// One credit per unit of fuel, so that every payment is exact.
const PRICE: u64 = 1_000_000;
/// Below the fixed 1,000,000 a verification counts at least: then a block
/// budget of `2 x (VERIFY_FUEL + 1_000_000)` starts at most two.
const VERIFY_FUEL: u64 = 500_000;
const STAKE: u64 = 1_000;

/// A tiny job whose output is its input, and whose `verify` answers
/// `verdict` whatever it is shown.
fn echo_module(verdict: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (global $next (mut i32) (i32.const 1024))
          (func (export "alloc") (param $len i32) (result i32)
            (local $at i32)
            (local.set $at (global.get $next))
            (global.set $next (i32.add (global.get $next) (local.get $len)))
            (local.get $at))
          (func (export "run") (param $ptr i32) (param $len i32) (result i64)
            (i64.or
              (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
              (i64.extend_i32_u (local.get $len))))
          (func (export "verify") (param i32 i32 i32 i32) (result i32)
            (i32.const {verdict})))"#
    ))
    .expect("the echo module parses")
}

/// What an honest worker computed for one task.
struct Computed {
    result_hash: [u8; 32],
    fuel: u64,
    output: Vec<u8>,
}

fn salt(worker: &AccountId, task: u32) -> Vec<u8> {
    sha3_256(&[worker.0.as_slice(), &task.to_be_bytes()].concat()).to_vec()
}

fn inline_input(task: &Value) -> Result<Vec<u8>> {
    use base64::Engine;
    let text = task["input"]["inline"].as_str().context("inline input")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

/// Posts a Verified job of `inputs` against `wasm`; returns its id.
async fn post_verified_job(
    signer: &mut Signer<'_>,
    requester: &SigningKey,
    wasm: &[u8],
    inputs: &[Vec<u8>],
    max_workers: u32,
) -> Result<JobId> {
    let nonce = signer.next(requester).await?;
    let job = JobId::derive(&requester.account(), nonce);
    signer
        .commit(
            requester,
            Msg::PostJob(pb::PostJob {
                module_id: ModuleId::of(wasm).0.to_vec(),
                tasks: inputs
                    .iter()
                    .map(|input| pb::TaskInput {
                        size: input.len() as u64,
                        source: Some(pb::task_input::Source::Inline(input.clone())),
                    })
                    .collect(),
                policy: Some(pb::Policy {
                    kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                        verify_fuel: VERIFY_FUEL,
                        max_workers,
                    })),
                }),
                fuel_limit: FUEL_LIMIT,
                price_per_mfuel: PRICE,
                deadline_blocks: 400,
                min_reputation_ppm: 0,
                max_tasks_per_worker: 0,
            }),
        )
        .await?;
    Ok(job)
}

/// Plays every honest worker among `workers` the chain draws for `job`:
/// runs the task in the sandbox, commits, then reveals the output inline.
/// With `burst`, reveals are held until no task is left in its commit
/// phase and then sent together, so that they all reach the verify queue
/// at once. Returns the job's final view and the fuel each worker revealed.
async fn drive_honest_workers(
    node: &Node,
    signer: &mut Signer<'_>,
    workers: &[SigningKey],
    wasm: &[u8],
    job: &JobId,
    burst: bool,
) -> Result<(Value, BTreeMap<String, u64>)> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let module = sandbox.prepare(wasm)?;
    let limits = TaskLimits {
        fuel_max: FUEL_LIMIT,
        memory_bytes_max: 64 * 1024 * 1024,
        ..TaskLimits::default()
    };
    let started = Instant::now();
    let mut acted: BTreeSet<(u32, String, &str)> = BTreeSet::new();
    let mut computed: BTreeMap<u32, Computed> = BTreeMap::new();
    let mut revealed_fuel: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..2_000 {
        ensure!(
            started.elapsed() < ATTACK_TIMEOUT,
            "job {job} did not end within {ATTACK_TIMEOUT:?} ({round} rounds)"
        );
        let (_, _, view) = node.query(&format!("/job/{job}")).await?;
        if view["status"] != "open" {
            return Ok((view, revealed_fuel));
        }
        let tasks = view["tasks"].as_array().context("tasks")?;
        let hold = burst && tasks.iter().any(|t| t["status"] == "commit");
        let mut outgoing = Vec::new();
        for task in tasks {
            let index = u32::try_from(task["index"].as_u64().context("index")?)?;
            let phase = task["status"].as_str().unwrap_or_default();
            for replica in task["replicas"].as_array().context("replicas")? {
                let hex_key = replica["worker"].as_str().context("worker")?.to_owned();
                let Some(key) = workers.iter().find(|k| k.account().to_hex() == hex_key) else {
                    continue;
                };
                let wanted = match (phase, replica["status"].as_str().unwrap_or_default()) {
                    ("commit", "assigned") => "commit",
                    ("reveal", "committed") if !hold => "reveal",
                    _ => continue,
                };
                if !acted.insert((index, hex_key.clone(), wanted)) {
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(slot) = computed.entry(index) {
                    let execution = sandbox.run(&module, &inline_input(task)?, &limits)?;
                    slot.insert(Computed {
                        result_hash: execution.result_hash(),
                        fuel: execution.fuel_used,
                        output: execution
                            .output()
                            .context("the echo job completes")?
                            .to_vec(),
                    });
                }
                let truth = &computed[&index];
                let worker = key.account();
                let msg = if wanted == "commit" {
                    Msg::CommitResult(pb::CommitResult {
                        job_id: job.0.to_vec(),
                        task: index,
                        commitment: commitment(
                            &job.0,
                            index,
                            &worker.0,
                            &truth.result_hash,
                            truth.fuel,
                            &salt(&worker, index),
                        )
                        .to_vec(),
                    })
                } else {
                    *revealed_fuel.entry(hex_key.clone()).or_default() += truth.fuel;
                    Msg::RevealResult(pb::RevealResult {
                        job_id: job.0.to_vec(),
                        task: index,
                        result_hash: truth.result_hash.to_vec(),
                        fuel_used: truth.fuel,
                        salt: salt(&worker, index),
                        output: truth.output.clone(),
                    })
                };
                outgoing.push((key.clone(), msg, format!("{wanted} of task {index}")));
            }
        }
        send_all(signer, outgoing).await?;
        let height = latest_height(node).await?;
        node.wait_for_height(height + 1, Duration::from_secs(30))
            .await?;
    }
    bail!("job {job} did not end in 2000 rounds")
}

/// One event of a block: its kind and attributes.
struct BlockEvent {
    height: u64,
    kind: String,
    attributes: BTreeMap<String, String>,
}

/// The events (of transactions and of the block's end) of every block
/// from `from` to `to`.
async fn events_between(node: &Node, from: u64, to: u64) -> Result<Vec<BlockEvent>> {
    let client = node.client();
    let mut out = Vec::new();
    for height in from..=to {
        let results = client
            .block_results(tendermint::block::Height::try_from(height)?)
            .await?;
        let tx_events = results
            .txs_results
            .unwrap_or_default()
            .into_iter()
            .flat_map(|r| r.events);
        for event in tx_events.chain(results.finalize_block_events) {
            out.push(BlockEvent {
                height,
                kind: event.kind.clone(),
                attributes: event
                    .attributes
                    .iter()
                    .map(|a| {
                        (
                            String::from_utf8_lossy(a.key_bytes()).into_owned(),
                            String::from_utf8_lossy(a.value_bytes()).into_owned(),
                        )
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Registers each worker with `STAKE` and room for `capacity` tasks;
/// returns once every one is on record.
async fn register(signer: &mut Signer<'_>, workers: &[SigningKey], capacity: u32) -> Result<()> {
    for worker in workers {
        let (code, log) = signer
            .send(
                worker,
                Msg::RegisterWorker(pb::RegisterWorker {
                    capacity,
                    stake: STAKE,
                }),
            )
            .await?;
        ensure!(code == 0, "register {}: {log}", worker.account());
    }
    for worker in workers {
        let path = format!("/worker/{}", worker.account());
        poll_until(
            "every worker is registered",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async { Ok((signer.node.query(&path).await?.0 == 0).then_some(())) },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_flood_of_reveals_is_judged_within_the_verify_budget_of_each_block() -> Result<()> {
    const TASKS: u32 = 16;
    const PER_BLOCK: usize = 2;
    let started = Instant::now();
    let requester = SigningKey::from_seed([20; 32]);
    let workers: Vec<SigningKey> = (21..29).map(|i| SigningKey::from_seed([i; 32])).collect();
    let mut funded = vec![&requester];
    funded.extend(&workers);
    let mut config = NetConfig::funded(&funded, 1_000_000_000);
    config.params = json!({
        "max_verify_fuel": 2 * VERIFY_FUEL,
        "max_verify_fuel_per_block": PER_BLOCK as u64 * (VERIFY_FUEL + 1_000_000),
    });
    let node = Node::start(config).await?;
    let mut signer = Signer::new(&node);
    let wasm = echo_module(1);
    signer
        .commit(
            &requester,
            Msg::StoreModule(pb::StoreModule { wasm: wasm.clone() }),
        )
        .await?;
    // Sixteen tasks over eight workers with room for two each: every task
    // is drawn in the block after the job.
    register(&mut signer, &workers, 2).await?;
    let inputs: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| format!("flood {i}").into_bytes())
        .collect();
    let job = post_verified_job(&mut signer, &requester, &wasm, &inputs, 0).await?;
    let posted = node.query(&format!("/job/{job}")).await?.2["posted_height"]
        .as_u64()
        .context("posted_height")?;

    let (view, _) = drive_honest_workers(&node, &mut signer, &workers, &wasm, &job, true).await?;
    assert_eq!(view["status"], "completed", "{view}");
    let ended = view["ended_height"].as_u64().context("ended_height")?;

    let events = events_between(&node, posted, ended).await?;
    let mut judged: BTreeMap<u64, usize> = BTreeMap::new();
    let mut revealed: BTreeMap<u64, usize> = BTreeMap::new();
    for event in &events {
        match event.kind.as_str() {
            "output_verified" | "output_refused" => *judged.entry(event.height).or_default() += 1,
            "task_revealed" => *revealed.entry(event.height).or_default() += 1,
            _ => {}
        }
    }
    let total: usize = judged.values().sum();
    assert_eq!(
        total, TASKS as usize,
        "every output judged once: {judged:?}"
    );
    assert!(
        judged.values().all(|&n| n <= PER_BLOCK),
        "a block judged more than the budget allows: {judged:?}"
    );
    // The flood was real: the reveals came in far faster than the budget
    // lets the chain judge them, so some waited in the queue.
    let most_in_a_block = revealed.values().copied().max().unwrap_or(0);
    assert!(
        most_in_a_block > PER_BLOCK,
        "reveals per block {revealed:?}: no flood to hold back"
    );
    assert!(judged.values().any(|&n| n == PER_BLOCK), "{judged:?}");
    assert!(
        judged.len() >= TASKS as usize / PER_BLOCK,
        "judged in {} blocks: {judged:?}",
        judged.len()
    );
    let settled = events
        .iter()
        .filter(|e| e.kind == "task_settled" && e.attributes.get("job") == Some(&job.to_hex()))
        .count();
    assert_eq!(settled, TASKS as usize);
    let (_, _, stats) = node.query("/stats").await?;
    assert_eq!(stats["verifications"], TASKS, "{stats}");
    assert_eq!(stats["tasks_settled"], TASKS, "{stats}");
    assert_keeps_making_blocks(&node).await?;
    assert!(started.elapsed() < ATTACK_TIMEOUT * 2);
    Ok(())
}

#[tokio::test]
async fn a_requester_whose_verify_lies_cannot_frame_honest_workers() -> Result<()> {
    const MAX_WORKERS: u32 = 2;
    let started = Instant::now();
    let requester = SigningKey::from_seed([40; 32]);
    let workers: Vec<SigningKey> = (41..44).map(|i| SigningKey::from_seed([i; 32])).collect();
    let mut funded = vec![&requester];
    funded.extend(&workers);
    let node = Node::start(NetConfig::funded(&funded, 1_000_000_000)).await?;
    let mut signer = Signer::new(&node);
    // `verify` refuses every output, right or wrong.
    let wasm = echo_module(0);
    signer
        .commit(
            &requester,
            Msg::StoreModule(pb::StoreModule { wasm: wasm.clone() }),
        )
        .await?;
    register(&mut signer, &workers, 1).await?;
    let mut balances_before = BTreeMap::new();
    for worker in &workers {
        balances_before.insert(
            worker.account().to_hex(),
            node.balance(&worker.account()).await?,
        );
    }
    let requester_before = node.balance(&requester.account()).await?;
    let (_, _, stats_before) = node.query("/stats").await?;

    let job = post_verified_job(
        &mut signer,
        &requester,
        &wasm,
        &[b"the right answer".to_vec()],
        MAX_WORKERS,
    )
    .await?;
    let posted = node.query(&format!("/job/{job}")).await?.2["posted_height"]
        .as_u64()
        .context("posted_height")?;
    let (view, revealed_fuel) =
        drive_honest_workers(&node, &mut signer, &workers, &wasm, &job, false).await?;
    let ended = view["ended_height"].as_u64().context("ended_height")?;

    // The task failed after max_workers refusals, with nobody punished.
    assert_eq!(view["status"], "failed", "{view}");
    let task = &view["tasks"][0];
    assert_eq!(task["status"], "failed", "{task}");
    let refused: Vec<&Value> = task["replicas"]
        .as_array()
        .context("replicas")?
        .iter()
        .filter(|r| r["status"] == "refused")
        .collect();
    assert_eq!(refused.len(), MAX_WORKERS as usize, "{task}");
    assert_eq!(revealed_fuel.len(), MAX_WORKERS as usize);
    let events = events_between(&node, posted, ended).await?;
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("output_refused"), MAX_WORKERS as usize);
    for event in events.iter().filter(|e| e.kind == "output_refused") {
        let reason = event.attributes.get("reason").cloned().unwrap_or_default();
        assert!(reason.contains("verify rejected"), "{reason}");
    }
    assert_eq!(count("output_verified"), 0);
    assert_eq!(count("worker_cheated"), 0);
    assert_eq!(count("task_settled"), 0);
    assert_eq!(count("task_failed"), 1);

    // Every worker keeps its stake and its clean record; those drawn are
    // paid the fuel they revealed.
    let mut paid = 0;
    for worker in &workers {
        let hex_key = worker.account().to_hex();
        let (_, _, record) = node.query(&format!("/worker/{hex_key}")).await?;
        assert_eq!(record["stake"], STAKE, "{record}");
        assert_eq!(record["active_tasks"], 0, "{record}");
        let (_, _, reputation) = node.query(&format!("/reputation/{hex_key}")).await?;
        assert_eq!(reputation["cheats"], 0, "{reputation}");
        let fuel = revealed_fuel.get(&hex_key).copied().unwrap_or(0);
        let earned = fuel * PRICE / 1_000_000;
        paid += earned;
        assert_eq!(
            node.balance(&worker.account()).await?,
            balances_before[&hex_key] + earned,
            "worker {hex_key} revealed {fuel} fuel"
        );
    }
    assert!(paid > 0, "the refused workers were paid nothing");
    // The requester pays for the work and for its verifications, and its
    // record shows a verification that failed.
    let (_, _, reputation) = node
        .query(&format!("/reputation/{}", requester.account()))
        .await?;
    assert_eq!(reputation["verifications_failed"], 1, "{reputation}");
    let (_, _, stats) = node.query("/stats").await?;
    assert_eq!(stats["credits_slashed"], 0, "{stats}");
    let verifications = stats["verifications"].as_u64().context("verifications")?
        - stats_before["verifications"].as_u64().unwrap_or(0);
    assert_eq!(verifications, u64::from(MAX_WORKERS), "{stats}");
    let verify_fuel = stats["verify_fuel_used"]
        .as_u64()
        .context("verify_fuel_used")?
        - stats_before["verify_fuel_used"].as_u64().unwrap_or(0);
    assert_eq!(
        requester_before - node.balance(&requester.account()).await?,
        paid + verify_fuel * PRICE / 1_000_000,
        "the requester pays the refused work and the verifications, nothing else"
    );
    assert_keeps_making_blocks(&node).await?;
    assert!(started.elapsed() < ATTACK_TIMEOUT * 2);
    Ok(())
}
