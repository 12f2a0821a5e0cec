//! `compute-node` in front of a real chain serves 500 concurrent `Subscribe`
//! streams (half by worker key, half by job id) from one CometBFT websocket
//! subscription: one posted job reaches all 500 within a bounded time, and
//! the gateway's metrics and CometBFT's log show a single CometBFT
//! subscription throughout.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use compute_proto::pb::gateway_client::GatewayClient;
use compute_proto::{pb, JobId, SigningKey};
use compute_tests::gateway_calls::{post_one_task_job, register_worker_and_store_module, scrape};
use compute_tests::{Gateway, NetConfig, Node};
use tokio::task::JoinSet;

/// Every step of the test together must finish within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How many gRPC subscribers are opened.
const SUBSCRIBERS: usize = 500;
/// Over how many HTTP/2 connections they are spread (a server allows 200
/// concurrent streams per connection by default).
const CONNECTIONS: usize = 10;
/// How long opening all the subscriptions may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after the job is committed every subscriber must have its event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_subscribers_share_one_cometbft_subscription() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .context("the scenario did not finish in time")?
}

async fn scenario() -> Result<()> {
    let alice = SigningKey::from_seed([1; 32]);
    let worker = SigningKey::from_seed([3; 32]);
    let node = Node::start(NetConfig::funded(&[&alice, &worker], 1_000_000)).await?;
    // Every subscriber here comes from 127.0.0.1: one client to the
    // gateway's per-client limits, which are raised to let it hold them all.
    let gateway = Gateway::start(
        &node.rpc_url(),
        &[
            "--client-streams-max".to_owned(),
            "1000".to_owned(),
            "--client-request-burst".to_owned(),
            "2000".to_owned(),
        ],
    )?;
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(GatewayClient::connect(gateway.url()).await?);
    }
    let mut client = clients.first().context("a client")?.clone();
    register_worker_and_store_module(&node, &mut client, &alice, &worker).await?;

    let nonce = node.nonce(&alice.account()).await?;
    let job_id = JobId::derive(&alice.account(), nonce);

    // 500 streams at once, alternating filters over the connections.
    let opened_at = Instant::now();
    let mut opening = JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let mut client = clients
            .get(i % CONNECTIONS)
            .context("a client per connection")?
            .clone();
        let filter = if i % 2 == 0 {
            pb::subscribe_request::Filter::Worker(worker.account().0.to_vec())
        } else {
            pb::subscribe_request::Filter::JobId(job_id.0.to_vec())
        };
        opening.spawn(async move {
            client
                .subscribe(pb::SubscribeRequest {
                    filter: Some(filter),
                })
                .await
                .map(|r| (i, r.into_inner()))
        });
    }
    let mut streams = Vec::with_capacity(SUBSCRIBERS);
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        while let Some(joined) = opening.join_next().await {
            streams.push(joined?.context("Subscribe")?);
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("opening the subscriptions took too long")??;
    ensure!(streams.len() == SUBSCRIBERS);
    let subscribe_time = opened_at.elapsed();

    let metrics = scrape(&gateway)?;
    expect_metric(&metrics, "compute_gateway_subscriptions", SUBSCRIBERS)?;
    expect_metric(&metrics, "compute_gateway_cometbft_subscriptions", 1)?;

    // One transaction: a job whose task is assigned to the only worker.
    let posted_at = Instant::now();
    let posted = post_one_task_job(&node, &mut client, &alice, nonce).await?;
    let result = posted.result.context("PostJob answers a result")?;
    ensure!(result.code == 0, "post job: {}", result.log);
    ensure!(posted.job_id == job_id.0.to_vec());
    let committed = posted_at.elapsed();

    let job_hex = job_id.to_hex();
    let worker_hex = worker.account().to_hex();
    let mut waiting = JoinSet::new();
    for (i, mut stream) in streams {
        let (job_hex, worker_hex) = (job_hex.clone(), worker_hex.clone());
        waiting.spawn(async move {
            let find = async {
                // Bounded by the timeout around it.
                while let Some(event) = stream.message().await? {
                    let attribute = |key: &str| {
                        event
                            .attributes
                            .iter()
                            .find(|a| a.key == key)
                            .map(|a| a.value.clone())
                    };
                    if event.kind == "task_assigned"
                        && attribute("job").as_deref() == Some(job_hex.as_str())
                        && attribute("worker").as_deref() == Some(worker_hex.as_str())
                    {
                        return Ok::<_, anyhow::Error>(event.height);
                    }
                }
                bail!("subscriber {i}: the stream ended before the event")
            };
            let height = tokio::time::timeout(DELIVERY_TIMEOUT, find)
                .await
                .with_context(|| {
                    format!("subscriber {i}: no event within {DELIVERY_TIMEOUT:?}")
                })??;
            // The stream stays open (and counted) until the check below.
            Ok::<_, anyhow::Error>((i, height, posted_at.elapsed(), stream))
        });
    }
    let mut delivered = Vec::with_capacity(SUBSCRIBERS);
    while let Some(joined) = waiting.join_next().await {
        delivered.push(joined??);
    }
    ensure!(
        delivered.len() == SUBSCRIBERS,
        "{} of {SUBSCRIBERS} subscribers got the event",
        delivered.len()
    );
    for (i, height, _, _) in &delivered {
        ensure!(
            *height >= result.height,
            "subscriber {i}: event at {height}, job at {}",
            result.height
        );
    }
    let slowest = delivered
        .iter()
        .map(|(_, _, at, _)| *at)
        .max()
        .unwrap_or_default();

    let metrics = scrape(&gateway)?;
    expect_metric(&metrics, "compute_gateway_subscriptions", SUBSCRIBERS)?;
    expect_metric(&metrics, "compute_gateway_cometbft_subscriptions", 1)?;
    expect_metric(&metrics, "compute_gateway_subscription_reconnects_total", 0)?;
    expect_metric(&metrics, "compute_gateway_subscriptions_lagged_total", 0)?;
    let forwarded = metric(&metrics, "compute_gateway_subscription_events_total")?;
    ensure!(
        forwarded >= SUBSCRIBERS,
        "{forwarded} events forwarded:\n{metrics}"
    );
    eprintln!(
        "{SUBSCRIBERS} subscribers opened in {subscribe_time:?}; job committed after {committed:?}; \
         the last subscriber had its event {slowest:?} after the job was sent"
    );

    // Closing them all is noticed: the gauge returns to 0.
    drop(delivered);
    compute_tests::poll_until(
        "every stream is closed on the gateway",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let metrics = scrape(&gateway)?;
            Ok((metric(&metrics, "compute_gateway_subscriptions")? == 0).then_some(()))
        },
    )
    .await?;
    expect_metric(
        &scrape(&gateway)?,
        "compute_gateway_cometbft_subscriptions",
        1,
    )?;

    // CometBFT's own log agrees: it was asked for one subscription only.
    let log = std::fs::read_to_string(node.home().join("cometbft.log"))?;
    let asked = log.matches("Subscribe to query").count();
    ensure!(
        asked == 1,
        "CometBFT logged {asked} subscriptions:\n{}",
        node.log_tail("cometbft")
    );
    Ok(())
}

/// The value of an unlabelled metric.
fn metric(metrics: &str, name: &str) -> Result<usize> {
    let prefix = format!("{name} ");
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("{name} missing from:\n{metrics}"))?;
    line.get(prefix.len()..)
        .unwrap_or_default()
        .trim()
        .parse()
        .with_context(|| format!("{line} is not a count"))
}

fn expect_metric(metrics: &str, name: &str, expected: usize) -> Result<()> {
    let value = metric(metrics, name)?;
    ensure!(
        value == expected,
        "{name} is {value}, expected {expected}:\n{metrics}"
    );
    Ok(())
}
