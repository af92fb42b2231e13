//! Starts this node's part of the metadata group: the Raft node, the peer
//! listener for a cluster, the upgrade of a single-node metadata file, the
//! broker's registration and its liveness heartbeats.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use strata_meta::{BrokerInfo, BrokerSlot, Command, MetaConfig, MetaNode, PeerService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ClusterSettings;

/// How often a broker renews its liveness in the metadata group.
pub const HEARTBEAT_INTERVAL: Duration =
    Duration::from_millis(strata_meta::placement::HEARTBEAT_INTERVAL_MS);

/// HTTP/2 flow-control windows of the peer listener (see `Peer::new`).
const PEER_STREAM_WINDOW: u32 = 16 * 1024 * 1024;
const PEER_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// Longest one heartbeat write may take.
const HEARTBEAT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the metadata leader looks for partitions whose leader is gone.
const ELECTION_INTERVAL: Duration = Duration::from_millis(200);

/// How often the metadata leader makes one rebalancing step: a replica
/// added, dropped, or a leadership handed over.
const REBALANCE_INTERVAL: Duration = Duration::from_secs(1);

/// The addresses this node serves clients on, for its broker registration.
pub struct Advertised {
    pub api_addr: String,
    pub kafka_addr: Option<String>,
}

/// Starts the metadata node; for a cluster also its peer listener (before
/// anything waits on a quorum, so the other nodes can reach it).
pub async fn start(
    settings: &ClusterSettings,
    data_dir: &Path,
    object_store_url: &str,
    broker: BrokerSlot,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<MetaNode>> {
    let handle = strata_tier::store::open(object_store_url, data_dir)
        .with_context(|| format!("cannot open the object store {object_store_url}"))?;
    let snapshots: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
        handle.store().clone(),
        handle.prefix().clone(),
    ));
    let mut config = MetaConfig::single(data_dir.join("meta"));
    config.node_id = settings.node_id;
    config.peer_addr = settings.peer_advertise.clone();
    config.bootstrap = settings.bootstrap.clone();
    config.join = settings.join.clone();
    config.voter = settings.voter;
    config.snapshot_every = settings.meta_snapshot_every;

    // Bind first: a node of a new cluster must answer votes while it starts.
    let listener = match settings.peer_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for peers on {addr}"))?,
        ),
        None => None,
    };
    let node = MetaNode::start(config, Some(snapshots))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the metadata group: {}", e.message))?;
    if let Some(listener) = listener {
        let addr = listener.local_addr()?;
        info!(%addr, "strata is serving peers");
        println!("strata peer listening on {addr}");
        let service = PeerService::server(node.clone(), broker);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            // Replication answers carry up to 8 MiB: HTTP/2's default 64 KiB
            // windows would make each one wait on many window updates.
            let result = tonic::transport::Server::builder()
                .initial_stream_window_size(Some(PEER_STREAM_WINDOW))
                .initial_connection_window_size(Some(PEER_CONNECTION_WINDOW))
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await;
            if let Err(e) = result {
                warn!(error = %e, "peer listener failed");
            }
        });
    }
    if let (Some(join), Some(addr)) = (&settings.join, &settings.peer_advertise)
        && !node.raft().is_initialized().await.unwrap_or(false)
    {
        node.join(join, addr, settings.voter, Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("cannot join the cluster at {join}: {}", e.message))?;
    }
    Ok(node)
}

/// Waits until the metadata group has a leader and this node has caught
/// up with it; the broker must not reconcile its log against a stale view.
pub async fn wait_until_current(node: &MetaNode) -> anyhow::Result<()> {
    let mut announced = false;
    for _ in 0..600 {
        match node.barrier().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                if !announced {
                    info!(error = %e.message, "waiting for the metadata group (a quorum of voters)");
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    anyhow::bail!("the metadata group did not form a quorum in time")
}

/// Seeds a new metadata group with `<data dir>/metadata.json` (the file a
/// single node kept before the metadata group existed), once.
pub async fn import_legacy_metadata(node: &MetaNode, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("metadata.json");
    let Some(state) = strata_broker::LocalMetadataStore::load(&path)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?
    else {
        return Ok(());
    };
    let empty = node.read(|s| s.metadata.all_topics().next().is_none());
    if empty {
        let imported = node
            .write(Command::Import {
                state: Box::new(state),
            })
            .await;
        match imported {
            Ok(_) => info!(path = %path.display(), "metadata imported into the metadata group"),
            // Another node of a new cluster imported first.
            Err(e) if e.code == strata_api::ErrorCode::BadRequest => {
                info!(path = %path.display(), reason = %e.message, "metadata file not imported")
            }
            Err(e) => anyhow::bail!("cannot import {}: {}", path.display(), e.message),
        }
    }
    let done = path.with_extension("json.imported");
    std::fs::rename(&path, &done)
        .with_context(|| format!("cannot rename {} after the import", path.display()))?;
    Ok(())
}

/// Registers this broker and renews its liveness until `shutdown`.
pub fn spawn_heartbeats(
    node: Arc<MetaNode>,
    settings: &ClusterSettings,
    advertised: Advertised,
    shutdown: CancellationToken,
) {
    let mut roles = Vec::new();
    if settings.voter {
        roles.push("meta".to_string());
    }
    if settings.broker {
        roles.push("broker".to_string());
    }
    let in_cluster = settings.peer_listen.is_some();
    let info = BrokerInfo {
        node_id: settings.node_id,
        peer_addr: settings.peer_advertise.clone().unwrap_or_default(),
        api_addr: advertised.api_addr,
        kafka_addr: advertised.kafka_addr,
        zone: settings.zone.clone(),
        roles,
        last_heartbeat_ms: now_ms(),
    };
    tokio::spawn(async move {
        let mut registered = false;
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let command = if registered {
                Command::Heartbeat {
                    node_id: info.node_id,
                    at_ms: now_ms(),
                }
            } else {
                let mut info = info.clone();
                info.last_heartbeat_ms = now_ms();
                Command::RegisterBroker { broker: info }
            };
            // Bounded: a heartbeat stuck behind a metadata election must not
            // keep the next one from being sent.
            match tokio::time::timeout(HEARTBEAT_WRITE_TIMEOUT, node.write(command)).await {
                Ok(Ok(_)) => registered = true,
                Ok(Err(e)) => warn!(error = %e.message, "cannot renew this broker's liveness"),
                Err(_) => warn!("renewing this broker's liveness timed out"),
            }
            if in_cluster && node.status().leader == Some(node.id()) {
                place_unassigned(&node).await;
            }
        }
    });
}

/// On the metadata leader: gives a leader to every partition that has none
/// (topics imported or restored from the bucket, or created while no broker
/// was live), so no partition is served by every node at once.
async fn place_unassigned(node: &MetaNode) {
    let placement = node.read(|s| strata_meta::placement::unplaced(s, now_ms()));
    if placement.is_empty() {
        return;
    }
    let count = placement.len();
    match node.write(Command::Assign { placement }).await {
        Ok(_) => info!(count, "placed partitions that had no leader"),
        Err(e) => warn!(error = %e.message, "cannot place partitions that have no leader"),
    }
}

/// On the metadata leader: elects new leaders for replicated partitions
/// whose leader lost its lease (see `strata_meta::election`).
pub fn spawn_elections(node: Arc<MetaNode>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ELECTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            strata_meta::election::round(&node, now_ms()).await;
        }
    });
}

/// On the metadata leader: moves replicas and leaderships towards an even
/// spread, one step per round (see `strata_meta::rebalance`).
pub fn spawn_rebalance(node: Arc<MetaNode>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REBALANCE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            strata_meta::rebalance::round(&node, now_ms()).await;
        }
    });
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Keeps the local log in step with topics created, deleted or assigned
/// through other nodes.
pub fn spawn_metadata_sync(broker: Arc<strata_broker::Broker>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = broker.sync_with_metadata().await {
                warn!(error = %e.message, "cannot bring the log in step with the metadata");
            }
        }
    });
}
