//! A gateway served in process with no chain behind it, for the tests in
//! this directory: uploaders' standings come from a fixed table.

// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use compute_node::gateway::auth::{FixedStandings, Standing};
use compute_node::gateway::limits::LimitsConfig;
use compute_node::gateway::{self, GatewayConfig};
use compute_proto::AccountId;
use tokio::sync::oneshot;

/// A gateway served in process until dropped.
pub struct Running {
    /// Its gRPC URL.
    pub url: String,
    /// Its metrics address, when it serves metrics.
    pub metrics: Option<SocketAddr>,
    /// Its home (blobs under `blobs/`).
    pub home: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// A configuration on loopback with no chain (port 9 on loopback is
/// closed), in `home`, with the default limits and an hour of grace.
pub fn config(
    home: PathBuf,
    peers: Vec<String>,
    max_blob_bytes: u64,
    quota_bytes: u64,
) -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rpc_url: "http://127.0.0.1:9".to_owned(),
        home,
        metrics: None,
        peers,
        max_blob_bytes,
        quota_bytes,
        high_water_percent: 90,
        low_water_percent: 80,
        account_quota_bytes: quota_bytes,
        grace: Duration::from_secs(3600),
        retain_blocks: 100,
        limits: LimitsConfig::default(),
        upload_min_balance: 1,
    }
}

/// Serves `config` (whose home is `home`) with these standings.
pub async fn serve(
    config: GatewayConfig,
    home: tempfile::TempDir,
    standings: impl IntoIterator<Item = (AccountId, Standing)>,
) -> Running {
    let listeners = gateway::bind(&config).await.unwrap();
    let url = format!("http://{}", listeners.grpc.local_addr().unwrap());
    let metrics = listeners.metrics.as_ref().map(|l| l.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway::serve_with(
        config,
        listeners,
        Box::new(FixedStandings::new(standings)),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        url,
        metrics,
        home,
        _stop: stop,
    }
}
