//! Following a job by its events rather than by polling.
//!
//! [`JobWatch`] holds a gateway `Subscribe` stream of one job and tells its
//! caller when to read the job again: on an event of the job (those already
//! queued are taken together, so a block's burst costs one read), on a
//! fallback tick in case events stop arriving, and right after a lost
//! stream is opened again, since events may have passed meanwhile. A lost
//! stream is reopened with [`Backoff`]; until then the tick alone drives
//! the caller, so following works, more slowly, without a gateway.

use std::time::Duration;

use compute_proto::JobId;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::gateway::{Events, Gateway};

/// How often the job is read when no event arrives.
pub const FALLBACK_TICK_MS: u64 = 10_000;
/// The first wait before opening a lost stream again.
const RESUBSCRIBE_BASE_MS: u64 = 500;
/// The longest wait between attempts to open the stream.
const RESUBSCRIBE_CAP_MS: u64 = 10_000;
/// Events already queued that one wake-up takes together, at most.
const EVENTS_COALESCED_MAX: u32 = 4_096;
/// Stream losses and reopen attempts one wait goes through, at most,
/// before it lets the caller read the job anyway.
const WAIT_STEPS_MAX: u32 = 64;

/// Why [`JobWatch::wait`] returned: in every case, read the job again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// An event of the job arrived.
    Event,
    /// The stream was opened again after a loss: events may have been missed.
    Subscribed,
    /// No event within the fallback tick.
    Tick,
    /// The caller's deadline passed.
    Deadline,
}

/// Waits for the events of one job on a gateway's `Subscribe` stream.
#[derive(Debug)]
pub struct JobWatch {
    gateway: Gateway,
    job: JobId,
    events: Option<Events>,
    backoff: Backoff,
    retry_at: Instant,
    tick: Duration,
    last_error: Option<String>,
}

impl JobWatch {
    /// Subscribes to `job`'s events (once; a failure is retried by
    /// [`JobWatch::wait`]). Call it before the first read of the job, so
    /// that no change between that read and the stream goes unnoticed.
    pub async fn start(gateway: Gateway, job: JobId) -> Self {
        Self::with_tick(gateway, job, Duration::from_millis(FALLBACK_TICK_MS)).await
    }

    /// As [`JobWatch::start`], with another fallback tick.
    pub async fn with_tick(gateway: Gateway, job: JobId, tick: Duration) -> Self {
        let mut watch = Self {
            gateway,
            job,
            events: None,
            backoff: Backoff::new(RESUBSCRIBE_BASE_MS, RESUBSCRIBE_CAP_MS),
            retry_at: Instant::now(),
            tick,
            last_error: None,
        };
        watch.subscribe().await;
        watch
    }

    /// Whether the event stream is open now.
    #[must_use]
    pub fn is_subscribed(&self) -> bool {
        self.events.is_some()
    }

    /// Why the stream was last lost or could not be opened, if it was.
    #[must_use]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Opens the stream; on failure, schedules the next attempt.
    async fn subscribe(&mut self) -> bool {
        match self.gateway.subscribe_job(&self.job).await {
            Ok(events) => {
                tracing::debug!(job = %self.job, gateway = self.gateway.url(), "following the job's events");
                self.events = Some(events);
                self.backoff.reset();
                true
            }
            Err(e) => {
                self.lost(e.to_string());
                false
            }
        }
    }

    fn lost(&mut self, why: String) {
        let delay = self.backoff.next_delay();
        tracing::debug!(job = %self.job, %why, ?delay, "no event stream; trying again later");
        self.events = None;
        self.retry_at = Instant::now() + delay;
        self.last_error = Some(why);
    }

    /// Takes the events already queued, without waiting.
    async fn drain(&mut self) {
        for _ in 0..EVENTS_COALESCED_MAX {
            let Some(events) = self.events.as_mut() else {
                return;
            };
            // A zero timeout polls the stream once: ready events are taken,
            // and the first that is not ready ends the drain.
            match tokio::time::timeout(Duration::ZERO, events.next()).await {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => self.lost("the gateway ended the event stream".to_owned()),
                Ok(Err(e)) => self.lost(e.to_string()),
                Err(_) => return,
            }
        }
    }

    /// Waits until the job may have changed, the fallback tick passes, or
    /// `deadline`; the caller then reads the job again.
    pub async fn wait(&mut self, deadline: Instant) -> Wake {
        let tick_at = (Instant::now() + self.tick).min(deadline);
        let timed_out = || {
            if tick_at >= deadline {
                Wake::Deadline
            } else {
                Wake::Tick
            }
        };
        for _ in 0..WAIT_STEPS_MAX {
            if let Some(events) = self.events.as_mut() {
                let next = tokio::select! {
                    next = events.next() => next,
                    () = tokio::time::sleep_until(tick_at) => return timed_out(),
                };
                match next {
                    Ok(Some(_)) => {
                        self.drain().await;
                        return Wake::Event;
                    }
                    Ok(None) => self.lost("the gateway ended the event stream".to_owned()),
                    Err(e) => self.lost(e.to_string()),
                }
            } else {
                tokio::time::sleep_until(self.retry_at.min(tick_at)).await;
                if Instant::now() >= tick_at {
                    return timed_out();
                }
                if self.subscribe().await {
                    return Wake::Subscribed;
                }
            }
        }
        Wake::Tick
    }
}
