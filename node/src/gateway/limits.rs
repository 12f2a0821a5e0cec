//! Fair shares: per-client limits on request rate and on open streams, and
//! per-account limits on upload rate.
//!
//! A client is a remote IP address. Its calls pass a keyed GCRA rate
//! limiter (`governor`) in a tonic interceptor, before any handler runs; its
//! open streams (`Subscribe`, `GetBlob`, `PutBlob`) are counted while they
//! live, and one more than its share is refused. An account's uploads pass
//! a second keyed limiter once its signed header is verified. Every refusal
//! is `RESOURCE_EXHAUSTED` naming the limit and the flag that sets it, and
//! is counted in `compute_gateway_throttled_total{limit}`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

use compute_proto::AccountId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::{Request, Status};

use super::error::GatewayError;
use super::metrics::Metrics;

/// The limits, as the gateway's flags set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Calls per second one client IP may sustain (`--client-requests-per-second`).
    pub client_requests_per_second: u32,
    /// Calls one client IP may make in a burst (`--client-request-burst`).
    pub client_request_burst: u32,
    /// Streams one client IP may hold open at once (`--client-streams-max`).
    pub client_streams_max: u32,
    /// Uploads per minute one account may sustain (`--account-uploads-per-minute`).
    pub account_uploads_per_minute: u32,
    /// Uploads one account may make in a burst (`--account-upload-burst`).
    pub account_upload_burst: u32,
    /// Seconds an upload may take to send its first chunk (`--upload-header-timeout-secs`).
    pub upload_header_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            client_requests_per_second: 200,
            client_request_burst: 400,
            client_streams_max: 256,
            account_uploads_per_minute: 600,
            account_upload_burst: 60,
            upload_header_timeout_secs: 30,
        }
    }
}

/// The gateway's limiters; cheap to clone.
#[derive(Clone, Debug)]
pub struct Limits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimitsConfig,
    requests: DefaultKeyedRateLimiter<IpAddr>,
    uploads: DefaultKeyedRateLimiter<AccountId>,
    streams: Mutex<HashMap<IpAddr, u32>>,
    metrics: Arc<Metrics>,
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    /// Limiters with `config`; a zero in it counts as one.
    pub fn new(config: LimitsConfig, metrics: Arc<Metrics>) -> Self {
        let requests = Quota::per_second(non_zero(config.client_requests_per_second))
            .allow_burst(non_zero(config.client_request_burst));
        let uploads = Quota::per_minute(non_zero(config.account_uploads_per_minute))
            .allow_burst(non_zero(config.account_upload_burst));
        Self {
            inner: Arc::new(Inner {
                config,
                requests: RateLimiter::keyed(requests),
                uploads: RateLimiter::keyed(uploads),
                streams: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> LimitsConfig {
        self.inner.config
    }

    /// Admits one call from `client`, or refuses it over the client's rate.
    ///
    /// # Errors
    /// [`GatewayError::Throttled`] past the rate.
    pub fn check_request(&self, client: IpAddr) -> Result<(), GatewayError> {
        if self.inner.requests.check_key(&client).is_ok() {
            return Ok(());
        }
        self.inner.metrics.throttled("client_requests");
        Err(GatewayError::Throttled {
            limit: "client_requests",
            message: format!(
            "client {client} is over its rate of {} calls per second (burst {}; --client-requests-per-second, --client-request-burst): slow down and retry with backoff",
            self.inner.config.client_requests_per_second, self.inner.config.client_request_burst
            ),
        })
    }

    /// A tonic interceptor that applies [`Limits::check_request`] to every
    /// call, keyed by the caller's IP address.
    pub fn interceptor(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        let limits = self.clone();
        move |request: Request<()>| {
            limits
                .check_request(client_of(&request))
                .map_err(Status::from)?;
            Ok(request)
        }
    }

    /// Admits one more open stream for `client`; the permit frees its slot
    /// when dropped, so hold it as long as the stream lives.
    ///
    /// # Errors
    /// [`GatewayError::Throttled`] when the client holds its share already.
    pub fn stream_permit(&self, client: IpAddr) -> Result<StreamPermit, GatewayError> {
        let max = self.inner.config.client_streams_max.max(1);
        let mut streams = self.streams();
        let open = streams.entry(client).or_insert(0);
        if *open >= max {
            drop(streams);
            self.inner.metrics.throttled("client_streams");
            return Err(GatewayError::Throttled {
                limit: "client_streams",
                message: format!(
                    "client {client} already holds {max} open streams (--client-streams-max); close one, or spread clients over gateways"
                ),
            });
        }
        *open = open.saturating_add(1);
        Ok(StreamPermit {
            limits: self.clone(),
            client,
        })
    }

    /// The streams `client` holds open.
    pub fn streams_of(&self, client: IpAddr) -> u32 {
        self.streams().get(&client).copied().unwrap_or(0)
    }

    /// Admits one upload by `account`, or refuses it over the account's rate.
    ///
    /// # Errors
    /// [`GatewayError::Throttled`] past the rate.
    pub fn check_upload(&self, account: &AccountId) -> Result<(), GatewayError> {
        if self.inner.uploads.check_key(account).is_ok() {
            return Ok(());
        }
        self.inner.metrics.throttled("account_uploads");
        Err(GatewayError::Throttled {
            limit: "account_uploads",
            message: format!(
            "account {account} is over its rate of {} uploads per minute (burst {}; --account-uploads-per-minute, --account-upload-burst): retry later",
            self.inner.config.account_uploads_per_minute, self.inner.config.account_upload_burst
            ),
        })
    }

    /// Forgets the rate state of clients and accounts that have been quiet
    /// long enough to be back at full burst, so the limiters stay small.
    pub fn sweep(&self) {
        self.inner.requests.retain_recent();
        self.inner.requests.shrink_to_fit();
        self.inner.uploads.retain_recent();
        self.inner.uploads.shrink_to_fit();
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Each update is one counter change: a panic cannot tear it.
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The client a request comes from: its remote IP address, or the
/// unspecified address when the transport has none (all such callers then
/// share one budget).
pub fn client_of<T>(request: &Request<T>) -> IpAddr {
    request
        .remote_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// One open stream of a client; frees its slot when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    limits: Limits,
    client: IpAddr,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut streams = self.limits.streams();
        if let Some(open) = streams.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(config: LimitsConfig) -> (Limits, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Limits::new(config, Arc::clone(&metrics)), metrics)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn a_client_past_its_burst_is_throttled_and_others_are_not() {
        let (limits, metrics) = limits(LimitsConfig {
            client_requests_per_second: 1,
            client_request_burst: 3,
            ..LimitsConfig::default()
        });
        for _ in 0..3 {
            limits.check_request(ip(1)).unwrap();
        }
        let refused = limits.check_request(ip(1)).unwrap_err();
        assert_eq!(Status::from(refused).code(), tonic::Code::ResourceExhausted);
        limits.check_request(ip(2)).unwrap();
        assert!(metrics
            .render(0)
            .contains("compute_gateway_throttled_total{limit=\"client_requests\"} 1"));
    }

    #[test]
    fn streams_are_counted_per_client_and_freed_on_drop() {
        let (limits, _) = limits(LimitsConfig {
            client_streams_max: 2,
            ..LimitsConfig::default()
        });
        let a = limits.stream_permit(ip(1)).unwrap();
        let b = limits.stream_permit(ip(1)).unwrap();
        let refused = limits.stream_permit(ip(1)).unwrap_err();
        assert!(
            refused.to_string().contains("--client-streams-max"),
            "{refused}"
        );
        let other = limits.stream_permit(ip(2)).unwrap();
        drop(a);
        let c = limits.stream_permit(ip(1)).unwrap();
        assert_eq!(limits.streams_of(ip(1)), 2);
        drop((b, c, other));
        assert_eq!(limits.streams_of(ip(1)), 0);
        assert!(limits.streams().is_empty());
    }

    #[test]
    fn an_account_past_its_upload_burst_is_throttled() {
        let (limits, metrics) = limits(LimitsConfig {
            account_uploads_per_minute: 1,
            account_upload_burst: 2,
            ..LimitsConfig::default()
        });
        let account = AccountId([1; 32]);
        limits.check_upload(&account).unwrap();
        limits.check_upload(&account).unwrap();
        assert!(limits.check_upload(&account).is_err());
        limits.check_upload(&AccountId([2; 32])).unwrap();
        assert!(metrics
            .render(0)
            .contains("compute_gateway_throttled_total{limit=\"account_uploads\"} 1"));
        limits.sweep();
    }
}
