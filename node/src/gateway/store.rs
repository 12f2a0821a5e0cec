//! The content-addressed blob store: `<home>/blobs/<2 hex>/<64 hex>`.
//!
//! A blob is written to `<home>/blobs/tmp/` while its SHA3-256 hash is
//! computed, and renamed into place only once the hash is known (and equals
//! the expected one, when one was named). A reader therefore never sees a
//! partial or unverified blob, and a refused upload leaves nothing behind.
//!
//! A blob uploaded by an account carries a sidecar `<64 hex>.up` next to it,
//! holding the account in hex; it is renamed into place before the blob, so
//! no blob appears without it, and removed after the blob. A missing or
//! garbled sidecar means "no uploader" (peer fetches have none).
//!
//! The store keeps an index of its blobs in memory, built from disk when it
//! opens: each blob's size, when it was added (its file's mtime at open; a
//! store or re-upload sets it to now), its uploader and its open readers.
//! A blob is *pinned* while the chain references it ([`BlobStore::retain`],
//! counted) or the operator pins it ([`BlobStore::set_manual_pins`]).
//! Unpinned blobs are charged to their uploader's account quota, and are
//! evicted oldest first, once past a grace period, when the store grows past
//! its high-water mark ([`BlobStore::evict`]) or when an upload needs room
//! ([`BlobStore::make_room`]).
//!
//! # Invariants
//! - Every file under a two-hex directory named by 64 hex holds bytes whose
//!   `sha3_256` is its name; a sidecar `<64 hex>.up` only ever sits next to
//!   its blob (orphans are removed when the store opens).
//! - Admission never lets `stored_bytes + reserved_bytes` exceed
//!   `quota_bytes`: an upload with a declared size reserves it before a byte
//!   is written, a peer fetch reserves bytes as they arrive, and both release
//!   their reservation when refused, abandoned, or found to be a duplicate.
//! - `stored_bytes` is the sum of the indexed blobs' sizes, and
//!   `pinned_bytes` the sum over the pinned ones.
//! - An account's usage equals the sum of the sizes of its unpinned stored
//!   blobs plus the reservations of its uploads in flight.
//! - A pinned blob, one with open readers, or one with a re-upload in flight
//!   is never evicted; only [`BlobStore::discard`] (damaged bytes) removes it.
//! - The index, the counters and the renames/unlinks of blob files change
//!   together under one lock, so an eviction never races a re-upload of the
//!   same blob into losing it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use compute_proto::{AccountId, BlobId};
use sha3::{Digest, Sha3_256};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// The largest number of entries scanned when the store opens, so that a
/// directory filled by something else cannot stall startup forever.
const SCAN_ENTRIES_MAX: usize = 10_000_000;
/// The suffix of an uploader sidecar: `<64 hex>.up`.
const SIDECAR_SUFFIX: &str = ".up";
/// The most bytes read from a sidecar (64 hex and a newline fit easily).
const SIDECAR_BYTES_MAX: u64 = 256;
/// The grace period of [`StoreConfig::new`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is larger than the per-blob limit.
    #[error("blob exceeds the limit of {max_bytes} bytes per blob")]
    TooLarge {
        /// The per-blob limit.
        max_bytes: u64,
    },
    /// Storing the blob would exceed the store's total quota.
    #[error("the store is full: {stored_bytes} of {quota_bytes} bytes used, no room for more")]
    QuotaExceeded {
        /// Bytes already stored or reserved.
        stored_bytes: u64,
        /// The total quota.
        quota_bytes: u64,
    },
    /// Storing the blob would exceed the uploader's account quota.
    #[error("account {account} has {used_bytes} of its {quota_bytes} bytes in use on this gateway, no room for this blob")]
    AccountQuotaExceeded {
        /// The uploader.
        account: AccountId,
        /// Bytes the account already uses (unpinned blobs and uploads in flight).
        used_bytes: u64,
        /// The per-account quota.
        quota_bytes: u64,
    },
    /// The bytes received are not as many as the upload declared.
    #[error("the upload declared {declared} bytes but sent {received}; nothing was stored")]
    SizeMismatch {
        /// The declared size.
        declared: u64,
        /// The bytes received (so far, when too many).
        received: u64,
    },
    /// The bytes do not hash to the expected id.
    #[error("the bytes hash to {actual}, not the expected {expected}; nothing was stored")]
    HashMismatch {
        /// The id the uploader named.
        expected: BlobId,
        /// The id of the bytes received.
        actual: BlobId,
    },
    /// A filesystem operation failed.
    #[error("blob store I/O at {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The store's limits and eviction policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// The total bytes the store may hold (stored plus reserved).
    pub quota_bytes: u64,
    /// [`BlobStore::evict`] acts only when more bytes than this are stored.
    pub high_water_bytes: u64,
    /// [`BlobStore::evict`] removes blobs until at most this many bytes are stored.
    pub low_water_bytes: u64,
    /// The bytes each account may use: its unpinned blobs and uploads in flight.
    pub account_quota_bytes: u64,
    /// How long a blob is kept after it was added before it may be evicted.
    pub grace: Duration,
}

impl StoreConfig {
    /// These limits, evicting from 90 % down to 80 % of the quota, each
    /// account allowed the whole quota, and a grace of [`DEFAULT_GRACE`].
    pub fn new(max_blob_bytes: u64, quota_bytes: u64) -> Self {
        Self {
            max_blob_bytes,
            quota_bytes,
            high_water_bytes: (quota_bytes / 10).saturating_mul(9),
            low_water_bytes: (quota_bytes / 10).saturating_mul(8),
            account_quota_bytes: quota_bytes,
            grace: DEFAULT_GRACE,
        }
    }
}

/// What an eviction removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Eviction {
    /// The blobs removed.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Eviction {
    fn add(&mut self, bytes: u64) {
        self.blobs = self.blobs.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

#[derive(Debug)]
struct Entry {
    size: u64,
    added: SystemTime,
    uploader: Option<AccountId>,
    /// Open [`BlobReader`]s.
    readers: u64,
    /// Uploads of this blob admitted because it was already here.
    writers: u64,
    /// Tells this entry from a later one of the same blob, so that a guard
    /// taken on a discarded entry never touches its successor.
    generation: u64,
}

#[derive(Debug, Default)]
struct Index {
    blobs: HashMap<BlobId, Entry>,
    /// `(added, id)` of every blob, oldest first: eviction's order.
    by_age: BTreeSet<(SystemTime, BlobId)>,
    stored_bytes: u64,
    reserved_bytes: u64,
    pinned_bytes: u64,
    /// Chain references, counted; may name blobs not stored (yet).
    retained: HashMap<BlobId, u64>,
    /// The operator's pins.
    manual: HashSet<BlobId>,
    /// Per-account usage; an account at zero has no entry.
    accounts: HashMap<AccountId, u64>,
    next_generation: u64,
    /// Whether admission may evict (the chain's references are known).
    references_complete: bool,
}

impl Index {
    fn is_pinned(&self, id: &BlobId) -> bool {
        self.retained.contains_key(id) || self.manual.contains(id)
    }

    fn fits(&self, bytes: u64, quota_bytes: u64) -> bool {
        self.stored_bytes
            .saturating_add(self.reserved_bytes)
            .checked_add(bytes)
            .is_some_and(|total| total <= quota_bytes)
    }

    fn usage(&self, account: &AccountId) -> u64 {
        self.accounts.get(account).copied().unwrap_or(0)
    }

    fn charge(&mut self, account: &AccountId, bytes: u64) {
        if bytes > 0 {
            let used = self.accounts.entry(*account).or_insert(0);
            *used = used.saturating_add(bytes);
        }
    }

    fn uncharge(&mut self, account: &AccountId, bytes: u64) {
        if let Some(used) = self.accounts.get_mut(account) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                self.accounts.remove(account);
            }
        }
    }

    /// Adds a blob (replacing any entry of the same id) and counts it.
    fn insert(&mut self, id: BlobId, size: u64, added: SystemTime, uploader: Option<AccountId>) {
        self.remove(&id);
        self.next_generation = self.next_generation.wrapping_add(1);
        if self.is_pinned(&id) {
            self.pinned_bytes = self.pinned_bytes.saturating_add(size);
        } else if let Some(account) = uploader {
            self.charge(&account, size);
        }
        self.stored_bytes = self.stored_bytes.saturating_add(size);
        self.by_age.insert((added, id));
        self.blobs.insert(
            id,
            Entry {
                size,
                added,
                uploader,
                readers: 0,
                writers: 0,
                generation: self.next_generation,
            },
        );
    }

    /// Removes a blob from the index and stops counting it.
    fn remove(&mut self, id: &BlobId) -> Option<Entry> {
        let entry = self.blobs.remove(id)?;
        self.by_age.remove(&(entry.added, *id));
        self.stored_bytes = self.stored_bytes.saturating_sub(entry.size);
        if self.is_pinned(id) {
            self.pinned_bytes = self.pinned_bytes.saturating_sub(entry.size);
        } else if let Some(account) = entry.uploader {
            self.uncharge(&account, entry.size);
        }
        Some(entry)
    }

    /// Moves a stored blob's bytes between its uploader and the pinned
    /// total, after its pinned status changed to `pinned`.
    fn pin_changed(&mut self, id: &BlobId, pinned: bool) {
        let Some((size, uploader)) = self.blobs.get(id).map(|e| (e.size, e.uploader)) else {
            return;
        };
        if pinned {
            self.pinned_bytes = self.pinned_bytes.saturating_add(size);
            if let Some(account) = uploader {
                self.uncharge(&account, size);
            }
        } else {
            self.pinned_bytes = self.pinned_bytes.saturating_sub(size);
            if let Some(account) = uploader {
                self.charge(&account, size);
            }
        }
    }

    fn set_added(&mut self, id: &BlobId, added: SystemTime) {
        if let Some(entry) = self.blobs.get_mut(id) {
            self.by_age.remove(&(entry.added, *id));
            entry.added = added;
            self.by_age.insert((added, *id));
        }
    }

    /// The oldest evictable blob after `cursor`: unpinned, unread, not being
    /// re-uploaded, and added at least `grace` before `now`.
    fn candidate(
        &self,
        cursor: Option<&(SystemTime, BlobId)>,
        now: SystemTime,
        grace: Duration,
    ) -> Option<(SystemTime, BlobId)> {
        let from = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        for key in self.by_age.range((from, Bound::Unbounded)) {
            let (added, id) = key;
            let old_enough = now.duration_since(*added).is_ok_and(|age| age >= grace);
            if !old_enough {
                // Everything after it is younger still.
                return None;
            }
            let idle = self
                .blobs
                .get(id)
                .is_some_and(|e| e.readers == 0 && e.writers == 0);
            if idle && !self.is_pinned(id) {
                return Some(*key);
            }
        }
        None
    }
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    config: StoreConfig,
    index: Mutex<Index>,
    next_tmp: AtomicU64,
}

/// A content-addressed store of blobs on local disk; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl BlobStore {
    /// Opens (creating if needed) the store under `<home>/blobs`, removes
    /// leftover temporary files and orphan sidecars, and indexes the blobs
    /// already stored. Nothing is pinned yet, and admission does not evict
    /// until [`BlobStore::set_references_complete`] says it may.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created or read.
    pub fn open(home: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let root = home.join("blobs");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_error(&tmp))?;
        // Uploads that were in flight when the process stopped are garbage.
        for entry in std::fs::read_dir(&tmp)
            .map_err(io_error(&tmp))?
            .take(SCAN_ENTRIES_MAX)
        {
            let path = entry.map_err(io_error(&tmp))?.path();
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
        let index = scan(&root)?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                config,
                index: Mutex::new(index),
                next_tmp: AtomicU64::new(0),
            }),
        })
    }

    /// The limits and eviction policy the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The path a blob is stored under.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.inner.root.join(&hex[..2]).join(hex)
    }

    /// The per-blob size limit in bytes.
    pub fn max_blob_bytes(&self) -> u64 {
        self.inner.config.max_blob_bytes
    }

    /// The bytes of all stored blobs.
    pub fn stored_bytes(&self) -> u64 {
        self.lock().stored_bytes
    }

    /// The bytes reserved by uploads in flight.
    pub fn reserved_bytes(&self) -> u64 {
        self.lock().reserved_bytes
    }

    /// The bytes of stored blobs that are pinned.
    pub fn pinned_bytes(&self) -> u64 {
        self.lock().pinned_bytes
    }

    /// The number of stored blobs.
    pub fn blob_count(&self) -> u64 {
        u64::try_from(self.lock().blobs.len()).unwrap_or(u64::MAX)
    }

    /// An account's usage: its unpinned stored blobs plus its uploads in flight.
    pub fn account_usage(&self, account: &AccountId) -> u64 {
        self.lock().usage(account)
    }

    /// Whether a blob is pinned (retained by the chain or by the operator).
    pub fn is_pinned(&self, id: &BlobId) -> bool {
        self.lock().is_pinned(id)
    }

    /// The size of a stored blob, or `None` when it is not here.
    pub async fn size_of(&self, id: &BlobId) -> Option<u64> {
        self.lock().blobs.get(id).map(|e| e.size)
    }

    /// The account that uploaded a stored blob, if any.
    pub fn uploader_of(&self, id: &BlobId) -> Option<AccountId> {
        self.lock().blobs.get(id).and_then(|e| e.uploader)
    }

    /// Counts one more chain reference to `id` (stored or not); a referenced
    /// blob is pinned.
    pub fn retain(&self, id: BlobId) {
        let mut index = self.lock();
        let was_pinned = index.is_pinned(&id);
        let count = index.retained.entry(id).or_insert(0);
        *count = count.saturating_add(1);
        if !was_pinned {
            index.pin_changed(&id, true);
        }
    }

    /// Drops one chain reference to `id`; without references or a manual
    /// pin the blob is unpinned again (and charged to its uploader).
    pub fn release(&self, id: &BlobId) {
        let mut index = self.lock();
        let Some(count) = index.retained.get_mut(id) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            index.retained.remove(id);
            if !index.is_pinned(id) {
                index.pin_changed(id, false);
            }
        }
    }

    /// Replaces the operator's manual pins wholesale.
    pub fn set_manual_pins(&self, pins: HashSet<BlobId>) {
        let mut index = self.lock();
        let old = std::mem::replace(&mut index.manual, pins);
        let unpinned: Vec<BlobId> = old
            .iter()
            .filter(|id| !index.manual.contains(*id) && !index.retained.contains_key(*id))
            .copied()
            .collect();
        let pinned: Vec<BlobId> = index
            .manual
            .iter()
            .filter(|id| !old.contains(*id) && !index.retained.contains_key(*id))
            .copied()
            .collect();
        for id in &unpinned {
            index.pin_changed(id, false);
        }
        for id in &pinned {
            index.pin_changed(id, true);
        }
    }

    /// Says whether the chain's references are known, so that admission may
    /// evict unpinned blobs to make room (it does not until told so).
    pub fn set_references_complete(&self, complete: bool) {
        self.lock().references_complete = complete;
    }

    /// Opens a stored blob for reading, or `None` when it is not here; the
    /// blob is not evicted while the reader lives.
    pub async fn open_blob(&self, id: &BlobId) -> Option<BlobReader> {
        let guard = {
            let mut index = self.lock();
            let entry = index.blobs.get_mut(id)?;
            entry.readers = entry.readers.saturating_add(1);
            ReaderGuard {
                store: self.clone(),
                id: *id,
                generation: entry.generation,
            }
        };
        let file = tokio::fs::File::open(self.path_of(id)).await.ok()?;
        Some(BlobReader {
            file,
            _guard: guard,
        })
    }

    /// Removes a stored blob found damaged, whatever pins or readers it has,
    /// and stops counting its bytes. Its references stay: it is pinned again
    /// if it comes back.
    pub fn discard(&self, id: &BlobId) {
        let path = self.path_of(id);
        let mut index = self.lock();
        let removed = index.remove(id).is_some();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not remove a damaged blob");
            }
        }
        let _ = std::fs::remove_file(sidecar_path(&path));
        if removed {
            tracing::debug!(%id, "blob discarded");
        }
    }

    /// Removes unpinned, unread blobs added at least `grace` before `now`,
    /// oldest first, from above the high-water mark down to the low-water
    /// mark (or until none is left). Does nothing unless
    /// `references_complete`, i.e. unless every blob the chain references is
    /// known to be retained. Unlinks files synchronously.
    pub fn evict(&self, now: SystemTime, references_complete: bool) -> Eviction {
        let mut out = Eviction::default();
        if !references_complete {
            return out;
        }
        let config = &self.inner.config;
        let low = config.low_water_bytes.min(config.high_water_bytes);
        if self.lock().stored_bytes <= config.high_water_bytes {
            return out;
        }
        let mut cursor = None;
        loop {
            // One blob per lock, so that readers and uploads are not held up
            // by a long eviction.
            let mut index = self.lock();
            if index.stored_bytes <= low {
                break;
            }
            let Some(key) = index.candidate(cursor.as_ref(), now, config.grace) else {
                break;
            };
            cursor = Some(key);
            if let Some(bytes) = self.evict_locked(&mut index, &key.1) {
                out.add(bytes);
            }
        }
        if out.blobs > 0 {
            tracing::info!(
                blobs = out.blobs,
                bytes = out.bytes,
                "evicted unpinned blobs"
            );
        }
        out
    }

    /// Evicts (as [`BlobStore::evict`] would, but regardless of the water
    /// marks) until `bytes` more fit in the quota, if the chain's references
    /// are complete; admission calls it when the store is full.
    pub fn make_room(&self, bytes: u64) -> Eviction {
        let mut index = self.lock();
        self.make_room_locked(&mut index, bytes, SystemTime::now())
    }

    /// Starts a peer fetch (or any upload of unknown size, charged to no
    /// account); `expected` is the id the bytes must hash to. Bytes are
    /// reserved as they arrive.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the temporary file cannot be created.
    pub async fn writer(&self, expected: Option<BlobId>) -> Result<BlobWriter, StoreError> {
        let hold = Hold {
            store: self.clone(),
            reserved_bytes: 0,
            charged: None,
            restoring: None,
        };
        self.new_writer(hold, expected, None, None).await
    }

    /// Admits an upload of `declared_size` bytes hashing to `expected`,
    /// charged to `uploader`: the bytes are reserved against the total quota
    /// (evicting to make room if needed) and the account's quota before the
    /// writer exists. A blob already stored with that size is admitted free
    /// (finishing refreshes it).
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], [`StoreError::AccountQuotaExceeded`],
    /// [`StoreError::QuotaExceeded`] (nothing is written), or
    /// [`StoreError::Io`] when the temporary file cannot be created.
    pub async fn writer_for(
        &self,
        uploader: Option<AccountId>,
        expected: BlobId,
        declared_size: u64,
    ) -> Result<BlobWriter, StoreError> {
        let hold = self.admit(uploader, expected, declared_size)?;
        self.new_writer(hold, Some(expected), Some(declared_size), uploader)
            .await
    }

    /// Stores `bytes` in one call as a peer fetch would (used by tests and
    /// small callers).
    ///
    /// # Errors
    /// As [`BlobWriter::write`] and [`BlobWriter::finish`].
    pub async fn put(&self, expected: Option<BlobId>, bytes: &[u8]) -> Result<Stored, StoreError> {
        let mut writer = self.writer(expected).await?;
        writer.write(bytes).await?;
        writer.finish().await
    }

    /// Stores `bytes` in one call as an upload by `uploader` would.
    ///
    /// # Errors
    /// As [`BlobStore::writer_for`], [`BlobWriter::write`] and [`BlobWriter::finish`].
    pub async fn put_as(
        &self,
        uploader: Option<AccountId>,
        bytes: &[u8],
    ) -> Result<Stored, StoreError> {
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let mut writer = self.writer_for(uploader, BlobId::of(bytes), size).await?;
        writer.write(bytes).await?;
        writer.finish().await
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // Nothing panics while holding this lock (no indexing, no unwrap,
        // saturating arithmetic), so a poisoned lock still holds a
        // consistent index.
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tmp_path(&self, suffix: &str) -> PathBuf {
        let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tmp
            .join(format!("{}-{n}{suffix}", std::process::id()))
    }

    async fn new_writer(
        &self,
        hold: Hold,
        expected: Option<BlobId>,
        declared: Option<u64>,
        uploader: Option<AccountId>,
    ) -> Result<BlobWriter, StoreError> {
        let path = self.tmp_path(".part");
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_error(&path))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            path,
            expected,
            declared,
            uploader,
            hasher: Sha3_256::new(),
            len_bytes: 0,
            hold,
        })
    }

    fn admit(
        &self,
        uploader: Option<AccountId>,
        expected: BlobId,
        declared: u64,
    ) -> Result<Hold, StoreError> {
        let config = &self.inner.config;
        if declared > config.max_blob_bytes {
            return Err(StoreError::TooLarge {
                max_bytes: config.max_blob_bytes,
            });
        }
        let mut index = self.lock();
        if let Some(entry) = index.blobs.get_mut(&expected) {
            if entry.size == declared {
                // Already here: nothing to charge, but it must not be evicted
                // while the upload streams, so that finishing finds it.
                entry.writers = entry.writers.saturating_add(1);
                return Ok(Hold {
                    store: self.clone(),
                    reserved_bytes: 0,
                    charged: None,
                    restoring: Some((expected, entry.generation)),
                });
            }
        }
        if let Some(account) = uploader {
            check_account(&index, &account, declared, config.account_quota_bytes)?;
        }
        if !index.fits(declared, config.quota_bytes) {
            self.make_room_locked(&mut index, declared, SystemTime::now());
        }
        check_total(&index, declared, config.quota_bytes)?;
        index.reserved_bytes = index.reserved_bytes.saturating_add(declared);
        if let Some(account) = uploader {
            index.charge(&account, declared);
        }
        Ok(Hold {
            store: self.clone(),
            reserved_bytes: declared,
            charged: uploader,
            restoring: None,
        })
    }

    /// Reserves `bytes` more for a streaming upload, making room if needed.
    fn reserve_streaming(&self, hold: &mut Hold, bytes: u64) -> Result<(), StoreError> {
        let quota_bytes = self.inner.config.quota_bytes;
        let mut index = self.lock();
        if !index.fits(bytes, quota_bytes) {
            self.make_room_locked(&mut index, bytes, SystemTime::now());
        }
        check_total(&index, bytes, quota_bytes)?;
        hold.grow_locked(&mut index, bytes);
        Ok(())
    }

    fn make_room_locked(&self, index: &mut Index, bytes: u64, now: SystemTime) -> Eviction {
        let mut out = Eviction::default();
        if !index.references_complete {
            return out;
        }
        let quota_bytes = self.inner.config.quota_bytes;
        let mut cursor = None;
        while !index.fits(bytes, quota_bytes) {
            let Some(key) = index.candidate(cursor.as_ref(), now, self.inner.config.grace) else {
                break;
            };
            cursor = Some(key);
            if let Some(freed) = self.evict_locked(index, &key.1) {
                out.add(freed);
            }
        }
        if out.blobs > 0 {
            tracing::info!(
                blobs = out.blobs,
                bytes = out.bytes,
                "evicted unpinned blobs to make room"
            );
        }
        out
    }

    /// Unlinks a blob and its sidecar and drops it from the index; `None`
    /// (and the blob stays) when the file cannot be removed.
    fn evict_locked(&self, index: &mut Index, id: &BlobId) -> Option<u64> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not evict a blob");
                return None;
            }
        }
        let _ = std::fs::remove_file(sidecar_path(&path));
        let entry = index.remove(id)?;
        tracing::debug!(%id, size_bytes = entry.size, "blob evicted");
        Some(entry.size)
    }

    #[cfg(test)]
    fn backdate(&self, id: &BlobId, added: SystemTime) {
        self.lock().set_added(id, added);
    }

    /// Recomputes every counter from the index and the disk, and compares.
    #[cfg(test)]
    fn check_invariants(&self) {
        let index = self.lock();
        let mut stored = 0u64;
        let mut pinned = 0u64;
        let mut accounts: HashMap<AccountId, u64> = HashMap::new();
        for (id, e) in &index.blobs {
            stored += e.size;
            if index.is_pinned(id) {
                pinned += e.size;
            } else if let Some(a) = e.uploader {
                *accounts.entry(a).or_insert(0) += e.size;
            }
            assert!(index.by_age.contains(&(e.added, *id)));
            let path = self.path_of(id);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), e.size, "{id}");
            assert_eq!(read_sidecar(&sidecar_path(&path)), e.uploader, "{id}");
        }
        assert_eq!(index.by_age.len(), index.blobs.len());
        assert_eq!(index.stored_bytes, stored);
        assert_eq!(index.pinned_bytes, pinned);
        if index.reserved_bytes == 0 {
            assert_eq!(index.accounts, accounts);
        }
        assert!(index.accounts.values().all(|v| *v > 0));
        // Every blob or sidecar on disk is indexed.
        for shard in std::fs::read_dir(&self.inner.root).unwrap() {
            let shard = shard.unwrap().path();
            if shard == self.inner.tmp {
                continue;
            }
            for f in std::fs::read_dir(&shard).unwrap() {
                let name = f.unwrap().file_name().into_string().unwrap();
                let hex = name.strip_suffix(SIDECAR_SUFFIX).unwrap_or(&name);
                let id = BlobId::from_hex(hex).unwrap();
                assert!(index.blobs.contains_key(&id), "{name} is not indexed");
            }
        }
    }
}

fn check_account(
    index: &Index,
    account: &AccountId,
    bytes: u64,
    quota_bytes: u64,
) -> Result<(), StoreError> {
    let used = index.usage(account);
    if used.checked_add(bytes).is_some_and(|t| t <= quota_bytes) {
        Ok(())
    } else {
        Err(StoreError::AccountQuotaExceeded {
            account: *account,
            used_bytes: used,
            quota_bytes,
        })
    }
}

fn check_total(index: &Index, bytes: u64, quota_bytes: u64) -> Result<(), StoreError> {
    if index.fits(bytes, quota_bytes) {
        Ok(())
    } else {
        Err(StoreError::QuotaExceeded {
            stored_bytes: index.stored_bytes.saturating_add(index.reserved_bytes),
            quota_bytes,
        })
    }
}

fn sidecar_path(blob: &Path) -> PathBuf {
    let mut name = blob.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}

/// The uploader a sidecar names; `None` when it is missing or garbled.
fn read_sidecar(path: &Path) -> Option<AccountId> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(SIDECAR_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    AccountId::from_hex(text.trim()).ok()
}

fn scan(root: &Path) -> Result<Index, StoreError> {
    let mut index = Index::default();
    let mut seen: usize = 0;
    for shard in std::fs::read_dir(root).map_err(io_error(root))? {
        let shard = shard.map_err(io_error(root))?.path();
        let Some(prefix) = shard
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned)
        else {
            continue;
        };
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(io_error(&shard))? {
            seen = seen.saturating_add(1);
            if seen > SCAN_ENTRIES_MAX {
                return Ok(index);
            }
            let entry = entry.map_err(io_error(&shard))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(hex) = name.strip_suffix(SIDECAR_SUFFIX) {
                // A sidecar whose blob never arrived (or was half removed).
                let blob = shard.join(hex);
                if BlobId::from_hex(hex).is_ok() && !blob.exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Ok(id) = BlobId::from_hex(&name) else {
                continue;
            };
            if id.to_hex() != name || !name.starts_with(&prefix) {
                continue;
            }
            let meta = entry.metadata().map_err(io_error(&path))?;
            if !meta.is_file() {
                continue;
            }
            let added = meta.modified().unwrap_or_else(|_| SystemTime::now());
            let uploader = read_sidecar(&sidecar_path(&path));
            index.insert(id, meta.len(), added, uploader);
        }
    }
    Ok(index)
}

/// A blob that is now in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its id, `sha3_256(bytes)`.
    pub id: BlobId,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// Whether this upload added it (false when it was already there).
    pub added: bool,
}

/// What an upload holds in the index: its reservation (charged to an
/// account or not) and, for a re-upload, the blob it keeps from eviction.
/// Released when dropped.
#[derive(Debug)]
struct Hold {
    store: BlobStore,
    reserved_bytes: u64,
    charged: Option<AccountId>,
    restoring: Option<(BlobId, u64)>,
}

impl Hold {
    fn grow_locked(&mut self, index: &mut Index, bytes: u64) {
        index.reserved_bytes = index.reserved_bytes.saturating_add(bytes);
        if let Some(account) = self.charged {
            index.charge(&account, bytes);
        }
        self.reserved_bytes = self.reserved_bytes.saturating_add(bytes);
    }

    fn release_locked(&mut self, index: &mut Index) {
        index.reserved_bytes = index.reserved_bytes.saturating_sub(self.reserved_bytes);
        if let Some(account) = self.charged {
            index.uncharge(&account, self.reserved_bytes);
        }
        self.reserved_bytes = 0;
        if let Some((id, generation)) = self.restoring.take() {
            if let Some(entry) = index.blobs.get_mut(&id) {
                if entry.generation == generation {
                    entry.writers = entry.writers.saturating_sub(1);
                }
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.reserved_bytes > 0 || self.restoring.is_some() {
            let store = self.store.clone();
            let mut index = store.lock();
            self.release_locked(&mut index);
        }
    }
}

/// A temporary file removed when dropped (a no-op once it was renamed).
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An upload in progress; dropping it before [`BlobWriter::finish`] discards
/// the bytes and releases their reservation.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    expected: Option<BlobId>,
    declared: Option<u64>,
    uploader: Option<AccountId>,
    hasher: Sha3_256,
    len_bytes: u64,
    hold: Hold,
}

impl BlobWriter {
    /// The bytes received so far.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Appends `data`, hashing it and enforcing the declared size (or, for a
    /// peer fetch, the size limit and quota).
    ///
    /// # Errors
    /// [`StoreError::SizeMismatch`], [`StoreError::TooLarge`],
    /// [`StoreError::QuotaExceeded`] or [`StoreError::Io`]; the upload is
    /// then unusable and should be dropped.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let len = self.len_bytes.saturating_add(n);
        if let Some(declared) = self.declared {
            if len > declared {
                return Err(StoreError::SizeMismatch {
                    declared,
                    received: len,
                });
            }
        }
        let max_bytes = self.store.inner.config.max_blob_bytes;
        if len > max_bytes {
            return Err(StoreError::TooLarge { max_bytes });
        }
        if self.declared.is_none() {
            self.store.reserve_streaming(&mut self.hold, n)?;
        }
        let file = self.file.as_mut().ok_or_else(|| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("write after finish"),
        })?;
        file.write_all(data).await.map_err(io_error(&self.path))?;
        self.hasher.update(data);
        self.len_bytes = len;
        Ok(())
    }

    /// Checks the size and hash and moves the blob into place (or, when it
    /// is already there, marks it as added now).
    ///
    /// # Errors
    /// [`StoreError::SizeMismatch`] or [`StoreError::HashMismatch`] when the
    /// bytes are not the declared blob (nothing is stored), a quota error
    /// when the blob vanished while being re-uploaded and no longer fits, or
    /// [`StoreError::Io`].
    pub async fn finish(mut self) -> Result<Stored, StoreError> {
        if let Some(declared) = self.declared {
            if self.len_bytes != declared {
                return Err(StoreError::SizeMismatch {
                    declared,
                    received: self.len_bytes,
                });
            }
        }
        let id = BlobId(self.hasher.clone().finalize().into());
        if let Some(expected) = self.expected {
            if expected != id {
                return Err(StoreError::HashMismatch {
                    expected,
                    actual: id,
                });
            }
        }
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_error(&self.path))?;
            file.sync_all().await.map_err(io_error(&self.path))?;
        }
        let dest = self.store.path_of(&id);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(io_error(dir))?;
        }
        let sidecar = match self.uploader {
            Some(account) => Some(self.write_sidecar(&account).await?),
            None => None,
        };
        let now = SystemTime::now();
        let added = self.commit(id, &dest, sidecar.as_ref(), now)?;
        drop(sidecar);
        if !added {
            // Best effort: the refreshed time survives a restart.
            if let Ok(file) = std::fs::File::open(&dest) {
                let _ = file.set_modified(now);
            }
        }
        Ok(Stored {
            id,
            size_bytes: self.len_bytes,
            added,
        })
    }

    async fn write_sidecar(&self, account: &AccountId) -> Result<TempFile, StoreError> {
        let temp = TempFile(self.store.tmp_path(".up"));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.0)
            .await
            .map_err(io_error(&temp.0))?;
        let text = format!("{}\n", account.to_hex());
        file.write_all(text.as_bytes())
            .await
            .map_err(io_error(&temp.0))?;
        file.sync_all().await.map_err(io_error(&temp.0))?;
        Ok(temp)
    }

    /// Under the index lock: refreshes the blob if it is here, else renames
    /// the sidecar and the blob into place and counts it. Returns whether it
    /// was added.
    fn commit(
        &mut self,
        id: BlobId,
        dest: &Path,
        sidecar: Option<&TempFile>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let config = &self.store.inner.config;
        let mut index = self.store.lock();
        if index.blobs.contains_key(&id) {
            index.set_added(&id, now);
            self.hold.release_locked(&mut index);
            return Ok(false);
        }
        // Only a re-upload admitted free, whose blob was discarded in the
        // meantime, is short of a reservation; it needs room now.
        let shortfall = self.len_bytes.saturating_sub(self.hold.reserved_bytes);
        if shortfall > 0 {
            if let Some(account) = self.uploader {
                check_account(&index, &account, shortfall, config.account_quota_bytes)?;
            }
            check_total(&index, shortfall, config.quota_bytes)?;
            if self.hold.reserved_bytes == 0 {
                self.hold.charged = self.uploader;
            }
            self.hold.grow_locked(&mut index, shortfall);
        }
        let side = sidecar_path(dest);
        match sidecar {
            Some(temp) => std::fs::rename(&temp.0, &side).map_err(io_error(&side))?,
            // A stale sidecar must not name an uploader for this blob.
            None => match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&side)(e)),
            },
        }
        if let Err(e) = std::fs::rename(&self.path, dest) {
            let _ = std::fs::remove_file(&side);
            return Err(io_error(dest)(e));
        }
        self.hold.release_locked(&mut index);
        index.insert(id, self.len_bytes, now, self.uploader);
        Ok(true)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful finish the temporary file is already gone; the
        // error from removing it again is expected and ignored. The hold
        // releases the reservation when it drops, right after.
        drop(self.file.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Keeps a blob's reader count up while it lives.
#[derive(Debug)]
struct ReaderGuard {
    store: BlobStore,
    id: BlobId,
    generation: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut index = self.store.lock();
        if let Some(entry) = index.blobs.get_mut(&self.id) {
            if entry.generation == self.generation {
                entry.readers = entry.readers.saturating_sub(1);
            }
        }
    }
}

/// An open stored blob; the blob is not evicted while this lives. Reads
/// through [`AsyncRead`].
#[derive(Debug)]
pub struct BlobReader {
    file: tokio::fs::File,
    _guard: ReaderGuard,
}

impl BlobReader {
    /// The underlying file.
    pub fn file_mut(&mut self) -> &mut tokio::fs::File {
        &mut self.file
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::UNIX_EPOCH;

    use tokio::io::AsyncReadExt;

    use super::*;

    const MIB: u64 = 1 << 20;
    const ALICE: AccountId = AccountId([0xa1; 32]);
    const BOB: AccountId = AccountId([0xb0; 32]);

    fn open(home: &Path, max_blob_bytes: u64, quota_bytes: u64) -> BlobStore {
        BlobStore::open(home, StoreConfig::new(max_blob_bytes, quota_bytes)).unwrap()
    }

    /// A store that evicts from above `high` down to `low` bytes.
    fn open_evicting(home: &Path, quota_bytes: u64, high: u64, low: u64) -> BlobStore {
        let config = StoreConfig {
            max_blob_bytes: MIB,
            quota_bytes,
            high_water_bytes: high,
            low_water_bytes: low,
            account_quota_bytes: quota_bytes,
            grace: Duration::from_secs(100),
        };
        BlobStore::open(home, config).unwrap()
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[tokio::test]
    async fn a_blob_is_stored_under_its_hash_and_read_back() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, 10 * MIB);
        let bytes = b"hello blobs".to_vec();
        let id = BlobId::of(&bytes);
        let stored = store.put(Some(id), &bytes).await.unwrap();
        assert_eq!(stored.id, id);
        assert_eq!(stored.size_bytes, 11);
        assert!(stored.added);
        let hex = id.to_hex();
        let path = home.path().join("blobs").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(path).unwrap(), bytes);
        assert_eq!(store.stored_bytes(), 11);
        assert_eq!(store.blob_count(), 1);
        assert_eq!(store.size_of(&id).await, Some(11));
        assert_eq!(store.size_of(&BlobId([0; 32])).await, None);
        let mut reader = store.open_blob(&id).await.unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, bytes);
        assert!(store.open_blob(&BlobId([0; 32])).await.is_none());
        store.check_invariants();
    }

    #[tokio::test]
    async fn a_hash_mismatch_is_refused_and_leaves_nothing_on_disk() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, 10 * MIB);
        let named = BlobId::of(b"the real bytes");
        let err = store.put(Some(named), b"other bytes").await.unwrap_err();
        assert!(
            matches!(err, StoreError::HashMismatch { expected, .. } if expected == named),
            "{err}"
        );
        // The same through a signed upload, which also leaves no usage.
        let mut writer = store.writer_for(Some(ALICE), named, 11).await.unwrap();
        writer.write(b"other bytes").await.unwrap();
        let err = writer.finish().await.unwrap_err();
        assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
        assert!(files_under(&home.path().join("blobs")).is_empty());
        assert_eq!(store.stored_bytes(), 0);
        assert_eq!(store.reserved_bytes(), 0);
        assert_eq!(store.account_usage(&ALICE), 0);
        assert_eq!(store.size_of(&named).await, None);
    }

    #[tokio::test]
    async fn the_per_blob_size_cap_is_enforced_while_streaming() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), 100, 10 * MIB);
        assert!(store.put(None, &[7; 100]).await.is_ok());
        let mut writer = store.writer(None).await.unwrap();
        writer.write(&[1; 60]).await.unwrap();
        let err = writer.write(&[1; 41]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max_bytes: 100 }),
            "{err}"
        );
        drop(writer);
        // A declared size over the cap is refused before anything is written.
        let err = store
            .writer_for(Some(ALICE), BlobId([1; 32]), 101)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max_bytes: 100 }),
            "{err}"
        );
        assert_eq!(files_under(&home.path().join("blobs")).len(), 1);
        assert_eq!(store.stored_bytes(), 100);
        assert_eq!(store.reserved_bytes(), 0);
    }

    #[tokio::test]
    async fn the_quota_is_enforced_and_freed_by_refused_uploads() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), 1000, 250);
        store.put(None, &[1; 100]).await.unwrap();
        store.put_as(Some(ALICE), &[2; 100]).await.unwrap();
        let err = store.put(None, &[3; 100]).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::QuotaExceeded {
                    quota_bytes: 250,
                    ..
                }
            ),
            "{err}"
        );
        // A signed upload is refused up front, before a temporary file exists.
        let err = store
            .writer_for(Some(BOB), BlobId::of(&[3; 100]), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
        assert!(files_under(&home.path().join("blobs").join("tmp")).is_empty());
        assert_eq!(store.account_usage(&BOB), 0);
        // A refused upload returns its reservation: 50 bytes still fit.
        store.put(None, &[4; 50]).await.unwrap();
        assert_eq!(store.stored_bytes(), 250);
        assert_eq!(store.reserved_bytes(), 0);
        // The quota is counted again from disk when the store reopens.
        drop(store);
        let reopened = open(home.path(), 1000, 250);
        assert_eq!(reopened.stored_bytes(), 250);
        assert_eq!(reopened.blob_count(), 3);
        assert!(reopened.put(None, &[5; 1]).await.is_err());
        reopened.check_invariants();
    }

    #[tokio::test]
    async fn a_stored_blob_does_not_count_twice() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), 1000, 200);
        assert!(store.put(None, &[1; 100]).await.unwrap().added);
        let again = store.put(None, &[1; 40]).await.unwrap();
        assert!(again.added);
        assert_eq!(store.stored_bytes(), 140);
        // Fetching it again needs room while streaming, then is a no-op.
        let dup = store.put(None, &[1; 40]).await.unwrap();
        assert!(!dup.added);
        assert_eq!(store.stored_bytes(), 140);
        // A signed re-upload needs no room at all and charges no one.
        let dup = store.put_as(Some(BOB), &[1; 100]).await.unwrap();
        assert!(!dup.added);
        assert_eq!(store.account_usage(&BOB), 0);
        assert_eq!(store.uploader_of(&dup.id), None);
        assert_eq!(store.stored_bytes(), 140);
        store.check_invariants();
    }

    #[tokio::test]
    async fn concurrent_puts_of_the_same_blob_store_it_once() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, 10 * MIB);
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let id = BlobId::of(&bytes);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let bytes = bytes.clone();
            tasks.push(tokio::spawn(async move {
                let mut writer = store.writer(Some(id)).await?;
                for chunk in bytes.chunks(10_000) {
                    writer.write(chunk).await?;
                    tokio::task::yield_now().await;
                }
                writer.finish().await
            }));
        }
        let mut added = 0;
        for task in tasks {
            let stored = task.await.unwrap().unwrap();
            assert_eq!(stored.id, id);
            added += usize::from(stored.added);
        }
        assert_eq!(added, 1);
        assert_eq!(store.stored_bytes(), 200_000);
        assert_eq!(store.reserved_bytes(), 0);
        let files = files_under(&home.path().join("blobs"));
        assert_eq!(files, vec![store.path_of(&id)]);
        assert_eq!(std::fs::read(store.path_of(&id)).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_discarded_blob_is_gone_and_uncounted() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, MIB);
        let stored = store.put_as(Some(ALICE), b"soon damaged").await.unwrap();
        assert_eq!(store.account_usage(&ALICE), 12);
        store.discard(&stored.id);
        assert_eq!(store.size_of(&stored.id).await, None);
        assert_eq!(store.stored_bytes(), 0);
        assert_eq!(store.blob_count(), 0);
        assert_eq!(store.account_usage(&ALICE), 0);
        store.discard(&stored.id);
        assert_eq!(store.stored_bytes(), 0);
        // Blob and sidecar are both gone.
        assert!(files_under(&home.path().join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn leftover_temporary_files_are_removed_on_open() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, MIB);
        let mut writer = store.writer(None).await.unwrap();
        writer.write(b"half").await.unwrap();
        // Simulate a crash: the temporary file stays behind.
        std::mem::forget(writer);
        assert_eq!(files_under(&home.path().join("blobs")).len(), 1);
        let reopened = open(home.path(), MIB, MIB);
        assert!(files_under(&home.path().join("blobs")).is_empty());
        assert_eq!(reopened.stored_bytes(), 0);
    }

    #[tokio::test]
    async fn an_upload_over_the_account_quota_is_refused_before_writing_anything() {
        let home = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            account_quota_bytes: 100,
            ..StoreConfig::new(MIB, MIB)
        };
        let store = BlobStore::open(home.path(), config).unwrap();
        store.put_as(Some(ALICE), &[1; 60]).await.unwrap();
        assert_eq!(store.account_usage(&ALICE), 60);
        // An upload in flight counts against its account.
        let writer = store
            .writer_for(Some(ALICE), BlobId::of(&[2; 40]), 40)
            .await
            .unwrap();
        assert_eq!(store.account_usage(&ALICE), 100);
        let err = store
            .writer_for(Some(ALICE), BlobId::of(&[3; 1]), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AccountQuotaExceeded {
                    account,
                    used_bytes: 100,
                    quota_bytes: 100
                } if account == ALICE
            ),
            "{err}"
        );
        drop(writer);
        assert_eq!(store.account_usage(&ALICE), 60);
        let tmp = home.path().join("blobs").join("tmp");
        let err = store
            .writer_for(Some(ALICE), BlobId::of(&[2; 50]), 50)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AccountQuotaExceeded { used_bytes: 60, .. }),
            "{err}"
        );
        assert!(files_under(&tmp).is_empty());
        assert_eq!(store.account_usage(&ALICE), 60);
        assert_eq!(store.reserved_bytes(), 0);
        // Other accounts, and peer fetches, are not affected.
        store.put_as(Some(BOB), &[2; 50]).await.unwrap();
        store.put(None, &[4; 200]).await.unwrap();
        assert_eq!(store.account_usage(&BOB), 50);
        assert_eq!(store.account_usage(&ALICE), 60);
        store.check_invariants();
    }

    #[tokio::test]
    async fn a_declared_size_mismatch_stores_nothing() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, MIB);
        let bytes = [9u8; 30];
        let id = BlobId::of(&bytes);
        // Fewer bytes than declared.
        let mut writer = store.writer_for(Some(ALICE), id, 31).await.unwrap();
        writer.write(&bytes).await.unwrap();
        let err = writer.finish().await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SizeMismatch {
                    declared: 31,
                    received: 30
                }
            ),
            "{err}"
        );
        // More bytes than declared are refused as they arrive.
        let mut writer = store.writer_for(Some(ALICE), id, 29).await.unwrap();
        writer.write(&bytes[..20]).await.unwrap();
        let err = writer.write(&bytes[20..]).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SizeMismatch {
                    declared: 29,
                    received: 30
                }
            ),
            "{err}"
        );
        drop(writer);
        assert!(files_under(&home.path().join("blobs")).is_empty());
        assert_eq!(store.stored_bytes(), 0);
        assert_eq!(store.reserved_bytes(), 0);
        assert_eq!(store.account_usage(&ALICE), 0);
        assert_eq!(store.size_of(&id).await, None);
    }

    #[tokio::test]
    async fn pinning_moves_bytes_out_of_the_account_and_unpinning_back() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, MIB);
        let id = store.put_as(Some(ALICE), &[1; 100]).await.unwrap().id;
        assert_eq!(store.account_usage(&ALICE), 100);
        assert_eq!(store.pinned_bytes(), 0);
        store.retain(id);
        store.retain(id);
        assert!(store.is_pinned(&id));
        assert_eq!(store.account_usage(&ALICE), 0);
        assert_eq!(store.pinned_bytes(), 100);
        store.release(&id);
        assert_eq!(store.account_usage(&ALICE), 0);
        store.release(&id);
        assert!(!store.is_pinned(&id));
        assert_eq!(store.account_usage(&ALICE), 100);
        assert_eq!(store.pinned_bytes(), 0);
        // A release without a reference changes nothing.
        store.release(&id);
        assert_eq!(store.account_usage(&ALICE), 100);
        // Manual pins and references overlap without double counting.
        store.set_manual_pins(HashSet::from([id, BlobId([5; 32])]));
        assert_eq!(store.account_usage(&ALICE), 0);
        assert_eq!(store.pinned_bytes(), 100);
        store.retain(id);
        store.set_manual_pins(HashSet::new());
        assert_eq!(store.pinned_bytes(), 100);
        store.check_invariants();
        store.release(&id);
        assert_eq!(store.account_usage(&ALICE), 100);
        assert_eq!(store.pinned_bytes(), 0);
        store.check_invariants();
    }

    #[tokio::test]
    async fn eviction_removes_unpinned_blobs_oldest_first_down_to_low_water() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 500, 400);
        let mut ids = Vec::new();
        for i in 0..7u8 {
            let id = store.put_as(Some(ALICE), &[i; 100]).await.unwrap().id;
            store.backdate(&id, at(u64::from(i)));
            ids.push(id);
        }
        store.retain(ids[1]);
        assert_eq!(store.account_usage(&ALICE), 600);
        let now = at(10_000);
        // Not while the chain's references are unknown.
        assert_eq!(store.evict(now, false), Eviction::default());
        assert_eq!(store.blob_count(), 7);
        let evicted = store.evict(now, true);
        assert_eq!(
            evicted,
            Eviction {
                blobs: 3,
                bytes: 300
            }
        );
        for (i, id) in ids.iter().enumerate() {
            let kept = ![0, 2, 3].contains(&i);
            assert_eq!(store.size_of(id).await.is_some(), kept, "blob {i}");
            assert_eq!(store.path_of(id).exists(), kept, "blob {i}");
        }
        assert_eq!(store.stored_bytes(), 400);
        assert_eq!(store.account_usage(&ALICE), 300);
        // At or below the high-water mark nothing happens.
        assert_eq!(store.evict(now, true), Eviction::default());
        store.check_invariants();
    }

    #[tokio::test]
    async fn eviction_spares_blobs_within_grace() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 200, 0);
        let mut ids = Vec::new();
        for i in 0..5u8 {
            let id = store.put_as(Some(ALICE), &[i; 100]).await.unwrap().id;
            store.backdate(&id, at(u64::from(i)));
            ids.push(id);
        }
        // The grace is 100 s: at 102 s, blobs added at 0..=2 s are past it.
        let evicted = store.evict(at(102), true);
        assert_eq!(
            evicted,
            Eviction {
                blobs: 3,
                bytes: 300
            }
        );
        assert_eq!(store.size_of(&ids[2]).await, None);
        assert_eq!(store.size_of(&ids[3]).await, Some(100));
        assert_eq!(store.size_of(&ids[4]).await, Some(100));
        // A re-upload refreshes a blob: it is spared again.
        store.backdate(&ids[3], at(0));
        store.put_as(Some(BOB), &[3; 100]).await.unwrap();
        assert_eq!(store.uploader_of(&ids[3]), Some(ALICE));
        assert_eq!(store.account_usage(&BOB), 0);
        assert_eq!(store.evict(SystemTime::now(), true), Eviction::default());
        assert_eq!(store.blob_count(), 2);
        store.check_invariants();
    }

    #[tokio::test]
    async fn a_blob_with_an_open_reader_is_evicted_only_after_the_reader_drops() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 0, 0);
        let id = store.put_as(Some(ALICE), b"being read").await.unwrap().id;
        store.backdate(&id, at(0));
        let mut reader = store.open_blob(&id).await.unwrap();
        assert_eq!(store.evict(at(10_000), true), Eviction::default());
        assert_eq!(store.make_room(MIB), Eviction::default());
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(bytes, b"being read");
        drop(reader);
        assert_eq!(
            store.evict(at(10_000), true),
            Eviction {
                blobs: 1,
                bytes: 10
            }
        );
        assert!(store.open_blob(&id).await.is_none());
        assert!(files_under(&home.path().join("blobs")).is_empty());
        store.check_invariants();
    }

    #[tokio::test]
    async fn a_blob_being_reuploaded_is_not_evicted_and_survives_a_discard() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 0, 0);
        let bytes = [6u8; 64];
        let id = store.put_as(Some(ALICE), &bytes).await.unwrap().id;
        store.backdate(&id, at(0));
        let mut writer = store.writer_for(Some(BOB), id, 64).await.unwrap();
        assert_eq!(store.account_usage(&BOB), 0);
        writer.write(&bytes).await.unwrap();
        assert_eq!(store.evict(at(10_000), true), Eviction::default());
        assert!(!writer.finish().await.unwrap().added);
        // The blob was damaged while a re-upload streamed: the re-upload
        // brings it back, charged to its uploader.
        store.backdate(&id, at(0));
        let mut writer = store.writer_for(Some(BOB), id, 64).await.unwrap();
        writer.write(&bytes).await.unwrap();
        store.discard(&id);
        assert!(writer.finish().await.unwrap().added);
        assert_eq!(store.uploader_of(&id), Some(BOB));
        assert_eq!(store.account_usage(&BOB), 64);
        assert_eq!(store.account_usage(&ALICE), 0);
        store.check_invariants();
    }

    #[tokio::test]
    async fn a_blob_retained_before_it_arrives_is_pinned_on_arrival() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 0, 0);
        let uploaded = [1u8; 100];
        let fetched = [2u8; 50];
        store.retain(BlobId::of(&uploaded));
        store.retain(BlobId::of(&fetched));
        assert_eq!(store.pinned_bytes(), 0);
        let a = store.put_as(Some(ALICE), &uploaded).await.unwrap().id;
        let b = store
            .put(Some(BlobId::of(&fetched)), &fetched)
            .await
            .unwrap()
            .id;
        assert!(store.is_pinned(&a) && store.is_pinned(&b));
        assert_eq!(store.pinned_bytes(), 150);
        assert_eq!(store.account_usage(&ALICE), 0);
        store.backdate(&a, at(0));
        store.backdate(&b, at(0));
        assert_eq!(store.evict(at(10_000), true), Eviction::default());
        store.release(&a);
        assert_eq!(store.account_usage(&ALICE), 100);
        assert_eq!(
            store.evict(at(10_000), true),
            Eviction {
                blobs: 1,
                bytes: 100
            }
        );
        assert_eq!(store.account_usage(&ALICE), 0);
        assert_eq!(store.size_of(&b).await, Some(50));
        store.check_invariants();
    }

    #[tokio::test]
    async fn manual_pins_protect_from_eviction() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), MIB, 0, 0);
        let id = store.put_as(Some(ALICE), &[3; 10]).await.unwrap().id;
        store.backdate(&id, at(0));
        store.set_manual_pins(HashSet::from([id]));
        assert_eq!(store.evict(at(10_000), true), Eviction::default());
        assert_eq!(store.pinned_bytes(), 10);
        store.set_manual_pins(HashSet::new());
        assert_eq!(store.pinned_bytes(), 0);
        assert_eq!(store.evict(at(10_000), true).blobs, 1);
        store.check_invariants();
    }

    #[tokio::test]
    async fn the_uploader_survives_a_reopen() {
        let home = tempfile::tempdir().unwrap();
        let store = open(home.path(), MIB, MIB);
        let a = store.put_as(Some(ALICE), &[1; 10]).await.unwrap().id;
        let b = store.put(None, &[2; 20]).await.unwrap().id;
        let c = store.put_as(Some(BOB), &[3; 30]).await.unwrap().id;
        assert!(sidecar_path(&store.path_of(&a)).exists());
        assert!(!sidecar_path(&store.path_of(&b)).exists());
        drop(store);
        // A garbled sidecar means no uploader; an orphan one is removed.
        std::fs::write(sidecar_path(&store_path(home.path(), &c)), "garbage").unwrap();
        let orphan = sidecar_path(&store_path(home.path(), &BlobId([0xab; 32])));
        std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        std::fs::write(&orphan, ALICE.to_hex()).unwrap();
        let reopened = open(home.path(), MIB, MIB);
        assert!(!orphan.exists());
        assert_eq!(reopened.blob_count(), 3);
        assert_eq!(reopened.stored_bytes(), 60);
        assert_eq!(reopened.uploader_of(&a), Some(ALICE));
        assert_eq!(reopened.uploader_of(&b), None);
        assert_eq!(reopened.uploader_of(&c), None);
        assert_eq!(reopened.account_usage(&ALICE), 10);
        assert_eq!(reopened.account_usage(&BOB), 0);
        // Storing a blob again under no uploader clears a stale sidecar.
        reopened.discard(&c);
        std::fs::write(sidecar_path(&reopened.path_of(&c)), ALICE.to_hex()).unwrap();
        reopened.put(None, &[3; 30]).await.unwrap();
        assert_eq!(reopened.uploader_of(&c), None);
        reopened.check_invariants();
    }

    fn store_path(home: &Path, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        home.join("blobs").join(&hex[..2]).join(hex)
    }

    #[tokio::test]
    async fn admission_makes_room_by_evicting_an_old_unpinned_blob() {
        let home = tempfile::tempdir().unwrap();
        let store = open_evicting(home.path(), 300, 300, 300);
        let old = store.put_as(Some(ALICE), &[0; 100]).await.unwrap().id;
        let pinned = store.put_as(Some(ALICE), &[1; 100]).await.unwrap().id;
        let older = store.put_as(Some(BOB), &[2; 100]).await.unwrap().id;
        store.retain(pinned);
        store.backdate(&older, UNIX_EPOCH);
        store.backdate(&pinned, UNIX_EPOCH);
        store.backdate(&old, at(0));
        let new = [3u8; 100];
        // Until the references are known nothing is evicted, and nothing written.
        let err = store.put_as(Some(ALICE), &new).await.unwrap_err();
        assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
        assert_eq!(store.blob_count(), 3);
        store.set_references_complete(true);
        let stored = store.put_as(Some(ALICE), &new).await.unwrap();
        assert!(stored.added);
        // Only the oldest unpinned blob went: the new one fit after it.
        assert_eq!(store.size_of(&older).await, None);
        assert_eq!(store.size_of(&old).await, Some(100));
        assert_eq!(store.size_of(&pinned).await, Some(100));
        assert_eq!(store.account_usage(&BOB), 0);
        assert_eq!(store.stored_bytes(), 300);
        // When the rest is pinned or within grace, there is no more room.
        store.backdate(&old, SystemTime::now());
        let err = store.put_as(Some(BOB), &[4; 100]).await.unwrap_err();
        assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
        // A peer fetch makes room the same way.
        store.backdate(&old, at(0));
        store.put(None, &[5; 100]).await.unwrap();
        assert_eq!(store.size_of(&old).await, None);
        store.check_invariants();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_uploads_and_eviction_never_lose_a_blob() {
        let home = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            high_water_bytes: 0,
            low_water_bytes: 0,
            ..StoreConfig::new(MIB, 100 * MIB)
        };
        let store = BlobStore::open(home.path(), config).unwrap();
        let blobs: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..6u8)
                .map(|i| vec![i; 1000 + usize::from(i) * 977])
                .collect(),
        );
        let pinned = BlobId::of(&blobs[0]);
        store.retain(pinned);
        let stop = Arc::new(AtomicBool::new(false));
        let evictor = {
            let (store, stop) = (store.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut evicted = 0;
                while !stop.load(Ordering::Relaxed) {
                    evicted += store.evict(SystemTime::now(), true).blobs;
                    tokio::task::yield_now().await;
                }
                evicted
            })
        };
        let reader = {
            let (store, stop, blobs) = (store.clone(), Arc::clone(&stop), Arc::clone(&blobs));
            tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let bytes = &blobs[i % blobs.len()];
                    if let Some(mut reader) = store.open_blob(&BlobId::of(bytes)).await {
                        let mut back = Vec::new();
                        reader.read_to_end(&mut back).await.unwrap();
                        assert_eq!(&back, bytes);
                    }
                    i += 1;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut tasks = Vec::new();
        // Each blob has an owner that checks it is there right after its
        // upload, then makes it evictable again; other tasks upload the
        // same blobs (which only ever refreshes them) in between.
        for owner in 0..blobs.len() {
            let (store, blobs) = (store.clone(), Arc::clone(&blobs));
            tasks.push(tokio::spawn(async move {
                let bytes = &blobs[owner];
                let id = BlobId::of(bytes);
                for _ in 0..40 {
                    store.put_as(Some(ALICE), bytes).await.unwrap();
                    let mut reader = store.open_blob(&id).await.expect("lost after upload");
                    let mut back = Vec::new();
                    reader.read_to_end(&mut back).await.unwrap();
                    assert_eq!(&back, bytes);
                    drop(reader);
                    store.backdate(&id, UNIX_EPOCH);
                    tokio::task::yield_now().await;
                }
            }));
        }
        for noise in 0..3 {
            let (store, blobs) = (store.clone(), Arc::clone(&blobs));
            tasks.push(tokio::spawn(async move {
                for round in 0..40usize {
                    let bytes = &blobs[(round + noise) % blobs.len()];
                    let account = if noise == 0 { None } else { Some(BOB) };
                    let mut writer = store
                        .writer_for(account, BlobId::of(bytes), bytes.len() as u64)
                        .await
                        .unwrap();
                    for chunk in bytes.chunks(500) {
                        writer.write(chunk).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    writer.finish().await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.await.unwrap();
        let evicted = evictor.await.unwrap();
        assert!(evicted > 0, "the evictor never ran into an upload");
        assert!(store.size_of(&pinned).await.is_some());
        assert_eq!(store.reserved_bytes(), 0);
        store.check_invariants();
        // What is on disk is what the index says.
        let reopened = BlobStore::open(home.path(), store.config().clone()).unwrap();
        assert_eq!(reopened.blob_count(), store.blob_count());
        assert_eq!(reopened.stored_bytes(), store.stored_bytes());
        reopened.retain(pinned);
        for account in [ALICE, BOB] {
            assert_eq!(
                reopened.account_usage(&account),
                store.account_usage(&account)
            );
        }
    }
}
