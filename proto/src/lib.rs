//! Wire types of the compute network and the one implementation of its
//! hashing, ids and signatures.
//!
//! Everything that two parties must compute identically lives here: the
//! protobuf messages (`pb`), domain-separated SHA3-256 hashing ([`hash`]),
//! typed 32-byte ids ([`ids`]), typed statuses ([`status`]), ed25519 keys
//! ([`keys`]), transaction signing and verification ([`tx`]), signed blob uploads
//! ([`upload`]) and the chain's
//! stable result codes ([`codes`]). Nothing else in the workspace re-implements them.

pub mod codes;
pub mod hash;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod state;
pub mod status;
pub mod tx;
pub mod upload;
pub mod views;

/// Generated protobuf types of package `compute.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/compute.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every `compute.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/compute_descriptor.bin"));

pub use codes::{Code, CODESPACE};
pub use hash::{assignment_seed, commitment, hash_parts, sha3_256, sha3_256_concat, Tag};
pub use ids::{AccountId, BlobId, Hash32, IdError, JobId, ModuleId};
pub use keys::{check_public_key, KeyError, PublicKeyError, SigningKey};
pub use status::{JobStatus, ReplicaStatus, TaskStatus, UnknownStatus};
pub use tx::{SignedTx, TxBuilder, TxError};
pub use upload::{UploadError, VerifiedUpload};
