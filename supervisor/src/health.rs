//! Health by height progress, not by RPC liveness: a node whose RPC still
//! answers `/status` but whose height stands still is hung (finding F1: a
//! cometbft stuck in Commit→Flush after its app died kept answering).
//!
//! The detector is pure: it is fed observations with the time they were made
//! and answers a [`Verdict`]; the supervisor does the I/O.

use std::fmt;
use std::time::{Duration, Instant};

/// How the detector judges.
#[derive(Clone, Copy, Debug)]
pub struct StallRules {
    /// How long the own height may stand still (or the own RPC stay silent).
    pub stall_timeout: Duration,
    /// No verdict of hung before this long after the start (CometBFT's
    /// handshake and replay come before its RPC answers).
    pub startup_grace: Duration,
    /// Whether a standing height counts as a stall when there are no peers
    /// to compare with (off when the chain makes no empty blocks).
    pub height_rule_without_peers: bool,
}

/// Why a node is judged hung.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HangReason {
    /// The own RPC has not answered `/status` for `silent_for`.
    RpcSilent {
        /// Since when it has been silent.
        silent_for: Duration,
        /// The last error the poll saw.
        last_error: String,
    },
    /// The own height has stood at `height` for `stuck_for`.
    NoProgress {
        /// The height it stands at.
        height: u64,
        /// Since when.
        stuck_for: Duration,
        /// The highest height a peer reported, if there are peers.
        peer_height: Option<u64>,
    },
}

impl fmt::Display for HangReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RpcSilent {
                silent_for,
                last_error,
            } => write!(
                f,
                "its RPC has not answered /status for {:.1} s (last error: {last_error})",
                silent_for.as_secs_f64()
            ),
            Self::NoProgress {
                height,
                stuck_for,
                peer_height: None,
            } => write!(
                f,
                "its height has stood at {height} for {:.1} s",
                stuck_for.as_secs_f64()
            ),
            Self::NoProgress {
                height,
                stuck_for,
                peer_height: Some(peer),
            } => write!(
                f,
                "its height has stood at {height} for {:.1} s while peers moved on (to {peer})",
                stuck_for.as_secs_f64()
            ),
        }
    }
}

/// The detector's judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Healthy,
    /// Restart the unit.
    Hung(HangReason),
}

#[derive(Clone, Copy, Debug)]
struct PeerTrack {
    height: Option<u64>,
    last_advance: Option<Instant>,
}

/// Follows the own node's height and its peers' and judges a stall.
#[derive(Clone, Debug)]
pub struct StallDetector {
    rules: StallRules,
    started: Instant,
    own_height: Option<u64>,
    own_last_advance: Instant,
    own_last_answer: Instant,
    own_last_error: String,
    peers: Vec<PeerTrack>,
}

impl StallDetector {
    /// A detector for a unit started at `now` with `peers` peers.
    pub fn new(rules: StallRules, now: Instant, peers: usize) -> Self {
        Self {
            rules,
            started: now,
            own_height: None,
            own_last_advance: now,
            own_last_answer: now,
            own_last_error: String::from("no answer yet"),
            peers: vec![
                PeerTrack {
                    height: None,
                    last_advance: None,
                };
                peers
            ],
        }
    }

    /// The own height last seen.
    pub fn own_height(&self) -> Option<u64> {
        self.own_height
    }

    /// Records the own `/status` poll; returns the new height when it rose.
    pub fn observe_own(&mut self, now: Instant, height: Result<u64, String>) -> Option<u64> {
        match height {
            Ok(height) => {
                self.own_last_answer = now;
                if self.own_height.is_none_or(|old| height > old) {
                    self.own_height = Some(height);
                    self.own_last_advance = now;
                    return Some(height);
                }
                None
            }
            Err(error) => {
                self.own_last_error = error;
                None
            }
        }
    }

    /// Records peer `index`'s height (`None`: it did not answer).
    pub fn observe_peer(&mut self, index: usize, now: Instant, height: Option<u64>) {
        let Some(peer) = self.peers.get_mut(index) else {
            return;
        };
        let Some(height) = height else { return };
        match peer.height {
            Some(old) if height > old => {
                peer.height = Some(height);
                peer.last_advance = Some(now);
            }
            Some(_) => {}
            None => peer.height = Some(height),
        }
    }

    /// The highest height any peer reported.
    pub fn best_peer_height(&self) -> Option<u64> {
        self.peers.iter().filter_map(|p| p.height).max()
    }

    /// Whether the peers show that the chain moves on without us: one
    /// advanced past our height after our last advance, or one is at least
    /// two blocks ahead. A peer that advances below or up to our height is
    /// catching up (after a halt, say), which says nothing about us.
    fn peers_moved_on(&self) -> bool {
        let own = self.own_height.unwrap_or(0);
        self.peers.iter().any(|p| {
            let ahead = p.height.is_some_and(|h| h > own);
            (ahead && p.last_advance.is_some_and(|t| t > self.own_last_advance))
                || p.height.is_some_and(|h| h >= own.saturating_add(2))
        })
    }

    /// The judgement at `now`.
    pub fn verdict(&self, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.started) < self.rules.startup_grace {
            return Verdict::Healthy;
        }
        let silent_for = now.saturating_duration_since(self.own_last_answer);
        if silent_for >= self.rules.stall_timeout {
            return Verdict::Hung(HangReason::RpcSilent {
                silent_for,
                last_error: self.own_last_error.clone(),
            });
        }
        let stuck_for = now.saturating_duration_since(self.own_last_advance);
        if stuck_for < self.rules.stall_timeout {
            return Verdict::Healthy;
        }
        let hung = if self.peers.is_empty() {
            self.rules.height_rule_without_peers
        } else {
            self.peers_moved_on()
        };
        if !hung {
            return Verdict::Healthy;
        }
        Verdict::Hung(HangReason::NoProgress {
            height: self.own_height.unwrap_or(0),
            stuck_for,
            peer_height: self.best_peer_height(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn secs(i: u64) -> Duration {
        Duration::from_secs(i)
    }

    fn rules() -> StallRules {
        StallRules {
            stall_timeout: 10 * S,
            startup_grace: 5 * S,
            height_rule_without_peers: true,
        }
    }

    #[test]
    fn a_moving_node_is_healthy_and_a_standing_one_hung() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(rules(), t0, 0);
        for i in 0..30u64 {
            assert_eq!(d.observe_own(t0 + secs(i), Ok(i + 1)), Some(i + 1));
            assert_eq!(d.verdict(t0 + secs(i)), Verdict::Healthy);
        }
        // Standing at 30 from t0+29s; still answering.
        for i in 30..39u64 {
            assert_eq!(d.observe_own(t0 + secs(i), Ok(30)), None);
            assert_eq!(d.verdict(t0 + secs(i)), Verdict::Healthy, "{i}");
        }
        d.observe_own(t0 + 39 * S, Ok(30));
        assert!(matches!(
            d.verdict(t0 + 39 * S),
            Verdict::Hung(HangReason::NoProgress { height: 30, .. })
        ));
    }

    #[test]
    fn a_silent_rpc_is_a_stall_after_the_grace() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(rules(), t0, 0);
        d.observe_own(t0 + S, Ok(1));
        d.observe_own(t0 + 2 * S, Err("timed out".into()));
        assert_eq!(d.verdict(t0 + 10 * S), Verdict::Healthy);
        match d.verdict(t0 + 11 * S) {
            Verdict::Hung(HangReason::RpcSilent { last_error, .. }) => {
                assert_eq!(last_error, "timed out")
            }
            other => panic!("{other:?}"),
        }
        // Never answering at all: hung once both grace and timeout passed.
        let d = StallDetector::new(rules(), t0, 0);
        assert_eq!(d.verdict(t0 + 9 * S), Verdict::Healthy);
        assert!(matches!(d.verdict(t0 + 10 * S), Verdict::Hung(_)));
    }

    #[test]
    fn with_peers_only_a_chain_that_moves_on_makes_a_stall() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(rules(), t0, 2);
        d.observe_own(t0, Ok(7));
        d.observe_peer(0, t0, Some(7));
        d.observe_peer(1, t0, None);
        // The whole network stands still: no restart.
        for i in 1..60u64 {
            d.observe_own(t0 + secs(i), Ok(7));
            d.observe_peer(0, t0 + secs(i), Some(7));
            assert_eq!(d.verdict(t0 + secs(i)), Verdict::Healthy);
        }
        // One peer moves on by one block: that is enough.
        d.observe_peer(0, t0 + 60 * S, Some(8));
        match d.verdict(t0 + 60 * S) {
            Verdict::Hung(HangReason::NoProgress { peer_height, .. }) => {
                assert_eq!(peer_height, Some(8))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_peer_catching_up_below_us_is_no_sign_of_a_stall() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(rules(), t0, 1);
        // A halted network: we stand at 31, a restarted peer catches up.
        d.observe_own(t0, Ok(31));
        for i in 0..60u64 {
            d.observe_own(t0 + secs(i), Ok(31));
            d.observe_peer(0, t0 + secs(i), Some(16 + i.min(15)));
            assert_eq!(d.verdict(t0 + secs(i)), Verdict::Healthy, "second {i}");
        }
        // Once it passes us, the chain moves on without us.
        d.observe_peer(0, t0 + 60 * S, Some(32));
        assert!(matches!(d.verdict(t0 + 60 * S), Verdict::Hung(_)));
    }

    #[test]
    fn a_peer_far_ahead_counts_and_a_bad_index_is_ignored() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(rules(), t0, 1);
        d.observe_own(t0, Ok(3));
        d.observe_peer(0, t0, Some(9));
        d.observe_peer(5, t0, Some(100));
        assert_eq!(d.verdict(t0 + 9 * S), Verdict::Healthy);
        assert!(matches!(d.verdict(t0 + 10 * S), Verdict::Hung(_)));
    }

    #[test]
    fn without_peers_the_height_rule_can_be_off() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(
            StallRules {
                height_rule_without_peers: false,
                ..rules()
            },
            t0,
            0,
        );
        for i in 0..100u64 {
            d.observe_own(t0 + secs(i), Ok(4));
        }
        assert_eq!(d.verdict(t0 + 99 * S), Verdict::Healthy);
    }
}
