//! The wait between restarts and the restart budget.
//!
//! The delays are [`compute_client::Backoff`]'s (a ceiling doubling from
//! `--backoff-initial` up to `--backoff-max`, each delay drawn from its upper
//! half); this adds what a supervisor needs around them: back to the initial
//! delay after a run that made progress long enough, and at most so many
//! restarts within a window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use compute_client::Backoff;

/// Jittered, growing delays between restarts, reset after a healthy run,
/// and a cap on how many restarts a window may hold.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    delays: Backoff,
    reset_after: Duration,
    max_restarts: usize,
    window: Duration,
    restarts: VecDeque<Instant>,
}

/// The restart budget is spent.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{count} restarts within {window:?}: giving up (raise --max-restarts or look at the logs)")]
pub struct BudgetSpent {
    /// How many restarts.
    pub count: usize,
    /// Within how long.
    pub window: Duration,
}

impl RestartPolicy {
    /// Delays with a ceiling from `initial` doubling up to `max`; back to
    /// `initial` after a run that was healthy for `reset_after`; at most
    /// `max_restarts` in any `window`.
    pub fn new(
        initial: Duration,
        max: Duration,
        reset_after: Duration,
        max_restarts: u32,
        window: Duration,
    ) -> Self {
        Self::with_delays(
            Backoff::new(millis(initial), millis(max)),
            reset_after,
            max_restarts,
            window,
        )
    }

    /// As [`RestartPolicy::new`], with the delays of `delays` (a seeded
    /// [`Backoff`] in tests).
    pub fn with_delays(
        delays: Backoff,
        reset_after: Duration,
        max_restarts: u32,
        window: Duration,
    ) -> Self {
        Self {
            delays,
            reset_after,
            max_restarts: max_restarts as usize,
            window,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now` after a run that was healthy for
    /// `healthy_for`; returns the delay before it, or that the budget is
    /// spent.
    pub fn next(&mut self, now: Instant, healthy_for: Duration) -> Result<Duration, BudgetSpent> {
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.max_restarts {
            return Err(BudgetSpent {
                count: self.restarts.len(),
                window: self.window,
            });
        }
        self.restarts.push_back(now);
        if healthy_for >= self.reset_after {
            self.delays.reset();
        }
        Ok(self.delays.next_delay())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn seeded(seed: u64, max_restarts: u32, window: Duration) -> RestartPolicy {
        RestartPolicy::with_delays(
            Backoff::seeded(1_000, 10_000, seed),
            60 * S,
            max_restarts,
            window,
        )
    }

    #[test]
    fn grows_caps_and_resets() {
        let t0 = Instant::now();
        for seed in 0..100 {
            let mut b = seeded(seed, 100, 3600 * S);
            // The ceilings: 1, 2, 4, 8, then 10 s; each delay in its upper half.
            for ceiling in [1, 2, 4, 8, 10, 10].map(|c| c * S) {
                let delay = b.next(t0, S).unwrap();
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} {ceiling:?}"
                );
            }
            // A run healthy for the reset period starts again from 1 s.
            assert!(b.next(t0, 60 * S).unwrap() <= S);
            assert!(b.next(t0, S).unwrap() <= 2 * S);
        }
        let mut b = seeded(0, 100_000, 3600 * S);
        for _ in 0..1000 {
            assert!(b.next(t0, S).unwrap() <= 10 * S);
        }
        // Durations beyond u64 milliseconds saturate instead of wrapping.
        let mut huge = RestartPolicy::new(Duration::MAX, Duration::MAX, S, 1, S);
        assert!(huge.next(t0, Duration::ZERO).unwrap() >= S);
    }

    #[test]
    fn the_budget_is_per_window() {
        let t0 = Instant::now();
        let mut b = seeded(1, 3, 100 * S);
        for _ in 0..3 {
            b.next(t0, Duration::ZERO).unwrap();
        }
        assert_eq!(
            b.next(t0 + 50 * S, Duration::ZERO),
            Err(BudgetSpent {
                count: 3,
                window: 100 * S
            })
        );
        assert!(b.next(t0 + 101 * S, Duration::ZERO).is_ok());
    }
}
