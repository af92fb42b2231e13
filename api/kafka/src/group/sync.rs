//! SyncGroup (stub: to be implemented).

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::context::Shared;

pub(crate) async fn handle(
    _shared: &Shared,
    _tenant: &str,
    _req: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    SyncGroupResponse::default()
}
