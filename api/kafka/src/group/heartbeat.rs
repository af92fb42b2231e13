//! Heartbeat (v0-4): keeps a member's session alive and tells it whether
//! the group is rebalancing.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{group_name, instance_id};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) fn handle(
    shared: &Shared,
    session: &Session,
    request: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let group = group_name(&request.group_id);
    let error = if group.is_empty() {
        errors::INVALID_GROUP_ID
    } else if !cluster::coordinates(shared, &group) {
        errors::NOT_COORDINATOR
    } else {
        let instance = if version >= 3 {
            instance_id(request.group_instance_id.as_ref())
        } else {
            None
        };
        shared.groups.heartbeat(
            &session.tenant,
            &group,
            &request.member_id,
            instance.as_deref(),
            request.generation_id,
        )
    };
    HeartbeatResponse::default().with_error_code(error)
}
