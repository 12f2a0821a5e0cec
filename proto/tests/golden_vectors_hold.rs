//! Golden test vectors of the wire protocol (`docs/PROTOCOL.md`).
//!
//! `tests/golden_vectors.json` holds, for fixed inputs, every byte a client
//! must produce: keys from seeds, `H(tag, parts)` digests, job ids,
//! commitments, assignment seeds, result hashes, signed transactions with
//! their CometBFT hashes, signed blob upload headers with the first
//! `PutBlob` chunk that carries them, and what the chain refuses (re-encodings of a
//! signed intent, public keys of small order or in a non-canonical
//! encoding, malformed envelopes). This test builds all of it again with
//! `compute_proto` and checks the file field by field; a second,
//! independent implementation (`scripts/check-vectors.py`) re-derives the
//! same vectors from their inputs.
//!
//! Regenerate after a deliberate protocol change (never to make a failure
//! go away):
//!
//! ```sh
//! GOLDEN_VECTORS_WRITE=1 cargo test --workspace --test golden_vectors_hold
//! ```

use std::path::PathBuf;

use compute_proto::hash::{hash_parts, Tag};
use compute_proto::keys::KeyFile;
use compute_proto::pb;
use compute_proto::pb::tx_body::Msg;
use compute_proto::tx::{sign_body_bytes, sign_bytes};
use compute_proto::upload::{sign_upload, upload_sign_bytes};
use compute_proto::{
    assignment_seed, check_public_key, commitment, sha3_256, AccountId, BlobId, JobId, ModuleId,
    PublicKeyError, SignedTx, SigningKey, TxError, VerifiedUpload,
};
use prost::Message;
use serde_json::{json, Value};

/// The chain id every positive transaction vector is signed for.
const CHAIN_ID: &str = "compute-golden";

/// The largest transaction the vectors are decoded under (the default
/// `max_tx_bytes` is larger than any vector).
const MAX_TX: usize = 1 << 20;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden_vectors.json")
}

#[test]
fn golden_vectors_hold() {
    let built = build();
    let file = path();
    if std::env::var("GOLDEN_VECTORS_WRITE").as_deref() == Ok("1") {
        let mut text = serde_json::to_string_pretty(&built).unwrap();
        text.push('\n');
        std::fs::write(&file, text).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with GOLDEN_VECTORS_WRITE=1",
            file.display()
        )
    });
    let stored: Value = serde_json::from_str(&text).unwrap();
    if let Some(difference) = first_difference(&stored, &built, "$") {
        panic!(
            "golden vectors changed: {difference}. The wire protocol must not change by accident; \
             if the change is deliberate, regenerate with GOLDEN_VECTORS_WRITE=1, update \
             docs/PROTOCOL.md and scripts/check-vectors.py, and tell every client"
        );
    }
}

/// The first place where `stored` and `built` differ, as a JSON path.
fn first_difference(stored: &Value, built: &Value, at: &str) -> Option<String> {
    match (stored, built) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = first_difference(x, y, &format!("{at}.{key}")) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => return Some(format!("{at}.{key} is in the file only")),
                    (None, _) => return Some(format!("{at}.{key} is missing from the file")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if let Some(d) = first_difference(x, y, &format!("{at}[{i}]")) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| {
                format!(
                    "{at} has {} entries in the file, {} computed",
                    a.len(),
                    b.len()
                )
            })
        }
        _ => (stored != built).then(|| format!("{at} is {stored} in the file, {built} computed")),
    }
}

// ---------------------------------------------------------------------------
// Independent helpers: SHA-256 (CometBFT's tx hash) and base64 (CometBFT's
// JSON-RPC). compute-proto has neither as a dependency; both are checked
// against their standards' vectors below.

const SHA256_K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 (FIPS 180-4).
fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let choice = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(choice)
                .wrapping_add(SHA256_K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let majority = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(majority);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn the_helpers_match_their_standards() {
    assert_eq!(
        hex::encode(sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex::encode(sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex::encode(sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}

// ---------------------------------------------------------------------------
// A protobuf writer for the re-encodings the chain must refuse.

fn varint(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(value, &mut out);
    out
}

fn field_varint(field: u64, value: u64) -> Vec<u8> {
    [varint(field << 3), varint(value)].concat()
}

fn field_bytes(field: u64, data: &[u8]) -> Vec<u8> {
    [
        varint(field << 3 | 2),
        varint(data.len() as u64),
        data.to_vec(),
    ]
    .concat()
}

// ---------------------------------------------------------------------------
// JSON views of the messages, with proto field names; bytes in lowercase
// hex, integers as JSON numbers, a oneof as the one member that is set.

fn hx(bytes: &[u8]) -> Value {
    Value::String(hex::encode(bytes))
}

fn input_json(input: &pb::TaskInput) -> Value {
    let mut value = json!({ "size": input.size });
    match &input.source {
        Some(pb::task_input::Source::Inline(bytes)) => value["inline"] = hx(bytes),
        Some(pb::task_input::Source::Hash(bytes)) => value["hash"] = hx(bytes),
        None => {}
    }
    value
}

fn policy_json(policy: &pb::Policy) -> Value {
    match &policy.kind {
        Some(pb::policy::Kind::Quorum(q)) => json!({ "quorum": {
            "replicas": q.replicas,
            "quorum": q.quorum,
            "max_replicas": q.max_replicas,
        }}),
        Some(pb::policy::Kind::Verified(v)) => json!({ "verified": {
            "verify_fuel": v.verify_fuel,
            "max_workers": v.max_workers,
        }}),
        None => json!({}),
    }
}

fn msg_json(msg: &Msg) -> (&'static str, Value) {
    match msg {
        Msg::Transfer(m) => ("transfer", json!({ "to": hx(&m.to), "amount": m.amount })),
        Msg::StoreModule(m) => ("store_module", json!({ "wasm": hx(&m.wasm) })),
        Msg::RegisterWorker(m) => (
            "register_worker",
            json!({ "capacity": m.capacity, "stake": m.stake }),
        ),
        Msg::UnregisterWorker(_) => ("unregister_worker", json!({})),
        Msg::PostJob(m) => (
            "post_job",
            json!({
                "module_id": hx(&m.module_id),
                "tasks": m.tasks.iter().map(input_json).collect::<Vec<_>>(),
                "policy": m.policy.as_ref().map_or(Value::Null, policy_json),
                "fuel_limit": m.fuel_limit,
                "price_per_mfuel": m.price_per_mfuel,
                "deadline_blocks": m.deadline_blocks,
                "min_reputation_ppm": m.min_reputation_ppm,
                "max_tasks_per_worker": m.max_tasks_per_worker,
            }),
        ),
        Msg::CommitResult(m) => (
            "commit_result",
            json!({ "job_id": hx(&m.job_id), "task": m.task, "commitment": hx(&m.commitment) }),
        ),
        Msg::RevealResult(m) => (
            "reveal_result",
            json!({
                "job_id": hx(&m.job_id),
                "task": m.task,
                "result_hash": hx(&m.result_hash),
                "fuel_used": m.fuel_used,
                "salt": hx(&m.salt),
                "output": hx(&m.output),
            }),
        ),
        Msg::CancelJob(m) => ("cancel_job", json!({ "job_id": hx(&m.job_id) })),
        Msg::Dispute(m) => (
            "dispute",
            json!({ "job_id": hx(&m.job_id), "task": m.task, "input": hx(&m.input), "bond": m.bond }),
        ),
        Msg::DeclineTask(m) => (
            "decline_task",
            json!({ "job_id": hx(&m.job_id), "task": m.task, "reason": m.reason }),
        ),
        Msg::BondValidator(m) => (
            "bond_validator",
            json!({ "pub_key": hx(&m.pub_key), "stake": m.stake }),
        ),
        Msg::UnbondValidator(m) => ("unbond_validator", json!({ "amount": m.amount })),
        Msg::UnjailValidator(_) => ("unjail_validator", json!({})),
        Msg::CommitResults(m) => (
            "commit_results",
            json!({ "entries": m.entries.iter().map(|e| msg_json(&Msg::CommitResult(e.clone())).1).collect::<Vec<_>>() }),
        ),
        Msg::RevealResults(m) => (
            "reveal_results",
            json!({ "entries": m.entries.iter().map(|e| msg_json(&Msg::RevealResult(e.clone())).1).collect::<Vec<_>>() }),
        ),
        Msg::PostJobs(m) => (
            "post_jobs",
            json!({ "jobs": m.jobs.iter().map(|j| msg_json(&Msg::PostJob(j.clone())).1).collect::<Vec<_>>() }),
        ),
    }
}

fn body_json(body: &pb::TxBody) -> Value {
    let mut value = json!({
        "chain_id": body.chain_id,
        "nonce": body.nonce,
        "fee": body.fee,
    });
    if let Some(msg) = &body.msg {
        let (name, inner) = msg_json(msg);
        value[name] = inner;
    }
    value
}

// ---------------------------------------------------------------------------
// The vectors.

struct Key {
    name: &'static str,
    key: SigningKey,
}

fn keys() -> Vec<Key> {
    let seed = |text: &str| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    };
    vec![
        Key {
            // RFC 8032 section 7.1, TEST 1: the public key is known.
            name: "requester",
            key: SigningKey::from_seed(seed(
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            )),
        },
        Key {
            name: "worker_a",
            key: SigningKey::from_seed(seed(
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            )),
        },
        Key {
            name: "worker_b",
            key: SigningKey::from_seed([0x42; 32]),
        },
    ]
}

fn key_vectors(keys: &[Key]) -> Value {
    let rfc8032_test1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    assert_eq!(keys[0].key.account().to_hex(), rfc8032_test1);
    keys.iter()
        .map(|k| {
            assert_eq!(check_public_key(&k.key.account().0), Ok(()));
            let file = serde_json::to_value(KeyFile::from_key(&k.key)).unwrap();
            json!({
                "name": k.name,
                "seed": hex::encode(k.key.seed()),
                "public_key": k.key.account().to_hex(),
                "key_file": file,
            })
        })
        .collect()
}

/// Every tag, in the order of the file's `tags`.
const TAGS: [Tag; 7] = [
    Tag::Tx,
    Tag::Job,
    Tag::Commit,
    Tag::Assign,
    Tag::State,
    Tag::Failure,
    Tag::Upload,
];

fn tag_of(name: &str) -> Tag {
    TAGS.into_iter().find(|t| t.as_str() == name).unwrap()
}

fn hash_vector(tag: &str, parts: &[Vec<u8>], what: &str) -> Value {
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let digest = hash_parts(tag_of(tag), &refs);
    let preimage = [tag.as_bytes(), &[0], &parts.concat()].concat();
    assert_eq!(digest, sha3_256(&preimage));
    json!({
        "what": what,
        "tag": tag,
        "parts": parts.iter().map(|p| hx(p)).collect::<Vec<_>>(),
        "preimage": hx(&preimage),
        "digest": hx(&digest),
    })
}

/// The failure codes of `compute-sandbox` (`sandbox/src/outcome.rs`, pinned
/// there by `failure_codes_are_pinned`): they enter result hashes.
const FAILURES: [(&str, u32); 17] = [
    ("OutOfFuel", 1),
    ("MemoryLimit", 2),
    ("TableLimit", 3),
    ("DepthLimit", 4),
    ("OutputTooLarge", 5),
    ("OutputOutOfBounds", 6),
    ("InputOutOfBounds", 7),
    ("InputTooLarge", 8),
    ("VerifyMissing", 9),
    ("Unreachable", 16),
    ("MemoryOutOfBounds", 17),
    ("TableOutOfBounds", 18),
    ("IndirectCallToNull", 19),
    ("BadSignature", 20),
    ("IntegerOverflow", 21),
    ("IntegerDivisionByZero", 22),
    ("BadConversionToInteger", 23),
];

fn failure_hash(code: u32) -> [u8; 32] {
    hash_parts(Tag::Failure, &[&code.to_be_bytes()])
}

/// A tiny module: the 8-byte header of an empty WebAssembly module. It
/// shows the encoding only; the chain refuses it (code 15, no job exports).
const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn job_input() -> Vec<u8> {
    b"input of a large task".repeat(4)
}

struct Fixture {
    keys: Vec<Key>,
    quorum_job: JobId,
    verified_job: JobId,
    salt: Vec<u8>,
    output: Vec<u8>,
    fuel_used: u64,
}

fn fixture() -> Fixture {
    let keys = keys();
    let requester = keys[0].key.account();
    Fixture {
        quorum_job: JobId::derive(&requester, 2),
        verified_job: JobId::derive(&requester, 3),
        keys,
        salt: (0u8..32).map(|i| i.wrapping_mul(7) ^ 0xa5).collect(),
        output: b"17984".to_vec(),
        fuel_used: 123_456_789,
    }
}

fn hash_vectors(f: &Fixture) -> Value {
    let requester = f.keys[0].key.account().0.to_vec();
    let worker = f.keys[1].key.account().0.to_vec();
    let body = pb::TxBody {
        chain_id: CHAIN_ID.into(),
        nonce: 1,
        fee: 0,
        msg: Some(Msg::UnregisterWorker(pb::UnregisterWorker {})),
    }
    .encode_to_vec();
    let entries = [
        hash_vector("compute/tx/v1", &[body], "sign bytes of a TxBody"),
        hash_vector("compute/tx/v1", &[], "no parts: sha3_256(tag || 0x00)"),
        hash_vector(
            "compute/job/v1",
            &[requester.clone(), 5u64.to_be_bytes().to_vec()],
            "job id: requester, nonce u64 BE",
        ),
        hash_vector(
            "compute/job/v1",
            &[b"abc".to_vec(), b"def".to_vec()],
            "parts are concatenated without length prefixes: equals the next vector",
        ),
        hash_vector(
            "compute/job/v1",
            &[b"abcdef".to_vec()],
            "one part abcdef: same digest as the parts abc, def",
        ),
        hash_vector(
            "compute/commit/v1",
            &[
                f.quorum_job.0.to_vec(),
                7u32.to_be_bytes().to_vec(),
                worker.clone(),
                sha3_256(&f.output).to_vec(),
                f.fuel_used.to_be_bytes().to_vec(),
                f.salt.clone(),
            ],
            "commitment: job, task u32 BE, worker, result_hash, fuel_used u64 BE, salt",
        ),
        hash_vector(
            "compute/assign/v1",
            &[
                vec![0x0b; 32],
                f.quorum_job.0.to_vec(),
                1u32.to_be_bytes().to_vec(),
                2u32.to_be_bytes().to_vec(),
                3u32.to_be_bytes().to_vec(),
            ],
            "assignment seed: block hash, job, task u32 BE, slot u32 BE, attempt u32 BE",
        ),
        hash_vector(
            "compute/state/v1",
            &[
                vec![0; 32],
                1u64.to_be_bytes().to_vec(),
                1u64.to_be_bytes().to_vec(),
                1u64.to_be_bytes().to_vec(),
                b"k".to_vec(),
                vec![1],
                1u64.to_be_bytes().to_vec(),
                b"v".to_vec(),
            ],
            "app hash layout: previous hash, height u64 BE, write count u64 BE, then per write \
             key length u64 BE, key, 0x01, value length u64 BE, value (0x00 for a delete)",
        ),
        hash_vector(
            "compute/failure/v1",
            &[1u32.to_be_bytes().to_vec()],
            "result hash of a failure: code u32 BE (1 = OutOfFuel)",
        ),
        hash_vector(
            "compute/upload/v1",
            &[
                requester.clone(),
                sha3_256(b"").to_vec(),
                0u64.to_be_bytes().to_vec(),
                u64::MAX.to_be_bytes().to_vec(),
            ],
            "sign bytes of a blob upload header: uploader, hash, size u64 BE, expires u64 BE",
        ),
    ];
    Value::Array(entries.to_vec())
}

fn id_vectors(f: &Fixture) -> Value {
    let requester = f.keys[0].key.account();
    let job_ids: Vec<Value> = [0u64, 1, 2, 3, 1 << 32, (1 << 53) + 1, u64::MAX]
        .into_iter()
        .map(|nonce| {
            let id = JobId::derive(&requester, nonce);
            assert_eq!(
                id.0,
                hash_parts(Tag::Job, &[&requester.0, &nonce.to_be_bytes()])
            );
            json!({
                "requester": requester.to_hex(),
                "nonce": nonce,
                "nonce_be": hx(&nonce.to_be_bytes()),
                "job_id": id.to_hex(),
            })
        })
        .collect();
    let blobs: Vec<Value> = [
        ("module id of the 8-byte empty module", WASM.to_vec()),
        ("blob id of an empty blob", Vec::new()),
        ("blob id of a task input", job_input()),
    ]
    .into_iter()
    .map(|(what, bytes)| {
        assert_eq!(ModuleId::of(&bytes).0, sha3_256(&bytes));
        json!({ "what": what, "bytes": hx(&bytes), "id": hx(&sha3_256(&bytes)) })
    })
    .collect();
    json!({ "job_ids": job_ids, "content_ids": blobs })
}

/// The inputs of one commitment.
struct CommitCase {
    job: JobId,
    task: u32,
    worker: AccountId,
    result_hash: [u8; 32],
    fuel: u64,
    salt: Vec<u8>,
}

fn commitment_vectors(f: &Fixture) -> Value {
    let worker_a = f.keys[1].key.account();
    let worker_b = f.keys[2].key.account();
    let case = |job: JobId,
                task: u32,
                worker: AccountId,
                result_hash: [u8; 32],
                fuel: u64,
                salt: Vec<u8>| {
        CommitCase {
            job,
            task,
            worker,
            result_hash,
            fuel,
            salt,
        }
    };
    let cases = [
        case(
            f.quorum_job,
            0,
            worker_a,
            sha3_256(&f.output),
            f.fuel_used,
            f.salt.clone(),
        ),
        case(
            f.quorum_job,
            0,
            worker_b,
            sha3_256(&f.output),
            f.fuel_used,
            f.salt.clone(),
        ),
        case(
            f.quorum_job,
            u32::MAX,
            worker_a,
            failure_hash(1),
            u64::MAX,
            Vec::new(),
        ),
        case(
            f.verified_job,
            3,
            worker_b,
            sha3_256(b""),
            (1 << 53) + 1,
            vec![0xff; 64],
        ),
    ];
    cases
        .into_iter()
        .map(
            |CommitCase {
                 job,
                 task,
                 worker,
                 result_hash,
                 fuel,
                 salt,
             }| {
                let value = commitment(&job.0, task, &worker.0, &result_hash, fuel, &salt);
                let preimage = [
                    Tag::Commit.as_str().as_bytes(),
                    &[0],
                    &job.0,
                    &task.to_be_bytes(),
                    &worker.0,
                    &result_hash,
                    &fuel.to_be_bytes(),
                    &salt,
                ]
                .concat();
                assert_eq!(value, sha3_256(&preimage));
                json!({
                    "job": job.to_hex(),
                    "task": task,
                    "worker": worker.to_hex(),
                    "result_hash": hx(&result_hash),
                    "fuel_used": fuel,
                    "salt": hx(&salt),
                    "preimage": hx(&preimage),
                    "commitment": hx(&value),
                })
            },
        )
        .collect()
}

fn assignment_vectors(f: &Fixture) -> Value {
    let block = sha256(b"a block");
    [
        (f.quorum_job, 0u32, 0u32, 0u32),
        (f.quorum_job, 1, 2, 3),
        (f.verified_job, u32::MAX, 0, 23),
    ]
    .into_iter()
    .map(|(job, task, slot, attempt)| {
        let seed = assignment_seed(&block, &job.0, task, slot, attempt);
        json!({
            "block_hash": hx(&block),
            "job": job.to_hex(),
            "task": task,
            "slot": slot,
            "attempt": attempt,
            "seed": hx(&seed),
        })
    })
    .collect()
}

fn result_hash_vectors(f: &Fixture) -> Value {
    let outputs: Vec<Value> = [Vec::new(), f.output.clone(), (0u8..=255).collect()]
        .iter()
        .map(|output| json!({ "output": hx(output), "result_hash": hx(&sha3_256(output)) }))
        .collect();
    let failures: Vec<Value> = FAILURES
        .iter()
        .map(|(name, code)| {
            json!({
                "failure": name,
                "code": code,
                "code_be": hx(&code.to_be_bytes()),
                "result_hash": hx(&failure_hash(*code)),
            })
        })
        .collect();
    json!({ "outputs": outputs, "failures": failures })
}

fn signed(name: &str, key: &Key, body: &pb::TxBody, job: Option<JobId>) -> Value {
    let body_bytes = body.encode_to_vec();
    let tx = sign_body_bytes(body_bytes.clone(), &key.key);
    let decoded = SignedTx::decode(&tx, MAX_TX).unwrap();
    decoded.verify().unwrap();
    assert_eq!(&decoded.body, body);
    assert_eq!(body_json(&decoded.body), body_json(body));
    let digest = sign_bytes(&body_bytes);
    let envelope = pb::Tx::decode(tx.as_slice()).unwrap();
    let mut value = json!({
        "name": name,
        "signer": key.name,
        "signer_public_key": key.key.account().to_hex(),
        "body": body_json(body),
        "body_hex": hx(&body_bytes),
        "sign_bytes": hx(&digest),
        "signature": hx(&envelope.signature),
        "tx_hex": hx(&tx),
        "tx_base64": base64(&tx),
        "tx_hash": hex::encode_upper(sha256(&tx)),
    });
    if let Some(job) = job {
        assert_eq!(job, JobId::derive(&key.key.account(), body.nonce));
        value["job_id"] = Value::String(job.to_hex());
    }
    value
}

fn transaction_vectors(f: &Fixture) -> Value {
    let [requester, worker_a, worker_b] = [&f.keys[0], &f.keys[1], &f.keys[2]];
    let body = |nonce: u64, fee: u64, msg: Msg| pb::TxBody {
        chain_id: CHAIN_ID.into(),
        nonce,
        fee,
        msg: Some(msg),
    };
    let module_id = ModuleId::of(WASM).0.to_vec();
    let result_hash = sha3_256(&f.output);
    let commit = commitment(
        &f.quorum_job.0,
        0,
        &worker_a.key.account().0,
        &result_hash,
        f.fuel_used,
        &f.salt,
    );
    let commit_task_2 = commitment(
        &f.quorum_job.0,
        2,
        &worker_a.key.account().0,
        &failure_hash(1),
        1_000_000_000,
        &f.salt,
    );
    let quorum = pb::PostJob {
        module_id: module_id.clone(),
        tasks: vec![
            pb::TaskInput {
                source: Some(pb::task_input::Source::Inline(b"320000000".to_vec())),
                size: 9,
            },
            pb::TaskInput {
                source: Some(pb::task_input::Source::Inline(Vec::new())),
                size: 0,
            },
            pb::TaskInput {
                source: Some(pb::task_input::Source::Hash(
                    sha3_256(&job_input()).to_vec(),
                )),
                size: job_input().len() as u64,
            },
        ],
        policy: Some(pb::Policy {
            kind: Some(pb::policy::Kind::Quorum(pb::QuorumPolicy {
                replicas: 3,
                quorum: 2,
                max_replicas: 5,
            })),
        }),
        fuel_limit: 1_000_000_000,
        price_per_mfuel: 10,
        deadline_blocks: 100,
        min_reputation_ppm: 0,
        max_tasks_per_worker: 2,
    };
    let verified = pb::PostJob {
        module_id,
        tasks: vec![pb::TaskInput {
            source: Some(pb::task_input::Source::Inline(vec![1, 2, 3, 4])),
            size: 4,
        }],
        policy: Some(pb::Policy {
            kind: Some(pb::policy::Kind::Verified(pb::VerifiedPolicy {
                verify_fuel: 5_000_000,
                max_workers: 0,
            })),
        }),
        fuel_limit: 50_000_000,
        price_per_mfuel: 3,
        deadline_blocks: 50,
        min_reputation_ppm: 500_000,
        max_tasks_per_worker: 0,
    };
    // Several jobs in one transaction: the job at index i gets
    // H("compute/job/v1", requester, nonce, i u32 BE).
    let post_jobs = {
        let batch = body(
            5,
            1,
            Msg::PostJobs(pb::PostJobs {
                jobs: vec![quorum.clone(), verified.clone()],
            }),
        );
        let mut value = signed("post_jobs", requester, &batch, None);
        let ids: Vec<String> = (0..2)
            .map(|i| JobId::derive_in_batch(&requester.key.account(), 5, i).to_hex())
            .collect();
        value["job_ids"] = json!(ids);
        value
    };
    let entries = [
        signed(
            "transfer",
            requester,
            &body(
                0,
                1,
                Msg::Transfer(pb::Transfer {
                    to: worker_a.key.account().0.to_vec(),
                    amount: (1 << 53) + 1,
                }),
            ),
            None,
        ),
        signed(
            "store_module",
            requester,
            &body(
                1,
                1,
                Msg::StoreModule(pb::StoreModule {
                    wasm: WASM.to_vec(),
                }),
            ),
            None,
        ),
        signed(
            "post_job_quorum",
            requester,
            &body(2, 1, Msg::PostJob(quorum)),
            Some(f.quorum_job),
        ),
        signed(
            "post_job_verified",
            requester,
            &body(3, 1, Msg::PostJob(verified)),
            Some(f.verified_job),
        ),
        signed(
            "cancel_job",
            requester,
            &body(
                4,
                1,
                Msg::CancelJob(pb::CancelJob {
                    job_id: f.verified_job.0.to_vec(),
                }),
            ),
            None,
        ),
        signed(
            "register_worker",
            worker_a,
            &body(
                0,
                0,
                Msg::RegisterWorker(pb::RegisterWorker {
                    capacity: 4,
                    stake: 1_000_000,
                }),
            ),
            None,
        ),
        signed(
            "commit_result",
            worker_a,
            &body(
                1,
                1,
                Msg::CommitResult(pb::CommitResult {
                    job_id: f.quorum_job.0.to_vec(),
                    task: 0,
                    commitment: commit.to_vec(),
                }),
            ),
            None,
        ),
        signed(
            "reveal_result",
            worker_a,
            &body(
                2,
                1,
                Msg::RevealResult(pb::RevealResult {
                    job_id: f.quorum_job.0.to_vec(),
                    task: 0,
                    result_hash: result_hash.to_vec(),
                    fuel_used: f.fuel_used,
                    salt: f.salt.clone(),
                    output: f.output.clone(),
                }),
            ),
            None,
        ),
        signed(
            "reveal_result_failure",
            worker_a,
            &body(
                3,
                1,
                Msg::RevealResult(pb::RevealResult {
                    job_id: f.quorum_job.0.to_vec(),
                    task: 2,
                    result_hash: failure_hash(1).to_vec(),
                    fuel_used: 1_000_000_000,
                    salt: f.salt.clone(),
                    output: Vec::new(),
                }),
            ),
            None,
        ),
        signed(
            "decline_task",
            worker_b,
            &body(
                0,
                1,
                Msg::DeclineTask(pb::DeclineTask {
                    job_id: f.quorum_job.0.to_vec(),
                    task: 1,
                    reason: "module on the deny list".into(),
                }),
            ),
            None,
        ),
        signed(
            "unregister_worker",
            worker_b,
            &body(1, 0, Msg::UnregisterWorker(pb::UnregisterWorker {})),
            None,
        ),
        signed(
            "commit_results",
            worker_a,
            &body(
                4,
                1,
                Msg::CommitResults(pb::CommitResults {
                    entries: vec![
                        pb::CommitResult {
                            job_id: f.quorum_job.0.to_vec(),
                            task: 0,
                            commitment: commit.to_vec(),
                        },
                        pb::CommitResult {
                            job_id: f.quorum_job.0.to_vec(),
                            task: 2,
                            commitment: commit_task_2.to_vec(),
                        },
                    ],
                }),
            ),
            None,
        ),
        signed(
            "reveal_results",
            worker_a,
            &body(
                5,
                1,
                Msg::RevealResults(pb::RevealResults {
                    entries: vec![
                        pb::RevealResult {
                            job_id: f.quorum_job.0.to_vec(),
                            task: 0,
                            result_hash: result_hash.to_vec(),
                            fuel_used: f.fuel_used,
                            salt: f.salt.clone(),
                            output: f.output.clone(),
                        },
                        pb::RevealResult {
                            job_id: f.quorum_job.0.to_vec(),
                            task: 2,
                            result_hash: failure_hash(1).to_vec(),
                            fuel_used: 1_000_000_000,
                            salt: f.salt.clone(),
                            output: Vec::new(),
                        },
                    ],
                }),
            ),
            None,
        ),
        post_jobs,
    ];
    Value::Array(entries.to_vec())
}

/// A canonical transfer body and its fields, the base of the re-encodings.
fn base_body(f: &Fixture) -> (pb::Transfer, Vec<u8>, Vec<u8>) {
    let transfer = pb::Transfer {
        to: f.keys[1].key.account().0.to_vec(),
        amount: 1,
    };
    let inner = transfer.encode_to_vec();
    let canonical = [
        field_bytes(1, CHAIN_ID.as_bytes()),
        field_varint(2, 7),
        field_bytes(10, &inner),
    ]
    .concat();
    let prost = pb::TxBody {
        chain_id: CHAIN_ID.into(),
        nonce: 7,
        fee: 0,
        msg: Some(Msg::Transfer(transfer.clone())),
    }
    .encode_to_vec();
    assert_eq!(canonical, prost);
    (transfer, inner, canonical)
}

fn non_canonical_vectors(f: &Fixture) -> Value {
    let key = &f.keys[0];
    let (_, inner, canonical) = base_body(f);
    let chain = field_bytes(1, CHAIN_ID.as_bytes());
    let nonce = field_varint(2, 7);
    let msg = field_bytes(10, &inner);
    let mut long_length = vec![1 << 3 | 2, CHAIN_ID.len() as u8 | 0x80, 0x00];
    long_length.extend_from_slice(CHAIN_ID.as_bytes());
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "unknown_field",
            "a field the schema does not have (number 9, varint 1) appended",
            [canonical.clone(), field_varint(9, 1)].concat(),
        ),
        (
            "duplicated_field",
            "the nonce written twice, 7 then 9: a decoder keeps the last",
            [canonical.clone(), field_varint(2, 9)].concat(),
        ),
        (
            "long_varint",
            "the nonce 7 written as the two-byte varint 0x87 0x00",
            [chain.clone(), vec![2 << 3, 0x87, 0x00], msg.clone()].concat(),
        ),
        (
            "long_length_prefix",
            "the chain id's length written as a two-byte varint",
            [long_length, nonce.clone(), msg.clone()].concat(),
        ),
        (
            "default_value_written",
            "the fee 0 written out (field 3, varint 0)",
            [
                chain.clone(),
                nonce.clone(),
                field_varint(3, 0),
                msg.clone(),
            ]
            .concat(),
        ),
        (
            "fields_out_of_order",
            "the nonce written after the message",
            [chain.clone(), msg.clone(), nonce.clone()].concat(),
        ),
        (
            "duplicated_field_in_message",
            "the transfer's amount written twice, 1 then 900: the body's bytes include the message",
            [
                chain.clone(),
                nonce.clone(),
                field_bytes(10, &[inner.clone(), field_varint(2, 900)].concat()),
            ]
            .concat(),
        ),
        (
            "default_value_in_message",
            "a register_worker with its stake 0 written out",
            [
                chain.clone(),
                nonce.clone(),
                field_bytes(12, &[field_varint(1, 4), field_varint(2, 0)].concat()),
            ]
            .concat(),
        ),
        (
            "two_messages",
            "a transfer and then a cancel_job: the oneof keeps the last",
            [
                canonical.clone(),
                field_bytes(17, &field_bytes(1, &f.quorum_job.0)),
            ]
            .concat(),
        ),
    ];
    let mut out = Vec::new();
    for (name, what, given) in bodies {
        let decoded = pb::TxBody::decode(given.as_slice()).unwrap();
        let recoded = decoded.encode_to_vec();
        assert_ne!(recoded, given, "{name}");
        let tx = sign_body_bytes(given.clone(), &key.key);
        match SignedTx::decode(&tx, MAX_TX) {
            Err(TxError::NonCanonical { part: "TxBody", .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
        out.push(json!({
            "name": name,
            "what": what,
            "part": "TxBody",
            "signer": key.name,
            "decodes_to": body_json(&decoded),
            "canonical_body_hex": hx(&recoded),
            "body_hex": hx(&given),
            "tx_hex": hx(&tx),
            "expected": { "error": "NonCanonical", "code": 31, "code_name": "TxNotCanonical" },
        }));
    }

    let tx = sign_body_bytes(canonical.clone(), &key.key);
    let envelope = pb::Tx::decode(tx.as_slice()).unwrap();
    let (body, signer, signature) = (
        field_bytes(1, &envelope.body),
        field_bytes(2, &envelope.signer),
        field_bytes(3, &envelope.signature),
    );
    let envelopes: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "envelope_unknown_field",
            "a correctly signed Tx with an unknown field (number 9, varint 0) appended",
            [tx.clone(), field_varint(9, 0)].concat(),
        ),
        (
            "envelope_out_of_order",
            "the signer written before the body",
            [signer.clone(), body.clone(), signature.clone()].concat(),
        ),
        (
            "envelope_duplicated_field",
            "the signature written twice",
            [body.clone(), signer.clone(), signature.clone(), signature].concat(),
        ),
    ];
    for (name, what, given) in envelopes {
        let recoded = pb::Tx::decode(given.as_slice()).unwrap().encode_to_vec();
        assert_eq!(recoded, tx, "{name}");
        match SignedTx::decode(&given, MAX_TX) {
            Err(TxError::NonCanonical { part: "Tx", .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
        out.push(json!({
            "name": name,
            "what": what,
            "part": "Tx",
            "signer": key.name,
            "decodes_to": body_json(&pb::TxBody::decode(canonical.as_slice()).unwrap()),
            "canonical_body_hex": hx(&canonical),
            "body_hex": hx(&canonical),
            "canonical_tx_hex": hx(&recoded),
            "tx_hex": hx(&given),
            "expected": { "error": "NonCanonical", "code": 31, "code_name": "TxNotCanonical" },
        }));
    }
    Value::Array(out)
}

fn verdict_name(verdict: Result<(), PublicKeyError>) -> &'static str {
    match verdict {
        Ok(()) => "Ok",
        Err(PublicKeyError::NotOnCurve) => "NotOnCurve",
        Err(PublicKeyError::NonCanonical) => "NonCanonical",
        Err(PublicKeyError::SmallOrder) => "SmallOrder",
    }
}

fn public_key_vectors(f: &Fixture) -> Value {
    let mut cases: Vec<(String, [u8; 32], &str)> = Vec::new();
    let from_hex = |text: &str| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    };
    // The eight points of small order, canonically encoded.
    for (what, text) in [
        (
            "small order: the identity (0, 1), order 1",
            "0100000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "small order: (0, -1), order 2",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ),
        (
            "small order: (sqrt(-1), 0), order 4",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "small order: (-sqrt(-1), 0), order 4",
            "0000000000000000000000000000000000000000000000000000000000000080",
        ),
        (
            "small order: order 8",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        ),
        (
            "small order: order 8",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        ),
        (
            "small order: order 8",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        ),
        (
            "small order: order 8",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        ),
    ] {
        let bytes = from_hex(text);
        assert_eq!(
            check_public_key(&bytes),
            Err(PublicKeyError::SmallOrder),
            "{text}"
        );
        cases.push((what.to_owned(), bytes, "SmallOrder"));
    }
    // The sign bit set on a point whose x is 0.
    for (what, text) in [
        (
            "non-canonical: (0, 1) with the sign bit set",
            "0100000000000000000000000000000000000000000000000000000000000080",
        ),
        (
            "non-canonical: (0, -1) with the sign bit set",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
    ] {
        let bytes = from_hex(text);
        cases.push((
            what.to_owned(),
            bytes,
            verdict_name(check_public_key(&bytes)),
        ));
    }
    // Every y in [p, 2^255), the field prime p = 2^255 - 19, with either sign bit.
    for low in 0xedu8..=0xff {
        for sign in [0x7fu8, 0xff] {
            let mut bytes = [0xffu8; 32];
            bytes[0] = low;
            bytes[31] = sign;
            let what = format!(
                "y = p + {}{}",
                low - 0xed,
                if sign == 0xff { ", sign bit set" } else { "" }
            );
            cases.push((what, bytes, verdict_name(check_public_key(&bytes))));
        }
    }
    // Bytes that are not a point, and keys that are fine.
    let off_curve = (0u8..=255)
        .map(|b| [b; 32])
        .find(|raw| check_public_key(raw) == Err(PublicKeyError::NotOnCurve))
        .unwrap();
    cases.push((
        "not a point of the curve".to_owned(),
        off_curve,
        "NotOnCurve",
    ));
    for k in &f.keys {
        cases.push((format!("the {} key", k.name), k.key.account().0, "Ok"));
    }
    let verdicts: Vec<&str> = cases.iter().map(|(_, _, v)| *v).collect();
    for needed in ["SmallOrder", "NonCanonical", "NotOnCurve", "Ok"] {
        assert!(verdicts.contains(&needed), "{needed}");
    }
    cases
        .into_iter()
        .map(|(what, bytes, verdict)| {
            assert_eq!(verdict_name(check_public_key(&bytes)), verdict, "{what}");
            json!({ "what": what, "public_key": hx(&bytes), "verdict": verdict })
        })
        .collect()
}

fn tx_error_name(error: &TxError) -> (&'static str, u32, &'static str) {
    match error {
        TxError::Oversized { .. } => ("Oversized", 1, "TxTooLarge"),
        TxError::Malformed(_) => ("Malformed", 2, "TxMalformed"),
        TxError::SignerLength(_) => ("SignerLength", 2, "TxMalformed"),
        TxError::SignerInvalid(_) => ("SignerInvalid", 3, "InvalidSigner"),
        TxError::SignatureLength(_) => ("SignatureLength", 2, "TxMalformed"),
        TxError::BadSignature(_) => ("BadSignature", 4, "InvalidSignature"),
        TxError::BodyMalformed(_) => ("BodyMalformed", 2, "TxMalformed"),
        TxError::NonCanonical { .. } => ("NonCanonical", 31, "TxNotCanonical"),
        TxError::MissingMessage => ("MissingMessage", 2, "TxMalformed"),
    }
}

/// A refused transaction: name, what is wrong, body, signer, signature,
/// and the message the signer actually signed when it is not the digest.
type Rejected = (
    &'static str,
    &'static str,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
);

fn rejection_vectors(f: &Fixture) -> Value {
    let key = &f.keys[0];
    let (_, _, canonical) = base_body(f);
    let digest = sign_bytes(&canonical);
    let good = key.key.sign(&digest);
    let envelope = |body: &[u8], signer: &[u8], signature: &[u8]| {
        pb::Tx {
            body: body.to_vec(),
            signer: signer.to_vec(),
            signature: signature.to_vec(),
        }
        .encode_to_vec()
    };
    let account = key.key.account().0;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut forged = [0u8; 64];
    forged[0] = 1;
    let mut flipped = good;
    flipped[0] ^= 1;
    let no_message = pb::TxBody {
        chain_id: CHAIN_ID.into(),
        nonce: 7,
        fee: 0,
        msg: None,
    }
    .encode_to_vec();
    let wrong_wire_type = [field_bytes(1, CHAIN_ID.as_bytes()), field_bytes(2, &[7])].concat();
    let cases: Vec<Rejected> = vec![
        (
            "small_order_signer",
            "signer = the identity point, signature R = identity, S = 0: ZIP-215 accepts it on \
             every message, so the chain refuses the key itself",
            canonical.clone(),
            identity.to_vec(),
            forged.to_vec(),
            None,
        ),
        (
            "signed_the_body_not_its_digest",
            "the signature is over the body bytes, not over H(\"compute/tx/v1\", body)",
            canonical.clone(),
            account.to_vec(),
            key.key.sign(&canonical).to_vec(),
            Some(canonical.clone()),
        ),
        (
            "signed_untagged_sha3",
            "the signature is over sha3_256(body), without the tag and its 0x00",
            canonical.clone(),
            account.to_vec(),
            key.key.sign(&sha3_256(&canonical)).to_vec(),
            Some(sha3_256(&canonical).to_vec()),
        ),
        (
            "signature_bit_flipped",
            "the first bit of a good signature flipped",
            canonical.clone(),
            account.to_vec(),
            flipped.to_vec(),
            None,
        ),
        (
            "signer_31_bytes",
            "a signer that is not 32 bytes",
            canonical.clone(),
            account[..31].to_vec(),
            good.to_vec(),
            None,
        ),
        (
            "signature_63_bytes",
            "a signature that is not 64 bytes",
            canonical.clone(),
            account.to_vec(),
            good[..63].to_vec(),
            None,
        ),
        (
            "no_message",
            "a body without a message",
            no_message.clone(),
            account.to_vec(),
            key.key.sign(&sign_bytes(&no_message)).to_vec(),
            Some(sign_bytes(&no_message).to_vec()),
        ),
        (
            "wrong_wire_type",
            "the nonce (a varint) written length-delimited: not a TxBody at all",
            wrong_wire_type.clone(),
            account.to_vec(),
            key.key.sign(&sign_bytes(&wrong_wire_type)).to_vec(),
            Some(sign_bytes(&wrong_wire_type).to_vec()),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, what, body, signer, signature, signed_message)| {
            let tx = envelope(&body, &signer, &signature);
            let error = SignedTx::decode(&tx, MAX_TX)
                .and_then(|decoded| decoded.verify())
                .expect_err(name);
            let (error_name, code, code_name) = tx_error_name(&error);
            let mut value = json!({
                "name": name,
                "what": what,
                "body_hex": hx(&body),
                "signer_public_key": hx(&signer),
                "signature": hx(&signature),
                "tx_hex": hx(&tx),
                "expected": { "error": error_name, "code": code, "code_name": code_name },
            });
            if let TxError::SignerInvalid(reason) = error {
                value["expected"]["reason"] = json!(verdict_name(Err(reason)));
            }
            if let Some(message) = signed_message {
                value["signer"] = json!(key.name);
                value["signed_message"] = hx(&message);
            }
            value
        })
        .collect()
}

/// One signed upload: who signs, the blob, the expiry, and how much of the
/// blob (and whether its hash) the first chunk carries.
struct UploadCase {
    name: &'static str,
    what: &'static str,
    key: usize,
    blob: Vec<u8>,
    expires: u64,
    first_chunk_bytes: usize,
    names_hash: bool,
}

fn upload_vectors(f: &Fixture) -> Value {
    let input = job_input();
    let cases = [
        UploadCase {
            name: "empty_blob_never_expires",
            what: "an empty blob (size 0, left out of the encoding) with the largest expiry, \
                   2^64 - 1 (a gateway refuses it as too far ahead: encoding only); the first \
                   and only chunk names the hash and has no data",
            key: 0,
            blob: Vec::new(),
            expires: u64::MAX,
            first_chunk_bytes: 0,
            names_hash: true,
        },
        UploadCase {
            name: "task_input",
            what: "a task's input uploaded by its requester, expiring at 1700000600 (600 s \
                   after 1700000000, as clients sign); the one chunk names the hash and \
                   carries every byte",
            key: 0,
            blob: input.clone(),
            expires: 1_700_000_600,
            first_chunk_bytes: input.len(),
            names_hash: true,
        },
        UploadCase {
            name: "in_chunks_hash_not_named",
            what: "the same bytes uploaded by another account (worker_a) in 32-byte chunks, \
                   expiring at 2^53 + 1 (parse it as a 64-bit integer); the first chunk \
                   carries the header and the first 32 bytes, and leaves its optional hash out",
            key: 1,
            blob: input,
            expires: (1 << 53) + 1,
            first_chunk_bytes: 32,
            names_hash: false,
        },
    ];
    cases
        .into_iter()
        .map(|c| {
            let key = &f.keys[c.key];
            let uploader = key.key.account();
            let hash = BlobId::of(&c.blob);
            let size = c.blob.len() as u64;
            let header = sign_upload(&key.key, &hash, size, c.expires);
            let digest = upload_sign_bytes(&uploader, &hash, size, c.expires);
            let preimage = [
                Tag::Upload.as_str().as_bytes(),
                &[0],
                &uploader.0,
                &hash.0,
                &size.to_be_bytes(),
                &c.expires.to_be_bytes(),
            ]
            .concat();
            assert_eq!(digest, sha3_256(&preimage));
            assert_eq!(header.signature, key.key.sign(&digest).to_vec());
            let verified = VerifiedUpload::verify(&header).unwrap();
            assert_eq!(
                (
                    verified.uploader,
                    verified.hash,
                    verified.size,
                    verified.expires
                ),
                (uploader, hash, size, c.expires)
            );
            let chunk = pb::BlobChunk {
                hash: if c.names_hash {
                    hash.0.to_vec()
                } else {
                    Vec::new()
                },
                data: c.blob[..c.first_chunk_bytes].to_vec(),
                upload: Some(header.clone()),
            };
            let header_bytes = header.encode_to_vec();
            let chunk_bytes = chunk.encode_to_vec();
            assert_eq!(
                pb::UploadHeader::decode(header_bytes.as_slice()).unwrap(),
                header
            );
            assert_eq!(
                pb::BlobChunk::decode(chunk_bytes.as_slice()).unwrap(),
                chunk
            );
            json!({
                "name": c.name,
                "what": c.what,
                "uploader": key.name,
                "blob": hx(&c.blob),
                "header": {
                    "uploader": hx(&header.uploader),
                    "hash": hx(&header.hash),
                    "size": header.size,
                    "expires": header.expires,
                    "signature": hx(&header.signature),
                },
                "size_be": hx(&size.to_be_bytes()),
                "expires_be": hx(&c.expires.to_be_bytes()),
                "preimage": hx(&preimage),
                "digest": hx(&digest),
                "upload_header_hex": hx(&header_bytes),
                "first_chunk": { "hash": hx(&chunk.hash), "data": hx(&chunk.data) },
                "first_chunk_hex": hx(&chunk_bytes),
            })
        })
        .collect()
}

fn build() -> Value {
    let f = fixture();
    let tags: Vec<&str> = TAGS.iter().map(|t| t.as_str()).collect();
    json!({
        "about": "Golden vectors of the compute wire protocol (docs/PROTOCOL.md). Generated by \
                  proto/tests/golden_vectors_hold.rs; checked by it and by \
                  scripts/check-vectors.py. Bytes are lowercase hex unless named *_base64; \
                  integers are JSON numbers and some exceed 2^53: parse them as 64-bit integers.",
        "chain_id": CHAIN_ID,
        "tags": tags,
        "keys": key_vectors(&f.keys),
        "hashes": hash_vectors(&f),
        "ids": id_vectors(&f),
        "commitments": commitment_vectors(&f),
        "assignment_seeds": assignment_vectors(&f),
        "result_hashes": result_hash_vectors(&f),
        "transactions": transaction_vectors(&f),
        "non_canonical": non_canonical_vectors(&f),
        "public_keys": {
            "about": "check_public_key verdicts; a refused key is code 3 (InvalidSigner) as a \
                      signer, code 10 (InvalidMessage) as a transfer's recipient, and refuses \
                      a whole genesis",
            "vectors": public_key_vectors(&f),
        },
        "rejections": rejection_vectors(&f),
        "uploads": {
            "about": "Signed blob upload headers (UploadHeader, gateway.proto) and the first \
                      PutBlob chunk (BlobChunk) that carries each: the header is field 3 of \
                      the first chunk; `hash` on that chunk is optional and, when present, \
                      equals the header's. The signature is pure ed25519 by the uploader over \
                      H(\"compute/upload/v1\", uploader, hash, size u64 BE, expires u64 BE)",
            "vectors": upload_vectors(&f),
        },
    })
}
