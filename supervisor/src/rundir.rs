//! The run directory (`--run-dir`): what operators and a later supervisor
//! need to know about this one.
//!
//! * `supervisor.pid`, `cometbft.pid`, `compute-abci.pid`: the running
//!   processes (a child's file is removed when it is stopped).
//! * `last-height`: the highest height the own node reported, so that a
//!   repair after a restart of the supervisor itself knows where to start.
//! * `needs-reindex`: present while the children may be running or after an
//!   unclean stop; removed only on a clean shutdown. A supervisor that finds
//!   it repairs the event index before it starts cometbft.
//!
//! Without a run directory all of this lives in memory only.

use std::path::{Path, PathBuf};

use crate::process::Role;

/// The marker of a possibly damaged event index.
pub const NEEDS_REINDEX: &str = "needs-reindex";
/// The file with the last height seen.
pub const LAST_HEIGHT: &str = "last-height";
/// The supervisor's own pid file.
pub const SUPERVISOR_PID: &str = "supervisor.pid";

/// A run-directory file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("run directory {path}: {source}")]
pub struct RunDirError {
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// The run directory, or none.
#[derive(Clone, Debug, Default)]
pub struct RunDir {
    dir: Option<PathBuf>,
}

impl RunDir {
    /// Creates `dir` if needed and writes the supervisor's pid into it.
    pub fn open(dir: Option<&Path>) -> Result<Self, RunDirError> {
        let Some(dir) = dir else {
            return Ok(Self { dir: None });
        };
        std::fs::create_dir_all(dir).map_err(|source| RunDirError {
            path: dir.to_owned(),
            source,
        })?;
        let run_dir = Self {
            dir: Some(dir.to_owned()),
        };
        run_dir.write(SUPERVISOR_PID, &format!("{}\n", std::process::id()))?;
        Ok(run_dir)
    }

    /// The directory, if any.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Writes `name` atomically (a temporary file renamed over it).
    fn write(&self, name: &str, text: &str) -> Result<(), RunDirError> {
        let Some(path) = self.file(name) else {
            return Ok(());
        };
        let tmp = path.with_extension("tmp");
        let err = |source| RunDirError {
            path: path.clone(),
            source,
        };
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name)?).ok()
    }

    fn remove(&self, name: &str) {
        if let Some(path) = self.file(name) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a run-directory file")
                }
            }
        }
    }

    /// Records a child's pid.
    pub fn write_pid(&self, role: Role, pid: u32) -> Result<(), RunDirError> {
        self.write(&format!("{}.pid", role.name()), &format!("{pid}\n"))
    }

    /// The pid a file records, if any.
    pub fn read_pid(&self, role: Role) -> Option<u32> {
        self.read(&format!("{}.pid", role.name()))?
            .trim()
            .parse()
            .ok()
    }

    /// Forgets a child's pid.
    pub fn remove_pid(&self, role: Role) {
        self.remove(&format!("{}.pid", role.name()));
    }

    /// The last height recorded.
    pub fn last_height(&self) -> Option<u64> {
        self.read(LAST_HEIGHT)?.trim().parse().ok()
    }

    /// Records the last height seen.
    pub fn write_last_height(&self, height: u64) -> Result<(), RunDirError> {
        self.write(LAST_HEIGHT, &format!("{height}\n"))
    }

    /// Why the event index may need repair, if the marker is there.
    pub fn needs_reindex(&self) -> Option<String> {
        self.read(NEEDS_REINDEX).map(|s| s.trim().to_owned())
    }

    /// Sets the marker with a reason.
    pub fn mark_needs_reindex(&self, why: &str) -> Result<(), RunDirError> {
        self.write(NEEDS_REINDEX, &format!("{why}\n"))
    }

    /// Removes the marker (a clean shutdown).
    pub fn clear_needs_reindex(&self) {
        self.remove(NEEDS_REINDEX);
    }

    /// Removes the supervisor's pid file (at exit).
    pub fn close(&self) {
        self.remove(SUPERVISOR_PID);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_garbage_reads_as_none() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let run = RunDir::open(Some(&dir)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(SUPERVISOR_PID)).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert_eq!(run.read_pid(Role::Cometbft), None);
        run.write_pid(Role::Cometbft, 42).unwrap();
        assert_eq!(run.read_pid(Role::Cometbft), Some(42));
        assert!(dir.join("cometbft.pid").is_file());
        run.remove_pid(Role::Cometbft);
        run.remove_pid(Role::Cometbft);
        assert_eq!(run.read_pid(Role::Cometbft), None);
        run.write_last_height(17).unwrap();
        assert_eq!(run.last_height(), Some(17));
        std::fs::write(dir.join(LAST_HEIGHT), "x").unwrap();
        assert_eq!(run.last_height(), None);
        assert_eq!(run.needs_reindex(), None);
        run.mark_needs_reindex("killed").unwrap();
        assert_eq!(run.needs_reindex().as_deref(), Some("killed"));
        run.clear_needs_reindex();
        assert_eq!(run.needs_reindex(), None);
        run.close();
        assert!(!dir.join(SUPERVISOR_PID).exists());
    }

    #[test]
    fn no_run_dir_is_all_in_memory() {
        let run = RunDir::open(None).unwrap();
        run.write_pid(Role::Abci, 1).unwrap();
        assert_eq!(run.read_pid(Role::Abci), None);
        run.mark_needs_reindex("x").unwrap();
        assert_eq!(run.needs_reindex(), None);
    }
}
