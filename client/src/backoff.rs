//! Exponential backoff with jitter, and a bounded retry loop built on it.
//!
//! Every client that reconnects or retries waits with [`Backoff`]: the
//! ceiling doubles from `base_ms` up to `cap_ms`, and each delay is drawn
//! uniformly from the upper half of the current ceiling ("equal jitter").
//! Without jitter, every worker that lost the same gateway at the same moment
//! would come back at the same moments too, in lockstep; the random half
//! spreads them out, while the fixed half keeps the delay growing.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::error::ClientError;

/// Exponential backoff between retries, with jitter.
///
/// # Invariants
/// Every delay lies in `[ceiling / 2, ceiling]`, where the ceiling starts at
/// `base_ms` and doubles after each delay up to `cap_ms`; so every delay lies
/// in `[base_ms / 2, cap_ms]`.
#[derive(Clone, Debug)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    ceiling_ms: u64,
    rng: StdRng,
}

impl Backoff {
    /// Starts at a ceiling of `base_ms` and doubles it up to `cap_ms`
    /// (raised to `base_ms` if lower); both are at least 1 ms.
    #[must_use]
    pub fn new(base_ms: u64, cap_ms: u64) -> Self {
        Self::with_rng(base_ms, cap_ms, StdRng::from_entropy())
    }

    /// As [`Backoff::new`], with jitter drawn from a seeded generator, so
    /// that a test sees the same delays every run.
    #[must_use]
    pub fn seeded(base_ms: u64, cap_ms: u64, seed: u64) -> Self {
        Self::with_rng(base_ms, cap_ms, StdRng::seed_from_u64(seed))
    }

    fn with_rng(base_ms: u64, cap_ms: u64, rng: StdRng) -> Self {
        let base_ms = base_ms.max(1);
        Self {
            base_ms,
            cap_ms: cap_ms.max(base_ms),
            ceiling_ms: base_ms,
            rng,
        }
    }

    /// The next delay; the ceiling then doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling_ms;
        let floor = ceiling / 2;
        let delay = self.rng.gen_range(floor..=ceiling);
        debug_assert!(delay >= self.base_ms / 2 && delay <= self.cap_ms);
        self.ceiling_ms = ceiling.saturating_mul(2).min(self.cap_ms);
        Duration::from_millis(delay)
    }

    /// Starts again from the base, after a success.
    pub fn reset(&mut self) {
        self.ceiling_ms = self.base_ms;
    }
}

impl Default for Backoff {
    /// 200 ms doubling up to 5 s.
    fn default() -> Self {
        Self::new(200, 5_000)
    }
}

/// Attempts of [`retry`] before it gives up.
pub const RETRY_ATTEMPTS_MAX: u32 = 8;

/// Runs `op` until it succeeds, fails definitely, has been tried
/// [`RETRY_ATTEMPTS_MAX`] times, or `shutdown` turns true; transient errors
/// ([`ClientError::is_transient`]) are retried after a [`Backoff::default`]
/// delay.
///
/// # Errors
/// The last error.
pub async fn retry<T, F, Fut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    retry_with(what, shutdown, Backoff::default(), RETRY_ATTEMPTS_MAX, op).await
}

/// [`retry`] with a backoff and an attempt limit of the caller's choosing.
///
/// # Errors
/// The last error.
pub async fn retry_with<T, F, Fut>(
    what: &str,
    shutdown: &watch::Receiver<bool>,
    mut backoff: Backoff,
    attempts_max: u32,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut attempt: u32 = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempt < attempts_max && !*shutdown.borrow() => {
                let delay = backoff.next_delay();
                tracing::debug!(what, attempt, error = %e, ?delay, "transient error; retrying");
                let mut stop = shutdown.clone();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Err(e),
                }
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays_ms(backoff: &mut Backoff, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| u64::try_from(backoff.next_delay().as_millis()).unwrap())
            .collect()
    }

    #[test]
    fn every_delay_stays_within_half_the_base_and_the_cap() {
        for seed in 0..500 {
            let mut backoff = Backoff::seeded(100, 1_000, seed);
            let delays = delays_ms(&mut backoff, 12);
            // The ceilings are 100, 200, 400, 800, then 1000 for ever.
            let ceilings = [100u64, 200, 400, 800, 1_000];
            for (i, delay) in delays.iter().enumerate() {
                let ceiling = ceilings[i.min(ceilings.len() - 1)];
                assert!(
                    (ceiling / 2..=ceiling).contains(delay),
                    "seed {seed}: delay {i} is {delay} ms, outside [{}, {ceiling}]",
                    ceiling / 2
                );
                assert!((50..=1_000).contains(delay), "seed {seed}: {delays:?}");
            }
        }
    }

    #[test]
    fn delays_grow_until_the_cap() {
        for seed in 0..500 {
            let delays = delays_ms(&mut Backoff::seeded(100, 10_000, seed), 7);
            // Two steps on, the ceiling is four times higher, so its lower
            // half starts above the earlier ceiling whatever the jitter.
            for i in 2..delays.len() {
                assert!(delays[i] >= delays[i - 2], "seed {seed}: {delays:?}");
            }
            assert!(delays[6] >= 3_200, "seed {seed}: {delays:?}");
        }
    }

    #[test]
    fn jitter_spreads_clients_that_start_together() {
        let firsts: std::collections::BTreeSet<u64> = (0..50)
            .map(|seed| delays_ms(&mut Backoff::seeded(1_000, 10_000, seed), 1)[0])
            .collect();
        assert!(
            firsts.len() > 10,
            "50 clients, {} distinct delays",
            firsts.len()
        );
        // The same seed gives the same delays.
        assert_eq!(
            delays_ms(&mut Backoff::seeded(100, 1_000, 7), 5),
            delays_ms(&mut Backoff::seeded(100, 1_000, 7), 5)
        );
    }

    #[test]
    fn reset_starts_again_from_the_base_and_degenerate_bounds_are_raised() {
        let mut backoff = Backoff::seeded(100, 100_000, 1);
        delays_ms(&mut backoff, 10);
        backoff.reset();
        assert!(delays_ms(&mut backoff, 1)[0] <= 100);
        let mut zero = Backoff::seeded(0, 0, 1);
        assert!(delays_ms(&mut zero, 5).iter().all(|d| *d <= 1));
    }

    #[tokio::test]
    async fn retry_gives_up_on_a_definite_error_at_once() {
        let (_tx, shutdown) = watch::channel(false);
        let mut calls = 0u32;
        let result: Result<(), ClientError> = retry("test", &shutdown, || {
            calls = calls.saturating_add(1);
            async {
                Err(ClientError::NotFound {
                    path: "/x".to_owned(),
                    log: String::new(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn retry_tries_a_transient_error_again_up_to_its_limit() {
        let (_tx, shutdown) = watch::channel(false);
        let mut calls = 0u32;
        let result: Result<(), ClientError> =
            retry_with("test", &shutdown, Backoff::seeded(1, 2, 0), 3, || {
                calls = calls.saturating_add(1);
                async {
                    Err(ClientError::Timeout {
                        call: "Query",
                        timeout_ms: 1,
                    })
                }
            })
            .await;
        assert!(matches!(result, Err(ClientError::Timeout { .. })));
        assert_eq!(calls, 3);
    }
}
