//! Signed blob uploads: the header a `PutBlob` carries in its first chunk.
//!
//! The uploader signs `H("compute/upload/v1", uploader, hash, size u64 BE,
//! expires u64 BE)` with ed25519, exactly as a transaction signs its digest.
//! A gateway admits an upload only under a header that verifies, and charges
//! the bytes to the signing account. The header names the blob's hash and
//! exact size, so a replayed header can only store that same blob again,
//! which a content-addressed store already holds.

use crate::hash::{hash_parts, Tag};
use crate::ids::{AccountId, BlobId};
use crate::keys::{check_public_key, PublicKeyError, SigningKey};
use crate::pb;

/// How long a header signed by this workspace's clients stays valid.
pub const UPLOAD_HEADER_TTL_SECS: u64 = 600;
/// The furthest in the future a gateway accepts a header's expiry, so that a
/// leaked header is not usable for long.
pub const UPLOAD_HEADER_TTL_MAX_SECS: u64 = 3600;

/// Why an upload header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The first chunk carries no header.
    #[error("an upload must carry a signed header in its first chunk (BlobChunk.upload); see docs/PROTOCOL.md, \"Signing an upload\"")]
    Missing,
    /// A field has the wrong length.
    #[error("upload header: {field} must be {expected} bytes, got {got}")]
    Length {
        /// The field.
        field: &'static str,
        /// Its required length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The uploader is not a key the chain accepts.
    #[error("upload header: uploader {0}")]
    Uploader(PublicKeyError),
    /// The signature does not verify.
    #[error("upload header: the signature does not verify for uploader {0}: sign H(\"compute/upload/v1\", uploader, hash, size u64 BE, expires u64 BE) with the uploader's key")]
    BadSignature(AccountId),
    /// The header has expired.
    #[error(
        "upload header expired at {expires} (unix seconds), and it is now {now}: sign a fresh one"
    )]
    Expired {
        /// The header's expiry.
        expires: u64,
        /// The gateway's clock.
        now: u64,
    },
    /// The expiry is further ahead than a gateway accepts.
    #[error("upload header expires at {expires} (unix seconds), more than {max_secs} s after now ({now}): sign one that expires sooner")]
    TooFarAhead {
        /// The header's expiry.
        expires: u64,
        /// The gateway's clock.
        now: u64,
        /// The longest accepted validity.
        max_secs: u64,
    },
}

/// The digest an uploader signs.
pub fn upload_sign_bytes(uploader: &AccountId, hash: &BlobId, size: u64, expires: u64) -> [u8; 32] {
    hash_parts(
        Tag::Upload,
        &[
            &uploader.0,
            &hash.0,
            &size.to_be_bytes(),
            &expires.to_be_bytes(),
        ],
    )
}

/// The header for uploading `size` bytes hashing to `hash`, signed by `key`
/// and valid until `expires` (unix seconds).
pub fn sign_upload(key: &SigningKey, hash: &BlobId, size: u64, expires: u64) -> pb::UploadHeader {
    let uploader = key.account();
    let digest = upload_sign_bytes(&uploader, hash, size, expires);
    pb::UploadHeader {
        uploader: uploader.0.to_vec(),
        hash: hash.0.to_vec(),
        size,
        expires,
        signature: key.sign(&digest).to_vec(),
    }
}

/// A header whose signature verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedUpload {
    /// The account that signed it.
    pub uploader: AccountId,
    /// The blob it admits.
    pub hash: BlobId,
    /// The blob's exact size.
    pub size: u64,
    /// Its expiry, unix seconds.
    pub expires: u64,
}

impl VerifiedUpload {
    /// Checks lengths, the uploader key and the signature (not the expiry:
    /// see [`VerifiedUpload::check_time`]).
    ///
    /// # Errors
    /// [`UploadError`] naming the first problem.
    pub fn verify(header: &pb::UploadHeader) -> Result<Self, UploadError> {
        let uploader: [u8; 32] = fixed("uploader", &header.uploader)?;
        let hash: [u8; 32] = fixed("hash", &header.hash)?;
        let signature: [u8; 64] = fixed("signature", &header.signature)?;
        check_public_key(&uploader).map_err(UploadError::Uploader)?;
        let uploader = AccountId(uploader);
        let hash = BlobId(hash);
        let key = ed25519_consensus::VerificationKey::try_from(uploader.0)
            .map_err(|_| UploadError::Uploader(PublicKeyError::NotOnCurve))?;
        let digest = upload_sign_bytes(&uploader, &hash, header.size, header.expires);
        key.verify(&ed25519_consensus::Signature::from(signature), &digest)
            .map_err(|_| UploadError::BadSignature(uploader))?;
        Ok(Self {
            uploader,
            hash,
            size: header.size,
            expires: header.expires,
        })
    }

    /// Checks the expiry against `now` (unix seconds): not past, and not
    /// more than [`UPLOAD_HEADER_TTL_MAX_SECS`] ahead.
    ///
    /// # Errors
    /// [`UploadError::Expired`] or [`UploadError::TooFarAhead`].
    pub fn check_time(&self, now: u64) -> Result<(), UploadError> {
        if self.expires < now {
            return Err(UploadError::Expired {
                expires: self.expires,
                now,
            });
        }
        if self.expires > now.saturating_add(UPLOAD_HEADER_TTL_MAX_SECS) {
            return Err(UploadError::TooFarAhead {
                expires: self.expires,
                now,
                max_secs: UPLOAD_HEADER_TTL_MAX_SECS,
            });
        }
        Ok(())
    }
}

fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], UploadError> {
    bytes.try_into().map_err(|_| UploadError::Length {
        field,
        expected: N,
        got: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_seed([7; 32])
    }

    #[test]
    fn a_signed_header_verifies_and_names_its_uploader() {
        let hash = BlobId::of(b"bytes");
        let header = sign_upload(&key(), &hash, 5, 1_000);
        let verified = VerifiedUpload::verify(&header).unwrap();
        assert_eq!(verified.uploader, key().account());
        assert_eq!(verified.hash, hash);
        assert_eq!(verified.size, 5);
        assert!(verified.check_time(1_000).is_ok());
        assert!(verified.check_time(400).is_ok());
    }

    #[test]
    fn every_changed_field_breaks_the_signature() {
        let good = sign_upload(&key(), &BlobId::of(b"bytes"), 5, 1_000);
        let mut changes = Vec::new();
        let mut h = good.clone();
        h.size = 6;
        changes.push(h);
        let mut h = good.clone();
        h.expires = 1_001;
        changes.push(h);
        let mut h = good.clone();
        h.hash[0] ^= 1;
        changes.push(h);
        let mut h = good.clone();
        h.signature[10] ^= 1;
        changes.push(h);
        let mut h = good.clone();
        h.uploader = SigningKey::from_seed([8; 32]).account().0.to_vec();
        changes.push(h);
        for changed in changes {
            assert!(
                matches!(
                    VerifiedUpload::verify(&changed),
                    Err(UploadError::BadSignature(_))
                ),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_named() {
        let good = sign_upload(&key(), &BlobId::of(b"x"), 1, 1);
        let mut h = good.clone();
        h.signature.pop();
        assert_eq!(
            VerifiedUpload::verify(&h),
            Err(UploadError::Length {
                field: "signature",
                expected: 64,
                got: 63
            })
        );
        let mut h = good.clone();
        h.uploader = vec![0; 32];
        h.uploader[0] = 1; // the identity point: small order
        assert_eq!(
            VerifiedUpload::verify(&h),
            Err(UploadError::Uploader(PublicKeyError::SmallOrder))
        );
        let mut h = good;
        h.hash.clear();
        assert!(matches!(
            VerifiedUpload::verify(&h),
            Err(UploadError::Length { field: "hash", .. })
        ));
    }

    #[test]
    fn expiry_is_bounded_on_both_sides() {
        let header = sign_upload(&key(), &BlobId::of(b"x"), 1, 10_000);
        let verified = VerifiedUpload::verify(&header).unwrap();
        assert!(matches!(
            verified.check_time(10_001),
            Err(UploadError::Expired { .. })
        ));
        assert!(verified
            .check_time(10_000 - UPLOAD_HEADER_TTL_MAX_SECS)
            .is_ok());
        assert!(matches!(
            verified.check_time(10_000 - UPLOAD_HEADER_TTL_MAX_SECS - 1),
            Err(UploadError::TooFarAhead { .. })
        ));
    }
}
