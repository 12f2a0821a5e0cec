//! Signing, decoding and verifying transactions.
//!
//! The signature covers `H("compute/tx/v1", body)` where `body` is the exact
//! byte string in `Tx.body`. Verification uses `ed25519-consensus`, whose
//! ZIP-215 rules give the same verdict on every validator, single or batched.
//! Two rules come before any signature is checked:
//!
//! * the signer is a key the chain accepts ([`check_public_key`]): the
//!   canonical encoding of a point of large order, for which ZIP-215 admits
//!   no forgery;
//! * the envelope and the body are each the canonical protobuf encoding of
//!   what they decode to: fields in field-number order, each at most once,
//!   minimal varints, no unknown fields, no field set to its default value,
//!   packed repeated scalars. That is exactly what a conforming encoder
//!   (prost, protobuf-go with `Deterministic`) writes, so one signed intent
//!   has one encoding and one transaction hash.

use prost::Message;

use crate::hash::{hash_parts, Tag};
use crate::ids::AccountId;
use crate::keys::{check_public_key, PublicKeyError, SigningKey};
use crate::pb;

/// Why bytes are not an acceptable transaction (before any state is read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The transaction is larger than the chain accepts.
    #[error("transaction is {len} bytes, more than the limit of {max} bytes")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a protobuf `Tx`.
    #[error("not a compute.v1.Tx: {0}")]
    Malformed(String),
    /// `Tx.signer` is not 32 bytes.
    #[error("signer must be a 32-byte ed25519 public key, got {0} bytes")]
    SignerLength(usize),
    /// `Tx.signer` is not a key the chain accepts.
    #[error("signer {0}")]
    SignerInvalid(PublicKeyError),
    /// `Tx.signature` is not 64 bytes.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// The signature does not verify against the signer and body.
    #[error("signature does not verify for signer {0}: sign H(\"compute/tx/v1\", body) with the signer's key")]
    BadSignature(AccountId),
    /// `Tx.body` is not a protobuf `TxBody`.
    #[error("body is not a compute.v1.TxBody: {0}")]
    BodyMalformed(String),
    /// The envelope or the body is not the canonical encoding of what it
    /// decodes to.
    #[error("{part} is not canonically encoded: {reason}; encode it with fields in field-number order, each at most once, minimal varints, no unknown fields and no default values (what protobuf encoders write by default)")]
    NonCanonical {
        /// `Tx` (the envelope) or `TxBody`.
        part: &'static str,
        /// Where the bytes first differ from the canonical encoding.
        reason: String,
    },
    /// `TxBody.msg` is empty.
    #[error("transaction carries no message")]
    MissingMessage,
}

/// The 32-byte digest that a transaction's signature covers.
pub fn sign_bytes(body: &[u8]) -> [u8; 32] {
    hash_parts(Tag::Tx, &[body])
}

/// Encodes and signs `body` with `key`, returning the encoded `Tx`.
pub fn sign_body(body: &pb::TxBody, key: &SigningKey) -> Vec<u8> {
    sign_body_bytes(body.encode_to_vec(), key)
}

/// Signs `body`, exactly the bytes given, with `key` and wraps them in a
/// `Tx`: for clients with an encoder of their own (and for tests that show
/// what the chain refuses).
pub fn sign_body_bytes(body: Vec<u8>, key: &SigningKey) -> Vec<u8> {
    let signature = key.sign(&sign_bytes(&body));
    pb::Tx {
        body,
        signer: key.account().0.to_vec(),
        signature: signature.to_vec(),
    }
    .encode_to_vec()
}

/// The name of a message type, as logs, errors and events spell it.
pub fn msg_name(msg: &pb::tx_body::Msg) -> &'static str {
    use pb::tx_body::Msg;
    match msg {
        Msg::Transfer(_) => "Transfer",
        Msg::StoreModule(_) => "StoreModule",
        Msg::RegisterWorker(_) => "RegisterWorker",
        Msg::UnregisterWorker(_) => "UnregisterWorker",
        Msg::PostJob(_) => "PostJob",
        Msg::CommitResult(_) => "CommitResult",
        Msg::RevealResult(_) => "RevealResult",
        Msg::CancelJob(_) => "CancelJob",
        Msg::Dispute(_) => "Dispute",
        Msg::DeclineTask(_) => "DeclineTask",
        Msg::BondValidator(_) => "BondValidator",
        Msg::UnbondValidator(_) => "UnbondValidator",
        Msg::UnjailValidator(_) => "UnjailValidator",
        Msg::CommitResults(_) => "CommitResults",
        Msg::RevealResults(_) => "RevealResults",
        Msg::PostJobs(_) => "PostJobs",
    }
}

/// The most entries a batched message (`CommitResults`, `RevealResults`,
/// `PostJobs`) may carry.
pub const MAX_BATCH_ENTRIES: usize = 1024;

/// The start of the log of a batch refused for its entry `index` (counting
/// from 0); the entry's own reason follows.
pub fn entry_refusal_prefix(msg: &str, index: usize) -> String {
    format!("entry {index} of {msg} (counting from 0): ")
}

/// The entry a refused batch's `log` names ([`entry_refusal_prefix`]), if
/// it names one.
pub fn refused_entry(log: &str) -> Option<usize> {
    let rest = log.strip_prefix("entry ")?;
    let (index, rest) = rest.split_once(' ')?;
    rest.starts_with("of ").then_some(())?;
    rest.contains(" (counting from 0): ").then_some(())?;
    index.parse().ok()
}

/// Builds signed transactions for one chain.
#[derive(Clone, Debug)]
pub struct TxBuilder {
    /// The chain id every transaction names.
    pub chain_id: String,
    /// The fee every transaction offers.
    pub fee: u64,
}

impl TxBuilder {
    /// A builder for `chain_id` with no fee.
    pub fn new(chain_id: impl Into<String>) -> Self {
        Self {
            chain_id: chain_id.into(),
            fee: 0,
        }
    }

    /// The encoded, signed transaction carrying `msg` with `nonce`.
    pub fn sign(&self, key: &SigningKey, nonce: u64, msg: pb::tx_body::Msg) -> Vec<u8> {
        let body = pb::TxBody {
            chain_id: self.chain_id.clone(),
            nonce,
            fee: self.fee,
            msg: Some(msg),
        };
        sign_body(&body, key)
    }
}

/// A decoded transaction whose shape is checked; its signature is checked by
/// [`SignedTx::verify`] or [`verify_batch`].
#[derive(Clone, Debug)]
pub struct SignedTx {
    /// The signer's account.
    pub signer: AccountId,
    /// The decoded body.
    pub body: pb::TxBody,
    /// The message (never empty).
    pub msg: pb::tx_body::Msg,
    /// The digest the signature covers.
    pub sign_bytes: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
    /// The length of the encoded transaction.
    pub len: usize,
}

impl SignedTx {
    /// Decodes `bytes`, enforcing `max_len` before anything else.
    ///
    /// # Errors
    /// Any [`TxError`] but `BadSignature`.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, TxError> {
        if bytes.len() > max_len {
            return Err(TxError::Oversized {
                len: bytes.len(),
                max: max_len,
            });
        }
        let tx = pb::Tx::decode(bytes).map_err(|e| TxError::Malformed(e.to_string()))?;
        check_canonical("Tx", &tx, bytes)?;
        let signer = AccountId::from_slice(&tx.signer)
            .map_err(|_| TxError::SignerLength(tx.signer.len()))?;
        check_public_key(&signer.0).map_err(TxError::SignerInvalid)?;
        let signature = <[u8; 64]>::try_from(tx.signature.as_slice())
            .map_err(|_| TxError::SignatureLength(tx.signature.len()))?;
        let body = pb::TxBody::decode(tx.body.as_slice())
            .map_err(|e| TxError::BodyMalformed(e.to_string()))?;
        check_canonical("TxBody", &body, &tx.body)?;
        let msg = body.msg.clone().ok_or(TxError::MissingMessage)?;
        Ok(Self {
            signer,
            sign_bytes: sign_bytes(&tx.body),
            body,
            msg,
            signature,
            len: bytes.len(),
        })
    }

    /// Checks the signature alone.
    pub fn verify(&self) -> Result<(), TxError> {
        let key = ed25519_consensus::VerificationKey::try_from(self.signer.0)
            .map_err(|_| TxError::SignerInvalid(PublicKeyError::NotOnCurve))?;
        key.verify(
            &ed25519_consensus::Signature::from(self.signature),
            &self.sign_bytes,
        )
        .map_err(|_| TxError::BadSignature(self.signer))
    }
}

/// Checks that `bytes` is exactly the encoding of `decoded`: prost drops
/// unknown fields, keeps the last of repeated ones and accepts long varints
/// when decoding, and writes none of them when encoding.
fn check_canonical<M: Message>(
    part: &'static str,
    decoded: &M,
    bytes: &[u8],
) -> Result<(), TxError> {
    let canonical = decoded.encode_to_vec();
    if canonical == bytes {
        return Ok(());
    }
    let at = canonical
        .iter()
        .zip(bytes)
        .position(|(a, b)| a != b)
        .unwrap_or(canonical.len().min(bytes.len()));
    Err(TxError::NonCanonical {
        part,
        reason: format!(
            "{} bytes where the canonical encoding has {}, first differing at byte {at}",
            bytes.len(),
            canonical.len()
        ),
    })
}

/// Verifies many signatures at once; returns one verdict per transaction, in order.
///
/// A batch is checked in one multiscalar multiplication; only when it fails
/// are the signatures checked one by one to find the bad ones. Verdicts are
/// the same as [`SignedTx::verify`]'s.
pub fn verify_batch(txs: &[&SignedTx]) -> Vec<Result<(), TxError>> {
    if txs.len() < 2 {
        return txs.iter().map(|tx| tx.verify()).collect();
    }
    let mut batch = ed25519_consensus::batch::Verifier::new();
    for tx in txs {
        let key = ed25519_consensus::VerificationKeyBytes::from(tx.signer.0);
        let sig = ed25519_consensus::Signature::from(tx.signature);
        batch.queue((key, sig, &tx.sign_bytes));
    }
    match batch.verify(rand_core::OsRng) {
        Ok(()) => txs.iter().map(|_| Ok(())).collect(),
        Err(_) => txs.iter().map(|tx| tx.verify()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(to: u8, amount: u64) -> pb::tx_body::Msg {
        pb::tx_body::Msg::Transfer(pb::Transfer {
            to: vec![to; 32],
            amount,
        })
    }

    #[test]
    fn signed_transactions_decode_and_verify() {
        let key = SigningKey::from_seed([3; 32]);
        let bytes = TxBuilder::new("test").sign(&key, 7, transfer(1, 5));
        let tx = SignedTx::decode(&bytes, 1 << 20).unwrap();
        assert_eq!(tx.signer, key.account());
        assert_eq!(tx.body.nonce, 7);
        assert_eq!(tx.body.chain_id, "test");
        tx.verify().unwrap();
    }

    #[test]
    fn a_changed_body_breaks_the_signature() {
        let key = SigningKey::from_seed([3; 32]);
        let bytes = TxBuilder::new("test").sign(&key, 0, transfer(1, 5));
        let mut tx = pb::Tx::decode(bytes.as_slice()).unwrap();
        let mut body = pb::TxBody::decode(tx.body.as_slice()).unwrap();
        body.nonce = 1;
        tx.body = body.encode_to_vec();
        let forged = SignedTx::decode(&tx.encode_to_vec(), 1 << 20).unwrap();
        assert_eq!(forged.verify(), Err(TxError::BadSignature(key.account())));
    }

    #[test]
    fn shape_errors_are_named() {
        assert!(matches!(
            SignedTx::decode(&[0xff; 10], 100),
            Err(TxError::Malformed(_))
        ));
        assert_eq!(
            SignedTx::decode(&[0; 11], 10).unwrap_err(),
            TxError::Oversized { len: 11, max: 10 }
        );
        let short_signer = pb::Tx {
            body: vec![],
            signer: vec![1; 31],
            signature: vec![0; 64],
        };
        assert_eq!(
            SignedTx::decode(&short_signer.encode_to_vec(), 1000).unwrap_err(),
            TxError::SignerLength(31)
        );
        let no_msg = pb::Tx {
            body: pb::TxBody::default().encode_to_vec(),
            signer: vec![1; 32],
            signature: vec![0; 64],
        };
        assert_eq!(
            SignedTx::decode(&no_msg.encode_to_vec(), 1000).unwrap_err(),
            TxError::MissingMessage
        );
    }

    #[test]
    fn batch_verification_agrees_with_single_verification() {
        let builder = TxBuilder::new("test");
        let mut txs: Vec<SignedTx> = (0..8u8)
            .map(|i| {
                let key = SigningKey::from_seed([i; 32]);
                SignedTx::decode(&builder.sign(&key, u64::from(i), transfer(9, 1)), 1 << 20)
                    .unwrap()
            })
            .collect();
        let refs: Vec<&SignedTx> = txs.iter().collect();
        assert!(verify_batch(&refs).iter().all(Result::is_ok));
        txs[5].signature[0] ^= 1;
        let refs: Vec<&SignedTx> = txs.iter().collect();
        let verdicts = verify_batch(&refs);
        for (i, verdict) in verdicts.iter().enumerate() {
            assert_eq!(verdict.is_ok(), i != 5, "tx {i}");
        }
    }

    fn non_canonical(bytes: &[u8]) -> bool {
        matches!(
            SignedTx::decode(bytes, 1 << 20),
            Err(TxError::NonCanonical { .. })
        )
    }

    #[test]
    fn every_re_encoding_of_a_signed_intent_is_refused() {
        let key = SigningKey::from_seed([4; 32]);
        let body = pb::TxBody {
            chain_id: "test".into(),
            nonce: 1,
            fee: 0,
            msg: Some(transfer(1, 1)),
        };
        let canonical = body.encode_to_vec();
        assert!(SignedTx::decode(&sign_body_bytes(canonical.clone(), &key), 1 << 20).is_ok());

        // An unknown field (number 9, varint) appended to the body.
        let mut unknown = canonical.clone();
        unknown.extend_from_slice(&[9 << 3, 1]);
        assert!(non_canonical(&sign_body_bytes(unknown, &key)));

        // The nonce (field 2) repeated: the last value would win.
        let mut repeated = canonical.clone();
        repeated.extend_from_slice(&[2 << 3, 9]);
        assert!(non_canonical(&sign_body_bytes(repeated, &key)));

        // The nonce written as a two-byte varint (0x81 0x00 is 1).
        let position = canonical.iter().position(|&b| b == 2 << 3).unwrap();
        let mut long = canonical.clone();
        long.splice(position + 1..position + 2, [0x81, 0x00]);
        assert!(non_canonical(&sign_body_bytes(long, &key)));

        // The fee written out although it is 0.
        let mut default = canonical.clone();
        default.splice(position + 2..position + 2, [3 << 3, 0]);
        assert!(non_canonical(&sign_body_bytes(default, &key)));

        // Fields out of order: the nonce moved to the end.
        let mut reordered = canonical.clone();
        let nonce: Vec<u8> = reordered.drain(position..position + 2).collect();
        reordered.extend(nonce);
        assert!(non_canonical(&sign_body_bytes(reordered, &key)));

        // A duplicated amount inside the message: amount 1 then 900.
        let inner = pb::Transfer {
            to: vec![1; 32],
            amount: 1,
        };
        let mut inner = inner.encode_to_vec();
        inner.extend_from_slice(&[2 << 3, 0x84, 0x07]);
        // chain_id "test", nonce 1, then the transfer with both amounts.
        let mut forged = vec![1 << 3 | 2, 4];
        forged.extend_from_slice(b"test");
        forged.extend_from_slice(&[2 << 3, 1]);
        let transfer_field = pb::TxBody {
            msg: Some(transfer(1, 1)),
            ..Default::default()
        }
        .encode_to_vec()[0];
        forged.push(transfer_field);
        forged.push(inner.len() as u8);
        forged.extend(inner);
        let decoded = pb::TxBody::decode(forged.as_slice()).unwrap();
        assert!(matches!(
            decoded.msg,
            Some(pb::tx_body::Msg::Transfer(pb::Transfer { amount: 900, .. }))
        ));
        assert!(non_canonical(&sign_body_bytes(forged, &key)));

        // The envelope itself with an unknown field.
        let mut outer = sign_body_bytes(canonical, &key);
        outer.extend_from_slice(&[9 << 3, 0]);
        assert!(non_canonical(&outer));
    }

    #[test]
    fn a_small_order_signer_cannot_forge() {
        // The identity point as signer, R = identity, S = 0: ZIP-215 accepts
        // this signature on every message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let body = pb::TxBody {
            chain_id: "test".into(),
            nonce: 0,
            fee: 0,
            msg: Some(transfer(1, 1)),
        }
        .encode_to_vec();
        let mut signature = [0u8; 64];
        signature[0] = 1;
        let forged = pb::Tx {
            body,
            signer: identity.to_vec(),
            signature: signature.to_vec(),
        }
        .encode_to_vec();
        assert_eq!(
            SignedTx::decode(&forged, 1 << 20).unwrap_err(),
            TxError::SignerInvalid(PublicKeyError::SmallOrder)
        );
    }
}
