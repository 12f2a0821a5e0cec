//! The local deny list: modules this worker never compiles or runs.
//!
//! A module id is the sha3-256 of the module's bytes, so listing an id is
//! the same as listing a hash of known-bad code. The file has one id (64 hex
//! characters, an optional `0x`) per line; `#` starts a comment and blank
//! lines are ignored.

use std::collections::BTreeSet;
use std::path::Path;

use compute_proto::ModuleId;

/// The largest deny-list file read.
pub const DENY_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Why a deny list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DenyError {
    /// The file could not be read.
    #[error("deny list {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than [`DENY_FILE_BYTES_MAX`].
    #[error("deny list {path} is {size} bytes, more than the {DENY_FILE_BYTES_MAX} accepted")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A line is not a module id.
    #[error("deny list line {line}: '{text}' is not a module id ({reason}); write one 64-hex-character module id per line, '#' for comments")]
    BadLine {
        /// The line number, from 1.
        line: usize,
        /// The line's text (trimmed).
        text: String,
        /// What is wrong.
        reason: String,
    },
}

/// A set of refused module ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    ids: BTreeSet<ModuleId>,
}

impl DenyList {
    /// An empty list.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the text of a deny-list file.
    ///
    /// # Errors
    /// [`DenyError::BadLine`] for the first line that is neither blank, a
    /// comment nor a module id.
    pub fn parse(text: &str) -> Result<Self, DenyError> {
        let mut ids = BTreeSet::new();
        for (index, raw) in text.lines().enumerate() {
            let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
            if content.is_empty() {
                continue;
            }
            let id = ModuleId::from_hex(content).map_err(|e| DenyError::BadLine {
                line: index.saturating_add(1),
                text: content.chars().take(100).collect(),
                reason: e.to_string(),
            })?;
            ids.insert(id);
        }
        Ok(Self { ids })
    }

    /// Reads and parses a deny-list file.
    ///
    /// # Errors
    /// When the file cannot be read, is too large, or has a bad line.
    pub fn load(path: &Path) -> Result<Self, DenyError> {
        let shown = path.display().to_string();
        let io = |source| DenyError::Io {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > DENY_FILE_BYTES_MAX {
            return Err(DenyError::TooLarge { path: shown, size });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text)
    }

    /// Whether `module` is refused.
    #[must_use]
    pub fn denies(&self, module: &ModuleId) -> bool {
        self.ids.contains(module)
    }

    /// How many modules are refused.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is refused.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_comments_and_blank_lines_are_parsed() {
        let a = ModuleId([0xaa; 32]);
        let b = ModuleId([0x0b; 32]);
        let text = format!(
            "# known-bad modules\n\n{a}\n   0x{b}   # a crypto miner\n\t\n# {}\n",
            ModuleId([1; 32])
        );
        let list = DenyList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.denies(&a));
        assert!(list.denies(&b));
        assert!(!list.denies(&ModuleId([1; 32])));
    }

    #[test]
    fn upper_case_hex_is_accepted_and_duplicates_collapse() {
        let a = ModuleId([0xab; 32]);
        let text = format!("{}\n{a}\n", a.to_hex().to_uppercase());
        let list = DenyList::parse(&text).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list.denies(&a));
    }

    #[test]
    fn an_empty_file_denies_nothing() {
        let list = DenyList::parse("").unwrap();
        assert!(list.is_empty());
        assert!(!list.denies(&ModuleId([0; 32])));
        assert_eq!(DenyList::parse("# only comments\n\n").unwrap(), list);
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let text = format!("{}\nnot-an-id\n", ModuleId([1; 32]));
        match DenyList::parse(&text) {
            Err(DenyError::BadLine { line, text, .. }) => {
                assert_eq!(line, 2);
                assert_eq!(text, "not-an-id");
            }
            other => panic!("expected a bad line, got {other:?}"),
        }
        assert!(matches!(
            DenyList::parse(&"ab".repeat(31)),
            Err(DenyError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            DenyList::parse(&"zz".repeat(32)),
            Err(DenyError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn files_are_loaded_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny.txt");
        std::fs::write(&path, format!("{}\n", ModuleId([3; 32]))).unwrap();
        assert!(DenyList::load(&path).unwrap().denies(&ModuleId([3; 32])));
        assert!(matches!(
            DenyList::load(&dir.path().join("missing")),
            Err(DenyError::Io { .. })
        ));
    }
}
