//! JoinGroup (stub: to be implemented).

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use crate::context::Shared;

pub(crate) async fn handle(
    _shared: &Shared,
    _tenant: &str,
    _req: JoinGroupRequest,
    _version: i16,
) -> JoinGroupResponse {
    JoinGroupResponse::default()
}
