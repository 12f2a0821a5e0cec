//! The content-addressed blob store: `<home>/blobs/<2 hex>/<64 hex>`.
//!
//! A blob is written to `<home>/blobs/tmp/` while its SHA3-256 hash is
//! computed, and renamed into place only once the hash is known (and equals
//! the expected one, when one was named). A reader therefore never sees a
//! partial or unverified blob, and a refused upload leaves nothing behind.
//!
//! # Invariants
//! - Every file under a two-hex directory holds bytes whose `sha3_256` is its name.
//! - `stored_bytes + reserved_bytes <= quota_bytes`: bytes are reserved as an
//!   upload streams in, and released when it is refused or turns out to be a
//!   duplicate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use compute_proto::BlobId;
use sha3::{Digest, Sha3_256};
use tokio::io::AsyncWriteExt;

/// The largest number of entries scanned when the store opens, so that a
/// directory filled by something else cannot stall startup forever.
const SCAN_ENTRIES_MAX: usize = 10_000_000;

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

#[derive(Debug, Default)]
struct Usage {
    stored_bytes: u64,
    reserved_bytes: u64,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    max_blob_bytes: u64,
    quota_bytes: u64,
    usage: Mutex<Usage>,
    next_tmp: AtomicU64,
}

/// A content-addressed store of blobs on local disk; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl BlobStore {
    /// Opens (creating if needed) the store under `<home>/blobs`, removes
    /// leftover temporary files and counts the bytes already stored.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created or read.
    pub fn open(home: &Path, max_blob_bytes: u64, quota_bytes: u64) -> Result<Self, StoreError> {
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
        let stored_bytes = scan_stored_bytes(&root)?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                max_blob_bytes,
                quota_bytes,
                usage: Mutex::new(Usage {
                    stored_bytes,
                    reserved_bytes: 0,
                }),
                next_tmp: AtomicU64::new(0),
            }),
        })
    }

    /// The path a blob is stored under.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.inner.root.join(&hex[..2]).join(hex)
    }

    /// The per-blob size limit in bytes.
    pub fn max_blob_bytes(&self) -> u64 {
        self.inner.max_blob_bytes
    }

    /// The bytes of all stored blobs.
    pub fn stored_bytes(&self) -> u64 {
        self.usage().stored_bytes
    }

    /// The size of a stored blob, or `None` when it is not here.
    pub async fn size_of(&self, id: &BlobId) -> Option<u64> {
        let meta = tokio::fs::metadata(self.path_of(id)).await.ok()?;
        meta.is_file().then_some(meta.len())
    }

    /// Opens a stored blob for reading, or `None` when it is not here.
    pub async fn open_blob(&self, id: &BlobId) -> Option<tokio::fs::File> {
        tokio::fs::File::open(self.path_of(id)).await.ok()
    }

    /// Removes a stored blob found damaged, and stops counting its bytes.
    pub fn discard(&self, id: &BlobId) {
        let path = self.path_of(id);
        let mut usage = self.usage();
        if let Ok(meta) = std::fs::metadata(&path) {
            if std::fs::remove_file(&path).is_ok() {
                usage.stored_bytes = usage.stored_bytes.saturating_sub(meta.len());
            }
        }
    }

    /// Starts an upload; `expected` is the id the bytes must hash to.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the temporary file cannot be created.
    pub async fn writer(&self, expected: Option<BlobId>) -> Result<BlobWriter, StoreError> {
        let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .tmp
            .join(format!("{}-{n}.part", std::process::id()));
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
            hasher: Sha3_256::new(),
            len_bytes: 0,
            reserved_bytes: 0,
        })
    }

    /// Stores `bytes` in one call (used by tests and small callers).
    ///
    /// # Errors
    /// As [`BlobWriter::write`] and [`BlobWriter::finish`].
    pub async fn put(&self, expected: Option<BlobId>, bytes: &[u8]) -> Result<Stored, StoreError> {
        let mut writer = self.writer(expected).await?;
        writer.write(bytes).await?;
        writer.finish().await
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        // A panic while holding this lock cannot leave the counters torn:
        // each update is a single assignment.
        self.inner.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let mut usage = self.usage();
        let used = usage.stored_bytes.saturating_add(usage.reserved_bytes);
        match used.checked_add(bytes) {
            Some(total) if total <= self.inner.quota_bytes => {
                usage.reserved_bytes = usage.reserved_bytes.saturating_add(bytes);
                Ok(())
            }
            _ => Err(StoreError::QuotaExceeded {
                stored_bytes: used,
                quota_bytes: self.inner.quota_bytes,
            }),
        }
    }

    fn release(&self, bytes: u64) {
        let mut usage = self.usage();
        usage.reserved_bytes = usage.reserved_bytes.saturating_sub(bytes);
    }
}

fn scan_stored_bytes(root: &Path) -> Result<u64, StoreError> {
    let mut total: u64 = 0;
    let mut seen: usize = 0;
    for shard in std::fs::read_dir(root).map_err(io_error(root))? {
        let shard = shard.map_err(io_error(root))?.path();
        let is_shard = shard
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_shard || !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(io_error(&shard))? {
            seen = seen.saturating_add(1);
            if seen > SCAN_ENTRIES_MAX {
                return Ok(total);
            }
            let entry = entry.map_err(io_error(&shard))?;
            let meta = entry.metadata().map_err(io_error(&entry.path()))?;
            if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
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

/// An upload in progress; dropping it before [`BlobWriter::finish`] discards
/// the bytes and releases their reservation.
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    expected: Option<BlobId>,
    hasher: Sha3_256,
    len_bytes: u64,
    reserved_bytes: u64,
}

impl BlobWriter {
    /// The bytes received so far.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Appends `data`, hashing it and enforcing the size limit and quota.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], [`StoreError::QuotaExceeded`] or
    /// [`StoreError::Io`]; the upload is then unusable and should be dropped.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let len = self.len_bytes.saturating_add(n);
        if len > self.store.inner.max_blob_bytes {
            return Err(StoreError::TooLarge {
                max_bytes: self.store.inner.max_blob_bytes,
            });
        }
        self.store.reserve(n)?;
        self.reserved_bytes = self.reserved_bytes.saturating_add(n);
        let file = self.file.as_mut().ok_or_else(|| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("write after finish"),
        })?;
        file.write_all(data).await.map_err(io_error(&self.path))?;
        self.hasher.update(data);
        self.len_bytes = len;
        Ok(())
    }

    /// Checks the hash and moves the blob into place.
    ///
    /// # Errors
    /// [`StoreError::HashMismatch`] when the bytes are not the expected blob
    /// (nothing is stored), or [`StoreError::Io`].
    pub async fn finish(mut self) -> Result<Stored, StoreError> {
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
        // The existence check, the rename and the accounting happen under one
        // lock so that two uploads of the same blob count it once.
        let added = {
            let mut usage = self.store.usage();
            let exists = std::fs::metadata(&dest).is_ok_and(|m| m.is_file());
            if !exists {
                std::fs::rename(&self.path, &dest).map_err(io_error(&dest))?;
                usage.stored_bytes = usage.stored_bytes.saturating_add(self.len_bytes);
            }
            usage.reserved_bytes = usage.reserved_bytes.saturating_sub(self.reserved_bytes);
            self.reserved_bytes = 0;
            !exists
        };
        if !added {
            let _ = std::fs::remove_file(&self.path);
        }
        Ok(Stored {
            id,
            size_bytes: self.len_bytes,
            added,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        self.store.release(self.reserved_bytes);
        // After a successful finish the temporary file is already gone; the
        // error from removing it again is expected and ignored.
        drop(self.file.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

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

    #[tokio::test]
    async fn a_blob_is_stored_under_its_hash_and_read_back() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), MIB, 10 * MIB).unwrap();
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
        assert_eq!(store.size_of(&id).await, Some(11));
        assert_eq!(store.size_of(&BlobId([0; 32])).await, None);
    }

    #[tokio::test]
    async fn a_hash_mismatch_is_refused_and_leaves_nothing_on_disk() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), MIB, 10 * MIB).unwrap();
        let named = BlobId::of(b"the real bytes");
        let err = store.put(Some(named), b"other bytes").await.unwrap_err();
        assert!(
            matches!(err, StoreError::HashMismatch { expected, .. } if expected == named),
            "{err}"
        );
        assert!(files_under(&home.path().join("blobs")).is_empty());
        assert_eq!(store.stored_bytes(), 0);
        assert_eq!(store.usage().reserved_bytes, 0);
        assert_eq!(store.size_of(&named).await, None);
    }

    #[tokio::test]
    async fn the_per_blob_size_cap_is_enforced_while_streaming() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), 100, 10 * MIB).unwrap();
        assert!(store.put(None, &[7; 100]).await.is_ok());
        let mut writer = store.writer(None).await.unwrap();
        writer.write(&[1; 60]).await.unwrap();
        let err = writer.write(&[1; 41]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max_bytes: 100 }),
            "{err}"
        );
        drop(writer);
        assert_eq!(files_under(&home.path().join("blobs")).len(), 1);
        assert_eq!(store.stored_bytes(), 100);
    }

    #[tokio::test]
    async fn the_quota_is_enforced_and_freed_by_refused_uploads() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), 1000, 250).unwrap();
        store.put(None, &[1; 100]).await.unwrap();
        store.put(None, &[2; 100]).await.unwrap();
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
        // A refused upload returns its reservation: 50 bytes still fit.
        store.put(None, &[4; 50]).await.unwrap();
        assert_eq!(store.stored_bytes(), 250);
        // The quota is counted again from disk when the store reopens.
        drop(store);
        let reopened = BlobStore::open(home.path(), 1000, 250).unwrap();
        assert_eq!(reopened.stored_bytes(), 250);
        assert!(reopened.put(None, &[5; 1]).await.is_err());
    }

    #[tokio::test]
    async fn a_stored_blob_does_not_count_twice() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), 1000, 200).unwrap();
        assert!(store.put(None, &[1; 100]).await.unwrap().added);
        let again = store.put(None, &[1; 40]).await.unwrap();
        assert!(again.added);
        assert_eq!(store.stored_bytes(), 140);
        // Storing it again needs room while streaming, then is a no-op.
        let dup = store.put(None, &[1; 40]).await.unwrap();
        assert!(!dup.added);
        assert_eq!(store.stored_bytes(), 140);
    }

    #[tokio::test]
    async fn concurrent_puts_of_the_same_blob_store_it_once() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), MIB, 10 * MIB).unwrap();
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
        assert_eq!(store.usage().reserved_bytes, 0);
        let files = files_under(&home.path().join("blobs"));
        assert_eq!(files, vec![store.path_of(&id)]);
        assert_eq!(std::fs::read(store.path_of(&id)).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_discarded_blob_is_gone_and_uncounted() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), MIB, MIB).unwrap();
        let stored = store.put(None, b"soon damaged").await.unwrap();
        store.discard(&stored.id);
        assert_eq!(store.size_of(&stored.id).await, None);
        assert_eq!(store.stored_bytes(), 0);
        store.discard(&stored.id);
        assert_eq!(store.stored_bytes(), 0);
    }

    #[tokio::test]
    async fn leftover_temporary_files_are_removed_on_open() {
        let home = tempfile::tempdir().unwrap();
        let store = BlobStore::open(home.path(), MIB, MIB).unwrap();
        let mut writer = store.writer(None).await.unwrap();
        writer.write(b"half").await.unwrap();
        // Simulate a crash: the temporary file stays behind.
        std::mem::forget(writer);
        assert_eq!(files_under(&home.path().join("blobs")).len(), 1);
        let reopened = BlobStore::open(home.path(), MIB, MIB).unwrap();
        assert!(files_under(&home.path().join("blobs")).is_empty());
        assert_eq!(reopened.stored_bytes(), 0);
    }
}
