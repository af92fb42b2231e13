//! AlterConfigs and IncrementalAlterConfigs (stub: to be implemented).

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    AlterConfigsResponse::default()
}

pub(crate) async fn handle_incremental(
    _shared: &Shared,
    _session: &Session,
    _req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    IncrementalAlterConfigsResponse::default()
}
