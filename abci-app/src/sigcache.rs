//! Signature verdicts this node has already reached, so that a transaction
//! CheckTx verified is not verified again when it comes back in a proposal
//! and in its block.
//!
//! A verdict is a pure function of the signer, the signature and the signed
//! bytes (ed25519 with the ZIP-215 rules, the same one at a time and in a
//! batch), so reading it from here instead of recomputing it cannot make
//! this node disagree with another: the cache changes how fast a block runs,
//! never what it does. Entries are keyed by a SHA-256 digest of all three.
//!
//! Bounded: two generations of at most `capacity` entries each; when the
//! newer is full it becomes the older and the older is dropped, so a
//! transaction checked recently is found, and a flood of others (a
//! spammer's bad signatures included) only costs the re-verification the
//! cache would have saved.

use std::collections::HashMap;
use std::sync::Mutex;

use compute_proto::tx::verify_batch;
use compute_proto::{SignedTx, TxError};
use sha2::{Digest, Sha256};

/// Entries a generation holds by default: two generations of 131,072
/// verdicts are about 12 MB.
pub const DEFAULT_CAPACITY: usize = 1 << 17;

/// Signature verdicts, shared by the ABCI connections.
pub struct SigCache {
    capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<[u8; 32], bool>,
    older: HashMap<[u8; 32], bool>,
}

impl Generations {
    fn get(&self, key: &[u8; 32]) -> Option<bool> {
        self.newer.get(key).or_else(|| self.older.get(key)).copied()
    }
}

impl Default for SigCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl SigCache {
    /// An empty cache of two generations of `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::default(),
        }
    }

    fn key(tx: &SignedTx) -> [u8; 32] {
        // Signer and signature have fixed lengths: the three parts cannot
        // be confused with another split of the same bytes.
        let mut h = Sha256::new();
        h.update(tx.signer.0);
        h.update(tx.signature);
        h.update(tx.sign_bytes);
        h.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic while holding the lock leaves the maps whole.
        self.generations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, entries: impl IntoIterator<Item = ([u8; 32], bool)>) {
        let mut g = self.lock();
        for (key, ok) in entries {
            if g.newer.len() >= self.capacity {
                g.older = std::mem::take(&mut g.newer);
            }
            g.newer.insert(key, ok);
        }
    }

    /// How many verdicts are held.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.newer.len().saturating_add(g.older.len())
    }

    /// Whether no verdict is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`SignedTx::verify`], from the cache when this signature was
    /// verified before.
    ///
    /// # Errors
    /// As [`SignedTx::verify`].
    pub fn verify(&self, tx: &SignedTx) -> Result<(), TxError> {
        let key = Self::key(tx);
        match self.lock().get(&key) {
            Some(true) => return Ok(()),
            // The error names the signer or its key: recompute it (cheap
            // for a key not on the curve, and rare).
            Some(false) => return tx.verify(),
            None => {}
        }
        let verdict = tx.verify();
        self.remember([(key, verdict.is_ok())]);
        verdict
    }

    /// [`verify_batch`], verifying only the signatures not in the cache
    /// (as one batch); one verdict per transaction, in order.
    pub fn verify_batch(&self, txs: &[&SignedTx]) -> Vec<Result<(), TxError>> {
        let keys: Vec<[u8; 32]> = txs.iter().map(|tx| Self::key(tx)).collect();
        let known: Vec<Option<bool>> = {
            let g = self.lock();
            keys.iter().map(|k| g.get(k)).collect()
        };
        let unknown: Vec<&SignedTx> = txs
            .iter()
            .zip(&known)
            .filter(|(_, k)| k.is_none())
            .map(|(tx, _)| *tx)
            .collect();
        let mut fresh = verify_batch(&unknown).into_iter();
        let mut learnt = Vec::with_capacity(unknown.len());
        let verdicts = txs
            .iter()
            .zip(keys)
            .zip(known)
            .map(|((tx, key), known)| match known {
                Some(true) => Ok(()),
                Some(false) => tx.verify(),
                None => {
                    let verdict = fresh
                        .next()
                        .unwrap_or_else(|| unreachable!("one verdict per unknown signature"));
                    learnt.push((key, verdict.is_ok()));
                    verdict
                }
            })
            .collect();
        self.remember(learnt);
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_proto::{pb, SigningKey, TxBuilder};
    use prost::Message;

    fn signed(seed: u8, nonce: u64) -> SignedTx {
        let key = SigningKey::from_seed([seed; 32]);
        let msg = pb::tx_body::Msg::Transfer(pb::Transfer {
            to: vec![9; 32],
            amount: 1,
        });
        let bytes = TxBuilder::new("test").sign(&key, nonce, msg);
        SignedTx::decode(&bytes, 1 << 20).unwrap()
    }

    fn forged(seed: u8, nonce: u64) -> SignedTx {
        let mut raw = pb::Tx::decode(
            TxBuilder::new("test")
                .sign(
                    &SigningKey::from_seed([seed; 32]),
                    nonce,
                    pb::tx_body::Msg::Transfer(pb::Transfer {
                        to: vec![9; 32],
                        amount: 1,
                    }),
                )
                .as_slice(),
        )
        .unwrap();
        raw.signature[0] ^= 1;
        SignedTx::decode(&raw.encode_to_vec(), 1 << 20).unwrap()
    }

    #[test]
    fn cached_verdicts_are_the_verdicts_of_the_signatures() {
        let cache = SigCache::new(64);
        let txs = [signed(1, 0), forged(2, 0), signed(3, 5), forged(1, 1)];
        let refs: Vec<&SignedTx> = txs.iter().collect();
        let expected: Vec<bool> = txs.iter().map(|t| t.verify().is_ok()).collect();
        assert_eq!(expected, [true, false, true, false]);
        // Cold, warm, and mixed with unknown ones: the same verdicts, and
        // the same errors.
        for _ in 0..2 {
            let got = cache.verify_batch(&refs);
            assert_eq!(got.iter().map(Result::is_ok).collect::<Vec<_>>(), expected);
            for (tx, verdict) in txs.iter().zip(&got) {
                assert_eq!(verdict, &tx.verify());
                assert_eq!(cache.verify(tx), tx.verify());
            }
        }
        assert_eq!(cache.len(), 4);
        let more = [signed(4, 0), txs[1].clone(), signed(1, 0)];
        let more_refs: Vec<&SignedTx> = more.iter().collect();
        let got: Vec<bool> = cache
            .verify_batch(&more_refs)
            .iter()
            .map(Result::is_ok)
            .collect();
        assert_eq!(got, [true, false, true]);
    }

    #[test]
    fn the_cache_holds_at_most_two_generations() {
        let cache = SigCache::new(8);
        let txs: Vec<SignedTx> = (0..40).map(|n| signed(7, n)).collect();
        for tx in &txs {
            cache.verify(tx).unwrap();
            assert!(cache.len() <= 16);
        }
        // The latest are still known; the first were dropped.
        let g = cache.lock();
        assert!(g.get(&SigCache::key(&txs[39])).is_some());
        assert!(g.get(&SigCache::key(&txs[0])).is_none());
    }
}
