//! The worker's write-ahead journal: one small JSON file per task it holds.
//!
//! A task's result, fuel and salt are written (and fsync'd) before its
//! commitment leaves the machine, so a restarted worker opens exactly the
//! commitment it sent and never commits a second time with a new salt.
//! Every write goes to a temporary file that is synced and renamed over the
//! entry, then the directory is synced: a crash leaves either the old entry
//! or the new one, never half of one.
//!
//! Layout: `<home>/journal/<job hex>-<task>.json`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use compute_proto::{BlobId, Hash32, JobId, ModuleId};
use serde::{Deserialize, Serialize};

/// The format version written into every entry.
pub const JOURNAL_VERSION: u32 = 1;

/// The largest entry file read back; entries are small (an inline output at
/// most), so anything larger is damage.
pub const ENTRY_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The suffix given to a damaged entry that was set aside.
pub const CORRUPT_SUFFIX: &str = "corrupt";

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or directory operation failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An entry file is not a valid entry.
    #[error("journal entry {path} is damaged ({reason}); it was not used: inspect it, then delete it or restore it from a backup")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry could not be encoded.
    #[error("journal entry for {0}: cannot encode: {1}")]
    Encode(TaskKey, String),
}

/// One task of one job, as the chain names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskKey {
    /// The job.
    pub job: JobId,
    /// The task's index in the job.
    pub task: u32,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.job, self.task)
    }
}

impl TaskKey {
    /// The entry's file name: `<job hex>-<task>.json`.
    #[must_use]
    pub fn file_name(&self) -> String {
        format!("{}-{}.json", self.job.to_hex(), self.task)
    }

    /// Parses a file name made by [`TaskKey::file_name`].
    #[must_use]
    pub fn from_file_name(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".json")?;
        let (job, task) = stem.split_once('-')?;
        Some(Self {
            job: JobId::from_hex(job).ok()?,
            task: task.parse().ok()?,
        })
    }
}

/// How far a task has gone on the chain, as far as this worker knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// The result is computed and sealed; the commitment may not have reached
    /// the chain yet.
    Prepared,
    /// The chain accepted the commitment.
    Committed,
    /// The chain accepted the reveal.
    Revealed,
}

/// What the worker must remember about one task to commit and reveal it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// [`JOURNAL_VERSION`].
    pub version: u32,
    /// The job.
    pub job: JobId,
    /// The task's index.
    pub task: u32,
    /// The module that ran.
    pub module: ModuleId,
    /// The hash committed to (the output's blob id, or a failure hash).
    pub result_hash: Hash32,
    /// The fuel committed to.
    pub fuel_used: u64,
    /// The commitment's salt, hex.
    pub salt: String,
    /// The output's blob id when the task completed and the output was
    /// stored in the gateway's blob store.
    pub output_blob: Option<BlobId>,
    /// The output itself, base64, when it is small enough to reveal inline.
    pub output_inline: Option<String>,
    /// Whether the result was falsified on purpose (`--cheat`).
    pub cheat: bool,
    /// How far the task has gone.
    pub state: EntryState,
}

impl Entry {
    /// The task this entry is about.
    #[must_use]
    pub fn key(&self) -> TaskKey {
        TaskKey {
            job: self.job,
            task: self.task,
        }
    }

    /// The salt's bytes.
    ///
    /// # Errors
    /// When the stored salt is not hex of 1 to 64 bytes.
    pub fn salt_bytes(&self) -> Result<Vec<u8>, String> {
        let salt = hex::decode(&self.salt).map_err(|e| format!("salt is not hex: {e}"))?;
        if salt.is_empty() || salt.len() > 64 {
            return Err(format!("salt must be 1 to 64 bytes, got {}", salt.len()));
        }
        Ok(salt)
    }

    /// The inline output's bytes, if any.
    ///
    /// # Errors
    /// When the stored output is not base64.
    pub fn inline_output(&self) -> Result<Option<Vec<u8>>, String> {
        use base64::Engine as _;
        self.output_inline
            .as_ref()
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("inline output is not base64: {e}"))
            })
            .transpose()
    }

    fn check(&self) -> Result<(), String> {
        if self.version != JOURNAL_VERSION {
            return Err(format!(
                "version {} is not the supported version {JOURNAL_VERSION}",
                self.version
            ));
        }
        self.salt_bytes()?;
        self.inline_output()?;
        Ok(())
    }
}

/// The journal: a directory of entries and their in-memory copy.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    entries: BTreeMap<TaskKey, Entry>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Journal {
    /// Opens (creating it if needed) the journal in `dir` and reads every
    /// entry. Leftover temporary files from an interrupted write are removed.
    /// A damaged entry is renamed to `<name>.corrupt` and reported in the
    /// second value, so one bad file never stops the worker and is never
    /// silently reused.
    ///
    /// # Errors
    /// When the directory cannot be created or listed.
    pub fn open(dir: &Path) -> Result<(Self, Vec<JournalError>), JournalError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut entries = BTreeMap::new();
        let mut damaged = Vec::new();
        let listing = fs::read_dir(dir).map_err(io_error(dir))?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for item in listing {
            let item = item.map_err(io_error(dir))?;
            paths.push(item.path());
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // An interrupted write: the entry it was replacing is intact.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match read_entry(&path) {
                Ok(entry) => {
                    entries.insert(entry.key(), entry);
                }
                Err(error) => {
                    let aside = path.with_extension(format!("json.{CORRUPT_SUFFIX}"));
                    let _ = fs::rename(&path, &aside);
                    damaged.push(error);
                }
            }
        }
        Ok((
            Self {
                dir: dir.to_path_buf(),
                entries,
            },
            damaged,
        ))
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry of `key`, if any.
    #[must_use]
    pub fn get(&self, key: &TaskKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Writes `entry` durably, replacing any earlier one of its task.
    ///
    /// # Errors
    /// When the file cannot be written, synced or renamed; the earlier entry
    /// (on disk and in memory) is then unchanged.
    pub fn put(&mut self, entry: Entry) -> Result<(), JournalError> {
        let key = entry.key();
        let json = serde_json::to_vec_pretty(&entry)
            .map_err(|e| JournalError::Encode(key, e.to_string()))?;
        let path = self.dir.join(key.file_name());
        let temporary = self.dir.join(format!(".{}.tmp", key.file_name()));
        write_synced(&temporary, &json)?;
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        sync_dir(&self.dir)?;
        self.entries.insert(key, entry);
        Ok(())
    }

    /// Moves the entry of `key` to `state` (no write when it is already there).
    ///
    /// # Errors
    /// As [`Journal::put`]; `Ok(false)` when there is no such entry.
    pub fn set_state(&mut self, key: &TaskKey, state: EntryState) -> Result<bool, JournalError> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(false);
        };
        if entry.state == state {
            return Ok(true);
        }
        let mut entry = entry.clone();
        entry.state = state;
        self.put(entry)?;
        Ok(true)
    }

    /// Deletes the entry of `key`.
    ///
    /// # Errors
    /// When the file exists and cannot be removed.
    pub fn remove(&mut self, key: &TaskKey) -> Result<(), JournalError> {
        let path = self.dir.join(key.file_name());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        sync_dir(&self.dir)?;
        self.entries.remove(key);
        Ok(())
    }
}

fn read_entry(path: &Path) -> Result<Entry, JournalError> {
    let shown = path.display().to_string();
    let corrupt = |reason: String| JournalError::Corrupt {
        path: shown.clone(),
        reason,
    };
    let size = fs::metadata(path).map_err(io_error(path))?.len();
    if size > ENTRY_BYTES_MAX {
        return Err(corrupt(format!(
            "{size} bytes, more than the {ENTRY_BYTES_MAX} an entry may have"
        )));
    }
    let bytes = fs::read(path).map_err(io_error(path))?;
    let entry: Entry =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not an entry: {e}")))?;
    entry.check().map_err(corrupt)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if TaskKey::from_file_name(name) != Some(entry.key()) {
        return Err(corrupt(format!(
            "it describes task {} but is named {name}",
            entry.key()
        )));
    }
    Ok(entry)
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let mut file = fs::File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Syncs a directory so that a rename or removal in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job: u8, task: u32) -> Entry {
        Entry {
            version: JOURNAL_VERSION,
            job: JobId([job; 32]),
            task,
            module: ModuleId([7; 32]),
            result_hash: Hash32([8; 32]),
            fuel_used: 1234,
            salt: hex::encode([9u8; 32]),
            output_blob: Some(BlobId([8; 32])),
            output_inline: Some("aGVsbG8=".to_owned()),
            cheat: false,
            state: EntryState::Prepared,
        }
    }

    #[test]
    fn entries_written_are_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, damaged) = Journal::open(dir.path()).unwrap();
        assert!(damaged.is_empty());
        journal.put(entry(1, 0)).unwrap();
        journal.put(entry(1, 3)).unwrap();
        journal.put(entry(2, 0)).unwrap();
        assert!(journal
            .set_state(&entry(1, 3).key(), EntryState::Committed)
            .unwrap());
        drop(journal);

        let (journal, damaged) = Journal::open(dir.path()).unwrap();
        assert!(damaged.is_empty());
        assert_eq!(journal.entries().count(), 3);
        let reread = journal.get(&entry(1, 3).key()).unwrap();
        assert_eq!(reread.state, EntryState::Committed);
        assert_eq!(reread.salt_bytes().unwrap(), vec![9u8; 32]);
        assert_eq!(reread.inline_output().unwrap(), Some(b"hello".to_vec()));
        assert_eq!(journal.get(&entry(1, 0).key()), Some(&entry(1, 0)));
    }

    #[test]
    fn a_put_replaces_the_entry_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.put(entry(1, 0)).unwrap();
        let mut changed = entry(1, 0);
        changed.state = EntryState::Revealed;
        changed.fuel_used = 99;
        journal.put(changed.clone()).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![entry(1, 0).key().file_name()]);
        let (journal, _) = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.get(&changed.key()), Some(&changed));
    }

    #[test]
    fn an_interrupted_write_leaves_the_old_entry_and_its_temporary_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.put(entry(1, 0)).unwrap();
        drop(journal);
        // A crash between writing the temporary file and renaming it.
        let temporary = dir
            .path()
            .join(format!(".{}.tmp", entry(1, 0).key().file_name()));
        fs::write(&temporary, b"{\"version\": 1, \"job\": \"trunc").unwrap();
        let (journal, damaged) = Journal::open(dir.path()).unwrap();
        assert!(damaged.is_empty());
        assert!(!temporary.exists());
        assert_eq!(journal.get(&entry(1, 0).key()), Some(&entry(1, 0)));
    }

    #[test]
    fn a_damaged_entry_is_reported_clearly_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.put(entry(1, 0)).unwrap();
        journal.put(entry(2, 0)).unwrap();
        drop(journal);
        let path = dir.path().join(entry(2, 0).key().file_name());
        fs::write(&path, b"{ not json").unwrap();

        let (journal, damaged) = Journal::open(dir.path()).unwrap();
        assert_eq!(damaged.len(), 1);
        let message = damaged[0].to_string();
        assert!(matches!(damaged[0], JournalError::Corrupt { .. }));
        assert!(message.contains("damaged"), "{message}");
        assert!(
            message.contains(&entry(2, 0).key().file_name()),
            "{message}"
        );
        assert!(journal.get(&entry(2, 0).key()).is_none());
        assert!(journal.get(&entry(1, 0).key()).is_some());
        assert!(!path.exists());
        assert!(path.with_extension("json.corrupt").exists());
    }

    #[test]
    fn entries_with_a_bad_salt_or_a_wrong_name_are_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad_salt = entry(3, 0);
        bad_salt.salt = "zz".to_owned();
        fs::write(
            dir.path().join(bad_salt.key().file_name()),
            serde_json::to_vec(&bad_salt).unwrap(),
        )
        .unwrap();
        fs::write(
            dir.path().join(entry(4, 1).key().file_name()),
            serde_json::to_vec(&entry(4, 2)).unwrap(),
        )
        .unwrap();
        let (journal, damaged) = Journal::open(dir.path()).unwrap();
        assert_eq!(damaged.len(), 2);
        assert_eq!(journal.entries().count(), 0);
        let text: Vec<String> = damaged.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("salt")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("named")), "{text:?}");
    }

    #[test]
    fn removing_an_entry_deletes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.put(entry(1, 0)).unwrap();
        journal.remove(&entry(1, 0).key()).unwrap();
        journal.remove(&entry(1, 0).key()).unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.entries().count(), 0);
        assert!(!journal.dir().join(entry(1, 0).key().file_name()).exists());
    }

    #[test]
    fn task_keys_round_trip_through_file_names() {
        let key = entry(5, 42).key();
        assert_eq!(TaskKey::from_file_name(&key.file_name()), Some(key));
        assert_eq!(TaskKey::from_file_name("x-1.json"), None);
        assert_eq!(TaskKey::from_file_name("notes.txt"), None);
    }
}
