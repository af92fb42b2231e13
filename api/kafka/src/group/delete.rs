//! DeleteGroups (v0-2): forgets groups that have no members, with their
//! committed offsets. A group coordinated by another node gets
//! NOT_COORDINATOR and is left alone.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use strata_api::ErrorCode;

use super::{Deleted, group_name};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let error = delete(shared, &session.tenant, &group_name(&id)).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete(shared: &Shared, tenant: &str, group: &str) -> i16 {
    // A name Strata cannot store names no group.
    if strata_broker::validate_group(group).is_err() {
        return errors::GROUP_ID_NOT_FOUND;
    }
    if !cluster::coordinates(shared, group) {
        return errors::NOT_COORDINATOR;
    }
    let known = match shared.groups.delete(tenant, group) {
        Deleted::NotEmpty => return errors::NON_EMPTY_GROUP,
        Deleted::Removed => true,
        Deleted::Unknown => false,
    };
    match shared.broker.delete_group(tenant, group).await {
        Ok(()) => errors::NONE,
        // A group with members but no commits yet existed all the same.
        Err(e) if known && e.code == ErrorCode::GroupNotFound => errors::NONE,
        // GROUP_ID_NOT_FOUND for a group that does not exist.
        Err(e) => errors::code(&e),
    }
}
