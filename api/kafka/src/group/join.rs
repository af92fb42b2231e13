//! JoinGroup (v0-9): a member asks to join (or rejoin) a group. The answer
//! may wait for the join phase to end; this handler runs on its own task.

use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::state::{JoinRequest, JoinResult, Protocol};
use super::{group_name, instance_id, wire};
use crate::cluster;
use crate::context::Shared;
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    tenant: &str,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let result = join(shared, tenant, request, version).await;
    response(result, version)
}

async fn join(
    shared: &Shared,
    tenant: &str,
    request: JoinGroupRequest,
    version: i16,
) -> JoinResult {
    let member_id = request.member_id.to_string();
    let group = group_name(&request.group_id);
    if strata_broker::validate_group(&group).is_err() {
        return JoinResult::error(member_id, errors::INVALID_GROUP_ID);
    }
    if !cluster::coordinates(shared, &group) {
        return JoinResult::error(member_id, errors::NOT_COORDINATOR);
    }
    let Some(session_timeout) = shared.groups.session_timeout(request.session_timeout_ms) else {
        return JoinResult::error(member_id, errors::INVALID_SESSION_TIMEOUT);
    };
    // v0 has no rebalance timeout: the session timeout serves for both.
    let rebalance_timeout = match u64::try_from(request.rebalance_timeout_ms) {
        Ok(ms) if version >= 1 => Duration::from_millis(ms),
        _ => session_timeout,
    };
    let group_instance_id = if version >= 5 {
        instance_id(request.group_instance_id.as_ref())
    } else {
        None
    };
    let join = JoinRequest {
        member_id: member_id.clone(),
        require_known_member_id: version >= 4 && group_instance_id.is_none(),
        group_instance_id,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        session_timeout,
        rebalance_timeout,
        supports_skip_assignment: version >= 9,
    };
    let answer = shared.groups.join(tenant, &group, join);
    // The coordinator drops a waiting join only when it goes away.
    answer
        .await
        .unwrap_or_else(|_| JoinResult::error(member_id, errors::COORDINATOR_NOT_AVAILABLE))
}

/// The response for `version`: before v7 the protocol name is not
/// nullable, and is "" when there is none.
fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let protocol_name = if version >= 7 {
        result.protocol_name.map(wire)
    } else {
        Some(wire(result.protocol_name.unwrap_or_default()))
    };
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(wire(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    m.group_instance_id.map(wire)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation_id)
        .with_protocol_type(result.protocol_type.filter(|_| version >= 7).map(wire))
        .with_protocol_name(protocol_name)
        .with_leader(wire(result.leader))
        .with_skip_assignment(version >= 9 && result.skip_assignment)
        .with_member_id(wire(result.member_id))
        .with_members(members)
}
