//! The wait between restarts and the restart budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Doubling delays between restarts, reset after a healthy run, and a cap
/// on how many restarts a window may hold.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    failures: u32,
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

impl Backoff {
    /// Delays from `initial` doubling up to `max`; back to `initial` after a
    /// run that was healthy for `reset_after`; at most `max_restarts` in any
    /// `window`.
    pub fn new(
        initial: Duration,
        max: Duration,
        reset_after: Duration,
        max_restarts: u32,
        window: Duration,
    ) -> Self {
        Self {
            initial,
            max: max.max(initial),
            reset_after,
            failures: 0,
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
            self.failures = 0;
        }
        let factor = 1u32 << self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        Ok(self.initial.saturating_mul(factor).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_caps_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::new(S, 10 * S, 60 * S, 100, 3600 * S);
        let delays: Vec<_> = (0..6).map(|_| b.next(t0, S).unwrap()).collect();
        assert_eq!(delays, [S, 2 * S, 4 * S, 8 * S, 10 * S, 10 * S]);
        assert_eq!(b.next(t0, 60 * S), Ok(S));
        assert_eq!(b.next(t0, S), Ok(2 * S));
        for _ in 0..1000 {
            let _ = b.next(t0, S);
        }
    }

    #[test]
    fn the_budget_is_per_window() {
        let t0 = Instant::now();
        let mut b = Backoff::new(S, S, S, 3, 100 * S);
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
