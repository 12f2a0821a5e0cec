//! Who may upload: the account behind a verified upload header must hold at
//! least `--upload-min-balance` credits on the chain, or be a registered
//! worker.
//!
//! The gateway reads an account's standing through its node's queries and
//! keeps the answer for a short while ([`STANDING_TTL_MS`], shorter for a
//! refusal so that a newly funded account is admitted soon), in a cache of
//! at most [`STANDINGS_CACHED_MAX`] accounts, reading at most
//! [`LOOKUPS_IN_FLIGHT_MAX`] standings at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use compute_client::{ClientError, Query};
use compute_proto::AccountId;

use super::error::{GatewayError, NodeError};
use super::relay::Relay;

/// How long an admitting standing is reused.
pub const STANDING_TTL_MS: u64 = 30_000;
/// How long a refusing standing is reused.
pub const REFUSAL_TTL_MS: u64 = 3_000;
/// The most accounts whose standing is cached.
pub const STANDINGS_CACHED_MAX: usize = 65_536;
/// The most standings read from the chain at once: uploads signed by ever
/// new keys cannot turn into an unbounded stream of queries to the node.
pub const LOOKUPS_IN_FLIGHT_MAX: usize = 16;

/// What the chain says of an account, as far as uploads care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Its balance in credits (0 for a key never seen).
    pub balance: u64,
    /// Whether it is a registered worker.
    pub worker: bool,
}

/// Where standings come from: the chain, or a fixed table in tests.
#[tonic::async_trait]
pub trait Standings: Send + Sync + std::fmt::Debug + 'static {
    /// The account's standing now.
    ///
    /// # Errors
    /// [`GatewayError::Node`] when the chain cannot be read.
    async fn standing(&self, account: &AccountId) -> Result<Standing, GatewayError>;
}

/// Standings read through the node's `/account` and `/worker` queries.
#[derive(Debug)]
pub struct ChainStandings {
    relay: Relay,
}

impl ChainStandings {
    /// Standings read through `relay`.
    pub fn new(relay: Relay) -> Self {
        Self { relay }
    }
}

fn node_error(relay: &Relay, e: ClientError) -> GatewayError {
    GatewayError::Node(NodeError::Unreachable {
        url: relay.url().to_owned(),
        detail: e.to_string(),
    })
}

#[tonic::async_trait]
impl Standings for ChainStandings {
    async fn standing(&self, account: &AccountId) -> Result<Standing, GatewayError> {
        let view = self
            .relay
            .account(account)
            .await
            .map_err(|e| node_error(&self.relay, e))?;
        let worker = match self.relay.worker(account).await {
            Ok(_) => true,
            Err(ClientError::NotFound { .. }) => false,
            Err(e) => return Err(node_error(&self.relay, e)),
        };
        Ok(Standing {
            balance: view.balance,
            worker,
        })
    }
}

/// Decides whether an account may upload; cheap to clone.
#[derive(Clone, Debug)]
pub struct Admission {
    inner: Arc<AdmissionInner>,
}

#[derive(Debug)]
struct AdmissionInner {
    standings: Box<dyn Standings>,
    min_balance: u64,
    cache: Mutex<HashMap<AccountId, (Standing, Instant)>>,
    lookups: tokio::sync::Semaphore,
}

impl Admission {
    /// Admits accounts holding `min_balance` credits, or registered workers,
    /// as `standings` reports them.
    pub fn new(standings: Box<dyn Standings>, min_balance: u64) -> Self {
        Self {
            inner: Arc::new(AdmissionInner {
                standings,
                min_balance,
                cache: Mutex::new(HashMap::new()),
                lookups: tokio::sync::Semaphore::new(LOOKUPS_IN_FLIGHT_MAX),
            }),
        }
    }

    /// The balance that admits an account that is not a worker.
    pub fn min_balance(&self) -> u64 {
        self.inner.min_balance
    }

    fn admits(&self, standing: &Standing) -> bool {
        standing.worker || standing.balance >= self.inner.min_balance
    }

    /// Admits `account`, or says why not.
    ///
    /// # Errors
    /// [`GatewayError::PermissionDenied`] for an account that is neither
    /// funded nor a worker; [`GatewayError::Node`] when the chain cannot be read.
    pub async fn admit(&self, account: &AccountId) -> Result<(), GatewayError> {
        let now = Instant::now();
        let cached = self.cache().get(account).copied();
        let standing = match cached {
            Some((standing, at)) if now.saturating_duration_since(at) < self.ttl(&standing) => {
                standing
            }
            _ => {
                let _slot = self.inner.lookups.acquire().await.map_err(|_| {
                    GatewayError::Node(NodeError::Unreachable {
                        url: String::new(),
                        detail: "the gateway is shutting down".to_owned(),
                    })
                })?;
                let standing = self.inner.standings.standing(account).await?;
                let mut cache = self.cache();
                if cache.len() >= STANDINGS_CACHED_MAX {
                    cache.retain(|_, (s, at)| now.saturating_duration_since(*at) < self.ttl(s));
                    if cache.len() >= STANDINGS_CACHED_MAX {
                        cache.clear();
                    }
                }
                cache.insert(*account, (standing, now));
                standing
            }
        };
        if self.admits(&standing) {
            return Ok(());
        }
        Err(GatewayError::PermissionDenied(format!(
            "account {account} may not upload here: it holds {} credits, uploads need at least {} (--upload-min-balance), and it is not a registered worker",
            standing.balance, self.inner.min_balance
        )))
    }

    fn ttl(&self, standing: &Standing) -> Duration {
        Duration::from_millis(if self.admits(standing) {
            STANDING_TTL_MS
        } else {
            REFUSAL_TTL_MS
        })
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<AccountId, (Standing, Instant)>> {
        // Each update is one insert or retain: a panic cannot tear it.
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fixed table of standings, for gateways in tests without a chain.
#[derive(Debug, Default)]
pub struct FixedStandings {
    table: Mutex<HashMap<AccountId, Standing>>,
}

impl FixedStandings {
    /// A table holding `entries`; other accounts have nothing.
    pub fn new(entries: impl IntoIterator<Item = (AccountId, Standing)>) -> Self {
        Self {
            table: Mutex::new(entries.into_iter().collect()),
        }
    }
}

#[tonic::async_trait]
impl Standings for FixedStandings {
    async fn standing(&self, account: &AccountId) -> Result<Standing, GatewayError> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        Ok(table.get(account).copied().unwrap_or(Standing {
            balance: 0,
            worker: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn funded_accounts_and_workers_are_admitted_strangers_are_not() {
        let rich = AccountId([1; 32]);
        let worker = AccountId([2; 32]);
        let poor = AccountId([3; 32]);
        let stranger = AccountId([4; 32]);
        let standings = FixedStandings::new([
            (
                rich,
                Standing {
                    balance: 100,
                    worker: false,
                },
            ),
            (
                worker,
                Standing {
                    balance: 0,
                    worker: true,
                },
            ),
            (
                poor,
                Standing {
                    balance: 99,
                    worker: false,
                },
            ),
        ]);
        let admission = Admission::new(Box::new(standings), 100);
        admission.admit(&rich).await.unwrap();
        admission.admit(&worker).await.unwrap();
        for refused in [poor, stranger] {
            let error = admission.admit(&refused).await.unwrap_err();
            assert_eq!(error.code(), tonic::Code::PermissionDenied);
            assert!(
                error.to_string().contains("--upload-min-balance"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_chain_is_unavailable_not_a_refusal() {
        let relay = Relay::new("http://127.0.0.1:9").unwrap();
        let admission = Admission::new(Box::new(ChainStandings::new(relay)), 1);
        let error = admission.admit(&AccountId([1; 32])).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error}");
    }
}
