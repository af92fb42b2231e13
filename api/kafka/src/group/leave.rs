//! LeaveGroup (v0-5): members leave at once instead of waiting for their
//! session to end. v0-2 name one member id; v3+ a batch of members, each by
//! member id or (static members) by group instance id, each with its own
//! error.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{group_name, instance_id};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) fn handle(
    shared: &Shared,
    session: &Session,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = group_name(&request.group_id);
    if group.is_empty() {
        return LeaveGroupResponse::default().with_error_code(errors::INVALID_GROUP_ID);
    }
    // A group-level error (v3+: with no member answers), as Kafka sends.
    if !cluster::coordinates(shared, &group) {
        return LeaveGroupResponse::default().with_error_code(errors::NOT_COORDINATOR);
    }
    if version < 3 {
        let members = [(request.member_id.to_string(), None)];
        let codes = shared.groups.leave(&session.tenant, &group, &members);
        let error = codes.first().copied().unwrap_or(errors::UNKNOWN_MEMBER_ID);
        return LeaveGroupResponse::default().with_error_code(error);
    }
    let members: Vec<(String, Option<String>)> = request
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                instance_id(m.group_instance_id.as_ref()),
            )
        })
        .collect();
    let codes = shared.groups.leave(&session.tenant, &group, &members);
    let responses = request
        .members
        .into_iter()
        .zip(codes)
        .map(|(m, error)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(error)
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(errors::NONE)
        .with_members(responses)
}
