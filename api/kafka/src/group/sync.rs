//! SyncGroup (v0-5): the leader hands in the assignment, every member
//! gets its own part. A follower's answer waits for the leader; this
//! handler runs on its own task.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::state::{SyncRequest, SyncResult};
use super::{group_name, instance_id, wire};
use crate::cluster;
use crate::context::Shared;
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    tenant: &str,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let result = sync(shared, tenant, request, version).await;
    SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_protocol_type(result.protocol_type.filter(|_| version >= 5).map(wire))
        .with_protocol_name(result.protocol_name.filter(|_| version >= 5).map(wire))
        .with_assignment(result.assignment)
}

async fn sync(
    shared: &Shared,
    tenant: &str,
    request: SyncGroupRequest,
    version: i16,
) -> SyncResult {
    let group = group_name(&request.group_id);
    if group.is_empty() {
        return SyncResult::error(errors::INVALID_GROUP_ID);
    }
    if !cluster::coordinates(shared, &group) {
        return SyncResult::error(errors::NOT_COORDINATOR);
    }
    // From v5 the protocol type and name are required (as in Kafka).
    if version >= 5 && (request.protocol_type.is_none() || request.protocol_name.is_none()) {
        return SyncResult::error(errors::INCONSISTENT_GROUP_PROTOCOL);
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: if version >= 3 {
            instance_id(request.group_instance_id.as_ref())
        } else {
            None
        },
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    shared
        .groups
        .sync(tenant, &group, sync)
        .await
        .unwrap_or_else(|_| SyncResult::error(errors::COORDINATOR_NOT_AVAILABLE))
}
