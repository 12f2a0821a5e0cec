//! The operator's manual pins: a text file, by convention `<home>/pins`,
//! holding one blob id (64 hex) per line. A `#` starts a comment (on its own
//! line or after an id); blank lines are ignored. Pinned blobs are never
//! evicted from the store (see [`super::store::BlobStore::set_manual_pins`]).
//!
//! [`add`] and [`remove`] rewrite the file atomically (a temporary file in
//! the same directory, then a rename), keeping its comments, so that a
//! gateway reloading it never reads half a file.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use compute_proto::BlobId;

/// The file name of the pins file under the gateway's home.
pub const PINS_FILE: &str = "pins";
/// The largest pins file read (over a million ids), so that a stray huge
/// file cannot exhaust memory.
pub const PINS_FILE_BYTES_MAX: u64 = 128 << 20;

/// Why the pins file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A line is neither blank, a comment, nor a blob id.
    #[error("{path}:{line}: not a blob id (64 hex characters): {reason}")]
    BadLine {
        /// The pins file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// Why the line is not an id.
        reason: String,
    },
    /// The file is larger than [`PINS_FILE_BYTES_MAX`].
    #[error("{path} is larger than {max_bytes} bytes")]
    TooLarge {
        /// The pins file.
        path: PathBuf,
        /// The limit.
        max_bytes: u64,
    },
    /// A filesystem operation failed.
    #[error("pins file {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pins file under a gateway's home: `<home>/pins`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(PINS_FILE)
}

/// Reads the pinned ids; a missing file pins nothing.
///
/// # Errors
/// [`PinError::BadLine`] naming the first bad line, [`PinError::TooLarge`],
/// or [`PinError::Io`].
pub fn load(path: &Path) -> Result<HashSet<BlobId>, PinError> {
    let Some(text) = read(path)? else {
        return Ok(HashSet::new());
    };
    let mut ids = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(id) = parse_line(path, n, line)? {
            ids.insert(id);
        }
    }
    Ok(ids)
}

/// Pins `ids` (those not pinned yet are appended); returns how many were
/// added. Creates the file when missing.
///
/// # Errors
/// As [`load`] (a file with a bad line is not rewritten), and
/// [`PinError::Io`] when the file cannot be written.
pub fn add(path: &Path, ids: &[BlobId]) -> Result<usize, PinError> {
    let text = read(path)?.unwrap_or_default();
    let mut lines: Vec<String> = Vec::new();
    let mut present = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(id) = parse_line(path, n, line)? {
            present.insert(id);
        }
        lines.push(line.to_owned());
    }
    let mut added = 0usize;
    for id in ids {
        if present.insert(*id) {
            lines.push(id.to_hex());
            added = added.saturating_add(1);
        }
    }
    if added > 0 {
        write_atomically(path, &lines)?;
    }
    Ok(added)
}

/// Unpins `ids` (every line naming one is dropped, comments stay); returns
/// how many of them were pinned. A missing file is left missing.
///
/// # Errors
/// As [`load`] (a file with a bad line is not rewritten), and
/// [`PinError::Io`] when the file cannot be written.
pub fn remove(path: &Path, ids: &[BlobId]) -> Result<usize, PinError> {
    let Some(text) = read(path)? else {
        return Ok(0);
    };
    let unwanted: HashSet<BlobId> = ids.iter().copied().collect();
    let mut lines: Vec<String> = Vec::new();
    let mut removed = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        match parse_line(path, n, line)? {
            Some(id) if unwanted.contains(&id) => {
                removed.insert(id);
            }
            _ => lines.push(line.to_owned()),
        }
    }
    if !removed.is_empty() {
        write_atomically(path, &lines)?;
    }
    Ok(removed.len())
}

/// The file's text, or `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, PinError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let too_large = || PinError::TooLarge {
        path: path.to_path_buf(),
        max_bytes: PINS_FILE_BYTES_MAX,
    };
    if file.metadata().map_err(io_error(path))?.len() > PINS_FILE_BYTES_MAX {
        return Err(too_large());
    }
    let mut text = String::new();
    file.take(PINS_FILE_BYTES_MAX.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(io_error(path))?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > PINS_FILE_BYTES_MAX {
        return Err(too_large());
    }
    Ok(Some(text))
}

/// The id on line `index` (from 0), or `None` for a blank or comment line.
fn parse_line(path: &Path, index: usize, line: &str) -> Result<Option<BlobId>, PinError> {
    let content = line
        .split_once('#')
        .map_or(line, |(before, _)| before)
        .trim();
    if content.is_empty() {
        return Ok(None);
    }
    BlobId::from_hex(content)
        .map(Some)
        .map_err(|e| PinError::BadLine {
            path: path.to_path_buf(),
            line: index.saturating_add(1),
            reason: e.to_string(),
        })
}

/// Replaces the file with `lines` through a temporary file and a rename.
fn write_atomically(path: &Path, lines: &[String]) -> Result<(), PinError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PINS_FILE.to_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io_error(&temp))?;
        for line in lines {
            file.write_all(line.as_bytes()).map_err(io_error(&temp))?;
            file.write_all(b"\n").map_err(io_error(&temp))?;
        }
        file.sync_all().map_err(io_error(&temp))?;
        std::fs::rename(&temp, path).map_err(io_error(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlobId {
        BlobId([n; 32])
    }

    #[test]
    fn a_missing_file_pins_nothing() {
        let home = tempfile::tempdir().unwrap();
        let path = path_in(home.path());
        assert!(load(&path).unwrap().is_empty());
        assert_eq!(remove(&path, &[id(1)]).unwrap(), 0);
        assert!(!path.exists());
    }

    #[test]
    fn ids_comments_and_blank_lines_are_read() {
        let home = tempfile::tempdir().unwrap();
        let path = path_in(home.path());
        let text = format!(
            "# model weights\n\n{}\n  {}  # the dataset\n{}\n",
            id(1).to_hex(),
            id(2).to_hex().to_uppercase(),
            id(1).to_hex()
        );
        std::fs::write(&path, text).unwrap();
        assert_eq!(load(&path).unwrap(), HashSet::from([id(1), id(2)]));
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        let path = path_in(home.path());
        std::fs::write(&path, format!("# ok\n{}\nnot an id\n", id(1).to_hex())).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, PinError::BadLine { line: 3, .. }), "{err}");
        assert!(err.to_string().contains(":3:"), "{err}");
        // A file that cannot be parsed is not rewritten.
        assert!(add(&path, &[id(2)]).is_err());
        assert!(remove(&path, &[id(1)]).is_err());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("not an id"));
    }

    #[test]
    fn add_and_remove_rewrite_the_file_keeping_comments() {
        let home = tempfile::tempdir().unwrap();
        let path = path_in(home.path());
        assert_eq!(add(&path, &[id(1), id(2), id(1)]).unwrap(), 2);
        assert_eq!(load(&path).unwrap(), HashSet::from([id(1), id(2)]));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# keep me\n{text}# and me")).unwrap();
        assert_eq!(add(&path, &[id(2), id(3)]).unwrap(), 1);
        assert_eq!(add(&path, &[id(3)]).unwrap(), 0);
        assert_eq!(remove(&path, &[id(1), id(4)]).unwrap(), 1);
        assert_eq!(load(&path).unwrap(), HashSet::from([id(2), id(3)]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "# keep me\n{}\n# and me\n{}\n",
                id(2).to_hex(),
                id(3).to_hex()
            )
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(PINS_FILE)]);
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let path = path_in(home.path());
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(PINS_FILE_BYTES_MAX + 1).unwrap();
        assert!(matches!(
            load(&path).unwrap_err(),
            PinError::TooLarge { .. }
        ));
    }
}
