//! ListGroups (v0-4): the tenant's groups, those with members and those
//! that only have committed offsets (protocol type "", state Empty); v4
//! filters by state.
//!
//! In a cluster each node lists only the groups it coordinates (as a Kafka
//! broker does; admin clients ask every broker and merge): committed
//! offsets are shared by every node, but a group coordinated elsewhere is
//! that node's to list, with its live state.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::state::GroupState;
use super::wire;
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let tenant = session.tenant.as_str();
    let mut listed: BTreeMap<String, (String, GroupState)> = shared
        .groups
        .list(tenant)
        .into_iter()
        .map(|(id, protocol_type, state)| (id, (protocol_type, state)))
        .collect();
    let error = match shared.broker.list_groups(tenant).await {
        Ok(names) => {
            for name in names {
                listed
                    .entry(name)
                    .or_insert_with(|| (String::new(), GroupState::Empty));
            }
            errors::NONE
        }
        Err(e) => errors::code(&e),
    };
    let filter = if version >= 4 {
        request.states_filter
    } else {
        Vec::new()
    };
    let groups = listed
        .into_iter()
        .filter(|(_, (_, state))| {
            filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(state.name()))
        })
        .filter(|(id, _)| cluster::coordinates(shared, id))
        .map(|(id, (protocol_type, state))| {
            ListedGroup::default()
                .with_group_id(GroupId(wire(id)))
                .with_protocol_type(wire(protocol_type))
                .with_group_state(wire(state.name()))
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(error)
        .with_groups(groups)
}
