//! What every HTTP and gRPC handler shares.

use std::sync::Arc;

use strata_broker::Broker;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// This node of the metadata group (`None` in tests of the API alone).
    pub meta: Option<Arc<strata_meta::MetaNode>>,
    /// Cancelled when the server shuts down: long polls, SSE and sessions end.
    pub shutdown: CancellationToken,
}
