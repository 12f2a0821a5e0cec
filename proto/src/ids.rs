//! Typed 32-byte identifiers, written as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{hash_parts, sha3_256, Tag};

/// Why bytes or text are not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is not 64 hex characters.
    #[error("expected 64 hex characters (32 bytes), got {0} characters")]
    HexLength(usize),
    /// The id contains a character that is not hex.
    #[error("not hex: {0}")]
    NotHex(String),
    /// The id has the wrong number of bytes.
    #[error("expected 32 bytes, got {0}")]
    ByteLength(usize),
}

fn parse_hex32(text: &str) -> Result<[u8; 32], IdError> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if text.len() != 64 {
        return Err(IdError::HexLength(text.len()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| IdError::NotHex(e.to_string()))?;
    Ok(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 hex characters (an optional `0x` prefix is allowed).
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                parse_hex32(text).map(Self)
            }

            /// Takes exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
                <[u8; 32]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| IdError::ByteLength(bytes.len()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An account: the 32-byte ed25519 public key of its owner.
    AccountId
);
id_type!(
    /// A job: `H("compute/job/v1", requester, nonce)`.
    JobId
);
id_type!(
    /// A stored WebAssembly module: `sha3_256(wasm)`.
    ModuleId
);
id_type!(
    /// A content-addressed blob on the data plane: `sha3_256(bytes)`.
    BlobId
);
id_type!(
    /// Any other 32-byte hash (results, commitments, app hashes).
    Hash32
);

impl JobId {
    /// The id of the job that `requester` posts with transaction nonce `nonce`.
    pub fn derive(requester: &AccountId, nonce: u64) -> Self {
        Self(hash_parts(Tag::Job, &[&requester.0, &nonce.to_be_bytes()]))
    }

    /// The id of the job at `index` among the jobs of one `PostJobs` that
    /// `requester` posts with transaction nonce `nonce`.
    pub fn derive_in_batch(requester: &AccountId, nonce: u64, index: u32) -> Self {
        Self(hash_parts(
            Tag::Job,
            &[&requester.0, &nonce.to_be_bytes(), &index.to_be_bytes()],
        ))
    }
}

impl ModuleId {
    /// The id of a module's bytes.
    pub fn of(wasm: &[u8]) -> Self {
        Self(sha3_256(wasm))
    }
}

impl BlobId {
    /// The id of a blob's bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha3_256(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let id = AccountId([0xab; 32]);
        assert_eq!(AccountId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(AccountId::from_hex(&format!("0x{}", id.to_hex())), Ok(id));
        assert_eq!(AccountId::from_hex("abcd"), Err(IdError::HexLength(4)));
        assert!(matches!(
            AccountId::from_hex(&"zz".repeat(32)),
            Err(IdError::NotHex(_))
        ));
        assert_eq!(
            AccountId::from_slice(&[1; 31]),
            Err(IdError::ByteLength(31))
        );
    }

    #[test]
    fn serde_uses_hex_strings() {
        let id = ModuleId([7; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<ModuleId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ModuleId>("\"00\"").is_err());
    }

    #[test]
    fn job_ids_depend_on_requester_and_nonce() {
        let a = AccountId([1; 32]);
        let b = AccountId([2; 32]);
        assert_ne!(JobId::derive(&a, 0), JobId::derive(&a, 1));
        assert_ne!(JobId::derive(&a, 0), JobId::derive(&b, 0));
        assert_eq!(JobId::derive(&a, 5), JobId::derive(&a, 5));
    }
}
