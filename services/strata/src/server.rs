//! Runs a node: the broker, one listener for HTTP and gRPC (gRPC is HTTP/2
//! on the same port), graceful shutdown on SIGTERM and Ctrl-C.

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{KafkaSettings, ServerArgs};
use crate::state::AppState;
use crate::{grpc, http};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_tracing();
    let (config, warnings) = args.resolve()?;
    for w in warnings {
        warn!("{w}");
    }
    let data_dir = config.broker.data_dir.clone();
    let broker = strata_broker::Broker::open(config.broker)
        .await
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let state = AppState {
        broker: broker.clone(),
        shutdown: shutdown.clone(),
    };
    let app = http::router(state.clone()).merge(grpc::routes(state));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let kafka = match config.kafka {
        Some(settings) => Some(start_kafka(broker.clone(), settings, shutdown.clone()).await?),
        None => None,
    };
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
    info!("stopped");
    Ok(())
}

/// Binds the Kafka listener and serves it until `shutdown` is cancelled.
async fn start_kafka(
    broker: std::sync::Arc<strata_broker::Broker>,
    settings: KafkaSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
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
    let server = strata_kafka::KafkaServer::new(broker, config);
    Ok(tokio::spawn(async move {
        server
            .serve(listener, async move { shutdown.cancelled().await })
            .await;
    }))
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

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
