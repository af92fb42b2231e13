//! ListGroups (stub: to be implemented).

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: ListGroupsRequest,
    _version: i16,
) -> ListGroupsResponse {
    ListGroupsResponse::default()
}
