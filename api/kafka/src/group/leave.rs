//! LeaveGroup (stub: to be implemented).

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::context::{Session, Shared};

pub(crate) fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: LeaveGroupRequest,
    _version: i16,
) -> LeaveGroupResponse {
    LeaveGroupResponse::default()
}
