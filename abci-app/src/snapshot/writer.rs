//! Taking, keeping and serving snapshots on disk.
//!
//! Layout under the snapshot directory (`<home>/snapshots`):
//!
//! ```text
//! <height>/metadata          the metadata record (format.rs)
//! <height>/chunk-000000 ...  the chunks, numbered from 0
//! .tmp-<height>/             a snapshot being written or deleted
//! ```
//!
//! A snapshot is written into `.tmp-<height>` and renamed to `<height>`
//! once every file is synced, so a directory named by a height is always
//! complete; an old one is renamed back before it is deleted. Leftover
//! temporary directories (a crash mid-write or mid-delete) are deleted
//! when the node starts.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::{KvRead, Store};
use crate::tree::TREE_PREFIX;

use super::format::{
    self, Metadata, CHUNKS_MAX, CHUNK_BYTES_MAX, CHUNK_BYTES_TARGET, KEY_BYTES_MAX,
    METADATA_BYTES_MAX, RESTORE_BYTES_MAX,
};

/// Entries read from the store per scan while writing: small, because a
/// value may be as large as a transaction.
const SCAN_PAGE_ENTRIES: usize = 32;
/// How long Commit waits for the writer thread to open its view of the
/// commit (a RocksDB snapshot: microseconds).
const VIEW_WAIT: Duration = Duration::from_secs(10);
/// The most directory entries looked at when listing or pruning.
const DIR_ENTRIES_MAX: usize = 10_000;
/// The most metadata bytes one `ListSnapshots` answer carries (CometBFT
/// reads ABCI responses of up to 100 MB, and asks for the newest 10); the
/// newest snapshot is always listed.
const LIST_METADATA_BYTES_MAX: usize = 32 * 1024 * 1024;
/// The name of the metadata file in a snapshot's directory.
const METADATA_FILE: &str = "metadata";
/// The prefix of a directory being written.
const TMP_PREFIX: &str = ".tmp-";

/// Why a snapshot could not be written or its directory opened.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error("snapshot I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The state cannot be put into a snapshot within the bounds.
    #[error("the state cannot be snapshotted: {0}")]
    TooLarge(String),
    /// The view is not of the height asked for, or holds no app hash.
    #[error("the store no longer shows height {0}: a later commit came first")]
    Moved(u64),
    /// There is no state to snapshot.
    #[error("the state is empty: nothing to snapshot")]
    Empty,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where and how often snapshots are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// The directory holding one subdirectory per snapshot.
    pub dir: PathBuf,
    /// A snapshot after the commit of every height divisible by this; 0
    /// takes none (the node still serves and restores).
    pub interval_blocks: u64,
    /// Snapshots kept (the newest); at least 1.
    pub keep: u32,
}

/// A published snapshot, as `ListSnapshots` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The height.
    pub height: u64,
    /// The number of chunks.
    pub chunks: u32,
    /// SHA-256 of the metadata.
    pub hash: [u8; 32],
    /// The metadata record.
    pub metadata: Vec<u8>,
}

/// The snapshots of one node: taken after commits on a background thread
/// (one at a time), pruned to the newest `keep`, listed and served from
/// files without the state machine's lock.
#[derive(Debug)]
pub struct Snapshots {
    config: SnapshotConfig,
    /// Whether a snapshot is being written.
    busy: Arc<AtomicBool>,
}

/// Clears the busy flag when the writer ends, however it ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Snapshots {
    /// Opens (creates) the snapshot directory and deletes snapshots that a
    /// crash left half written.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] when the directory cannot be created or read.
    pub fn open(config: SnapshotConfig) -> Result<Arc<Self>, SnapshotError> {
        let config = SnapshotConfig {
            keep: config.keep.max(1),
            ..config
        };
        fs::create_dir_all(&config.dir).map_err(io(&config.dir))?;
        let entries = fs::read_dir(&config.dir).map_err(io(&config.dir))?;
        for entry in entries.take(DIR_ENTRIES_MAX).flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(Arc::new(Self {
            config,
            busy: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// The configuration in force.
    pub fn config(&self) -> &SnapshotConfig {
        &self.config
    }

    /// Whether no snapshot is being written.
    pub fn idle(&self) -> bool {
        !self.busy.load(Ordering::Acquire)
    }

    /// Whether the commit of `height` is followed by a snapshot.
    pub fn due(&self, height: i64) -> bool {
        let interval = self.config.interval_blocks;
        interval > 0
            && u64::try_from(height)
                .ok()
                .and_then(|h| h.checked_rem(interval))
                == Some(0)
            && height > 0
    }

    /// After the commit of `height`: when a snapshot is due and none is
    /// being written, starts writing one of `store` on a thread of its own.
    /// Returns once that thread holds a consistent view of this commit, so
    /// the caller must call it before the next commit can start (the ABCI
    /// layer calls it under the state machine's lock). Failures are logged:
    /// a missed snapshot never stops the node.
    pub fn after_commit<S: Store>(self: &Arc<Self>, store: &Arc<S>, height: i64) {
        if !self.due(height) {
            return;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                height,
                "skipping the snapshot: the previous one is still being written"
            );
            return;
        }
        let busy = Busy(Arc::clone(&self.busy));
        let this = Arc::clone(self);
        let store = Arc::clone(store);
        let (opened, wait) = std::sync::mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let _busy = busy;
                let view = store.snapshot();
                let info = view.commit_info();
                // The view is open: later commits no longer change it.
                let _ = opened.send(());
                let started = Instant::now();
                let wanted = u64::try_from(height).unwrap_or(0);
                let app_hash = info
                    .filter(|i| i.height == height)
                    .and_then(|i| <[u8; 32]>::try_from(i.app_hash.as_slice()).ok());
                let result = match app_hash {
                    Some(app_hash) => this.write(view.as_ref(), wanted, app_hash),
                    None => Err(SnapshotError::Moved(wanted)),
                };
                drop(view);
                match result {
                    Ok(Some(meta)) => {
                        tracing::info!(
                            height,
                            chunks = meta.chunks(),
                            entries = meta.entries,
                            bytes = meta.bytes,
                            elapsed_ms =
                                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                            "snapshot written"
                        );
                        this.prune();
                    }
                    Ok(None) => tracing::debug!(height, "the snapshot exists already"),
                    Err(error) => tracing::warn!(height, %error, "snapshot not written"),
                }
            });
        match spawned {
            Ok(_) => {
                if wait.recv_timeout(VIEW_WAIT).is_err() {
                    tracing::warn!(height, "the snapshot thread did not open its view in time");
                }
            }
            // The closure, and with it the busy guard, was dropped.
            Err(error) => tracing::warn!(height, %error, "cannot start the snapshot thread"),
        }
    }

    fn final_dir(&self, height: u64) -> PathBuf {
        self.config.dir.join(height.to_string())
    }

    /// Writes a snapshot of `view` (the state after `height`, whose app
    /// hash is `app_hash`) and publishes it; `None` when one of that height
    /// exists already. Synchronous: [`Snapshots::after_commit`] runs it on
    /// its thread.
    ///
    /// # Errors
    /// [`SnapshotError`] on I/O failure, an empty state, or a state beyond
    /// the bounds of a snapshot (see `format.rs`).
    pub fn write(
        &self,
        view: &dyn KvRead,
        height: u64,
        app_hash: [u8; 32],
    ) -> Result<Option<Metadata>, SnapshotError> {
        let final_dir = self.final_dir(height);
        if final_dir.exists() {
            return Ok(None);
        }
        let tmp = self.config.dir.join(format!("{TMP_PREFIX}{height}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let written = write_chunks(view, &tmp, height, app_hash);
        let meta = match written {
            Ok(meta) => meta,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let encoded = meta.encode();
        write_synced(&tmp.join(METADATA_FILE), &encoded)?;
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&self.config.dir)?;
        Ok(Some(meta))
    }

    /// Published heights, newest first (at most [`DIR_ENTRIES_MAX`] looked at).
    fn heights(&self) -> Vec<u64> {
        let Ok(entries) = fs::read_dir(&self.config.dir) else {
            return Vec::new();
        };
        let mut heights: Vec<u64> = entries
            .take(DIR_ENTRIES_MAX)
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let height: u64 = name.parse().ok()?;
                // Only the canonical spelling, so no two names share a height.
                (height.to_string() == name).then_some(height)
            })
            .collect();
        heights.sort_unstable_by(|a, b| b.cmp(a));
        heights
    }

    /// Deletes all but the newest `keep` snapshots.
    pub fn prune(&self) {
        let keep = usize::try_from(self.config.keep).unwrap_or(usize::MAX);
        for height in self.heights().into_iter().skip(keep) {
            // Unpublished first (one rename), so that a crash mid-delete
            // leaves a temporary directory, deleted at the next start, and
            // never a listed snapshot that lacks chunks.
            let dir = self.config.dir.join(format!("{TMP_PREFIX}{height}"));
            if let Err(error) = fs::rename(self.final_dir(height), &dir) {
                tracing::warn!(height, %error, "cannot unpublish an old snapshot");
                continue;
            }
            match fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(height, "old snapshot deleted"),
                Err(error) => tracing::warn!(height, %error, "cannot delete an old snapshot"),
            }
        }
    }

    /// The published snapshots, newest first, at most `keep` and at most
    /// [`LIST_METADATA_BYTES_MAX`] of metadata (the newest always). One
    /// whose metadata cannot be read is left out.
    pub fn list(&self) -> Vec<Listed> {
        let keep = usize::try_from(self.config.keep).unwrap_or(usize::MAX);
        let mut listed = Vec::new();
        let mut bytes: usize = 0;
        for height in self.heights().into_iter().take(keep) {
            let path = self.final_dir(height).join(METADATA_FILE);
            let Some(metadata) = read_bounded(&path, METADATA_BYTES_MAX) else {
                continue;
            };
            let Ok(meta) = Metadata::decode(&metadata) else {
                continue;
            };
            if meta.height != height {
                continue;
            }
            bytes = bytes.saturating_add(metadata.len());
            if bytes > LIST_METADATA_BYTES_MAX && !listed.is_empty() {
                break;
            }
            listed.push(Listed {
                height,
                chunks: meta.chunks(),
                hash: format::sha256(&metadata),
                metadata,
            });
        }
        listed
    }

    /// Chunk `index` of the snapshot of `height` in `format`; empty when
    /// there is no such chunk (or it was pruned meanwhile).
    pub fn load_chunk(&self, height: u64, format: u32, index: u32) -> Vec<u8> {
        if format != format::FORMAT || index >= CHUNKS_MAX {
            return Vec::new();
        }
        let path = self.final_dir(height).join(chunk_name(index));
        read_bounded(&path, CHUNK_BYTES_MAX).unwrap_or_default()
    }
}

/// The file name of chunk `index`.
fn chunk_name(index: u32) -> String {
    format!("chunk-{index:06}")
}

/// Reads a file of at most `max` bytes; `None` when it is missing,
/// unreadable or larger.
fn read_bounded(path: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = fs::File::open(path).ok()?;
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut out).ok()?;
    (out.len() <= max).then_some(out)
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut file = fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Syncs a directory, so that a rename in it survives a power cut.
fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Streams every state entry of `view` (keys before the tree's `0xfe`), in
/// key order, into chunk files in `dir`; returns the metadata.
fn write_chunks(
    view: &dyn KvRead,
    dir: &Path,
    height: u64,
    app_hash: [u8; 32],
) -> Result<Metadata, SnapshotError> {
    let mut meta = Metadata {
        height,
        app_hash,
        entries: 0,
        bytes: 0,
        chunk_hashes: Vec::new(),
    };
    let mut chunk = Vec::with_capacity(CHUNK_BYTES_TARGET);
    let flush = |chunk: &mut Vec<u8>, meta: &mut Metadata| -> Result<(), SnapshotError> {
        if meta.chunks() >= CHUNKS_MAX {
            return Err(SnapshotError::TooLarge(format!(
                "it needs more than {CHUNKS_MAX} chunks"
            )));
        }
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        meta.bytes = meta
            .bytes
            .checked_add(len)
            .filter(|b| *b <= RESTORE_BYTES_MAX)
            .ok_or_else(|| {
                SnapshotError::TooLarge(format!(
                    "it holds more than the {RESTORE_BYTES_MAX} bytes a restore accepts"
                ))
            })?;
        write_synced(&dir.join(chunk_name(meta.chunks())), chunk)?;
        meta.chunk_hashes.push(format::sha256(chunk));
        chunk.clear();
        Ok(())
    };
    let mut after: Option<Vec<u8>> = None;
    'scan: loop {
        let page = view.scan(&[], after.as_deref(), SCAN_PAGE_ENTRIES);
        let full = page.len() >= SCAN_PAGE_ENTRIES;
        for (key, value) in page {
            // Tree keys (0xfe) and node-local keys (0xff) sort after every
            // state key: the state ends at the first of them.
            if key.first().is_some_and(|b| *b >= TREE_PREFIX) {
                break 'scan;
            }
            if key.len() > KEY_BYTES_MAX {
                return Err(SnapshotError::TooLarge(format!(
                    "key {} is longer than {KEY_BYTES_MAX} bytes",
                    hex::encode(&key)
                )));
            }
            let len = format::entry_bytes(&key, &value)
                .filter(|l| *l <= CHUNK_BYTES_MAX)
                .ok_or_else(|| {
                    SnapshotError::TooLarge(format!(
                        "the value of key {} does not fit a chunk of {CHUNK_BYTES_MAX} bytes",
                        hex::encode(&key)
                    ))
                })?;
            if !chunk.is_empty() && chunk.len().saturating_add(len) > CHUNK_BYTES_TARGET {
                flush(&mut chunk, &mut meta)?;
            }
            format::push_entry(&mut chunk, &key, &value);
            meta.entries = meta.entries.saturating_add(1);
            after = Some(key);
        }
        if !full {
            break;
        }
    }
    if meta.entries == 0 {
        return Err(SnapshotError::Empty);
    }
    if !chunk.is_empty() {
        flush(&mut chunk, &mut meta)?;
    }
    Ok(meta)
}
