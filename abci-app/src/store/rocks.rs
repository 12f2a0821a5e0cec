//! The RocksDB [`Store`]: one database under the node's home directory.

use std::path::Path;

use compute_proto::pb;
use prost::Message;
use rocksdb::{
    Direction, IteratorMode, Options, SnapshotWithThreadMode, WriteBatch, WriteOptions, DB,
};

use super::{Delta, KvRead, Snapshot, Store};

/// The key of the last commit's height and app hash. It sorts after every
/// state key (which start with a printable prefix) and is not part of the
/// app hash.
const COMMIT_INFO_KEY: &[u8] = b"\xffmeta/commit_info";

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused to open the directory.
    #[error("cannot open the state database at {path}: {source}")]
    Open {
        /// The directory.
        path: String,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// The stored commit record does not decode.
    #[error("the state database at {path} has a corrupt commit record: {reason}")]
    Corrupt {
        /// The directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A [`Store`] in RocksDB.
pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    /// Opens (or creates) the database in `path`.
    ///
    /// # Errors
    /// [`StoreError`] when the directory cannot be opened or its commit
    /// record is corrupt.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        // Bounded resources: a node shares its machine with a sandbox.
        options.set_max_open_files(512);
        options.set_keep_log_file_num(4);
        let db = DB::open(&options, path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let store = Self { db };
        if let Some(raw) = store.raw_get(COMMIT_INFO_KEY) {
            pb::CommitInfo::decode(raw.as_slice()).map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        Ok(store)
    }

    fn raw_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.db
            .get(key)
            .unwrap_or_else(|e| panic!("state database read failed, halting: {e}"))
    }
}

/// The first key a scan of `prefix` after `after` reads.
fn scan_start<'k>(prefix: &'k [u8], after: Option<&'k [u8]>) -> &'k [u8] {
    match after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    }
}

/// Collects up to `limit` entries of a forward iterator under `prefix`,
/// strictly after `after`.
fn collect_scan<I>(
    iter: I,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)>
where
    I: Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>>,
{
    let mut out = Vec::new();
    for item in iter {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item.unwrap_or_else(|e| panic!("state database scan failed, halting: {e}"));
        if !k.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| &*k <= a) {
            continue;
        }
        out.push((k.into_vec(), v.into_vec()));
    }
    out
}

impl KvRead for RocksStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.raw_get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = scan_start(prefix, after);
        let iter = self
            .db
            .iterator(IteratorMode::From(start, Direction::Forward));
        collect_scan(iter, prefix, after, limit)
    }
}

/// A RocksDB snapshot: the database as of one commit.
struct RocksSnapshot<'a>(SnapshotWithThreadMode<'a, DB>);

impl KvRead for RocksSnapshot<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0
            .get(key)
            .unwrap_or_else(|e| panic!("state database read failed, halting: {e}"))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = scan_start(prefix, after);
        let iter = self
            .0
            .iterator(IteratorMode::From(start, Direction::Forward));
        collect_scan(iter, prefix, after, limit)
    }
}

impl Snapshot for RocksSnapshot<'_> {
    fn commit_info(&self) -> Option<pb::CommitInfo> {
        self.get(COMMIT_INFO_KEY)
            .map(|raw| decode_commit_info(&raw))
    }
}

fn decode_commit_info(raw: &[u8]) -> pb::CommitInfo {
    // Checked at open; a later failure is corruption under our feet.
    pb::CommitInfo::decode(raw)
        .unwrap_or_else(|e| panic!("commit record became unreadable, halting: {e}"))
}

impl Store for RocksStore {
    fn commit(&self, writes: &Delta, info: &pb::CommitInfo) {
        let mut batch = WriteBatch::default();
        for (k, v) in writes.iter() {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        batch.put(COMMIT_INFO_KEY, info.encode_to_vec());
        // The commit must survive a power cut before CometBFT moves on:
        // otherwise `Info` could report a height whose state was lost.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .write_opt(batch, &options)
            .unwrap_or_else(|e| panic!("state database commit failed, halting: {e}"));
    }

    fn commit_info(&self) -> Option<pb::CommitInfo> {
        self.raw_get(COMMIT_INFO_KEY)
            .map(|raw| decode_commit_info(&raw))
    }

    fn snapshot(&self) -> Box<dyn Snapshot + '_> {
        Box::new(RocksSnapshot(self.db.snapshot()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RocksStore::open(dir.path()).unwrap();
            assert_eq!(store.commit_info(), None);
            let mut d = Delta::new();
            d.put(b"k/1".to_vec(), b"one".to_vec());
            d.put(b"k/2".to_vec(), b"two".to_vec());
            store.commit(
                &d,
                &pb::CommitInfo {
                    height: 3,
                    app_hash: vec![1; 32],
                },
            );
            let mut d = Delta::new();
            d.delete(b"k/1".to_vec());
            store.commit(
                &d,
                &pb::CommitInfo {
                    height: 4,
                    app_hash: vec![2; 32],
                },
            );
        }
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(store.commit_info().unwrap().height, 4);
        assert_eq!(store.get(b"k/1"), None);
        assert_eq!(
            store.scan(b"k/", None, 10),
            vec![(b"k/2".to_vec(), b"two".to_vec())]
        );
    }
}
