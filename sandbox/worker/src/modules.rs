//! The on-disk cache of module bytes, by module id.
//!
//! Files are `<home>/modules/<id hex>.wasm`. Bytes are checked against the
//! id both when they arrive from the gateway and when they are read back, so
//! a damaged file is dropped and fetched again rather than run.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use compute_proto::ModuleId;

/// Makes temporary file names unique within the process, so that two tasks
/// caching the same module at once never write the same file.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of module bytes.
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
}

impl ModuleCache {
    /// A cache in `dir`, created if needed.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, id: &ModuleId) -> PathBuf {
        self.dir.join(format!("{}.wasm", id.to_hex()))
    }

    /// The cached bytes of `id`, if present and intact; a damaged file is
    /// removed.
    #[must_use]
    pub fn get(&self, id: &ModuleId) -> Option<Vec<u8>> {
        let path = self.path(id);
        let bytes = fs::read(&path).ok()?;
        if ModuleId::of(&bytes) == *id {
            Some(bytes)
        } else {
            tracing::warn!(module = %id, path = %path.display(), "cached module is damaged; removed");
            let _ = fs::remove_file(&path);
            None
        }
    }

    /// Stores the bytes of a module (already checked to hash to `id`),
    /// whole or not at all.
    ///
    /// # Errors
    /// When the file cannot be written or renamed.
    pub fn put(&self, id: &ModuleId, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(id);
        let temporary = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            id.to_hex(),
            std::process::id(),
            TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_cached_and_damaged_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ModuleCache::open(&dir.path().join("modules")).unwrap();
        let bytes = b"\0asm fake module".to_vec();
        let id = ModuleId::of(&bytes);
        assert_eq!(cache.get(&id), None);
        cache.put(&id, &bytes).unwrap();
        assert_eq!(cache.get(&id), Some(bytes));
        fs::write(cache.path(&id), b"tampered").unwrap();
        assert_eq!(cache.get(&id), None);
        assert!(!cache.path(&id).exists());
    }
}
