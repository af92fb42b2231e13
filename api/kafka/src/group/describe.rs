//! DescribeGroups (v0-5): state, protocol and members of groups. A group
//! the coordinator does not know is "Empty" if it has committed offsets,
//! else "Dead" with no error, as in Kafka. A group coordinated by another
//! node gets NOT_COORDINATOR (and an empty state).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use strata_api::ErrorCode;

use super::state::{GroupState, GroupSummary};
use super::{group_name, wire};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        let name = group_name(&id);
        let elsewhere =
            strata_broker::validate_group(&name).is_ok() && !cluster::coordinates(shared, &name);
        let described = if elsewhere {
            // Kafka's answer for a group-level error: no state, protocol or members.
            DescribedGroup::default()
                .with_error_code(errors::NOT_COORDINATOR)
                .with_group_state(wire(""))
                .with_protocol_type(wire(""))
                .with_protocol_data(wire(""))
        } else {
            match shared.groups.describe(&session.tenant, &name) {
                Some(summary) => described(summary, version),
                None => offsets_only(shared, &session.tenant, &name).await,
            }
        };
        groups.push(described.with_group_id(id));
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

fn described(summary: GroupSummary, version: i16) -> DescribedGroup {
    let members = summary
        .members
        .into_iter()
        .map(|m| {
            // The coordinator is not told client ids and hosts.
            DescribedGroupMember::default()
                .with_member_id(wire(m.member_id))
                .with_group_instance_id(if version >= 4 {
                    m.group_instance_id.map(wire)
                } else {
                    None
                })
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_error_code(errors::NONE)
        .with_group_state(wire(summary.state.name()))
        .with_protocol_type(wire(summary.protocol_type))
        .with_protocol_data(wire(summary.protocol))
        .with_members(members)
}

/// A group without members: Empty if it has committed offsets, else Dead.
async fn offsets_only(shared: &Shared, tenant: &str, name: &str) -> DescribedGroup {
    let (state, error) = if strata_broker::validate_group(name).is_err() {
        (GroupState::Dead, errors::NONE)
    } else {
        match shared.broker.fetch_offsets(tenant, name).await {
            Ok(offsets) if !offsets.is_empty() => (GroupState::Empty, errors::NONE),
            Ok(_) => (GroupState::Dead, errors::NONE),
            Err(e) if e.code == ErrorCode::GroupNotFound => (GroupState::Dead, errors::NONE),
            Err(e) => (GroupState::Dead, errors::code(&e)),
        }
    };
    DescribedGroup::default()
        .with_error_code(error)
        .with_group_state(wire(state.name()))
        .with_protocol_type(wire(""))
        .with_protocol_data(wire(""))
}
