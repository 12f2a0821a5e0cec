//! Snapshots end to end through the ABCI layer over the in-memory store:
//! a chain takes snapshots, a fresh node restores one and agrees with the
//! original; hostile snapshots and chunks are refused without a panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_proto::{pb, SigningKey, TxBuilder};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::response_apply_snapshot_chunk::Result as Chunk;
use tendermint_proto::v0_38::abci::response_offer_snapshot::Result as Offer;
use tendermint_proto::v0_38::abci::{
    RequestApplySnapshotChunk, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestLoadSnapshotChunk, RequestOfferSnapshot, RequestQuery, ResponseApplySnapshotChunk,
    Snapshot, ValidatorUpdate,
};
use tendermint_proto::v0_38::crypto::{public_key::Sum, PublicKey};

use compute_abci::abci::AbciApp;
use compute_abci::snapshot::format::{self, Metadata};
use compute_abci::snapshot::{Applied, ChunkError, Restore, SnapshotConfig, Snapshots};
use compute_abci::store::{Delta, MemStore, Store};
use compute_abci::App;

const CHAIN: &str = "snap";

fn alice() -> SigningKey {
    SigningKey::from_seed([1; 32])
}

fn bob() -> SigningKey {
    SigningKey::from_seed([2; 32])
}

fn validator() -> SigningKey {
    SigningKey::from_seed([9; 32])
}

/// A node over memory; with snapshots every `interval` blocks into `dir`
/// when given.
fn node(snapshots: Option<&Arc<Snapshots>>) -> AbciApp<MemStore> {
    let app = AbciApp::new(App::new(MemStore::new()));
    match snapshots {
        Some(s) => app.with_snapshots(Arc::clone(s)),
        None => app,
    }
}

fn snapshots(dir: &std::path::Path, interval_blocks: u64, keep: u32) -> Arc<Snapshots> {
    Snapshots::open(SnapshotConfig {
        dir: dir.to_owned(),
        interval_blocks,
        keep,
    })
    .unwrap()
}

fn genesis(app: &AbciApp<MemStore>) {
    let app_state = format!(
        r#"{{"accounts":[{{"address":"{}","balance":1000000}},{{"address":"{}","balance":500}}]}}"#,
        alice().account(),
        bob().account()
    );
    app.init_chain(RequestInitChain {
        chain_id: CHAIN.into(),
        initial_height: 1,
        app_state_bytes: app_state.into_bytes().into(),
        validators: vec![ValidatorUpdate {
            pub_key: Some(PublicKey {
                sum: Some(Sum::Ed25519(validator().account().0.to_vec())),
            }),
            power: 10,
        }],
        ..Default::default()
    });
}

/// The transactions of block `height`: a transfer from alice in most.
fn txs(height: i64) -> Vec<Vec<u8>> {
    if height % 3 == 0 {
        return Vec::new();
    }
    // Alice sends in every block that is not a multiple of 3: her nonce is
    // the count of such blocks before this one.
    let nonce = (1..height).filter(|h| h % 3 != 0).count() as u64;
    let transfer = pb::tx_body::Msg::Transfer(pb::Transfer {
        to: bob().account().0.to_vec(),
        amount: u64::try_from(height).unwrap().saturating_mul(10),
    });
    vec![TxBuilder::new(CHAIN).sign(&alice(), nonce, transfer)]
}

/// Finalizes and commits block `height`; returns its app hash.
fn block(app: &AbciApp<MemStore>, height: i64) -> Vec<u8> {
    let response = app.finalize_block(RequestFinalizeBlock {
        txs: txs(height).into_iter().map(Into::into).collect(),
        height,
        hash: vec![u8::try_from(height % 256).unwrap(); 32].into(),
        proposer_address: compute_abci::app::validator_address(&validator().account().0)
            .to_vec()
            .into(),
        ..Default::default()
    });
    for result in &response.tx_results {
        assert_eq!(result.code, 0, "block {height}: {}", result.log);
    }
    app.commit();
    response.app_hash.to_vec()
}

fn info(app: &AbciApp<MemStore>) -> (i64, Vec<u8>) {
    let info = app.info(RequestInfo::default());
    (info.last_block_height, info.last_block_app_hash.to_vec())
}

fn query(app: &AbciApp<MemStore>, path: &str) -> (u32, i64, Vec<u8>) {
    let answer = app.query(RequestQuery {
        path: path.to_owned(),
        ..Default::default()
    });
    (answer.code, answer.height, answer.value.to_vec())
}

fn wait_idle(snapshots: &Snapshots) {
    let deadline = Instant::now().checked_add(Duration::from_secs(60)).unwrap();
    while !snapshots.idle() {
        assert!(
            Instant::now() < deadline,
            "the snapshot writer never finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A chain of `blocks` blocks with snapshots every 5 (keeping 2); returns
/// the node, its snapshots, and the app hash after each height (index 0
/// is height 1).
fn chain(dir: &std::path::Path, blocks: i64) -> (AbciApp<MemStore>, Arc<Snapshots>, Vec<Vec<u8>>) {
    let snapshots = snapshots(dir, 5, 2);
    let app = node(Some(&snapshots));
    genesis(&app);
    let mut hashes = Vec::new();
    for height in 1..=blocks {
        hashes.push(block(&app, height));
        // One snapshot at a time; waiting keeps every due one.
        wait_idle(&snapshots);
    }
    (app, snapshots, hashes)
}

fn offer(app: &AbciApp<MemStore>, snapshot: Snapshot, app_hash: &[u8]) -> Offer {
    let result = app
        .offer_snapshot(RequestOfferSnapshot {
            snapshot: Some(snapshot),
            app_hash: app_hash.to_vec().into(),
        })
        .result;
    Offer::try_from(result).unwrap()
}

fn apply(app: &AbciApp<MemStore>, index: u32, chunk: &[u8]) -> ResponseApplySnapshotChunk {
    app.apply_snapshot_chunk(RequestApplySnapshotChunk {
        index,
        chunk: chunk.to_vec().into(),
        sender: "peer-a".into(),
    })
}

fn result(response: &ResponseApplySnapshotChunk) -> Chunk {
    Chunk::try_from(response.result).unwrap()
}

fn load(app: &AbciApp<MemStore>, height: u64, index: u32) -> Vec<u8> {
    app.load_snapshot_chunk(RequestLoadSnapshotChunk {
        height,
        format: format::FORMAT,
        chunk: index,
    })
    .chunk
    .to_vec()
}

#[test]
fn a_fresh_node_restores_a_snapshot_and_agrees_with_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (original, snapshots, hashes) = chain(dir.path(), 12);
    // Snapshots of 5 and 10, newest first; none of 12 (not due).
    let listed = original.list_snapshots().snapshots;
    let heights: Vec<u64> = listed.iter().map(|s| s.height).collect();
    assert_eq!(heights, [10, 5]);
    assert!(dir.path().join("10/metadata").is_file());
    assert!(dir.path().join("10/chunk-000000").is_file());
    let snapshot = listed[0].clone();
    assert_eq!(
        snapshot.hash.to_vec(),
        format::sha256(&snapshot.metadata).to_vec()
    );
    let meta = Metadata::decode(&snapshot.metadata).unwrap();
    assert_eq!(
        meta.app_hash.to_vec(),
        hashes[9],
        "the app hash after height 10"
    );

    // A second replica, run to height 10 without snapshots, to continue
    // from the same state as the restored node.
    let replica = node(None);
    genesis(&replica);
    for height in 1..=10 {
        block(&replica, height);
    }

    let fresh = node(None);
    assert_eq!(info(&fresh), (0, Vec::new()));
    assert_eq!(offer(&fresh, snapshot.clone(), &hashes[9]), Offer::Accept);
    for index in 0..snapshot.chunks {
        let chunk = load(&original, 10, index);
        assert!(!chunk.is_empty());
        assert_eq!(result(&apply(&fresh, index, &chunk)), Chunk::Accept);
    }
    // Info reports the snapshot's height and app hash.
    assert_eq!(info(&fresh), (10, hashes[9].clone()));
    // Queries answer as on a replica at height 10.
    for path in [
        format!("/account/{}", alice().account()),
        format!("/account/{}", bob().account()),
        format!("/nonce/{}", alice().account()),
        "/stats".to_owned(),
        "/params".to_owned(),
        "/validators".to_owned(),
    ] {
        let restored = query(&fresh, &path);
        assert_eq!(restored.0, 0, "{path}");
        assert_eq!(restored, query(&replica, &path), "{path}");
    }
    // The next blocks give the same app hashes as on the replica and the
    // original.
    assert_eq!(block(&fresh, 11), hashes[10]);
    assert_eq!(block(&replica, 11), hashes[10]);
    assert_eq!(block(&fresh, 12), hashes[11]);
    assert_eq!(
        query(&fresh, &format!("/account/{}", bob().account())),
        query(&original, &format!("/account/{}", bob().account()))
    );
    assert!(snapshots.idle());
}

#[test]
fn snapshots_are_pruned_to_the_newest_and_leftovers_deleted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".tmp-99")).unwrap();
    let (app, snapshots, _) = chain(dir.path(), 21);
    assert!(
        !dir.path().join(".tmp-99").exists(),
        "a half-written snapshot is deleted"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["15", "20"]);
    // Unknown heights, formats and indexes load nothing.
    assert!(load(&app, 5, 0).is_empty());
    assert!(load(&app, 20, 1).is_empty());
    assert!(app
        .load_snapshot_chunk(RequestLoadSnapshotChunk {
            height: 20,
            format: 2,
            chunk: 0
        })
        .chunk
        .is_empty());
    assert!(snapshots.idle());
}

/// A chain's newest snapshot, its chunks and the app hash it is for.
struct Fixture {
    _dir: tempfile::TempDir,
    original: AbciApp<MemStore>,
    snapshot: Snapshot,
    chunks: Vec<Vec<u8>>,
    app_hash: Vec<u8>,
    older: Snapshot,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (original, _snapshots, hashes) = chain(dir.path(), 10);
    let listed = original.list_snapshots().snapshots;
    let snapshot = listed[0].clone();
    let chunks = (0..snapshot.chunks)
        .map(|i| load(&original, snapshot.height, i))
        .collect();
    Fixture {
        _dir: dir,
        snapshot,
        chunks,
        app_hash: hashes[9].clone(),
        older: listed[1].clone(),
        original,
    }
}

/// A snapshot of the given chunks that an attacker made up, naming the
/// trusted app hash: its metadata and hashes are consistent.
fn forged(height: u64, app_hash: &[u8], chunks: &[Vec<u8>], entries: u64) -> Snapshot {
    let meta = Metadata {
        height,
        app_hash: app_hash.try_into().unwrap(),
        entries,
        bytes: chunks.iter().map(|c| c.len() as u64).sum(),
        chunk_hashes: chunks.iter().map(|c| format::sha256(c)).collect(),
    };
    let raw = meta.encode();
    Snapshot {
        height,
        format: format::FORMAT,
        chunks: meta.chunks(),
        hash: format::sha256(&raw).to_vec().into(),
        metadata: raw.into(),
    }
}

/// The entries of the fixture's snapshot.
fn entries(fixture: &Fixture) -> Vec<(Vec<u8>, Vec<u8>)> {
    fixture
        .chunks
        .iter()
        .flat_map(|c| {
            format::parse_chunk(c)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn encode(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut chunk = Vec::new();
    for (k, v) in entries {
        format::push_entry(&mut chunk, k, v);
    }
    chunk
}

#[test]
fn a_flipped_byte_or_a_chunk_of_another_snapshot_is_fetched_again_from_another_peer() {
    let f = fixture();
    let fresh = node(None);
    assert_eq!(
        offer(&fresh, f.snapshot.clone(), &f.app_hash),
        Offer::Accept
    );
    let mut flipped = f.chunks[0].clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let older_chunk = load(&f.original, f.older.height, 0);
    for bad in [flipped, older_chunk, Vec::new()] {
        let answer = apply(&fresh, 0, &bad);
        assert_eq!(result(&answer), Chunk::Retry);
        assert_eq!(answer.refetch_chunks, [0]);
        assert_eq!(answer.reject_senders, ["peer-a"]);
    }
    assert_eq!(info(&fresh).0, 0, "nothing was written");
    // The good copy is then accepted, and the restore completes.
    for (index, chunk) in f.chunks.iter().enumerate() {
        let index = u32::try_from(index).unwrap();
        assert_eq!(result(&apply(&fresh, index, chunk)), Chunk::Accept);
    }
    assert_eq!(info(&fresh), (10, f.app_hash.clone()));
    // A node with state refuses any further snapshot.
    assert_eq!(
        offer(&fresh, f.snapshot.clone(), &f.app_hash),
        Offer::Reject
    );
}

#[test]
fn offers_that_disagree_with_the_verified_app_hash_or_their_metadata_are_rejected() {
    let f = fixture();
    let fresh = node(None);
    let other_hash = vec![0xab; 32];
    assert_eq!(
        offer(&fresh, f.snapshot.clone(), &other_hash),
        Offer::Reject
    );
    // The app hash of another height.
    assert_eq!(offer(&fresh, f.older.clone(), &f.app_hash), Offer::Reject);
    let mut wrong_count = f.snapshot.clone();
    wrong_count.chunks += 1;
    assert_eq!(offer(&fresh, wrong_count, &f.app_hash), Offer::Reject);
    let mut wrong_height = f.snapshot.clone();
    wrong_height.height += 1;
    assert_eq!(offer(&fresh, wrong_height, &f.app_hash), Offer::Reject);
    let mut wrong_hash = f.snapshot.clone();
    wrong_hash.hash = vec![0; 32].into();
    assert_eq!(offer(&fresh, wrong_hash, &f.app_hash), Offer::Reject);
    let mut bad_metadata = f.snapshot.clone();
    let mut raw = bad_metadata.metadata.to_vec();
    raw.truncate(raw.len() - 1);
    bad_metadata.hash = format::sha256(&raw).to_vec().into();
    bad_metadata.metadata = raw.into();
    assert_eq!(offer(&fresh, bad_metadata, &f.app_hash), Offer::Reject);
    let mut other_format = f.snapshot.clone();
    other_format.format = 2;
    assert_eq!(
        offer(&fresh, other_format, &f.app_hash),
        Offer::RejectFormat
    );
    assert_eq!(
        Offer::try_from(fresh.offer_snapshot(RequestOfferSnapshot::default()).result).unwrap(),
        Offer::Reject
    );
    // A chunk without an accepted offer.
    assert_eq!(
        result(&apply(&fresh, 0, &f.chunks[0])),
        Chunk::RejectSnapshot
    );
    assert_eq!(info(&fresh).0, 0);
}

#[test]
fn chunks_with_keys_out_of_order_or_tree_keys_are_refused() {
    let f = fixture();
    let good = entries(&f);
    let count = good.len() as u64;
    let mut swapped = good.clone();
    swapped.swap(0, 1);
    let mut duplicated = good.clone();
    duplicated[1].0 = duplicated[0].0.clone();
    let mut tree_key = good.clone();
    tree_key.push((compute_abci::tree::base_key(), 7u64.to_be_bytes().to_vec()));
    let mut local_key = good.clone();
    local_key.push((b"\xffmeta/commit_info".to_vec(), Vec::new()));
    for (what, bad) in [
        ("swapped", swapped),
        ("duplicated", duplicated),
        ("tree key", tree_key),
        ("local key", local_key),
    ] {
        let chunk = encode(&bad);
        let snapshot = forged(
            10,
            &f.app_hash,
            std::slice::from_ref(&chunk),
            bad.len() as u64,
        );
        let fresh = node(None);
        assert_eq!(
            offer(&fresh, snapshot, &f.app_hash),
            Offer::Accept,
            "{what}"
        );
        let answer = apply(&fresh, 0, &chunk);
        assert_eq!(result(&answer), Chunk::Retry, "{what}");
        assert_eq!(answer.refetch_chunks, [0], "{what}");
        assert_eq!(info(&fresh).0, 0, "{what}");
    }
    // Keys out of order across two chunks.
    let (first, second) = good.split_at(good.len() / 2);
    let chunks = [encode(second), encode(first)];
    let fresh = node(None);
    assert_eq!(
        offer(&fresh, forged(10, &f.app_hash, &chunks, count), &f.app_hash),
        Offer::Accept
    );
    assert_eq!(result(&apply(&fresh, 0, &chunks[0])), Chunk::Accept);
    assert_eq!(result(&apply(&fresh, 1, &chunks[1])), Chunk::Retry);
    // The same entries in order restore.
    let chunks = [encode(first), encode(second)];
    assert_eq!(
        offer(&fresh, forged(10, &f.app_hash, &chunks, count), &f.app_hash),
        Offer::Accept
    );
    assert_eq!(result(&apply(&fresh, 0, &chunks[0])), Chunk::Accept);
    assert_eq!(result(&apply(&fresh, 1, &chunks[1])), Chunk::Accept);
    assert_eq!(info(&fresh), (10, f.app_hash.clone()));
}

#[test]
fn a_state_that_does_not_hash_to_the_verified_app_hash_is_never_written() {
    let f = fixture();
    // Well-formed, consistent with its metadata, but one balance is
    // changed: only the root tells.
    let mut lying = entries(&f);
    let account = compute_abci::state::keys::account(&bob().account());
    let slot = lying.iter_mut().find(|(k, _)| *k == account).unwrap();
    slot.1 = prost::Message::encode_to_vec(&pb::Account {
        balance: u64::MAX / 2,
        nonce: 0,
    });
    let chunk = encode(&lying);
    let fresh = node(None);
    let snapshot = forged(
        10,
        &f.app_hash,
        std::slice::from_ref(&chunk),
        lying.len() as u64,
    );
    assert_eq!(offer(&fresh, snapshot, &f.app_hash), Offer::Accept);
    assert_eq!(result(&apply(&fresh, 0, &chunk)), Chunk::RejectSnapshot);
    assert_eq!(info(&fresh), (0, Vec::new()), "nothing was written");
    // Entries fewer than the metadata names.
    let short = encode(&entries(&f));
    let snapshot = forged(10, &f.app_hash, std::slice::from_ref(&short), 1_000);
    assert_eq!(offer(&fresh, snapshot, &f.app_hash), Offer::Accept);
    assert_eq!(result(&apply(&fresh, 0, &short)), Chunk::RejectSnapshot);
    // The honest snapshot still restores afterwards.
    assert_eq!(
        offer(&fresh, f.snapshot.clone(), &f.app_hash),
        Offer::Accept
    );
    for (index, chunk) in f.chunks.iter().enumerate() {
        let index = u32::try_from(index).unwrap();
        assert_eq!(result(&apply(&fresh, index, chunk)), Chunk::Accept);
    }
    assert_eq!(info(&fresh), (10, f.app_hash.clone()));
}

#[test]
fn a_peer_that_keeps_sending_bad_chunks_gets_the_snapshot_given_up() {
    let f = fixture();
    let fresh = node(None);
    assert_eq!(
        offer(&fresh, f.snapshot.clone(), &f.app_hash),
        Offer::Accept
    );
    let mut answers = Vec::new();
    for _ in 0..=compute_abci::snapshot::restore::CHUNK_REFUSALS_MAX {
        answers.push(result(&apply(&fresh, 0, b"garbage")));
    }
    assert!(answers[..answers.len() - 1]
        .iter()
        .all(|a| *a == Chunk::Retry));
    assert_eq!(answers.last(), Some(&Chunk::RejectSnapshot));
    // Given up: no restore in progress.
    assert_eq!(
        result(&apply(&fresh, 0, &f.chunks[0])),
        Chunk::RejectSnapshot
    );
}

#[test]
fn random_offers_and_chunks_never_panic() {
    let f = fixture();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let fresh = node(None);
    for round in 0..300u32 {
        let mut metadata = f.snapshot.metadata.to_vec();
        let mut chunk = f.chunks[0].clone();
        // Flip, cut or extend at random.
        match rng.next_u32() % 4 {
            0 => {
                let i = rng.next_u32() as usize % metadata.len();
                metadata[i] ^= 1 << (rng.next_u32() % 8);
            }
            1 => metadata.truncate(rng.next_u32() as usize % metadata.len()),
            2 => {
                let i = rng.next_u32() as usize % chunk.len();
                chunk[i] ^= 1 << (rng.next_u32() % 8);
            }
            _ => chunk.truncate(rng.next_u32() as usize % chunk.len()),
        }
        let snapshot = Snapshot {
            height: f.snapshot.height,
            format: format::FORMAT,
            chunks: 1,
            hash: format::sha256(&metadata).to_vec().into(),
            metadata: metadata.clone().into(),
        };
        let _ = offer(&fresh, snapshot, &f.app_hash);
        let _ = apply(&fresh, rng.next_u32() % 3, &chunk);
        // A snapshot made of this chunk: accepted or not, never a panic.
        let _ = offer(
            &fresh,
            forged(10, &f.app_hash, std::slice::from_ref(&chunk), 5),
            &f.app_hash,
        );
        let answer = apply(&fresh, 0, &chunk);
        assert_ne!(
            result(&answer),
            Chunk::Accept,
            "round {round}: a mangled chunk restored"
        );
    }
    assert_eq!(info(&fresh), (0, Vec::new()));
}

#[test]
fn a_state_larger_than_a_chunk_is_cut_into_chunks_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = snapshots(dir.path(), 1, 1);
    let store = MemStore::new();
    let mut state = Delta::new();
    // Three values of 3 MiB: one a chunk; and small ones between.
    for i in 0..3u8 {
        state.put(vec![b'b', i], vec![i; 3 * 1024 * 1024]);
        state.put(vec![b'a', i], vec![i; 10]);
        state.put(vec![b'c', i], Vec::new());
    }
    let (root, tree) = compute_abci::tree::apply(&store, &state, 0);
    let mut writes = state.clone();
    writes.merge(tree);
    store.commit(
        &writes,
        &pb::CommitInfo {
            height: 3,
            app_hash: root.to_vec(),
        },
    );
    let meta = snapshots.write(&store, 3, root).unwrap().unwrap();
    assert_eq!(meta.entries, 9);
    assert!(meta.chunks() >= 3, "{} chunks", meta.chunks());
    // Written again: it exists already.
    assert_eq!(snapshots.write(&store, 3, root).unwrap(), None);
    let listed = snapshots.list();
    assert_eq!(listed.len(), 1);
    let raw = &listed[0].metadata;
    let mut restore = Restore::offer(
        3,
        format::FORMAT,
        meta.chunks(),
        &format::sha256(raw),
        raw,
        &root,
    )
    .unwrap();
    for index in 0..meta.chunks() {
        let chunk = snapshots.load_chunk(3, format::FORMAT, index);
        assert!(chunk.len() <= format::CHUNK_BYTES_TARGET);
        let applied = restore.apply(index, &chunk).unwrap();
        // Delivered again: nothing changes.
        assert_eq!(restore.apply(index, &chunk).unwrap(), Applied::Again);
        let last = index + 1 == meta.chunks();
        assert_eq!(
            applied,
            if last {
                Applied::Complete
            } else {
                Applied::Staged
            }
        );
    }
    assert_eq!(restore.into_state(), state);
    // A chunk index beyond the snapshot, or one ahead of the next, gives
    // the snapshot up.
    let mut restore = Restore::offer(
        3,
        format::FORMAT,
        meta.chunks(),
        &format::sha256(raw),
        raw,
        &root,
    )
    .unwrap();
    assert!(matches!(
        restore.apply(meta.chunks(), b""),
        Err(ChunkError::Snapshot(_))
    ));
    assert!(matches!(
        restore.apply(1, b""),
        Err(ChunkError::Snapshot(_))
    ));
}
