//! Runs a node: the broker, one listener for HTTP and gRPC (gRPC is HTTP/2
//! on the same port), graceful shutdown on SIGTERM and Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{KafkaSettings, ServerArgs};
use crate::state::AppState;
use crate::{cluster, grpc, http};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_tracing();
    let (config, warnings) = args.resolve()?;
    for w in warnings {
        warn!("{w}");
    }
    let data_dir = config.broker.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let url = config
        .broker
        .tier
        .object_store
        .clone()
        .unwrap_or_else(|| strata_tier::store::default_url(&data_dir));
    let slot: strata_meta::BrokerSlot = Arc::new(std::sync::OnceLock::new());
    let meta = cluster::start(
        &config.cluster,
        &data_dir,
        &url,
        slot.clone(),
        shutdown.clone(),
    )
    .await?;
    cluster::wait_until_current(&meta).await?;
    cluster::import_legacy_metadata(&meta, &data_dir).await?;
    let store = Arc::new(strata_meta::RaftMetadataStore::new(meta.clone()));
    let in_cluster = config.cluster.peer_listen.is_some();
    let view: Arc<dyn strata_broker::ClusterView> = if in_cluster {
        Arc::new(strata_meta::RaftClusterView::new(meta.clone()))
    } else {
        Arc::new(strata_broker::SingleNode)
    };
    let broker = strata_broker::Broker::open_with(config.broker, store, view)
        .await
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let _ = slot.set(broker.clone());
    if in_cluster {
        cluster::spawn_metadata_sync(broker.clone(), shutdown.clone());
        cluster::spawn_elections(meta.clone(), shutdown.clone());
        if config.cluster.auto_rebalance {
            cluster::spawn_rebalance(meta.clone(), shutdown.clone());
        }
    }
    let state = AppState {
        broker: broker.clone(),
        meta: Some(meta.clone()),
        shutdown: shutdown.clone(),
    };
    let app = http::router(state.clone()).merge(grpc::routes(state));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (kafka, kafka_addr) = match config.kafka {
        Some(settings) => {
            let (task, advertised) =
                start_kafka(broker.clone(), settings, shutdown.clone()).await?;
            (Some(task), Some(advertised))
        }
        None => (None, None),
    };
    cluster::spawn_heartbeats(
        meta.clone(),
        &config.cluster,
        cluster::Advertised {
            api_addr: addr.to_string(),
            kafka_addr,
        },
        shutdown.clone(),
    );
    // Small responses (acks) must leave at once: Nagle's algorithm against
    // the client's delayed ACKs would add ~40 ms to every pipelined request.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    info!(%addr, data_dir = %data_dir.display(), "strata is serving HTTP and gRPC");
    // Scripts and tests started with port 0 learn the port from this line.
    println!("strata listening on http://{addr}");
    let signal = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            info!("shutting down");
            signal.cancel();
        })
        .await
        .context("server failed")?;
    if let Some(kafka) = kafka {
        let _ = kafka.await;
    }
    broker.shutdown().await;
    meta.shutdown().await;
    info!("stopped");
    Ok(())
}

/// Binds the Kafka listener and serves it until `shutdown` is cancelled;
/// returns the task and the advertised address.
async fn start_kafka(
    broker: Arc<strata_broker::Broker>,
    settings: KafkaSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, String)> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen for Kafka clients on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut config = settings.config;
    if config.advertised_port == 0 {
        config.advertised_port = addr.port();
    }
    info!(%addr, advertised = %format!("{}:{}", config.advertised_host, config.advertised_port), "strata is serving Kafka");
    // Printed before the HTTP line, which scripts and tests wait for.
    println!("strata kafka listening on {addr}");
    let advertised = format!("{}:{}", config.advertised_host, config.advertised_port);
    let server = strata_kafka::KafkaServer::new(broker, config);
    let task = tokio::spawn(async move {
        server
            .serve(listener, async move { shutdown.cancelled().await })
            .await;
    });
    Ok((task, advertised))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`, openraft's own
/// chatter at `warn`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
