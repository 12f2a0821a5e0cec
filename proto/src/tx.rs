//! Signing, decoding and verifying transactions.
//!
//! The signature covers `H("compute/tx/v1", body)` where `body` is the exact
//! byte string in `Tx.body`. Verification uses `ed25519-consensus`, whose
//! ZIP-215 rules give the same verdict on every validator, single or batched.

use prost::Message;

use crate::hash::{hash_parts, Tag};
use crate::ids::AccountId;
use crate::keys::SigningKey;
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
    /// `Tx.signer` is not a valid ed25519 point.
    #[error("signer is not a valid ed25519 public key")]
    SignerInvalid,
    /// `Tx.signature` is not 64 bytes.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// The signature does not verify against the signer and body.
    #[error("signature does not verify for signer {0}: sign H(\"compute/tx/v1\", body) with the signer's key")]
    BadSignature(AccountId),
    /// `Tx.body` is not a protobuf `TxBody`.
    #[error("body is not a compute.v1.TxBody: {0}")]
    BodyMalformed(String),
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
    let body = body.encode_to_vec();
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
    }
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
        let signer = AccountId::from_slice(&tx.signer)
            .map_err(|_| TxError::SignerLength(tx.signer.len()))?;
        let signature = <[u8; 64]>::try_from(tx.signature.as_slice())
            .map_err(|_| TxError::SignatureLength(tx.signature.len()))?;
        let body = pb::TxBody::decode(tx.body.as_slice())
            .map_err(|e| TxError::BodyMalformed(e.to_string()))?;
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
            .map_err(|_| TxError::SignerInvalid)?;
        key.verify(
            &ed25519_consensus::Signature::from(self.signature),
            &self.sign_bytes,
        )
        .map_err(|_| TxError::BadSignature(self.signer))
    }
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
}
