//! The Kafka listener: accepts connections and serves each on its own task.

use std::future::Future;
use std::sync::Arc;

use strata_broker::Broker;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::KafkaConfig;
use crate::context::Shared;
use crate::group::Coordinator;
use crate::producers::Producers;

/// The Kafka front end of one broker.
pub struct KafkaServer {
    shared: Arc<Shared>,
}

impl KafkaServer {
    pub fn new(broker: Arc<Broker>, config: KafkaConfig) -> KafkaServer {
        let groups = Coordinator::new(&config);
        KafkaServer {
            shared: Arc::new(Shared {
                broker,
                config,
                groups,
                producers: Producers::new(),
            }),
        }
    }

    /// Accepts connections until `shutdown` resolves; connections being
    /// served then are dropped with the runtime.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let local = listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        info!(listen = %local, "kafka listener started");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = self.shared.clone();
                        tokio::spawn(crate::conn::serve(shared, stream, peer.to_string()));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: back off briefly.
                        warn!(error = %e, "kafka accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        info!("kafka listener stopped");
    }
}
