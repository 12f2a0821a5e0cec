//! ed25519 signing keys and the key file format shared by every tool.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ids::AccountId;

/// Why a key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file is not the expected JSON.
    #[error("key file {path} is not a valid key file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The secret key is not 32 bytes of hex.
    #[error("secret key must be 64 hex characters (a 32-byte ed25519 seed): {0}")]
    Secret(String),
    /// The public key stored beside the secret does not match it.
    #[error("key file {path}: account {stored} does not match the secret key (derives {derived})")]
    Mismatch {
        /// The file.
        path: String,
        /// The account written in the file.
        stored: String,
        /// The account the secret derives.
        derived: String,
    },
}

/// Why 32 bytes are not a public key the chain accepts.
///
/// ZIP-215 verification (what `ed25519-consensus` implements, identically on
/// every validator) accepts the signature `R = identity, S = 0` on every
/// message under a key of small order, and accepts several encodings of one
/// point. A key the chain accepts must therefore be the canonical encoding of
/// a point of large order: then nobody without the secret can sign for it,
/// and one point is one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// The bytes do not decode to a point of the curve.
    #[error("is not an ed25519 public key (not a point of the curve)")]
    NotOnCurve,
    /// The bytes decode, but are not the point's one canonical encoding.
    #[error("is not the canonical encoding of its ed25519 point (re-encode it: y below the field prime, sign bit clear when x is 0)")]
    NonCanonical,
    /// The point has small order: anyone can forge signatures for it.
    #[error("is an ed25519 point of small order, for which anyone can forge signatures")]
    SmallOrder,
}

/// Checks that `bytes` is a key the chain accepts: the canonical encoding of
/// an ed25519 point that is not of small order.
///
/// # Errors
/// [`PublicKeyError`] naming what is wrong.
pub fn check_public_key(bytes: &[u8; 32]) -> Result<(), PublicKeyError> {
    // A verdict depends on the 32 bytes alone: one decompression (a square
    // root in the field, the cost of a third of a signature check) per key
    // while it stays in the memo, however often the chain's phases check it.
    if let Some(verdict) = KEY_VERDICTS.get(bytes) {
        return verdict;
    }
    let verdict = check_public_key_uncached(bytes);
    KEY_VERDICTS.put(*bytes, verdict);
    verdict
}

/// Recent [`check_public_key`] verdicts: two generations of at most
/// [`KEY_MEMO_ENTRIES`] keys each (about 6 MB in all); when the newer is
/// full it becomes the older and the older is dropped.
static KEY_VERDICTS: KeyMemo = KeyMemo {
    generations: std::sync::Mutex::new(None),
};

/// Keys a generation of the memo holds.
pub const KEY_MEMO_ENTRIES: usize = 1 << 16;

type Verdicts = std::collections::HashMap<[u8; 32], Result<(), PublicKeyError>>;

struct KeyMemo {
    /// (newer, older), created on first use.
    generations: std::sync::Mutex<Option<(Verdicts, Verdicts)>>,
}

impl KeyMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Verdicts, Verdicts)>> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &[u8; 32]) -> Option<Result<(), PublicKeyError>> {
        let g = self.lock();
        let (newer, older) = g.as_ref()?;
        newer.get(key).or_else(|| older.get(key)).copied()
    }

    fn put(&self, key: [u8; 32], verdict: Result<(), PublicKeyError>) {
        let mut g = self.lock();
        let (newer, older) = g.get_or_insert_with(Default::default);
        if newer.len() >= KEY_MEMO_ENTRIES {
            *older = std::mem::take(newer);
        }
        newer.insert(key, verdict);
    }
}

fn check_public_key_uncached(bytes: &[u8; 32]) -> Result<(), PublicKeyError> {
    let compressed = curve25519_dalek_ng::edwards::CompressedEdwardsY(*bytes);
    let point = compressed.decompress().ok_or(PublicKeyError::NotOnCurve)?;
    // Decompression reduces y modulo p and ignores a sign bit on x = 0, so
    // a second encoding of a point decodes; re-encoding exposes it.
    if point.compress().as_bytes() != bytes {
        return Err(PublicKeyError::NonCanonical);
    }
    if point.is_small_order() {
        return Err(PublicKeyError::SmallOrder);
    }
    Ok(())
}

/// An ed25519 signing key (the secret behind an [`AccountId`]).
#[derive(Clone)]
pub struct SigningKey(ed25519_consensus::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Self(ed25519_consensus::SigningKey::new(rand_core::OsRng))
    }

    /// The key with this 32-byte seed (deterministic, for tests and imports).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_consensus::SigningKey::from(seed))
    }

    /// Parses 64 hex characters of seed.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|e| KeyError::Secret(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The account this key controls.
    pub fn account(&self) -> AccountId {
        AccountId(self.0.verification_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey({})", self.account())
    }
}

/// The JSON key file: `{"account": "<hex>", "secret_key": "<hex seed>"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// The public key, for people and for a consistency check.
    pub account: AccountId,
    /// The 32-byte seed in hex.
    pub secret_key: String,
}

impl KeyFile {
    /// The key file of `key`.
    pub fn from_key(key: &SigningKey) -> Self {
        Self {
            account: key.account(),
            secret_key: hex::encode(key.seed()),
        }
    }

    /// Reads and checks a key file.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| KeyError::Format {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_hex(&file.secret_key)?;
        if key.account() != file.account {
            return Err(KeyError::Mismatch {
                path: shown,
                stored: file.account.to_hex(),
                derived: key.account().to_hex(),
            });
        }
        Ok(key)
    }

    /// Writes `key` to `path`, readable by its owner only (mode 0600 on Unix).
    /// Refuses to overwrite an existing file.
    pub fn save(key: &SigningKey, path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let json = serde_json::to_string_pretty(&KeyFile::from_key(key)).map_err(|e| {
            KeyError::Format {
                path: shown.clone(),
                reason: e.to_string(),
            }
        })?;
        file.write_all(json.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight points of small order in their canonical encodings, and
    /// non-canonical encodings of points, from the ZIP-215 test vectors
    /// (Henry de Valence, "It's 255:19AM", and the Zcash ZIP-215 set).
    const SMALL_ORDER_CANONICAL: [&str; 6] = [
        // identity (0, 1)
        "0100000000000000000000000000000000000000000000000000000000000000",
        // order 2: (0, -1)
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        // order 4: (+-sqrt(-1), 0)
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        // order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    ];
    const SMALL_ORDER_ORDER8_NEG: [&str; 2] = [
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    ];
    /// Encodings with y >= p or a sign bit on x = 0: another spelling of a
    /// point that has a canonical encoding.
    const NON_CANONICAL: [&str; 4] = [
        // y = p + 1 (the identity again), sign bits clear and set
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        // (0, 1) with the sign bit set on x = 0
        "0100000000000000000000000000000000000000000000000000000000000080",
        // (0, -1) with the sign bit set on x = 0
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];

    fn bytes(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    #[test]
    fn the_memo_answers_what_the_check_answers_and_stays_bounded() {
        let mut keys: Vec<[u8; 32]> = SMALL_ORDER_CANONICAL
            .iter()
            .chain(&SMALL_ORDER_ORDER8_NEG)
            .map(|t| bytes(t))
            .collect();
        keys.extend((0u8..40).map(|i| SigningKey::from_seed([i; 32]).account().0));
        keys.extend((0u8..40).map(|i| [i; 32]));
        for _ in 0..2 {
            for key in &keys {
                assert_eq!(check_public_key(key), check_public_key_uncached(key));
            }
        }
        let memo = KeyMemo {
            generations: std::sync::Mutex::new(None),
        };
        for i in 0..(3 * KEY_MEMO_ENTRIES as u32) {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            memo.put(key, Ok(()));
        }
        let g = memo.lock();
        let (newer, older) = g.as_ref().unwrap();
        assert!(newer.len() <= KEY_MEMO_ENTRIES && older.len() <= KEY_MEMO_ENTRIES);
    }

    #[test]
    fn small_order_points_are_refused() {
        for text in SMALL_ORDER_CANONICAL.iter().chain(&SMALL_ORDER_ORDER8_NEG) {
            assert_eq!(
                check_public_key(&bytes(text)),
                Err(PublicKeyError::SmallOrder),
                "{text}"
            );
        }
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        for text in NON_CANONICAL {
            let verdict = check_public_key(&bytes(text));
            assert!(
                matches!(
                    verdict,
                    Err(PublicKeyError::NonCanonical | PublicKeyError::SmallOrder)
                ),
                "{text}: {verdict:?}"
            );
        }
        // Some y in [p, p + 19) decodes to a point of large order whose
        // canonical encoding is y - p: only the canonical check catches it.
        let mut found = false;
        for low in 0u8..19 {
            let mut raw = [0xffu8; 32];
            raw[0] = 0xed_u8.wrapping_add(low);
            raw[31] = 0x7f;
            if raw[0] < 0xed {
                continue;
            }
            let reduced = curve25519_dalek_ng::edwards::CompressedEdwardsY(raw).decompress();
            if let Some(point) = reduced {
                if !point.is_small_order() {
                    assert_eq!(check_public_key(&raw), Err(PublicKeyError::NonCanonical));
                    found = true;
                }
            }
        }
        assert!(found, "some y in [p, p + 19) is a large-order point");
    }

    #[test]
    fn ordinary_keys_are_accepted_and_off_curve_bytes_refused() {
        for seed in 0u8..32 {
            let key = SigningKey::from_seed([seed; 32]);
            assert_eq!(check_public_key(&key.account().0), Ok(()));
        }
        let off_curve = (0u8..=255)
            .map(|b| [b; 32])
            .find(|raw| {
                curve25519_dalek_ng::edwards::CompressedEdwardsY(*raw)
                    .decompress()
                    .is_none()
            })
            .unwrap();
        assert_eq!(
            check_public_key(&off_curve),
            Err(PublicKeyError::NotOnCurve)
        );
    }

    #[test]
    fn key_files_round_trip_with_owner_only_permissions() {
        let dir = std::env::temp_dir().join(format!("compute-key-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.json");
        let _ = fs::remove_file(&path);
        let key = SigningKey::generate();
        KeyFile::save(&key, &path).unwrap();
        assert_eq!(KeyFile::load(&path).unwrap().account(), key.account());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            KeyFile::save(&key, &path),
            Err(KeyError::Io { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_file_whose_account_does_not_match_is_refused() {
        let dir = std::env::temp_dir().join(format!("compute-key-mismatch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.json");
        let file = KeyFile {
            account: AccountId([9; 32]),
            secret_key: hex::encode([1u8; 32]),
        };
        fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        assert!(matches!(
            KeyFile::load(&path),
            Err(KeyError::Mismatch { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
