//! The lock on a worker's home directory, so that two worker processes
//! never share a journal.

use std::fs::File;
use std::path::Path;

use crate::error::WorkerError;

/// An exclusive lock on a home directory, held until dropped.
#[derive(Debug)]
pub struct HomeLock {
    _file: File,
}

impl HomeLock {
    /// Creates the home directory and takes an exclusive lock on it (a lock
    /// on `worker.lock` inside it, released by the system when the process
    /// ends, however it ends).
    ///
    /// # Errors
    /// [`WorkerError::HomeLocked`] when another process holds the lock;
    /// [`WorkerError::Home`] when the directory or the lock file cannot be
    /// created.
    pub fn acquire(home: &Path) -> Result<Self, WorkerError> {
        let io = |source| WorkerError::Home {
            path: home.display().to_string(),
            source,
        };
        std::fs::create_dir_all(home).map_err(io)?;
        let path = home.join("worker.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(WorkerError::HomeLocked(home.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_cannot_lock_the_same_home() {
        let dir = tempfile::tempdir().unwrap();
        let first = HomeLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            HomeLock::acquire(dir.path()),
            Err(WorkerError::HomeLocked(_))
        ));
        drop(first);
        HomeLock::acquire(dir.path()).unwrap();
    }
}
