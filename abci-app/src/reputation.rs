//! Reputation scores and the validators' block reward.

use compute_proto::{pb, AccountId};

use crate::codes::Rejection;
use crate::events::{event, Event};
use crate::ledger::{credit, update_stats};
use crate::store::StateTx;

/// `score_ppm = 1_000_000 * (agreed + 1) / (agreed + 2 + 4 * cheats + missed)`:
/// a new key starts at 500,000, one caught cheat costs as much as four good
/// results, and the score never reaches 0 or 1,000,000. Integer math only.
pub fn score_ppm(r: &pb::Reputation) -> u64 {
    let agreed = u128::from(r.agreed);
    let numerator = agreed.saturating_add(1).saturating_mul(1_000_000);
    let denominator = agreed
        .saturating_add(2)
        .saturating_add(u128::from(r.cheats).saturating_mul(4))
        .saturating_add(u128::from(r.missed));
    u64::try_from(numerator.checked_div(denominator).unwrap_or(0)).unwrap_or(u64::MAX)
}

/// Counts the network work of a block and pays its reward: the proposer's
/// `blocks_proposed`, each signer's `blocks_signed`, and `block_reward`
/// split evenly among the signers of the last commit (sorted by key), the
/// remainder of the division to the proposer (or, when it is unknown, to
/// the first signer). A block with no known signer (the first) mints nothing.
pub fn reward_block(
    state: &mut StateTx<'_>,
    block_reward: u64,
    proposer: Option<AccountId>,
    mut signers: Vec<AccountId>,
) -> Result<Vec<Event>, Rejection> {
    signers.sort_unstable();
    signers.dedup();
    if let Some(p) = proposer {
        state.update_reputation(&p, |r| {
            r.blocks_proposed = r.blocks_proposed.saturating_add(1)
        });
    }
    for s in &signers {
        state.update_reputation(s, |r| r.blocks_signed = r.blocks_signed.saturating_add(1));
    }
    let count = signers.len() as u64;
    // No signers (the first block) or no reward: nothing is minted.
    let (Some(share), Some(remainder)) = (
        block_reward.checked_div(count),
        block_reward.checked_rem(count),
    ) else {
        return Ok(Vec::new());
    };
    if block_reward == 0 {
        return Ok(Vec::new());
    }
    for s in &signers {
        credit(state, s, share)?;
    }
    if remainder > 0 {
        let to = proposer.or_else(|| signers.first().copied());
        if let Some(to) = to {
            credit(state, &to, remainder)?;
        }
    }
    update_stats(state, |s| {
        s.credits_minted = s.credits_minted.saturating_add(block_reward)
    });
    Ok(vec![event(
        "block_reward",
        &[
            ("amount", block_reward.to_string(), false),
            ("signers", count.to_string(), false),
            (
                "proposer",
                proposer.map(|p| p.to_hex()).unwrap_or_default(),
                true,
            ),
        ],
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_design_formula() {
        let new = pb::Reputation::default();
        assert_eq!(score_ppm(&new), 500_000);
        let good = pb::Reputation {
            agreed: 8,
            ..Default::default()
        };
        assert_eq!(score_ppm(&good), 900_000);
        let one_cheat = pb::Reputation {
            agreed: 8,
            cheats: 1,
            ..Default::default()
        };
        // One cheat weighs as much as four missed deadlines.
        let four_missed = pb::Reputation {
            agreed: 8,
            missed: 4,
            ..Default::default()
        };
        assert_eq!(score_ppm(&one_cheat), score_ppm(&four_missed));
        assert!(score_ppm(&one_cheat) < score_ppm(&good));
        let extreme = pb::Reputation {
            agreed: u64::MAX,
            cheats: u64::MAX,
            missed: u64::MAX,
            ..Default::default()
        };
        assert!(score_ppm(&extreme) <= 1_000_000);
    }
}
